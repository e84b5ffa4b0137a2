//! A calendar file as a list of content lines with its component structure on top.

use std::collections::HashMap;

use super::line::{ContentLine, unescape_text, unfold};
use super::{IcsError, LINK_PROPERTY, MAX_DEPTH, MAX_EVENTS, MAX_INPUT_BYTES, rrule};

/// A parsed, checked calendar file. Nothing in it is changed until
/// [`Calendar::with_links`] writes a new one.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub(crate) lines: Vec<ContentLine>,
    pub(crate) events: Vec<EventSpan>,
    pub(crate) calendars: Vec<CalendarSpan>,
    input_len: usize,
}

/// Where one VEVENT (a child of VCALENDAR) is in the lines.
#[derive(Debug, Clone)]
pub(crate) struct EventSpan {
    /// Its own properties (not those of its alarms).
    pub props: Vec<usize>,
    /// Where new properties go: before its first sub-component, or its END.
    pub insert_at: usize,
    pub uid: String,
    pub uid_generated: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct CalendarSpan {
    pub begin: usize,
    pub has_version: bool,
    pub has_prodid: bool,
}

/// An event of the file, by UID: a single event, or a recurring series with its
/// exceptions (all VEVENTs with that UID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    pub uid: String,
    /// The file had no UID for it; the engine made one from its content.
    pub uid_generated: bool,
    /// The `SUMMARY` of the series (or of its first VEVENT), unescaped.
    pub summary: Option<String>,
    /// How many VEVENTs have this UID (the series and its exceptions).
    pub components: usize,
    /// Whether it repeats (`RRULE` or `RDATE`).
    pub recurring: bool,
    /// The link an earlier submission wrote into it (`X-CONFAB-LINK`), if any.
    pub link: Option<String>,
    /// `DTSTART` of the series as written (e.g. `20261201T100000`).
    pub start: Option<String>,
    /// The `TZID` of that `DTSTART`, as written (IANA or Windows name).
    pub time_zone: Option<String>,
}

impl EventSpan {
    pub(crate) fn find(&self, lines: &[ContentLine], name: &str) -> Option<usize> {
        self.props.iter().copied().find(|&i| lines[i].is(name))
    }

    pub(crate) fn find_all<'a>(
        &'a self,
        lines: &'a [ContentLine],
        name: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        self.props
            .iter()
            .copied()
            .filter(move |&i| lines[i].is(name))
    }

    pub(crate) fn text(&self, lines: &[ContentLine], name: &str) -> Option<String> {
        self.find(lines, name)
            .map(|i| unescape_text(lines[i].value()))
    }
}

impl Calendar {
    /// Reads and checks a calendar file. Refuses files over 1 MiB, files that are not
    /// iCalendar, broken folding or structure, files without events or with more
    /// than [`MAX_EVENTS`], and malformed `RRULE`s.
    pub fn parse(input: &[u8]) -> Result<Self, IcsError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(IcsError::TooLarge { bytes: input.len() });
        }
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
        let first = input
            .split(|&b| b == b'\n')
            .map(|l| l.trim_ascii())
            .find(|l| !l.is_empty());
        if !first.is_some_and(|l| l.eq_ignore_ascii_case(b"BEGIN:VCALENDAR")) {
            return Err(IcsError::NotICalendar);
        }
        let lines = unfold(input)?;

        let mut stack: Vec<(String, usize)> = Vec::new();
        let mut events: Vec<EventSpan> = Vec::new();
        let mut calendars: Vec<CalendarSpan> = Vec::new();
        let mut open_event: Option<EventSpan> = None;
        for (i, line) in lines.iter().enumerate() {
            let malformed = |reason: String| IcsError::Malformed {
                line: line.line_no,
                reason,
            };
            if line.is("BEGIN") {
                let name = line.value().trim().to_ascii_uppercase();
                if name.is_empty() {
                    return Err(malformed("BEGIN has no component name".into()));
                }
                if stack.is_empty() && name != "VCALENDAR" {
                    return Err(malformed(format!(
                        "BEGIN:{name} is outside of BEGIN:VCALENDAR … END:VCALENDAR"
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed("components are nested too deeply".into()));
                }
                if let Some(event) = open_event.as_mut()
                    && stack.len() == 2
                {
                    event.insert_at = event.insert_at.min(i);
                }
                if name == "VCALENDAR" {
                    if !stack.is_empty() {
                        return Err(malformed("a VCALENDAR cannot be inside another".into()));
                    }
                    calendars.push(CalendarSpan {
                        begin: i,
                        has_version: false,
                        has_prodid: false,
                    });
                }
                if name == "VEVENT" && stack.len() == 1 {
                    if events.len() == MAX_EVENTS {
                        let count = lines.iter().filter(|l| is_begin_vevent(l)).count();
                        return Err(IcsError::TooManyEvents { count });
                    }
                    open_event = Some(EventSpan {
                        props: Vec::new(),
                        insert_at: usize::MAX,
                        uid: String::new(),
                        uid_generated: false,
                    });
                }
                stack.push((name, i));
            } else if line.is("END") {
                let name = line.value().trim().to_ascii_uppercase();
                let Some((open, _)) = stack.pop() else {
                    return Err(malformed(format!("END:{name} has no matching BEGIN")));
                };
                if open != name {
                    return Err(malformed(format!(
                        "END:{name} where END:{open} was expected"
                    )));
                }
                if name == "VEVENT"
                    && stack.len() == 1
                    && let Some(mut event) = open_event.take()
                {
                    event.insert_at = event.insert_at.min(i);
                    events.push(event);
                }
            } else {
                match stack.len() {
                    0 => {
                        return Err(malformed(format!(
                            "{} is outside of BEGIN:VCALENDAR … END:VCALENDAR",
                            line.name()
                        )));
                    }
                    1 => {
                        let calendar = calendars.last_mut().expect("a VCALENDAR is open");
                        calendar.has_version |= line.is("VERSION");
                        calendar.has_prodid |= line.is("PRODID");
                    }
                    2 => {
                        if let Some(event) = open_event.as_mut() {
                            event.props.push(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some((open, at)) = stack.last() {
            return Err(IcsError::Malformed {
                line: lines[*at].line_no,
                reason: format!(
                    "BEGIN:{open} is never closed with END:{open} (was the file cut off?)"
                ),
            });
        }
        if events.is_empty() {
            return Err(IcsError::NoEvents);
        }
        for event in &mut events {
            for i in event.find_all(&lines, "RRULE").collect::<Vec<_>>() {
                let value = lines[i].value().trim();
                rrule::check(value).map_err(|reason| IcsError::BadRrule {
                    line: lines[i].line_no,
                    reason,
                })?;
            }
            let uid = event
                .find_all(&lines, "UID")
                .map(|i| lines[i].value().trim())
                .find(|uid| !uid.is_empty());
            match uid {
                Some(uid) => event.uid = uid.to_string(),
                None => {
                    event.uid = made_up_uid(&lines, event);
                    event.uid_generated = true;
                }
            }
        }
        Ok(Self {
            lines,
            events,
            calendars,
            input_len: input.len(),
        })
    }

    /// The events of the file, one per UID, in the order they first appear.
    pub fn events(&self) -> Vec<EventInfo> {
        let mut out: Vec<EventInfo> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for event in &self.events {
            let lines = &self.lines;
            let is_exception = event.find(lines, "RECURRENCE-ID").is_some();
            let start_line = event.find(lines, "DTSTART");
            let here = EventInfo {
                uid: event.uid.clone(),
                uid_generated: event.uid_generated,
                summary: event.text(lines, "SUMMARY"),
                components: 1,
                recurring: event.find(lines, "RRULE").is_some()
                    || event.find(lines, "RDATE").is_some(),
                link: event
                    .find(lines, LINK_PROPERTY)
                    .map(|i| lines[i].value().trim().to_string()),
                start: start_line.map(|i| lines[i].value().trim().to_string()),
                time_zone: start_line.and_then(|i| lines[i].param("TZID")),
            };
            match index.get(event.uid.as_str()).map(|&i| &mut out[i]) {
                Some(seen) => {
                    seen.components += 1;
                    seen.recurring |= here.recurring;
                    if seen.link.is_none() {
                        seen.link = here.link;
                    }
                    if !is_exception {
                        // The series itself says what the event is called and when.
                        seen.summary = here.summary.or(seen.summary.take());
                        seen.start = here.start;
                        seen.time_zone = here.time_zone;
                    }
                }
                None => {
                    index.insert(&event.uid, out.len());
                    out.push(here);
                }
            }
        }
        out
    }

    /// The size of the input, for sizing the output.
    pub(crate) fn input_len(&self) -> usize {
        self.input_len
    }
}

fn is_begin_vevent(line: &ContentLine) -> bool {
    line.is("BEGIN") && line.value().trim().eq_ignore_ascii_case("VEVENT")
}

/// A UID for an event that has none, from the content that identifies it (not the
/// stamps an export changes every time, nor what the engine writes), so the same
/// event gets the same UID each time it is submitted.
fn made_up_uid(lines: &[super::line::ContentLine], event: &EventSpan) -> String {
    const SKIP: [&str; 11] = [
        "DTSTAMP",
        "LAST-MODIFIED",
        "CREATED",
        "SEQUENCE",
        "LOCATION",
        "URL",
        "CONFERENCE",
        "DESCRIPTION",
        "X-ALT-DESC",
        LINK_PROPERTY,
        "UID",
    ];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &i in &event.props {
        let line = &lines[i];
        if SKIP.iter().any(|s| line.is(s)) {
            continue;
        }
        for b in line.text.bytes().chain([b'\n']) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("confab-{hash:016x}@calendar")
}
