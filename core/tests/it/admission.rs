//! Admission under attack: revoked, rotated and deleted links reach the live call;
//! removed and blocked guests stay out whatever key they send; member powers end
//! with the sign-in; the lobby's limits and lock. Then the same on the call page in
//! real browsers: asking, admitting, declining, blocking, removing, a full call.

use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use confab_core::accounts::Role;
use serde_json::{Value, json};

use crate::support::browser::{
    Driver, admits, app_with_link, app_with_link_and, guest_asks, host_joins, member_joins,
    roster_row,
};
use crate::support::ws::{Ws, fresh_loopback};
use crate::support::{SignedIn, TestApp};

/// An app served on loopback, its owner's token and signed-in browser, and a link
/// created with `settings`; returns (app, addr, link id, owner token, owner browser).
async fn app_with(settings: Value) -> (TestApp, String, String, String, SignedIn) {
    let app = TestApp::sqlite().await;
    let token = app.admin_token().await;
    let mut body = json!({ "title": "Team call" });
    body.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let res = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&body)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let link = res.json()["id"].as_str().unwrap().to_string();
    let owner = app.sign_in("admin@example.org").await;
    let addr = app.serve().await;
    (app, addr, link, token, owner)
}

async fn host(addr: &str, link: &str, owner: &SignedIn) -> Ws {
    let mut ws = Ws::open(addr, link, Some(&owner.cookies)).await;
    ws.send(json!({ "v": 1, "type": "join" })).await;
    ws.expect("joined").await;
    ws
}

fn key(n: u32) -> String {
    format!("guest-key-{n:012}")
}

/// A guest's connection from `source`, with `cookie` (the link page's guest cookie).
async fn guest_from(addr: &str, link: &str, source: IpAddr, cookie: Option<&str>) -> Ws {
    let header = cookie.map(|c| ("cookie", format!("confab_guest={c}")));
    Ws::open_from(addr, link, header, source).await
}

/// The guest cookie the link's page gives a browser.
async fn guest_cookie(app: &TestApp, link: &str) -> String {
    let page = app.get(&format!("/j/{link}")).send().await;
    assert_eq!(page.status, StatusCode::OK);
    let set = page
        .set_cookie_headers()
        .into_iter()
        .find(|c| c.starts_with("confab_guest="))
        .expect("the link page sets a guest cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains(&format!("Path=/j/{link}")), "{set}");
    page.cookie("confab_guest").unwrap()
}

#[tokio::test]
async fn revoking_a_link_ends_its_live_call_and_closes_every_connection_to_it() {
    let (app, addr, link, token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    let mut guest = Ws::open(&addr, &link, None).await;
    let request = guest.join_as_guest("Guest", &key(1)).await["request"].clone();
    host.send(json!({ "v": 1, "type": "admit", "request": request }))
        .await;
    guest.expect("joined").await;
    let mut waiting = Ws::open(&addr, &link, None).await;
    assert_eq!(
        waiting.join_as_guest("Waiting", &key(2)).await["type"],
        "waiting"
    );
    // Opened before the revoke, never asked to join.
    let mut idle = Ws::open(&addr, &link, None).await;

    let res = app
        .post(&format!("/api/v1/links/{link}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());

    for ws in [&mut host, &mut guest] {
        let ended = ws.expect("call_ended").await;
        assert_eq!(ended["reason"], "link_revoked", "{ended}");
        ws.expect_error("link_revoked").await;
        ws.closed().await;
    }
    let ended = waiting.expect("request_ended").await;
    assert_eq!(ended["why"], "link_revoked");
    let mut last = waiting.next().await;
    if last["type"] == "call_ended" {
        last = waiting.next().await;
    }
    assert_eq!(last["code"], "link_revoked", "{last}");
    waiting.closed().await;
    idle.expect_error("link_revoked").await;
    idle.closed().await;
}

#[tokio::test]
async fn deleting_a_link_ends_its_live_call() {
    let (app, addr, link, token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    let res = app
        .req(Method::DELETE, &format!("/api/v1/links/{link}"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let ended = host.expect("call_ended").await;
    assert_eq!(ended["reason"], "link_revoked");
    host.closed().await;
}

#[tokio::test]
async fn a_connection_opened_before_a_revoke_cannot_join_even_if_its_notice_is_missed() {
    // The call registry re-checks the link itself: here the link is revoked behind
    // the server's back (as the CLI of another process would) and the connection
    // sends join before any notice could reach it.
    let (app, addr, link, _token, owner) = app_with(json!({})).await;
    let mut early = Ws::open(&addr, &link, None).await;
    let mut host = Ws::open(&addr, &link, Some(&owner.cookies)).await;
    let other_process = sea_orm::Database::connect(app.state.config.database_url())
        .await
        .unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &other_process,
        &format!("UPDATE links SET revoked_at = updated_at WHERE public_id = '{link}'"),
    )
    .await
    .unwrap();
    // The link cache keeps a row for at most 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    early
        .send(json!({ "v": 1, "type": "join", "name": "Early", "guest_key": key(3) }))
        .await;
    early.expect_error("link_revoked").await;
    // The owner cannot start a call on it either.
    host.send(json!({ "v": 1, "type": "join" })).await;
    host.expect_error("link_revoked").await;
}

#[tokio::test]
async fn rotating_a_link_keeps_the_call_and_ends_what_came_through_the_old_id() {
    let (app, addr, old, token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &old, &owner).await;
    let mut guest = Ws::open(&addr, &old, None).await;
    let request = guest.join_as_guest("On call", &key(4)).await["request"].clone();
    host.send(json!({ "v": 1, "type": "admit", "request": request }))
        .await;
    let guest_id = guest.expect("joined").await["participant"].clone();
    let mut waiting = Ws::open(&addr, &old, None).await;
    assert_eq!(
        waiting.join_as_guest("Waiting", &key(5)).await["type"],
        "waiting"
    );
    let mut idle = Ws::open(&addr, &old, None).await;

    let res = app
        .post(&format!("/api/v1/links/{old}/rotate"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let new = res.json()["id"].as_str().unwrap().to_string();
    assert_ne!(new, old);

    let ended = waiting.expect("request_ended").await;
    assert_eq!(ended["why"], "link_rotated");
    // Nothing new joins through a connection opened with the old id.
    idle.send(json!({ "v": 1, "type": "join", "name": "Idle", "guest_key": key(6) }))
        .await;
    idle.expect_error("link_rotated").await;
    waiting
        .send(json!({ "v": 1, "type": "join", "name": "Waiting", "guest_key": key(5) }))
        .await;
    waiting.expect_error("link_rotated").await;
    // People on the call stay on it, and the new link leads to the same call.
    let mut newcomer = Ws::open(&addr, &new, None).await;
    let request = newcomer.join_as_guest("Newcomer", &key(7)).await["request"].clone();
    host.lobby_until(|r| r.iter().any(|e| e["request"] == request))
        .await;
    host.send(json!({ "v": 1, "type": "admit", "request": request }))
        .await;
    newcomer.expect("joined").await;
    let roster = host.roster_until(|p| p.len() == 3).await;
    assert!(roster.iter().any(|p| p["participant"] == guest_id));
}

/// Checks that `pest` (on `home`, with `cookie`), whom the host removed or blocked,
/// stays out with `code` whatever key they send, from their connection or browser,
/// and that a new browser on their network waits in the lobby with `flag`.
async fn stays_out(
    host: &mut Ws,
    pest: &mut Ws,
    (addr, link): (&str, &str),
    (home, cookie): (IpAddr, &str),
    (code, flag): (&str, &str),
    first_key: u32,
) {
    // The same connection with a new key.
    pest.send(json!({ "v": 1, "type": "join", "name": "Pest", "guest_key": key(first_key) }))
        .await;
    pest.expect_error(code).await;
    // The same browser (its cookie) on a new connection from another network, new key.
    let mut same_browser = guest_from(addr, link, fresh_loopback(), Some(cookie)).await;
    same_browser
        .send(
            json!({ "v": 1, "type": "join", "name": "Not Pest", "guest_key": key(first_key + 1) }),
        )
        .await;
    same_browser.expect_error(code).await;
    // A new browser on the same network: the people on the call decide.
    let mut neighbour = guest_from(addr, link, home, None).await;
    let waiting = neighbour
        .join_as_guest("Neighbour", &key(first_key + 2))
        .await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let lobby = host
        .lobby_until(|r| r.iter().any(|e| e["request"] == waiting["request"]))
        .await;
    let entry = lobby
        .iter()
        .find(|e| e["request"] == waiting["request"])
        .unwrap();
    assert_eq!(entry["flags"], json!([flag]));
}

#[tokio::test]
async fn a_removed_guest_stays_out_whatever_key_they_send() {
    // Guests join without approval: the removed one must not walk back in.
    let (app, addr, link, _token, owner) = app_with(json!({ "guests_need_approval": false })).await;
    let mut host = host(&addr, &link, &owner).await;
    let home = fresh_loopback();
    let cookie = guest_cookie(&app, &link).await;
    let mut pest = guest_from(&addr, &link, home, Some(&cookie)).await;
    let joined = pest.join_as_guest("Pest", &key(10)).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    host.send(json!({ "v": 1, "type": "remove", "participant": joined["participant"] }))
        .await;
    pest.expect("removed").await;

    // Though the link lets guests in directly.
    stays_out(
        &mut host,
        &mut pest,
        (&addr, &link),
        (home, &cookie),
        ("removed", "same_network_as_removed"),
        11,
    )
    .await;
    // Someone new on another network joins directly.
    let mut stranger = Ws::open(&addr, &link, None).await;
    assert_eq!(
        stranger.join_as_guest("Stranger", &key(14)).await["type"],
        "joined"
    );
}

#[tokio::test]
async fn a_guest_denied_twice_stays_out_on_a_new_key_and_their_network_is_flagged() {
    let (app, addr, link, _token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    let home = fresh_loopback();
    let cookie = guest_cookie(&app, &link).await;
    let mut pest = guest_from(&addr, &link, home, Some(&cookie)).await;
    for n in 0..2 {
        let request = pest.join_as_guest("Pest", &key(20 + n)).await["request"].clone();
        host.lobby_until(|r| r.iter().any(|e| e["request"] == request))
            .await;
        host.send(json!({ "v": 1, "type": "deny", "request": request }))
            .await;
        pest.expect("denied").await;
    }
    // Two keys, one connection and one browser: blocked, whatever key comes next.
    stays_out(
        &mut host,
        &mut pest,
        (&addr, &link),
        (home, &cookie),
        ("blocked", "same_network_as_blocked"),
        22,
    )
    .await;
}

#[tokio::test]
async fn a_member_whose_sign_in_ends_loses_member_powers_on_the_call() {
    let (app, addr, link, _token, owner) = app_with(json!({})).await;
    let colleague_token = app
        .user_with_token("colleague@example.org", Role::Member)
        .await;
    let colleague = app.sign_in("colleague@example.org").await;
    let mut host = host(&addr, &link, &owner).await;
    let mut by_session = Ws::open(&addr, &link, Some(&colleague.cookies)).await;
    by_session.send(json!({ "v": 1, "type": "join" })).await;
    by_session.expect("joined").await;
    let mut by_token = Ws::open_with(
        &addr,
        &link,
        Some(("authorization", format!("Bearer {colleague_token}"))),
    )
    .await;
    by_token.send(json!({ "v": 1, "type": "join" })).await;
    by_token.expect("joined").await;
    let mut guest = Ws::open(&addr, &link, None).await;
    let request = guest.join_as_guest("Guest", &key(30)).await["request"].clone();
    host.lobby_until(|r| r.len() == 1).await;

    // Signing out of the web session; revoking the API token.
    let res = app
        .post("/logout")
        .cookie(&colleague.cookies)
        .form(&format!("csrf={}", colleague.csrf))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let tokens = app
        .get("/api/v1/tokens")
        .bearer(&colleague_token)
        .send()
        .await;
    let id = tokens.json()[0]["id"].as_i64().unwrap();
    let res = app
        .req(Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .bearer(&colleague_token)
        .send()
        .await;
    assert!(res.status.is_success(), "{}", res.text());

    for ws in [&mut by_session, &mut by_token] {
        ws.send(json!({ "v": 1, "type": "admit", "request": request }))
            .await;
        ws.expect_error("not_allowed").await;
        ws.send(json!({ "v": 1, "type": "lock_lobby", "locked": true }))
            .await;
        ws.expect_error("not_allowed").await;
    }
    // The guest still waits, and the host (still signed in) decides.
    host.send(json!({ "v": 1, "type": "admit", "request": request }))
        .await;
    guest.expect("joined").await;
}

#[tokio::test]
async fn a_locked_lobby_turns_new_requests_away_with_a_reason() {
    let (_app, addr, link, _token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    let mut early = Ws::open(&addr, &link, None).await;
    let request = early.join_as_guest("Early", &key(40)).await["request"].clone();
    host.lobby_until(|r| r.len() == 1).await;
    host.send(json!({ "v": 1, "type": "lock_lobby", "locked": true }))
        .await;
    host.lobby_until(|_| true).await;
    let mut late = Ws::open(&addr, &link, None).await;
    late.send(json!({ "v": 1, "type": "join", "name": "Late", "guest_key": key(41) }))
        .await;
    late.expect_error("lobby_locked").await;
    // Waiting requests can still be decided; guests cannot unlock.
    host.send(json!({ "v": 1, "type": "admit", "request": request }))
        .await;
    early.expect("joined").await;
    early
        .send(json!({ "v": 1, "type": "lock_lobby", "locked": false }))
        .await;
    early.expect_error("not_allowed").await;
    host.send(json!({ "v": 1, "type": "lock_lobby", "locked": false }))
        .await;
    let mut later = Ws::open(&addr, &link, None).await;
    assert_eq!(
        later.join_as_guest("Later", &key(42)).await["type"],
        "waiting"
    );
}

#[tokio::test]
async fn the_lobby_shows_whether_it_is_locked() {
    let (_app, addr, link, _token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    let mut guest = Ws::open(&addr, &link, None).await;
    guest.join_as_guest("Guest", &key(43)).await;
    host.lobby_until(|r| r.len() == 1).await;
    host.send(json!({ "v": 1, "type": "lock_lobby", "locked": true }))
        .await;
    loop {
        let message = host.expect("lobby").await;
        if message["locked"] == true {
            assert_eq!(message["total"], 1);
            break;
        }
    }
}

#[tokio::test]
async fn one_network_gets_three_waiting_requests_and_ten_a_minute() {
    let (_app, addr, link, _token, owner) = app_with(json!({})).await;
    let _host = host(&addr, &link, &owner).await;
    let home = fresh_loopback();
    let mut waiting = Vec::new();
    for n in 0..3 {
        let mut ws = guest_from(&addr, &link, home, None).await;
        assert_eq!(
            ws.join_as_guest("Housemate", &key(50 + n)).await["type"],
            "waiting"
        );
        waiting.push(ws);
    }
    let mut fourth = guest_from(&addr, &link, home, None).await;
    fourth
        .send(json!({ "v": 1, "type": "join", "name": "Fourth", "guest_key": key(53) }))
        .await;
    fourth.expect_error("too_many_requests").await;
    // Another network is not held back.
    let mut elsewhere = Ws::open(&addr, &link, None).await;
    assert_eq!(
        elsewhere.join_as_guest("Elsewhere", &key(54)).await["type"],
        "waiting"
    );

    // Asking and withdrawing over and over: the 11th request in a minute is refused.
    let busy = fresh_loopback();
    let mut ws = guest_from(&addr, &link, busy, None).await;
    for n in 0..10 {
        assert_eq!(
            ws.join_as_guest("Again", &key(60 + n)).await["type"],
            "waiting"
        );
        ws.send(json!({ "v": 1, "type": "withdraw" })).await;
        ws.expect("request_ended").await;
    }
    ws.send(json!({ "v": 1, "type": "join", "name": "Again", "guest_key": key(70) }))
        .await;
    ws.expect_error("too_many_requests").await;
}

#[tokio::test]
async fn the_lobby_holds_fifty_requests_and_lists_twenty_with_the_count() {
    let (_app, addr, link, _token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    let mut guests = Vec::new();
    for n in 0..50 {
        let mut ws = Ws::open(&addr, &link, None).await;
        assert_eq!(
            ws.join_as_guest("Guest", &key(100 + n)).await["type"],
            "waiting"
        );
        guests.push(ws);
    }
    let mut late = Ws::open(&addr, &link, None).await;
    late.send(json!({ "v": 1, "type": "join", "name": "Late", "guest_key": key(200) }))
        .await;
    late.expect_error("lobby_full").await;
    loop {
        let message = host.expect("lobby").await;
        if message["total"] == 50 {
            assert_eq!(message["requests"].as_array().unwrap().len(), 20);
            break;
        }
    }
}

#[tokio::test]
async fn one_address_holds_twenty_signaling_connections() {
    let (_app, addr, link, _token, _owner) = app_with(json!({})).await;
    let home = fresh_loopback();
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(guest_from(&addr, &link, home, None).await);
    }
    let request = format!("ws://{addr}/j/{link}/ws");
    let refused = crate::support::ws::ws_connect_from(
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            request.as_str(),
        )
        .unwrap(),
        home,
    )
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_requests");
        }
        other => panic!(
            "the 21st connection was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // Closing one frees its place.
    open.pop().unwrap().close().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    guest_from(&addr, &link, home, None).await;
}

#[tokio::test]
async fn the_form_without_javascript_has_the_same_limit_per_address() {
    let (app, _addr, link, _token, _owner) = app_with(json!({})).await;
    let page = app.get(&format!("/j/{link}")).send().await;
    let csrf = page.cookie("confab_csrf").unwrap();
    let home = fresh_loopback();
    let post = || {
        app.post(&format!("/j/{link}"))
            .from(home)
            .cookie(&format!("confab_csrf={csrf}"))
            .form(&format!("csrf={csrf}&name=Guest"))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(post().await.status, StatusCode::ACCEPTED);
    }
    let refused = post().await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.text().contains("Wait a minute"),
        "{}",
        refused.text()
    );
    let other = app
        .post(&format!("/j/{link}"))
        .from(fresh_loopback())
        .cookie(&format!("confab_csrf={csrf}"))
        .form(&format!("csrf={csrf}&name=Guest"))
        .send()
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn made_up_targets_are_refused_without_anything_being_made_for_them() {
    let (_app, addr, link, _token, owner) = app_with(json!({})).await;
    let mut host = host(&addr, &link, &owner).await;
    host.send(json!({ "v": 1, "type": "set_quality", "participant": 9999, "layer": 0 }))
        .await;
    host.expect_error("no_such_participant").await;
    for n in 0..3 {
        host.send(json!({ "v": 1, "type": "plugin", "plugin": format!("made-up-{n}"), "payload": "aGk=" }))
            .await;
        host.expect_error("plugin_unavailable").await;
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::sqlite_with(|c| c.server.header_read_timeout_secs = 1).await;
    let addr = app.serve().await;
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: confab\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("the server hangs up on a slow client");
    // Closed (0 bytes), or a 408 before closing: never an answer to the request.
    let text = String::from_utf8_lossy(&buf[..read.unwrap_or(0)]).to_string();
    assert!(!text.contains("200"), "{text}");
    // A client that finishes in time is served.
    let res = reqwest_get(&format!("http://{addr}/healthz")).await;
    assert_eq!(res, 200);
}

async fn reqwest_get(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_signaling_connection_that_goes_silent_is_closed() {
    let app = TestApp::sqlite_with(|c| c.server.websocket_idle_secs = 3).await;
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Quiet").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = app.serve().await;
    // A client that reads answers the server's pings and stays.
    let mut lively = Ws::open(&addr, &link, None).await;
    let mut silent = Ws::open(&addr, &link, None).await;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        lively.send(json!({ "v": 1, "type": "ping" })).await;
        assert_eq!(lively.expect("pong").await["type"], "pong");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // The one that neither read nor wrote for longer than the limit was closed.
    silent.closed().await;
    lively.send(json!({ "v": 1, "type": "ping" })).await;
    lively.expect("pong").await;
}

// The same on the call page, in real headless browsers (crate::support::browser).

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
async fn a_full_call_says_so_on_the_page() {
    let (_app, base, link) = app_with_link(1).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "One too many").await;
    guest.wait_text("#status", "This call is full.").await;
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

/// Fills a call with participants without a browser ([`Ws::open_background`]: read
/// in the background, so that the server never waits on them; no media).
#[tokio::test]
async fn the_33rd_person_sees_that_the_call_is_full() {
    let (app, base, link) = app_with_link(32).await;
    let addr = base.trim_start_matches("http://");
    let owner_cookies = app.sign_in("host@example.org").await.cookies;
    let mut owner = Ws::open_background(addr, &link, Some(&owner_cookies)).await;
    owner.send(json!({ "v": 1, "type": "join" })).await;
    owner.wait_for("joined").await;
    let mut guests = Vec::new();
    for i in 2..=32 {
        let mut guest = Ws::open_background(addr, &link, None).await;
        guest
            .send(json!({
                "v": 1,
                "type": "join",
                "name": format!("Guest {i}"),
                "guest_key": format!("guest-key-number-{i:02}"),
            }))
            .await;
        let request = guest.wait_for("waiting").await["request"].clone();
        owner
            .send(json!({ "v": 1, "type": "admit", "request": request }))
            .await;
        guest.wait_for("joined").await;
        guests.push(guest);
    }
    loop {
        let roster = owner.wait_for("roster").await;
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
        let message = owner.recv().await.expect("connection open");
        match message["type"].as_str() {
            Some("pong") => break,
            Some("lobby") => assert_eq!(message["requests"], json!([]), "{message}"),
            Some("roster") => {}
            _ => panic!("unexpected {message}"),
        }
    }
    late.close().await;
}

#[tokio::test]
async fn admit_all_on_the_call_page_lets_every_waiting_guest_in() {
    let (_app, base, link) = app_with_link(32).await;
    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let ana = guest_asks(&driver, &base, &link, "Ana").await;
    // One person waiting: the lobby has no "Admit all".
    host.wait_text("#lobby", "Ana").await;
    assert_eq!(
        host.wait_js("document.getElementById('admit-all').hidden ? 'hidden' : 'shown'")
            .await,
        json!("hidden")
    );
    let bo = guest_asks(&driver, &base, &link, "Bo").await;
    host.wait_text("#admit-all", "Admit all (2)").await;
    host.click("#admit-all").await;
    ana.wait_text("#roster", "Ana (you)").await;
    bo.wait_text("#roster", "Bo (you)").await;
    host.wait_js("document.getElementById('lobby-panel').hidden")
        .await;
    ana.close().await;
    bo.close().await;
    host.close().await;
}
