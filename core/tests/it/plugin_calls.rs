//! Plugins on live calls, over real WebSockets: lobby screening (deny and flag),
//! messages on a plugin's channel, the `calls` capability, and the call page's list
//! of plugin modules. The plugins are examples/hello-plugin (denies names with its
//! blocked word, relays call messages, lists and removes people) and the rogue test
//! plugin (flags every request). Last, the same screening and a plugin's call-page
//! module in real headless browsers.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use confab_core::accounts::Role;
use serde_json::{Value, json};

use crate::plugins::app_with_plugins;
use crate::support::TestApp;
use crate::support::browser::{Driver, admits, app_with_link_and, guest_asks, host_joins};
use crate::support::ws::Ws;

const KEY_A: &str = "guest-key-aaaaaaaaaaaa";
const KEY_B: &str = "guest-key-bbbbbbbbbbbb";

struct Setup {
    app: TestApp,
    _plugins: tempfile::TempDir,
    addr: String,
    link: String,
    admin: String,
    owner_cookies: String,
}

/// The plugin apps, an owner with a link (`guests_need_approval` as given), served.
async fn setup(guests_need_approval: bool) -> Setup {
    let (app, plugins) = app_with_plugins(|_| {}).await;
    let admin = app.admin_token().await;
    let res = app
        .post("/api/v1/links")
        .bearer(&admin)
        .json(&json!({ "title": "Plugin call", "guests_need_approval": guests_need_approval }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let link = res.json()["id"].as_str().unwrap().to_string();
    let owner_cookies = app.sign_in("admin@example.org").await.cookies;
    let addr = app.serve().await;
    Setup {
        app,
        _plugins: plugins,
        addr,
        link,
        admin,
        owner_cookies,
    }
}

async fn join_owner(s: &Setup) -> Ws {
    let mut owner = Ws::open(&s.addr, &s.link, Some(&s.owner_cookies)).await;
    owner.send(json!({ "v": 1, "type": "join" })).await;
    owner.expect("joined").await;
    owner
}

/// A guest who asks and, being flagged by the rogue plugin, waits until `host` admits.
async fn flagged_and_admitted(s: &Setup, host: &mut Ws, name: &str, key: &str) -> (Ws, u64) {
    let mut guest = Ws::open(&s.addr, &s.link, None).await;
    let joined = guest.join_admitted_by(host, name, key).await;
    (guest, joined["participant"].as_u64().unwrap())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The next `plugin` message, skipping snapshots and other traffic.
async fn next_plugin_message(ws: &mut Ws) -> Value {
    for _ in 0..50 {
        let message = ws.next().await;
        if message["type"] == "plugin" {
            return message;
        }
    }
    panic!("no plugin message");
}

/// The error `code`, skipping snapshots and copies of `last`, the activity's last
/// message: the plugin hears of a join on its event queue and of a message on the
/// call's channel, so its welcome for a newcomer may arrive after the live message.
async fn plugin_error(ws: &mut Ws, code: &str, last: &[u8]) {
    for _ in 0..50 {
        let message = ws.next().await;
        match message["type"].as_str() {
            Some("error") => {
                assert_eq!(message["code"], code, "{message}");
                return;
            }
            Some("plugin") => assert_eq!(message["payload"], b64(last), "{message}"),
            Some("roster" | "lobby") => {}
            _ => panic!("expected error {code}, got {message}"),
        }
    }
    panic!("no error {code}");
}

#[tokio::test]
async fn a_request_a_plugin_denies_never_reaches_the_call_and_the_guest_sees_why() {
    let s = setup(true).await;
    let mut owner = join_owner(&s).await;

    let mut spammer = Ws::open(&s.addr, &s.link, None).await;
    let answer = spammer.join_as_guest("Cheap SPAM deals", KEY_A).await;
    assert_eq!(answer["type"], "denied", "{answer}");
    assert_eq!(answer["blocked"], false);
    let reason = answer["reason"].as_str().unwrap();
    assert!(reason.contains("spam"), "the plugin's reason: {reason}");

    // Asking again under another name is screened afresh (and flagged by rogue).
    let again = spammer.join_as_guest("Ana", KEY_A).await;
    assert_eq!(again["type"], "waiting", "{again}");
    let lobby = owner.lobby_until(|r| !r.is_empty()).await;
    assert_eq!(
        lobby.len(),
        1,
        "the denied request was never shown: {lobby:?}"
    );
    assert_eq!(lobby[0]["name"], "Ana");

    let kinds = s.app.call_event_kinds_with(&s.link, "denied").await;
    assert!(
        kinds.iter().any(|k| k == "denied"),
        "the refusal is in the call metadata: {kinds:?}"
    );
}

#[tokio::test]
async fn a_flagged_guest_waits_with_the_warning_even_on_a_link_guests_join_directly() {
    let s = setup(false).await;
    let mut owner = join_owner(&s).await;

    let mut ana = Ws::open(&s.addr, &s.link, None).await;
    let waiting = ana.join_as_guest("Ana", KEY_A).await;
    assert_eq!(
        waiting["type"], "waiting",
        "flagged, so not let straight in: {waiting}"
    );
    let lobby = owner
        .lobby_until(|r| r.iter().any(|e| e["name"] == "Ana"))
        .await;
    assert_eq!(
        lobby[0]["warnings"],
        json!([{ "plugin": "rogue", "message": "Ana looks suspicious" }])
    );
    owner
        .send(json!({ "v": 1, "type": "admit", "request": lobby[0]["request"] }))
        .await;
    ana.expect("joined").await;
    owner.lobby_until(|r| r.is_empty()).await;

    // With the flagging plugin switched off, the link's own rule applies again.
    let res = s
        .app
        .post("/api/v1/admin/plugins/rogue/disable")
        .bearer(&s.admin)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let mut bob = Ws::open(&s.addr, &s.link, None).await;
    let joined = bob.join_as_guest("Bob", KEY_B).await;
    assert_eq!(joined["type"], "joined", "{joined}");
}

#[tokio::test]
async fn members_are_not_screened() {
    let s = setup(true).await;
    s.app
        .user_with_token("spam-colleague@example.org", Role::Member)
        .await;
    let cookies = s.app.sign_in("spam-colleague@example.org").await.cookies;
    let mut owner = join_owner(&s).await;
    let mut member = Ws::open(&s.addr, &s.link, Some(&cookies)).await;
    member
        .send(json!({ "v": 1, "type": "join", "name": "Spam colleague" }))
        .await;
    member.expect("joined").await;
    owner.roster_until(|p| p.len() == 2).await;
}

#[tokio::test]
async fn call_messages_go_through_the_plugin_to_everyone_and_to_late_joiners() {
    let s = setup(true).await;
    let mut owner = join_owner(&s).await;
    let (mut ana, _) = flagged_and_admitted(&s, &mut owner, "Ana", KEY_A).await;

    let payload = "the film is at 12:34 ▶".as_bytes();
    ana.send(json!({ "v": 1, "type": "plugin", "plugin": "hello", "payload": b64(payload) }))
        .await;
    for ws in [&mut owner, &mut ana] {
        let relayed = next_plugin_message(ws).await;
        assert_eq!(relayed["plugin"], "hello");
        assert_eq!(relayed["payload"], b64(payload), "relayed byte for byte");
    }

    // The plugin keeps the last message and hands it to whoever joins later.
    let (mut bob, _) = flagged_and_admitted(&s, &mut owner, "Bob", KEY_B).await;
    let snapshot = next_plugin_message(&mut bob).await;
    assert_eq!(snapshot["payload"], b64(payload));

    // Bad messages on a plugin's channel get clear errors and disturb nobody.
    ana.send(json!({ "v": 1, "type": "plugin", "plugin": "nobody-here", "payload": b64(b"x") }))
        .await;
    plugin_error(&mut ana, "plugin_unavailable", payload).await;
    let too_big = vec![7u8; 32 * 1024 + 1];
    ana.send(json!({ "v": 1, "type": "plugin", "plugin": "hello", "payload": b64(&too_big) }))
        .await;
    plugin_error(&mut ana, "message_too_large", payload).await;
    ana.send(json!({ "v": 1, "type": "plugin", "plugin": "hello", "payload": "not base64!" }))
        .await;
    plugin_error(&mut ana, "bad_message", payload).await;

    let mut outsider = Ws::open(&s.addr, &s.link, None).await;
    outsider
        .send(json!({ "v": 1, "type": "plugin", "plugin": "hello", "payload": b64(b"x") }))
        .await;
    outsider.expect_error("not_joined").await;
}

#[tokio::test]
async fn a_plugin_lists_the_roster_and_removes_people_only_as_the_user_may() {
    let s = setup(true).await;
    let mut owner = join_owner(&s).await;
    let (mut ana, ana_id) = flagged_and_admitted(&s, &mut owner, "Ana", KEY_A).await;

    let roster = s
        .app
        .get(&format!("/p/hello/roster?link={}", s.link))
        .bearer(&s.admin)
        .send()
        .await;
    assert_eq!(roster.status, StatusCode::OK, "{}", roster.text());
    let lines = roster.text();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.lines().any(|l| l.ends_with(" member")), "{lines}");
    assert!(lines.contains(&format!("{ana_id} Ana guest")), "{lines}");

    // Someone who is not on the call cannot remove anyone through the plugin.
    let other = s
        .app
        .user_with_token("other@example.org", Role::Member)
        .await;
    let refused = s
        .app
        .req(
            Method::POST,
            &format!("/p/hello/remove?link={}&participant={ana_id}", s.link),
        )
        .bearer(&other)
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(
        refused.text().contains("AccessDenied"),
        "{}",
        refused.text()
    );

    // The owner, on the call, may: the guest is removed as if the owner did it.
    let removed = s
        .app
        .req(
            Method::POST,
            &format!("/p/hello/remove?link={}&participant={ana_id}", s.link),
        )
        .bearer(&s.admin)
        .send()
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text());
    let message = ana.expect("removed").await;
    assert!(message["by"].is_string());
    owner.roster_until(|p| p.len() == 1).await;

    let after = s
        .app
        .get(&format!("/p/hello/roster?link={}", s.link))
        .bearer(&s.admin)
        .send()
        .await
        .text();
    assert_eq!(after.lines().count(), 1, "{after}");
}

#[tokio::test]
async fn the_call_page_lists_the_modules_of_switched_on_plugins() {
    let s = setup(true).await;
    let page = s.app.get(&format!("/j/{}", s.link)).send().await;
    assert_eq!(page.status, StatusCode::OK);
    let html = crate::support::unescape(&page.text());
    assert!(
        html.contains(
            r#"data-plugin-modules="[{"plugin":"hello","frame":"/plugin-frame/hello/call-page","link_secret":false}]""#
        ),
        "{html}"
    );
    // The frame's document: sandboxed, loads the kit, which loads the module.
    let frame = s.app.get("/plugin-frame/hello/call-page").send().await;
    assert_eq!(frame.status, StatusCode::OK, "{}", frame.text());
    let policy = frame.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("sandbox allow-scripts"), "{policy}");
    assert!(!policy.contains("allow-same-origin"), "{policy}");
    assert!(policy.contains("connect-src 'none'"), "{policy}");
    assert!(
        frame
            .text()
            .contains(r#"data-module="/p/hello/static/hello.js""#),
        "{}",
        frame.text()
    );
    assert!(frame.text().contains(r#"src="/static/plugin-kit.js""#));
    // hello has no dashboard module, and nobody frames another kind.
    for missing in [
        "/plugin-frame/hello/dashboard",
        "/plugin-frame/hello/admin",
        "/plugin-frame/hello/other",
        "/plugin-frame/nobody/call-page",
    ] {
        assert_eq!(
            s.app.get(missing).send().await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    let res = s
        .app
        .post("/api/v1/admin/plugins/hello/disable")
        .bearer(&s.admin)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let html = crate::support::unescape(&s.app.get(&format!("/j/{}", s.link)).send().await.text());
    assert!(html.contains(r#"data-plugin-modules="[]""#), "{html}");
    assert_eq!(
        s.app
            .get("/plugin-frame/hello/call-page")
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let module = s.app.get("/p/hello/static/hello.js").send().await;
    assert_eq!(
        module.status,
        StatusCode::NOT_FOUND,
        "a switched-off plugin's files are not served"
    );
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

    // The hello plugin's call-page module, in its sandboxed frame: a wave goes to
    // the plugin, which relays it to everyone on the call.
    guest.frame("hello").await;
    guest.click("button").await;
    host.frame("hello").await;
    host.wait_text(".waves", "Ana waves").await;
    guest.wait_text(".waves", "Ana waves").await;
    host.close().await;
    guest.close().await;
    spammer.close().await;
}

#[tokio::test]
async fn a_shared_activity_numbers_updates_and_brings_a_late_joiner_up_to_date() {
    let s = setup(true).await;
    let mut owner = join_owner(&s).await;
    let activity = |kind: &str, extra: Value| {
        let mut message = json!({ "v": 1, "type": kind, "plugin": "hello" });
        for (key, value) in extra.as_object().unwrap() {
            message[key] = value.clone();
        }
        message
    };

    // The owner starts it: everyone on the call hears, and the state starts empty.
    owner.send(activity("activity_join", json!({}))).await;
    let presence = owner.expect("activity").await;
    assert_eq!(presence["members"][0]["role"], "host");
    let start = owner.expect("activity_snapshot").await;
    assert_eq!(
        (start["seq"].as_u64(), &start["payload"]),
        (Some(0), &Value::Null)
    );
    for payload in ["AAAA", "BBBB"] {
        owner
            .send(activity("activity_update", json!({ "payload": payload })))
            .await;
        let update = owner.expect("activity_update").await;
        assert_eq!(update["payload"], payload);
    }

    // Ana arrives on the call and hears of the activity, then joins it: the owner's
    // page is asked, answers with the state as of update 1, and Ana gets it and
    // then update 2 from the server's log.
    let (mut ana, ana_id) = flagged_and_admitted(&s, &mut owner, "Ana", KEY_A).await;
    let presence = ana.expect("activity").await;
    assert_eq!(presence["members"].as_array().unwrap().len(), 1);
    ana.send(activity("activity_join", json!({}))).await;
    let asked = owner.expect("activity").await;
    assert_eq!(asked["members"][1]["role"], "guest");
    let asked = owner.expect("activity_snapshot_request").await;
    assert_eq!(asked["newcomer"], ana_id);
    owner
        .send(activity(
            "activity_snapshot",
            json!({ "newcomer": ana_id, "seq": 1, "payload": "U1RBVEU=" }),
        ))
        .await;
    ana.expect("activity").await;
    let snapshot = ana.expect("activity_snapshot").await;
    assert_eq!(snapshot["seq"], 1);
    assert_eq!(snapshot["payload"], "U1RBVEU=");
    assert_eq!(snapshot["next"], 2);
    assert_eq!(snapshot["complete"], true);
    let missed = ana.expect("activity_update").await;
    assert_eq!(
        (missed["seq"].as_u64(), &missed["payload"]),
        (Some(2), &json!("BBBB"))
    );
    // The plugin's server side learns who is in it (calls.activity), nothing more.
    let members = s
        .app
        .get(&format!("/p/hello/activity?link={}", s.link))
        .send()
        .await;
    assert_eq!(members.status, StatusCode::OK);
    let owner_id = presence["host"].as_u64().unwrap();
    assert_eq!(members.text(), format!("{owner_id} host\n{ana_id} guest\n"));

    // A message to one member.
    ana.send(activity(
        "activity_send",
        json!({ "to": [presence["host"]], "payload": "SEk=" }),
    ))
    .await;
    let message = owner.expect("activity_message").await;
    assert_eq!(
        (message["from"].as_u64(), &message["payload"]),
        (Some(ana_id), &json!("SEk="))
    );

    // Limits, each with a clear error, and nothing reaches anyone else.
    let too_big = "A".repeat(43_693);
    ana.send(activity("activity_update", json!({ "payload": too_big })))
        .await;
    ana.expect_error("message_too_large").await;
    let crowd: Vec<u64> = (1..=33).collect();
    ana.send(activity(
        "activity_send",
        json!({ "to": crowd, "payload": "SEk=" }),
    ))
    .await;
    ana.expect_error("bad_message").await;
    ana.send(activity(
        "activity_update",
        json!({ "payload": "not base64!" }),
    ))
    .await;
    ana.expect_error("bad_message").await;
    ana.send(activity(
        "activity_send",
        json!({ "to": [999], "payload": "SEk=" }),
    ))
    .await;
    ana.expect_error("no_such_participant").await;
    ana.send(json!({ "v": 1, "type": "activity_join", "plugin": "nobody-here" }))
        .await;
    ana.expect_error("plugin_unavailable").await;
    ana.send(activity(
        "activity_snapshot",
        json!({ "seq": 9, "payload": "U1RBVEU=" }),
    ))
    .await;
    ana.expect_error("bad_message").await;

    // Ana leaves it: the owner is alone in it again.
    ana.send(activity("activity_leave", json!({}))).await;
    let presence = owner.expect("activity").await;
    assert_eq!(presence["members"].as_array().unwrap().len(), 1);
    owner.send(json!({ "v": 1, "type": "ping" })).await;
    owner.expect("pong").await;
}
