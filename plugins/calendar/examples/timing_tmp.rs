use std::time::Instant;
fn main() {
    let now = chrono::Utc::now();
    let one = std::fs::read("tests/fixtures/outlook.ics").unwrap();
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let out = confab_calendar::ics::add_link(&one, "https://c.example/j/abc#k=xyz", "Join", now).unwrap();
        std::hint::black_box(out);
        times.push(t.elapsed());
    }
    times.sort();
    println!("outlook.ics (3 events) median {:?}", times[100]);
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n");
    for i in 0..500 { s.push_str(&format!("BEGIN:VEVENT\r\nUID:e{i}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20261201T100000\r\nDTEND;TZID=Europe/Berlin:20261201T103000\r\nSUMMARY:Meeting number {i} with a longer title – Café\r\nDESCRIPTION:Some description text that is long enough to be folded across lines in the file\\, with escapes\\nand lines.\r\nLOCATION:Room {i}\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\nEND:VEVENT\r\n")); }
    s.push_str("END:VCALENDAR\r\n");
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = confab_calendar::ics::add_link(s.as_bytes(), "https://c.example/j/abc#k=xyz", "Join", now).unwrap();
        std::hint::black_box(out);
        times.push(t.elapsed());
    }
    times.sort();
    println!("500 events ({} KiB) median {:?}", s.len()/1024, times[10]);
    let spec = confab_calendar::ics::ScheduleSpec { uid: "u@x".into(), title: "t".into(), description: None, start: now, end: now + chrono::Duration::minutes(30), time_zone: "Europe/Berlin".into(), rrule: Some("FREQ=WEEKLY".into()), organizer: None, attendees: vec![], sequence: 0, cancelled: false, link_url: "https://c.example/j/abc".into(), label: "Join".into(), created: None, last_modified: None };
    let t = Instant::now();
    for _ in 0..100 { std::hint::black_box(confab_calendar::ics::schedule_ics(&spec, confab_calendar::ics::Method::Publish, now).unwrap()); }
    println!("schedule_ics {:?} each", t.elapsed() / 100);
}
