//! The join flow over the signaling WebSocket: lobby, admission, removal, resume,
//! and bad messages that disturb nobody.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::Duration as Span;
use confab_core::accounts::Role;
use serde_json::json;

use crate::support::TestApp;
use crate::support::ws::Ws;

const KEY_A: &str = "guest-key-aaaaaaaaaaaa";
const KEY_B: &str = "guest-key-bbbbbbbbbbbb";

/// An app with an owner, a colleague and a link; returns (app, addr, link id, owner cookies, colleague cookies).
async fn setup(max_participants: i32) -> (TestApp, String, String, String, String) {
    let app = TestApp::sqlite().await;
    let token = app.admin_token().await;
    app.user_with_token("colleague@example.org", Role::Member)
        .await;
    let res = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "Team call", "max_participants": max_participants }))
        .send()
        .await;
    let link = res.json()["id"].as_str().unwrap().to_string();
    let owner = app.sign_in("admin@example.org").await.cookies;
    let colleague = app.sign_in("colleague@example.org").await.cookies;
    let addr = app.serve().await;
    (app, addr, link, owner, colleague)
}

async fn join_member(addr: &str, link: &str, cookies: &str) -> (Ws, u64) {
    let mut ws = Ws::open(addr, link, Some(cookies)).await;
    ws.send(json!({ "v": 1, "type": "join" })).await;
    let joined = ws.expect("joined").await;
    let id = joined["participant"].as_u64().unwrap();
    (ws, id)
}

/// A guest asks, `host` admits; returns the guest's socket and participant id.
async fn admitted_guest(
    addr: &str,
    link: &str,
    host: &mut Ws,
    name: &str,
    key: &str,
) -> (Ws, u64, String) {
    let mut guest = Ws::open(addr, link, None).await;
    let joined = guest.join_admitted_by(host, name, key).await;
    let token = joined["resume_token"].as_str().unwrap().to_string();
    (guest, joined["participant"].as_u64().unwrap(), token)
}

/// Admit all: one message lets the waiting requests in, oldest first, while there
/// are seats; the rest keep waiting and the host is told why.
#[tokio::test]
async fn admit_all_lets_everyone_in_up_to_the_cap() {
    let (_app, addr, link, owner_cookies, _) = setup(4).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let mut guests = Vec::new();
    for i in 0..5 {
        let mut guest =
            Ws::open_from(&addr, &link, None, crate::support::ws::fresh_loopback()).await;
        let waiting = guest
            .join_as_guest(&format!("Guest {i}"), &format!("guest-key-{:012}", 900 + i))
            .await;
        assert_eq!(waiting["type"], "waiting", "{waiting}");
        guests.push(guest);
    }
    owner.lobby_until(|r| r.len() == 5).await;
    owner.send(json!({ "v": 1, "type": "admit_all" })).await;
    // Three seats are left beside the owner's: the first three who asked get them.
    for guest in guests.iter_mut().take(3) {
        guest.expect("joined").await;
    }
    // The owner hears why two still wait, and sees them in the lobby.
    let (mut full, mut lobby, mut roster) = (None, Vec::new(), 0);
    for _ in 0..100 {
        let message = owner.next().await;
        match message["type"].as_str() {
            Some("error") => full = Some(message),
            Some("lobby") => lobby = message["requests"].as_array().unwrap().clone(),
            Some("roster") => roster = message["participants"].as_array().unwrap().len(),
            _ => {}
        }
        if full.is_some() && lobby.len() == 2 && roster == 4 {
            break;
        }
    }
    let full = full.expect("the owner is told the call is full");
    assert_eq!(full["code"], "call_full", "{full}");
    assert!(
        full["message"].as_str().unwrap().contains("admitted 3"),
        "{full}"
    );
    assert_eq!(roster, 4);
    assert_eq!(lobby.len(), 2, "{lobby:?}");
    assert_eq!(lobby[0]["name"], "Guest 3");
    assert_eq!(lobby[1]["name"], "Guest 4");
}

#[tokio::test]
async fn the_owner_admits_a_guest_and_everyone_sees_the_roster() {
    let (app, addr, link, owner_cookies, _) = setup(32).await;
    let (mut owner, owner_id) = join_member(&addr, &link, &owner_cookies).await;
    let roster = owner.roster_until(|p| p.len() == 1).await;
    assert_eq!(roster[0]["owner"], true);
    assert_eq!(roster[0]["guest"], false);

    let mut guest = Ws::open(&addr, &link, None).await;
    let waiting = guest.join_as_guest("  Zoë 李  ", KEY_A).await;
    assert_eq!(waiting["type"], "waiting");
    assert_eq!(waiting["waiting_for"], "approval");
    let lobby = owner.lobby_until(|r| r.len() == 1).await;
    assert_eq!(lobby[0]["name"], "Zoë 李", "names are trimmed, any script");
    assert_eq!(lobby[0]["guest"], true);

    owner
        .send(json!({ "v": 1, "type": "admit", "request": lobby[0]["request"] }))
        .await;
    let joined = guest.expect("joined").await;
    let guest_id = joined["participant"].as_u64().unwrap();
    assert_eq!(joined["resume_token"].as_str().unwrap().len(), 32);
    let roster = guest.roster_until(|p| p.len() == 2).await;
    let me = roster
        .iter()
        .find(|p| p["participant"] == guest_id)
        .unwrap();
    assert_eq!(me["guest"], true);
    assert!(
        me["removable_until"].is_string(),
        "guests show their removal window"
    );
    owner.roster_until(|p| p.len() == 2).await;
    owner.lobby_until(|r| r.is_empty()).await;
    assert_ne!(owner_id, guest_id);

    let kinds = app.call_event_kinds_with(&link, "admitted").await;
    assert_eq!(kinds, ["call_started", "join_requested", "admitted"]);
    let events = app.store.call_events(&link).await.unwrap();
    assert_eq!(events[1].subject.as_deref(), Some("Zoë 李"));
}

#[tokio::test]
async fn a_guest_who_comes_early_waits_for_the_host() {
    let (_app, addr, link, owner_cookies, _) = setup(32).await;
    let mut guest = Ws::open(&addr, &link, None).await;
    let waiting = guest.join_as_guest("Early", KEY_A).await;
    assert_eq!(waiting["waiting_for"], "host");
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let now_waiting = guest.expect("waiting").await;
    assert_eq!(now_waiting["waiting_for"], "approval", "the host arrived");
    owner
        .lobby_until(|r| r.len() == 1 && r[0]["name"] == "Early")
        .await;
}

#[tokio::test]
async fn the_first_decision_wins_and_a_guest_denied_twice_is_blocked() {
    let (_app, addr, link, owner_cookies, colleague_cookies) = setup(32).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let (mut colleague, _) = join_member(&addr, &link, &colleague_cookies).await;

    let mut guest = Ws::open(&addr, &link, None).await;
    let request = guest.join_as_guest("Pest", KEY_A).await["request"]
        .as_u64()
        .unwrap();
    owner.lobby_until(|r| r.len() == 1).await;
    colleague.lobby_until(|r| r.len() == 1).await;
    colleague
        .send(json!({ "v": 1, "type": "deny", "request": request }))
        .await;
    owner
        .send(json!({ "v": 1, "type": "admit", "request": request }))
        .await;
    let denied = guest.expect("denied").await;
    assert_eq!(denied["blocked"], false);
    owner.expect_error("no_such_request").await;

    let again = guest.join_as_guest("Pest", KEY_A).await;
    let request = again["request"].as_u64().unwrap();
    owner
        .lobby_until(|r| r.iter().any(|e| e["request"] == request))
        .await;
    owner
        .send(json!({ "v": 1, "type": "deny", "request": request }))
        .await;
    assert_eq!(guest.expect("denied").await["blocked"], true);
    guest
        .send(json!({ "v": 1, "type": "join", "name": "Pest", "guest_key": KEY_A }))
        .await;
    guest.expect_error("blocked").await;

    // A new key on the same connection is still blocked, and so is the same
    // browser key on a new connection.
    guest
        .send(json!({ "v": 1, "type": "join", "name": "Pest", "guest_key": KEY_B }))
        .await;
    guest.expect_error("blocked").await;
    let mut same = Ws::open(&addr, &link, None).await;
    same.send(json!({ "v": 1, "type": "join", "name": "Pest again", "guest_key": KEY_A }))
        .await;
    same.expect_error("blocked").await;
    // A new browser on another network is a new person.
    let mut other = Ws::open(&addr, &link, None).await;
    assert_eq!(
        other.join_as_guest("Friend", KEY_B).await["type"],
        "waiting"
    );
}

#[tokio::test]
async fn removal_is_open_to_everyone_signed_in_for_30_seconds_then_only_to_the_owner() {
    let (app, addr, link, owner_cookies, colleague_cookies) = setup(32).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let (mut colleague, _) = join_member(&addr, &link, &colleague_cookies).await;

    let (mut first, first_id, _) = admitted_guest(&addr, &link, &mut owner, "First", KEY_A).await;
    app.clock.advance(Span::seconds(20));
    colleague
        .send(json!({ "v": 1, "type": "remove", "participant": first_id }))
        .await;
    let removed = first.expect("removed").await;
    assert_eq!(removed["by"], "User colleague@example.org");

    // Removed guests stay out for the rest of the call, on this connection and key.
    first
        .send(json!({ "v": 1, "type": "join", "name": "First", "guest_key": KEY_A }))
        .await;
    first.expect_error("removed").await;

    let (mut second, second_id, _) =
        admitted_guest(&addr, &link, &mut owner, "Second", KEY_B).await;
    app.clock.advance(Span::seconds(31));
    colleague
        .send(json!({ "v": 1, "type": "remove", "participant": second_id }))
        .await;
    colleague.expect_error("removal_window_passed").await;
    // A guest cannot remove anyone; nobody can remove a member.
    second
        .send(json!({ "v": 1, "type": "remove", "participant": 1 }))
        .await;
    second.expect_error("not_allowed").await;
    owner
        .send(json!({ "v": 1, "type": "remove", "participant": 2 }))
        .await;
    owner.expect_error("not_a_guest").await;
    owner
        .send(json!({ "v": 1, "type": "remove", "participant": second_id }))
        .await;
    second.expect("removed").await;
}

#[tokio::test]
async fn the_next_person_gets_call_is_full() {
    let (_app, addr, link, owner_cookies, _) = setup(2).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let (_guest, _, _) = admitted_guest(&addr, &link, &mut owner, "Guest", KEY_A).await;
    let mut late = Ws::open(&addr, &link, None).await;
    late.send(json!({ "v": 1, "type": "join", "name": "Late", "guest_key": KEY_B }))
        .await;
    late.expect_error("call_full").await;
}

#[tokio::test]
async fn a_dropped_guest_resumes_without_the_lobby() {
    let (_app, addr, link, owner_cookies, _) = setup(32).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let (guest, guest_id, token) =
        admitted_guest(&addr, &link, &mut owner, "Traveller", KEY_A).await;
    guest.close().await;
    owner
        .roster_until(|p| {
            p.iter()
                .any(|e| e["participant"] == guest_id && e["connected"] == false)
        })
        .await;

    let mut back = Ws::open(&addr, &link, None).await;
    back.send(json!({ "v": 1, "type": "resume", "resume_token": token }))
        .await;
    let joined = back.expect("joined").await;
    assert_eq!(joined["participant"], guest_id, "same place, no lobby");
    owner
        .roster_until(|p| {
            p.iter()
                .any(|e| e["participant"] == guest_id && e["connected"] == true)
        })
        .await;

    let mut stranger = Ws::open(&addr, &link, None).await;
    stranger
        .send(json!({ "v": 1, "type": "resume", "resume_token": "not-a-real-token" }))
        .await;
    stranger.expect_error("resume_expired").await;
}

#[tokio::test]
async fn bad_messages_get_errors_and_disturb_nobody() {
    let (app, addr, link, owner_cookies, _) = setup(32).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let mut rogue = Ws::open(&addr, &link, None).await;
    rogue.send_raw("not json").await;
    rogue.expect_error("bad_message").await;
    rogue.send_raw(r#"{"type":"join"}"#).await;
    rogue.expect_error("unsupported_version").await;
    rogue.send_raw(r#"{"v":1,"type":"teleport"}"#).await;
    rogue.expect_error("bad_message").await;
    rogue
        .send(json!({ "v": 1, "type": "admit", "request": 1 }))
        .await;
    rogue.expect_error("not_joined").await;
    rogue
        .send(json!({ "v": 1, "type": "join", "name": "x".repeat(65), "guest_key": KEY_A }))
        .await;
    rogue.expect_error("invalid_name").await;
    rogue
        .send(json!({ "v": 1, "type": "join", "name": "   ", "guest_key": KEY_A }))
        .await;
    rogue.expect_error("invalid_name").await;
    rogue
        .send(json!({ "v": 1, "type": "join", "name": "Rogue", "guest_key": "short" }))
        .await;
    rogue.expect_error("invalid_guest_key").await;
    rogue
        .send_raw(&format!(
            r#"{{"v":1,"type":"join","name":"{}"}}"#,
            "x".repeat(100_000)
        ))
        .await;
    rogue.expect_error("message_too_large").await;
    rogue.send(json!({ "v": 1, "type": "ping" })).await;
    assert_eq!(
        rogue.next().await["type"],
        "pong",
        "the connection still works"
    );

    // Joined as a guest, it still cannot admit.
    assert_eq!(rogue.join_as_guest("Rogue", KEY_A).await["type"], "waiting");
    rogue
        .send(json!({ "v": 1, "type": "join", "name": "Rogue", "guest_key": KEY_A }))
        .await;
    rogue.expect_error("already_joined").await;

    // The owner saw only the one legitimate request.
    let lobby = owner.lobby_until(|r| !r.is_empty()).await;
    assert_eq!(lobby.len(), 1);
    assert_eq!(lobby[0]["name"], "Rogue");

    // Flooding beyond the burst (server.signaling_burst) is answered with
    // rate_limited, not a crash.
    let flood = app.state.config.server.signaling_burst as usize + 40;
    for _ in 0..flood {
        rogue.send(json!({ "v": 1, "type": "ping" })).await;
    }
    let mut limited = false;
    for _ in 0..flood {
        let message = rogue.next().await;
        if message["type"] == "error" && message["code"] == "rate_limited" {
            limited = true;
            break;
        }
    }
    assert!(limited);
    owner.send(json!({ "v": 1, "type": "ping" })).await;
    owner.expect("pong").await;
}

#[tokio::test]
async fn the_call_ends_with_its_last_participant_and_the_link_starts_a_new_one() {
    let (app, addr, link, owner_cookies, _) = setup(32).await;
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    owner.send(json!({ "v": 1, "type": "leave" })).await;
    owner.expect("call_ended").await;
    // The same link, used again, starts a fresh call.
    let (mut again, id) = join_member(&addr, &link, &owner_cookies).await;
    assert_eq!(id, 1, "participant ids start over in a new call");
    again.send(json!({ "v": 1, "type": "leave" })).await;
    again.expect("call_ended").await;
    for _ in 0..50 {
        let kinds: Vec<String> = app
            .store
            .call_events(&link)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        if kinds.len() == 4 {
            assert_eq!(
                kinds,
                ["call_started", "call_ended", "call_started", "call_ended"]
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("metadata incomplete");
}

#[tokio::test]
async fn revoked_links_foreign_origins_and_disabled_guest_access_are_refused() {
    let (app, addr, link, _, _) = setup(32).await;
    let token = app.admin_token_again().await;
    let http = |path: String, origin: Option<&'static str>| {
        let mut req = app
            .req(Method::GET, &path)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let foreign = http(format!("/j/{link}/ws"), Some("https://evil.example")).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert_eq!(
        http("/j/nope/ws".into(), None).await.status,
        StatusCode::NOT_FOUND
    );

    app.req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&token)
        .json(&json!({ "guest_access": false }))
        .send()
        .await;
    let disabled = http(format!("/j/{link}/ws"), None).await;
    assert_eq!(disabled.status, StatusCode::FORBIDDEN);
    assert_eq!(disabled.error_code(), "guest_access_disabled");
    app.req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&token)
        .json(&json!({ "guest_access": true }))
        .send()
        .await;

    app.post(&format!("/api/v1/links/{link}/revoke"))
        .bearer(&token)
        .send()
        .await;
    let revoked = http(format!("/j/{link}/ws"), None).await;
    assert_eq!(revoked.status, StatusCode::GONE);
    assert_eq!(revoked.error_code(), "link_revoked");
    let _ = addr;
}

#[tokio::test]
async fn members_wait_for_approval_when_the_link_says_so() {
    let (app, addr, link, owner_cookies, colleague_cookies) = setup(32).await;
    let token = app.admin_token_again().await;
    let res = app
        .req(Method::PATCH, &format!("/api/v1/links/{link}"))
        .bearer(&token)
        .json(&json!({ "members_need_approval": true }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let (mut owner, _) = join_member(&addr, &link, &owner_cookies).await;
    let mut colleague = Ws::open(&addr, &link, Some(&colleague_cookies)).await;
    colleague.send(json!({ "v": 1, "type": "join" })).await;
    let waiting = colleague.expect("waiting").await;
    assert_eq!(waiting["waiting_for"], "approval");
    let lobby = owner.lobby_until(|r| r.len() == 1).await;
    assert_eq!(lobby[0]["guest"], false, "a member is asking");
    assert_eq!(lobby[0]["name"], "User colleague@example.org");
    owner
        .send(json!({ "v": 1, "type": "admit", "request": lobby[0]["request"] }))
        .await;
    colleague.expect("joined").await;
}

#[tokio::test]
async fn programs_join_with_an_api_token_and_a_bad_token_is_refused() {
    let (app, addr, link, _, _) = setup(32).await;
    let token = app.admin_token_again().await;
    let mut ws = Ws::open_with(
        &addr,
        &link,
        Some(("authorization", format!("Bearer {token}"))),
    )
    .await;
    // A member starts the call directly, without the lobby.
    ws.send(json!({ "v": 1, "type": "join" })).await;
    ws.expect("joined").await;

    let refused = app
        .req(Method::GET, &format!("/j/{link}/ws"))
        .header("authorization", "Bearer cf_not-a-real-token")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "unauthorized");
    ws.close().await;
}

#[tokio::test]
async fn e2ee_messages_are_relayed_as_sent_to_one_participant_or_everyone_else() {
    let (_app, addr, link, owner_cookies, colleague_cookies) = setup(32).await;
    let (mut owner, owner_id) = join_member(&addr, &link, &owner_cookies).await;
    let (mut colleague, colleague_id) = join_member(&addr, &link, &colleague_cookies).await;
    let (mut guest, guest_id, _) = admitted_guest(&addr, &link, &mut owner, "Ana", KEY_A).await;

    // To everyone else: the two others get it with the sender stamped by the server.
    owner
        .send(json!({ "v": 1, "type": "e2ee", "payload": "aGVsbG8=" }))
        .await;
    for socket in [&mut colleague, &mut guest] {
        let relayed = socket.expect("e2ee").await;
        assert_eq!(relayed["from"], owner_id, "{relayed}");
        assert_eq!(relayed["payload"], "aGVsbG8=");
    }

    // To one: only that participant gets it.
    guest
        .send(json!({ "v": 1, "type": "e2ee", "to": colleague_id, "payload": "a2V5" }))
        .await;
    let relayed = colleague.expect("e2ee").await;
    assert_eq!(relayed["from"], guest_id);
    assert_eq!(relayed["payload"], "a2V5");
    // The owner's next message is the answer to a ping, not the guest's key.
    owner.send(json!({ "v": 1, "type": "ping" })).await;
    owner.expect("pong").await;

    // Bad ones: to nobody on the call, to yourself, too large, not base64.
    guest
        .send(json!({ "v": 1, "type": "e2ee", "to": 999, "payload": "a2V5" }))
        .await;
    guest.expect_error("no_such_participant").await;
    guest
        .send(json!({ "v": 1, "type": "e2ee", "to": guest_id, "payload": "a2V5" }))
        .await;
    guest.expect_error("no_such_participant").await;
    let big = "A".repeat(4100);
    guest
        .send(json!({ "v": 1, "type": "e2ee", "payload": big }))
        .await;
    guest.expect_error("message_too_large").await;
    guest
        .send(json!({ "v": 1, "type": "e2ee", "payload": "not base64!" }))
        .await;
    guest.expect_error("bad_message").await;

    // Not on the call: refused.
    let mut waiting = Ws::open(&addr, &link, None).await;
    waiting
        .send(json!({ "v": 1, "type": "e2ee", "payload": "a2V5" }))
        .await;
    waiting.expect_error("not_joined").await;
    // Nothing of that reached anyone on the call.
    colleague.send(json!({ "v": 1, "type": "ping" })).await;
    colleague.expect("pong").await;
}
