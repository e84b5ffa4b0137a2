//! The ICS engine on calendars written to the formats of Google Calendar,
//! Outlook/Exchange (Teams), Apple Calendar, Zoom and Thunderbird.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use confab_calendar::ics::{
    self, BLOCK_END, BLOCK_START, Calendar, IcsError, MAX_EVENTS, Method, Person, ScheduleSpec,
};

const LINK: &str = "https://confab.example/j/4kV9xQ2mT7bN1cR8zL3wYp#k=Zx_9-aQ2mT7bN1cR8zL3wYpE4";
const OTHER_LINK: &str = "https://confab.example/j/8hG2kL5nP0qR3sT6vW9yZa#k=Qm3_-x8hG2kL5nP0qR3sT6";
const LABEL: &str = "Join the Confab call";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

const FIXTURES: [&str; 5] = [
    "google.ics",
    "outlook.ics",
    "apple.ics",
    "zoom.ics",
    "thunderbird.ics",
];

/// Unfolds a file by the book (independently of the engine): content lines as text.
fn content_lines(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8(data.to_vec()).expect("the fixtures are UTF-8");
    let text = text.replace("\r\n", "\n");
    let mut lines: Vec<String> = Vec::new();
    for physical in text.split('\n') {
        if let Some(rest) = physical.strip_prefix([' ', '\t']) {
            lines
                .last_mut()
                .expect("a continuation follows a line")
                .push_str(rest);
        } else if !physical.is_empty() {
            lines.push(physical.to_string());
        }
    }
    lines
}

fn name_of(line: &str) -> String {
    line.split([';', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// What adding a link may change in an event.
const CHANGED: [&str; 8] = [
    "LOCATION",
    "URL",
    "CONFERENCE",
    "DESCRIPTION",
    "X-ALT-DESC",
    "SEQUENCE",
    "LAST-MODIFIED",
    "X-CONFAB-LINK",
];

/// The content lines but the event properties a link may change (an event's own
/// `URL`, which is not the link, must not change either).
fn untouched(lines: &[String]) -> Vec<String> {
    let mut depth_in_event: Option<usize> = None;
    let mut depth = 0usize;
    let mut out = Vec::new();
    for line in lines {
        let name = name_of(line);
        if name == "BEGIN" {
            depth += 1;
            if line[6..].eq_ignore_ascii_case("VEVENT") && depth == 2 {
                depth_in_event = Some(depth);
            }
        }
        let own_event_property = depth_in_event == Some(depth) && name != "BEGIN" && name != "END";
        let changeable =
            CHANGED.contains(&name.as_str()) && (name != "URL" || line.ends_with(LINK));
        if !(own_event_property && changeable) {
            out.push(line.clone());
        }
        if name == "END" {
            if depth_in_event == Some(depth) {
                depth_in_event = None;
            }
            depth -= 1;
        }
    }
    out
}

fn physical_lines_ok(ics: &str) {
    assert!(ics.ends_with("\r\n"));
    for line in ics[..ics.len() - 2].split("\r\n") {
        assert!(
            line.len() <= 75,
            "a line of {} octets: {line:?}",
            line.len()
        );
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "a bare line break in {line:?}"
        );
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn everything_but_the_link_is_kept_byte_for_byte() {
    for name in FIXTURES {
        let input = fixture(name);
        let added = ics::add_link(&input, LINK, LABEL, now()).unwrap();
        physical_lines_ok(&added.ics);
        let before = content_lines(&input);
        let after = content_lines(added.ics.as_bytes());
        assert_eq!(
            untouched(&before),
            untouched(&after),
            "{name}: lines other than the link's changed"
        );
        // Untouched lines also keep their folding: every physical line of the input
        // that is not part of a changed property is in the output.
        let output_physical: std::collections::HashSet<&str> = added.ics.split("\r\n").collect();
        let input_text = String::from_utf8(input.clone()).unwrap();
        let kept = input_text
            .split("\r\n")
            .filter(|l| output_physical.contains(l))
            .count();
        assert!(
            kept * 10 >= input_text.split("\r\n").count() * 7,
            "{name}: most physical lines should be kept as they were"
        );
        assert!(added.events.iter().all(|e| e.changed), "{name}");
    }
}

#[test]
fn the_link_goes_everywhere_clients_show_it() {
    let added = ics::add_link(&fixture("outlook.ics"), LINK, LABEL, now()).unwrap();
    let lines = content_lines(added.ics.as_bytes());
    let first_event: Vec<&String> = lines
        .iter()
        .skip_while(|l| *l != "BEGIN:VEVENT")
        .take_while(|l| *l != "END:VEVENT")
        .collect();
    let find = |name: &str| {
        first_event
            .iter()
            .filter(|l| name_of(l) == name)
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("LOCATION"),
        [format!(
            "LOCATION;LANGUAGE=en-US:Microsoft Teams Meeting | {LINK}"
        )]
    );
    assert_eq!(find("URL"), [format!("URL;VALUE=URI:{LINK}")]);
    assert_eq!(
        find("CONFERENCE"),
        [format!(
            "CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=Join the Confab call:{LINK}"
        )]
    );
    let description = find("DESCRIPTION")[0];
    assert!(
        description.starts_with("DESCRIPTION;LANGUAGE=en-US:Quarterly review of the roadmap.\\n")
    );
    assert!(description.ends_with(&format!(
        "\\n\\n{BLOCK_START}\\n{LABEL}: {LINK}\\n{BLOCK_END}"
    )));
    let html = find("X-ALT-DESC")[0];
    assert!(html.contains(&format!(
        "</div>\\n<!-- confab-call --><p><a href=\"{LINK}\">{LABEL}</a><br>{LINK}</p><!-- /confab-call --></body>"
    )));
    assert_eq!(find("SEQUENCE"), ["SEQUENCE:1"]);
    assert_eq!(find("LAST-MODIFIED"), ["LAST-MODIFIED:20261125T120000Z"]);
    assert_eq!(find("X-CONFAB-LINK"), [format!("X-CONFAB-LINK:{LINK}")]);
    // The Teams link and the Windows time zones are still there.
    assert_eq!(count(&added.ics, "TZID:W. Europe Standard Time\r\n"), 1);
    assert!(find("X-MICROSOFT-SKYPETEAMSMEETINGURL").len() == 1);
}

#[test]
fn submitting_the_output_again_changes_nothing() {
    for name in FIXTURES {
        let once = ics::add_link(&fixture(name), LINK, LABEL, now()).unwrap();
        let later = now() + chrono::Duration::days(3);
        let twice = ics::add_link(once.ics.as_bytes(), LINK, LABEL, later).unwrap();
        assert_eq!(once.ics, twice.ics, "{name}");
        assert!(twice.events.iter().all(|e| !e.changed), "{name}");
        let unfolded = content_lines(twice.ics.as_bytes()).join("\n");
        assert_eq!(
            count(&unfolded, &format!("X-CONFAB-LINK:{LINK}")),
            once.events.len()
        );
    }
}

#[test]
fn another_link_replaces_the_first_everywhere() {
    let once = ics::add_link(&fixture("google.ics"), LINK, LABEL, now()).unwrap();
    let again = ics::add_link(once.ics.as_bytes(), OTHER_LINK, LABEL, now()).unwrap();
    let unfolded = content_lines(again.ics.as_bytes()).join("\n");
    assert!(!unfolded.contains(LINK), "the first link is still there");
    let events = again.events.len();
    assert_eq!(
        count(
            &unfolded,
            &format!("CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=Join the Confab call:{OTHER_LINK}")
        ),
        events
    );
    assert_eq!(count(&unfolded, BLOCK_START), events);
    assert_eq!(count(&unfolded, "<!-- confab-call -->"), events);
    assert_eq!(
        count(&unfolded, &format!("URL;VALUE=URI:{OTHER_LINK}")),
        events
    );
    assert_eq!(
        count(
            &unfolded,
            &format!("LOCATION:Raum 4.12\\, Büro Berlin | {OTHER_LINK}")
        ),
        2
    );
    assert_eq!(
        count(
            &unfolded,
            "X-GOOGLE-CONFERENCE:https://meet.google.com/qwe-rtyu-iop"
        ),
        2
    );
    // SEQUENCE went up once per change: 0 → 1 → 2 for the series.
    assert!(unfolded.contains("SEQUENCE:2\n"));
}

#[test]
fn a_series_and_its_exceptions_share_one_link() {
    let calendar = Calendar::parse(&fixture("google.ics")).unwrap();
    let events = calendar.events();
    assert_eq!(
        events.len(),
        2,
        "two UIDs: the series (with an exception) and the holiday"
    );
    assert_eq!(events[0].components, 2);
    assert!(events[0].recurring);
    assert_eq!(events[0].summary.as_deref(), Some("Café – Zoë 会議 weekly"));
    assert_eq!(events[0].time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(events[0].start.as_deref(), Some("20261201T100000"));

    let mut asked = Vec::new();
    let links: HashMap<&str, &str> = [
        (events[0].uid.as_str(), LINK),
        (events[1].uid.as_str(), OTHER_LINK),
    ]
    .into();
    let added = calendar
        .with_links(
            |event| {
                asked.push(event.uid.clone());
                links.get(event.uid.as_str()).map(|l| l.to_string())
            },
            LABEL,
            now(),
        )
        .unwrap();
    assert_eq!(asked.len(), 2, "asked once per UID");
    assert_eq!(added.events.len(), 3);
    assert_eq!(added.events[0].link.as_deref(), Some(LINK));
    assert_eq!(added.events[1].link.as_deref(), Some(LINK));
    assert_eq!(
        added.events[1].recurrence_id.as_deref(),
        Some("20261215T100000")
    );
    assert_eq!(added.events[2].link.as_deref(), Some(OTHER_LINK));
}

#[test]
fn outlook_exceptions_keep_the_series_link_across_time_zones() {
    let calendar = Calendar::parse(&fixture("outlook.ics")).unwrap();
    let events = calendar.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].components, 2);
    assert_eq!(
        events[1].time_zone.as_deref(),
        Some("W. Europe Standard Time")
    );
    assert_eq!(
        ics::tz::zone(events[1].time_zone.as_deref().unwrap()),
        Some(chrono_tz::Europe::Berlin)
    );
    let added = calendar
        .with_links(|_| Some(LINK.into()), LABEL, now())
        .unwrap();
    let exception = content_lines(added.ics.as_bytes())
        .into_iter()
        .skip_while(|l| !l.starts_with("RECURRENCE-ID"))
        .take_while(|l| l != "END:VEVENT")
        .collect::<Vec<_>>();
    assert!(exception.contains(&format!("LOCATION;LANGUAGE=en-US:Seattle office | {LINK}")));
    assert!(exception.contains(&"SEQUENCE:4".to_string()));
    assert!(exception.contains(&"DTSTART;TZID=Pacific Standard Time:20261214T070000".to_string()));
}

#[test]
fn an_events_own_url_is_kept() {
    let added = ics::add_link(&fixture("apple.ics"), LINK, LABEL, now()).unwrap();
    assert_eq!(
        added.events[0].kept_url.as_deref(),
        Some("https://example.com/agenda?week=49&lang=en")
    );
    assert_eq!(added.events[1].kept_url, None);
    let text = content_lines(added.ics.as_bytes()).join("\n");
    assert!(text.contains("URL;VALUE=URI:https://example.com/agenda?week=49&lang=en"));
    assert!(text.contains(&format!(
        "LOCATION:Café Zoë\\nBroadway 1\\nNew York\\, NY 10001\\, United States | {LINK}"
    )));
    assert!(text.contains(
        "X-APPLE-STRUCTURED-LOCATION;VALUE=URI;X-ADDRESS=\"Broadway 1\\\\nNew York, NY 10001, United States\";"
    ));
}

#[test]
fn a_zoom_link_in_the_location_stays_next_to_ours() {
    let added = ics::add_link(&fixture("zoom.ics"), LINK, LABEL, now()).unwrap();
    let text = content_lines(added.ics.as_bytes()).join("\n");
    assert!(text.contains(&format!(
        "LOCATION:https://us02web.zoom.us/j/81234567890?pwd=Zm9vYmFyYmF6cXV4 | {LINK}"
    )));
    assert!(text.contains("TZID:Asia/Tokyo\nDESCRIPTION:Hiro Sato"));
}

#[test]
fn the_link_is_never_cut_or_broken() {
    // A link long enough to be folded several times, with a fragment.
    let long = format!(
        "https://confab.example/j/{}#k={}",
        "a".repeat(22),
        "Zx_9-".repeat(30)
    );
    let added = ics::add_link(&fixture("thunderbird.ics"), &long, LABEL, now()).unwrap();
    physical_lines_ok(&added.ics);
    let text = content_lines(added.ics.as_bytes()).join("\n");
    assert!(text.contains(&format!("URL;VALUE=URI:{long}\n")));
    assert!(text.contains(&format!("X-CONFAB-LINK:{long}\n")));
    assert!(text.contains(&format!(
        "FEATURE=VIDEO;LABEL=Join the Confab call:{long}\n"
    )));
}

#[test]
fn what_is_escaped_is_escaped() {
    let input = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T100000Z\r\nLOCATION:a\\, b\\; c\\\\d\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let link = "https://c.example/j/x?a=1,2;b=3";
    let added = ics::add_link(input.as_bytes(), link, "Call; now, here", now()).unwrap();
    let text = content_lines(added.ics.as_bytes()).join("\n");
    assert!(
        text.contains("LOCATION:a\\, b\\; c\\\\d | https://c.example/j/x?a=1\\,2\\;b=3\n"),
        "{text}"
    );
    assert!(text.contains("URL;VALUE=URI:https://c.example/j/x?a=1,2;b=3\n"));
    assert!(text.contains("CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=\"Call; now, here\":https://c.example/j/x?a=1,2;b=3\n"));
    assert!(text.contains(&format!("DESCRIPTION:{BLOCK_START}\\nCall\\; now\\, here: https://c.example/j/x?a=1\\,2\\;b=3\\n{BLOCK_END}\n")));
}

#[test]
fn events_without_uid_or_dtstamp_get_them_and_keep_them() {
    let input = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nSUMMARY:No UID\nEND:VEVENT\nEND:VCALENDAR\n";
    let once = ics::add_link(input.as_bytes(), LINK, LABEL, now()).unwrap();
    assert!(
        once.ics
            .starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Confab//Calendar//EN\r\n")
    );
    let uid = once.events[0].uid.clone();
    assert!(uid.starts_with("confab-"));
    assert!(once.ics.contains(&format!("UID:{uid}\r\n")));
    assert!(once.ics.contains("DTSTAMP:20261125T120000Z\r\n"));
    // The same file again gets the same UID; the output again is the output.
    let again = ics::add_link(input.as_bytes(), LINK, LABEL, now()).unwrap();
    assert_eq!(again.events[0].uid, uid);
    let twice = ics::add_link(once.ics.as_bytes(), LINK, LABEL, now()).unwrap();
    assert_eq!(twice.ics, once.ics);
}

#[test]
fn a_link_can_be_left_out_per_event() {
    let calendar = Calendar::parse(&fixture("google.ics")).unwrap();
    let added = calendar
        .with_links(|e| (!e.recurring).then(|| LINK.to_string()), LABEL, now())
        .unwrap();
    assert_eq!(added.events.iter().filter(|e| e.changed).count(), 1);
    assert_eq!(count(&added.ics, "X-CONFAB-LINK"), 1);
}

fn error(input: &[u8]) -> IcsError {
    Calendar::parse(input).expect_err("the input should be refused")
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    assert_eq!(error(b""), IcsError::NotICalendar);
    assert_eq!(
        error(b"<html><body>Not found</body></html>"),
        IcsError::NotICalendar
    );
    assert_eq!(
        error(b"BEGIN:VCARD\r\nFN:Ana\r\nEND:VCARD\r\n"),
        IcsError::NotICalendar
    );
    assert_eq!(error(&[0xff, 0xfe, 0x00, 0x42]), IcsError::NotICalendar);

    assert_eq!(
        error(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:1\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"),
        IcsError::NoEvents
    );
    // A long description wrapped without the leading space of a fold.
    let broken = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDESCRIPTION:first half\r\nsecond half of the text\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    assert!(matches!(error(broken), IcsError::Malformed { line: 5, .. }));
    let cut = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nSUMMARY:cut off";
    let e = error(cut);
    assert!(matches!(e, IcsError::Malformed { line: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("END:VEVENT"), "{e}");
    let crossed = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nBEGIN:VALARM\r\nEND:VEVENT\r\nEND:VALARM\r\nEND:VCALENDAR\r\n";
    assert!(matches!(
        error(crossed),
        IcsError::Malformed { line: 4, .. }
    ));
    let quote = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nATTENDEE;CN=\"Ana:mailto:a@b.c\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    assert!(matches!(error(quote), IcsError::Malformed { line: 3, .. }));
    let latin1 =
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:caf\xe9\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    assert_eq!(error(latin1), IcsError::NotUtf8 { line: 3 });

    let rrule = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nRRULE:BYDAY=MO\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let e = error(rrule);
    assert!(matches!(e, IcsError::BadRrule { line: 4, .. }), "{e:?}");
    assert!(e.to_string().contains("FREQ"), "{e}");

    let mut large = b"BEGIN:VCALENDAR\r\n".to_vec();
    large.resize(ics::MAX_INPUT_BYTES + 1, b'x');
    assert!(matches!(error(&large), IcsError::TooLarge { .. }));

    for e in [IcsError::NotICalendar, IcsError::NoEvents, error(broken)] {
        assert!(e.to_string().ends_with('.'), "messages are sentences: {e}");
    }
}

fn many_events(n: usize) -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n");
    for i in 0..n {
        s.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:event-{i}@example.org\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261201T{:02}0000Z\r\nDURATION:PT30M\r\nSUMMARY:Meeting {i}\r\nLOCATION:Room {i}\r\nEND:VEVENT\r\n",
            i % 24
        ));
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

#[test]
fn at_most_a_thousand_events() {
    let ok = many_events(MAX_EVENTS);
    let added = ics::add_link(ok.as_bytes(), LINK, LABEL, now()).unwrap();
    assert_eq!(added.events.len(), MAX_EVENTS);
    assert_eq!(
        error(many_events(MAX_EVENTS + 500).as_bytes()),
        IcsError::TooManyEvents {
            count: MAX_EVENTS + 500
        }
    );
}

#[test]
fn a_bad_link_is_refused_before_anything_is_written() {
    for bad in ["not a link", "https://x/a b", "mailto:a@b.c"] {
        let e = ics::add_link(&fixture("zoom.ics"), bad, LABEL, now()).unwrap_err();
        assert!(matches!(e, IcsError::BadLink(_)), "{bad}: {e:?}");
    }
}

fn spec() -> ScheduleSpec {
    ScheduleSpec {
        uid: "4kV9xQ2mT7bN1cR8zL3wYp@confab".into(),
        title: "Café – Zoë 会議, weekly; sync".into(),
        description: Some("Agenda in the doc.".into()),
        start: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap(),
        time_zone: "Europe/Berlin".into(),
        rrule: Some("FREQ=WEEKLY;BYDAY=TU;UNTIL=20270601".into()),
        organizer: Some(Person {
            email: "ana@example.org".into(),
            name: Some("Ana Lima".into()),
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
fn a_scheduled_call_to_download() {
    let ics = ics::schedule_ics(&spec(), Method::Publish, now()).unwrap();
    physical_lines_ok(&ics);
    let lines = content_lines(ics.as_bytes());
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(has("METHOD:PUBLISH"));
    assert!(has("PRODID:-//Confab//Calendar//EN"));
    assert!(has("DTSTART;TZID=Europe/Berlin:20261201T100000"));
    assert!(has("DTEND;TZID=Europe/Berlin:20261201T103000"));
    // UNTIL given as a date becomes the end of that day, Berlin time, in UTC.
    assert!(has("RRULE:FREQ=WEEKLY;BYDAY=TU;UNTIL=20270601T215959Z"));
    assert!(has("SUMMARY:Café – Zoë 会議\\, weekly\\; sync"));
    assert!(has("TZID:Europe/Berlin"));
    assert!(has("SEQUENCE:0"));
    assert!(has("STATUS:CONFIRMED"));
    assert!(has(&format!("URL;VALUE=URI:{LINK}")));
    assert!(has(&format!("LOCATION:{LINK}")));
    assert!(has("ORGANIZER;CN=Ana Lima:mailto:ana@example.org"));
    assert!(
        !lines.iter().any(|l| l.starts_with("ATTENDEE")),
        "a download lists no attendees"
    );
    assert_eq!(count(&ics, "BEGIN:VTIMEZONE"), 1);
    // Adding a link to our own file changes nothing.
    let again = ics::add_link(ics.as_bytes(), LINK, LABEL, now()).unwrap();
    assert_eq!(again.ics, ics);
}

#[test]
fn invitations_updates_and_cancellations() {
    let invite = ics::schedule_ics(&spec(), Method::Request, now()).unwrap();
    let lines = content_lines(invite.as_bytes());
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(has("METHOD:REQUEST"));
    assert!(has(
        "ATTENDEE;CN=Zoë Ōkubo;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:zoe@example.net"
    ));
    assert!(has(
        "ATTENDEE;CN=\"Doe, Jane\";CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:jane@example.com"
    ));

    let mut moved = spec();
    moved.start += chrono::Duration::hours(1);
    moved.end += chrono::Duration::hours(1);
    moved.sequence += 1;
    let update = ics::schedule_ics(&moved, Method::Request, now()).unwrap();
    assert!(update.contains("SEQUENCE:1\r\n"));
    assert!(update.contains("DTSTART;TZID=Europe/Berlin:20261201T110000\r\n"));
    assert!(update.contains(&format!("UID:{}\r\n", spec().uid)));

    moved.sequence += 1;
    let cancel = ics::schedule_ics(&moved, Method::Cancel, now()).unwrap();
    assert!(cancel.contains("METHOD:CANCEL\r\n"));
    assert!(cancel.contains("STATUS:CANCELLED\r\n"));
    assert!(cancel.contains("SEQUENCE:2\r\n"));
    assert!(!cancel.contains("RSVP=TRUE"));
}

#[test]
fn utc_calls_need_no_time_zone() {
    let mut utc = spec();
    utc.time_zone = "UTC".into();
    utc.rrule = None;
    let ics = ics::schedule_ics(&utc, Method::Publish, now()).unwrap();
    assert!(ics.contains("DTSTART:20261201T090000Z\r\n"));
    assert!(!ics.contains("VTIMEZONE"));
    assert!(!ics.contains("TZID"));
}

#[test]
fn schedules_that_cannot_be_written() {
    let check = |change: &dyn Fn(&mut ScheduleSpec), method: Method| {
        let mut s = spec();
        change(&mut s);
        ics::schedule_ics(&s, method, now()).unwrap_err()
    };
    assert!(matches!(
        check(&|s| s.end = s.start, Method::Publish),
        IcsError::BadSchedule(_)
    ));
    assert!(matches!(
        check(&|s| s.time_zone = "Mars/Olympus".into(), Method::Publish),
        IcsError::BadSchedule(_)
    ));
    assert!(matches!(
        check(
            &|s| s.rrule = Some("FREQ=SOMETIMES".into()),
            Method::Publish
        ),
        IcsError::BadSchedule(_)
    ));
    assert!(matches!(
        check(&|s| s.organizer = None, Method::Request),
        IcsError::BadSchedule(_)
    ));
    assert!(matches!(
        check(&|s| s.attendees.clear(), Method::Request),
        IcsError::BadSchedule(_)
    ));
    assert!(matches!(
        check(
            &|s| s.attendees[0].email = "zoe at example".into(),
            Method::Request
        ),
        IcsError::BadSchedule(_)
    ));
    assert!(matches!(
        check(&|s| s.link_url = "ftp://x".into(), Method::Publish),
        IcsError::BadLink(_)
    ));
    // Windows names are understood and written as IANA names.
    let mut windows = spec();
    windows.time_zone = "W. Europe Standard Time".into();
    let ics = ics::schedule_ics(&windows, Method::Publish, now()).unwrap();
    assert!(ics.contains("DTSTART;TZID=Europe/Berlin:20261201T100000\r\n"));
}

#[test]
fn a_feed_lists_many_calls_with_one_zone_each() {
    let mut calls = Vec::new();
    for (i, zone) in ["Europe/Berlin", "America/New_York", "Europe/Berlin", "UTC"]
        .iter()
        .enumerate()
    {
        let mut s = spec();
        s.uid = format!("call-{i}@confab");
        s.time_zone = zone.to_string();
        s.start += chrono::Duration::days(400 * i as i64);
        s.end += chrono::Duration::days(400 * i as i64);
        s.rrule = None;
        calls.push(s);
    }
    let feed = ics::feed_ics("Ana's calls", &calls, now()).unwrap();
    physical_lines_ok(&feed);
    assert_eq!(count(&feed, "BEGIN:VEVENT"), 4);
    assert_eq!(count(&feed, "BEGIN:VTIMEZONE"), 2);
    assert!(feed.contains("REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n"));
    assert!(feed.contains("X-WR-CALNAME:Ana's calls\r\n"));
    assert!(!feed.contains("ATTENDEE"));
}

/// The `icalendar` crate's parser loses what this engine must keep: escapes in TEXT
/// values and the quotes of parameter values (a quoted `CN` with a comma would
/// come back unquoted, which is a different line).
#[test]
fn why_the_engine_does_not_use_the_icalendar_crates_parser() {
    let line = "ATTENDEE;CN=\"Doe, Jane\":mailto:jane@example.com\n";
    let input = format!(
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\n{line}DESCRIPTION:a\\, b\\nc\nEND:VEVENT\nEND:VCALENDAR\n"
    );
    let parsed = icalendar::parser::read_calendar(&input).unwrap();
    let written = parsed.to_string();
    assert!(
        !written.contains("CN=\"Doe, Jane\"") || !written.contains("DESCRIPTION:a\\, b\\nc"),
        "the icalendar crate now writes both back unchanged; the engine could use it: {written}"
    );
}
