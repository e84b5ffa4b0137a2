//! Mail delivery test support: a real SMTP server and an independent reading of
//! what it received.
//!
//! [`SmtpSink`] runs `smtp/sink.py` (Python's aiosmtpd) on a loopback port; it files
//! each accepted message as `<seq>.eml` with its envelope in `<seq>.json`. TLS
//! material comes from `smtp/cert.sh` (a throwaway CA and a `localhost` leaf).
//! [`mime`] describes a message through `smtp/mime.py` (Python's `email`,
//! `icalendar` and `html.parser`), so tests never check our MIME with our own code.

// Each mail test uses its own part of this module.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where sink.py, mime.py and cert.sh live.
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp");

/// How long the sink may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How a sink listens and what it demands of its clients.
#[derive(Clone, Debug, Default)]
pub struct SinkOptions {
    /// A fixed port (e.g. one a stopped sink had); `None` picks a free one.
    pub port: Option<u16>,
    /// Offer STARTTLS and refuse mail before it.
    pub starttls: bool,
    /// Implicit TLS (SMTPS) from the first byte.
    pub implicit_tls: bool,
    /// Require AUTH PLAIN or LOGIN with this user and password (after TLS when
    /// TLS is on).
    pub auth: Option<(String, String)>,
    /// Recipients whose local part starts with this get `550 5.1.1`.
    pub reject_prefix: Option<String>,
    /// Recipients whose local part starts with this get `451 4.3.0`.
    pub tempfail_prefix: Option<String>,
}

/// One accepted message.
#[derive(Clone, Debug)]
pub struct Received {
    /// The DATA as received (CRLF line ends, dot-unstuffed).
    pub eml_path: PathBuf,
    /// `seq`, `mail_from`, `mail_options`, `rcpt_tos`, `rcpt_options`, `helo`,
    /// `tls`, `tls_version`, `auth`, `auth_user`, `size`.
    pub envelope: Value,
}

impl Received {
    /// The raw message.
    pub fn raw(&self) -> Vec<u8> {
        fs::read(&self.eml_path).unwrap()
    }

    /// The message as [`mime`] describes it.
    pub fn mime(&self) -> Value {
        mime(&self.eml_path)
    }
}

/// A running SMTP sink on 127.0.0.1; killed when dropped.
pub struct SmtpSink {
    options: SinkOptions,
    port: u16,
    child: Option<Child>,
    ca_pem: Option<PathBuf>,
    /// Holds `mail/` (the messages), `tls/`, and the sink's stdout and stderr.
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a sink and waits for it to listen; panics (with its stderr) if it
    /// does not within 20 s.
    pub async fn start(options: SinkOptions) -> SmtpSink {
        assert!(
            !(options.starttls && options.implicit_tls),
            "an SMTP sink does either STARTTLS or implicit TLS"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("mail")).unwrap();
        let ca_pem = (options.starttls || options.implicit_tls).then(|| {
            let tls = dir.path().join("tls");
            let out = Command::new("bash")
                .arg(Path::new(SCRIPTS).join("cert.sh"))
                .arg(&tls)
                .stdin(Stdio::null())
                .output()
                .expect("running bash for smtp/cert.sh");
            assert!(
                out.status.success(),
                "smtp/cert.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            tls.join("ca.pem")
        });
        let mut sink = SmtpSink {
            port: options.port.unwrap_or(0),
            options,
            child: None,
            ca_pem,
            dir,
        };
        sink.spawn().await;
        sink
    }

    /// Starts the stopped sink again on the same port, with the same certificates
    /// and messages (new ones are numbered on).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let tls = self.dir.path().join("tls");
        let mut cmd = Command::new("python3");
        cmd.arg(Path::new(SCRIPTS).join("sink.py"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.mail_dir());
        if self.options.starttls || self.options.implicit_tls {
            cmd.arg(if self.options.starttls {
                "--starttls"
            } else {
                "--tls"
            })
            .arg(tls.join("cert.pem"))
            .arg(tls.join("key.pem"));
        }
        if let Some((user, password)) = &self.options.auth {
            cmd.arg("--auth").arg(format!("{user}:{password}"));
        }
        if let Some(prefix) = &self.options.reject_prefix {
            cmd.arg("--reject").arg(prefix);
        }
        if let Some(prefix) = &self.options.tempfail_prefix {
            cmd.arg("--tempfail").arg(prefix);
        }
        // Files, not pipes: nobody has to drain them while the sink runs.
        let stdout_path = self.dir.path().join("sink.out");
        let stderr_path = self.stderr_path();
        let stdout = File::create(&stdout_path).unwrap();
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("running python3 for smtp/sink.py");
        // Owned by the sink from here on, so that a panic (or a dropped future)
        // kills it.
        let child = self.child.insert(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().next().filter(|_| out.contains('\n')) {
                match line.strip_prefix("READY ").and_then(|p| p.parse().ok()) {
                    Some(port) => {
                        self.port = port;
                        return;
                    }
                    None => panic!(
                        "the SMTP sink printed {line:?} instead of READY <port>; stderr:\n{}",
                        read_or_empty(&stderr_path)
                    ),
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the SMTP sink exited ({status}) before it was ready; stderr:\n{}",
                    read_or_empty(&stderr_path)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the SMTP sink was not ready within {READY_TIMEOUT:?}; stderr:\n{}",
                    read_or_empty(&stderr_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port the sink listens on (kept across [`SmtpSink::stop`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate that the client under test must trust (`None` when the
    /// sink has no TLS).
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// The directory the messages are filed in.
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Stops the sink (SIGTERM, then SIGKILL after 5 s) and waits for it to exit,
    /// so that its port refuses connections. Does nothing when it is stopped.
    #[allow(unsafe_code)] // kill(2): see the SAFETY comment
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child, which has not been waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every message accepted so far, in the order accepted.
    pub fn messages(&self) -> Vec<Received> {
        let dir = self.mail_dir();
        let mut seqs: Vec<u64> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        seqs.into_iter()
            .map(|seq| {
                // sink.py renames <seq>.json into place after <seq>.eml.
                let json = fs::read(dir.join(format!("{seq}.json"))).unwrap();
                Received {
                    eml_path: dir.join(format!("{seq}.eml")),
                    envelope: serde_json::from_slice(&json).unwrap(),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived (polling every 50 ms) and
    /// returns all of them; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                let envelopes: Vec<&Value> = messages.iter().map(|m| &m.envelope).collect();
                panic!(
                    "the SMTP sink on port {} received {} of {n} messages within {timeout:?}; \
                     envelopes: {}; sink stderr:\n{}",
                    self.port,
                    messages.len(),
                    serde_json::to_string(&envelopes).unwrap(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("sink.err")
    }

    /// What the sink wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_or_empty(&self.stderr_path())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_or_empty(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Describes a message file as JSON, read by Python's `email` package: `headers`,
/// `addresses`, `all_headers`, the MIME `tree` (leaves with `text`), `calendars`
/// (parsed by `icalendar`), the `hrefs` of the HTML part and parse `defects`.
/// See `smtp/mime.py` for the shape.
pub fn mime(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let out = Command::new("python3")
        .arg(Path::new(SCRIPTS).join("mime.py"))
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running python3 for smtp/mime.py");
    assert!(
        out.status.success(),
        "smtp/mime.py {} failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

mod dialogue {
    //! A bare SMTP client over a TCP stream, for the module's own tests.

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    pub struct Client {
        stream: BufReader<TcpStream>,
    }

    impl Client {
        /// Connects and reads the greeting.
        pub async fn connect(port: u16) -> Client {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut client = Client {
                stream: BufReader::new(stream),
            };
            let (code, text) = client.reply().await;
            assert_eq!(code, 220, "{text}");
            client
        }

        /// Sends one command line and returns the reply's code and text.
        pub async fn command(&mut self, line: &str) -> (u16, String) {
            self.stream
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .unwrap();
            self.reply().await
        }

        /// Sends a message body (CRLF line ends) with dot-stuffing and the final dot.
        pub async fn data(&mut self, message: &str) -> (u16, String) {
            let mut wire = String::new();
            for line in message.split("\r\n") {
                if line.starts_with('.') {
                    wire.push('.');
                }
                wire.push_str(line);
                wire.push_str("\r\n");
            }
            wire.push_str(".\r\n");
            self.stream.write_all(wire.as_bytes()).await.unwrap();
            self.reply().await
        }

        /// Reads a (possibly multi-line) reply.
        async fn reply(&mut self) -> (u16, String) {
            let mut text = String::new();
            loop {
                let mut line = String::new();
                let n = self.stream.read_line(&mut line).await.unwrap();
                assert!(n > 0, "the SMTP server closed the connection");
                text.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return (line[..3].parse().unwrap(), text);
                }
            }
        }
    }
}

#[tokio::test]
async fn the_sink_receives_and_describes_a_message() {
    let sink = SmtpSink::start(SinkOptions {
        reject_prefix: Some("gone".into()),
        tempfail_prefix: Some("later".into()),
        ..SinkOptions::default()
    })
    .await;
    let mut c = dialogue::Client::connect(sink.port()).await;
    let (code, ehlo) = c.command("EHLO client.example.org").await;
    assert_eq!(code, 250, "{ehlo}");
    assert_eq!(
        c.command("MAIL FROM:<noreply@call.example.org>").await.0,
        250
    );
    let (code, text) = c.command("RCPT TO:<gone-ada@example.org>").await;
    assert_eq!((code, text.trim()), (550, "550 5.1.1 mailbox unavailable"));
    let (code, text) = c.command("RCPT TO:<later-ada@example.org>").await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.3.0 "), "{text}");
    assert_eq!(c.command("RCPT TO:<ada@example.org>").await.0, 250);
    assert_eq!(c.command("DATA").await.0, 354);
    let message = [
        "From: Confab <noreply@call.example.org>",
        "To: Ada Lovelace <ada@example.org>",
        "Subject: =?utf-8?q?Caf=C3=A9_at_noon?=",
        "Message-ID: <m1@call.example.org>",
        "Date: Sat, 21 Nov 2026 12:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative; boundary=\"b1\"",
        "",
        "--b1",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Caf=C3=A9 at noon: https://call.example.org/j/abc?x=1&y=2",
        ".a line that starts with a dot",
        "--b1",
        "Content-Type: text/html; charset=utf-8",
        "",
        "<p><a href=\"https://call.example.org/j/abc?x=1&amp;y=2\">Join</a></p>",
        "--b1--",
    ]
    .join("\r\n");
    let (code, text) = c.data(&message).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.command("QUIT").await.0, 221);

    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    let envelope = &received[0].envelope;
    assert_eq!(envelope["mail_from"], "noreply@call.example.org");
    assert_eq!(envelope["rcpt_tos"], serde_json::json!(["ada@example.org"]));
    assert_eq!(envelope["tls"], false);
    assert_eq!(envelope["auth"], false);
    let raw = String::from_utf8(received[0].raw()).unwrap();
    assert!(
        raw.contains("\r\n.a line that starts with a dot\r\n"),
        "{raw}"
    );

    let described = received[0].mime();
    assert_eq!(described["headers"]["Subject"], "Café at noon");
    assert_eq!(described["headers"]["Cc"], Value::Null);
    assert_eq!(described["addresses"]["to"][0]["addr"], "ada@example.org");
    let tree = &described["tree"];
    assert_eq!(tree["content_type"], "multipart/alternative");
    let parts = tree["children"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[0]["params"]["charset"], "utf-8");
    assert_eq!(
        parts[0]["text"],
        "Café at noon: https://call.example.org/j/abc?x=1&y=2\n.a line that starts with a dot"
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    assert_eq!(
        described["hrefs"],
        serde_json::json!(["https://call.example.org/j/abc?x=1&y=2"])
    );
    assert_eq!(described["defects"], serde_json::json!([]));
}

#[tokio::test]
async fn a_stopped_sink_refuses_connections_and_restarts_on_its_port() {
    let port = free_port();
    let mut sink = SmtpSink::start(SinkOptions {
        port: Some(port),
        ..SinkOptions::default()
    })
    .await;
    assert_eq!(sink.port(), port);
    sink.stop();
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "a stopped sink still accepts connections");
    sink.restart().await;
    assert_eq!(sink.port(), port);
    dialogue::Client::connect(port).await;
}

/// The server's own client (lettre over rustls) trusts `ca_pem_path()`, through
/// STARTTLS and through implicit TLS, and authenticates.
#[tokio::test]
async fn lettre_over_rustls_trusts_the_sink_certificate() {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    for implicit_tls in [false, true] {
        let sink = SmtpSink::start(SinkOptions {
            starttls: !implicit_tls,
            implicit_tls,
            auth: Some(("mailer".into(), "s3cret".into())),
            ..SinkOptions::default()
        })
        .await;
        let pem = fs::read(sink.ca_pem_path().unwrap()).unwrap();
        let tls = TlsParameters::builder("localhost".into())
            .add_root_certificate(Certificate::from_pem(&pem).unwrap())
            .build_rustls()
            .unwrap();
        let tls = if implicit_tls {
            Tls::Wrapper(tls)
        } else {
            Tls::Required(tls)
        };
        let mailer: AsyncSmtpTransport<Tokio1Executor> =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(sink.port())
                .tls(tls)
                .credentials(Credentials::new("mailer".into(), "s3cret".into()))
                .build();
        let message = Message::builder()
            .from("Confab <noreply@call.example.org>".parse().unwrap())
            .to("ada@example.org".parse().unwrap())
            .subject("Over TLS")
            .body(String::from("Sent over TLS."))
            .unwrap();
        mailer.send(message).await.unwrap();

        let received = sink.wait_for(1, Duration::from_secs(10)).await;
        let envelope = &received[0].envelope;
        assert_eq!(envelope["tls"], true, "{envelope}");
        assert_eq!(envelope["auth"], true, "{envelope}");
        assert_eq!(envelope["auth_user"], "mailer");
        assert_eq!(received[0].mime()["headers"]["Subject"], "Over TLS");
    }
}
