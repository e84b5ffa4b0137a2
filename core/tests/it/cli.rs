//! The `confab` binary: scripting commands and the server's start and stop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("CONFAB_DATABASE_URL")
            .env("CONFAB_DATA_DIR", self.dir.path().join("data"))
            .env("CONFAB_SERVER_PUBLIC_URL", "https://call.example.org");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "confab {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    fn json_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut cmd = self.command(args);
        cmd.arg("--json").envs(env.iter().copied());
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "confab {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn fails_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "confab {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "confab {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn create_admin(&self) {
        let mut child = self
            .command(&[
                "user",
                "create",
                "--admin",
                "--email",
                "Ada@Example.org",
                "--name",
                "Ada",
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"a good long password\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Created admin Ada <ada@example.org>")
        );
    }

    /// A new API token named `name` for the admin made by [`Cli::create_admin`].
    fn admin_token(&self, name: &str) -> String {
        let token = self.json(&[
            "token",
            "create",
            "--user",
            "ada@example.org",
            "--name",
            name,
        ]);
        token["token"].as_str().unwrap().to_string()
    }
}

#[test]
fn users_and_tokens_from_the_command_line() {
    let cli = Cli::new();
    cli.create_admin();
    let member = cli.json(&[
        "user",
        "create",
        "--email",
        "bob@example.org",
        "--name",
        "Bob",
    ]);
    assert_eq!(member["role"], "member");
    assert_eq!(
        member["generated_password"].as_str().unwrap().len(),
        20,
        "a generated password is printed once"
    );
    let users = cli.json(&["user", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert!(users.to_string().find("generated_password").is_none());
    let human = cli.ok(&["user", "list"]);
    assert!(
        human.contains("admin")
            && human.contains("ada@example.org")
            && human.contains("bob@example.org")
    );

    assert!(
        cli.fails(&[
            "user",
            "create",
            "--email",
            "bob@example.org",
            "--name",
            "Bob"
        ])
        .contains("already exists")
    );
    assert!(
        cli.fails(&["user", "create", "--email", "nope", "--name", "X"])
            .contains("email: must be a valid email address")
    );
    assert!(
        cli.fails(&[
            "user",
            "create",
            "--email",
            "c@example.org",
            "--name",
            &"n".repeat(65)
        ])
        .contains("display_name")
    );

    let token = cli.json(&[
        "token",
        "create",
        "--user",
        "ada@example.org",
        "--name",
        "script",
    ]);
    let secret = token["token"].as_str().unwrap();
    assert!(secret.starts_with("cf_"));
    let listed = cli.ok(&["token", "list", "--user", "ada@example.org"]);
    assert!(listed.contains("script") && listed.contains("never used") && !listed.contains(secret));
    let id = token["id"].as_i64().unwrap().to_string();
    assert!(
        cli.ok(&["token", "revoke", "--user", "ada@example.org", &id])
            .contains("Revoked token")
    );
    let after = cli.json(&["token", "list", "--user", "ada@example.org"]);
    assert!(after[0]["revoked_at"].is_string());
    assert!(
        cli.fails(&["token", "revoke", "--user", "bob@example.org", &id])
            .contains("has no token")
    );
    assert!(
        cli.fails(&[
            "token",
            "create",
            "--user",
            "nobody@example.org",
            "--name",
            "x"
        ])
        .contains("no user")
    );
}

#[test]
fn links_from_the_command_line() {
    let cli = Cli::new();
    cli.create_admin();
    let link = cli.json(&[
        "link",
        "create",
        "--owner",
        "ada@example.org",
        "--title",
        "Weekly sync",
        "--start",
        "2026-12-07T10:00:00+01:00",
        "--end",
        "2026-12-07T10:30:00+01:00",
        "--time-zone",
        "Europe/Berlin",
        "--rrule",
        "FREQ=WEEKLY;BYDAY=MO",
        "--max-participants",
        "10",
    ]);
    let id = link["id"].as_str().unwrap().to_string();
    let secret = link["secret"].as_str().unwrap();
    assert!(crate::support::is_link_secret(secret), "{secret}");
    assert_eq!(
        link["url"],
        format!("https://call.example.org/j/{id}#k={secret}")
    );
    assert_eq!(link["schedule"]["rrule"], "FREQ=WEEKLY;BYDAY=MO");
    assert_eq!(link["policy"]["max_participants"], 10);

    let human = cli.ok(&["link", "show", &id]);
    assert!(human.starts_with(&format!("https://call.example.org/j/{id}\n")));
    assert!(!human.contains(secret) && !human.contains("#k="));
    assert!(human.contains("status:  active") && human.contains("repeats: FREQ=WEEKLY;BYDAY=MO"));
    let list = cli.ok(&["link", "list", "--owner", "ada@example.org"]);
    assert!(list.contains(&id) && list.contains("Weekly sync") && !list.contains("#k="));

    let rotated = cli.json(&["link", "rotate", &id]);
    let new_id = rotated["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert!(rotated["url"].as_str().unwrap().ends_with(&format!(
        "/j/{new_id}#k={}",
        rotated["secret"].as_str().unwrap()
    )));
    assert!(
        cli.fails(&["link", "show", &id])
            .contains("no link with id")
    );

    let revoked = cli.json(&["link", "revoke", &new_id]);
    assert_eq!(revoked["status"], "revoked");
    assert!(cli.fails(&["link", "rotate", &new_id]).contains("revoked"));
    assert_eq!(
        cli.json(&["link", "list", "--owner", "ada@example.org"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        cli.json(&[
            "link",
            "list",
            "--owner",
            "ada@example.org",
            "--status",
            "all"
        ])
        .as_array()
        .unwrap()
        .len(),
        1
    );

    // The human output prints the full link first, and says the secret is shown once.
    let made = cli.ok(&[
        "link",
        "create",
        "--owner",
        "ada@example.org",
        "--title",
        "Retro",
    ]);
    let full = made.lines().next().unwrap();
    let (_, other) = full.split_once("#k=").unwrap_or_else(|| panic!("{made}"));
    assert!(
        crate::support::is_link_secret(other) && other != secret,
        "a new secret each time: {made}"
    );
    assert!(made.contains("shown only now"), "{made}");

    assert!(
        cli.fails(&[
            "link",
            "create",
            "--owner",
            "ada@example.org",
            "--title",
            &"t".repeat(201)
        ])
        .contains("title: must be 1 to 200")
    );
    assert!(
        cli.fails(&[
            "link",
            "create",
            "--owner",
            "ada@example.org",
            "--title",
            "x",
            "--start",
            "soon",
            "--end",
            "later"
        ])
        .contains("RFC 3339")
    );
    assert!(
        cli.fails(&["link", "show", "../etc"])
            .contains("not a link id")
    );
    let usage = cli.run(&["link", "create", "--title", "x"]);
    assert_eq!(usage.status.code(), Some(2), "a usage error exits with 2");
}

#[test]
fn policy_and_privacy_from_the_command_line() {
    let cli = Cli::new();
    cli.create_admin();
    let policy = cli.json(&[
        "policy",
        "set",
        "--member-link-creation",
        "off",
        "--disable-plugin",
        "spam-guard",
    ]);
    assert_eq!(policy["member_link_creation"], false);
    assert_eq!(
        policy["disabled_plugins"],
        serde_json::json!(["spam-guard"])
    );
    cli.ok(&["user", "create", "--email", "m@example.org", "--name", "M"]);
    assert!(
        cli.fails(&["link", "create", "--owner", "m@example.org", "--title", "x"])
            .contains("turned off")
    );
    let shown = cli.ok(&["policy", "show"]);
    assert!(shown.contains("member link creation:  off") && shown.contains("spam-guard"));
    let back = cli.json(&["policy", "set", "--enable-plugin", "spam-guard"]);
    assert_eq!(back["disabled_plugins"], serde_json::json!([]));

    let purge = cli.json(&["privacy", "purge"]);
    assert_eq!(purge["call_events"], 0);
    assert!(cli.ok(&["privacy", "purge"]).contains("older than 30 days"));
    assert!(cli.ok(&["migrate"]).contains("up to date"));
}

#[test]
fn mail_status_from_the_command_line() {
    let cli = Cli::new();
    let status = cli.json(&["mail", "status"]);
    assert_eq!(
        (
            status["queued"].as_u64(),
            status["sent"].as_u64(),
            status["failed"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{status}"
    );
    let outbox = cli.dir.path().join("data").join("outbox");
    assert_eq!(
        status["transport"],
        format!("files in {}", outbox.display())
    );
    assert_eq!(status["from"], "Confab <confab@call.example.org>");
    let text = cli.ok(&["mail", "status"]);
    assert!(text.contains("Queued: 0  Sent: 0  Failed: 0"), "{text}");

    let relay = cli.json_with_env(
        &["mail", "status"],
        &[
            ("CONFAB_MAIL_SMTP_HOST", "smtp.example.org"),
            ("CONFAB_MAIL_SMTP_TLS", "tls"),
        ],
    );
    assert_eq!(relay["transport"], "smtp://smtp.example.org:465 (tls)");
    let err = cli.fails_with_env(
        &["mail", "status"],
        &[("CONFAB_MAIL_SMTP_TLS", "sometimes")],
    );
    assert!(
        err.contains("smtp_tls") || err.contains("sometimes"),
        "{err}"
    );
    let err = cli.fails_with_env(&["serve"], &[("CONFAB_MAIL_FROM", "not an address")]);
    assert!(err.contains("mail.from"), "{err}");
}

#[test]
fn bad_configuration_is_reported_plainly() {
    let cli = Cli::new();
    std::fs::write(cli.dir.path().join("bad.toml"), "[server]\nlisten_on = 1\n").unwrap();
    let err = cli.fails(&["--config", "bad.toml", "user", "list"]);
    assert!(err.contains("unknown field `listen_on`"), "{err}");
    assert!(
        cli.fails(&["--config", "missing.toml", "user", "list"])
            .contains("cannot read missing.toml")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn serve_starts_on_an_empty_directory_and_stops_on_sigterm() {
    let cli = Cli::new();
    let port = free_port();
    let mut child = cli
        .command(&["serve"])
        .env("CONFAB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONFAB_MEDIA_UDP_PORT", "0")
        .env("CONFAB_MEDIA_TCP_PORT", "0")
        .env_remove("CONFAB_SERVER_PUBLIC_URL")
        .env("CONFAB_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    for _ in 0..4 {
        stdout.read_line(&mut banner).unwrap();
    }
    assert!(
        banner.contains(&format!("Confab is running at http://127.0.0.1:{port}/")),
        "{banner}"
    );
    assert!(
        banner.contains("confab user create --admin"),
        "tells how to create the first admin: {banner}"
    );
    assert!(
        cli.dir.path().join("data/confab.db").exists(),
        "SQLite database created under ./data"
    );

    let ready = wait_ready(port);
    assert!(ready.contains("\"database\":\"ok\""), "{ready}");
    assert!(ready.contains("\"media\":\"ok\""), "{ready}");

    // The scripting example creates a link against the running server.
    cli.create_admin();
    let token = cli.admin_token("example");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/create-link.sh");
    let out = Command::new("bash")
        .args([script, "Made by the example script"])
        .env("CONFAB_URL", format!("http://127.0.0.1:{port}"))
        .env("CONFAB_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(
        url.trim()
            .starts_with(&format!("http://127.0.0.1:{port}/j/"))
            && url.contains("#k="),
        "the full link, with its secret: {url}"
    );
    let links = cli.json(&["link", "list", "--owner", "ada@example.org"]);
    assert_eq!(links[0]["title"], "Made by the example script");
    let refused = Command::new("bash")
        .args([script, "x"])
        .env("CONFAB_URL", format!("http://127.0.0.1:{port}"))
        .env("CONFAB_TOKEN", "cf_wrong")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Confab answered 401"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("Confab stopped."));
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("Confab is ready")),
        "{logs}"
    );
    for line in lines {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["timestamp"].is_string());
    }
}

#[test]
fn a_new_plugin_builds_loads_and_is_managed_from_the_command_line() {
    let cli = Cli::new();
    let out = cli.ok(&["plugin", "new", "greeter"]);
    assert!(out.contains("Created the plugin greeter"), "{out}");
    let crate_dir = cli.dir.path().join("greeter");
    assert!(
        cli.fails(&["plugin", "new", "greeter"])
            .contains("already exists")
    );
    assert!(
        cli.fails(&["plugin", "new", "Not A Name"])
            .contains("not a plugin name")
    );
    // Build it as its author would; the component goes where plugin.toml says.
    let wasm = crate::plugins::build_plugin(&crate_dir, "greeter_plugin.wasm");
    let target = crate_dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(&wasm, target.join("greeter_plugin.wasm")).unwrap();
    std::fs::write(
        cli.dir.path().join("confab.toml"),
        format!(
            "[plugins]\nbundled = false\npaths = [{:?}]\n\n[plugins.settings.greeter]\ngrant = [\"kv\"]\n",
            crate_dir.display().to_string()
        ),
    )
    .unwrap();
    let config = cli.dir.path().join("confab.toml");
    let config = config.to_str().unwrap();
    let list = cli.json(&["--config", config, "plugin", "list"]);
    assert_eq!(list["plugins"][0]["name"], "greeter", "{list}");
    assert_eq!(list["plugins"][0]["status"], "enabled");
    assert_eq!(list["plugins"][0]["granted"], serde_json::json!(["kv"]));
    let text = cli.ok(&["--config", config, "plugin", "inspect", "greeter"]);
    assert!(
        text.contains("greeter 0.1.0 (enabled, installed)"),
        "{text}"
    );
    assert!(text.contains("granted:   kv"), "{text}");
    let off = cli.json(&["--config", config, "plugin", "disable", "greeter"]);
    assert_eq!(off["status"], "disabled");
    let on = cli.json(&["--config", config, "plugin", "enable", "greeter"]);
    assert_eq!(on["status"], "enabled");
    let reloaded = cli.ok(&["--config", config, "plugin", "reload", "greeter"]);
    assert!(reloaded.contains("loads cleanly"), "{reloaded}");
    assert!(
        cli.fails(&["--config", config, "plugin", "inspect", "nobody"])
            .contains("no plugin called")
    );
    // A broken build is reported with the reason, and the command fails.
    std::fs::write(target.join("greeter_plugin.wasm"), b"not wasm").unwrap();
    let list = cli.json(&["--config", config, "plugin", "list"]);
    assert_eq!(list["plugins"], serde_json::json!([]));
    assert!(
        list["problems"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly"),
        "{list}"
    );
}

/// `confab serve` on `port` in the test's directory, with `env` on top.
fn spawn_serve(cli: &Cli, port: u16, env: &[(&str, String)]) -> std::process::Child {
    let mut cmd = cli.command(&["serve"]);
    cmd.env("CONFAB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONFAB_MEDIA_UDP_PORT", "0")
        .env("CONFAB_MEDIA_TCP_PORT", "0")
        .env(
            "CONFAB_PLUGINS_CACHE_DIR",
            crate::plugins::shared_plugin_cache(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn().unwrap()
}

/// Waits until `/readyz` answers 200; its answer.
fn wait_ready(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http_get(port, "/readyz") {
            Some(r) if r.starts_with("HTTP/1.1 200") => return r,
            _ if Instant::now() > deadline => panic!("server never became ready"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// POSTs `body` as JSON with a bearer token; the status and the body.
fn http_post_json(port: u16, path: &str, token: &str, body: &Value) -> (u16, Value) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (_, text) = response.split_once("\r\n\r\n").unwrap();
    // The JSON answers here are small enough to come in one chunk.
    let json = text
        .find('{')
        .and_then(|start| {
            serde_json::Deserializer::from_str(&text[start..])
                .into_iter()
                .next()
        })
        .and_then(Result::ok)
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn an_accepted_invitation_survives_a_kill_and_is_delivered_after_the_restart() {
    use crate::smtp::{SinkOptions, SmtpSink};
    let cli = Cli::new();
    // The relay answers "try again later" when the invitation is accepted, so
    // the message is still waiting in the outbox when the server is killed. The
    // restarted server sends through a second relay that accepts it (a relay of
    // its own, so no other test can take its port in between).
    let busy = SmtpSink::start(SinkOptions {
        tempfail_prefix: Some("bo".into()),
        ..SinkOptions::default()
    })
    .await;
    let sink = SmtpSink::start(SinkOptions::default()).await;
    // The retry comes 2 s after the refusal: time to see the refusal recorded
    // and kill the server before a second attempt starts.
    let env_for = |sink: &SmtpSink| {
        [
            ("CONFAB_MAIL_SMTP_HOST", "127.0.0.1".to_string()),
            ("CONFAB_MAIL_SMTP_PORT", sink.port().to_string()),
            ("CONFAB_MAIL_SMTP_TLS", "none".to_string()),
            ("CONFAB_MAIL_RETRY_INITIAL_MS", "2000".to_string()),
            ("CONFAB_MAIL_RETRY_MAX_MS", "2000".to_string()),
            ("CONFAB_MAIL_POLL_INTERVAL_MS", "100".to_string()),
        ]
    };
    cli.create_admin();
    let token = cli.admin_token("t");

    let port = free_port();
    let mut server = spawn_serve(&cli, port, &env_for(&busy));
    wait_ready(port);
    let (status, link) = http_post_json(
        port,
        "/api/v1/links",
        &token,
        &serde_json::json!({ "title": "Kept" }),
    );
    assert_eq!(status, 201, "{link}");
    let (status, accepted) = http_post_json(
        port,
        "/p/email-invites/invites",
        &token,
        &serde_json::json!({ "url": link["url"], "recipients": ["bo@example.org"] }),
    );
    assert_eq!(status, 202, "{accepted}");
    // Once the relay's "try again later" is recorded, SIGKILL: no shutdown, no
    // flush, no second chance. (Killed in the middle of an attempt, the message
    // would wait out the attempt's lease before another try.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = cli.json(&["mail", "status"]);
        if status["retrying"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay's refusal was recorded: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        busy.messages().is_empty() && sink.messages().is_empty(),
        "nothing could be delivered before the kill"
    );

    let port = free_port();
    let mut server = spawn_serve(&cli, port, &env_for(&sink));
    wait_ready(port);
    sink.wait_for(1, Duration::from_secs(30)).await;
    // A while longer, to see that it is not sent twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = sink.messages();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(delivered.len(), 1, "delivered once");
    assert_eq!(delivered[0].envelope["rcpt_tos"][0], "bo@example.org");
    let text = String::from_utf8(delivered[0].raw()).unwrap();
    assert!(text.contains("Kept"), "the invitation for the link: {text}");
}
