//! The spam-guard plugin's rules, through its component in the plugin test harness:
//! reports and what they do, blocks by device and network in each scope and their
//! expiry, escalation, leaked-link warnings, the review queue, the administrators'
//! batch mail and retention.

use std::time::Duration;

use confab_plugin_test::{
    Call, Capability, Decision, Harness, HttpRequest, HttpResponse, Link, Origin,
};
use serde_json::{Value, json};

const OWNER: i64 = 1;
const MEMBER: i64 = 2;
const ADMIN: i64 = 9;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn origin(device: Option<&str>, network: Option<&str>) -> Origin {
    Origin {
        device: device.map(str::to_string),
        network: network.map(str::to_string),
    }
}

fn plugin() -> Harness {
    let mut p = Harness::from_crate(env!("CARGO_MANIFEST_DIR"));
    p.set_contact(OWNER, "Olga Owner", "olga@example.org");
    p.set_contact(MEMBER, "Mia Member", "mia@example.org");
    p.set_contact(ADMIN, "Ada Admin", "ada@example.org");
    p.add_admin(ADMIN);
    p
}

/// A call on a new link of OWNER with OWNER and MEMBER on it and a guest from
/// device `dev-1` on 198.51.100.7.
struct Scene {
    link: Link,
    call: Call,
    guest: u32,
}

fn scene(p: &mut Harness) -> Scene {
    let link = p.add_link(OWNER, "Standup");
    let call = p.start_call(&link.id);
    p.join(&link.id, "Olga Owner", Some(OWNER));
    p.join(&link.id, "Mia Member", Some(MEMBER));
    let guest = p
        .join_from(
            &link.id,
            "Spammy",
            None,
            origin(Some("dev-1"), Some("198.51.100.7/32")),
        )
        .id;
    Scene { link, call, guest }
}

fn post(p: &mut Harness, user: i64, path: &str, body: Value) -> (HttpResponse, Value) {
    let answer = p.http(
        HttpRequest::post(path)
            .with_user(user)
            .with_body(body.to_string()),
    );
    let value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer, value)
}

fn get(p: &mut Harness, user: i64, path: &str) -> (HttpResponse, Value) {
    let answer = p.http(HttpRequest::get(path).with_user(user));
    let value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer, value)
}

fn decide(p: &mut Harness, call: &Call, address: &str, from: Origin) -> Decision {
    let request = p.lobby_request_from(call, "Knock knock", address, from);
    p.lobby_decision(request)
}

fn denied(decision: &Decision) -> bool {
    matches!(decision, Decision::Deny(_))
}

#[test]
fn remove_and_block_keeps_the_guest_out_of_the_link_by_device_and_by_network_until_it_expires() {
    let mut p = plugin();
    let s = scene(&mut p);
    let (answer, body) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({
            "link": s.link.id, "participant": s.guest, "category": "spam", "note": "shouting ads", "action": "block",
        }),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    assert_eq!(
        (body["removed"].as_bool(), body["blocked"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(p.removals().len(), 1);
    assert_eq!(p.removals()[0].participant.name, "Spammy");

    // The same browser from another network, and a fresh browser on the same network.
    let same_device = decide(
        &mut p,
        &s.call,
        "203.0.113.5",
        origin(Some("dev-1"), Some("203.0.113.5/32")),
    );
    let Decision::Deny(reason) = &same_device else {
        panic!("{same_device:?}")
    };
    assert!(reason.contains("blocked you"), "{reason}");
    assert!(denied(&decide(
        &mut p,
        &s.call,
        "198.51.100.7",
        origin(None, Some("198.51.100.7/32"))
    )));
    // Someone else is let through, and the block holds only on this link.
    assert_eq!(
        decide(
            &mut p,
            &s.call,
            "203.0.113.9",
            origin(Some("dev-2"), Some("203.0.113.9/32"))
        ),
        Decision::Allow
    );
    let other = p.add_link(OWNER, "Other");
    let other_call = p.start_call(&other.id);
    assert_eq!(
        decide(
            &mut p,
            &other_call,
            "198.51.100.7",
            origin(None, Some("198.51.100.7/32"))
        ),
        Decision::Allow
    );

    // Blocks last block_days (30 by default).
    p.advance(29 * DAY);
    assert!(denied(&decide(
        &mut p,
        &s.call,
        "198.51.100.7",
        origin(None, Some("198.51.100.7/32"))
    )));
    p.advance(DAY + Duration::from_secs(1));
    assert_eq!(
        decide(
            &mut p,
            &s.call,
            "198.51.100.7",
            origin(None, Some("198.51.100.7/32"))
        ),
        Decision::Allow
    );
}

#[test]
fn without_the_moderation_grant_the_address_alone_is_checked() {
    let mut p = plugin();
    let s = scene(&mut p);
    post(
        &mut p,
        OWNER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "harassment", "action": "block"}),
    );
    let mut p = p.deny(Capability::Moderation);
    let mut request = p.lobby_request(&s.call, "Again");
    request.address = Some("198.51.100.7".into());
    assert!(denied(&p.lobby_decision(request)));
}

#[test]
fn reports_from_two_people_within_ten_minutes_remove_and_block_the_guest() {
    let mut p = plugin();
    let s = scene(&mut p);
    let report = json!({"link": s.link.id, "participant": s.guest, "category": "harassment"});
    let (_, first) = post(&mut p, MEMBER, "/reports", report.clone());
    assert_eq!(first["escalated"], false);
    let (_, again) = post(&mut p, MEMBER, "/reports", report.clone());
    assert_eq!(
        again["escalated"], false,
        "the same person twice is one person"
    );
    assert!(p.removals().is_empty());
    p.advance(Duration::from_secs(9 * 60));
    let (answer, second) = post(&mut p, OWNER, "/reports", report);
    assert_eq!(answer.status, 201);
    assert_eq!(
        (
            second["escalated"].as_bool(),
            second["removed"].as_bool(),
            second["blocked"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(p.removals().len(), 1);
    assert!(denied(&decide(
        &mut p,
        &s.call,
        "198.51.100.7",
        origin(None, Some("198.51.100.7/32"))
    )));
}

#[test]
fn escalation_counts_only_reports_within_its_window_and_its_threshold_is_a_setting() {
    let mut p = plugin().config("escalation_reports", "3");
    let s = scene(&mut p);
    p.join(&s.link.id, "Third", Some(3));
    let report = json!({"link": s.link.id, "participant": s.guest, "category": "spam"});
    post(&mut p, OWNER, "/reports", report.clone());
    let (_, second) = post(&mut p, MEMBER, "/reports", report.clone());
    assert_eq!(second["escalated"], false, "3 people are needed");
    p.advance(Duration::from_secs(11 * 60));
    let (_, third) = post(&mut p, 3, "/reports", report);
    assert_eq!(
        third["escalated"], false,
        "the first two reports are too old"
    );
    assert!(p.removals().is_empty());
}

#[test]
fn a_guest_removed_by_escalation_after_the_removal_window_is_still_blocked_and_the_reporter_told() {
    let mut p = plugin();
    let s = scene(&mut p);
    p.join(&s.link.id, "Third", Some(3));
    p.advance(Duration::from_secs(60));
    let report = json!({"link": s.link.id, "participant": s.guest, "category": "spam"});
    post(&mut p, MEMBER, "/reports", report.clone());
    let (_, second) = post(&mut p, 3, "/reports", report);
    assert_eq!(
        (
            second["escalated"].as_bool(),
            second["removed"].as_bool(),
            second["blocked"].as_bool()
        ),
        (Some(true), Some(false), Some(true))
    );
    assert!(second["problem"].as_str().unwrap().contains("the host can"));
}

#[test]
fn deny_and_report_turns_a_waiting_request_away_and_block_keeps_it_out() {
    let mut p = plugin();
    let s = scene(&mut p);
    let request = p.wait_in_lobby(
        &s.link.id,
        "Lurker",
        origin(Some("dev-9"), Some("2001:db8:1:2::/64")),
    );
    let (answer, body) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({
            "link": s.link.id, "request": request, "name": "Lurker", "category": "impersonation", "action": "deny",
        }),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    assert_eq!(
        (body["denied"].as_bool(), body["blocked"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(p.denials().len(), 1);
    assert_eq!(p.denials()[0].by_user, MEMBER);
    assert!(p.lobby(&s.link.id).is_empty());

    let again = p.wait_in_lobby(
        &s.link.id,
        "Lurker",
        origin(Some("dev-9"), Some("2001:db8:1:2::/64")),
    );
    let (_, body) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({
            "link": s.link.id, "request": again, "category": "spam", "action": "block",
        }),
    );
    assert_eq!(
        (body["denied"].as_bool(), body["blocked"].as_bool()),
        (Some(true), Some(true))
    );
    // Another address in the same IPv6 /64.
    assert!(denied(&decide(
        &mut p,
        &s.call,
        "2001:db8:1:2::77",
        origin(None, Some("2001:db8:1:2::/64"))
    )));
}

#[test]
fn only_people_on_the_call_report_and_every_bad_input_gets_a_clear_error() {
    let mut p = plugin().config("reports_per_user_per_hour", "2");
    let s = scene(&mut p);
    let (answer, body) = post(
        &mut p,
        5,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam"}),
    );
    assert_eq!(answer.status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on the call")
    );
    let signed_out = p.http(HttpRequest::post("/reports").with_body("{}"));
    assert_eq!(signed_out.status, 401);

    for (input, status) in [
        (
            json!({"link": s.link.id, "participant": s.guest, "category": "rude"}),
            422,
        ),
        (
            json!({"link": s.link.id, "participant": s.guest, "category": "spam", "note": "x".repeat(1001)}),
            422,
        ),
        (
            json!({"link": s.link.id, "participant": s.guest, "category": "spam", "action": "explode"}),
            422,
        ),
        (json!({"link": s.link.id, "category": "spam"}), 422),
        (
            json!({"link": s.link.id, "participant": 77, "category": "spam"}),
            404,
        ),
        (
            json!({"link": s.link.id, "participant": 2, "category": "spam"}),
            422,
        ),
        (
            json!({"link": s.link.id, "participant": 1, "category": "spam", "action": "block"}),
            422,
        ),
        (
            json!({"link": s.link.id, "participant": s.guest, "category": "spam", "evidence": "data:image/gif;base64,R0lGOD"}),
            422,
        ),
        (
            json!({"link": s.link.id, "participant": s.guest, "category": "spam", "evidence": "data:image/jpeg;base64,aGVsbG8="}),
            422,
        ),
        (
            json!({"link": s.link.id, "participant": s.guest, "category": "spam", "evidence": format!("data:image/jpeg;base64,{}", "A".repeat(300_000))}),
            413,
        ),
        (
            json!({"link": "nosuchlink", "participant": s.guest, "category": "spam"}),
            404,
        ),
    ] {
        let (answer, body) = post(&mut p, MEMBER, "/reports", input.clone());
        assert_eq!(answer.status, status, "{input}: {}", answer.body_text());
        assert!(body["error"]["message"].is_string(), "{input}");
    }
    assert!(p.removals().is_empty());
    // Two reports an hour, then a clear refusal.
    for _ in 0..2 {
        let (answer, _) = post(
            &mut p,
            MEMBER,
            "/reports",
            json!({"link": s.link.id, "participant": s.guest, "category": "spam"}),
        );
        assert_eq!(answer.status, 201);
    }
    let (answer, body) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam"}),
    );
    assert_eq!(answer.status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
}

/// The smallest JPEG-looking still.
fn still() -> String {
    use base64::Engine as _;
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0];
    bytes.extend(std::iter::repeat_n(7u8, 100_000));
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[test]
fn administrators_review_reports_grouped_by_caller_with_the_still_and_block_on_the_whole_server() {
    let mut p = plugin();
    let s = scene(&mut p);
    let (answer, filed) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({
            "link": s.link.id, "participant": s.guest, "category": "inappropriate", "note": "showed something", "evidence": still(),
        }),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    post(
        &mut p,
        OWNER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam"}),
    );

    let (answer, _) = get(&mut p, MEMBER, "/reports");
    assert_eq!(answer.status, 403, "only administrators see the queue");
    let (answer, queue) = get(&mut p, ADMIN, "/reports");
    assert_eq!(answer.status, 200);
    let groups = queue["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{queue}");
    let group = &groups[0];
    assert_eq!(group["names"], json!(["Spammy"]));
    assert_eq!(group["address"], "198.51.100.7");
    assert_eq!(group["reports"].as_array().unwrap().len(), 2);
    let id = filed["report"].as_str().unwrap();
    let report = group["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(
        (
            report["evidence"].as_bool(),
            report["note"].as_str(),
            report["reporter"].as_str()
        ),
        (Some(true), Some("showed something"), Some("Mia Member"))
    );

    let picture = p.http(HttpRequest::get(&format!("/reports/{id}/evidence")).with_user(ADMIN));
    assert_eq!(picture.status, 200);
    assert_eq!(picture.header("content-type"), Some("image/jpeg"));
    assert_eq!(picture.body.len(), 100_004);
    assert_eq!(
        p.http(HttpRequest::get(&format!("/reports/{id}/evidence")).with_user(MEMBER))
            .status,
        403
    );

    // Blocked on the whole server: another link, the same network.
    let (answer, block) = post(
        &mut p,
        ADMIN,
        "/blocks",
        json!({"report": id, "scope": "instance"}),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    let other = p.add_link(MEMBER, "Elsewhere");
    let elsewhere = p.start_call(&other.id);
    let decision = decide(
        &mut p,
        &elsewhere,
        "198.51.100.7",
        origin(None, Some("198.51.100.7/32")),
    );
    let Decision::Deny(reason) = decision else {
        panic!("{decision:?}")
    };
    assert!(reason.contains("administrator"), "{reason}");
    let (_, queue) = get(&mut p, ADMIN, "/reports");
    assert_eq!(queue["groups"][0]["status"], "actioned");
    assert_eq!(queue["groups"][0]["blocked"]["scope"], "instance");

    let block_id = block["block"].as_str().unwrap();
    let unblock =
        p.http(HttpRequest::new("DELETE", &format!("/blocks/{block_id}")).with_user(ADMIN));
    assert_eq!(unblock.status, 204);
    assert_eq!(
        decide(
            &mut p,
            &elsewhere,
            "198.51.100.7",
            origin(None, Some("198.51.100.7/32"))
        ),
        Decision::Allow
    );
    assert_eq!(
        p.http(HttpRequest::new("DELETE", &format!("/blocks/{block_id}")).with_user(ADMIN))
            .status,
        404
    );
}

#[test]
fn administrators_get_one_mail_per_batch_of_new_reports() {
    let mut p = plugin();
    p.set_contact(10, "Second Admin", "second@example.org");
    p.add_admin(10);
    let s = scene(&mut p);
    p.timer("notify-admins");
    assert!(p.mails().is_empty(), "nothing to tell");
    for category in ["spam", "harassment", "other"] {
        post(
            &mut p,
            MEMBER,
            "/reports",
            json!({"link": s.link.id, "participant": s.guest, "category": category}),
        );
    }
    p.timer("notify-admins");
    assert_eq!(p.mails().len(), 2, "one mail to each administrator");
    let mail = &p.mails()[0];
    assert_eq!(mail.message.subject, "3 new reports on Confab");
    assert!(
        mail.message
            .text
            .contains("Harassment: \"Spammy\" on \"Standup\", reported by Mia Member"),
        "{}",
        mail.message.text
    );
    assert!(mail.message.text.contains("http://confab.test/"));
    p.timer("notify-admins");
    assert_eq!(p.mails().len(), 2, "the same reports are not mailed twice");
    post(
        &mut p,
        OWNER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam"}),
    );
    p.timer("notify-admins");
    assert_eq!(p.mails().len(), 4);
    assert_eq!(p.mails()[3].message.subject, "1 new report on Confab");
}

#[test]
fn reports_and_their_stills_are_deleted_after_the_retention_period_unless_kept_for_an_investigation()
 {
    let mut p = plugin();
    let s = scene(&mut p);
    let (_, kept) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam", "evidence": still()}),
    );
    let kept = kept["report"].as_str().unwrap().to_string();
    let (_, dropped) = post(
        &mut p,
        OWNER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "other"}),
    );
    let dropped = dropped["report"].as_str().unwrap().to_string();
    let (answer, body) = post(
        &mut p,
        ADMIN,
        &format!("/reports/{kept}"),
        json!({"keep": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert!(body["keep_until"].as_i64().unwrap() > p.now() + 89 * 24 * 3600 * 1000);

    p.advance(31 * DAY);
    let (_, queue) = get(&mut p, ADMIN, "/reports");
    let ids: Vec<&str> = queue["groups"][0]["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str()], "{queue}");
    assert_eq!(
        p.http(HttpRequest::get(&format!("/reports/{kept}/evidence")).with_user(ADMIN))
            .status,
        200
    );
    assert!(
        p.kv_keys().iter().all(|k| !k.contains(&dropped)),
        "{:?}",
        p.kv_keys()
    );

    p.advance(60 * DAY);
    let (_, queue) = get(&mut p, ADMIN, "/reports");
    assert_eq!(queue["groups"], json!([]));
    assert!(
        p.kv_keys().iter().all(|k| !k.starts_with("still/")),
        "{:?}",
        p.kv_keys()
    );
}

#[test]
fn a_link_knocked_on_from_more_than_ten_networks_warns_its_owner_once_on_the_call_and_by_mail() {
    let mut p = plugin();
    let s = scene(&mut p);
    for i in 0..10 {
        let address = format!("198.51.100.{}", 100 + i);
        decide(
            &mut p,
            &s.call,
            &address,
            origin(None, Some(&format!("{address}/32"))),
        );
    }
    assert!(
        p.sent_call_messages().is_empty(),
        "ten networks are not too many"
    );
    decide(
        &mut p,
        &s.call,
        "203.0.113.1",
        origin(None, Some("203.0.113.1/32")),
    );
    let sent = p.sent_call_messages();
    assert_eq!(sent.len(), 1, "only the owner is told");
    assert_eq!(sent[0].to, Some(1));
    let notice: Value = serde_json::from_slice(&sent[0].payload).unwrap();
    assert_eq!(
        notice,
        json!({"type": "leaked", "link": s.link.id, "addresses": 11, "denials": 0})
    );
    assert_eq!(p.mails().len(), 1);
    assert_eq!(p.mails()[0].message.to, ["Olga Owner <olga@example.org>"]);
    assert!(
        p.mails()[0]
            .message
            .text
            .contains("may have been shared beyond the people you invited")
    );

    decide(
        &mut p,
        &s.call,
        "203.0.113.2",
        origin(None, Some("203.0.113.2/32")),
    );
    assert_eq!(p.sent_call_messages().len(), 1, "told once per window");
}

#[test]
fn more_than_five_turned_away_requests_also_warn_the_owner() {
    let mut p = plugin().config("leak_denials", "2");
    let s = scene(&mut p);
    post(
        &mut p,
        OWNER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam", "action": "block"}),
    );
    for _ in 0..3 {
        decide(
            &mut p,
            &s.call,
            "198.51.100.7",
            origin(Some("dev-1"), Some("198.51.100.7/32")),
        );
    }
    let notice: Value = serde_json::from_slice(&p.sent_call_messages()[0].payload).unwrap();
    assert_eq!(notice["denials"], 3);
}

#[test]
fn the_owner_rotates_a_leaked_link_and_anyone_on_the_call_locks_the_lobby_or_suspends_the_guests() {
    let mut p = plugin();
    let s = scene(&mut p);
    let (answer, body) = post(&mut p, MEMBER, "/rotate", json!({"link": s.link.id}));
    assert_eq!(
        answer.status,
        404,
        "only the owner rotates: {}",
        answer.body_text()
    );
    let (answer, body2) = post(&mut p, OWNER, "/rotate", json!({"link": s.link.id}));
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    let new_id = body2["id"].as_str().unwrap();
    assert!(
        body2.get("url").is_none(),
        "the page keeps the call's secret"
    );
    assert_eq!(p.rotations(), [(s.link.id.clone(), new_id.to_string())]);
    assert_eq!(p.links()[0].policy, "ask");
    let _ = body;

    let (answer, _) = post(
        &mut p,
        MEMBER,
        "/lobby-lock",
        json!({"link": new_id, "locked": true}),
    );
    assert_eq!(answer.status, 200);
    assert!(p.lobby_locked(new_id));
    let (answer, _) = post(
        &mut p,
        5,
        "/lobby-lock",
        json!({"link": new_id, "locked": false}),
    );
    assert_eq!(answer.status, 403);
    assert!(p.lobby_locked(new_id));
}

/// A request from `address` on `network`, with no device cookie.
fn knock(p: &mut Harness, call: &Call, address: &str, network: &str) -> Decision {
    decide(p, call, address, origin(None, Some(network)))
}

const EXPORT_TOKEN: &str = "export-token-0123456789abcdef";
const LIST_URL: &str = "https://peer.example/p/spam-guard/blocklist";

#[test]
fn instance_wide_network_blocks_are_shared_with_the_token_and_nothing_more() {
    let mut p = plugin();
    let s = scene(&mut p);
    let (_, filed) = post(
        &mut p,
        MEMBER,
        "/reports",
        json!({"link": s.link.id, "participant": s.guest, "category": "spam"}),
    );
    let (answer, _) = post(
        &mut p,
        ADMIN,
        "/blocks",
        json!({"report": filed["report"], "scope": "instance"}),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    // A block on one link only stays on this server.
    let other = p
        .join_from(
            &s.link.id,
            "Local pest",
            None,
            origin(Some("dev-2"), Some("192.0.2.44/32")),
        )
        .id;
    let (answer, _) = post(
        &mut p,
        OWNER,
        "/reports",
        json!({"link": s.link.id, "participant": other, "category": "harassment", "action": "block"}),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());

    // Not shared until the operator sets a token.
    let closed = p.http(HttpRequest::get("/blocklist"));
    assert_eq!(closed.status, 404, "{}", closed.body_text());

    let mut p = p.config("export_token", EXPORT_TOKEN);
    for token in [None, Some("wrong"), Some(&EXPORT_TOKEN[1..])] {
        let mut request = HttpRequest::get("/blocklist");
        if let Some(token) = token {
            request = request.with_header("x-blocklist-token", token);
        }
        assert_eq!(p.http(request).status, 401, "{token:?}");
    }
    let list =
        p.http(HttpRequest::get("/blocklist").with_header("x-blocklist-token", EXPORT_TOKEN));
    assert_eq!(list.status, 200, "{}", list.body_text());
    let list: Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(list["format"], "confab-blocklist");
    assert_eq!(list["version"], 1);
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "only the network of the instance-wide block: {list}"
    );
    assert_eq!(entries[0]["entity"], "198.51.100.7/32");
    assert_eq!(entries[0]["kind"], "network");
    assert_eq!(entries[0]["recommendation"], "block");
    assert_eq!(entries[0]["reason"], "Spam or unwanted caller");
    assert!(entries[0]["expires_at"].as_i64().unwrap() > list["generated_at"].as_i64().unwrap());
    assert!(
        !list.to_string().contains("dev-1"),
        "no device pseudonym leaves the server"
    );
}

/// The list a peer serves, as the test sets it.
fn peer_list(networks: &[&str], expires_at: i64) -> String {
    let entries: Vec<Value> = networks
        .iter()
        .map(|n| json!({"entity": n, "kind": "network", "recommendation": "block", "reason": "spam", "expires_at": expires_at}))
        .chain([
            json!({"entity": "dev-9", "kind": "device", "recommendation": "block", "expires_at": expires_at}),
            json!({"entity": "10.0.0.0/8", "kind": "network", "recommendation": "block", "expires_at": expires_at}),
        ])
        .collect();
    json!({"format": "confab-blocklist", "version": 1, "entries": entries}).to_string()
}

#[test]
fn a_subscribed_list_turns_its_networks_away_and_this_servers_own_rules_win() {
    use std::sync::{Arc, Mutex};
    let served = Arc::new(Mutex::new((200u16, String::new())));
    let answer = served.clone();
    let mut p = plugin()
        .config("subscriptions", &format!("{LIST_URL} peer-secret"))
        .allow_http_host("peer.example")
        .respond_with(move |request| {
            if request.url != LIST_URL {
                return None;
            }
            let token = request
                .headers
                .iter()
                .find(|(n, _)| n == "x-blocklist-token")
                .map(|(_, v)| v.as_str());
            let (status, body) = answer.lock().unwrap().clone();
            Some(match token {
                Some("peer-secret") => confab_plugin_test::OutboundResponse::json(status, &body),
                _ => confab_plugin_test::OutboundResponse::json(401, "{}"),
            })
        });
    let in_a_week = 1_767_225_600 + 7 * 86_400;
    *served.lock().unwrap() = (
        200,
        peer_list(&["203.0.113.5/32", "2001:db8:7:7::/64"], in_a_week),
    );
    let link = p.add_link(OWNER, "Standup");
    let call = p.start_call(&link.id);
    p.join(&link.id, "Olga Owner", Some(OWNER));
    p.timer("sync-blocklists");

    let listed = decide(
        &mut p,
        &call,
        "203.0.113.5",
        origin(Some("dev-a"), Some("203.0.113.5/32")),
    );
    assert_eq!(
        listed,
        Decision::Deny("This server does not take requests from your network.".into()),
        "the list's own reason is for administrators, not the caller"
    );
    let v6 = knock(&mut p, &call, "2001:db8:7:7::1", "2001:db8:7:7::/64");
    assert!(denied(&v6));
    let stranger = knock(&mut p, &call, "203.0.113.6", "203.0.113.6/32");
    assert_eq!(stranger, Decision::Allow);

    let (answer, status) = get(&mut p, ADMIN, "/subscriptions");
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(status["subscriptions"][0]["url"], LIST_URL);
    assert_eq!(status["subscriptions"][0]["entries"], 2);
    assert_eq!(
        status["subscriptions"][0]["skipped"], 2,
        "the device and the /8"
    );
    assert_eq!(status["subscriptions"][0]["error"], Value::Null);
    assert!(
        !answer.body_text().contains("peer-secret"),
        "the token stays with the server"
    );
    assert_eq!(get(&mut p, MEMBER, "/subscriptions").0.status, 403);
    // An administrator looks up why a network is turned away: the list's reason.
    let (answer, why) = get(&mut p, ADMIN, "/shared?network=203.0.113.5%2F32");
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(why["rule"]["host"], "peer.example");
    assert_eq!(why["rule"]["reason"], "spam");
    assert_eq!(why["exception"], false);
    assert_eq!(
        get(&mut p, ADMIN, "/shared?network=203.0.113.6/32").1["rule"],
        Value::Null
    );
    assert_eq!(
        get(&mut p, MEMBER, "/shared?network=203.0.113.5/32")
            .0
            .status,
        403
    );

    // An administrator's exception wins over the list, and can be taken back.
    let (answer, _) = post(
        &mut p,
        ADMIN,
        "/exceptions",
        json!({"network": "203.0.113.5/32", "allow": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(
        knock(&mut p, &call, "203.0.113.5", "203.0.113.5/32"),
        Decision::Allow
    );
    let (answer, _) = post(
        &mut p,
        MEMBER,
        "/exceptions",
        json!({"network": "203.0.113.5/32", "allow": false}),
    );
    assert_eq!(answer.status, 403);
    let (answer, _) = post(
        &mut p,
        ADMIN,
        "/exceptions",
        json!({"network": "203.0.113.0/24", "allow": true}),
    );
    assert_eq!(answer.status, 422);
    post(
        &mut p,
        ADMIN,
        "/exceptions",
        json!({"network": "203.0.113.5/32", "allow": false}),
    );
    assert!(denied(&knock(
        &mut p,
        &call,
        "203.0.113.5",
        "203.0.113.5/32"
    )));

    // The peer drops a network: gone here at the next fetch.
    *served.lock().unwrap() = (200, peer_list(&["2001:db8:7:7::/64"], in_a_week));
    p.timer("sync-blocklists");
    assert_eq!(
        knock(&mut p, &call, "203.0.113.5", "203.0.113.5/32"),
        Decision::Allow
    );
    assert!(denied(&knock(
        &mut p,
        &call,
        "2001:db8:7:7::1",
        "2001:db8:7:7::/64"
    )));

    // A broken answer changes nothing and is reported; a peer gone for more than a
    // week no longer blocks anyone.
    *served.lock().unwrap() = (200, "{\"format\": \"other\"}".into());
    p.timer("sync-blocklists");
    let (_, status) = get(&mut p, ADMIN, "/subscriptions");
    assert!(
        status["subscriptions"][0]["error"].as_str().is_some(),
        "{status}"
    );
    assert!(denied(&knock(
        &mut p,
        &call,
        "2001:db8:7:7::1",
        "2001:db8:7:7::/64"
    )));
    *served.lock().unwrap() = (503, String::new());
    p.advance(8 * DAY);
    p.timer("sync-blocklists");
    assert_eq!(
        knock(&mut p, &call, "2001:db8:7:7::1", "2001:db8:7:7::/64"),
        Decision::Allow
    );
}

#[test]
fn a_list_from_a_host_the_operator_did_not_allow_is_never_fetched() {
    let mut p = plugin()
        .config("subscriptions", &format!("{LIST_URL} peer-secret"))
        .respond(
            LIST_URL,
            confab_plugin_test::OutboundResponse::json(
                200,
                &peer_list(&["203.0.113.5/32"], 1_800_000_000),
            ),
        );
    let link = p.add_link(OWNER, "Standup");
    let call = p.start_call(&link.id);
    p.timer("sync-blocklists");
    assert!(
        p.http_requests().is_empty(),
        "the server refuses the request"
    );
    assert_eq!(
        knock(&mut p, &call, "203.0.113.5", "203.0.113.5/32"),
        Decision::Allow
    );
    let (_, status) = get(&mut p, ADMIN, "/subscriptions");
    let error = status["subscriptions"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("peer.example"), "{status}");
}
