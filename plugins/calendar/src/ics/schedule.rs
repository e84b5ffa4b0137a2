//! Writing calendars for scheduled calls: one event (download, invitation,
//! cancellation) or a feed of many.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::line::{ContentLine, escape_text, param_value};
use super::link::{conference_line, html_block, html_body, text_block};
use super::{IcsError, LINK_PROPERTY, PRODID, check_link, rrule, tz, utc_stamp};

/// What a calendar with one scheduled call is for (iTIP, RFC 5546).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A file to download and add to one's own calendar; no attendees.
    Publish,
    /// An invitation: `ORGANIZER` and `ATTENDEE;RSVP=TRUE` for each attendee.
    Request,
    /// The call is off: `STATUS:CANCELLED` for the attendees.
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// Someone with an email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub name: Option<String>,
}

/// A scheduled call, as its calendar event says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Stays the same for the life of the call (updates and cancellation too).
    pub uid: String,
    pub title: String,
    /// Text above the join block.
    pub description: Option<String>,
    pub start: DateTime<Utc>,
    /// After `start`, at most 31 days later.
    pub end: DateTime<Utc>,
    /// An IANA zone (`Europe/Berlin`), `UTC`, or a Windows zone name.
    pub time_zone: String,
    /// A recurrence rule without `RRULE:`; one link serves the whole series.
    pub rrule: Option<String>,
    pub organizer: Option<Person>,
    pub attendees: Vec<Person>,
    /// 0 when first sent; + 1 with every change of time, recurrence or status.
    pub sequence: u32,
    /// Written as `STATUS:CANCELLED` (always so with [`Method::Cancel`]).
    pub cancelled: bool,
    /// The full link to share, fragment included.
    pub link_url: String,
    /// Names the link (`CONFERENCE`'s `LABEL`, the join block).
    pub label: String,
    pub created: Option<DateTime<Utc>>,
    pub last_modified: Option<DateTime<Utc>>,
}

/// Where a time zone is used, and for which years.
struct ZoneUse {
    tz: Tz,
    from: i32,
    to: i32,
}

const MAX_ATTENDEES: usize = 100;
/// How many years a generated VTIMEZONE covers at most.
const MAX_ZONE_YEARS: i32 = 60;

fn bad(why: impl Into<String>) -> IcsError {
    IcsError::BadSchedule(why.into())
}

/// Checks an email address closely enough for `mailto:` and mail headers.
pub(crate) fn check_email(email: &str) -> Result<(), IcsError> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && !email
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"(),;:[]\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("“{email}” is not an email address")))
    }
}

fn person_line(name: &str, person: &Person, extra: &[(&str, &str)]) -> ContentLine {
    let cn = person
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(param_value);
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(cn) = &cn {
        params.push(("CN", cn));
    }
    params.extend_from_slice(extra);
    ContentLine::build(name, &params, &format!("mailto:{}", person.email))
}

/// `DTSTART`/`DTEND`: local time with `TZID`, or UTC when the zone is UTC or the
/// local time would not name this instant (the repeated hour when clocks go back).
fn time_line(name: &str, at: DateTime<Utc>, zone: Option<Tz>) -> ContentLine {
    if let Some(tz) = zone {
        let local = at.with_timezone(&tz).naive_local();
        let exact = match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t == at,
            LocalResult::Ambiguous(first, _) => first == at,
            LocalResult::None => false,
        };
        if exact {
            return ContentLine::build(name, &[("TZID", tz.name())], &local_stamp(local));
        }
    }
    ContentLine::build(name, &[], &utc_stamp(at))
}

fn local_stamp(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
}

/// The rule with `UNTIL` in UTC, as RFC 5545 wants it when `DTSTART` has a zone.
fn normalized_rule(rule: &str, zone: Option<Tz>) -> Result<(String, Option<i32>), IcsError> {
    let mut until_year = None;
    let mut parts = Vec::new();
    for part in rule.split(';') {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if !name.eq_ignore_ascii_case("UNTIL") {
            parts.push(part.to_string());
            continue;
        }
        let utc = if let Some(v) = value.strip_suffix(['Z', 'z']) {
            NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
                .map_err(|_| bad("UNTIL is not a date"))?
                .and_utc()
        } else {
            let local = if value.len() == 8 {
                chrono::NaiveDate::parse_from_str(value, "%Y%m%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(23, 59, 59))
            } else {
                NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok()
            }
            .ok_or_else(|| bad("UNTIL is not a date"))?;
            match zone {
                Some(tz) => tz
                    .from_local_datetime(&local)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|| local.and_utc()),
                None => local.and_utc(),
            }
        };
        until_year = Some(utc.year());
        parts.push(format!("UNTIL={}", utc_stamp(utc)));
    }
    Ok((parts.join(";"), until_year))
}

impl ScheduleSpec {
    fn zone(&self) -> Result<Option<Tz>, IcsError> {
        let name = self.time_zone.trim();
        if name.is_empty() || tz::is_utc(name) {
            return Ok(None);
        }
        tz::zone(name).map(Some).ok_or_else(|| {
            bad(format!(
                "“{name}” is not a time zone (use an IANA name such as Europe/Berlin)"
            ))
        })
    }

    fn check(&self, method: Method) -> Result<(), IcsError> {
        let uid = self.uid.trim();
        if uid.is_empty() || uid.len() > 255 || uid.chars().any(char::is_control) {
            return Err(bad("the UID must be 1 to 255 characters on one line"));
        }
        if self.end <= self.start {
            return Err(bad("the end must be after the start"));
        }
        if self.end - self.start > chrono::Duration::days(31) {
            return Err(bad("a call cannot last longer than 31 days"));
        }
        if self.title.chars().count() > 500 {
            return Err(bad("the title is longer than 500 characters"));
        }
        check_link(&self.link_url)?;
        if let Some(organizer) = &self.organizer {
            check_email(&organizer.email)?;
        }
        if self.attendees.len() > MAX_ATTENDEES {
            return Err(bad(format!("at most {MAX_ATTENDEES} attendees")));
        }
        for attendee in &self.attendees {
            check_email(&attendee.email)?;
        }
        if method != Method::Publish && self.organizer.is_none() {
            return Err(bad("an invitation or cancellation needs an organizer"));
        }
        if method == Method::Request && self.attendees.is_empty() {
            return Err(bad("an invitation needs at least one attendee"));
        }
        Ok(())
    }

    /// The event's lines, and the zone its times use.
    fn event(
        &self,
        method: Method,
        now: DateTime<Utc>,
    ) -> Result<(Vec<ContentLine>, Option<ZoneUse>), IcsError> {
        self.check(method)?;
        let zone = self.zone()?;
        let rule = match self.rrule.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => {
                let r = r.strip_prefix("RRULE:").unwrap_or(r);
                rrule::check(r)
                    .map_err(|why| bad(format!("the recurrence rule is not valid: {why}")))?;
                Some(normalized_rule(r, zone)?)
            }
            _ => None,
        };
        let stamp = utc_stamp(now);
        let label = match self.label.trim() {
            "" => "Join the call",
            l => l,
        };
        let title = match self.title.trim() {
            "" => "Call",
            t => t,
        };
        let link = self.link_url.as_str();
        let cancelled = self.cancelled || method == Method::Cancel;

        let mut lines = vec![
            ContentLine::build("BEGIN", &[], "VEVENT"),
            ContentLine::build("UID", &[], self.uid.trim()),
            ContentLine::build("DTSTAMP", &[], &stamp),
        ];
        if let Some(created) = self.created {
            lines.push(ContentLine::build("CREATED", &[], &utc_stamp(created)));
        }
        if let Some(modified) = self.last_modified {
            lines.push(ContentLine::build(
                "LAST-MODIFIED",
                &[],
                &utc_stamp(modified),
            ));
        }
        lines.push(ContentLine::build(
            "SEQUENCE",
            &[],
            &self.sequence.to_string(),
        ));
        lines.push(ContentLine::build("SUMMARY", &[], &escape_text(title)));
        lines.push(time_line("DTSTART", self.start, zone));
        lines.push(time_line("DTEND", self.end, zone));
        let mut until_year = None;
        if let Some((rule, until)) = &rule {
            lines.push(ContentLine::build("RRULE", &[], rule));
            until_year = *until;
        }
        let status = if cancelled { "CANCELLED" } else { "CONFIRMED" };
        lines.push(ContentLine::build("STATUS", &[], status));
        lines.push(ContentLine::build("TRANSP", &[], "OPAQUE"));
        if let Some(organizer) = &self.organizer {
            lines.push(person_line("ORGANIZER", organizer, &[]));
        }
        if method != Method::Publish {
            for attendee in &self.attendees {
                let extra: &[(&str, &str)] = if method == Method::Request {
                    &[
                        ("CUTYPE", "INDIVIDUAL"),
                        ("ROLE", "REQ-PARTICIPANT"),
                        ("PARTSTAT", "NEEDS-ACTION"),
                        ("RSVP", "TRUE"),
                    ]
                } else {
                    &[("CUTYPE", "INDIVIDUAL"), ("ROLE", "REQ-PARTICIPANT")]
                };
                lines.push(person_line("ATTENDEE", attendee, extra));
            }
        }
        lines.push(ContentLine::build("LOCATION", &[], &escape_text(link)));
        lines.push(ContentLine::build("URL", &[("VALUE", "URI")], link));
        lines.push(conference_line(link, label));
        let intro = self.description.as_deref().map(str::trim_end).unwrap_or("");
        let block = text_block(label, link);
        let description = if intro.is_empty() {
            block
        } else {
            format!("{intro}\n\n{block}")
        };
        lines.push(ContentLine::build(
            "DESCRIPTION",
            &[],
            &escape_text(&description),
        ));
        lines.push(ContentLine::build(
            "X-ALT-DESC",
            &[("FMTTYPE", "text/html")],
            &escape_text(&html_body(intro, &html_block(label, link))),
        ));
        lines.push(ContentLine::build(LINK_PROPERTY, &[], link));
        lines.push(ContentLine::build("END", &[], "VEVENT"));

        let zone = zone.map(|tz| {
            let from = self.start.year() - 1;
            let last = until_year.unwrap_or(self.end.year()).max(self.end.year());
            ZoneUse {
                tz,
                from,
                to: last.min(from + MAX_ZONE_YEARS),
            }
        });
        Ok((lines, zone))
    }
}

fn calendar(head: Vec<ContentLine>, zones: Vec<ZoneUse>, events: Vec<Vec<ContentLine>>) -> String {
    let size: usize = events.iter().map(Vec::len).sum::<usize>() * 80 + zones.len() * 600;
    let mut out = String::with_capacity(size + 256);
    ContentLine::build("BEGIN", &[], "VCALENDAR").write(&mut out);
    ContentLine::build("VERSION", &[], "2.0").write(&mut out);
    ContentLine::build("PRODID", &[], PRODID).write(&mut out);
    ContentLine::build("CALSCALE", &[], "GREGORIAN").write(&mut out);
    for line in head {
        line.write(&mut out);
    }
    for zone in zones {
        for line in tz::vtimezone(zone.tz, zone.from, zone.to) {
            line.write(&mut out);
        }
    }
    for event in events {
        for line in event {
            line.write(&mut out);
        }
    }
    ContentLine::build("END", &[], "VCALENDAR").write(&mut out);
    out
}

/// Adds `zone` to `zones`, widening the years of a zone already there.
fn merge_zone(zones: &mut Vec<ZoneUse>, zone: ZoneUse) {
    match zones.iter_mut().find(|z| z.tz == zone.tz) {
        Some(z) => {
            z.from = z.from.min(zone.from);
            z.to = z.to.max(zone.to).min(z.from + MAX_ZONE_YEARS);
        }
        None => zones.push(zone),
    }
}

/// A calendar with one scheduled call: to download (`Publish`), to invite
/// (`Request`) or to call it off (`Cancel`).
pub fn schedule_ics(
    spec: &ScheduleSpec,
    method: Method,
    now: DateTime<Utc>,
) -> Result<String, IcsError> {
    let (event, zone) = spec.event(method, now)?;
    let head = vec![ContentLine::build("METHOD", &[], method.as_str())];
    Ok(calendar(head, zone.into_iter().collect(), vec![event]))
}

/// A subscribable calendar (`METHOD:PUBLISH`) called `name` with `calls`; clients
/// are asked to refresh it every hour.
pub fn feed_ics(
    name: &str,
    calls: &[ScheduleSpec],
    now: DateTime<Utc>,
) -> Result<String, IcsError> {
    let name = escape_text(name.trim());
    let head = vec![
        ContentLine::build("METHOD", &[], "PUBLISH"),
        ContentLine::build("NAME", &[], &name),
        ContentLine::build("X-WR-CALNAME", &[], &name),
        ContentLine::build("REFRESH-INTERVAL", &[("VALUE", "DURATION")], "PT1H"),
        ContentLine::build("X-PUBLISHED-TTL", &[], "PT1H"),
    ];
    let mut zones = Vec::new();
    let mut events = Vec::with_capacity(calls.len());
    for call in calls {
        let (event, zone) = call.event(Method::Publish, now)?;
        if let Some(zone) = zone {
            merge_zone(&mut zones, zone);
        }
        events.push(event);
    }
    Ok(calendar(head, zones, events))
}
