//! Every file the engine writes, read back by an independent parser: Python's
//! `icalendar` package (`pip install icalendar`), through `tests/check_ics.py`.
//! The link, recurrence, time zones (generated VTIMEZONEs against the zone
//! database) and the untouched properties of foreign files are checked there.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use confab_calendar::ics::{self, Calendar, Method, Person, ScheduleSpec};
use serde_json::{Value, json};

const LINK: &str = "https://confab.example/j/4kV9xQ2mT7bN1cR8zL3wYp#k=Zx_9-aQ2mT7bN1cR8zL3wYpE4";
const LABEL: &str = "Join the Confab call";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

mod checker;

/// Runs the independent parser on `ics` with `expect`.
fn check(name: &str, ics: &str, expect: Value) {
    checker::check_ics(
        &crate_dir().join("tests/check_ics.py"),
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("confab-calendar-checks"),
        name,
        ics,
        expect,
    );
}

fn fixture_path(name: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(name)
}

#[test]
fn foreign_calendars_with_a_link() {
    for name in [
        "google.ics",
        "outlook.ics",
        "apple.ics",
        "zoom.ics",
        "thunderbird.ics",
    ] {
        let input = std::fs::read(fixture_path(name)).unwrap();
        let calendar = Calendar::parse(&input).unwrap();
        let added = calendar
            .with_links(|_| Some(LINK.to_string()), LABEL, now())
            .unwrap();
        let links: serde_json::Map<String, Value> = calendar
            .events()
            .into_iter()
            .map(|e| (e.uid, json!(LINK)))
            .collect();
        let kept: serde_json::Map<String, Value> = added
            .events
            .iter()
            .filter_map(|e| Some((e.uid.clone(), json!(e.kept_url.clone()?))))
            .collect();
        check(
            &format!("linked-{name}"),
            &added.ics,
            json!({
                "input": fixture_path(name),
                "links": links,
                "kept_urls": kept,
                "label": LABEL,
            }),
        );
        // And once more: the second submission is still a valid calendar.
        let again = ics::add_link(added.ics.as_bytes(), LINK, LABEL, now()).unwrap();
        check(
            &format!("linked-twice-{name}"),
            &again.ics,
            json!({ "links": links, "kept_urls": kept, "label": LABEL }),
        );
    }
}

#[test]
fn recurrence_and_exceptions_survive() {
    let input = std::fs::read(fixture_path("google.ics")).unwrap();
    let added = ics::add_link(&input, LINK, LABEL, now()).unwrap();
    let uid = "4q2k7d0v9hs1j3m5n8b6c4x2z0@google.com";
    check(
        "google-recurrence.ics",
        &added.ics,
        json!({
            "events": [
                {"uid": uid, "start_utc": "2026-12-01T09:00:00+00:00", "tzid": "Europe/Berlin",
                 "rrule": {"FREQ": ["WEEKLY"], "BYDAY": ["TU"]}, "sequence": 1},
                {"uid": uid, "recurrence_id": "20261215T100000",
                 "start_utc": "2026-12-15T10:00:00+00:00", "sequence": 2,
                 "summary": "Café – Zoë 会議 weekly (moved)"}
            ]
        }),
    );
}

fn spec(zone: &str) -> ScheduleSpec {
    ScheduleSpec {
        uid: "4kV9xQ2mT7bN1cR8zL3wYp@confab".into(),
        title: "Café – Zoë 会議, weekly; sync".into(),
        description: Some("Agenda: see the doc.\nBring questions.".into()),
        start: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 12, 1, 9, 45, 0).unwrap(),
        time_zone: zone.into(),
        rrule: Some("FREQ=WEEKLY;BYDAY=TU".into()),
        organizer: Some(Person {
            email: "ana@example.org".into(),
            name: Some("Ana \"AL\" Lima".into()),
        }),
        attendees: vec![
            Person {
                email: "zoe@example.net".into(),
                name: Some("Zoë Ōkubo".into()),
            },
            Person {
                email: "jane@example.com".into(),
                name: Some("Doe, Jane".into()),
            },
        ],
        sequence: 0,
        cancelled: false,
        link_url: LINK.into(),
        label: LABEL.into(),
        created: Some(now()),
        last_modified: Some(now()),
    }
}

#[test]
fn scheduled_calls_publish_request_cancel() {
    let uid = "4kV9xQ2mT7bN1cR8zL3wYp@confab";
    let links = json!({ uid: LINK });
    let publish = ics::schedule_ics(&spec("Europe/Berlin"), Method::Publish, now()).unwrap();
    check(
        "publish.ics",
        &publish,
        json!({
            "method": "PUBLISH", "prodid": "-//Confab//Calendar//EN", "links": links, "label": LABEL,
            "events": [{"uid": uid, "start_utc": "2026-12-01T09:00:00+00:00",
                        "end_utc": "2026-12-01T09:45:00+00:00", "tzid": "Europe/Berlin",
                        "rrule": {"FREQ": ["WEEKLY"], "BYDAY": ["TU"]}, "sequence": 0,
                        "status": "CONFIRMED", "summary": "Café – Zoë 会議, weekly; sync",
                        "organizer": "mailto:ana@example.org", "attendees": []}]
        }),
    );
    let request = ics::schedule_ics(&spec("America/New_York"), Method::Request, now()).unwrap();
    check(
        "request.ics",
        &request,
        json!({
            "method": "REQUEST", "links": links,
            "events": [{"uid": uid, "start_utc": "2026-12-01T09:00:00+00:00", "tzid": "America/New_York",
                        "attendees": ["mailto:zoe@example.net", "mailto:jane@example.com"], "rsvp": true}]
        }),
    );
    let mut moved = spec("America/New_York");
    moved.start += chrono::Duration::days(1);
    moved.end += chrono::Duration::days(1);
    moved.rrule = Some("FREQ=WEEKLY;BYDAY=WE;COUNT=10".into());
    moved.sequence = 1;
    let update = ics::schedule_ics(&moved, Method::Request, now()).unwrap();
    check(
        "update.ics",
        &update,
        json!({
            "method": "REQUEST",
            "events": [{"uid": uid, "start_utc": "2026-12-02T09:00:00+00:00", "sequence": 1,
                        "rrule": {"FREQ": ["WEEKLY"], "BYDAY": ["WE"], "COUNT": ["10"]}}]
        }),
    );
    moved.sequence = 2;
    let cancel = ics::schedule_ics(&moved, Method::Cancel, now()).unwrap();
    check(
        "cancel.ics",
        &cancel,
        json!({
            "method": "CANCEL",
            "events": [{"uid": uid, "sequence": 2, "status": "CANCELLED",
                        "attendees": ["mailto:zoe@example.net", "mailto:jane@example.com"]}]
        }),
    );
    let mut utc = spec("UTC");
    utc.rrule = None;
    let utc_ics = ics::schedule_ics(&utc, Method::Publish, now()).unwrap();
    check(
        "utc.ics",
        &utc_ics,
        json!({"events": [{"uid": uid, "start_utc": "2026-12-01T09:00:00+00:00", "rrule": null}]}),
    );
}

/// Generated VTIMEZONEs give the zone database's offsets, for zones with every
/// kind of rule: last Sunday, second Sunday, southern hemisphere, half-hour and
/// 45-minute offsets, 30-minute daylight saving, no daylight saving any more.
#[test]
fn generated_time_zones_match_the_zone_database() {
    let zones = [
        "Europe/Berlin",
        "Europe/London",
        "America/New_York",
        "America/Sao_Paulo",
        "America/Santiago",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Pacific/Auckland",
        "Asia/Jerusalem",
        "Asia/Kolkata",
        "Asia/Tokyo",
        "Africa/Cairo",
        "America/St_Johns",
    ];
    let mut calls = Vec::new();
    let mut expected = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let mut s = spec(zone);
        s.uid = format!("call-{i}@confab");
        s.start += chrono::Duration::days(37 * i as i64);
        s.end += chrono::Duration::days(37 * i as i64);
        s.attendees.clear();
        expected.push(json!({
            "uid": s.uid, "tzid": zone,
            "start_utc": s.start.to_rfc3339(),
        }));
        calls.push(s);
    }
    let feed = ics::feed_ics("Ana's calls", &calls, now()).unwrap();
    check(
        "feed.ics",
        &feed,
        json!({"method": "PUBLISH", "feed": true, "events": expected}),
    );
}
