//! The join flow in real headless Chromium: Debian's `chromium` driven through
//! `chromedriver` (`bash .ci/run` installs both). Set CONFAB_CHROMIUM and
//! CONFAB_CHROMEDRIVER to use other paths.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confab_core::accounts::Role;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{PASSWORD, TestApp};

fn chromium() -> String {
    std::env::var("CONFAB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("CONFAB_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// A chromedriver process, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        for path in [chromium(), chromedriver()] {
            assert!(
                std::path::Path::new(&path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver (bash .ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that dropping the driver also ends every browser it
        // started, even when a test fails before closing its sessions.
        let child = Command::new(chromedriver())
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A fresh headless browser with its own profile and fake camera and microphone.
    async fn browser(&self) -> Browser {
        self.browser_with(true).await
    }

    /// Like [`Driver::browser`]; with `allow_media` false, camera and microphone
    /// requests are denied as if the user said no.
    async fn browser_with(&self, allow_media: bool) -> Browser {
        let profile = tempfile::tempdir().unwrap();
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
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium(), "args": args }),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS needed.
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

struct Browser {
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Waits until the visible text of `css` contains `needle`; returns that text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
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
        panic!("{css} never showed {needle:?}; last text: {last:?}");
    }

    /// Polls a JavaScript expression until it returns something truthy; returns it.
    async fn wait_js(&self, expression: &str) -> serde_json::Value {
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
    async fn inbound(&self) -> serde_json::Value {
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
    async fn wait_media_from(&self, others: &[u64]) -> serde_json::Value {
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
                panic!("media from {others:?} never arrived; stats: {stats}\nSDP: {sdp}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// My participant id.
    async fn me(&self) -> u64 {
        let roster = self
            .wait_js("[...document.querySelectorAll('#roster li')].find(li => li.textContent.includes('(you)'))?.dataset.participant")
            .await;
        roster.as_str().unwrap().parse().unwrap()
    }

    async fn sign_in(&self, base: &str, email: &str) {
        self.goto(&format!("{base}/login")).await;
        self.fill("input[name=email]", email).await;
        self.fill("input[name=password]", PASSWORD).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
        self.wait_text("main", "Your links").await;
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// An app, an owner account and a link; returns (app, base URL, link id).
async fn app_with_link(max_participants: i32) -> (TestApp, String, String) {
    app_with_link_and(max_participants, |_| {}).await
}

async fn app_with_link_and(
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

async fn host_joins(driver: &Driver, base: &str, link: &str) -> Browser {
    let host = driver.browser().await;
    host.sign_in(base, "host@example.org").await;
    host.goto(&format!("{base}/j/{link}")).await;
    host.click("#join-form button[type=submit]").await;
    host.wait_text("#roster", "User host@example.org (you)")
        .await;
    host
}

async fn guest_asks(driver: &Driver, base: &str, link: &str, name: &str) -> Browser {
    let guest = driver.browser().await;
    guest.goto(&format!("{base}/j/{link}")).await;
    guest.wait_text("#join h1", "Family call").await;
    guest.fill("input[name=name]", name).await;
    guest.click("#join-form button[type=submit]").await;
    guest
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
    guest.goto(&format!("{base}/j/{link}")).await;
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
    guest.goto(&format!("{base}/j/{link}")).await;
    guest
        .wait_text(
            "#media-note",
            "isn't allowed to use your camera and microphone",
        )
        .await;
    guest.fill("input[name=name]", "No camera").await;
    guest.click("#join-form button[type=submit]").await;
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
        let before = page.wait_media_from(&others).await;
        // Media keeps flowing: decoded frames and audio packets go up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = page.inbound().await;
        for p in &others {
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
