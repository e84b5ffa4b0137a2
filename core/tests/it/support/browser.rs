//! Real headless browsers for the UI tests: Debian's `chromium` driven through
//! `chromedriver`, and Debian's `firefox-esr` through `geckodriver` (`bash .ci/run`
//! installs all of them). Set CONFAB_CHROMIUM, CONFAB_CHROMEDRIVER, CONFAB_FIREFOX and
//! CONFAB_GECKODRIVER to use other paths. Also the steps of the join flow the tests
//! share: an app with a link, the host joining, a guest asking, being admitted.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{PoisonError, RwLockReadGuard};
use std::time::{Duration, Instant};

use confab_core::accounts::Role;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::netns::{NETWORK, Netns};
use super::{PASSWORD, TestApp};

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
    pub(crate) fn start_beside(_netns: &Netns) -> Driver {
        Driver::spawn(&[chromium(), chromedriver()], chromedriver(), None)
    }

    /// geckodriver, for Firefox, running in `netns` (see [`Netns`]).
    pub(crate) fn start_firefox(netns: &Netns) -> Driver {
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
    pub(crate) async fn browser_with(&self, allow_media: bool) -> Browser {
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
        // The watch-together test's video server has a self-signed certificate.
        caps.insert("acceptInsecureCerts".into(), json!(true));
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

pub(crate) struct Browser {
    pub(crate) client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Enters the sandboxed frame of `plugin`'s web code on this page once it is
    /// there: later commands act inside it, until [`Browser::top`].
    pub(crate) async fn frame(&self, plugin: &str) {
        self.frame_at(&format!("iframe[data-plugin='{plugin}']"))
            .await;
    }

    /// Enters the plugin frame `css` names; see [`Browser::frame`].
    pub(crate) async fn frame_at(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(frame) = self.client.find(Locator::Css(css)).await
                && frame.enter_frame().await.is_ok()
            {
                // The kit has started the module once the frame's root has content.
                let started = self
                    .client
                    .execute(
                        "return document.getElementById('plugin')?.childElementCount ?? 0",
                        vec![],
                    )
                    .await
                    .ok()
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                if started > 0 {
                    return;
                }
                self.client.enter_parent_frame().await.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the plugin frame {css} never started"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keeps `link`'s secret (the tests' [`SECRET`]) in this browser, where the
    /// dashboard keeps the secrets it is asked to remember.
    pub(crate) async fn remember_secret(&self, link: &str) {
        self.client
            .execute(
                "localStorage.setItem(arguments[0], arguments[1]); return null;",
                vec![json!(format!("confab.secret.{link}")), json!(SECRET)],
            )
            .await
            .unwrap();
    }

    /// Back from a plugin's frame to the page.
    pub(crate) async fn top(&self) {
        self.client.enter_parent_frame().await.unwrap();
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
        // What the call page said meanwhile (a failure to start media or a screen
        // share, a refusal, a lost connection), hidden or not.
        let said = self
            .client
            .execute(
                "return ['status', 'call-note'].map((id) => `${id}: ${JSON.stringify(document.getElementById(id)?.textContent ?? null)}`).join('; ')",
                vec![],
            )
            .await
            .unwrap_or_default();
        panic!("{css} never showed {needle:?}; last text: {last:?}; the page said {said}");
    }

    /// Polls a JavaScript expression until it returns something truthy; returns it.
    pub(crate) async fn wait_js(&self, expression: &str) -> serde_json::Value {
        self.wait_js_within(expression, Duration::from_secs(15))
            .await
    }

    /// [`Browser::wait_js`] with its own time limit.
    pub(crate) async fn wait_js_within(
        &self,
        expression: &str,
        limit: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
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
        // The page's modules load first; on a loaded machine (the whole suite with
        // several browsers on two cores) that has taken more than 15 s.
        self.wait_js_within(
            "!document.querySelector('#join-form button[type=submit]').disabled",
            Duration::from_secs(40),
        )
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
    // The server took the decision once the request leaves the host's lobby. On a
    // loaded machine a WebDriver click has been seen to go nowhere (cause not
    // found): click again, as a person would, at most three times in all.
    let gone = format!("return !document.getElementById('lobby').textContent.includes({name:?})");
    let mut admitted = false;
    for _ in 0..3 {
        // The entry may leave between the check and the click: then there is
        // nothing to click, and the check below sees it gone.
        if let Ok(button) = host
            .client
            .find(Locator::Css("#lobby li button.primary"))
            .await
        {
            // Shown when the test fails: a click WebDriver refused, or none.
            if let Err(err) = button.click().await {
                eprintln!("the host's Admit click for {name} failed: {err}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if host.client.execute(&gone, vec![]).await.unwrap() == json!(true) {
                admitted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if admitted {
            break;
        }
        eprintln!("the host's Admit click for {name} changed nothing within 5 s; clicking again");
    }
    assert!(
        admitted,
        "{name} stayed in the host's lobby after three Admit clicks"
    );
    guest.wait_text("#roster", &format!("{name} (you)")).await;
    guest.me().await
}

/// The roster entry of participant `id`, as a CSS selector.
pub(crate) fn roster_row(id: u64) -> String {
    format!("#roster li[data-participant='{id}']")
}
