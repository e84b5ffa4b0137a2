//! The plugin's component (built for wasm32-wasip2) against the SDK's harness:
//! routes, links made once per event, refused files making no link, scheduled
//! calls and their updates, the feed and its revocation.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use confab_plugin_test::{Capability, Event, Harness, HttpRequest, HttpResponse, Schedule};

const ANA: i64 = 7;
const BO: i64 = 8;

fn plugin() -> Harness {
    Harness::from_crate(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn upload(plugin: &mut Harness, user: i64, body: Vec<u8>) -> HttpResponse {
    plugin.http(
        HttpRequest::post("/add-link")
            .with_user(user)
            .with_header("content-type", "text/calendar")
            .with_body(body),
    )
}

fn unfolded(text: &str) -> String {
    text.replace("\r\n ", "").replace("\r\n\t", "")
}

fn error_code(response: &HttpResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    body["error"]["code"].as_str().unwrap().to_string()
}

#[test]
fn an_uploaded_calendar_comes_back_with_one_link_per_event() {
    let mut plugin = plugin();
    let first = upload(&mut plugin, ANA, fixture("google.ics"));
    assert_eq!(first.status, 200, "{}", first.body_text());
    assert_eq!(
        first.header("content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert!(
        first
            .header("content-disposition")
            .unwrap()
            .starts_with("attachment; filename=")
    );
    // Two UIDs (a series with an exception, and a holiday): two links.
    let created = plugin.links_created().to_vec();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].link.title, "Café – Zoë 会議 weekly");
    assert_eq!(created[0].link.owner, ANA);
    let text = unfolded(&first.body_text());
    assert_eq!(
        text.matches(&format!("X-CONFAB-LINK:{}\r\n", created[0].url))
            .count(),
        2
    );
    assert_eq!(
        text.matches(&format!("X-CONFAB-LINK:{}\r\n", created[1].url))
            .count(),
        1
    );
    assert!(text.contains("CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=Join the Confab call:"));

    // The same file again: the same links, no new one, the same output.
    let second = upload(&mut plugin, ANA, fixture("google.ics"));
    assert_eq!(plugin.links_created().len(), 2);
    assert_eq!(second.body, first.body);
    // Its output again: unchanged.
    let third = upload(&mut plugin, ANA, first.body.clone());
    assert_eq!(third.body_text(), first.body_text());
    assert_eq!(plugin.links_created().len(), 2);

    // Someone else's submission of the same events gets their own links.
    upload(&mut plugin, BO, fixture("google.ics"));
    assert_eq!(plugin.links_created().len(), 4);
    assert_eq!(plugin.links_created()[3].link.owner, BO);
}

#[test]
fn uploads_and_pastes_work_like_the_raw_body() {
    let mut plugin = plugin();
    let body = fixture("outlook.ics");
    let mut multipart = b"--b0undary\r\nContent-Disposition: form-data; name=\"ics\"\r\n\r\n\r\n--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"Quarterly review.ics\"\r\nContent-Type: text/calendar\r\n\r\n".to_vec();
    multipart.extend_from_slice(&body);
    multipart.extend_from_slice(b"\r\n--b0undary--\r\n");
    let uploaded = plugin.http(
        HttpRequest::post("/add-link")
            .with_user(ANA)
            .with_header("content-type", "multipart/form-data; boundary=b0undary")
            .with_body(multipart),
    );
    assert_eq!(uploaded.status, 200, "{}", uploaded.body_text());
    assert_eq!(
        uploaded.header("content-disposition"),
        Some("attachment; filename=\"Quarterlyreview-confab.ics\"")
    );
    let form: String = url_encode(std::str::from_utf8(&body).unwrap());
    let pasted = plugin.http(
        HttpRequest::post("/add-link")
            .with_user(ANA)
            .with_header("content-type", "application/x-www-form-urlencoded")
            .with_body(format!("ics={form}")),
    );
    assert_eq!(pasted.status, 200, "{}", pasted.body_text());
    assert_eq!(
        pasted.body, uploaded.body,
        "the same events keep their links"
    );
    assert_eq!(plugin.links_created().len(), 2);
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn refused_calendars_make_no_link() {
    let mut plugin = plugin();
    let cases: [(&[u8], u16, &str); 6] = [
        (b"hello, this is not a calendar", 415, "not_icalendar"),
        (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:1\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
            422,
            "no_events",
        ),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDESCRIPTION:one\r\ntwo\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            400,
            "malformed_calendar",
        ),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nRRULE:FREQ=WEEKLY;BYDAY=XX\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            422,
            "invalid_rrule",
        ),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\n", 400, "malformed_calendar"),
        (b"", 415, "not_icalendar"),
    ];
    for (body, status, code) in cases {
        let response = upload(&mut plugin, ANA, body.to_vec());
        assert_eq!(response.status, status, "{}", response.body_text());
        assert_eq!(error_code(&response), code);
    }
    let mut large = b"BEGIN:VCALENDAR\r\nX-PAD:".to_vec();
    large.resize(1024 * 1024 + 10, b'x');
    let response = upload(&mut plugin, ANA, large);
    assert_eq!(response.status, 413);
    assert!(plugin.links_created().is_empty());

    let anonymous = plugin.http(HttpRequest::post("/add-link").with_body(fixture("zoom.ics")));
    assert_eq!(anonymous.status, 401);
    assert!(plugin.links_created().is_empty());
}

fn schedule_json() -> String {
    serde_json::json!({
        "title": "Weekly sync",
        "start": "2026-12-01T10:00",
        "duration": 45,
        "time_zone": "Europe/Berlin",
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
        "method": "request",
        "attendees": ["Zoë Ōkubo <zoe@example.net>", {"email": "bo@example.org"}],
    })
    .to_string()
}

#[test]
fn a_call_is_scheduled_moved_and_cancelled() {
    let mut plugin = plugin();
    plugin.set_contact(ANA, "Ana Lima", "ana@example.org");
    let created = plugin.http(
        HttpRequest::post("/schedule")
            .with_user(ANA)
            .with_header("content-type", "application/json")
            .with_body(schedule_json()),
    );
    assert_eq!(created.status, 201, "{}", created.body_text());
    let link = plugin.links_created()[0].clone();
    assert_eq!(link.link.title, "Weekly sync");
    assert_eq!(
        created.header("x-confab-link-id"),
        Some(link.link.id.as_str())
    );
    let invite = unfolded(&created.body_text());
    assert!(invite.contains("METHOD:REQUEST\r\n"));
    assert!(invite.contains("DTSTART;TZID=Europe/Berlin:20261201T100000\r\n"));
    assert!(invite.contains("DTEND;TZID=Europe/Berlin:20261201T104500\r\n"));
    assert!(invite.contains("RRULE:FREQ=WEEKLY;BYDAY=TU\r\n"));
    assert!(invite.contains("ORGANIZER;CN=Ana Lima:mailto:ana@example.org\r\n"));
    assert!(invite.contains("RSVP=TRUE:mailto:zoe@example.net\r\n"));
    assert!(invite.contains(&format!("URL;VALUE=URI:{}\r\n", link.url)));
    assert!(invite.contains("SEQUENCE:0\r\n"));

    // The server's record of the link has the schedule too.
    let id = link.link.id.clone();
    let berlin_10 = 1_796_115_600_000; // 2026-12-01T09:00Z
    assert_eq!(
        plugin.schedule(&id),
        Some(&Schedule {
            start: berlin_10,
            end: berlin_10 + 45 * 60_000,
            time_zone: "Europe/Berlin".into(),
            rrule: Some("FREQ=WEEKLY;BYDAY=TU".into()),
        })
    );
    let download = plugin.http(HttpRequest::get(&format!("/calls/{id}.ics")).with_user(ANA));
    assert_eq!(download.status, 200);
    assert!(download.body_text().contains("METHOD:PUBLISH\r\n"));
    assert!(!download.body_text().contains("ATTENDEE"));
    let stranger = plugin.http(HttpRequest::get(&format!("/calls/{id}.ics")).with_user(BO));
    assert_eq!(stranger.status, 404);

    let moved = plugin.http(
        HttpRequest::post(&format!("/calls/{id}"))
            .with_user(ANA)
            .with_header("content-type", "application/x-www-form-urlencoded")
            .with_body("start=2026-12-01T11%3A00"),
    );
    assert_eq!(moved.status, 200, "{}", moved.body_text());
    let moved = unfolded(&moved.body_text());
    assert!(moved.contains("SEQUENCE:1\r\n"));
    assert!(moved.contains("DTSTART;TZID=Europe/Berlin:20261201T110000\r\n"));
    assert!(moved.contains("DTEND;TZID=Europe/Berlin:20261201T114500\r\n"));
    assert!(moved.contains(&format!("UID:{id}@confab-calendar\r\n")));
    assert_eq!(
        plugin.schedule(&id).map(|s| s.start),
        Some(berlin_10 + 3_600_000)
    );

    let cancelled = plugin.http(HttpRequest::post(&format!("/calls/{id}/cancel")).with_user(ANA));
    assert_eq!(cancelled.status, 200);
    let cancelled = cancelled.body_text();
    assert!(cancelled.contains("METHOD:CANCEL\r\n"));
    assert!(cancelled.contains("STATUS:CANCELLED\r\n"));
    assert!(cancelled.contains("SEQUENCE:2\r\n"));
    assert_eq!(plugin.links_created().len(), 1);
    // The link keeps working, with no planned time.
    assert_eq!(plugin.schedule(&id), None);
    assert!(plugin.links()[0].revoked_at.is_none());

    let list = plugin.http(HttpRequest::get("/calls").with_user(ANA));
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(list["calls"][0]["cancelled"], true);
    assert_eq!(list["calls"][0]["sequence"], 2);
}

#[test]
fn a_bad_schedule_makes_no_link() {
    let mut plugin = plugin();
    for body in [
        r#"{"title":"x","start":"2026-12-01T10:00","duration":30,"rrule":"FREQ=SOMETIMES"}"#,
        r#"{"title":"x","start":"2026-12-01T10:00","duration":30,"time_zone":"Mars/Olympus"}"#,
        r#"{"title":"x","start":"2026-12-01T10:00","end":"2026-12-01T09:00"}"#,
        r#"{"title":"x","start":"2026-12-01T10:00","duration":30,"method":"request","organizer":"ana@example.org","attendees":["not an address"]}"#,
        r#"not json"#,
    ] {
        let response = plugin.http(
            HttpRequest::post("/schedule")
                .with_user(ANA)
                .with_header("content-type", "application/json")
                .with_body(body),
        );
        assert!(
            (400..500).contains(&response.status),
            "{body}: {}",
            response.body_text()
        );
    }
    assert!(plugin.links_created().is_empty());

    // Without the users capability an invitation needs the organizer in the request.
    let mut withheld = Harness::from_crate(env!("CARGO_MANIFEST_DIR")).deny(Capability::Users);
    let body = r#"{"title":"x","start":"2026-12-01T10:00","duration":30,"method":"request","attendees":["a@example.org"]}"#;
    let request = || {
        HttpRequest::post("/schedule")
            .with_user(ANA)
            .with_header("content-type", "application/json")
    };
    let refused = withheld.http(request().with_body(body));
    assert_eq!(refused.status, 422, "{}", refused.body_text());
    assert!(withheld.links_created().is_empty());
    let with_organizer = body.replace('{', r#"{"organizer":"ana@example.org","#);
    let made = withheld.http(request().with_body(with_organizer));
    assert_eq!(made.status, 201, "{}", made.body_text());
    assert!(
        made.body_text()
            .contains("ORGANIZER:mailto:ana@example.org\r\n")
    );
}

#[test]
fn the_organizer_is_the_signed_in_account_not_what_the_request_says() {
    let mut plugin = plugin();
    plugin.set_contact(ANA, "Ana Lima", "ana@example.org");
    let made = plugin.http(
        HttpRequest::post("/schedule")
            .with_user(ANA)
            .with_header("content-type", "application/json")
            .with_body(
                r#"{"title":"x","start":"2026-12-01T10:00","duration":30,"method":"request","organizer":"ceo@example.org","attendees":["a@example.org"]}"#,
            ),
    );
    assert_eq!(made.status, 201, "{}", made.body_text());
    let text = unfolded(&made.body_text());
    assert!(
        text.contains("ORGANIZER;CN=Ana Lima:mailto:ana@example.org\r\n"),
        "{text}"
    );
    assert!(!text.contains("ceo@example.org"));
}

#[test]
fn add_to_calendar_works_for_links_made_elsewhere_with_their_fragment() {
    let mut plugin = plugin();
    let link = plugin.add_link(ANA, "Board meeting");
    let id = link.id.clone();
    let shared = format!("http://confab.test/j/{id}#k=s3cr3t-Zk");
    let add = |plugin: &mut Harness, user: i64, url: &str| {
        plugin.http(
            HttpRequest::post(&format!("/links/{id}.ics"))
                .with_user(user)
                .with_header("content-type", "application/json")
                .with_body(serde_json::json!({ "url": url }).to_string()),
        )
    };
    // No date yet: the page offers to schedule it.
    let none = add(&mut plugin, ANA, &shared);
    assert_eq!(none.status, 409, "{}", none.body_text());
    assert_eq!(error_code(&none), "no_schedule");

    let start = 1_780_000_200_000;
    plugin.set_schedule(
        &id,
        Schedule {
            start,
            end: start + 3_600_000,
            time_zone: "Asia/Tokyo".into(),
            rrule: None,
        },
    );
    let file = add(&mut plugin, ANA, &shared);
    assert_eq!(file.status, 200, "{}", file.body_text());
    let text = unfolded(&file.body_text());
    assert!(text.contains("METHOD:PUBLISH\r\n"));
    assert!(text.contains("SUMMARY:Board meeting\r\n"));
    assert!(
        text.contains(&format!("URL;VALUE=URI:{shared}\r\n")),
        "{text}"
    );
    assert!(text.contains("DTSTART;TZID=Asia/Tokyo:"));
    assert!(text.contains("ORGANIZER;CN=User 7:mailto:user7@confab.test\r\n"));
    assert!(plugin.links_created().is_empty(), "no new link is made");

    // Only the owner, only this server's link for this id.
    assert_eq!(add(&mut plugin, BO, &shared).status, 404);
    for wrong in [
        format!("https://evil.example/j/{id}#k=x"),
        format!("http://confab.test/j/{id}x"),
        format!("http://confab.test/j/{id}?next=https://evil.example"),
        format!("http://confab.test/j/{id}#k=a b"),
    ] {
        let refused = add(&mut plugin, ANA, &wrong);
        assert_eq!(refused.status, 422, "{wrong}: {}", refused.body_text());
        assert_eq!(error_code(&refused), "invalid_url");
    }
    // Revoked: gone.
    plugin.event(Event::LinkRevoked(link));
    assert_eq!(
        plugin
            .http(HttpRequest::post("/links/nope.ics").with_user(ANA))
            .status,
        404
    );
}

#[test]
fn an_existing_link_is_scheduled_without_a_new_link() {
    let mut plugin = plugin();
    let link = plugin.add_link(ANA, "Standup");
    let form = format!(
        "link={}&url=http%3A%2F%2Fconfab.test%2Fj%2F{}%23k%3Dabc&start=2026-12-02T09%3A30&duration=15&time_zone=Europe%2FLisbon&rrule=FREQ%3DWEEKLY%3BBYDAY%3DMO%2CTU%2CWE%2CTH%2CFR",
        link.id, link.id
    );
    let schedule = |plugin: &mut Harness, user: i64, body: &str| {
        plugin.http(
            HttpRequest::post("/schedule")
                .with_user(user)
                .with_header("content-type", "application/x-www-form-urlencoded")
                .with_body(body.to_string()),
        )
    };
    let made = schedule(&mut plugin, ANA, &form);
    assert_eq!(made.status, 201, "{}", made.body_text());
    assert_eq!(made.header("x-confab-link-id"), Some(link.id.as_str()));
    let text = unfolded(&made.body_text());
    assert!(text.contains("SUMMARY:Standup\r\n"));
    assert!(text.contains(&format!("http://confab.test/j/{}#k=abc", link.id)));
    assert!(plugin.links_created().is_empty());
    assert_eq!(
        plugin.schedule(&link.id).and_then(|s| s.rrule.clone()),
        Some("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR".into())
    );
    // Twice: it already has a call; someone else's link: not found.
    assert_eq!(schedule(&mut plugin, ANA, &form).status, 409);
    let bos = plugin.add_link(BO, "Bo's");
    let theirs = form.replace(&link.id, &bos.id);
    assert_eq!(schedule(&mut plugin, ANA, &theirs).status, 404);
    assert!(plugin.schedule(&bos.id).is_none());
}

#[test]
fn a_link_rescheduled_elsewhere_moves_its_call_in_the_feed() {
    let mut plugin = plugin();
    let created = plugin.http(
        HttpRequest::post("/schedule")
            .with_user(ANA)
            .with_header("content-type", "application/json")
            .with_body(r#"{"title":"Retro","start":"2026-12-04T16:00:00Z","duration":60}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body_text());
    let link = plugin.links_created()[0].link.clone();
    let feed = plugin.http(HttpRequest::post("/feed").with_user(ANA));
    let path: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
    let relative = path["path"]
        .as_str()
        .unwrap()
        .strip_prefix("/p/calendar")
        .unwrap()
        .to_string();

    // Moved through the REST API: the server tells the plugin.
    let mut moved = plugin.schedule(&link.id).unwrap().clone();
    moved.start += 86_400_000;
    moved.end += 86_400_000;
    plugin.set_schedule(&link.id, moved);
    plugin.event(Event::LinkUpdated(link.clone()));
    let text = plugin.http(HttpRequest::get(&relative)).body_text();
    assert!(text.contains("DTSTART:20261205T160000Z\r\n"), "{text}");
    assert!(text.contains("SEQUENCE:1\r\n"));
    // An update that changes nothing else bumps nothing.
    plugin.event(Event::LinkUpdated(link));
    assert!(
        plugin
            .http(HttpRequest::get(&relative))
            .body_text()
            .contains("SEQUENCE:1\r\n")
    );
}

#[test]
fn the_feed_lists_calls_until_its_address_is_revoked() {
    let mut plugin = plugin();
    let created = plugin.http(
        HttpRequest::post("/schedule")
            .with_user(ANA)
            .with_header("content-type", "application/x-www-form-urlencoded")
            .with_body(
                "title=Planning&start=2026-12-07T14%3A00&duration=30&time_zone=America%2FNew_York",
            ),
    );
    assert_eq!(created.status, 201, "{}", created.body_text());
    let id = plugin.links_created()[0].link.id.clone();

    let made = plugin.http(HttpRequest::post("/feed").with_user(ANA));
    assert_eq!(made.status, 201);
    let path: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    assert_eq!(
        path["webcal"].as_str().unwrap(),
        format!("webcal://confab.test{}", path["path"].as_str().unwrap())
    );
    let path = path["path"].as_str().unwrap().to_string();
    let relative = path.strip_prefix("/p/calendar").unwrap().to_string();
    // Only a hash of the token is stored.
    let token = path
        .trim_start_matches("/p/calendar/feed/")
        .trim_end_matches(".ics");
    for key in plugin.kv_keys() {
        assert!(!key.contains(token), "{key}");
        let value = String::from_utf8_lossy(&plugin.kv_get(&key).unwrap()).into_owned();
        assert!(!value.contains(token), "{key}: {value}");
    }
    let status = plugin.http(HttpRequest::get("/feed").with_user(ANA));
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(status["exists"], true);

    // Calendar apps fetch it without signing in.
    let feed = plugin.http(HttpRequest::get(&relative));
    assert_eq!(feed.status, 200, "{}", feed.body_text());
    let text = unfolded(&feed.body_text());
    assert!(text.contains("REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n"));
    assert!(text.contains("SUMMARY:Planning\r\n"));
    assert!(text.contains("DTSTART;TZID=America/New_York:20261207T140000\r\n"));
    assert!(text.contains("BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n"));
    // The full link, secret included: the plugin keeps the one it got (README).
    let shared = &plugin.links_created()[0].url;
    assert!(shared.contains("#k="), "{shared}");
    assert!(
        text.contains(&format!("URL;VALUE=URI:{shared}\r\n")),
        "{text}"
    );

    // A revoked link's call shows as cancelled.
    let link = plugin.links().iter().find(|l| l.id == id).unwrap().clone();
    plugin.event(Event::LinkRevoked(link));
    let feed = plugin.http(HttpRequest::get(&relative)).body_text();
    assert!(feed.contains("STATUS:CANCELLED\r\n"));
    assert!(feed.contains("SEQUENCE:1\r\n"));

    // A new address shuts the old one off; revoking shuts the new one off.
    let again = plugin.http(HttpRequest::post("/feed").with_user(ANA));
    let new_path: serde_json::Value = serde_json::from_slice(&again.body).unwrap();
    let new_relative = new_path["path"]
        .as_str()
        .unwrap()
        .strip_prefix("/p/calendar")
        .unwrap()
        .to_string();
    assert_ne!(new_relative, relative);
    assert_eq!(plugin.http(HttpRequest::get(&relative)).status, 404);
    assert_eq!(plugin.http(HttpRequest::get(&new_relative)).status, 200);
    let revoked = plugin.http(HttpRequest::new("DELETE", "/feed").with_user(ANA));
    assert_eq!(revoked.status, 200);
    assert_eq!(plugin.http(HttpRequest::get(&new_relative)).status, 404);
    assert_eq!(
        plugin.http(HttpRequest::get("/feed/nonsense.ics")).status,
        404
    );
    // Bo's feed does not show Ana's calls.
    let bo = plugin.http(HttpRequest::post("/feed").with_user(BO));
    let bo: serde_json::Value = serde_json::from_slice(&bo.body).unwrap();
    let bo_feed = plugin
        .http(HttpRequest::get(
            bo["path"]
                .as_str()
                .unwrap()
                .strip_prefix("/p/calendar")
                .unwrap(),
        ))
        .body_text();
    assert!(!bo_feed.contains("VEVENT"));
}

#[test]
fn the_page_lists_scheduled_calls_and_points_to_the_dashboard() {
    let mut plugin = plugin();
    let anonymous = plugin.http(HttpRequest::get("/"));
    assert_eq!(anonymous.status, 200, "{}", anonymous.body_text());
    assert!(anonymous.body_text().contains("Sign in"));
    let page = plugin
        .http(HttpRequest::get("/").with_user(ANA))
        .body_text();
    // The tools run in the dashboard's sandboxed frame; this page has no script.
    assert!(page.contains("Your calendar tools are on your dashboard"));
    assert!(!page.contains("<script"));
}
