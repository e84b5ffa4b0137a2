//! The authorization matrix: every signaling message for every kind of sender, and
//! every REST route for every kind of caller, with exactly the designed outcome. A
//! message type or route without a row fails the test.

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use confab_core::accounts::Role;
use serde_json::{Value, json};

use crate::plugins::app_with_plugins;
use crate::support::TestApp;
use crate::support::ws::Ws;

/// Who sends a signaling message to the call of link 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// A guest waiting in the lobby.
    Waiting,
    /// A guest on the call.
    Admitted,
    /// A guest a signed-in participant removed, on the connection it had.
    Removed,
    /// A signed-in member of the organization, not the link's owner, on the call.
    Member,
    /// The link's owner, on the call.
    Owner,
    /// The signed-in owner of another link, on that link's call, naming this
    /// call's requests and participants.
    OtherCall,
}

const SENDERS: [Sender; 6] = [
    Sender::Waiting,
    Sender::Admitted,
    Sender::Removed,
    Sender::Member,
    Sender::Owner,
    Sender::OtherCall,
];

/// One call of link 1 with everyone a message can be about: its owner (host), a
/// guest on the call (victim, for `remove`, `e2ee` and relayed messages), a guest
/// waiting (target, for `admit` and `deny`), and the sender.
struct Scene {
    host: Ws,
    host_id: u64,
    victim: Ws,
    victim_id: u64,
    target: Ws,
    target_request: Value,
    actor: Option<Ws>,
    /// The other link's call, when the sender is on it.
    _other_host: Option<Ws>,
}

struct World {
    app: TestApp,
    _plugins: tempfile::TempDir,
    addr: String,
    admin: String,
    owner_cookies: String,
    member_cookies: String,
    member: String,
}

static GUEST_KEYS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn guest_key() -> String {
    let n = GUEST_KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("authz-guest-key-{n:08}")
}

async fn new_link(world: &World, token: &str) -> String {
    let res = world
        .app
        .post("/api/v1/links")
        .bearer(token)
        .json(&json!({ "title": "Matrix", "guests_need_approval": true }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    res.json()["id"].as_str().unwrap().to_string()
}

async fn joined(ws: &mut Ws, message: Value) -> u64 {
    ws.send(message).await;
    ws.expect("joined").await["participant"].as_u64().unwrap()
}

/// A guest admitted by `host` onto `link`'s call.
async fn admitted_guest(world: &World, link: &str, host: &mut Ws, name: &str) -> (Ws, u64) {
    let mut guest = Ws::open(&world.addr, link, None).await;
    let joined = guest.join_admitted_by(host, name, &guest_key()).await;
    (guest, joined["participant"].as_u64().unwrap())
}

async fn scene(world: &World, sender: Sender) -> Scene {
    let link = new_link(world, &world.admin).await;
    let mut host = Ws::open(&world.addr, &link, Some(&world.owner_cookies)).await;
    let host_id = joined(&mut host, json!({ "v": 1, "type": "join" })).await;
    let (victim, victim_id) = admitted_guest(world, &link, &mut host, "Victim").await;
    let mut target = Ws::open(&world.addr, &link, None).await;
    let waiting = target.join_as_guest("Target", &guest_key()).await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let target_request = waiting["request"].clone();
    let mut other_host = None;
    let actor = match sender {
        Sender::Owner => None,
        Sender::Waiting => {
            let mut ws = Ws::open(&world.addr, &link, None).await;
            let waiting = ws.join_as_guest("Actor", &guest_key()).await;
            assert_eq!(waiting["type"], "waiting", "{waiting}");
            Some(ws)
        }
        Sender::Admitted => Some(admitted_guest(world, &link, &mut host, "Actor").await.0),
        Sender::Removed => {
            let (ws, id) = admitted_guest(world, &link, &mut host, "Actor").await;
            host.send(json!({ "v": 1, "type": "remove", "participant": id }))
                .await;
            host.roster_until(|p| p.iter().all(|e| e["participant"] != id))
                .await;
            Some(ws)
        }
        Sender::Member => {
            let mut ws = Ws::open(&world.addr, &link, Some(&world.member_cookies)).await;
            ws.send(json!({ "v": 1, "type": "join" })).await;
            Some(ws)
        }
        Sender::OtherCall => {
            let other = new_link(world, &world.member).await;
            let mut ws = Ws::open(&world.addr, &other, Some(&world.member_cookies)).await;
            joined(&mut ws, json!({ "v": 1, "type": "join" })).await;
            // Someone waiting on the other call too, so request numbers exist there.
            let mut knocking = Ws::open(&world.addr, &other, None).await;
            knocking.join_as_guest("Other", &guest_key()).await;
            other_host = Some(knocking);
            Some(ws)
        }
    };
    let mut scene = Scene {
        host,
        host_id,
        victim,
        victim_id,
        target,
        target_request,
        actor,
        _other_host: other_host,
    };
    // Settle: what setting up sent is not part of the outcome.
    let settle = Duration::from_millis(150);
    scene.host.within(settle).await;
    scene.victim.within(settle).await;
    scene.target.within(settle).await;
    if let Some(actor) = scene.actor.as_mut() {
        actor.within(settle).await;
    }
    scene
}

/// The message of type `kind`, aimed at this scene.
fn message(kind: &str, scene: &Scene) -> Value {
    let payload = base64::engine::general_purpose::STANDARD.encode(b"hi");
    let body = match kind {
        "join" => json!({ "name": "Again", "guest_key": guest_key() }),
        "resume" => json!({ "resume_token": "not-a-token" }),
        "admit" | "deny" => json!({ "request": scene.target_request }),
        "remove" => json!({ "participant": scene.victim_id }),
        "withdraw" | "leave" | "ping" | "admit_all" | "subscribe" => json!({}),
        "publish" | "subscribe_answer" => json!({ "sdp": "v=0\r\n" }),
        "set_quality" => json!({ "participant": scene.host_id, "layer": 0 }),
        "mute" => json!({ "audio": false, "video": false }),
        "lock_lobby" => json!({ "locked": true }),
        "suspend_guests" => json!({ "suspended": true }),
        "plugin" => json!({ "plugin": "hello", "payload": payload }),
        "e2ee" => json!({ "to": scene.victim_id, "payload": payload }),
        "activity_join" | "activity_leave" => json!({ "plugin": "hello" }),
        "activity_send" | "activity_update" => json!({ "plugin": "hello", "payload": payload }),
        "activity_snapshot" => json!({ "plugin": "hello", "seq": 0, "payload": payload }),
        other => panic!("no message for {other}"),
    };
    let mut message = body;
    message["v"] = json!(1);
    message["type"] = json!(kind);
    message
}

/// The designed outcome of one message from one sender.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The sender gets this error, and nobody else hears anything.
    Refused(&'static str),
    /// `who` (`me`, `host`, `victim`, `target`) gets a message of this type, and the
    /// sender no error.
    Seen(&'static str, &'static str),
    /// Nothing visible happens, and the sender gets no error.
    Quiet,
}

use Want::{Quiet, Refused, Seen};

/// The matrix: each message type, for each sender in [`SENDERS`] order (waiting,
/// admitted, removed, member, owner, on another call).
#[rustfmt::skip]
const MATRIX: &[(&str, [Want; 6])] = &[
    ("join", [
        Refused("already_joined"), Refused("already_joined"), Refused("removed"),
        Refused("already_joined"), Refused("already_joined"), Refused("already_joined"),
    ]),
    ("resume", [
        Refused("already_joined"), Refused("already_joined"), Refused("resume_expired"),
        Refused("already_joined"), Refused("already_joined"), Refused("already_joined"),
    ]),
    ("admit", [
        Refused("not_joined"), Refused("not_allowed"), Refused("not_joined"),
        Seen("target", "joined"), Seen("target", "joined"), Refused("no_such_request"),
    ]),
    // Every waiting request; on another call, that call's lobby is empty.
    ("admit_all", [
        Refused("not_joined"), Refused("not_allowed"), Refused("not_joined"),
        Seen("target", "joined"), Seen("target", "joined"), Quiet,
    ]),
    ("deny", [
        Refused("not_joined"), Refused("not_allowed"), Refused("not_joined"),
        Seen("target", "denied"), Seen("target", "denied"), Refused("no_such_request"),
    ]),
    ("remove", [
        Refused("not_joined"), Refused("not_allowed"), Refused("not_joined"),
        Seen("victim", "removed"), Seen("victim", "removed"), Refused("no_such_participant"),
    ]),
    ("withdraw", [
        Seen("me", "request_ended"), Refused("not_joined"), Refused("not_joined"),
        Refused("not_joined"), Refused("not_joined"), Refused("not_joined"),
    ]),
    ("leave", [
        Seen("me", "request_ended"), Seen("host", "roster"), Refused("not_joined"),
        Seen("host", "roster"), Seen("victim", "roster"), Seen("me", "call_ended"),
    ]),
    // `bad_sdp` means the offer reached the media server: joined people may publish.
    ("publish", [
        Refused("not_joined"), Refused("bad_sdp"), Refused("not_joined"),
        Refused("bad_sdp"), Refused("bad_sdp"), Refused("bad_sdp"),
    ]),
    // Nobody in the scene publishes, so there is nothing to offer yet.
    ("subscribe", [
        Refused("not_joined"), Quiet, Refused("not_joined"),
        Quiet, Quiet, Quiet,
    ]),
    ("subscribe_answer", [
        Refused("not_joined"), Refused("bad_sdp"), Refused("not_joined"),
        Refused("bad_sdp"), Refused("bad_sdp"), Refused("bad_sdp"),
    ]),
    // About the owner: someone else on the call, but for the owner their own self.
    ("set_quality", [
        Refused("not_joined"), Quiet, Refused("not_joined"),
        Quiet, Refused("no_such_participant"), Refused("no_such_participant"),
    ]),
    ("mute", [
        Refused("not_joined"), Seen("host", "roster"), Refused("not_joined"),
        Seen("host", "roster"), Seen("victim", "roster"), Seen("me", "roster"),
    ]),
    ("lock_lobby", [
        Refused("not_joined"), Refused("not_allowed"), Refused("not_joined"),
        Seen("host", "lobby"), Seen("me", "lobby"), Seen("me", "lobby"),
    ]),
    ("suspend_guests", [
        Refused("not_joined"), Refused("not_allowed"), Refused("not_joined"),
        Seen("victim", "roster"), Seen("victim", "roster"), Seen("me", "lobby"),
    ]),
    ("ping", [
        Seen("me", "pong"), Seen("me", "pong"), Seen("me", "pong"),
        Seen("me", "pong"), Seen("me", "pong"), Seen("me", "pong"),
    ]),
    ("plugin", [
        Refused("not_joined"), Seen("victim", "plugin"), Refused("not_joined"),
        Seen("victim", "plugin"), Seen("victim", "plugin"), Seen("me", "plugin"),
    ]),
    ("e2ee", [
        Refused("not_joined"), Seen("victim", "e2ee"), Refused("not_joined"),
        Seen("victim", "e2ee"), Seen("victim", "e2ee"), Refused("no_such_participant"),
    ]),
    // Everyone on the call hears who is in an activity, members of it or not.
    ("activity_join", [
        Refused("not_joined"), Seen("victim", "activity"), Refused("not_joined"),
        Seen("victim", "activity"), Seen("victim", "activity"), Seen("me", "activity"),
    ]),
    // Nobody in the scene joined the activity: what only its members may do.
    ("activity_leave", [
        Refused("not_joined"), Refused("not_in_activity"), Refused("not_joined"),
        Refused("not_in_activity"), Refused("not_in_activity"), Refused("not_in_activity"),
    ]),
    ("activity_send", [
        Refused("not_joined"), Refused("not_in_activity"), Refused("not_joined"),
        Refused("not_in_activity"), Refused("not_in_activity"), Refused("not_in_activity"),
    ]),
    ("activity_update", [
        Refused("not_joined"), Refused("not_in_activity"), Refused("not_joined"),
        Refused("not_in_activity"), Refused("not_in_activity"), Refused("not_in_activity"),
    ]),
    ("activity_snapshot", [
        Refused("not_joined"), Refused("not_in_activity"), Refused("not_joined"),
        Refused("not_in_activity"), Refused("not_in_activity"), Refused("not_in_activity"),
    ]),
];

/// Checks one cell; the reason it fails, if it does.
async fn check(kind: &str, sender: Sender, want: Want, mut scene: Scene) -> Result<(), String> {
    let message = message(kind, &scene);
    let is_host = scene.actor.is_none();
    let quiet = Duration::from_millis(150);
    let fail = |what: String| Err(format!("{kind} from {sender:?} (want {want:?}): {what}"));
    scene
        .actor
        .as_mut()
        .unwrap_or(&mut scene.host)
        .send(message)
        .await;
    match want {
        Refused(code) => {
            let actor = scene.actor.as_mut().unwrap_or(&mut scene.host);
            let seen = actor
                .seen_until(Duration::from_secs(3), |m| m["type"] == "error")
                .await;
            match seen.last() {
                Some(m) if m["type"] == "error" && m["code"] == code => {}
                _ => return fail(format!("the sender saw {seen:?}")),
            }
        }
        Seen(who, expected) => {
            let ws = match (who, is_host) {
                ("me", _) | ("host", true) => scene.actor.as_mut().unwrap_or(&mut scene.host),
                ("host", false) => &mut scene.host,
                ("victim", _) => &mut scene.victim,
                _ => &mut scene.target,
            };
            let seen = ws
                .seen_until(Duration::from_secs(3), |m| {
                    m["type"] == expected || m["type"] == "error"
                })
                .await;
            if seen.last().is_none_or(|m| m["type"] != expected) {
                return fail(format!("{who} saw {seen:?}"));
            }
        }
        Quiet => {}
    }
    // The sender got no (other) error.
    let wait = if matches!(want, Quiet) {
        quiet * 2
    } else {
        quiet
    };
    let rest = scene
        .actor
        .as_mut()
        .unwrap_or(&mut scene.host)
        .within(wait)
        .await;
    if let Some(e) = rest.iter().find(|m| m["type"] == "error") {
        return fail(format!("the sender also got {e}"));
    }
    // A refusal, or anything sent on another call, reaches nobody on this call.
    if matches!(want, Refused(_)) || sender == Sender::OtherCall {
        let mut others = vec![("victim", &mut scene.victim), ("target", &mut scene.target)];
        if !is_host {
            others.push(("host", &mut scene.host));
        }
        for (who, ws) in others {
            let heard = ws.within(quiet).await;
            if !heard.is_empty() {
                return fail(format!("{who} heard {heard:?}"));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_signaling_message_for_every_sender() {
    let (app, plugins) = app_with_plugins(|_| {}).await;
    let admin = app.admin_token().await;
    let member = app
        .user_with_token("member@example.org", Role::Member)
        .await;
    let owner_cookies = app.sign_in("admin@example.org").await.cookies;
    let member_cookies = app.sign_in("member@example.org").await.cookies;
    let addr = app.serve().await;
    let world = World {
        app,
        _plugins: plugins,
        addr,
        admin,
        owner_cookies,
        member_cookies,
        member,
    };
    // Every type the protocol has, as the server lists them for an unknown one.
    let mut probe = Ws::open(&world.addr, &new_link(&world, &world.admin).await, None).await;
    probe.send(json!({ "v": 1, "type": "no_such_type" })).await;
    let refusal = probe.expect("error").await;
    let text = refusal["message"].as_str().unwrap().to_string();
    let kinds: Vec<&str> = text.split('`').skip(3).step_by(2).collect();
    let rows: Vec<&str> = MATRIX.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        kinds, rows,
        "every message type has a row in the matrix, in the protocol's order"
    );
    let mut failures = Vec::new();
    for (kind, wants) in MATRIX {
        // The six senders of a row at once, each on a call of its own.
        let cells = SENDERS.iter().zip(wants).map(|(sender, want)| {
            let world = &world;
            async move { check(kind, *sender, *want, scene(world, *sender).await).await }
        });
        for result in futures_util::future::join_all(cells).await {
            if let Err(failure) = result {
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Who calls a REST route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    /// The member who owns the link and the token the route names.
    Member,
    /// Another member of the organization.
    OtherMember,
    Admin,
}

const CALLERS: [Caller; 4] = [
    Caller::Nobody,
    Caller::Member,
    Caller::OtherMember,
    Caller::Admin,
];

/// A status and, for a refusal, the error code.
type Answer = (u16, &'static str);

/// Each route, for each caller in [`CALLERS`] order (nobody, the member who owns
/// the link or token the route names, another member, an admin): the status and,
/// for a refusal, the error code. Links and tokens belong to whoever made them;
/// another member cannot tell them from ones that do not exist (404), and neither
/// can an admin through these routes (admins manage other people's links with
/// `confab link`). Administration is for admins only (403).
#[rustfmt::skip]
const ROUTES: &[(&str, &str, [Answer; 4])] = &[
    ("DELETE", "/api/v1/links/{id}", [(401, "unauthorized"), (204, ""), (404, "not_found"), (404, "not_found")]),
    ("DELETE", "/api/v1/tokens/{id}", [(401, "unauthorized"), (204, ""), (404, "not_found"), (404, "not_found")]),
    ("GET", "/api/v1/admin/mail", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("GET", "/api/v1/admin/plugins", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("GET", "/api/v1/admin/plugins/{name}", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("GET", "/api/v1/admin/policy", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("GET", "/api/v1/links", [(401, "unauthorized"), (200, ""), (200, ""), (200, "")]),
    ("GET", "/api/v1/links/{id}", [(401, "unauthorized"), (200, ""), (404, "not_found"), (404, "not_found")]),
    ("GET", "/api/v1/me", [(401, "unauthorized"), (200, ""), (200, ""), (200, "")]),
    ("GET", "/api/v1/tokens", [(401, "unauthorized"), (200, ""), (200, ""), (200, "")]),
    ("GET", "/api/v1/users", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("PATCH", "/api/v1/admin/policy", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("PATCH", "/api/v1/links/{id}", [(401, "unauthorized"), (200, ""), (404, "not_found"), (404, "not_found")]),
    ("POST", "/api/v1/admin/plugins/{name}/disable", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("POST", "/api/v1/admin/plugins/{name}/enable", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("POST", "/api/v1/admin/plugins/{name}/reload", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (200, "")]),
    ("POST", "/api/v1/links", [(401, "unauthorized"), (201, ""), (201, ""), (201, "")]),
    ("POST", "/api/v1/links/{id}/revoke", [(401, "unauthorized"), (200, ""), (404, "not_found"), (404, "not_found")]),
    ("POST", "/api/v1/links/{id}/rotate", [(401, "unauthorized"), (200, ""), (404, "not_found"), (404, "not_found")]),
    ("POST", "/api/v1/tokens", [(401, "unauthorized"), (201, ""), (201, ""), (201, "")]),
    ("POST", "/api/v1/users", [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"), (201, "")]),
];

#[tokio::test]
async fn every_rest_route_for_every_caller() {
    let (app, _plugins) = app_with_plugins(|_| {}).await;
    let admin = app.admin_token().await;
    let member = app
        .user_with_token("member@example.org", Role::Member)
        .await;
    let other = app.user_with_token("other@example.org", Role::Member).await;
    // Every route the API documents (a test in ops.rs holds the document to the router).
    let doc = app.get("/api/v1/openapi.json").send().await.json();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    routes.sort();
    let rows: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(routes, rows, "every route has a row in the matrix, sorted");
    let mut failures = Vec::new();
    for (method, path, wants) in ROUTES {
        for (caller, (status, code)) in CALLERS.iter().zip(wants) {
            // Fresh things to act on, owned by the member.
            let link = app.create_link(&member, "Owned").await;
            let made = app
                .post("/api/v1/tokens")
                .bearer(&member)
                .json(&json!({ "name": "spare" }))
                .send()
                .await;
            assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
            let id = if path.starts_with("/api/v1/tokens") {
                made.json()["id"].to_string()
            } else {
                link["id"].as_str().unwrap().to_string()
            };
            let concrete = path.replace("{id}", &id).replace("{name}", "hello");
            let body = match (*method, *path) {
                ("POST", "/api/v1/links") => json!({ "title": "New" }),
                ("PATCH", "/api/v1/links/{id}") => json!({ "title": "Renamed" }),
                ("PATCH", "/api/v1/admin/policy") => json!({ "guest_access": true }),
                ("POST", "/api/v1/users") => json!({
                    "email": format!("new{}@example.org", rand_suffix()),
                    "display_name": "New",
                    "password": "a good long password",
                    "role": "member"
                }),
                ("POST", "/api/v1/tokens") => json!({ "name": "another" }),
                _ => json!({}),
            };
            let mut req = app.req(method.parse().unwrap(), &concrete).json(&body);
            match caller {
                Caller::Nobody => {}
                Caller::Member => req = req.bearer(&member),
                Caller::OtherMember => req = req.bearer(&other),
                Caller::Admin => req = req.bearer(&admin),
            }
            let res = req.send().await;
            let got_code = if res.status.as_u16() >= 400 {
                res.json()["error"]["code"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            } else {
                String::new()
            };
            if (res.status.as_u16(), got_code.as_str()) != (*status, *code) {
                failures.push(format!(
                    "{method} {path} by {caller:?}: want {status} {code}, got {} {got_code}",
                    res.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn rand_suffix() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
