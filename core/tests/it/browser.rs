//! The join flow in real headless browsers: Debian's `chromium` driven through
//! `chromedriver`, and Debian's `firefox-esr` through `geckodriver` (`bash .ci/run`
//! installs all of them). Set CONFAB_CHROMIUM, CONFAB_CHROMEDRIVER, CONFAB_FIREFOX and
//! CONFAB_GECKODRIVER to use other paths.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use confab_core::accounts::Role;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{PASSWORD, TestApp};

/// The link secret the tests' call pages open their links with (`#k=…`). The server
/// never sees it, so any 22 base64url characters do.
pub(crate) const SECRET: &str = "c2VjcmV0LWZvci10ZXN0cw";

fn chromium() -> String {
    std::env::var("CONFAB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("CONFAB_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

fn firefox() -> String {
    std::env::var("CONFAB_FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into())
}

/// geckodriver from CONFAB_GECKODRIVER, the PATH, or where `cargo install` puts it.
fn geckodriver() -> String {
    if let Ok(path) = std::env::var("CONFAB_GECKODRIVER") {
        return path;
    }
    let mut candidates: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("geckodriver"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo").into())
    }) {
        candidates.push(std::path::Path::new(&home).join("bin/geckodriver"));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "geckodriver".into())
}

/// The machine's network interfaces, as the browsers of concurrent tests see them.
///
/// A [`Netns`] adds an interface to this namespace for as long as it lives, and every
/// Chromium on the machine starts gathering ICE candidates on it, switching calls to a
/// path that vanishes with the namespace. So the test that makes one holds this
/// exclusively, and every other browser test holds it shared while its Chromium runs.
static NETWORK: RwLock<()> = RwLock::new(());

/// A WebDriver process (chromedriver or geckodriver), stopped when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
    firefox: bool,
    _network: Option<RwLockReadGuard<'static, ()>>,
}

impl Driver {
    /// chromedriver, for Chromium; while it lives, no test changes the network.
    pub(crate) fn start() -> Driver {
        let network = NETWORK.read().unwrap_or_else(PoisonError::into_inner);
        let mut driver = Driver::spawn(&[chromium(), chromedriver()], chromedriver(), None);
        driver._network = Some(network);
        driver
    }

    /// chromedriver, for a Chromium in the test that made `netns` (which already
    /// holds the network to itself).
    fn start_beside(_netns: &Netns) -> Driver {
        Driver::spawn(&[chromium(), chromedriver()], chromedriver(), None)
    }

    /// geckodriver, for Firefox, running in `netns` (see [`Netns`]).
    fn start_firefox(netns: &Netns) -> Driver {
        Driver::spawn(&[firefox(), geckodriver()], geckodriver(), Some(netns))
    }

    fn spawn(needed: &[String], program: String, netns: Option<&Netns>) -> Driver {
        let firefox = netns.is_some();
        for path in needed {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's chromium, chromium-driver and firefox-esr, \
                 and geckodriver with cargo install (bash .ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = netns.map_or(IpAddr::from([127, 0, 0, 1]), |n| n.inside.into());
        // Its own process group, so that dropping the driver also ends every browser it
        // started, even when a test fails before closing its sessions.
        let mut command = match netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &netns.name, &program]);
                c.args(["--host", &host.to_string(), "--port", &port.to_string()]);
                c
            }
            None => {
                let mut c = Command::new(&program);
                c.arg(format!("--port={port}"));
                c
            }
        };
        command.process_group(0);
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((host, port)).is_err() {
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://{host}:{port}"),
            firefox,
            _network: None,
        }
    }

    /// A fresh headless browser with its own profile and fake camera and microphone.
    pub(crate) async fn browser(&self) -> Browser {
        self.browser_with(true).await
    }

    /// Like [`Driver::browser`]; with `allow_media` false, camera and microphone
    /// requests are denied as if the user said no.
    async fn browser_with(&self, allow_media: bool) -> Browser {
        self.launch(allow_media, &[]).await
    }

    /// Like [`Driver::browser`], with more command-line switches for Chromium.
    pub(crate) async fn browser_with_args(&self, extra: &[String]) -> Browser {
        self.launch(true, extra).await
    }

    async fn launch(&self, allow_media: bool, extra: &[String]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        if self.firefox {
            return self.launch_firefox(allow_media, extra, profile).await;
        }
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--use-fake-device-for-media-stream".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.push(
            if allow_media {
                "--use-fake-ui-for-media-stream"
            } else {
                "--deny-permission-prompts"
            }
            .into(),
        );
        args.extend_from_slice(extra);
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium(), "args": args }),
        );
        self.session(caps, profile).await
    }

    /// Headless Firefox with a fresh profile and its fake camera and microphone.
    async fn launch_firefox(
        &self,
        allow_media: bool,
        extra: &[String],
        profile: tempfile::TempDir,
    ) -> Browser {
        assert!(
            allow_media,
            "Firefox sessions always allow the fake devices"
        );
        // geckodriver makes a fresh profile for every session and writes the prefs there.
        let mut args = vec![
            "-headless".to_string(),
            "--width=1280".into(),
            "--height=900".into(),
        ];
        args.extend_from_slice(extra);
        let prefs = json!({
            // Fake camera and microphone, no permission prompt.
            "media.navigator.streams.fake": true,
            "media.navigator.permission.disabled": true,
            // Real addresses in host candidates, not mDNS names.
            "media.peerconnection.ice.obfuscate_host_addresses": false,
            "media.autoplay.default": 0,
            "media.autoplay.block-webaudio": false,
            // Nothing from the network but the test server.
            "app.update.enabled": false,
            "browser.shell.checkDefaultBrowser": false,
            "datareporting.policy.dataSubmissionEnabled": false,
            "toolkit.telemetry.enabled": false,
            "network.captive-portal-service.enabled": false,
            "browser.safebrowsing.malware.enabled": false,
            "browser.safebrowsing.phishing.enabled": false,
        });
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("firefox"));
        caps.insert(
            "moz:firefoxOptions".into(),
            json!({ "binary": firefox(), "args": args, "prefs": prefs }),
        );
        self.session(caps, profile).await
    }

    async fn session(&self, caps: Capabilities, profile: tempfile::TempDir) -> Browser {
        // The drivers speak plain HTTP on loopback: no TLS needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("browser session");
        Browser {
            client,
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace of its own, joined to this one by a veth pair
/// (`outside` ↔ `inside`), torn down when dropped. Firefox refuses ICE candidates on
/// loopback addresses, so its tests run it in here: the SFU is reached at `outside`,
/// the pages at 127.0.0.1 through a relay (see [`Netns::relay_http`]).
struct Netns {
    name: String,
    outside: std::net::Ipv4Addr,
    inside: std::net::Ipv4Addr,
    /// Released after the namespace is deleted ([`Drop`] runs before fields drop).
    _network: RwLockWriteGuard<'static, ()>,
}

impl Netns {
    /// Waits until no other browser test runs (see [`NETWORK`]), then makes the namespace.
    fn create() -> Netns {
        let network = NETWORK.write().unwrap_or_else(PoisonError::into_inner);
        let id = std::process::id();
        let name = format!("confab-test-{id}");
        let subnet = (id % 250) as u8 + 1;
        let outside = std::net::Ipv4Addr::new(10, 213, subnet, 1);
        let inside = std::net::Ipv4Addr::new(10, 213, subnet, 2);
        let (veth_out, veth_in) = (
            format!("cfo{}", id % 100_000),
            format!("cfi{}", id % 100_000),
        );
        let netns = Netns {
            name: name.clone(),
            outside,
            inside,
            _network: network,
        };
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "`ip {}` failed: the Firefox tests need root to make a network namespace",
                args.join(" ")
            );
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &veth_out, "type", "veth", "peer", "name", &veth_in,
        ]);
        ip(&["link", "set", &veth_in, "netns", &name]);
        ip(&["addr", "add", &format!("{outside}/30"), "dev", &veth_out]);
        ip(&["link", "set", &veth_out, "up"]);
        let inside_ip = |args: &[&str]| {
            let mut full = vec!["netns", "exec", &name, "ip"];
            full.extend_from_slice(args);
            ip(&full);
        };
        inside_ip(&["addr", "add", &format!("{inside}/30"), "dev", &veth_in]);
        inside_ip(&["link", "set", &veth_in, "up"]);
        inside_ip(&["link", "set", "lo", "up"]);
        // Firefox puts only the address of the default route in its candidates. The
        // route leads to this namespace, which forwards nothing that comes from it.
        inside_ip(&["route", "add", "default", "via", &outside.to_string()]);
        let status = Command::new("sysctl")
            .args([
                "-q",
                "-w",
                &format!("net.ipv4.conf.{veth_out}.forwarding=0"),
            ])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "sysctl failed");
        netns
    }

    /// Runs `f` on a thread inside the namespace: sockets it opens live there.
    fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).expect("namespace file");
                    // SAFETY: setns on this thread only, with a namespace file we hold open.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap()
        })
    }

    /// Serves `base` (http://127.0.0.1:port) at the same address inside the
    /// namespace, so pages there are a secure context with the server's own origin.
    async fn relay_http(&self, base: &str) -> Relay {
        let upstream: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let listener = self
            .run_inside(|| std::net::TcpListener::bind(upstream))
            .expect("relay listens inside the namespace");
        listener.set_nonblocking(true).unwrap();
        Relay::start_on(TcpListener::from_std(listener).unwrap(), upstream)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub(crate) struct Browser {
    pub(crate) client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Waits until the visible text of `css` contains `needle`; returns that text.
    pub(crate) async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if text.contains(needle) {
                    return text;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // What the call page said meanwhile (a failure to start media or a screen share).
        let note = self
            .client
            .execute(
                "return document.getElementById('call-note')?.textContent ?? null",
                vec![],
            )
            .await
            .unwrap_or_default();
        panic!("{css} never showed {needle:?}; last text: {last:?}; call note: {note}");
    }

    /// Polls a JavaScript expression until it returns something truthy; returns it.
    pub(crate) async fn wait_js(&self, expression: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        let script = format!("return {expression};");
        loop {
            let value = self.client.execute(&script, vec![]).await.unwrap();
            let truthy = !matches!(
                &value,
                serde_json::Value::Null | serde_json::Value::Bool(false)
            ) && value != json!(0)
                && value != json!([]);
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "{expression} never became true");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What this page receives, per remote stream and kind (`p3-0:video` →
    /// `{packets, framesDecoded, frameWidth}`), from `RTCPeerConnection.getStats()`.
    pub(crate) async fn inbound(&self) -> serde_json::Value {
        self.client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 window.confab.media.inboundStats().then(done, (e) => done({ error: String(e) }));",
                vec![],
            )
            .await
            .unwrap()
    }

    /// Waits until this page decodes video and receives audio from every participant
    /// in `others`; returns the stats then.
    pub(crate) async fn wait_media_from(&self, others: &[u64]) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.inbound().await;
            let all = others.iter().all(|p| {
                stats[format!("p{p}-0:video")]["framesDecoded"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
                    && stats[format!("p{p}-0:audio")]["packets"]
                        .as_u64()
                        .unwrap_or(0)
                        > 0
            });
            if all {
                return stats;
            }
            if Instant::now() >= deadline {
                let sdp = self
                    .client
                    .execute(
                        "const m = window.confab.media; return [m.subscriber?.remoteDescription?.sdp, m.subscriber?.localDescription?.sdp, m.publisher?.localDescription?.sdp];",
                        vec![],
                    )
                    .await
                    .unwrap_or_default();
                let e2ee = self
                    .client
                    .execute_async(
                        "const done = arguments[0]; const e = window.confab.e2ee;\
                         if (!e) return done(null);\
                         e.workerStats().then((stats) => done({ api: e.api, me: e.me, peers: [...e.peers.keys()], failed: [...e.failed], stats }));",
                        vec![],
                    )
                    .await
                    .unwrap_or_default();
                panic!(
                    "media from {others:?} never arrived; stats: {stats}\nencryption: {e2ee}\nSDP: {sdp}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Video frames this page has decoded from `stream` (`p3-0` camera, `p3-1` screen),
    /// summed over the tracks it had for that stream: one that came back after a drop
    /// has a new track next to its old one.
    pub(crate) async fn frames_decoded(&self, stream: &str) -> u64 {
        self.client
            .execute_async(
                "const [stream, done] = arguments;\
                 const media = window.confab.media;\
                 if (!media.subscriber) return done(0);\
                 media.subscriber.getStats().then((report) => {\
                   let frames = 0;\
                   for (const s of report.values()) {\
                     if (s.type === 'inbound-rtp' && s.kind === 'video' && media.streamOfMid[s.mid] === stream) frames += s.framesDecoded ?? 0;\
                   }\
                   done(frames);\
                 }, () => done(0));",
                vec![json!(stream)],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until this page is decoding video from `stream`: more frames than a
    /// second before.
    pub(crate) async fn wait_video_flowing(&self, stream: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let before = self.frames_decoded(stream).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after = self.frames_decoded(stream).await;
            if after > before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "video from {stream} is not being decoded ({after} frames so far); stats: {}",
                self.inbound().await
            );
        }
    }

    /// The counters of this page's media worker: frames sealed, opened, failed.
    pub(crate) async fn e2ee_stats(&self) -> Value {
        self.client
            .execute_async(
                "const done = arguments[0];\
                 window.confab.e2ee.workerStats().then(done, (e) => done({ error: String(e) }));",
                vec![],
            )
            .await
            .unwrap()
    }

    /// My participant id.
    pub(crate) async fn me(&self) -> u64 {
        let roster = self
            .wait_js("[...document.querySelectorAll('#roster li')].find(li => li.textContent.includes('(you)'))?.dataset.participant")
            .await;
        roster.as_str().unwrap().parse().unwrap()
    }

    pub(crate) async fn sign_in(&self, base: &str, email: &str) {
        self.goto(&format!("{base}/login")).await;
        self.fill("input[name=email]", email).await;
        self.fill("input[name=password]", PASSWORD).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
        self.wait_text("main", "Your links").await;
    }

    /// Sends the join form once the page's script has enabled its button (it starts
    /// disabled, so a click cannot reach the server before the script handles it).
    pub(crate) async fn submit_join(&self) {
        self.wait_js("!document.querySelector('#join-form button[type=submit]').disabled")
            .await;
        self.click("#join-form button[type=submit]").await;
    }

    pub(crate) async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// An app, an owner account and a link; returns (app, base URL, link id).
pub(crate) async fn app_with_link(max_participants: i32) -> (TestApp, String, String) {
    app_with_link_and(max_participants, |_| {}).await
}

pub(crate) async fn app_with_link_and(
    max_participants: i32,
    tweak: impl FnOnce(&mut confab_core::Config),
) -> (TestApp, String, String) {
    let (app, base) = TestApp::served_with(tweak).await;
    let token = app.user_with_token("host@example.org", Role::Admin).await;
    let res = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "Family call", "max_participants": max_participants }))
        .send()
        .await;
    let link = res.json()["id"].as_str().unwrap().to_string();
    (app, base, link)
}

pub(crate) async fn host_joins(driver: &Driver, base: &str, link: &str) -> Browser {
    member_joins(driver.browser().await, base, link, "host@example.org").await
}

/// Signs `page` in as `email` and joins the call directly, as members do.
pub(crate) async fn member_joins(page: Browser, base: &str, link: &str, email: &str) -> Browser {
    page.sign_in(base, email).await;
    page.goto(&format!("{base}/j/{link}#k={SECRET}")).await;
    page.submit_join().await;
    page.wait_text("#roster", &format!("User {email} (you)"))
        .await;
    page
}

pub(crate) async fn guest_asks(driver: &Driver, base: &str, link: &str, name: &str) -> Browser {
    asks_to_join(driver.browser().await, base, link, name).await
}

pub(crate) async fn asks_to_join(guest: Browser, base: &str, link: &str, name: &str) -> Browser {
    guest.goto(&format!("{base}/j/{link}#k={SECRET}")).await;
    guest.wait_text("#join h1", "Family call").await;
    guest.fill("input[name=name]", name).await;
    guest.submit_join().await;
    guest
}

/// `host` admits the guest called `name` who is asking on `guest`; returns the
/// guest's participant id once they are on the call.
pub(crate) async fn admits(host: &Browser, guest: &Browser, name: &str) -> u64 {
    host.wait_text("#lobby", name).await;
    host.click("#lobby li button.primary").await;
    guest.wait_text("#roster", &format!("{name} (you)")).await;
    guest.me().await
}

/// The roster entry of participant `id`, as a CSS selector.
pub(crate) fn roster_row(id: u64) -> String {
    format!("#roster li[data-participant='{id}']")
}

#[tokio::test]
async fn a_guest_asks_the_host_admits_and_later_removes_them() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;

    let guest = guest_asks(&driver, &base, &link, "Zoë <b>").await;
    guest
        .wait_text("#status", "Someone on the call will let you in")
        .await;

    let lobby = host.wait_text("#lobby", "Zoë <b>").await;
    assert!(lobby.contains("waiting 0:0"), "{lobby}");
    host.click("#lobby li button.primary").await;

    let roster = guest.wait_text("#roster", "Zoë <b> (you)").await;
    assert!(roster.contains("User host@example.org"));
    assert!(roster.contains("host") && roster.contains("guest"));
    let host_view = host.wait_text("#roster", "Zoë <b>").await;
    assert!(
        host_view.contains("Remove"),
        "the owner can remove guests: {host_view}"
    );
    host.wait_text("#call", "On the call").await;

    host.click("#roster li button").await;
    guest
        .wait_text(
            "#status",
            "You were removed from the call by User host@example.org",
        )
        .await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn a_locked_lobby_and_a_revoked_link_are_explained_on_the_page() {
    let (app, base, link) = app_with_link(32).await;
    let token = app.token_for("host@example.org").await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "Ana").await;
    admits(&host, &guest, "Ana").await;
    // Guests have no lock; the host locks the lobby and the page says so.
    assert_eq!(
        guest
            .wait_js("document.getElementById('lock-lobby').hidden")
            .await,
        json!(true)
    );
    host.click("#lock-lobby").await;
    host.wait_text("#lobby-state", "Lobby locked").await;
    host.wait_text("#lock-lobby", "Unlock lobby").await;
    let late = guest_asks(&driver, &base, &link, "Late").await;
    late.wait_text("#status", "locked it: nobody new can ask to join")
        .await;

    let res = app
        .post(&format!("/api/v1/links/{link}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    for page in [&host, &guest] {
        page.wait_text("#status", "This link was revoked").await;
        assert_eq!(
            page.wait_js("document.querySelector('#join-form button[type=submit]').disabled")
                .await,
            json!(true),
            "nothing on the page can join a revoked link"
        );
    }
    host.close().await;
    guest.close().await;
    late.close().await;
}

#[tokio::test]
async fn an_early_guest_waits_for_the_host_and_hears_a_denial() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let guest = guest_asks(&driver, &base, &link, "Early bird").await;
    guest
        .wait_text("#status", "Waiting for the host to join")
        .await;

    let host = host_joins(&driver, &base, &link).await;
    guest
        .wait_text("#status", "Someone on the call will let you in")
        .await;
    host.wait_text("#lobby", "Early bird").await;
    host.click("#lobby li button.danger").await;
    guest
        .wait_text("#status", "Your request to join was declined.")
        .await;
    // The form is back for another try.
    guest.wait_text("#join-form", "Ask to join").await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn plugins_screen_guests_and_put_their_activity_into_the_call() {
    // hello denies names with "spam" and relays waves; rogue flags every request.
    let (_plugins, configure) = crate::plugins::hello_and_rogue();
    let (_app, base, link) = app_with_link_and(32, configure).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;

    let spammer = guest_asks(&driver, &base, &link, "Spam bot").await;
    spammer
        .wait_text(
            "#status",
            "Your request to join was declined: names with “spam” are not let in",
        )
        .await;
    spammer.wait_text("#join-form", "Ask to join").await;

    let guest = guest_asks(&driver, &base, &link, "Ana").await;
    let lobby = host
        .wait_text("#lobby", "⚠ Ana looks suspicious (rogue)")
        .await;
    assert!(!lobby.contains("Spam bot"), "{lobby}");
    admits(&host, &guest, "Ana").await;

    // The hello plugin's call-page module: a wave goes to the plugin, which relays
    // it to everyone on the call.
    guest.click("[data-plugin='hello'] button").await;
    host.wait_text("[data-plugin='hello'] .waves", "Ana waves")
        .await;
    guest
        .wait_text("[data-plugin='hello'] .waves", "Ana waves")
        .await;
    host.close().await;
    guest.close().await;
    spammer.close().await;
}

#[tokio::test]
async fn a_full_call_says_so_on_the_page() {
    let (_app, base, link) = app_with_link(1).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "One too many").await;
    guest.wait_text("#status", "This call is full.").await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn the_join_page_previews_the_camera_and_lists_devices() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let guest = driver.browser().await;
    guest.goto(&format!("{base}/j/{link}#k={SECRET}")).await;
    let width = guest
        .wait_js("document.getElementById('preview').videoWidth")
        .await;
    assert!(width.as_u64().unwrap() > 0, "the preview plays the camera");
    let cameras = guest
        .wait_js("[...document.querySelectorAll('#camera option')].map(o => o.textContent)")
        .await;
    assert!(
        cameras[0].as_str().unwrap().contains("fake"),
        "devices are listed by name: {cameras}"
    );
    let microphones = guest
        .wait_js("[...document.querySelectorAll('#microphone option')].map(o => o.textContent)")
        .await;
    assert!(!microphones.as_array().unwrap().is_empty());
    let note_hidden = guest
        .wait_js("document.getElementById('media-note').hidden")
        .await;
    assert_eq!(note_hidden, json!(true));
    guest.close().await;
}

#[tokio::test]
async fn without_camera_permission_the_page_says_so_and_joining_still_works() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = driver.browser_with(false).await;
    guest.goto(&format!("{base}/j/{link}#k={SECRET}")).await;
    guest
        .wait_text(
            "#media-note",
            "isn't allowed to use your camera and microphone",
        )
        .await;
    guest.fill("input[name=name]", "No camera").await;
    guest.submit_join().await;
    guest
        .wait_text("#status", "Someone on the call will let you in")
        .await;
    host.wait_text("#lobby", "No camera").await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn host_and_two_admitted_guests_see_and_hear_each_other() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let ana = guest_asks(&driver, &base, &link, "Ana").await;
    let bo = guest_asks(&driver, &base, &link, "Bo").await;
    for name in ["Ana", "Bo"] {
        host.wait_text("#lobby", name).await;
        host.click("#lobby li button.primary").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ana.wait_text("#roster", "Ana (you)").await;
    bo.wait_text("#roster", "Bo (you)").await;
    let everyone = [&host, &ana, &bo];
    let mut ids = Vec::new();
    for page in everyone {
        ids.push(page.me().await);
    }
    for (i, page) in everyone.iter().enumerate() {
        let others: Vec<u64> = ids.iter().copied().filter(|p| *p != ids[i]).collect();
        media_keeps_flowing(page, &others).await;
        // Every remote participant has a tile, plus one's own.
        let tiles = page
            .wait_js("window.confab.tiles().length >= 3 && window.confab.tiles()")
            .await;
        assert_eq!(tiles.as_array().unwrap().len(), 3, "{tiles}");
    }
    for page in [host, ana, bo] {
        page.close().await;
    }
}

/// Waits until `page` gets video and audio from each of `others`, then checks that
/// both keep going for two more seconds.
async fn media_keeps_flowing(page: &Browser, others: &[u64]) {
    let before = page.wait_media_from(others).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = page.inbound().await;
    for p in others {
        let frames = |s: &serde_json::Value| {
            s[format!("p{p}-0:video")]["framesDecoded"]
                .as_u64()
                .unwrap_or(0)
        };
        let packets =
            |s: &serde_json::Value| s[format!("p{p}-0:audio")]["packets"].as_u64().unwrap_or(0);
        assert!(
            frames(&after) > frames(&before),
            "video from {p} stalled: {before} → {after}"
        );
        assert!(
            packets(&after) > packets(&before),
            "audio from {p} stalled: {before} → {after}"
        );
    }
}

#[tokio::test]
async fn a_firefox_guest_and_a_chromium_host_see_and_hear_each_other() {
    // Firefox runs in a namespace of its own and reaches the SFU over a veth pair.
    let netns = Netns::create();
    let outside = netns.outside;
    let (_app, base, link) = app_with_link_and(32, |c| c.media.bind = outside.into()).await;
    let _pages = netns.relay_http(&base).await;
    let chromium = Driver::start_beside(&netns);
    let firefox = Driver::start_firefox(&netns);
    let host = host_joins(&chromium, &base, &link).await;
    let guest = guest_asks(&firefox, &base, &link, "Fox").await;
    let guest_id = admits(&host, &guest, "Fox").await;
    let host_id = host.me().await;
    media_keeps_flowing(&host, &[guest_id]).await;
    media_keeps_flowing(&guest, &[host_id]).await;
    // Both browsers prefer VP8, the codec the SFU switches simulcast layers on.
    let codec = guest.inbound().await[format!("p{host_id}-0:video")]["codec"].clone();
    assert!(
        codec
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("video/VP8")),
        "{codec}"
    );
    // Through the end-to-end encryption, both ways: each page opens the other's
    // frames (and drops any it cannot), and both show the same safety code.
    for page in [&host, &guest] {
        let stats = page.e2ee_stats().await;
        assert!(stats["opened"].as_u64().unwrap_or(0) > 100, "{stats}");
        assert!(stats["sealed"].as_u64().unwrap_or(0) > 100, "{stats}");
    }
    let code = host
        .wait_text("#e2ee", "End-to-end encrypted · Safety code")
        .await;
    guest.wait_text("#e2ee", &code).await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn media_flows_over_ice_tcp_when_udp_is_unavailable() {
    // The server offers no UDP candidate, as for a browser whose network blocks UDP.
    let (_app, base, link) = app_with_link_and(32, |c| c.media.udp_enabled = false).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "Behind a firewall").await;
    host.wait_text("#lobby", "Behind a firewall").await;
    host.click("#lobby li button.primary").await;
    guest.wait_text("#roster", "Behind a firewall (you)").await;
    let (host_id, guest_id) = (host.me().await, guest.me().await);
    host.wait_media_from(&[guest_id]).await;
    guest.wait_media_from(&[host_id]).await;
    // The selected candidate pair is TCP.
    let protocol = guest
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.confab.media.subscriber.getStats().then((report) => {\
               const pair = [...report.values()].find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated);\
               const remote = pair && report.get(pair.remoteCandidateId);\
               done(remote ? remote.protocol : null);\
             });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(protocol, json!("tcp"));
    host.close().await;
    guest.close().await;
}

const BLOCKED: &str = "You were declined twice and can't ask to join this call again.";

#[tokio::test]
async fn a_guest_denied_twice_is_blocked_and_cannot_ask_again() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "Persistent").await;
    host.wait_text("#lobby", "Persistent").await;
    host.click("#lobby li button.danger").await;
    guest
        .wait_text("#status", "Your request to join was declined.")
        .await;

    guest.submit_join().await;
    guest
        .wait_text("#status", "Someone on the call will let you in")
        .await;
    host.wait_text("#lobby", "Persistent").await;
    host.click("#lobby li button.danger").await;
    guest.wait_text("#status", BLOCKED).await;
    host.wait_js("document.getElementById('lobby-panel').hidden")
        .await;

    // Asking again is refused by the server: the guest hears so again (the old
    // message is wiped first, so this one is new) and the host is not asked.
    guest
        .client
        .execute(
            "document.getElementById('status').textContent = '';",
            vec![],
        )
        .await
        .unwrap();
    guest.submit_join().await;
    guest.wait_text("#status", BLOCKED).await;
    let lobby_hidden = host
        .client
        .execute(
            "return document.getElementById('lobby-panel').hidden && document.getElementById('lobby').children.length === 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(lobby_hidden, json!(true), "the host was asked again");
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn a_member_who_is_not_the_owner_removes_a_guest_within_the_window() {
    let (app, base, link) = app_with_link(32).await;
    app.user_with_token("member@example.org", Role::Member)
        .await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let member = member_joins(driver.browser().await, &base, &link, "member@example.org").await;
    let guest = guest_asks(&driver, &base, &link, "Visitor").await;
    let guest_id = admits(&host, &guest, "Visitor").await;

    // The member, not the owner, sees how long they may still remove the guest.
    let row = member.wait_text(&roster_row(guest_id), "Visitor").await;
    assert!(row.contains("Remove ("), "a countdown: {row}");
    member
        .click(&format!("{} button", roster_row(guest_id)))
        .await;
    guest
        .wait_text(
            "#status",
            "You were removed from the call by User member@example.org.",
        )
        .await;
    host.wait_js(&format!(
        "!document.querySelector(\"{}\")",
        roster_row(guest_id)
    ))
    .await;
    for page in [host, member, guest] {
        page.close().await;
    }
}

#[tokio::test]
async fn after_the_removal_window_only_the_owner_can_remove_a_guest() {
    let (app, base, link) = app_with_link_and(32, |c| c.calls.removal_window_secs = 2).await;
    app.user_with_token("member@example.org", Role::Member)
        .await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let member = member_joins(driver.browser().await, &base, &link, "member@example.org").await;
    let guest = guest_asks(&driver, &base, &link, "Visitor").await;
    let guest_id = admits(&host, &guest, "Visitor").await;
    let row = roster_row(guest_id);

    // The member's countdown runs out and the Remove button goes; the owner keeps theirs.
    member.wait_text(&row, "Visitor").await;
    member
        .wait_js(&format!(
            "document.querySelector(\"{row}\") && !document.querySelector(\"{row} button\")"
        ))
        .await;
    host.wait_text(&format!("{row} button"), "Remove").await;
    // The server's clock is past the window too.
    app.clock.advance(chrono::Duration::seconds(3));

    // A removal the member's page sends anyway, over its own connection, is refused
    // and the page says why.
    member
        .client
        .execute(
            "window.confab.media.hooks.send({ type: 'remove', participant: arguments[0] });",
            vec![json!(guest_id)],
        )
        .await
        .unwrap();
    member
        .wait_text(
            "#call-note",
            "only the link's owner can remove a guest after their first 2 seconds",
        )
        .await;
    // The guest is still on the call, and everyone still sees them.
    guest.wait_text("#roster", "Visitor (you)").await;
    guest
        .wait_js("!document.getElementById('call').hidden")
        .await;
    member.wait_text(&row, "Visitor").await;

    // The owner still can.
    host.click(&format!("{row} button")).await;
    guest
        .wait_text(
            "#status",
            "You were removed from the call by User host@example.org.",
        )
        .await;
    for page in [host, member, guest] {
        page.close().await;
    }
}

/// A participant without a browser: a signaling WebSocket that is read in the
/// background, so that the server never waits on it. Fills a call cheaply (no media).
struct SignalingClient {
    sink: SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>,
    inbox: mpsc::UnboundedReceiver<Value>,
}

impl SignalingClient {
    async fn open(base: &str, link: &str, cookies: Option<&str>) -> SignalingClient {
        let mut request = format!("{}/j/{link}/ws", base.replacen("http", "ws", 1))
            .into_client_request()
            .unwrap();
        if let Some(cookies) = cookies {
            request
                .headers_mut()
                .insert("cookie", cookies.parse().unwrap());
        }
        // Each from an address of its own: the server limits guests per address.
        let stream = crate::support::ws_connect_from(request, crate::support::fresh_loopback())
            .await
            .expect("websocket opens");
        let (sink, mut source) = stream.split();
        let (to_inbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = source.next().await {
                if let Message::Text(text) = frame
                    && to_inbox.send(serde_json::from_str(&text).unwrap()).is_err()
                {
                    break;
                }
            }
        });
        SignalingClient { sink, inbox }
    }

    async fn send(&mut self, message: Value) {
        self.sink
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// The next message of type `kind`, skipping others but errors.
    async fn expect(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let message = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .unwrap_or_else(|_| panic!("no {kind} message within 15 s"))
                .expect("connection open");
            if message["type"] == kind {
                return message;
            }
            assert_ne!(message["type"], "error", "expected {kind}");
        }
    }
}

#[tokio::test]
async fn the_33rd_person_sees_that_the_call_is_full() {
    let (app, base, link) = app_with_link(32).await;
    let owner_cookies = app.sign_in("host@example.org").await.cookies;
    let mut owner = SignalingClient::open(&base, &link, Some(&owner_cookies)).await;
    owner.send(json!({ "v": 1, "type": "join" })).await;
    owner.expect("joined").await;
    let mut guests = Vec::new();
    for i in 2..=32 {
        let mut guest = SignalingClient::open(&base, &link, None).await;
        guest
            .send(json!({
                "v": 1,
                "type": "join",
                "name": format!("Guest {i}"),
                "guest_key": format!("guest-key-number-{i:02}"),
            }))
            .await;
        let request = guest.expect("waiting").await["request"].clone();
        owner
            .send(json!({ "v": 1, "type": "admit", "request": request }))
            .await;
        guest.expect("joined").await;
        guests.push(guest);
    }
    loop {
        let roster = owner.expect("roster").await;
        if roster["participants"].as_array().unwrap().len() == 32 {
            break;
        }
    }

    let driver = Driver::start();
    let late = guest_asks(&driver, &base, &link, "Number 33").await;
    late.wait_text("#status", "This call is full.").await;
    // The form is back, to try again later.
    late.wait_text("#join-form", "Ask to join").await;
    // Nobody was put in the lobby for the owner to admit: every lobby snapshot since
    // the 32nd joined, up to the answer to a ping, is empty.
    owner.send(json!({ "v": 1, "type": "ping" })).await;
    loop {
        let message = owner.inbox.recv().await.expect("connection open");
        match message["type"].as_str() {
            Some("pong") => break,
            Some("lobby") => assert_eq!(message["requests"], json!([]), "{message}"),
            Some("roster") => {}
            _ => panic!("unexpected {message}"),
        }
    }
    late.close().await;
}

/// The host and a guest called Presenter on a call, with media flowing; returns
/// (host, guest, guest's participant id).
async fn presenter_on_a_call(driver: &Driver, base: &str, link: &str) -> (Browser, Browser, u64) {
    let host = host_joins(driver, base, link).await;
    let guest = guest_asks(driver, base, link, "Presenter").await;
    let guest_id = admits(&host, &guest, "Presenter").await;
    host.wait_media_from(&[guest_id]).await;
    (host, guest, guest_id)
}

#[tokio::test]
async fn a_shared_screen_reaches_the_others_as_a_second_video() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let (host, guest, guest_id) = presenter_on_a_call(&driver, &base, &link).await;
    let row = roster_row(guest_id);

    guest.click("#toggle-screen").await;
    guest.wait_text("#toggle-screen", "Stop sharing").await;
    let screen = format!("p{guest_id}-1");
    host.wait_video_flowing(&screen).await;
    host.wait_text(&row, "sharing screen").await;
    let caption = host
        .wait_js(&format!(
            "document.querySelector('[data-stream=\"{screen}\"] figcaption')?.textContent"
        ))
        .await;
    assert_eq!(caption, json!("Presenter's screen"));

    guest.click("#toggle-screen").await;
    guest.wait_text("#toggle-screen", "Share screen").await;
    host.wait_js(&format!(
        "!window.confab.tiles().includes('{screen}') && !document.querySelector(\"{row}\").textContent.includes('sharing screen')"
    ))
    .await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn the_camera_keeps_going_while_the_screen_is_shared_stopped_and_shared_again() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let (host, guest, guest_id) = presenter_on_a_call(&driver, &base, &link).await;
    let camera = format!("p{guest_id}-0");
    let screen = format!("p{guest_id}-1");

    guest.click("#toggle-screen").await;
    host.wait_video_flowing(&screen).await;
    host.wait_video_flowing(&camera).await;
    guest.click("#toggle-screen").await;
    guest.wait_text("#toggle-screen", "Share screen").await;
    host.wait_js(&format!("!window.confab.tiles().includes('{screen}')"))
        .await;
    host.wait_video_flowing(&camera).await;
    // Sharing again shows the screen again, and the camera still goes on.
    guest.click("#toggle-screen").await;
    guest.wait_text("#toggle-screen", "Stop sharing").await;
    host.wait_video_flowing(&screen).await;
    host.wait_video_flowing(&camera).await;
    host.close().await;
    guest.close().await;
}

/// How a Cut picks the connections it drops: by the first bytes their client sent.
type Cut = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A TCP relay standing in for one browser's network path to the server. It can
/// fail: [`Relay::down`] closes the relayed connections a test picks and closes new
/// ones like them at once, until [`Relay::up`].
struct Relay {
    cut: watch::Sender<Option<Cut>>,
}

impl Relay {
    async fn start(listen: SocketAddr, upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind(listen).await.expect("relay listens");
        Relay::start_on(listener, upstream)
    }

    fn start_on(listener: TcpListener, upstream: SocketAddr) -> Relay {
        let (cut, watching) = watch::channel(None);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, watching.clone()));
            }
        });
        Relay { cut }
    }

    fn down(&self, which: impl Fn(&[u8]) -> bool + Send + Sync + 'static) {
        self.cut.send_replace(Some(Arc::new(which)));
    }

    fn up(&self) {
        self.cut.send_replace(None);
    }
}

/// Relays one connection until either side closes it or a cut picks it. Browsers
/// speak first on both HTTP and ICE-TCP, so the first bytes are there to pick by.
async fn relay(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<Option<Cut>>) {
    let mut first = vec![0; 4096];
    let Ok(n) = client.read(&mut first).await else {
        return;
    };
    first.truncate(n);
    let picked = |cut: &Option<Cut>| cut.as_ref().is_some_and(|c| c(&first));
    if n == 0 || picked(&cut.borrow()) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&first).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(picked) => {}
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn after_a_network_drop_a_guest_comes_back_to_the_call_with_media() {
    // Everyone reaches the server at 127.0.0.1 except the guest, whose page and media go
    // through relays on 127.0.0.2: the page by a host name only the guest's browser
    // maps there, media (ICE-TCP only) by the address the server announces. The host's
    // media goes through the media relay too, but a cut picks only the guest's.
    let relayed: IpAddr = [127, 0, 0, 2].into();
    let media_port = free_tcp_port();
    let (app, direct, link) = app_with_link_and(32, |c| {
        c.server.public_url = c.server.public_url.replace("127.0.0.1", "confab.test");
        c.media.udp_enabled = false;
        c.media.tcp_port = media_port;
        c.media.public_ips = vec![relayed];
    })
    .await;
    let server: SocketAddr = direct.trim_start_matches("http://").parse().unwrap();
    let base = format!("http://confab.test:{}", server.port());
    let web = Relay::start(SocketAddr::new(relayed, server.port()), server).await;
    let media = Relay::start(
        SocketAddr::new(relayed, media_port),
        SocketAddr::new(server.ip(), media_port),
    )
    .await;
    let reaching = |ip: &str| {
        vec![
            format!("--host-resolver-rules=MAP confab.test {ip}"),
            // A camera needs a secure context, which plain HTTP has only on loopback names.
            format!("--unsafely-treat-insecure-origin-as-secure={base}"),
        ]
    };
    let driver = Driver::start();
    let host = member_joins(
        driver.browser_with_args(&reaching("127.0.0.1")).await,
        &base,
        &link,
        "host@example.org",
    )
    .await;
    let guest = asks_to_join(
        driver.browser_with_args(&reaching("127.0.0.2")).await,
        &base,
        &link,
        "Traveller",
    )
    .await;
    let guest_id = admits(&host, &guest, "Traveller").await;
    let host_id = host.me().await;
    host.wait_media_from(&[guest_id]).await;
    guest.wait_media_from(&[host_id]).await;

    // The guest's ICE connections, by the STUN user name their checks carry
    // (server's ufrag:browser's ufrag).
    let names = guest
        .wait_js(
            "(() => { const m = window.confab.media;\
               const ufrag = (d) => /a=ice-ufrag:(\\S+)/.exec(d?.sdp ?? '')?.[1];\
               return [m.publisher, m.subscriber].map((pc) => `${ufrag(pc.remoteDescription)}:${ufrag(pc.localDescription)}`); })()",
        )
        .await;
    let names: Vec<Vec<u8>> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().as_bytes().to_vec())
        .collect();

    // The guest's network drops: page and media.
    web.down(|_| true);
    media.down(move |first| {
        names
            .iter()
            .any(|name| first.windows(name.len()).any(|w| w == name.as_slice()))
    });
    let dropped = Instant::now();
    host.wait_text(&roster_row(guest_id), "reconnecting…").await;
    guest.wait_text("#call-note", "Reconnecting").await;
    guest
        .wait_js("window.confab.media.publisher?.connectionState !== 'connected'")
        .await;
    let down_for = Duration::from_secs(3).saturating_sub(dropped.elapsed());
    tokio::time::sleep(down_for).await;
    web.up();
    media.up();

    // Back in the same place, without the lobby, and media flows again both ways.
    host.wait_js(&format!(
        "(() => {{ const row = document.querySelector(\"{}\"); return row && !row.textContent.includes('reconnecting'); }})()",
        roster_row(guest_id)
    ))
    .await;
    guest.wait_text("#roster", "Traveller (you)").await;
    assert_eq!(guest.me().await, guest_id);
    host.wait_video_flowing(&format!("p{guest_id}-0")).await;
    guest.wait_video_flowing(&format!("p{host_id}-0")).await;
    let kinds: Vec<String> = app
        .store
        .call_events(&link)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["call_started", "join_requested", "admitted"],
        "nobody was asked to admit the guest again"
    );
    host.close().await;
    guest.close().await;
}

/// The text of the file the calendar module last downloaded from the element `css`
/// (it keeps the file there as `calendarFile`).
async fn downloaded_text(page: &Browser, css: &str) -> String {
    page.wait_js(&format!("document.querySelector({css:?})?.calendarFile"))
        .await;
    page.client
        .execute_async(
            "const [css, done] = arguments;\
             document.querySelector(css).calendarFile.text().then(done, (e) => done('error: ' + e));",
            vec![json!(css)],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_dashboard_adds_call_links_to_events_and_schedules_calls() {
    let (app, base) = TestApp::served_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
    })
    .await;
    let token = app.user_with_token("host@example.org", Role::Member).await;
    let undated = app.create_link(&token, "Undated call").await;
    let undated = undated["id"].as_str().unwrap().to_string();
    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    page.wait_text(
        "section[data-plugin='calendar']",
        "Add call link to an event",
    )
    .await;

    // Paste an event exported from a calendar app: it comes back with a link.
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//macOS 15.1//EN\r\nBEGIN:VEVENT\r\nUID:5E1D2C3B-dash@example.org\r\nDTSTAMP:20261120T120000Z\r\nDTSTART:20261210T150000Z\r\nDTEND:20261210T153000Z\r\nSUMMARY:Café planning\r\nLOCATION:Room 4\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    page.client
        .execute(
            "document.querySelector(\"[data-calendar='add-link'] textarea[name=ics]\").value = arguments[0];",
            vec![json!(ics)],
        )
        .await
        .unwrap();
    page.click("[data-calendar='add-link'] button[type=submit]")
        .await;
    page.wait_text(
        "[data-calendar='add-link'] .status",
        "Added a call link to 1 event",
    )
    .await;
    let file = downloaded_text(&page, "[data-calendar='add-link'] .status").await;
    let unfolded = file.replace("\r\n ", "");
    assert!(unfolded.contains("LOCATION:Room 4"), "{file}");
    assert!(
        unfolded.contains(&format!("URL;VALUE=URI:{base}/j/")),
        "{file}"
    );
    assert!(
        unfolded.contains("CONFERENCE;VALUE=URI;FEATURE=VIDEO"),
        "{file}"
    );

    // A refused file says why, next to the form.
    page.client
        .execute(
            "document.querySelector(\"[data-calendar='add-link'] textarea[name=ics]\").value = 'not a calendar';",
            vec![],
        )
        .await
        .unwrap();
    page.click("[data-calendar='add-link'] button[type=submit]")
        .await;
    page.wait_text("[data-calendar='add-link'] .status.error", "iCalendar")
        .await;

    // "Add to calendar" on a link without a date asks for one, and keeps the link.
    page.click(&format!(
        "li[data-link-id='{undated}'] button[data-plugin='calendar']"
    ))
    .await;
    page.wait_text(
        "[data-calendar='schedule'] .notice",
        "Pick a time for “Undated call”",
    )
    .await;
    page.client
        .execute(
            "const form = document.querySelector(\"[data-calendar='schedule']\");\
             form.elements.start.value = '2026-12-14T09:30';\
             form.elements.duration.value = '25';\
             form.elements.time_zone.value = 'Europe/Paris';\
             form.elements.rrule.value = 'FREQ=WEEKLY';",
            vec![],
        )
        .await
        .unwrap();
    page.click("[data-calendar='schedule'] button[type=submit]")
        .await;
    page.wait_text("[data-calendar='schedule'] .status", "Scheduled")
        .await;
    let file = downloaded_text(&page, "[data-calendar='schedule'] .status").await;
    let unfolded = file.replace("\r\n ", "");
    assert!(
        unfolded.contains(&format!("URL;VALUE=URI:{base}/j/{undated}\r\n")),
        "{file}"
    );
    assert!(unfolded.contains("DTSTART;TZID=Europe/Paris:20261214T093000\r\n"));
    assert!(unfolded.contains("RRULE:FREQ=WEEKLY\r\n"));

    // The dashboard shows the new date once the list is refreshed.
    page.click("[data-calendar='schedule'] .status button")
        .await;
    page.wait_text(
        &format!("li[data-link-id='{undated}']"),
        "Mon 14 Dec 2026, 09:30–09:55 (Europe/Paris), repeats",
    )
    .await;
    // Now "Add to calendar" downloads straight away.
    page.wait_text("section[data-plugin='calendar']", "Schedule a call")
        .await;
    page.click(&format!(
        "li[data-link-id='{undated}'] button[data-plugin='calendar']"
    ))
    .await;
    let file = downloaded_text(
        &page,
        &format!("li[data-link-id='{undated}'] button[data-plugin='calendar']"),
    )
    .await;
    assert!(file.contains("METHOD:PUBLISH\r\n"), "{file}");
    assert!(file.contains("SUMMARY:Undated call\r\n"), "{file}");
    page.close().await;
}

/// A served app with the bundled plugins, the outbox delivering to `.eml` files
/// (the default) under its data directory, and a link called `title` of
/// host@example.org's. Returns the app, its base URL, the delivery and the link id.
async fn app_with_email_invites(
    title: &str,
) -> (TestApp, String, confab_core::mail::Delivery, String) {
    let (app, base) = TestApp::served_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
        c.mail.poll_interval_ms = 50;
    })
    .await;
    let delivery = app.start_mail();
    let token = app.user_with_token("host@example.org", Role::Member).await;
    let link = app.create_link(&token, title).await;
    let id = link["id"].as_str().unwrap().to_string();
    (app, base, delivery, id)
}

/// Fills in the invitation form `form` (addresses and maybe a note) and sends it.
async fn invite_through(page: &Browser, form: &str, recipients: &str, note: Option<&str>) {
    page.fill(&format!("{form} textarea[name=recipients]"), recipients)
        .await;
    if let Some(note) = note {
        page.fill(&format!("{form} textarea[name=note]"), note)
            .await;
    }
    page.click(&format!("{form} button[type=submit]")).await;
}

/// The mails the outbox has written as `.eml` files, once there are `n` of them,
/// each as `mime.py` reads it.
async fn delivered_mails(app: &TestApp, n: usize) -> Vec<Value> {
    let dir = app.state.config.data_dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        if files.len() >= n {
            assert_eq!(files.len(), n, "{files:?}");
            return files.iter().map(crate::smtp::mime).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} mails in {}",
            files.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every link to `base` in a mail's text and HTML, each of which must be `url`.
fn assert_links_are(m: &Value, base: &str, url: &str) {
    let links = crate::mail::links_starting(m, base);
    assert!(links.len() >= 2, "{m:#}");
    assert!(links.iter().all(|l| l == url), "{links:?} ≠ {url}");
}

/// The mails' recipients, as (name, address), sorted by address.
fn recipients_of(mails: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            let to = &m["addresses"]["to"][0];
            (
                to["name"].as_str().unwrap_or_default().to_string(),
                to["addr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[tokio::test]
async fn email_invitations_from_the_dashboard_carry_the_link_as_shown() {
    let (app, base, delivery, id) = app_with_email_invites("Planning").await;
    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    let row = format!("li[data-link-id='{id}']");
    let shown = page
        .wait_js(&format!("document.querySelector({row:?})?.dataset.linkUrl"))
        .await;
    let shown = shown.as_str().unwrap().to_string();
    assert!(shown.starts_with(&format!("{base}/j/{id}")), "{shown}");

    page.wait_text(
        &format!("{row} button[data-plugin='email-invites']"),
        "Invite by email",
    )
    .await;
    page.click(&format!("{row} button[data-plugin='email-invites']"))
        .await;
    let form = format!("form[data-email-invites='{id}']");
    invite_through(
        &page,
        &form,
        "\"Lima, Ana\" <ana@example.org>, bo@example.org",
        Some("Bring the numbers."),
    )
    .await;
    page.wait_text(&format!("{form} .status"), "Invitation sent to 2 people")
        .await;

    let mails = delivered_mails(&app, 2).await;
    assert_eq!(
        recipients_of(&mails),
        [
            ("Lima, Ana".to_string(), "ana@example.org".to_string()),
            (String::new(), "bo@example.org".to_string())
        ]
    );
    for m in &mails {
        assert_links_are(m, &base, &shown);
        let text = crate::mail::leaves(&m["tree"])
            .into_iter()
            .find(|l| l["content_type"] == "text/plain")
            .and_then(|l| l["text"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(text.contains("Bring the numbers."), "{text}");
    }

    // Something that is not an address: the server's reason, next to the form.
    invite_through(&page, &form, "not-an-address", None).await;
    page.wait_text(
        &format!("{form} .status.error"),
        "“not-an-address” is not an email address",
    )
    .await;
    let counts = app.store.outbox_counts().await.unwrap();
    assert_eq!(counts.queued + counts.sent + counts.failed, 2, "{counts:?}");
    delivery.stop().await;
    page.close().await;
}

#[tokio::test]
async fn email_invitations_from_the_call_page_carry_the_links_fragment() {
    const KEY: &str = "#k=AbC-_9xYz0123456789-_Q";
    let (app, base, delivery, id) = app_with_email_invites("Family call").await;
    let driver = Driver::start();
    let host = driver.browser().await;
    host.sign_in(&base, "host@example.org").await;
    host.goto(&format!("{base}/j/{id}{KEY}")).await;
    host.submit_join().await;
    host.wait_text("#roster", "User host@example.org (you)")
        .await;

    // The page gives the plugins the session's CSRF token (a guest's has none).
    host.wait_js("document.getElementById('call').dataset.csrf?.length > 20")
        .await;
    let panel = "[data-plugin='email-invites']";
    host.wait_text(&format!("{panel} summary"), "Invite by email")
        .await;
    host.click(&format!("{panel} summary")).await;
    invite_through(&host, panel, "zoe@example.net", None).await;
    host.wait_text(&format!("{panel} .status"), "Invitation sent to 1 person")
        .await;
    let mails = delivered_mails(&app, 1).await;
    assert_eq!(recipients_of(&mails)[0].1, "zoe@example.net");
    assert_links_are(&mails[0], &base, &format!("{base}/j/{id}{KEY}"));

    // A guest on the same call has no panel.
    let guest = guest_asks(&driver, &base, &id, "Zoë").await;
    admits(&host, &guest, "Zoë").await;
    let seen = guest
        .client
        .execute_async(
            "const [done] = arguments;\
             window.confab.plugins.load().then(() => {\
               const section = document.querySelector(\"[data-plugin='email-invites']\");\
               done({ loaded: !!section, visible: !!section?.offsetParent, forms: section?.querySelectorAll('form').length ?? 0,\
                      csrf: 'csrf' in document.getElementById('call').dataset });\
             }, (e) => done({ error: String(e) }));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        seen,
        json!({ "loaded": true, "visible": false, "forms": 0, "csrf": false }),
        "the guest's page"
    );
    let call = guest
        .client
        .find(Locator::Css("#call"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!call.contains("Invite by email"), "{call}");
    delivery.stop().await;
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn a_link_made_on_the_dashboard_gets_its_secret_in_the_browser() {
    let (app, base) = TestApp::served_with(|_| {}).await;
    let token = app.user_with_token("host@example.org", Role::Member).await;
    let elsewhere = app.create_link(&token, "Made with the API").await;
    let elsewhere = elsewhere["id"].as_str().unwrap().to_string();
    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    page.fill("form[data-new-link] input[name=title]", "Secret call")
        .await;
    page.click("form[data-new-link] [data-remember-secret]")
        .await;
    page.click("form[data-new-link] button[type=submit]").await;
    let id = page
        .wait_js("document.querySelector('li[data-link-created]')?.dataset.linkId")
        .await;
    let id = id.as_str().unwrap().to_string();

    let row = |id: &str| {
        format!(
            "(() => {{ const li = document.querySelector(\"li[data-link-id='{id}']\");\
             return {{ input: li.querySelector('input.url').value, copy: li.querySelector('[data-copy]').dataset.copy,\
             shared: li.dataset.linkUrl, hint: !li.querySelector('[data-secret-missing]').hidden,\
             once: !li.querySelector('[data-secret-once]').hidden,\
             stored: localStorage.getItem('confab.secret.{id}'), address: location.href }}; }})()"
        )
    };
    let made = page.wait_js(&row(&id)).await;
    let secret = made["stored"].as_str().unwrap_or_else(|| panic!("{made}"));
    assert!(crate::support::is_link_secret(secret), "{made}");
    let full = format!("{base}/j/{id}#k={secret}");
    assert_eq!(made["input"], full.as_str(), "{made}");
    assert_eq!(made["copy"], full.as_str(), "{made}");
    assert_eq!(made["shared"], full.as_str(), "what plugins' modules read");
    assert_eq!(made["hint"], false, "{made}");
    assert_eq!(made["address"], format!("{base}/dashboard"), "{made}");

    // A link this browser has no secret for: the server's address and a hint.
    let other = page.wait_js(&row(&elsewhere)).await;
    assert_eq!(other["input"], format!("{base}/j/{elsewhere}"), "{other}");
    assert_eq!(other["copy"], format!("{base}/j/{elsewhere}"), "{other}");
    assert_eq!(other["hint"], true, "{other}");
    assert_eq!(other["stored"], Value::Null);

    // The server never had it: not in the page it served, not in its record.
    let served = page
        .client
        .execute_async(
            "const [done] = arguments; fetch('/dashboard').then(r => r.text()).then(done, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let served = served.as_str().unwrap();
    assert!(served.contains(&id) && !served.contains(secret));
    let record = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&token)
        .send()
        .await
        .text();
    assert!(record.contains(&id) && !record.contains(secret), "{record}");
    assert!(crate::links::database_contains(&app, &id).await);
    assert!(!crate::links::database_contains(&app, secret).await);

    assert_eq!(made["once"], false, "{made}");

    // A reload keeps the full link.
    page.goto(&format!("{base}/dashboard")).await;
    let again = page.wait_js(&row(&id)).await;
    assert_eq!(again["input"], full.as_str(), "{again}");

    // Without "remember", the full link is shown once, and the device keeps nothing.
    page.fill("form[data-new-link] input[name=title]", "Once")
        .await;
    page.click("form[data-new-link] button[type=submit]").await;
    let once = page
        .wait_js(&format!(
            "document.querySelector('li[data-link-created]:not([data-link-id=\"{id}\"])')?.dataset.linkId"
        ))
        .await;
    let once = once.as_str().unwrap().to_string();
    let shown = page.wait_js(&row(&once)).await;
    let (_, secret_once) = shown["input"]
        .as_str()
        .unwrap()
        .split_once("#k=")
        .unwrap_or_else(|| panic!("the full link is shown: {shown}"));
    assert!(crate::support::is_link_secret(secret_once), "{shown}");
    assert_eq!(shown["once"], true, "the page says to copy it now: {shown}");
    assert_eq!(shown["stored"], Value::Null, "{shown}");
    page.goto(&format!("{base}/dashboard")).await;
    let later = page.wait_js(&row(&once)).await;
    assert_eq!(later["input"], format!("{base}/j/{once}"), "{later}");
    assert_eq!(later["hint"], true, "{later}");

    // Signing out clears what the device remembered.
    page.click("form[action='/logout'] button").await;
    page.wait_js("location.pathname === '/login'").await;
    let left = page
        .wait_js("JSON.stringify(Object.keys(localStorage))")
        .await;
    assert_eq!(
        left,
        json!("[]"),
        "nothing stays on the device after sign-out"
    );
    page.close().await;
}
