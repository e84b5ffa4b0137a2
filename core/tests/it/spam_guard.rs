//! The bundled spam-guard plugin through the real server, over real WebSockets:
//! remove-and-block keeps a guest out of the link's later calls by browser and by
//! network (on SQLite and PostgreSQL), deny-and-report and the lobby lock act as the
//! reporter, and the administrators' review queue shows what was reported; the
//! administrators get one mail per batch of reports over real SMTP; knocks from
//! eleven networks warn the owner's call page, which rotates the link.

use std::net::IpAddr;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::ws::{Ws, fresh_loopback};
use crate::support::{SignedIn, TestApp};

struct Scene {
    app: TestApp,
    addr: String,
    link: String,
    admin: String,
    owner: SignedIn,
}

fn with_spam_guard(c: &mut confab_core::Config) {
    c.plugins.bundled = true;
    c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
}

/// An admin's link (guests join without approval, so only the plugin keeps anyone
/// out), served.
async fn scene(app: TestApp) -> Scene {
    let admin = app.admin_token().await;
    let res = app
        .post("/api/v1/links")
        .bearer(&admin)
        .json(&json!({ "title": "Town hall", "guests_need_approval": false }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let link = res.json()["id"].as_str().unwrap().to_string();
    let owner = app.sign_in("admin@example.org").await;
    let addr = app.serve().await;
    Scene {
        app,
        addr,
        link,
        admin,
        owner,
    }
}

async fn host(s: &Scene) -> Ws {
    let mut ws = Ws::open(&s.addr, &s.link, Some(&s.owner.cookies)).await;
    ws.send(json!({ "v": 1, "type": "join" })).await;
    ws.expect("joined").await;
    ws
}

/// The guest cookie the link's page gives a browser.
async fn guest_cookie(s: &Scene) -> String {
    let page = s.app.get(&format!("/j/{}", s.link)).send().await;
    assert_eq!(page.status, StatusCode::OK);
    page.cookie("confab_guest").expect("a guest cookie")
}

async fn guest(s: &Scene, source: IpAddr, cookie: Option<&str>) -> Ws {
    let header = cookie.map(|c| ("cookie", format!("confab_guest={c}")));
    Ws::open_from(&s.addr, &s.link, header, source).await
}

async fn report(s: &Scene, body: Value) -> (StatusCode, Value) {
    let res = s
        .app
        .post("/p/spam-guard/reports")
        .bearer(&s.admin)
        .json(&body)
        .send()
        .await;
    (res.status, res.json())
}

/// Ends the call: the host, last on it, leaves; whoever joins next starts a new call.
async fn end_call(mut host: Ws) {
    host.send(json!({ "v": 1, "type": "leave" })).await;
    host.close().await;
}

async fn remove_and_block_keeps_the_guest_out_of_later_calls(app: TestApp) {
    let s = scene(app).await;
    let host = host(&s).await;
    let home = fresh_loopback();
    let cookie = guest_cookie(&s).await;
    let mut pest = guest(&s, home, Some(&cookie)).await;
    let joined = pest.join_as_guest("Pest", "guest-key-000000000001").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let participant = joined["participant"].clone();

    let (status, answer) = report(
        &s,
        json!({ "link": s.link, "participant": participant, "category": "spam", "note": "ads", "action": "block" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["removed"], true, "{answer}");
    assert_eq!(answer["blocked"], true, "{answer}");
    pest.expect("removed").await;
    end_call(host).await;

    // A new call: the call's own removal no longer applies, the plugin's block does.
    let _host = self::host(&s).await;
    let mut same_browser = guest(&s, fresh_loopback(), Some(&cookie)).await;
    let answer = same_browser
        .join_as_guest("Not Pest", "guest-key-000000000002")
        .await;
    assert_eq!(answer["type"], "denied", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("blocked you"),
        "{answer}"
    );
    let mut same_network = guest(&s, home, None).await;
    let answer = same_network
        .join_as_guest("Neighbour", "guest-key-000000000003")
        .await;
    assert_eq!(answer["type"], "denied", "{answer}");
    let mut stranger = guest(&s, fresh_loopback(), None).await;
    let answer = stranger
        .join_as_guest("Stranger", "guest-key-000000000004")
        .await;
    assert_eq!(answer["type"], "joined", "{answer}");

    // The administrators' queue has the report, with the address the server saw.
    let queue = s
        .app
        .get("/p/spam-guard/reports")
        .bearer(&s.admin)
        .send()
        .await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text());
    let queue = queue.json();
    let group = &queue["groups"][0];
    assert_eq!(group["names"], json!(["Pest"]), "{queue}");
    assert_eq!(group["address"], home.to_string(), "{queue}");
    assert_eq!(group["device"], true, "{queue}");
    assert_eq!(group["reports"][0]["note"], "ads");
    assert_eq!(group["reports"][0]["status"], "actioned");
}

crate::support::on_both_databases_with!(
    with_spam_guard,
    remove_and_block_keeps_the_guest_out_of_later_calls
);

#[tokio::test]
async fn deny_and_report_turns_a_waiting_guest_away_and_lock_lobby_locks_it() {
    let app = TestApp::sqlite_with(with_spam_guard).await;
    let s = scene(app).await;
    s.app
        .req(
            axum::http::Method::PATCH,
            &format!("/api/v1/links/{}", s.link),
        )
        .bearer(&s.admin)
        .json(&json!({ "guests_need_approval": true }))
        .send()
        .await;
    let mut host = host(&s).await;
    let mut lurker = guest(&s, fresh_loopback(), None).await;
    let waiting = lurker
        .join_as_guest("Lurker", "guest-key-000000000005")
        .await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let request = waiting["request"].clone();
    host.lobby_until(|r| r.iter().any(|e| e["request"] == request))
        .await;

    let (status, answer) = report(
        &s,
        json!({ "link": s.link, "request": request, "name": "Lurker", "category": "impersonation", "action": "deny" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["denied"], true, "{answer}");
    assert_eq!(lurker.expect("denied").await["type"], "denied");
    host.lobby_until(|r| r.is_empty()).await;

    let res = s
        .app
        .post("/p/spam-guard/lobby-lock")
        .bearer(&s.admin)
        .json(&json!({ "link": s.link, "locked": true }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let mut late = guest(&s, fresh_loopback(), None).await;
    late.send(
        json!({ "v": 1, "type": "join", "name": "Late", "guest_key": "guest-key-000000000006" }),
    )
    .await;
    late.expect_error("lobby_locked").await;

    // Someone who is not on the call cannot lock or report.
    let other = s
        .app
        .user_with_token("eve@example.org", confab_core::accounts::Role::Member)
        .await;
    let res = s
        .app
        .post("/p/spam-guard/lobby-lock")
        .bearer(&other)
        .json(&json!({ "link": s.link, "locked": false }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    let res = s
        .app
        .get("/p/spam-guard/reports")
        .bearer(&other)
        .send()
        .await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "members do not see the queue"
    );
}

/// In real browsers: the host reports a guest from the call page with a still of
/// their video; the page (not the plugin) asks first, and the administrators'
/// queue then has the report and the picture.
#[tokio::test]
async fn a_report_with_a_still_from_the_call_page_reaches_the_review_queue() {
    use crate::support::browser::{Driver, admits, app_with_link_and, guest_asks, host_joins};

    let (app, base, link) = app_with_link_and(32, with_spam_guard).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "Spammy").await;
    let guest_id = admits(&host, &guest, "Spammy").await;
    host.wait_media_from(&[guest_id]).await;

    // The plugin's panel is its sandboxed frame; the page's question (confirm)
    // comes from the page around it.
    host.frame("spam-guard").await;
    host.click("details.spam-guard summary").await;
    let row = format!("details.spam-guard li[data-participant='{guest_id}']");
    host.wait_text(&row, "Spammy").await;
    host.click(&format!("{row} button")).await;
    host.fill(&format!("{row} textarea[name=note]"), "held up a rude sign")
        .await;
    host.click(&format!("{row} input[name=still]")).await;
    host.click(&format!("{row} button[data-action=report]"))
        .await;

    // The call page asks, in its own words, before anything is taken.
    let mut question = None;
    for _ in 0..100 {
        if let Ok(text) = host.client.get_alert_text().await {
            question = Some(text);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let question = question.expect("the page asks before taking a still");
    assert!(
        question.contains("Attach a still of what your screen shows of Spammy"),
        "{question}"
    );
    host.client.accept_alert().await.unwrap();
    host.wait_text(".spam-guard-result", "Reported.").await;

    let admin = app.token_for("host@example.org").await;
    let queue = app.get("/p/spam-guard/reports").bearer(&admin).send().await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text());
    let queue = queue.json();
    let report = &queue["groups"][0]["reports"][0];
    assert_eq!(queue["groups"][0]["names"], json!(["Spammy"]), "{queue}");
    assert_eq!(report["note"], "held up a rude sign", "{queue}");
    assert_eq!(report["evidence"], true, "{queue}");
    let id = report["id"].as_str().unwrap();
    let still = app
        .get(&format!("/p/spam-guard/reports/{id}/evidence"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(still.status, StatusCode::OK);
    assert!(
        still.body.starts_with(&[0xff, 0xd8, 0xff]),
        "a JPEG of the guest's tile"
    );

    // Remove and block: the browsers all come from 127.0.0.1, so a new browser
    // profile is the same guest on the same network, and is turned away with why.
    host.click(&format!("{row} button")).await;
    host.click(&format!("{row} button[data-action=block]"))
        .await;
    host.wait_text(".spam-guard-result", "removed and blocked from this link")
        .await;
    guest.wait_text("#status", "removed").await;
    let again = guest_asks(&driver, &base, &link, "Totally New").await;
    again.wait_text("#status", "blocked you").await;
    again.close().await;
    guest.close().await;
    host.close().await;
}

/// The panic button, in real browsers: suspending the guests stops the host's page
/// decoding a guest's video (the server forwards none of it), the guest's page says
/// so and the lobby locks; resuming brings the video back.
#[tokio::test]
async fn suspending_the_guests_stops_their_video_until_resumed() {
    use crate::support::browser::{Driver, admits, app_with_link, guest_asks, host_joins};

    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "Disrupter").await;
    let guest_id = admits(&host, &guest, "Disrupter").await;
    let camera = format!("p{guest_id}-0");
    host.wait_video_flowing(&camera).await;

    host.click("#suspend-guests").await;
    host.wait_text("#guests-suspended", "All guests are suspended")
        .await;
    host.wait_text("#suspend-guests", "Resume guests").await;
    host.wait_text("#lobby-state", "Lobby locked").await;
    guest
        .wait_text("#guests-suspended", "nobody sees or hears you")
        .await;
    // Frames already on their way may still be decoded; then nothing more comes.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let before = host.frames_decoded(&camera).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = host.frames_decoded(&camera).await;
    assert_eq!(before, after, "no guest video is forwarded while suspended");

    host.click("#suspend-guests").await;
    host.wait_text("#suspend-guests", "Suspend guests").await;
    host.wait_video_flowing(&camera).await;
    guest.close().await;
    host.close().await;
}

/// Over real SMTP: every administrator gets one mail for a batch of reports, not
/// one per report; a batch is mailed once; the next report starts a new batch.
#[tokio::test]
async fn administrators_get_one_mail_per_batch_of_reports_over_smtp() {
    use crate::smtp::{SinkOptions, SmtpSink};
    use std::time::Duration;

    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    })
    .await;
    let (port, ca) = (
        sink.port(),
        sink.ca_pem_path().unwrap().display().to_string(),
    );
    let app = TestApp::sqlite_with(|c| {
        with_spam_guard(c);
        c.mail.smtp_host = "localhost".into();
        c.mail.smtp_port = port;
        c.mail.smtp_tls = confab_core::config::SmtpTls::Starttls;
        c.mail.smtp_ca_file = ca;
        c.mail.poll_interval_ms = 50;
    })
    .await;
    let delivery = app.start_mail();
    let s = scene(app).await;
    s.app
        .user_with_token("ops@example.org", confab_core::accounts::Role::Admin)
        .await;
    let _host = host(&s).await;
    let notify = || async {
        s.app
            .state
            .plugins
            .fire_timer(s.app.state.plugin_deps(), "spam-guard", "notify-admins")
            .await
            .unwrap();
    };
    let mut guests = Vec::new();
    for (i, name) in ["Ads", "More ads", "Even more ads"].into_iter().enumerate() {
        let mut ws = guest(&s, fresh_loopback(), None).await;
        let joined = ws
            .join_as_guest(name, &format!("guest-key-{:012}", 900 + i))
            .await;
        assert_eq!(joined["type"], "joined", "{joined}");
        let (status, answer) = report(
            &s,
            json!({ "link": s.link, "participant": joined["participant"], "category": "spam", "action": "report" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        guests.push((ws, joined["participant"].clone()));
    }
    notify().await;
    let messages = sink.wait_for(2, Duration::from_secs(30)).await;
    let mut to: Vec<String> = messages
        .iter()
        .map(|m| m.envelope["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["admin@example.org", "ops@example.org"]);
    for m in &messages {
        let m = m.mime();
        assert_eq!(m["headers"]["Subject"], "3 new reports on Confab", "{m:#}");
        let text = crate::mail::leaves(&m["tree"])
            .into_iter()
            .find(|l| l["content_type"] == "text/plain")
            .unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string();
        for name in ["\"Ads\"", "\"More ads\"", "\"Even more ads\""] {
            assert!(text.contains(name), "{text}");
        }
    }

    // The same batch is not mailed again.
    notify().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.messages().len(), 2);

    // A new report is a new batch of one.
    let (status, answer) = report(
        &s,
        json!({ "link": s.link, "participant": guests[0].1, "category": "harassment", "action": "report", "note": "again" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    notify().await;
    let messages = sink.wait_for(4, Duration::from_secs(30)).await;
    for m in &messages[2..] {
        assert_eq!(m.mime()["headers"]["Subject"], "1 new report on Confab");
    }
    delivery.stop().await;
}

/// In real browsers: knocks from eleven networks within minutes make the owner's
/// call page say the link may have leaked; Rotate link there gives a new address
/// that works (guests now wait for approval) while the old one stops at once.
#[tokio::test]
async fn knocks_from_eleven_networks_warn_the_owner_who_rotates_from_the_notice() {
    use crate::support::browser::{
        Driver, SECRET, admits, app_with_link_and, guest_asks, host_joins,
    };

    let (app, base, link) = app_with_link_and(32, with_spam_guard).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let addr = base.trim_start_matches("http://");
    let mut knockers = Vec::new();
    for i in 0..11 {
        let mut ws = Ws::open_from(addr, &link, None, fresh_loopback()).await;
        let answer = ws
            .join_as_guest(
                &format!("Knocker {i}"),
                &format!("guest-key-{:012}", 700 + i),
            )
            .await;
        assert_eq!(answer["type"], "waiting", "{answer}");
        knockers.push(ws);
    }
    host.frame("spam-guard").await;
    host.wait_text(
        ".spam-guard-leaked",
        "This link may have been shared beyond the people you invited.",
    )
    .await;
    host.wait_text(
        ".spam-guard-numbers",
        "11 different networks asked to join in the last 10 minutes",
    )
    .await;

    host.click(".spam-guard-leaked button[data-action=rotate]")
        .await;
    // The frame never holds the secret: the page shows the new link with it.
    host.top().await;
    host.wait_js("document.querySelector('.plugin-link input.url')?.value.includes('/j/')")
        .await;
    let new_url = host
        .client
        .execute(
            "return document.querySelector('.plugin-link input.url').value",
            vec![],
        )
        .await
        .unwrap();
    let new_url = new_url.as_str().unwrap().to_string();
    let new_id = new_url
        .strip_prefix(&format!("{base}/j/"))
        .and_then(|rest| rest.split_once('#'))
        .map(|(id, fragment)| {
            assert_eq!(fragment, format!("k={SECRET}"), "the page's own secret");
            id.to_string()
        })
        .unwrap_or_else(|| panic!("{new_url}"));
    assert_ne!(new_id, link);

    // The old address stops working; the new one asks for approval.
    let old = app.get(&format!("/j/{link}")).send().await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
    let info = app
        .get(&format!("/api/v1/links/{new_id}"))
        .bearer(&app.token_for("host@example.org").await)
        .send()
        .await;
    assert_eq!(
        info.json()["policy"]["guests_need_approval"],
        true,
        "{}",
        info.text()
    );
    for knocker in knockers {
        knocker.close().await;
    }
    host.wait_js("!document.querySelector('#lobby li')").await;

    // Someone invited joins this very call through the new address: admitted, their
    // media decrypts on the host's page (the keys come from the secret, which the
    // new address keeps).
    let friend = guest_asks(&driver, &base, &new_id, "Invited Friend").await;
    let friend_id = admits(&host, &friend, "Invited Friend").await;
    host.wait_media_from(&[friend_id]).await;
    friend.close().await;
    host.close().await;
}

/// Two servers: what an administrator blocks on the whole of one turns the same
/// network away on the other, which fetches the first's list through its
/// `http-client` from a host its operator allowed; elsewhere, nothing changes.
#[tokio::test]
async fn a_network_blocked_on_one_server_is_turned_away_by_a_server_that_subscribes() {
    use confab_core::config::PluginSettings;
    const TOKEN: &str = "shared-list-token-0123456789";

    // Server A shares its list, and an administrator blocks a guest's network on
    // all of it.
    let a = TestApp::sqlite_with(|c| {
        with_spam_guard(c);
        c.plugins.settings.insert(
            "spam-guard".into(),
            PluginSettings {
                config: [("export_token".to_string(), TOKEN.to_string())].into(),
                ..Default::default()
            },
        );
    })
    .await;
    let a = scene(a).await;
    let _host = host(&a).await;
    let home = fresh_loopback();
    let mut pest = guest(&a, home, None).await;
    let joined = pest.join_as_guest("Pest", "guest-key-000000000601").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let (status, filed) = report(
        &a,
        json!({ "link": a.link, "participant": joined["participant"], "category": "spam", "action": "report" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let blocked = a
        .app
        .post("/p/spam-guard/blocks")
        .bearer(&a.admin)
        .json(&json!({ "report": filed["report"], "scope": "instance" }))
        .send()
        .await;
    assert_eq!(blocked.status, StatusCode::CREATED, "{}", blocked.text());

    // Server B subscribes to it.
    let list = format!("http://{}/p/spam-guard/blocklist", a.addr);
    let b = TestApp::sqlite_with(|c| {
        with_spam_guard(c);
        c.plugins.settings.insert(
            "spam-guard".into(),
            PluginSettings {
                config: [("subscriptions".to_string(), format!("{list} {TOKEN}"))].into(),
                http_hosts: vec!["127.0.0.1".into()],
                ..Default::default()
            },
        );
    })
    .await;
    let b = scene(b).await;
    b.app
        .state
        .plugins
        .fire_timer(b.app.state.plugin_deps(), "spam-guard", "sync-blocklists")
        .await
        .unwrap();
    let status = b
        .app
        .get("/p/spam-guard/subscriptions")
        .bearer(&b.admin)
        .send()
        .await
        .json();
    assert_eq!(status["subscriptions"][0]["entries"], 1, "{status}");
    assert_eq!(status["subscriptions"][0]["error"], Value::Null, "{status}");

    let _b_host = host(&b).await;
    let mut same_network = guest(&b, home, None).await;
    let answer = same_network
        .join_as_guest("Pest again", "guest-key-000000000602")
        .await;
    assert_eq!(answer["type"], "denied", "{answer}");
    assert_eq!(
        answer["reason"],
        "This server does not take requests from your network."
    );
    let mut stranger = guest(&b, fresh_loopback(), None).await;
    let answer = stranger
        .join_as_guest("Stranger", "guest-key-000000000603")
        .await;
    assert_eq!(answer["type"], "joined", "{answer}");

    // Without the token, A shares nothing.
    let refused = b.app.get("/p/spam-guard/blocklist").send().await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "B exports nothing");
    let res = a.app.get("/p/spam-guard/blocklist").send().await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

/// Hosts an operator adds for `http-client` are shown with the plugin, and refused
/// for a plugin whose manifest does not let the operator add any.
#[tokio::test]
async fn operator_http_hosts_are_for_plugins_that_ask_for_them() {
    use confab_core::config::PluginSettings;
    let app = TestApp::sqlite_with(|c| {
        with_spam_guard(c);
        for name in ["spam-guard", "email-invites"] {
            c.plugins.settings.insert(
                name.into(),
                PluginSettings {
                    http_hosts: vec!["lists.example.org".into()],
                    ..Default::default()
                },
            );
        }
    })
    .await;
    let admin = app.admin_token().await;
    let list = app
        .get("/api/v1/admin/plugins")
        .bearer(&admin)
        .send()
        .await
        .json();
    let spam_guard = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "spam-guard")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(spam_guard["http_hosts"], json!(["lists.example.org"]));
    let problem = list["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p["error"].as_str().filter(|e| e.contains("email-invites")))
        .unwrap_or_else(|| panic!("{list}"))
        .to_string();
    assert!(
        problem.contains("plugins.settings.email-invites.http_hosts")
            && problem.contains("operator-hosts"),
        "{problem}"
    );
}

/// The administrators' review queue on the dashboard, in Chromium: the report's
/// caller with its network and category, "Dismiss", "Block on this server" turning
/// that network away on every link, "Unblock" letting it back; a member's
/// dashboard has no such card.
#[tokio::test]
async fn the_review_queue_card_blocks_unblocks_and_dismisses_for_administrators() {
    use crate::support::browser::{Driver, app_with_link_and};

    let (app, base, link) = app_with_link_and(32, with_spam_guard).await;
    let addr = base.trim_start_matches("http://").to_string();
    let admin = app.token_for("host@example.org").await;
    let bearer = || Some(("authorization", format!("Bearer {admin}")));
    let mut host = Ws::open_with(&addr, &link, bearer()).await;
    host.send(json!({ "v": 1, "type": "join" })).await;
    host.expect("joined").await;
    let home = fresh_loopback();
    let mut pest = Ws::open_from(&addr, &link, None, home).await;
    let joined = pest
        .join_admitted_by(&mut host, "Spammy", "guest-key-000000000801")
        .await;
    let filed = app
        .post("/p/spam-guard/reports")
        .bearer(&admin)
        .json(&json!({ "link": link, "participant": joined["participant"], "category": "spam", "note": "links in the chat" }))
        .send()
        .await;
    assert_eq!(filed.status, StatusCode::CREATED, "{}", filed.text());

    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    // The review queue is the plugin's administrators' frame.
    page.frame_at("iframe[src='/plugin-frame/spam-guard/admin']")
        .await;
    let group = "article.spam-guard-group";
    page.wait_text(group, "Spammy").await;
    let text = page.wait_text(group, "Network").await;
    assert!(text.contains(&format!("Network {home}")), "{text}");
    assert!(text.contains("Spam"), "{text}");
    assert!(text.contains("links in the chat"), "{text}");

    // Dismissed: the report's status changes, and the button goes.
    page.click(&format!("{group} button[data-action=dismiss]"))
        .await;
    page.wait_js("!document.querySelector('article.spam-guard-group button[data-action=dismiss]')")
        .await;
    page.wait_text(group, "Dismissed").await;

    // Blocked on the whole server: the same network is turned away on another link.
    page.click(&format!("{group} button[data-action=block]"))
        .await;
    page.wait_text(group, "Blocked on this server").await;
    let other = app
        .post("/api/v1/links")
        .bearer(&admin)
        .json(&json!({ "title": "Other", "guests_need_approval": false }))
        .send()
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut other_host = Ws::open_with(&addr, &other, bearer()).await;
    other_host.send(json!({ "v": 1, "type": "join" })).await;
    other_host.expect("joined").await;
    let mut again = Ws::open_from(&addr, &other, None, home).await;
    let answer = again
        .join_as_guest("Spammy 2", "guest-key-000000000802")
        .await;
    assert_eq!(answer["type"], "denied", "{answer}");

    // Unblocked from the card: the network may ask again.
    page.click(&format!("{group} button[data-action=unblock]"))
        .await;
    page.wait_js(
        "!document.querySelector('article.spam-guard-group').textContent.includes('Blocked on')",
    )
    .await;
    let mut back = Ws::open_from(&addr, &other, None, home).await;
    let answer = back
        .join_as_guest("Spammy 3", "guest-key-000000000803")
        .await;
    assert_eq!(answer["type"], "joined", "{answer}");

    // A member's dashboard has no review queue.
    app.user_with_token("mia@example.org", confab_core::accounts::Role::Member)
        .await;
    let member = driver.browser().await;
    member.sign_in(&base, "mia@example.org").await;
    member
        .wait_js("document.querySelector('#plugin-cards') !== null")
        .await;
    let frames = member
        .client
        .execute(
            "return [...document.querySelectorAll('#plugin-cards iframe')].map((f) => f.getAttribute('src'))",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        !frames
            .to_string()
            .contains("/plugin-frame/spam-guard/admin"),
        "{frames}"
    );
    let member_cookies = app.sign_in("mia@example.org").await;
    let refused = app
        .get("/plugin-frame/spam-guard/admin")
        .cookie(&member_cookies.cookies)
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    member.close().await;
    page.close().await;
}

/// A shared list as large as the plugin takes (10,000 networks), served by a
/// stand-in for another server: applied whole within the plugin's deadline, and a
/// network on it turned away.
#[tokio::test]
async fn a_shared_list_of_ten_thousand_networks_is_applied_whole() {
    use confab_core::config::PluginSettings;
    let expires = chrono::Utc::now().timestamp() + 86_400;
    let entries: Vec<Value> = (0..10_000)
        .map(|i| json!({"entity": format!("127.9.{}.{}/32", i / 256, i % 256), "kind": "network", "recommendation": "block", "reason": "spam", "expires_at": expires}))
        .collect();
    let list = json!({"format": "confab-blocklist", "version": 1, "entries": entries}).to_string();
    let peer = axum::Router::new().route(
        "/p/spam-guard/blocklist",
        axum::routing::get(move || {
            let list = list.clone();
            async move { ([("content-type", "application/json")], list) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, peer).await.unwrap() });

    let app = TestApp::sqlite_with(|c| {
        with_spam_guard(c);
        c.plugins.settings.insert(
            "spam-guard".into(),
            PluginSettings {
                config: [(
                    "subscriptions".to_string(),
                    format!("http://127.0.0.1:{port}/p/spam-guard/blocklist any-token"),
                )]
                .into(),
                http_hosts: vec!["127.0.0.1".into()],
                ..Default::default()
            },
        );
    })
    .await;
    let s = scene(app).await;
    s.app
        .state
        .plugins
        .fire_timer(s.app.state.plugin_deps(), "spam-guard", "sync-blocklists")
        .await
        .unwrap();
    let status = s
        .app
        .get("/p/spam-guard/subscriptions")
        .bearer(&s.admin)
        .send()
        .await
        .json();
    assert_eq!(status["subscriptions"][0]["entries"], 10_000, "{status}");
    let _host = host(&s).await;
    let mut listed = guest(&s, "127.9.39.15".parse().unwrap(), None).await;
    let answer = listed
        .join_as_guest("Listed", "guest-key-000000000901")
        .await;
    assert_eq!(answer["type"], "denied", "{answer}");
}
