//! The bundled calendar plugin through the real server: links it makes are the
//! server's links (with their schedules), what it writes is read back by an
//! independent parser (Python's `icalendar`, through the plugin's
//! `tests/check_ics.py`), refused files make no link, rescheduling through the
//! REST API reaches the feed, and the feed's address can be revoked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use confab_core::accounts::Role;
use serde_json::{Value, json};

use crate::support::browser::{Browser, Driver, SECRET};
use crate::support::{Res, TestApp};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("plugins/calendar/tests/fixtures").join(name)).unwrap()
}

fn with_calendar(c: &mut confab_core::Config) {
    c.plugins.bundled = true;
    c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
}

async fn sqlite() -> TestApp {
    TestApp::sqlite_with(with_calendar).await
}

async fn postgres() -> TestApp {
    TestApp::postgres_with(with_calendar).await
}

macro_rules! on_both_databases_with_calendar {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::postgres().await).await
                }
            )*
        }
    };
}

on_both_databases_with_calendar!(
    an_event_file_gets_server_links_once,
    a_scheduled_call_is_on_the_links_record_and_follows_changes,
    add_to_calendar_serves_links_made_through_the_api,
    refused_calendars_make_no_link,
    the_feed_stops_when_its_address_is_revoked,
);

fn unfolded(text: &str) -> String {
    text.replace("\r\n ", "").replace("\r\n\t", "")
}

/// The link ids the user owns, through the REST API.
async fn link_ids(app: &TestApp, token: &str) -> Vec<String> {
    let res = app
        .get("/api/v1/links?limit=100")
        .bearer(token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect()
}

/// Link `id` as the REST API shows it to its owner.
async fn api_link(app: &TestApp, token: &str, id: &str) -> Value {
    let res = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

/// "Add to calendar" for link `id`, with `body` (`{"url": …}` or `{}`).
async fn add_to_calendar(app: &TestApp, token: &str, id: &str, body: Value) -> Res {
    app.post(&format!("/p/calendar/links/{id}.ics"))
        .bearer(token)
        .json(&body)
        .send()
        .await
}

async fn add_link(app: &TestApp, token: &str, ics: Vec<u8>) -> Res {
    app.post("/p/calendar/add-link")
        .bearer(token)
        .raw("text/calendar", ics)
        .send()
        .await
}

#[path = "../../../plugins/calendar/tests/checker/mod.rs"]
mod checker;

/// Runs the independent parser on `ics` with `expect` (see check_ics.py).
fn independent_check(name: &str, ics: &str, expect: Value) {
    checker::check_ics(
        &repo().join("plugins/calendar/tests/check_ics.py"),
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("calendar-through-server"),
        &format!("{}-{name}", std::process::id()),
        ics,
        expect,
    );
}

/// The value of the first `NAME:…` or `NAME;…:…` line of each VEVENT (unfolded),
/// with the event's UID: `[(uid, value)]` in file order.
fn event_properties(ics: &str, name: &str) -> Vec<(String, Option<String>)> {
    let text = unfolded(ics);
    let value = |event: &str, name: &str| {
        event.split("\r\n").find_map(|line| {
            let (head, value) = line.split_once(':')?;
            (head == name || head.starts_with(&format!("{name};"))).then(|| value.to_string())
        })
    };
    text.split("BEGIN:VEVENT\r\n")
        .skip(1)
        .map(|event| {
            let event = event.split("END:VEVENT\r\n").next().unwrap_or("");
            (value(event, "UID").unwrap_or_default(), value(event, name))
        })
        .collect()
}

async fn an_event_file_gets_server_links_once(app: TestApp) {
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let input = fixture("outlook.ics");
    let first = add_link(&app, &token, input.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(
        first.headers["content-type"],
        "text/calendar; charset=utf-8"
    );
    let output = first.text();

    // Two UIDs (a series and its exception share one): two links, both the
    // server's, titled after the events.
    let ids = link_ids(&app, &token).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    let public = app.state.public_url().to_string();
    let mut links = serde_json::Map::new();
    for (uid, written) in event_properties(&output, "X-CONFAB-LINK") {
        let written = written.unwrap_or_else(|| panic!("{uid} has no link:\n{output}"));
        let (id, secret) = written
            .strip_prefix(&format!("{public}/j/"))
            .and_then(|rest| rest.split_once("#k="))
            .unwrap_or_else(|| panic!("{written} is not this server's full link"));
        assert!(ids.contains(&id.to_string()), "{id} is not among {ids:?}");
        assert!(
            crate::support::is_link_secret(secret),
            "the link's secret: {written}"
        );
        if let Some(before) = links.insert(uid.clone(), json!(written)) {
            assert_eq!(before, json!(written), "one link per UID ({uid})");
        }
    }
    assert_eq!(links.len(), 2, "{links:?}");
    let distinct: std::collections::BTreeSet<_> = links.values().map(Value::to_string).collect();
    assert_eq!(distinct.len(), 2, "each UID has its own link: {links:?}");
    let planning = &ids[0];
    let link = api_link(&app, &token, planning).await;
    assert!(
        link["title"]
            .as_str()
            .unwrap()
            .starts_with("Planning (Berlin ↔ Seattle)")
            || link["title"]
                .as_str()
                .unwrap()
                .starts_with("Quarterly review"),
        "{link}"
    );
    independent_check(
        "outlook.ics",
        &output,
        json!({
            "input": repo().join("plugins/calendar/tests/fixtures/outlook.ics"),
            "links": links,
            "label": "Join the Confab call",
        }),
    );

    // Submitted again (the original or the output): the same links, no new ones.
    // The original's events change again (LAST-MODIFIED is the time of the change).
    let without_times = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with("LAST-MODIFIED:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let again = add_link(&app, &token, input).await;
    assert_eq!(without_times(&again.text()), without_times(&output));
    let twice = add_link(&app, &token, output.clone().into_bytes()).await;
    assert_eq!(twice.text(), output, "adding the link is idempotent");
    assert_eq!(link_ids(&app, &token).await.len(), 2);

    // Someone else's submission of the same event gets their own link.
    let bo = app.user_with_token("bo@example.org", Role::Member).await;
    let theirs = add_link(&app, &bo, fixture("outlook.ics")).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_eq!(link_ids(&app, &bo).await.len(), 2);
    assert_ne!(theirs.text(), output);

    // A revoked link is replaced on the next submission.
    let revoked = app
        .post(&format!("/api/v1/links/{planning}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let replaced = add_link(&app, &token, fixture("outlook.ics")).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert!(!replaced.text().contains(&format!("/j/{planning}")));

    // Signed out: nothing.
    let anonymous = app
        .post("/p/calendar/add-link")
        .raw("text/calendar", fixture("zoom.ics"))
        .send()
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.error_code(), "unauthorized");
}

/// Schedules a call through the plugin; returns the answer and the new link's id.
async fn schedule_call(app: &TestApp, token: &str, body: Value) -> (Res, String) {
    let made = app
        .post("/p/calendar/schedule")
        .bearer(token)
        .json(&body)
        .send()
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let id = made.headers["x-confab-link-id"]
        .to_str()
        .unwrap()
        .to_string();
    (made, id)
}

fn schedule_body() -> Value {
    json!({
        "title": "Weekly sync",
        "start": "2026-12-01T10:00",
        "duration": 45,
        "time_zone": "Europe/Berlin",
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
        "method": "request",
        "attendees": ["Zoë Ōkubo <zoe@example.net>", "bo@example.org"],
    })
}

async fn a_scheduled_call_is_on_the_links_record_and_follows_changes(app: TestApp) {
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let (made, id) = schedule_call(&app, &token, schedule_body()).await;
    let invite = made.text();
    let text = unfolded(&invite);
    // The organizer is the signed-in account, as the server knows it.
    assert!(
        text.contains("ORGANIZER;CN=User ana@example.org:mailto:ana@example.org\r\n"),
        "{text}"
    );
    independent_check(
        "scheduled.ics",
        &invite,
        json!({
            "method": "REQUEST",
            "events": [{
                "uid": format!("{id}@confab-calendar"),
                "summary": "Weekly sync",
                "start_utc": "2026-12-01T09:00:00+00:00",
                "end_utc": "2026-12-01T09:45:00+00:00",
                "tzid": "Europe/Berlin",
                "rrule": {"FREQ": ["WEEKLY"], "BYDAY": ["TU"]},
                "sequence": 0,
                "organizer": "mailto:ana@example.org",
                "attendees": ["mailto:zoe@example.net", "mailto:bo@example.org"],
                "rsvp": true,
            }],
        }),
    );

    // The link's own record has the schedule: the API, the dashboard, the join page.
    let link = api_link(&app, &token, &id).await;
    assert_eq!(link["title"], "Weekly sync");
    assert_eq!(link["schedule"]["start"], "2026-12-01T09:00:00Z");
    assert_eq!(link["schedule"]["end"], "2026-12-01T09:45:00Z");
    assert_eq!(link["schedule"]["time_zone"], "Europe/Berlin");
    assert_eq!(link["schedule"]["rrule"], "FREQ=WEEKLY;BYDAY=TU");
    let page = app.get(&format!("/j/{id}")).send().await.text();
    assert!(
        crate::support::unescape(&page)
            .contains("Tue 1 Dec 2026, 10:00–10:45 (Europe/Berlin), repeats"),
        "{page}"
    );

    // Moved: SEQUENCE 1, and the server's record moves with it.
    let moved = app
        .post(&format!("/p/calendar/calls/{id}"))
        .bearer(&token)
        .json(&json!({ "start": "2026-12-01T11:00" }))
        .send()
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text());
    assert!(moved.text().contains("SEQUENCE:1\r\n"));
    let link = api_link(&app, &token, &id).await;
    assert_eq!(link["schedule"]["start"], "2026-12-01T10:00:00Z");

    // A schedule the server refuses changes nothing.
    let refused = app
        .post(&format!("/p/calendar/calls/{id}"))
        .bearer(&token)
        .json(&json!({ "rrule": "FREQ=WEEKLY;UNTIL=garbage" }))
        .send()
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
    let download = app
        .get(&format!("/p/calendar/calls/{id}.ics"))
        .bearer(&token)
        .send()
        .await
        .text();
    assert!(
        download.contains("SEQUENCE:1\r\n") && download.contains("RRULE:FREQ=WEEKLY;BYDAY=TU\r\n")
    );

    // Cancelled: METHOD:CANCEL; the link keeps working without a date.
    let cancelled = app
        .post(&format!("/p/calendar/calls/{id}/cancel"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    let cancelled = cancelled.text();
    assert!(cancelled.contains("METHOD:CANCEL\r\n"));
    assert!(cancelled.contains("STATUS:CANCELLED\r\n"));
    assert!(cancelled.contains("SEQUENCE:2\r\n"));
    let link = api_link(&app, &token, &id).await;
    assert_eq!(link["schedule"], Value::Null, "{link}");
    assert_eq!(link["status"], "active");

    // Bad schedules make no link.
    let before = link_ids(&app, &token).await.len();
    for body in [
        json!({"title": "x", "start": "2026-12-01T10:00", "duration": 30, "rrule": "FREQ=SOMETIMES"}),
        json!({"title": "x", "start": "2026-12-01T10:00", "duration": 30, "time_zone": "Mars/Olympus"}),
        json!({"title": "x", "start": "2026-12-01T10:00", "end": "2026-12-01T09:00"}),
        json!({"title": "x", "start": "tomorrow", "duration": 30}),
    ] {
        let res = app
            .post("/p/calendar/schedule")
            .bearer(&token)
            .json(&body)
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.text()
        );
        res.error_code();
    }
    assert_eq!(link_ids(&app, &token).await.len(), before);
}

async fn add_to_calendar_serves_links_made_through_the_api(app: TestApp) {
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let made = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({
            "title": "Board meeting",
            "schedule": { "start": "2026-12-03T08:00:00Z", "end": "2026-12-03T09:00:00Z", "time_zone": "Asia/Tokyo" },
        }))
        .send()
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let link = made.json();
    let id = link["id"].as_str().unwrap().to_string();
    // The full link, as the API gave it once.
    let shared = link["url"].as_str().unwrap().to_string();
    assert!(shared.contains("#k="), "{shared}");
    let file = add_to_calendar(&app, &token, &id, json!({ "url": shared })).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text());
    let ics = file.text();
    assert!(
        unfolded(&ics).contains(&format!("URL;VALUE=URI:{shared}\r\n")),
        "the link as shared, fragment included: {ics}"
    );
    independent_check(
        "api-link.ics",
        &ics,
        json!({
            "method": "PUBLISH",
            "events": [{
                "uid": format!("{id}@confab-calendar"),
                "summary": "Board meeting",
                "start_utc": "2026-12-03T08:00:00+00:00",
                "end_utc": "2026-12-03T09:00:00+00:00",
                "tzid": "Asia/Tokyo",
                "sequence": 0,
            }],
        }),
    );

    // Moved through the REST API: the plugin hears of it and the next file (and
    // the feed) has the new time, one SEQUENCE up.
    let patched = app
        .req(Method::PATCH, &format!("/api/v1/links/{id}"))
        .bearer(&token)
        .json(&json!({ "schedule": { "start": "2026-12-03T10:00:00Z", "end": "2026-12-03T11:00:00Z", "time_zone": "Asia/Tokyo" } }))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = add_to_calendar(&app, &token, &id, json!({ "url": shared }))
            .await
            .text();
        if now.contains("DTSTART;TZID=Asia/Tokyo:20261203T190000\r\n") {
            assert!(now.contains("SEQUENCE:1\r\n"), "{now}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call never followed the link: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A link without a date, someone else's link, another server's address.
    let plain = app.create_link(&token, "No date").await;
    let plain_id = plain["id"].as_str().unwrap();
    let res = add_to_calendar(&app, &token, plain_id, json!({})).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.error_code(), "no_schedule");
    let bo = app.user_with_token("bo@example.org", Role::Member).await;
    let res = add_to_calendar(&app, &bo, &id, json!({})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = add_to_calendar(
        &app,
        &token,
        &id,
        json!({ "url": format!("https://evil.example/j/{id}") }),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.error_code(), "invalid_url");

    // Scheduling the undated link keeps it: no new link.
    let before = link_ids(&app, &token).await.len();
    let res = app
        .post("/p/calendar/schedule")
        .bearer(&token)
        .json(&json!({ "link": plain_id, "start": "2026-12-08T15:00", "duration": 30, "time_zone": "Europe/Lisbon" }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(link_ids(&app, &token).await.len(), before);
    let plain = api_link(&app, &token, plain_id).await;
    assert_eq!(plain["schedule"]["time_zone"], "Europe/Lisbon");
}

async fn refused_calendars_make_no_link(app: TestApp) {
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let event = |body: &str| {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n{body}END:VCALENDAR\r\n")
    };
    let one = "BEGIN:VEVENT\r\nUID:a@test\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261201T100000Z\r\nSUMMARY:A\r\nEND:VEVENT\r\n";
    let many: String = (0..1500)
        .map(|i| one.replace("UID:a@test", &format!("UID:{i}@test")))
        .collect();
    let mut not_utf8 = event(one).into_bytes();
    let at = not_utf8.windows(9).position(|w| w == b"SUMMARY:A").unwrap() + 8;
    not_utf8[at] = 0xff;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "not iCalendar",
            b"hello, this is not a calendar".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_icalendar",
        ),
        (
            "no VEVENT",
            event("").into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_events",
        ),
        (
            "broken folding",
            event(&one.replace(
                "SUMMARY:A\r\n",
                "SUMMARY:A long\r\ncontinued without its space\r\n",
            ))
            .into_bytes(),
            StatusCode::BAD_REQUEST,
            "malformed_calendar",
        ),
        (
            "not UTF-8",
            not_utf8,
            StatusCode::BAD_REQUEST,
            "malformed_calendar",
        ),
        (
            "thousands of events",
            event(&many).into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_events",
        ),
        (
            "malformed RRULE",
            event(&one.replace(
                "SUMMARY:A\r\n",
                "SUMMARY:A\r\nRRULE:FREQ=SOMETIMES;COUNT=x\r\n",
            ))
            .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rrule",
        ),
    ];
    for (what, body, status, code) in cases {
        let res = add_link(&app, &token, body).await;
        assert_eq!(res.status, status, "{what}: {}", res.text());
        assert_eq!(res.error_code(), code, "{what}");
    }
    // Over 1 MiB: the server turns it away before the plugin sees it.
    let huge = event(&format!("{}X-PAD:{}\r\n", one, "x".repeat(1024 * 1024)));
    let res = add_link(&app, &token, huge.into_bytes()).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.text());
    res.error_code();
    assert!(link_ids(&app, &token).await.is_empty(), "no link was made");
}

async fn the_feed_stops_when_its_address_is_revoked(app: TestApp) {
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let (_, id) = schedule_call(&app, &token, json!({ "title": "Planning", "start": "2026-12-07T14:00", "duration": 30, "time_zone": "America/New_York" })).await;
    let feed = app.post("/p/calendar/feed").bearer(&token).send().await;
    assert_eq!(feed.status, StatusCode::CREATED, "{}", feed.text());
    let feed = feed.json();
    let public = app.state.public_url().to_string();
    let path = feed["path"].as_str().unwrap().to_string();
    assert_eq!(feed["url"], format!("{public}{path}"));
    assert!(feed["webcal"].as_str().unwrap().starts_with("webcal://"));

    // Calendar apps fetch it without credentials.
    let res = app.get(&path).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.headers["content-type"], "text/calendar; charset=utf-8");
    independent_check(
        "feed.ics",
        &res.text(),
        json!({ "feed": true, "events": [{ "uid": format!("{id}@confab-calendar"), "summary": "Planning", "tzid": "America/New_York", "start_utc": "2026-12-07T19:00:00+00:00" }] }),
    );

    // The token itself is nowhere in the database.
    let token_part = path
        .trim_start_matches("/p/calendar/feed/")
        .trim_end_matches(".ics");
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(&app.state.config.database_url())
        .await
        .unwrap();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT key, value FROM plugin_kv",
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let key: String = row.try_get("", "key").unwrap();
        let value: Vec<u8> = row.try_get("", "value").unwrap();
        assert!(!key.contains(token_part), "{key}");
        assert!(
            !String::from_utf8_lossy(&value).contains(token_part),
            "{key}"
        );
    }

    let revoked = app
        .req(Method::DELETE, "/p/calendar/feed")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let gone = app.get(&path).send().await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), "not_found");
}

#[tokio::test]
async fn the_dashboard_offers_the_calendar_on_every_link() {
    let app = sqlite().await;
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    app.create_link(&token, "Team call").await;
    let browser = app.sign_in("ana@example.org").await;
    let page = app
        .get("/dashboard")
        .cookie(&browser.cookies)
        .send()
        .await
        .text();
    let page = crate::support::unescape(&page);
    assert!(
        page.contains(
            r#"{"plugin":"calendar","frame":"/plugin-frame/calendar/dashboard","link_secret":true}"#
        ),
        "{page}"
    );
    let frame = app
        .get("/plugin-frame/calendar/dashboard")
        .cookie(&browser.cookies)
        .send()
        .await;
    assert_eq!(frame.status, StatusCode::OK);
    assert!(
        frame
            .text()
            .contains(r#"data-module="/p/calendar/static/dashboard.js""#)
    );
    assert!(page.contains("data-link-url=\""));
    let module = app.get("/p/calendar/static/dashboard.js").send().await;
    assert_eq!(module.status, StatusCode::OK);
    assert!(module.text().contains("Add to calendar"));
}

/// The text of the calendar file the page last saved for the calendar's frame
/// (files with a link's full address, which the frame never sees), once it
/// contains `needle`.
async fn saved_by_page(page: &Browser, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = page
            .client
            .execute_async(
                "const done = arguments[0];\
                 const file = document.querySelector(\"section[data-plugin='calendar']\")?.lastDownload;\
                 if (!file) done(''); else file.text().then(done, (e) => done('error: ' + e));",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the page saved no file with {needle:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the file the calendar module last downloaded from the element `css`
/// (it keeps the file there as `calendarFile`).
async fn downloaded_text(page: &Browser, css: &str) -> String {
    page.wait_js(&format!("document.querySelector({css:?})?.calendarFile"))
        .await;
    page.client
        .execute_async(
            "const [css, done] = arguments;\
             document.querySelector(css).calendarFile.text().then(done, (e) => done('error: ' + e));",
            vec![json!(css)],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_dashboard_adds_call_links_to_events_and_schedules_calls() {
    let (app, base) = TestApp::served_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
    })
    .await;
    let token = app.user_with_token("host@example.org", Role::Member).await;
    let undated = app.create_link(&token, "Undated call").await;
    let undated = undated["id"].as_str().unwrap().to_string();
    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    // This browser keeps the undated link's secret, as the dashboard does when
    // asked to remember it: the page puts it into the calendar files.
    page.remember_secret(&undated).await;
    page.goto(&format!("{base}/dashboard")).await;
    // The calendar's card is a sandboxed frame: the test works inside it.
    page.frame("calendar").await;
    page.wait_text("body", "Add call link to an event").await;

    // Paste an event exported from a calendar app: it comes back with a link.
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//macOS 15.1//EN\r\nBEGIN:VEVENT\r\nUID:5E1D2C3B-dash@example.org\r\nDTSTAMP:20261120T120000Z\r\nDTSTART:20261210T150000Z\r\nDTEND:20261210T153000Z\r\nSUMMARY:Café planning\r\nLOCATION:Room 4\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    page.client
        .execute(
            "document.querySelector(\"[data-calendar='add-link'] textarea[name=ics]\").value = arguments[0];",
            vec![json!(ics)],
        )
        .await
        .unwrap();
    page.click("[data-calendar='add-link'] button[type=submit]")
        .await;
    page.wait_text(
        "[data-calendar='add-link'] .status",
        "Added a call link to 1 event",
    )
    .await;
    let file = downloaded_text(&page, "[data-calendar='add-link'] .status").await;
    let unfolded = file.replace("\r\n ", "");
    assert!(unfolded.contains("LOCATION:Room 4"), "{file}");
    assert!(
        unfolded.contains(&format!("URL;VALUE=URI:{base}/j/")),
        "{file}"
    );
    assert!(
        unfolded.contains("CONFERENCE;VALUE=URI;FEATURE=VIDEO"),
        "{file}"
    );

    // A refused file says why, next to the form.
    page.client
        .execute(
            "document.querySelector(\"[data-calendar='add-link'] textarea[name=ics]\").value = 'not a calendar';",
            vec![],
        )
        .await
        .unwrap();
    page.click("[data-calendar='add-link'] button[type=submit]")
        .await;
    page.wait_text("[data-calendar='add-link'] .status.error", "iCalendar")
        .await;

    // "Add to calendar" on a link without a date asks for one, and keeps the link:
    // the button is the page's, the form the frame's.
    page.top().await;
    page.click(&format!(
        "li[data-link-id='{undated}'] button[data-plugin='calendar']"
    ))
    .await;
    page.frame("calendar").await;
    page.wait_text(
        "[data-calendar='schedule'] .notice",
        "Pick a time for “Undated call”",
    )
    .await;
    page.client
        .execute(
            "const form = document.querySelector(\"[data-calendar='schedule']\");\
             form.elements.start.value = '2026-12-14T09:30';\
             form.elements.duration.value = '25';\
             form.elements.time_zone.value = 'Europe/Paris';\
             form.elements.rrule.value = 'FREQ=WEEKLY';",
            vec![],
        )
        .await
        .unwrap();
    page.click("[data-calendar='schedule'] button[type=submit]")
        .await;
    page.wait_text("[data-calendar='schedule'] .status", "Scheduled")
        .await;
    // A calendar for a link this browser holds the secret of: the page saved it.
    page.top().await;
    let file = saved_by_page(&page, "RRULE").await;
    page.frame("calendar").await;
    let unfolded = file.replace("\r\n ", "");
    assert!(
        unfolded.contains(&format!("URL;VALUE=URI:{base}/j/{undated}#k={SECRET}\r\n")),
        "{file}"
    );
    assert!(unfolded.contains("DTSTART;TZID=Europe/Paris:20261214T093000\r\n"));
    assert!(unfolded.contains("RRULE:FREQ=WEEKLY\r\n"));

    // The dashboard shows the new date once the page is loaded again (the frame
    // says so: it cannot reload the page).
    page.wait_text("[data-calendar='schedule'] .status", "Reload the page")
        .await;
    page.top().await;
    page.goto(&format!("{base}/dashboard")).await;
    page.wait_text(
        &format!("li[data-link-id='{undated}']"),
        "Mon 14 Dec 2026, 09:30–09:55 (Europe/Paris), repeats",
    )
    .await;
    // Now "Add to calendar" downloads straight away: the page puts the link with
    // its secret into the request and saves the answer, which the frame never sees.
    page.frame("calendar").await;
    page.wait_text("body", "Schedule a call").await;
    page.top().await;
    page.click(&format!(
        "li[data-link-id='{undated}'] button[data-plugin='calendar']"
    ))
    .await;
    let file = saved_by_page(&page, "SUMMARY:Undated call").await;
    assert!(file.contains("METHOD:PUBLISH\r\n"), "{file}");
    assert!(file.contains("SUMMARY:Undated call\r\n"), "{file}");
    page.close().await;
}
