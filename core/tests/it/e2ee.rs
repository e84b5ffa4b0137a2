//! End-to-end encryption in real headless Chromium: the fake camera shows a known
//! pattern (a y4m file made here), callers with the link secret see it, a caller
//! with another secret does not and is told, the SFU forwards only ciphertext
//! (checked with its test tap), and a removed guest's keys open nothing sent after
//! the rotation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use confab_core::sfu::tap::{Tap, TapRecord};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::browser::{
    Browser, Driver, SECRET, admits, app_with_link, app_with_link_and, asks_to_join, roster_row,
};

/// Last byte of a sealed frame (core/static/e2ee.js).
const FRAME_MAGIC: u8 = 0xcf;
/// First byte of a sealed plugin payload.
pub(crate) const DATA_MAGIC: u8 = 0xcd;
/// kid · counter · clear length · magic.
const TRAILER: usize = 10;
/// A secret other than [`SECRET`].
const OTHER_SECRET: &str = "b3RoZXItc2VjcmV0LWhlcmU";

/// The four quadrants of the fake camera, in RGB: red, green, blue, white.
const QUADRANTS: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];

/// A y4m video (640×480, 30 frames) of the four colored quadrants, for Chromium's
/// `--use-file-for-fake-video-capture`.
struct Camera {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Camera {
    fn new() -> Camera {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pattern.y4m");
        write_pattern(&file, 640, 480);
        Camera { _dir: dir, file }
    }

    fn args(&self) -> Vec<String> {
        vec![format!(
            "--use-file-for-fake-video-capture={}",
            self.file.display()
        )]
    }
}

fn yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
    let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
    let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
    let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
    [y.round() as u8, u.round() as u8, v.round() as u8]
}

fn write_pattern(path: &Path, width: usize, height: usize) {
    let quadrant =
        |x: usize, y: usize| usize::from(x >= width / 2) + 2 * usize::from(y >= height / 2);
    let colors = QUADRANTS.map(yuv);
    let mut out = format!("YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..30 {
        out.extend_from_slice(b"FRAME\n");
        for y in 0..height {
            for x in 0..width {
                out.push(colors[quadrant(x, y)][0]);
            }
        }
        for plane in [1, 2] {
            for y in 0..height / 2 {
                for x in 0..width / 2 {
                    out.push(colors[quadrant(2 * x, 2 * y)][plane]);
                }
            }
        }
    }
    std::fs::write(path, out).unwrap();
}

/// Which of the four colors each quadrant of `participant`'s tile shows (`None`
/// where it is none of them, or nothing is decoded).
async fn quadrants(page: &Browser, participant: u64) -> Vec<Option<usize>> {
    let samples = page
        .client
        .execute(
            "const v = document.querySelector(arguments[0]);\
             if (!v || !v.videoWidth) return null;\
             const c = document.createElement('canvas');\
             c.width = v.videoWidth; c.height = v.videoHeight;\
             const g = c.getContext('2d');\
             g.drawImage(v, 0, 0);\
             const at = (x, y) => Array.from(g.getImageData(Math.floor(x * c.width), Math.floor(y * c.height), 1, 1).data.slice(0, 3));\
             return [at(.25, .25), at(.75, .25), at(.25, .75), at(.75, .75)];",
            vec![json!(format!("#grid [data-stream='p{participant}-0'] video"))],
        )
        .await
        .unwrap();
    let Some(samples) = samples.as_array() else {
        return vec![None; 4];
    };
    samples
        .iter()
        .map(|rgb| {
            let rgb: Vec<i64> = rgb
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_i64().unwrap())
                .collect();
            QUADRANTS.iter().position(|want| {
                want.iter()
                    .zip(&rgb)
                    .all(|(&w, &got)| (i64::from(w) - got).abs() < 70)
            })
        })
        .collect()
}

const PATTERN: [Option<usize>; 4] = [Some(0), Some(1), Some(2), Some(3)];

/// Waits until `page` shows `participant`'s camera pattern, quadrant by quadrant.
async fn sees_pattern(page: &Browser, participant: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = quadrants(page, participant).await;
        if seen == PATTERN {
            return;
        }
        if Instant::now() >= deadline {
            let page_state = page
                .client
                .execute(
                    "return { me: document.querySelector('#roster li[data-participant] .name') && [...document.querySelectorAll('#roster li')].map((li) => li.textContent), tiles: window.confab.tiles(), note: document.getElementById('call-note').textContent, problems: document.getElementById('e2ee-problems').textContent, offer: window.confab.media.subscriber?.remoteDescription?.sdp?.match(/a=msid:\\S+/g), publisher: window.confab.media.publisher && [window.confab.media.publisher.signalingState, window.confab.media.publisher.connectionState], negotiating: window.confab.media.negotiating, e2ee: window.confab.e2ee && [window.confab.e2ee.me, [...window.confab.e2ee.peers.keys()], window.confab.e2ee.generation] }",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!(
                "the pattern of participant {participant} never showed: {seen:?}; page {page_state}; stats {}",
                page.inbound().await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Opens the link with `secret`, signs in first when `member` is set, and joins
/// (members) or asks to join (guests).
async fn open_with(page: &Browser, base: &str, link: &str, secret: &str) {
    page.goto(&format!("{base}/j/{link}#k={secret}")).await;
}

async fn member_on_call(
    page: Browser,
    base: &str,
    link: &str,
    email: &str,
    probe: bool,
) -> Browser {
    page.sign_in(base, email).await;
    if probe {
        // Keeps copies of the first plain frames this browser encodes, for the check
        // that none of them crosses the server.
        page.client
            .execute("localStorage.setItem('confab.e2eeProbe', '1')", vec![])
            .await
            .unwrap();
    }
    open_with(&page, base, link, SECRET).await;
    page.submit_join().await;
    page.wait_text("#roster", &format!("User {email} (you)"))
        .await;
    page
}

/// The host, signed in with the pattern camera, on `link`'s call.
async fn host_with_camera(driver: &Driver, camera: &Camera, base: &str, link: &str) -> Browser {
    let page = driver.browser_with_args(&camera.args()).await;
    member_on_call(page, base, link, "host@example.org", false).await
}

/// A guest with the pattern camera asks to join and `host` admits them; returns
/// their page and participant number.
async fn guest_on_call(
    driver: &Driver,
    camera: &Camera,
    base: &str,
    link: &str,
    host: &Browser,
    name: &str,
) -> (Browser, u64) {
    let guest = asks_to_join(
        driver.browser_with_args(&camera.args()).await,
        base,
        link,
        name,
    )
    .await;
    let id = admits(host, &guest, name).await;
    (guest, id)
}

/// The call's encryption line ("End-to-end encrypted · Safety code …").
async fn security_line(page: &Browser) -> String {
    page.client
        .execute("return document.getElementById('e2ee').textContent", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until `a` and `b` show the same safety code; returns their line.
async fn same_safety_code(a: &Browser, b: &Browser) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mine, theirs) = (security_line(a).await, security_line(b).await);
        if mine.contains("Safety code") && mine == theirs {
            return mine;
        }
        assert!(
            Instant::now() < deadline,
            "safety codes differ: {mine:?} / {theirs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The database key of link `link`, which the call registry goes by.
pub(crate) async fn link_pk(app: &TestApp, link: &str) -> i64 {
    app.store
        .link_by_public_id(link)
        .await
        .unwrap()
        .expect("the link exists")
        .pk
}

fn tap_of(app: &TestApp) -> Tap {
    app.state
        .media
        .as_ref()
        .expect("media is on in the tests")
        .tap()
        .expect("the media plane takes the tap")
}

fn kid_of_trailer(payload: &[u8]) -> Option<u32> {
    (payload.len() >= TRAILER + 16 && payload[payload.len() - 1] == FRAME_MAGIC).then(|| {
        let at = payload.len() - TRAILER;
        u32::from_be_bytes(payload[at..at + 4].try_into().unwrap())
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Every 16-byte window of `frames` past their first 10 bytes (which may be clear).
fn windows(frames: &[Vec<u8>]) -> HashSet<[u8; 16]> {
    frames
        .iter()
        .filter(|f| f.len() >= 26)
        .flat_map(|f| f[10..].windows(16).map(|w| w.try_into().unwrap()))
        .collect()
}

fn contains_any(payload: &[u8], windows: &HashSet<[u8; 16]>) -> bool {
    payload
        .windows(16)
        .any(|w| windows.contains(<&[u8; 16]>::try_from(w).unwrap()))
}

/// Whether `page` opens `payload` (a sealed frame of any kind and stream) with the
/// 32-byte sender key `raw` — as it is, or after up to eight ratchet steps.
async fn opens_with(page: &Browser, raw: &[u8], payload: &[u8]) -> bool {
    page.client
        .execute_async(
            "const [raw, payload, done] = arguments;\
             import('/static/e2ee.js').then(async (m) => {\
               const frame = m.fromBase64(payload);\
               const kid = m.frameTrailer(frame).kid;\
               let key = m.fromBase64(raw);\
               const streams = [['audio', 0], ['video', 0], ['video', 1]];\
               for (let step = 0; step <= 8; step += 1) {\
                 const sender = await m.senderKey(key, kid);\
                 for (const [kind, index] of streams) {\
                   if (await m.openFrame(sender, frame, m.streamBinding(kind, index))) return done(true);\
                 }\
                 key = await m.ratchet(key);\
               }\
               done(false);\
             }, (e) => done(String(e)));",
            vec![json!(b64(raw)), json!(b64(payload))],
        )
        .await
        .unwrap()
        == json!(true)
}

/// The 32-byte sender key `page` currently seals with.
async fn current_key(page: &Browser) -> (u32, Vec<u8>) {
    let key = page
        .client
        .execute(
            "const k = window.confab.e2ee.current;\
             return [k.kid, btoa(String.fromCharCode(...k.raw))];",
            vec![],
        )
        .await
        .unwrap();
    (
        key[0].as_u64().unwrap() as u32,
        unb64(key[1].as_str().unwrap()),
    )
}

/// Audio payloads `participant` sent, as the SFU forwarded them.
fn audio_from(records: &[TapRecord], participant: u64) -> Vec<&TapRecord> {
    records
        .iter()
        .filter(|r| !r.video && u64::from(r.participant) == participant)
        .collect()
}

#[tokio::test]
async fn callers_with_the_secret_see_each_other_and_the_server_forwards_only_ciphertext() {
    // The hello plugin relays "waves" between call pages (and keeps the last one).
    let (_plugins, configure) = crate::plugins::hello_and_rogue();
    let (app, base, link) = app_with_link_and(32, configure).await;
    let tap = tap_of(&app);
    let camera = Camera::new();
    let driver = Driver::start();
    let host = member_on_call(
        driver.browser_with_args(&camera.args()).await,
        &base,
        &link,
        "host@example.org",
        true,
    )
    .await;
    let (guest, guest_id) = guest_on_call(&driver, &camera, &base, &link, &host, "Ana").await;
    let host_id = host.me().await;

    // Each sees the other's camera: the pattern itself, not just decoded frames.
    sees_pattern(&guest, host_id).await;
    sees_pattern(&host, guest_id).await;

    // Both say so, with the same safety code.
    let mine = same_safety_code(&host, &guest).await;
    assert!(
        mine.starts_with("End-to-end encrypted · Safety code "),
        "{mine}"
    );
    let digits: String = mine.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(digits.len(), 12, "{mine}");

    // Plugin payloads: the plugin's frame shows the wave; the frame never held a
    // key (the page seals and opens), and the plugin only ever had ciphertext.
    guest.frame("hello").await;
    guest.click("button").await;
    guest.top().await;
    host.frame("hello").await;
    host.wait_text(".waves", "Ana waves").await;
    host.top().await;
    let now = app.clock_now();
    let kept = app
        .store
        .plugin_kv_keys("hello", "last/", None, 10, now)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let stored = app
        .store
        .plugin_kv_get("hello", &kept[0], now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored[0], DATA_MAGIC, "{stored:?}");
    assert!(
        !stored.windows(5).any(|w| w == b"waves") && !stored.windows(3).any(|w| w == b"Ana"),
        "the plugin saw plain text: {stored:?}"
    );

    // A shared activity (the hello plugin's shared note): the host starts it and
    // types; the guest joins later and gets the note from the host's page. The
    // server holds the activity's copy and updates, all sealed.
    host.frame("hello").await;
    host.click(".note-toggle").await;
    host.wait_js("!document.querySelector('.note').hidden")
        .await;
    host.fill(".note", "Meet at noon in room 4").await;
    host.top().await;
    guest.frame("hello").await;
    guest
        .wait_text(".note-status", "started a shared note")
        .await;
    guest.click(".note-toggle").await;
    let note = guest
        .wait_js("document.querySelector('.note').value === 'Meet at noon in room 4' && document.querySelector('.note').value")
        .await;
    assert_eq!(note, "Meet at noon in room 4");
    guest.wait_text(".note-status", "2 in it").await;
    guest.top().await;
    // A change after the join reaches the guest in its place.
    host.frame("hello").await;
    host.fill(".note", "Noon, room 5").await;
    host.top().await;
    guest.frame("hello").await;
    guest
        .wait_js("document.querySelector('.note').value === 'Noon, room 5'")
        .await;
    guest.top().await;
    let pk = link_pk(&app, &link).await;
    let held = app
        .state
        .calls
        .activity_payloads(pk, "hello")
        .await
        .expect("the call is live");
    assert!(!held.is_empty(), "the server keeps the note's updates");
    for payload in &held {
        let sealed = unb64(payload);
        assert_eq!(sealed[0], DATA_MAGIC, "{payload}");
        assert!(
            !sealed.windows(4).any(|w| w == b"oon,")
                && !sealed.windows(4).any(|w| w == b"noon")
                && !sealed.windows(4).any(|w| w == b"note"),
            "the server holds plain text: {sealed:?}"
        );
    }

    // The SFU's copy: no window of the host's plain frames is in anything it forwarded.
    let probe: Vec<Vec<u8>> = host
        .wait_js("window.confab.e2ee.probe.length >= 30 && window.confab.e2ee.probe")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|f| unb64(f.as_str().unwrap()))
        .collect();
    let plain = windows(&probe);
    assert!(
        plain.len() > 1000,
        "the probe holds real frames: {}",
        plain.len()
    );
    let records = tap.records();
    let video: Vec<&TapRecord> = records
        .iter()
        .filter(|r| r.video && u64::from(r.participant) == host_id)
        .collect();
    assert!(
        video.len() > 100,
        "the tap saw the host's video: {}",
        video.len()
    );
    let leaked = video
        .iter()
        .filter(|r| contains_any(&r.payload, &plain))
        .count();
    assert_eq!(leaked, 0, "{leaked} forwarded packets hold plain video");
    // The clear part is there (the SFU reads it): VP8 keyframes' start code.
    assert!(
        video
            .iter()
            .any(|r| r.payload.windows(3).any(|w| w == [0x9d, 0x01, 0x2a])),
        "no VP8 keyframe header in the forwarded video"
    );
    // Every frame's last packet ends with the trailer of a key of the host's.
    let last_packets: Vec<&&TapRecord> = video.iter().filter(|r| r.marker).collect();
    assert!(!last_packets.is_empty());
    for record in &last_packets {
        let kid = kid_of_trailer(&record.payload).expect("a sealed frame");
        assert_eq!(u64::from(kid >> 8), host_id);
    }
    // Audio: every packet is a sealed frame of the host's, which the host's key opens.
    let audio = audio_from(&records, host_id);
    assert!(
        audio.len() > 50,
        "the tap saw the host's audio: {}",
        audio.len()
    );
    for record in &audio {
        let kid = kid_of_trailer(&record.payload).expect("sealed audio");
        assert_eq!(u64::from(kid >> 8), host_id);
    }
    let (kid, raw) = current_key(&host).await;
    let newest = audio
        .iter()
        .rev()
        .find(|r| kid_of_trailer(&r.payload) == Some(kid))
        .expect("audio under the current key");
    assert!(opens_with(&host, &raw, &newest.payload).await);
    assert!(
        !opens_with(&host, &[7u8; 32], &newest.payload).await,
        "another key opens nothing"
    );
    host.close().await;
    guest.close().await;
}

#[tokio::test]
async fn a_caller_with_another_secret_sees_nothing_and_everyone_is_told() {
    let (_app, base, link) = app_with_link(32).await;
    let camera = Camera::new();
    let driver = Driver::start();
    let host = host_with_camera(&driver, &camera, &base, &link).await;
    let host_id = host.me().await;
    let (ana, _) = guest_on_call(&driver, &camera, &base, &link, &host, "Ana").await;

    let eve = driver.browser_with_args(&camera.args()).await;
    open_with(&eve, &base, &link, OTHER_SECRET).await;
    eve.fill("input[name=name]", "Eve").await;
    eve.submit_join().await;
    eve.wait_text("#status", "Someone on the call will let you in")
        .await;
    let eve_id = admits(&host, &eve, "Eve").await;

    // Ana has the right secret: she sees the host's pattern.
    sees_pattern(&ana, host_id).await;
    // Eve is told, and so are the others.
    let told = eve
        .wait_text("#e2ee-problems", "Can't decrypt User host@example.org")
        .await;
    assert!(told.contains("different link secret"), "{told}");
    host.wait_text("#e2ee-problems", "Can't decrypt Eve").await;
    ana.wait_text("#e2ee-problems", "Can't decrypt Eve").await;
    let label = eve
        .wait_text(
            &format!("#grid [data-stream='p{host_id}-0'] figcaption"),
            "can't decrypt",
        )
        .await;
    assert!(label.contains("User host@example.org"), "{label}");
    // Eve's page never decodes a frame of the host's: the pattern never shows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(eve.frames_decoded(&format!("p{host_id}-0")).await, 0);
    assert_eq!(quadrants(&eve, host_id).await, vec![None; 4]);
    assert!(
        ana.frames_decoded(&format!("p{host_id}-0")).await > 0,
        "Ana decodes the host all along"
    );
    // Nobody decodes Eve either.
    assert_eq!(host.frames_decoded(&format!("p{eve_id}-0")).await, 0);
    // The host and Ana compare codes: the same; Eve's is not theirs.
    let code = same_safety_code(&host, &ana).await;
    assert_ne!(security_line(&eve).await, code);
    host.close().await;
    ana.close().await;
    eve.close().await;
}

/// A `hello` for participant `participant` signed with the link secret, as a server
/// that knows the secret can make one (built in `page` with the page's own module).
async fn forged_hello(page: &Browser, link: &str, participant: u32) -> String {
    page.client
        .execute_async(
            "const [secret, link, participant, done] = arguments;\
             import('/static/e2ee.js').then(async (m) => {\
               const keys = await m.linkKeys(secret, await m.secretId(secret));\
               const pair = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);\
               const pub = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));\
               const mac = await m.helloMac(keys, window.confab.e2ee.call, participant, pub);\
               const hello = { t: 'hello', pub: m.toBase64(pub), mac: m.toBase64(mac), reply: false };\
               done(m.toBase64(new TextEncoder().encode(JSON.stringify(hello))));\
             }, (e) => done(String(e)));",
            vec![json!(SECRET), json!(link), json!(participant)],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// What `page`'s encryption holds about participant `participant`: a verified key
/// exchange (`peer`), and keys of theirs.
async fn holds_keys_of(page: &Browser, participant: u32) -> Value {
    page.client
        .execute(
            "const e = window.confab.e2ee, p = arguments[0];\
             return { peer: e.peers.has(p), keys: e.ring.has(p), held: e.held.has(p) };",
            vec![json!(participant)],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_participant_the_server_makes_up_gets_no_key_and_every_page_warns() {
    let (app, base, link) = app_with_link(32).await;
    let camera = Camera::new();
    let driver = Driver::start();
    let host = host_with_camera(&driver, &camera, &base, &link).await;
    let (ana, _) = guest_on_call(&driver, &camera, &base, &link, &host, "Ana").await;
    let code = same_safety_code(&host, &ana).await;

    // The server knows the secret (the link was made through the API) and plays a
    // participant 99 that is on nobody's roster.
    let ghost = 99;
    let hello = forged_hello(&host, &link, ghost).await;
    let pk = link_pk(&app, &link).await;
    assert!(app.state.calls.forge_e2ee(pk, ghost, hello));

    for page in [&host, &ana] {
        let warning = page
            .wait_text(
                "#e2ee-problems",
                "Someone who is not on the call (participant 99)",
            )
            .await;
        assert!(warning.contains("trying to listen in"), "{warning}");
        assert_eq!(
            holds_keys_of(page, ghost).await,
            json!({ "peer": false, "keys": false, "held": true }),
            "no key exchange with the ghost"
        );
        let count = page.wait_text("#e2ee-count", "1 other person").await;
        assert_eq!(count, "1 other person · 1 key");
    }
    // The honest pages still agree, and the ghost's key is in neither code.
    assert_eq!(same_safety_code(&host, &ana).await, code);
    host.close().await;
    ana.close().await;
}

#[tokio::test]
async fn a_removed_guest_holds_no_key_to_what_is_sent_after_the_rotation() {
    let (app, base, link) = app_with_link(32).await;
    let tap = tap_of(&app);
    let camera = Camera::new();
    let driver = Driver::start();
    let host = host_with_camera(&driver, &camera, &base, &link).await;
    let host_id = host.me().await;
    let (ana, _) = guest_on_call(&driver, &camera, &base, &link, &host, "Ana").await;
    let (bo, bo_id) = guest_on_call(&driver, &camera, &base, &link, &host, "Bo").await;
    sees_pattern(&bo, host_id).await;
    sees_pattern(&ana, host_id).await;

    // Every key Bo holds for the host (key id and key), and the host's key now.
    let held_keys = bo
        .wait_js(&format!(
            "(window.confab.e2ee.ring.senders.get({host_id})?.keys ?? []).map((k) => [k.kid, btoa(String.fromCharCode(...k.raw))])"
        ))
        .await;
    let held: Vec<Vec<u8>> = held_keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| unb64(k[1].as_str().unwrap()))
        .collect();
    assert!(!held.is_empty());
    let (before, _) = current_key(&host).await;

    host.click(&format!("{} button", roster_row(bo_id))).await;
    bo.wait_text("#status", "You were removed from the call")
        .await;

    // The host switches to a fresh key once Bo is gone…
    let deadline = Instant::now() + Duration::from_secs(15);
    let (after, fresh) = loop {
        let (kid, raw) = current_key(&host).await;
        if kid != before {
            break (kid, raw);
        }
        assert!(Instant::now() < deadline, "the host's key never rotated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(u64::from(after >> 8), host_id);
    assert!(!held.contains(&fresh), "the new key is not one Bo had");
    // …and Ana keeps seeing the host: she got the new key.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sees_pattern(&ana, host_id).await;
    ana.wait_video_flowing(&format!("p{host_id}-0")).await;

    // What the host sent under the new key: Bo's keys open none of it, even
    // ratcheted; the new key opens it.
    let records = tap.records();
    let sealed_after: Vec<&TapRecord> = audio_from(&records, host_id)
        .into_iter()
        .filter(|r| kid_of_trailer(&r.payload) == Some(after))
        .collect();
    assert!(
        sealed_after.len() > 20,
        "audio after the rotation: {}",
        sealed_after.len()
    );
    let sample = sealed_after[sealed_after.len() / 2];
    for key in &held {
        assert!(
            !opens_with(&ana, key, &sample.payload).await,
            "a key Bo held opens a frame sent after he was removed"
        );
    }
    assert!(opens_with(&ana, &fresh, &sample.payload).await);

    // Bo (or a server he gave his keys to) forges frames as the host with the keys
    // he kept, once the old key's grace after the new one is over. Ana's media
    // worker drops every one; a frame under the host's current key, sent along as
    // a control, goes through.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let forged = forge_frames(&ana, host_id, &held_keys, (after, &fresh)).await;
    assert_eq!(
        forged["shown"],
        json!(["control"]),
        "only the control frame came out of the worker: {forged}"
    );
    let refused =
        forged["after"]["failed"].as_u64().unwrap() - forged["before"]["failed"].as_u64().unwrap();
    assert!(
        refused >= held.len() as u64,
        "every forged frame refused: {forged}"
    );
    host.close().await;
    ana.close().await;
    bo.close().await;
}

/// Frames sealed as `host`'s camera with each of `keys` (`[[kid, key]]`) and, last,
/// one with `control` (kid, key), fed to `page`'s media worker as the SFU's frames
/// would be; what came out (`shown`: "forged" or "control") and the worker's
/// counters before and after.
async fn forge_frames(page: &Browser, host: u64, keys: &Value, control: (u32, &[u8])) -> Value {
    page.client
        .execute_async(
            "const [keys, controlKid, controlKey, host, done] = arguments;\
             import('/static/e2ee.js').then(async (m) => {\
               const e = window.confab.e2ee, binding = m.streamBinding('video', 0);\
               const frame = async (raw, kid, mark, counter) => {\
                 const key = await m.senderKey(m.fromBase64(raw), kid);\
                 const plain = new Uint8Array(400).fill(mark);\
                 return { data: (await m.sealFrame(key, counter, plain, 3, binding)).buffer, type: 'delta' };\
               };\
               const frames = [];\
               for (const [kid, raw] of keys) frames.push(await frame(raw, kid, 1, 2 ** 30));\
               frames.push(await frame(controlKey, controlKid, 2, 2 ** 30 + 7));\
               const before = await e.workerStats();\
               const shown = [];\
               const readable = new ReadableStream({ start(c) { for (const f of frames) c.enqueue(f); c.close(); } });\
               const writable = new WritableStream({\
                 write(f) { shown.push(new Uint8Array(f.data)[10] === 2 ? 'control' : 'forged'); },\
                 async close() { done({ shown, before, after: await e.workerStats() }); },\
               });\
               const options = { side: 'receive', kind: 'video', stream: `p${host}-0`, participant: host, index: 0 };\
               e.worker.postMessage({ op: 'streams', readable, writable, options }, [readable, writable]);\
             }, (e) => done({ error: String(e) }));",
            vec![json!(keys), json!(control.0), json!(b64(control.1)), json!(host)],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_link_opened_without_its_secret_says_so_and_the_owner_s_browser_fills_it_in() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let page = driver.browser().await;
    page.goto(&format!("{base}/j/{link}")).await;
    let told = page
        .wait_text("#secret-problem", "missing its secret key")
        .await;
    assert!(told.contains("#k="), "{told}");
    let disabled: Value = page
        .client
        .execute(
            "return document.querySelector('#join-form button[type=submit]').disabled",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(disabled, json!(true), "no joining without the secret");
    // A malformed secret is no secret.
    page.goto(&format!("{base}/j/{link}#k=short")).await;
    page.wait_text("#secret-problem", "missing its secret key")
        .await;

    // The browser that made the link keeps its secret: the page puts it back.
    page.remember_secret(&link).await;
    page.goto(&format!("{base}/j/{link}")).await;
    assert_eq!(secret_state(&page).await, json!([true, ""]));

    // Opened with the secret: it leaves the address bar (and history) at once, and
    // this tab keeps it for a reload, not the device.
    // (Pasted into the address bar of the open page: it reloads with it.)
    page.client
        .execute("localStorage.clear(); window.stale = true", vec![])
        .await
        .unwrap();
    page.goto(&format!("{base}/j/{link}#k={SECRET}")).await;
    assert_eq!(secret_state(&page).await, json!([true, ""]));
    let address = page.wait_js("location.href").await;
    assert_eq!(address, json!(format!("{base}/j/{link}")));
    page.client
        .execute("window.stale = true; location.reload()", vec![])
        .await
        .unwrap();
    assert_eq!(
        secret_state(&page).await,
        json!([true, ""]),
        "a reload keeps it"
    );
    let on_device = page
        .wait_js("JSON.stringify(Object.keys(localStorage))")
        .await;
    assert!(
        !on_device.as_str().unwrap().contains("secret"),
        "{on_device}"
    );
    page.close().await;
}

/// Once the call page's script ran: whether the secret problem is hidden, and the
/// address bar's fragment.
async fn secret_state(page: &Browser) -> Value {
    page.wait_js(
        "!window.stale && window.confab && [document.getElementById('secret-problem').hidden, location.hash]",
    )
    .await
}

#[tokio::test]
async fn the_older_encoded_streams_api_and_the_script_transform_understand_each_other() {
    let (_app, base, link) = app_with_link(32).await;
    let camera = Camera::new();
    let driver = Driver::start();
    let page = driver.browser_with_args(&camera.args()).await;
    // The host's page uses createEncodedStreams (Chromium's older API), the guest's
    // RTCRtpScriptTransform.
    page.goto(&format!("{base}/login")).await;
    page.client
        .execute("localStorage.setItem('confab.e2eeApi', 'streams')", vec![])
        .await
        .unwrap();
    let host = member_on_call(page, &base, &link, "host@example.org", false).await;
    let host_id = host.me().await;
    let (guest, guest_id) = guest_on_call(&driver, &camera, &base, &link, &host, "Ana").await;
    assert_eq!(
        host.wait_js("window.confab.e2ee.api").await,
        json!("streams")
    );
    assert_eq!(
        guest.wait_js("window.confab.e2ee.api").await,
        json!("script")
    );
    sees_pattern(&guest, host_id).await;
    sees_pattern(&host, guest_id).await;
    host.close().await;
    guest.close().await;
}
