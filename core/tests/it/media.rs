//! Calls' media in real headless browsers: the join page's camera preview and
//! devices, video and audio between Chromium pages and with Firefox, ICE-TCP when UDP
//! is unavailable, screen sharing, and a guest coming back after a network drop.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::browser::{
    Browser, Driver, SECRET, admits, app_with_link, app_with_link_and, asks_to_join, guest_asks,
    host_joins, member_joins, roster_row,
};
use crate::support::netns::Netns;
use crate::support::relay::Relay;

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
