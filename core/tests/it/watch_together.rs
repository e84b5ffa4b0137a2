//! The bundled watch-together plugin: its per-link option over HTTP, a video
//! watched together in two headless Chromium browsers (the host signed in, a guest
//! who comes later), and three viewers, one in Firefox whose video arrives too
//! slowly, waiting for each other; from an HTTPS server the test starts
//! (`plugins/watch-together/tests/video_server.py`, a clip made with PyAV).

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::e2ee::{DATA_MAGIC, link_pk, unb64};
use crate::support::browser::{
    Browser, Driver, admits, app_with_link_and, asks_to_join, member_joins,
};
use crate::support::netns::Netns;

fn with_bundled(c: &mut confab_core::Config) {
    c.plugins.bundled = true;
    c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
}

fn script() -> String {
    format!(
        "{}/../plugins/watch-together/tests/video_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The test clip, served over HTTPS on loopback; stopped when dropped.
struct VideoServer {
    stdin: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
    _child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl VideoServer {
    async fn start() -> VideoServer {
        VideoServer::start_on("127.0.0.1").await
    }

    /// Listening on `host` (a loopback or a test namespace's veth address).
    async fn start_on(host: &str) -> VideoServer {
        let dir = tempfile::tempdir().unwrap();
        let made = Command::new("python3")
            .arg(script())
            .args(["--make", dir.path().to_str().unwrap(), "--seconds", "90"])
            .output()
            .await
            .expect("python3 runs (the test suite installs aiortc, which brings PyAV)");
        assert!(
            made.status.success(),
            "the clip: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut child = Command::new("python3")
            .arg(script())
            .args(["--serve", dir.path().to_str().unwrap(), "--host", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the video server starts")
            .unwrap()
            .unwrap_or_default();
        let base = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the video server said {ready:?}"));
        VideoServer {
            url: format!("{base}clip.webm"),
            stdin: child.stdin.take().unwrap(),
            answers: lines,
            _child: child,
            _dir: dir,
        }
    }

    /// Tells the server a line (`slow ADDRESS BYTES_PER_S`, `fast`) and waits for its "ok".
    async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), self.answers.next_line())
            .await
            .expect("the video server answers")
            .unwrap();
        assert_eq!(answer.as_deref(), Some("ok"), "{line}");
    }
}

/// A browser that accepts the video server's self-signed certificate.
async fn browser(driver: &Driver) -> Browser {
    driver
        .browser_with_args(&["--ignore-certificate-errors".into()])
        .await
}

/// The player in the frame `page` is in: `{time, paused, rate, src, at}`.
async fn player(page: &Browser) -> Value {
    page.client
        .execute(
            "const v = document.querySelector('.watch video'); \
             return { time: v.currentTime, paused: v.paused, rate: v.playbackRate, src: v.currentSrc, at: Date.now() };",
            vec![],
        )
        .await
        .unwrap()
}

/// Where the players of `a` and `b` are apart (seconds), both read at one moment
/// of the shared clock (the browsers run on one machine).
async fn apart(a: &Browser, b: &Browser) -> f64 {
    let x = player(a).await;
    let y = player(b).await;
    let position = |p: &Value, at: f64| {
        let rate = if p["paused"].as_bool().unwrap() {
            0.0
        } else {
            p["rate"].as_f64().unwrap()
        };
        p["time"].as_f64().unwrap() + (at - p["at"].as_f64().unwrap()) / 1000.0 * rate
    };
    let at = y["at"].as_f64().unwrap();
    (position(&x, at) - position(&y, at)).abs()
}

#[tokio::test]
async fn a_link_owner_keeps_starting_videos_to_people_who_signed_in() {
    let (app, _base, link) = app_with_link_and(4, with_bundled).await;
    let path = format!("/p/watch-together/options?link={link}");
    let owner = app.sign_in("host@example.org").await;

    // Anyone may read the option (the guest's page needs it); nobody signed out changes it.
    let res = app.get(&path).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        res.json(),
        json!({ "signed_in_only": false, "can_change": false })
    );
    let res = app
        .req(Method::PUT, &path)
        .json(&json!({ "signed_in_only": true }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    assert_eq!(res.error_code(), "unauthorized");

    // Another member is refused; the owner may.
    app.user_with_token("other@example.org", confab_core::accounts::Role::Member)
        .await;
    let other = app.sign_in("other@example.org").await;
    let res = app
        .req(Method::PUT, &path)
        .cookie(&other.cookies)
        .header("x-csrf-token", &other.csrf)
        .json(&json!({ "signed_in_only": true }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    for bad in [
        json!({ "signed_in_only": "yes" }),
        json!({ "other": 1 }),
        json!([]),
    ] {
        let res = app
            .req(Method::PUT, &path)
            .cookie(&owner.cookies)
            .header("x-csrf-token", &owner.csrf)
            .json(&bad)
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.text()
        );
    }
    let res = app
        .req(Method::PUT, &path)
        .cookie(&owner.cookies)
        .header("x-csrf-token", &owner.csrf)
        .json(&json!({ "signed_in_only": true }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = app.get(&path).cookie(&owner.cookies).send().await;
    assert_eq!(
        res.json(),
        json!({ "signed_in_only": true, "can_change": true })
    );
    assert_eq!(app.get(&path).send().await.json()["signed_in_only"], true);

    // Unknown and malformed links.
    let res = app
        .get("/p/watch-together/options?link=NoSuchLink")
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    for query in ["", "?link=", "?link=a%20b", "?link=../x"] {
        let res = app
            .get(&format!("/p/watch-together/options{query}"))
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            res.text()
        );
        assert_eq!(res.error_code(), "bad_request");
    }
    let res = app.req(Method::DELETE, &path).send().await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    // Who is watching is the owner's to see, and nobody is.
    let watching = format!("/p/watch-together/watching?link={link}");
    assert_eq!(
        app.get(&watching).send().await.status,
        StatusCode::FORBIDDEN
    );
    let res = app.get(&watching).cookie(&owner.cookies).send().await;
    assert_eq!(res.json(), json!({ "watching": [] }));
}

#[tokio::test]
async fn a_video_plays_in_step_for_everyone_and_every_command_reaches_every_player() {
    let video = VideoServer::start().await;
    let (app, base, link) = app_with_link_and(4, with_bundled).await;
    let driver = Driver::start();

    // The host starts a video before anyone else is there.
    let host = host_joins_with(&driver, &base, &link).await;
    host.frame("watch-together").await;
    host.fill(".watch .start input", &video.url).await;
    host.click(".watch .start button").await;
    host.wait_js_within(
        "(() => { const v = document.querySelector('.watch video'); return !v.paused && v.currentTime > 2; })()",
        Duration::from_secs(30),
    )
    .await;
    host.wait_text(".watch .status", "started “clip.webm” · 1 watching")
        .await;

    // A guest comes in later: their player opens the video at the group's position.
    let guest = asks_to_join(browser(&driver).await, &base, &link, "Bea").await;
    host.top().await;
    let bea = admits(&host, &guest, "Bea").await;
    guest.frame("watch-together").await;
    guest
        .wait_js_within(
            "(() => { const v = document.querySelector('.watch video'); return !v.paused && v.currentTime > 3; })()",
            Duration::from_secs(30),
        )
        .await;
    guest.wait_text(".watch .status", "2 watching").await;
    host.frame("watch-together").await;
    // In step: the figures are the benchmark's (docs/BENCHMARKS.md); this checks
    // that the guest's player follows the group at all, well inside a second.
    let mut worst = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gap = apart(&host, &guest).await;
        if gap < 0.25 {
            break;
        }
        worst = worst.max(gap);
        assert!(
            Instant::now() < deadline,
            "the players stay {gap:.3} s apart (worst {worst:.3})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let host_src = player(&host).await["src"].clone();
    assert_eq!(player(&guest).await["src"], host_src);

    // The host's page lowered the call's audio (the guest's tile) while the video
    // plays; the host puts it back.
    host.top().await;
    let tile_volume = format!("document.querySelector('[data-stream=\"p{bea}-0\"] video')?.volume");
    host.wait_js(&format!("{tile_volume} === 0.3")).await;
    host.wait_text(".ducking", "Call audio lowered while watch-together plays")
        .await;
    host.click(".ducking button").await;
    host.wait_js(&format!("{tile_volume} === 1")).await;
    host.wait_text(".ducking", "call audio at full volume")
        .await;

    // The guest pauses: every player stops at the same frame.
    guest.click(".watch .controls .play").await;
    host.frame("watch-together").await;
    host.wait_js("document.querySelector('.watch video').paused")
        .await;
    guest
        .wait_js("document.querySelector('.watch video').paused")
        .await;
    let paused_at = host
        .wait_js("(() => { const v = document.querySelector('.watch video'); return !v.seeking && v.currentTime; })()")
        .await
        .as_f64()
        .unwrap();
    guest
        .wait_js(&format!(
            "Math.abs(document.querySelector('.watch video').currentTime - {paused_at}) < 0.011"
        ))
        .await;
    assert_eq!(
        host.wait_text(".watch .controls .play", "Play").await,
        "Play"
    );

    // The host seeks to 0:40 while paused, then plays: both go on from there.
    seek_to(&host, 40).await;
    for page in [&host, &guest] {
        page.wait_js("Math.abs(document.querySelector('.watch video').currentTime - 40) < 0.011")
            .await;
    }
    host.click(".watch .controls .play").await;
    for page in [&host, &guest] {
        page.wait_js("(() => { const v = document.querySelector('.watch video'); return !v.paused && v.currentTime > 40.5; })()")
            .await;
    }
    // Faster, for everyone.
    guest
        .client
        .execute(
            "const s = document.querySelector('.watch .controls select'); s.value = '1.5'; \
             s.dispatchEvent(new Event('change')); return null;",
            vec![],
        )
        .await
        .unwrap();
    host.wait_js("document.querySelector('.watch .controls select').value === '1.5'")
        .await;

    // What the server holds of it is sealed: neither the address nor the clip's name.
    let pk = link_pk(&app, &link).await;
    let held = app
        .state
        .calls
        .activity_payloads(pk, "watch-together")
        .await
        .expect("the call is live");
    // Its copy of the state (every page's keeper leaves one) and the updates after it.
    assert!(!held.is_empty(), "the server keeps the playback");
    for payload in &held {
        let sealed = unb64(payload);
        assert_eq!(sealed[0], DATA_MAGIC, "{payload}");
        for plain in [&b"clip"[..], b"https", b"playing", b"127.0"] {
            assert!(
                !sealed.windows(plain.len()).any(|w| w == plain),
                "the server holds {:?} in plain text",
                String::from_utf8_lossy(plain)
            );
        }
    }

    // The owner keeps starting videos to people who signed in: the guest's page
    // hears of it, hides its form and says why; the video playing was the host's.
    host.click(".watch .option input").await;
    // Once the guest stops watching, their page offers no form to start one, and says why.
    guest.click(".watch .controls .leave").await;
    guest
        .wait_text(".watch .status", "1 watching a video together")
        .await;
    guest
        .wait_js("document.querySelector('.watch .start').hidden && !document.querySelector('.watch .barred').hidden")
        .await;
    guest
        .wait_text(
            ".watch .barred",
            "Only people who signed in may start a video on this link",
        )
        .await;
    let options = app
        .get(&format!("/p/watch-together/options?link={link}"))
        .send()
        .await
        .json();
    assert_eq!(options["signed_in_only"], true);

    // The host stops the video: the activity ends for everyone.
    host.click(".watch .controls .stop").await;
    host.wait_js("document.querySelector('.watch .stage').hidden")
        .await;
    drop(video);
}

/// The host signs in and joins, in a browser that accepts the test certificate.
async fn host_joins_with(driver: &Driver, base: &str, link: &str) -> Browser {
    member_joins(browser(driver).await, base, link, "host@example.org").await
}

/// Whether the player of the frame a page is in plays, past `after` s.
fn playing_past(after: f64) -> String {
    format!(
        "(() => {{ const v = document.querySelector('.watch video'); return !v.paused && v.readyState >= 3 && v.currentTime > {after}; }})()"
    )
}

/// Clicks `css` in the frame `page` is in, from the frame's script. (geckodriver's
/// click does not reach into a sandboxed frame in Firefox headless, and a
/// WebDriver click in Chromium misses while the frame resizes itself around a
/// player that just loaded; the two-browser test above clicks as a person does.)
async fn press(page: &Browser, css: &str) {
    page.client
        .execute(
            "document.querySelector(arguments[0]).click(); return null;",
            vec![json!(css)],
        )
        .await
        .unwrap();
}

/// Moves the seek bar of the frame `page` is in to `seconds`, as a drag that ends
/// there does.
async fn seek_to(page: &Browser, seconds: u32) {
    page.client
        .execute(
            "const bar = document.querySelector('.watch .controls input[type=range]'); \
             bar.value = String(arguments[0]); bar.dispatchEvent(new Event('change')); return null;",
            vec![json!(seconds)],
        )
        .await
        .unwrap();
}

/// What the player and panel of the frame `page` is in show, for a failure message.
async fn panel(page: &Browser) -> Value {
    page.client
        .execute(
            "const v = document.querySelector('.watch video'); const b = v.buffered; \
             return { time: v.currentTime, paused: v.paused, seeking: v.seeking, ready: v.readyState, \
               buffered: Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]), \
               status: document.querySelector('.watch .status').textContent, \
               problem: document.querySelector('.watch .problem').textContent, \
               ...((w) => w && { suspended: w.suspended, waitingFor: w.activity.waitingFor(), stuckFor: w.follower.stuckFor(), \
                 aligned: w.follower.aligned, preparing: w.follower.preparing, tries: w.follower.tries, lead: w.follower.lead, \
                 held: w.follower.held, play: w.currentPlay(), now: w.clock.now(), state: w.activity.state.ready() && w.activity.state.all(), \
                 presence: w.activity.presence() })(globalThis.watchTogether) };",
            vec![],
        )
        .await
        .unwrap_or_else(|e| json!(e.to_string()))
}

/// Waits until `expression` has held on each of `pages` (in their frames), within
/// `limit`; on failure, says what each page's player and panel show.
async fn each_sees(pages: &[(&str, &Browser)], what: &str, expression: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let script = format!("return Boolean({expression});");
    let mut seen = vec![false; pages.len()];
    while !seen.iter().all(|s| *s) {
        for (n, (_, page)) in pages.iter().enumerate() {
            if !seen[n] {
                seen[n] = page.client.execute(&script, vec![]).await.unwrap() == json!(true);
            }
        }
        if Instant::now() > deadline {
            let mut report = String::new();
            for (n, (name, page)) in pages.iter().enumerate() {
                report += &format!(
                    "\n  {name} ({}): {}",
                    if seen[n] { "saw it" } else { "did not" },
                    panel(page).await
                );
                page.top().await;
                let note = page.client.execute("const a = window.confab.plugins?.activities?.get('watch-together'); return [document.getElementById('call-note')?.textContent, window.confab.e2ee?.peers, a && { synced: a.synced, joined: a.joined, seq: a.seq, held: [...a.held.keys()], keys: [...a.state.keys()], undecryptable: a.undecryptable, asked: a.askedFor }];", vec![]).await;
                report += &format!("\n    its page: {note:?}");
                page.frame("watch-together").await;
            }
            panic!("{what}: not on every page within {limit:?}{report}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_viewers_one_in_firefox_wait_together_for_the_one_whose_video_arrives_slowly() {
    // Firefox runs in a namespace of its own (as in the media tests); the clip is
    // served on the veth address, which the Chromium pages reach too, so the video
    // server tells Firefox's fetches (from the namespace's address) from theirs.
    let netns = Netns::create();
    let outside = netns.outside;
    let mut video = VideoServer::start_on(&outside.to_string()).await;
    let (_app, base, link) = app_with_link_and(4, |c| {
        with_bundled(c);
        c.media.bind = outside.into();
    })
    .await;
    let _pages = netns.relay_http(&base).await;
    let chromium = Driver::start_beside(&netns);
    let firefox = Driver::start_firefox(&netns);

    let host = host_joins_with(&chromium, &base, &link).await;
    let bea = asks_to_join(browser(&chromium).await, &base, &link, "Bea").await;
    admits(&host, &bea, "Bea").await;
    let fox = asks_to_join(firefox.browser().await, &base, &link, "Fox").await;
    admits(&host, &fox, "Fox").await;

    // Fox's video trickles in at 8 kB/s; the clip needs about 42.
    video.command(&format!("slow {} 8000", netns.inside)).await;
    host.frame("watch-together").await;
    host.fill(".watch .start input", &video.url).await;
    host.click(".watch .start button").await;
    for page in [&bea, &fox] {
        page.frame("watch-together").await;
    }
    let everyone = [("host", &host), ("Bea", &bea), ("Fox", &fox)];
    // Fox's player cannot keep up: everyone's page says whom the group waits for,
    // and every player stands still meanwhile.
    each_sees(
        &everyone,
        "waiting for Fox",
        "document.querySelector('.watch .status').textContent.includes('Waiting for Fox (buffering)') \
         && document.querySelector('.watch video').paused",
        Duration::from_secs(30),
    )
    .await;
    // Fox's video comes at full speed again: the three go on together, and stay.
    video.command("fast").await;
    each_sees(
        &everyone,
        "playing again",
        &playing_past(1.0),
        Duration::from_secs(30),
    )
    .await;
    each_sees(
        &everyone,
        "nobody waited for",
        "!document.querySelector('.watch .status').textContent.includes('Waiting')",
        Duration::from_secs(20),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gaps = [apart(&host, &fox).await, apart(&bea, &fox).await];
        if gaps.iter().all(|g| *g < 0.25) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Fox's player stays {gaps:?} s apart from the others"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Fox pauses, from Firefox: every player stops at the same frame.
    press(&fox, ".watch .controls .play").await;
    let still = "(() => { const v = document.querySelector('.watch video'); return v.paused && !v.seeking; })()";
    each_sees(&everyone, "paused", still, Duration::from_secs(15)).await;
    // Each where the group paused (a player within 10 ms of it does not seek).
    let group = host
        .client
        .execute("return watchTogether.currentPlay().position;", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    for (name, page) in &everyone {
        let at = player(page).await["time"].as_f64().unwrap();
        assert!(
            (at - group).abs() <= 0.0105,
            "{name}'s player paused at {at}, the group at {group}"
        );
    }

    // Bea seeks to 0:30 and plays: Fox's player follows.
    seek_to(&bea, 30).await;
    press(&bea, ".watch .controls .play").await;
    each_sees(
        &everyone,
        "playing from 0:30",
        &playing_past(30.5),
        Duration::from_secs(30),
    )
    .await;
    for page in [host, bea, fox] {
        page.close().await;
    }
    drop(video);
}
