//! The plugin's component (built for wasm32-wasip2) against the SDK's harness:
//! one mail per invitee with the link exactly as shared, iMIP invitations for
//! scheduled links, updates and cancellations that follow the link once, and
//! refused requests that queue nothing; one-click unsubscribe, the suppression
//! list and the count of reported invitations.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use confab_plugin_test::{Event, Harness, HttpRequest, HttpResponse, Link, QueuedMail, Schedule};
use serde_json::{Value, json};

const ANA: i64 = 7;
const BO: i64 = 8;
/// 2026-12-01T09:00Z: 10:00 in Berlin.
const BERLIN_10: i64 = 1_796_115_600_000;

fn plugin() -> Harness {
    Harness::from_crate(env!("CARGO_MANIFEST_DIR"))
}

/// A harness with Ana's link "Standup" and Ana's name and address.
fn with_link() -> (Harness, Link) {
    let mut plugin = plugin();
    plugin.set_contact(ANA, "Ana Inviter", "ana@example.org");
    let link = plugin.add_link(ANA, "Standup");
    (plugin, link)
}

fn shared(link: &Link) -> String {
    format!("http://confab.test/j/{}#k=s3cr3t-Zk_9", link.id)
}

fn weekly(start: i64) -> Schedule {
    Schedule {
        start,
        end: start + 45 * 60_000,
        time_zone: "Europe/Berlin".into(),
        rrule: Some("FREQ=WEEKLY;BYDAY=TU".into()),
    }
}

fn invite(plugin: &mut Harness, user: i64, body: Value) -> HttpResponse {
    plugin.http(
        HttpRequest::post("/invites")
            .with_user(user)
            .with_header("content-type", "application/json")
            .with_body(body.to_string()),
    )
}

fn json_of(response: &HttpResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body_text()))
}

fn error_code(response: &HttpResponse) -> String {
    let body = json_of(response);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["code"].as_str().unwrap().to_string()
}

fn unfolded(text: &str) -> String {
    text.replace("\r\n ", "").replace("\r\n\t", "")
}

/// The calendar part of a mail, unfolded, after checking how it is attached.
fn ics(mail: &QueuedMail, method: &str) -> String {
    let [part] = mail.message.attachments.as_slice() else {
        panic!("want one attachment, got {:?}", mail.message.attachments);
    };
    assert_eq!(
        part.content_type,
        format!("text/calendar; charset=UTF-8; method={method}")
    );
    assert_eq!(part.filename, "invite.ics");
    assert!(part.inline_alternative);
    let raw = String::from_utf8(part.data.clone()).unwrap();
    for line in raw.split("\r\n") {
        assert!(line.len() <= 75, "a line of {} octets: {line}", line.len());
    }
    let text = unfolded(&raw);
    assert!(text.contains(&format!("METHOD:{method}\r\n")), "{text}");
    text
}

fn property<'a>(ics: &'a str, name: &str) -> Vec<&'a str> {
    ics.split("\r\n")
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([':', ';']))
        })
        .collect()
}

fn uid(ics: &str) -> String {
    property(ics, "UID")[0].to_string()
}

#[test]
fn an_invitation_without_a_schedule_is_one_mail_per_person() {
    let (mut plugin, link) = with_link();
    let url = shared(&link);
    let response = invite(
        &mut plugin,
        ANA,
        json!({
            "url": url,
            "recipients": ["zoe@example.net", "Bo Ek <bo@example.org>", "ZOE@Example.net"],
            "note": "Bring <b>coffee</b> & questions\nSee you",
        }),
    );
    assert_eq!(response.status, 202, "{}", response.body_text());
    let body = json_of(&response);
    assert_eq!(body["queued"], 2, "the duplicate is invited once");
    assert_eq!(body["scheduled"], false);
    let mails = plugin.mails().to_vec();
    let ids: Vec<&str> = mails.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(body["ids"], json!(ids));

    let to: Vec<&[String]> = mails.iter().map(|m| m.message.to.as_slice()).collect();
    assert_eq!(
        to,
        [
            &["zoe@example.net".to_string()][..],
            &["Bo Ek <bo@example.org>".to_string()]
        ]
    );
    for mail in &mails {
        let m = &mail.message;
        assert!(m.cc.is_empty());
        assert_eq!(m.reply_to.as_deref(), Some("Ana Inviter <ana@example.org>"));
        assert_eq!(m.subject, "Ana Inviter invited you to a call: Standup");
        assert!(m.attachments.is_empty(), "no schedule, no calendar");
        // The link on a line of its own in the text, exactly as shared in both.
        assert!(m.text.contains(&format!("\n{url}\n")), "{}", m.text);
        let html = m.html.as_deref().unwrap();
        assert!(html.contains(&format!("href=\"{url}\"")), "{html}");
        assert!(html.contains(&format!(">{url}</a>")), "{html}");
        // Everything else is escaped.
        assert!(html.contains("Bring &lt;b&gt;coffee"), "{html}");
        assert!(!html.contains("<b>coffee"));
        assert!(html.contains("&amp; questions<br>See you"), "{html}");
        assert!(m.text.contains("Bring <b>coffee</b> & questions\nSee you"));
    }
    assert!(mails[1].message.text.starts_with("Hello Bo Ek,"));

    let record =
        plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(ANA));
    assert_eq!(record.status, 200, "{}", record.body_text());
    let record = json_of(&record);
    assert_eq!(record["url"], url);
    assert_eq!(record["sequence"], 0);
    let emails: Vec<&str> = record["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["zoe@example.net", "bo@example.org"]);
    assert_eq!(
        record["recipients"][0]["sent_at"],
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(record["last_sent"], "2026-01-01T00:00:00+00:00");
    // Who was invited is kept 30 days after the last mail, then purged.
    assert_eq!(
        plugin.kv_expires_at(&format!("invite/{}", link.id)),
        Some(plugin.now() + 30 * 86_400_000)
    );
    // Only the owner sees it.
    let stranger =
        plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(BO));
    assert_eq!(stranger.status, 404);
}

#[test]
fn a_scheduled_link_sends_calendar_invitations() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    // A long fragment: the URL is folded in the file and must come back whole.
    let url = format!("http://confab.test/j/{}#k={}", link.id, "Zk9-_x".repeat(15));
    let response = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["zoe@example.net", "Bo Ek <bo@example.org>"]}),
    );
    assert_eq!(response.status, 202, "{}", response.body_text());
    assert_eq!(json_of(&response)["scheduled"], true);
    let mails = plugin.mails().to_vec();
    assert_eq!(mails.len(), 2);
    let mut uids = Vec::new();
    for (mail, (address, name)) in mails
        .iter()
        .zip([("zoe@example.net", None), ("bo@example.org", Some("Bo Ek"))])
    {
        let text = ics(mail, "REQUEST");
        assert!(text.contains("ORGANIZER;CN=Ana Inviter:mailto:ana@example.org\r\n"));
        let attendees = property(&text, "ATTENDEE");
        let [attendee] = attendees.as_slice() else {
            panic!("want one attendee, got {attendees:?}")
        };
        for param in [
            ";ROLE=REQ-PARTICIPANT",
            ";PARTSTAT=NEEDS-ACTION",
            ";RSVP=TRUE",
        ] {
            assert!(attendee.contains(param), "{attendee}");
        }
        assert!(
            attendee.ends_with(&format!(":mailto:{address}")),
            "{attendee}"
        );
        if let Some(name) = name {
            assert!(
                attendee.starts_with(&format!("ATTENDEE;CN={name};")),
                "{attendee}"
            );
        }
        // Nobody sees the other invitees.
        let other = if address == "zoe@example.net" {
            "bo@example.org"
        } else {
            "zoe@example.net"
        };
        assert!(!text.contains(other));
        assert!(text.contains(&format!("URL;VALUE=URI:{url}\r\n")), "{text}");
        assert!(text.contains(&format!("LOCATION:{url}\r\n")), "{text}");
        assert!(property(&text, "DESCRIPTION")[0].contains(&url));
        assert!(text.contains("DTSTART;TZID=Europe/Berlin:20261201T100000\r\n"));
        assert!(text.contains("DTEND;TZID=Europe/Berlin:20261201T104500\r\n"));
        assert!(text.contains("RRULE:FREQ=WEEKLY;BYDAY=TU\r\n"));
        assert!(text.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n"));
        assert!(text.contains("SEQUENCE:0\r\n"));
        assert!(text.contains("DTSTAMP:20260101T000000Z\r\n"));
        uids.push(uid(&text));

        let body = &mail.message.text;
        assert!(body.contains(&format!("\n{url}\n")));
        assert!(
            body.contains(
                "When: Tuesday 1 December 2026, 10:00–10:45 (Europe/Berlin, UTC+01:00)\n"
            )
        );
        assert!(body.contains("Repeats: every week on Tuesday\n"));
        assert!(body.contains("invite.ics"));
        let html = mail.message.html.as_deref().unwrap();
        assert!(html.contains(&format!("href=\"{url}\"")));
    }
    assert_eq!(uids[0], uids[1], "one event, one UID");
    // A series without end keeps its invitees for its updates.
    assert_eq!(plugin.kv_expires_at(&format!("invite/{}", link.id)), None);
}

#[test]
fn a_new_time_is_an_update_for_every_invitee_once() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    let url = shared(&link);
    let first = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["zoe@example.net", "bo@example.org"]}),
    );
    assert_eq!(first.status, 202, "{}", first.body_text());
    let invitation = ics(&plugin.mails()[0], "REQUEST");

    // Moved a day later (the dashboard, the REST API): the server tells the plugin.
    plugin.set_schedule(&link.id, weekly(BERLIN_10 + 86_400_000));
    plugin.event(Event::LinkUpdated(link.clone()));
    let updates = plugin.mails()[2..].to_vec();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].message.to, ["zoe@example.net"]);
    assert_eq!(updates[1].message.to, ["bo@example.org"]);
    for update in &updates {
        let text = ics(update, "REQUEST");
        assert_eq!(uid(&text), uid(&invitation));
        assert!(text.contains("SEQUENCE:1\r\n"), "{text}");
        assert!(text.contains("DTSTART;TZID=Europe/Berlin:20261202T100000\r\n"));
        assert!(text.contains(&format!("URL;VALUE=URI:{url}\r\n")));
        assert_eq!(update.message.subject, "Updated invitation: Standup");
        let body = &update.message.text;
        assert!(
            body.contains("Now: Wednesday 2 December 2026, 10:00–10:45"),
            "{body}"
        );
        assert!(
            body.contains("Before: Tuesday 1 December 2026, 10:00–10:45"),
            "{body}"
        );
        assert!(body.contains(&format!("\n{url}\n")));
        assert_eq!(
            update.message.reply_to.as_deref(),
            Some("Ana Inviter <ana@example.org>")
        );
    }

    // The same event again, or a new title alone: nobody hears of it twice.
    plugin.event(Event::LinkUpdated(link.clone()));
    let mut renamed = link.clone();
    renamed.title = "Daily standup".into();
    plugin.event(Event::LinkUpdated(renamed));
    assert_eq!(plugin.mails().len(), 4);
    let record =
        plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(ANA));
    assert_eq!(
        json_of(&record)["title"],
        "Daily standup",
        "kept for the next mail"
    );

    // Someone invited now gets the current time and SEQUENCE; the next change
    // reaches everyone.
    let later = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["cy@example.com"]}),
    );
    assert_eq!(later.status, 202, "{}", later.body_text());
    let text = ics(&plugin.mails()[4], "REQUEST");
    assert!(text.contains("SEQUENCE:1\r\n"));
    assert!(text.contains("DTSTART;TZID=Europe/Berlin:20261202T100000\r\n"));
    plugin.set_schedule(&link.id, weekly(BERLIN_10 + 2 * 86_400_000));
    plugin.event(Event::LinkUpdated(link.clone()));
    assert_eq!(plugin.mails().len(), 8);
    for update in &plugin.mails()[5..] {
        assert!(ics(update, "REQUEST").contains("SEQUENCE:2\r\n"));
    }
    let record = json_of(
        &plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(ANA)),
    );
    assert_eq!(record["sequence"], 2);
    assert!(
        record["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["sequence"] == 2 && r["up_to_date"] == true)
    );
}

#[test]
fn a_removed_schedule_cancels_the_call_once() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    let url = shared(&link);
    let made = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["zoe@example.net"]}),
    );
    assert_eq!(made.status, 202, "{}", made.body_text());
    let invitation = ics(&plugin.mails()[0], "REQUEST");

    plugin.clear_schedule(&link.id);
    plugin.event(Event::LinkUpdated(link.clone()));
    assert_eq!(plugin.mails().len(), 2);
    let cancel = &plugin.mails()[1];
    let text = ics(cancel, "CANCEL");
    assert_eq!(uid(&text), uid(&invitation));
    assert!(text.contains("STATUS:CANCELLED\r\n"));
    assert!(text.contains("SEQUENCE:1\r\n"));
    assert!(text.contains("DTSTART;TZID=Europe/Berlin:20261201T100000\r\n"));
    assert!(text.contains("ORGANIZER;CN=Ana Inviter:mailto:ana@example.org\r\n"));
    assert!(property(&text, "ATTENDEE")[0].ends_with(":mailto:zoe@example.net"));
    assert_eq!(cancel.message.subject, "Cancelled: Standup");
    assert!(cancel.message.text.contains("Ana Inviter cancelled it."));

    // Again, and then revoked: the call is off already.
    plugin.event(Event::LinkUpdated(link.clone()));
    plugin.event(Event::LinkRevoked(link.clone()));
    assert_eq!(plugin.mails().len(), 2);
}

#[test]
fn a_revoked_link_cancels_the_invitations_once() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    let url = shared(&link);
    let made = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["zoe@example.net", "bo@example.org"]}),
    );
    assert_eq!(made.status, 202, "{}", made.body_text());
    let invitation = ics(&plugin.mails()[0], "REQUEST");

    plugin.event(Event::LinkRevoked(link.clone()));
    plugin.event(Event::LinkRevoked(link.clone()));
    plugin.event(Event::LinkUpdated(link.clone()));
    let cancels = plugin.mails()[2..].to_vec();
    assert_eq!(cancels.len(), 2, "one cancellation per invitee");
    for cancel in &cancels {
        let text = ics(cancel, "CANCEL");
        assert_eq!(uid(&text), uid(&invitation));
        assert!(text.contains("STATUS:CANCELLED\r\n"));
        assert!(text.contains("SEQUENCE:1\r\n"));
        assert!(
            cancel.message.text.contains("revoked its link"),
            "{}",
            cancel.message.text
        );
        assert!(
            !cancel.message.text.contains(&url),
            "a revoked link is not offered"
        );
    }
    let record = json_of(
        &plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(ANA)),
    );
    assert_eq!(record["status"], "revoked");
    assert_eq!(
        plugin.kv_expires_at(&format!("invite/{}", link.id)),
        Some(plugin.now() + 30 * 86_400_000)
    );
}

#[test]
fn refused_invitations_queue_nothing() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    let bos = plugin.add_link(BO, "Bo's call");
    let url = shared(&link);
    let hundred_and_one: Vec<String> = (0..101).map(|i| format!("p{i}@example.org")).collect();
    let cases = [
        (
            json!({"url": url, "recipients": hundred_and_one}),
            422,
            "too_many_recipients",
        ),
        (
            json!({"url": url, "recipients": ["zoe@example.net", "not an address"]}),
            422,
            "invalid_recipients",
        ),
        (
            json!({"url": url, "recipients": ["zoe@example.net", "bo@example.org\r\nBcc: victim@example.org"]}),
            422,
            "invalid_recipients",
        ),
        (
            json!({"url": url, "recipients": ["Zoë\n <zoe@example.net>"]}),
            422,
            "invalid_recipients",
        ),
        (
            json!({"url": url, "recipients": []}),
            422,
            "invalid_recipients",
        ),
        (
            json!({"url": url, "recipients": ["zoe@example.net"], "note": "a\u{0}b"}),
            422,
            "invalid_note",
        ),
        (
            json!({"url": url, "recipients": ["zoe@example.net"], "note": "x".repeat(2001)}),
            422,
            "invalid_note",
        ),
        (
            json!({"url": shared(&bos), "recipients": ["zoe@example.net"]}),
            404,
            "not_found",
        ),
        (
            json!({"url": "http://confab.test/j/nosuchlink0000000000#k=1", "recipients": ["zoe@example.net"]}),
            404,
            "not_found",
        ),
        (
            json!({"url": format!("https://evil.example/j/{}#k=1", link.id), "recipients": ["zoe@example.net"]}),
            422,
            "invalid_url",
        ),
        (
            json!({"url": format!("http://confab.test/j/{}?next=https://evil.example", link.id), "recipients": ["zoe@example.net"]}),
            422,
            "invalid_url",
        ),
        (
            json!({"url": format!("http://confab.test/j/{}#k=\"><script>", link.id), "recipients": ["zoe@example.net"]}),
            422,
            "invalid_url",
        ),
        (
            json!({"recipients": ["zoe@example.net"]}),
            422,
            "invalid_url",
        ),
    ];
    for (body, status, code) in cases {
        let response = invite(&mut plugin, ANA, body.clone());
        assert_eq!(response.status, status, "{body}: {}", response.body_text());
        assert_eq!(error_code(&response), code, "{body}");
    }
    let malformed = plugin.http(HttpRequest::post("/invites").with_user(ANA).with_body("{"));
    assert_eq!(malformed.status, 400);
    let signed_out = plugin.http(
        HttpRequest::post("/invites")
            .with_body(json!({"url": url, "recipients": ["zoe@example.net"]}).to_string()),
    );
    assert_eq!(signed_out.status, 401);
    assert_eq!(error_code(&signed_out), "unauthorized");

    assert!(plugin.mails().is_empty());
    assert!(plugin.kv_keys().is_empty(), "{:?}", plugin.kv_keys());

    // The same request, valid, goes out.
    let ok = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["zoe@example.net"]}),
    );
    assert_eq!(ok.status, 202, "{}", ok.body_text());
    assert_eq!(plugin.mails().len(), 1);
}

#[test]
fn each_user_invites_at_most_so_many_people_an_hour() {
    let mut plugin = plugin().config("recipients_per_user_per_hour", "3");
    let ana = plugin.add_link(ANA, "Ana's");
    let bo = plugin.add_link(BO, "Bo's");
    let people = |n: usize, from: usize| -> Vec<String> {
        (from..from + n)
            .map(|i| format!("p{i}@example.org"))
            .collect()
    };
    let send = |plugin: &mut Harness, user: i64, link: &Link, to: Vec<String>| {
        invite(plugin, user, json!({"url": shared(link), "recipients": to}))
    };
    assert_eq!(send(&mut plugin, ANA, &ana, people(2, 0)).status, 202);
    let over = send(&mut plugin, ANA, &ana, people(2, 2));
    assert_eq!(over.status, 429, "{}", over.body_text());
    assert_eq!(error_code(&over), "rate_limited");
    assert_eq!(plugin.mails().len(), 2, "nothing of the refused request");
    assert_eq!(send(&mut plugin, ANA, &ana, people(1, 2)).status, 202);
    assert_eq!(send(&mut plugin, ANA, &ana, people(1, 3)).status, 429);
    // Someone else counts for themselves.
    assert_eq!(send(&mut plugin, BO, &bo, people(3, 10)).status, 202);
    // An hour later Ana may invite again.
    plugin.advance(std::time::Duration::from_secs(3601));
    assert_eq!(send(&mut plugin, ANA, &ana, people(3, 3)).status, 202);
    assert_eq!(plugin.mails().len(), 9);
}

#[test]
fn the_hourly_mail_limit_of_the_manifest_is_a_429() {
    let mut plugin = plugin().config("recipients_per_user_per_hour", "100000");
    let batch = |n: usize, from: usize| -> Vec<String> {
        (from..from + n)
            .map(|i| format!("p{i}@example.org"))
            .collect()
    };
    // 1950 of the 2000 mails an hour the manifest asks for.
    for round in 0..20 {
        let link = plugin.add_link(ANA, &format!("Call {round}"));
        let size = if round == 19 { 50 } else { 100 };
        let response = invite(
            &mut plugin,
            ANA,
            json!({"url": shared(&link), "recipients": batch(size, round * 100)}),
        );
        assert_eq!(response.status, 202, "{}", response.body_text());
    }
    assert_eq!(plugin.mails().len(), 1950);
    // Fifty of these go out, then the limit answers.
    let link = plugin.add_link(ANA, "One too many");
    let response = invite(
        &mut plugin,
        ANA,
        json!({"url": shared(&link), "recipients": batch(100, 5000)}),
    );
    assert_eq!(response.status, 429, "{}", response.body_text());
    assert_eq!(error_code(&response), "limit_reached");
    let body = json_of(&response);
    assert_eq!(body["queued"], 50);
    assert_eq!(plugin.mails().len(), 2000);
    // Only those who got their invitation are kept.
    let record = json_of(
        &plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(ANA)),
    );
    assert_eq!(record["recipients"].as_array().unwrap().len(), 50);
    // And now nothing goes out at all.
    let none = invite(
        &mut plugin,
        ANA,
        json!({"url": shared(&link), "recipients": ["late@example.org"]}),
    );
    assert_eq!(none.status, 429);
    assert_eq!(json_of(&none)["queued"], 0);
    assert_eq!(plugin.mails().len(), 2000);
}

#[test]
fn unknown_routes_and_methods_answer_json() {
    let mut plugin = plugin();
    let missing = plugin.http(HttpRequest::get("/nope").with_user(ANA));
    assert_eq!(missing.status, 404);
    assert_eq!(error_code(&missing), "not_found");
    let method = plugin.http(HttpRequest::new("DELETE", "/invites").with_user(ANA));
    assert_eq!(method.status, 405);
    assert_eq!(method.header("allow"), Some("GET, POST"));
    let no_link = plugin.http(HttpRequest::get("/invites").with_user(ANA));
    assert_eq!(error_code(&no_link), "invalid_link");
    let link = plugin.add_link(ANA, "Quiet");
    let none = json_of(
        &plugin.http(HttpRequest::get(&format!("/invites?link={}", link.id)).with_user(ANA)),
    );
    assert_eq!(none["recipients"], json!([]));
    assert_eq!(plugin.http(HttpRequest::get("/invites?link=x")).status, 401);
}

/// The unsubscribe URL of the mail to `address` (the latest one).
fn unsubscribe_url(plugin: &Harness, address: &str) -> String {
    let mail = plugin
        .mails()
        .iter()
        .rev()
        .find(|m| m.recipients().any(|r| r.contains(address)))
        .unwrap_or_else(|| panic!("no mail to {address}"));
    mail.list_unsubscribe
        .clone()
        .unwrap_or_else(|| panic!("the mail to {address} has no List-Unsubscribe"))
}

/// The request for `url` (an unsubscribe URL), under the plugin's prefix.
fn unsubscribe_request(method: &str, url: &str) -> HttpRequest {
    let path = url
        .strip_prefix("http://confab.test/p/email-invites")
        .unwrap_or_else(|| panic!("{url} is not the plugin's"));
    HttpRequest::new(method, path)
}

fn one_click(plugin: &mut Harness, url: &str) -> HttpResponse {
    plugin.http(
        unsubscribe_request("POST", url)
            .with_header("content-type", "application/x-www-form-urlencoded")
            .with_body("List-Unsubscribe=One-Click"),
    )
}

fn press(plugin: &mut Harness, url: &str, action: &str) -> HttpResponse {
    plugin.http(
        unsubscribe_request("POST", url)
            .with_header("content-type", "application/x-www-form-urlencoded")
            .with_body(format!("action={action}")),
    )
}

#[test]
fn every_invitation_carries_one_click_unsubscribe_and_a_visible_link() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    let response = invite(
        &mut plugin,
        ANA,
        json!({"url": shared(&link), "recipients": ["bo@example.org", "cy@example.com"]}),
    );
    assert_eq!(response.status, 202, "{}", response.body_text());
    assert_eq!(json_of(&response)["not_sent"], json!([]));
    let bo = unsubscribe_url(&plugin, "bo@example.org");
    let cy = unsubscribe_url(&plugin, "cy@example.com");
    assert!(
        bo.starts_with("http://confab.test/p/email-invites/unsubscribe?t="),
        "{bo}"
    );
    assert_ne!(bo, cy, "each recipient has their own");
    for mail in plugin.mails() {
        let url = mail.list_unsubscribe.as_deref().unwrap();
        assert!(
            mail.message.text.contains(&format!(
                "Don't send me invitations from this server / report this\ninvitation: {url}"
            )),
            "{}",
            mail.message.text
        );
        let html = mail.message.html.as_deref().unwrap();
        assert!(html.contains(&format!("href=\"{url}\"")), "{html}");
    }
    // Updates carry it too.
    plugin.set_schedule(&link.id, weekly(BERLIN_10 + 86_400_000));
    plugin.event(Event::LinkUpdated(link.clone()));
    assert_eq!(plugin.mails().len(), 4);
    assert_eq!(
        unsubscribe_url(&plugin, "bo@example.org"),
        bo,
        "stable per recipient and link"
    );

    // The page asks; opening it (as mail scanners do) changes nothing.
    let page = plugin.http(unsubscribe_request("GET", &bo));
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.body_text();
    assert!(
        html.contains("Ana Inviter invited you to a call (Standup)"),
        "{html}"
    );
    assert!(
        html.contains("Don't send me invitations from this server"),
        "{html}"
    );
    assert!(
        html.contains("Report this invitation as unwanted"),
        "{html}"
    );
    assert!(plugin.kv_keys().iter().all(|k| !k.starts_with("suppress/")));
}

#[test]
fn one_click_unsubscribe_stops_every_later_invitation_and_update() {
    let (mut plugin, link) = with_link();
    plugin.set_schedule(&link.id, weekly(BERLIN_10));
    let url = shared(&link);
    invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["Bo@Example.org", "cy@example.com"]}),
    );
    let bo = unsubscribe_url(&plugin, "Bo@Example.org");
    let response = one_click(&mut plugin, &bo);
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(json_of(&response)["unsubscribed"], true);
    // Twice is fine.
    assert_eq!(one_click(&mut plugin, &bo).status, 200);
    let keys = plugin.kv_keys();
    let suppressed: Vec<&String> = keys.iter().filter(|k| k.starts_with("suppress/")).collect();
    assert_eq!(suppressed.len(), 1, "{keys:?}");
    let entry = plugin.kv_string(suppressed[0]).unwrap();
    assert!(!entry.contains('@'), "no address is kept: {entry}");

    // The next change reaches Cy only.
    let before = plugin.mails().len();
    plugin.set_schedule(&link.id, weekly(BERLIN_10 + 86_400_000));
    plugin.event(Event::LinkUpdated(link.clone()));
    let sent: Vec<String> = plugin.mails()[before..]
        .iter()
        .map(|m| m.message.to.join(","))
        .collect();
    assert_eq!(sent, ["cy@example.com"]);

    // Another user, another link, another spelling: Bo is left out, and the sender
    // is told why.
    plugin.set_contact(BO, "Bo Sender", "bo.sender@example.org");
    let other = plugin.add_link(BO, "Retro");
    let before = plugin.mails().len();
    let response = invite(
        &mut plugin,
        BO,
        json!({"url": format!("http://confab.test/j/{}", other.id), "recipients": ["BO@example.ORG", "dee@example.net"]}),
    );
    assert_eq!(response.status, 202, "{}", response.body_text());
    let body = json_of(&response);
    assert_eq!(body["queued"], 1);
    assert_eq!(
        body["not_sent"],
        json!([{
            "email": "BO@example.ORG",
            "code": "suppressed",
            "reason": "This person asked not to get invitations from this server."
        }])
    );
    let to: Vec<String> = plugin.mails()[before..]
        .iter()
        .map(|m| m.message.to.join(","))
        .collect();
    assert_eq!(to, ["dee@example.net"]);
    let only = invite(
        &mut plugin,
        BO,
        json!({"url": format!("http://confab.test/j/{}", other.id), "recipients": ["bo@example.org"]}),
    );
    assert_eq!(only.status, 202);
    assert_eq!(json_of(&only)["queued"], 0);
    assert_eq!(plugin.mails().len(), before + 1, "nothing more was queued");
    let record = json_of(
        &plugin.http(HttpRequest::get(&format!("/invites?link={}", other.id)).with_user(BO)),
    );
    let invited: Vec<&str> = record["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"].as_str().unwrap())
        .collect();
    assert_eq!(invited, ["dee@example.net"], "Bo is not on the list at all");

    // The page now says it is done, and offers the report.
    let page = plugin.http(unsubscribe_request("GET", &bo)).body_text();
    assert!(page.contains("data-state=\"done\""), "{page}");
    assert!(
        page.contains("Also report this invitation as unwanted"),
        "{page}"
    );

    // Kept for retention_days (30), then Bo can be invited again.
    plugin.advance(std::time::Duration::from_secs(31 * 86_400));
    let again = invite(
        &mut plugin,
        BO,
        json!({"url": format!("http://confab.test/j/{}", other.id), "recipients": ["bo@example.org"]}),
    );
    assert_eq!(json_of(&again)["queued"], 1, "{}", again.body_text());
}

#[test]
fn reported_invitations_count_against_the_sender_once_and_admins_see_them() {
    let (mut plugin, link) = with_link();
    let url = shared(&link);
    invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["bo@example.org", "cy@example.com", "dee@example.net"]}),
    );
    let bo = unsubscribe_url(&plugin, "bo@example.org");
    let cy = unsubscribe_url(&plugin, "cy@example.com");
    let dee = unsubscribe_url(&plugin, "dee@example.net");
    let done = press(&mut plugin, &bo, "report");
    assert_eq!(done.status, 200);
    let html = done.body_text();
    assert!(html.contains("Your report was passed on"), "{html}");
    press(&mut plugin, &bo, "report");
    press(&mut plugin, &cy, "unsubscribe");
    press(&mut plugin, &cy, "report");
    press(&mut plugin, &dee, "unsubscribe");

    // Only administrators see the count.
    const ADMIN: i64 = 1;
    let denied = plugin.http(HttpRequest::get("/reported").with_user(ANA));
    assert_eq!(denied.status, 403);
    assert_eq!(error_code(&denied), "forbidden");
    assert_eq!(plugin.http(HttpRequest::get("/reported")).status, 401);
    plugin.add_admin(ADMIN);
    let listed = plugin.http(HttpRequest::get("/reported").with_user(ADMIN));
    assert_eq!(listed.status, 200, "{}", listed.body_text());
    let body = json_of(&listed);
    assert_eq!(body["window_days"], 30);
    let senders = body["senders"].as_array().unwrap();
    assert_eq!(senders.len(), 1, "{body}");
    assert_eq!(senders[0]["user"], ANA);
    assert_eq!(senders[0]["name"], "Ana Inviter");
    assert_eq!(senders[0]["email"], "ana@example.org");
    assert_eq!(
        senders[0]["reported"], 2,
        "Bo twice and Cy once count as two; Dee only unsubscribed"
    );

    // Reports older than retention_days no longer count.
    plugin.advance(std::time::Duration::from_secs(31 * 86_400));
    let later = json_of(&plugin.http(HttpRequest::get("/reported").with_user(ADMIN)));
    assert_eq!(later["senders"], json!([]));
}

#[test]
fn forged_cut_or_malformed_unsubscribe_requests_change_nothing() {
    let (mut plugin, link) = with_link();
    let url = shared(&link);
    invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["bo@example.org"]}),
    );
    let bo = unsubscribe_url(&plugin, "bo@example.org");
    // Cy tries to unsubscribe (or report) with Bo's token pointed at another
    // address, sender or link, or a cut one.
    let (base, token) = bo.split_once("?t=").unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let forged = [
        format!("{}.{}.{}.{}", parts[0], parts[1], "0".repeat(32), parts[3]),
        format!("{}.{}.{}.{}", BO, parts[1], parts[2], parts[3]),
        format!("{}.{}x.{}.{}", parts[0], parts[1], parts[2], parts[3]),
        token[..token.len() - 4].to_string(),
        "x".repeat(5000),
        String::new(),
    ];
    for token in &forged {
        let url = format!("{base}?t={token}");
        let one = one_click(&mut plugin, &url);
        assert_eq!(one.status, 404, "{token}: {}", one.body_text());
        assert_eq!(error_code(&one), "not_found");
        let page = plugin.http(unsubscribe_request("GET", &url));
        assert_eq!(page.status, 404);
        assert!(page.body_text().contains("This link does not work"));
        assert_eq!(press(&mut plugin, &url, "report").status, 404);
    }
    let bare = plugin.http(unsubscribe_request("POST", &bo).with_body("nothing=here"));
    assert_eq!(bare.status, 422);
    assert_eq!(error_code(&bare), "invalid");
    let keys = plugin.kv_keys();
    assert!(
        keys.iter()
            .all(|k| !k.starts_with("suppress/") && !k.starts_with("reported/")),
        "{keys:?}"
    );
    let again = invite(
        &mut plugin,
        ANA,
        json!({"url": url, "recipients": ["bo@example.org"]}),
    );
    assert_eq!(json_of(&again)["not_sent"], json!([]));
}
