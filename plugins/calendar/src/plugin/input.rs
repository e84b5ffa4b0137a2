//! Reading a schedule from a JSON body or a form. No capability calls here.

use std::collections::HashMap;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use crate::ics::{Person, rrule, tz};

/// What a request says about a call; absent fields keep their value on updates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    /// Minutes (`45`) or an ISO 8601 duration (`PT1H30M`).
    pub duration: Option<String>,
    pub time_zone: Option<String>,
    /// Empty to stop repeating.
    pub rrule: Option<String>,
    pub attendees: Option<Vec<Person>>,
    pub organizer: Option<Person>,
    /// `publish` (a download) or `request` (an invitation).
    pub method: Option<String>,
    /// Schedule this existing link (its id) instead of making a new one.
    pub link: Option<String>,
    /// The link as the user shares it (with its `#fragment`), for `link`.
    pub url: Option<String>,
}

/// A schedule that makes sense: times in UTC, a known zone, a valid rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Times {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub time_zone: String,
    pub rrule: Option<String>,
}

/// `Name <address>` or a bare address.
pub fn person(text: &str) -> Option<Person> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some((name, rest)) = text.split_once('<') {
        let email = rest.trim_end().strip_suffix('>')?.trim().to_string();
        let name = name.trim().trim_matches('"').trim();
        return Some(Person {
            email,
            name: (!name.is_empty()).then(|| name.to_string()),
        });
    }
    Some(Person {
        email: text.to_string(),
        name: None,
    })
}

/// A list of people, one per line or separated by commas or semicolons (not those
/// inside quotes or angle brackets).
pub fn people(text: &str) -> Vec<Person> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angled) = (false, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' => angled = true,
            '>' => angled = false,
            '\n' | ',' | ';' if !quoted && !angled => {
                out.extend(person(&current));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.extend(person(&current));
    out
}

fn json_person(value: &Value) -> Option<Person> {
    match value {
        Value::String(s) => person(s),
        Value::Object(o) => Some(Person {
            email: o.get("email")?.as_str()?.trim().to_string(),
            name: o.get("name").and_then(Value::as_str).map(str::to_string),
        }),
        _ => None,
    }
}

impl ScheduleInput {
    pub fn from_form(form: &HashMap<String, String>) -> Self {
        let get = |k: &str| form.get(k).cloned();
        Self {
            title: get("title"),
            description: get("description"),
            start: get("start"),
            end: get("end").filter(|e| !e.trim().is_empty()),
            duration: get("duration").filter(|d| !d.trim().is_empty()),
            time_zone: get("time_zone").filter(|t| !t.trim().is_empty()),
            rrule: get("rrule"),
            attendees: form.get("attendees").map(|a| people(a)),
            organizer: form.get("organizer").and_then(|o| person(o)),
            method: get("method"),
            link: get("link").filter(|l| !l.trim().is_empty()),
            url: get("url").filter(|u| !u.trim().is_empty()),
        }
    }

    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Value::Object(o) = value else {
            return Err("the body must be a JSON object".into());
        };
        let text = |k: &str| -> Option<String> {
            match o.get(k)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let attendees = match o.get("attendees") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.iter().filter_map(json_person).collect()),
            Some(Value::String(s)) => Some(people(s)),
            Some(_) => return Err("attendees must be a list".into()),
        };
        Ok(Self {
            title: text("title"),
            description: text("description"),
            start: text("start"),
            end: text("end"),
            duration: text("duration").or_else(|| text("duration_minutes")),
            time_zone: text("time_zone"),
            rrule: match o.get("rrule") {
                Some(Value::Null) => Some(String::new()),
                _ => text("rrule"),
            },
            attendees,
            organizer: o.get("organizer").and_then(json_person),
            method: text("method"),
            link: text("link").filter(|l| !l.trim().is_empty()),
            url: text("url").filter(|u| !u.trim().is_empty()),
        })
    }

    /// The times this input gives, over `current` (an update) or alone (new).
    pub fn times(&self, current: Option<&Times>) -> Result<Times, String> {
        let time_zone = match (&self.time_zone, current) {
            (Some(z), _) => z.trim().to_string(),
            (None, Some(c)) => c.time_zone.clone(),
            (None, None) => "UTC".to_string(),
        };
        let zone = if tz::is_utc(&time_zone) {
            None
        } else {
            Some(tz::zone(&time_zone).ok_or_else(|| {
                format!("“{time_zone}” is not a time zone; use an IANA name such as Europe/Berlin")
            })?)
        };
        let time_zone = zone.map_or("UTC".to_string(), |z| z.name().to_string());
        let start = match (&self.start, current) {
            (Some(s), _) => instant(s, zone).ok_or_else(|| {
                format!("“{s}” is not a start time (2026-12-01T10:00, or with an offset)")
            })?,
            (None, Some(c)) => c.start,
            (None, None) => return Err("the start is missing".into()),
        };
        let end = match (&self.end, &self.duration, current) {
            (Some(e), _, _) => {
                instant(e, zone).ok_or_else(|| format!("“{e}” is not an end time"))?
            }
            (None, Some(d), _) => {
                start
                    + duration(d).ok_or_else(|| {
                        format!("“{d}” is not a duration (minutes, or e.g. PT1H30M)")
                    })?
            }
            // Moving a call keeps its length.
            (None, None, Some(c)) => start + (c.end - c.start),
            (None, None, None) => return Err("give an end or a duration".into()),
        };
        if end <= start {
            return Err("the end must be after the start".into());
        }
        if end - start > Duration::days(31) {
            return Err("a call cannot last longer than 31 days".into());
        }
        let rrule = match (&self.rrule, current) {
            (Some(r), _) => {
                let r = r.trim();
                let r = r.strip_prefix("RRULE:").unwrap_or(r);
                if r.is_empty() {
                    None
                } else {
                    rrule::check(r)
                        .map_err(|why| format!("the recurrence rule is not valid: {why}"))?;
                    Some(r.to_string())
                }
            }
            (None, Some(c)) => c.rrule.clone(),
            (None, None) => None,
        };
        Ok(Times {
            start,
            end,
            time_zone,
            rrule,
        })
    }
}

/// RFC 3339 with an offset, or a local time (`2026-12-01T10:00`, as an HTML
/// `datetime-local` field sends it) in `zone`.
pub fn instant(text: &str, zone: Option<chrono_tz::Tz>) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())?;
    match zone {
        None => Some(local.and_utc()),
        Some(tz) => match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            // A time skipped when the clocks go forward does not exist.
            LocalResult::None => None,
        },
    }
}

/// Minutes (`45`) or an ISO 8601 duration of days, hours, minutes, seconds.
pub fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(minutes) = text.parse::<i64>() {
        return (minutes > 0).then(|| Duration::minutes(minutes));
    }
    let rest = text.strip_prefix(['P', 'p'])?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut total = Duration::zero();
    let mut any = false;
    let mut take = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, seconds) = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?;
            total += Duration::seconds(number.parse::<i64>().ok()?.checked_mul(*seconds)?);
            number.clear();
            any = true;
        }
        number.is_empty().then_some(())
    };
    take(days, &[('W', 604_800), ('D', 86_400)])?;
    take(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    (any && total > Duration::zero()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_people() {
        let p = |email: &str, name: Option<&str>| Person {
            email: email.into(),
            name: name.map(Into::into),
        };
        assert_eq!(
            people(
                "Zoë Ōkubo <zoe@example.net>, bo@example.org\n\"Doe, Jane\" <jane@example.com>;"
            ),
            vec![
                p("zoe@example.net", Some("Zoë Ōkubo")),
                p("bo@example.org", None),
                p("jane@example.com", Some("Doe, Jane")),
            ]
        );
    }

    #[test]
    fn reads_times_in_the_meetings_zone() {
        let berlin = Some(chrono_tz::Europe::Berlin);
        assert_eq!(
            instant("2026-12-01T10:00", berlin).unwrap().to_rfc3339(),
            "2026-12-01T09:00:00+00:00"
        );
        assert_eq!(
            instant("2026-12-01T10:00:00-05:00", berlin)
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T15:00:00+00:00"
        );
        assert_eq!(
            instant("2026-03-29T02:30", berlin),
            None,
            "skipped by the clocks"
        );
        assert_eq!(instant("tomorrow", None), None);
    }

    #[test]
    fn reads_durations() {
        assert_eq!(duration("45"), Some(Duration::minutes(45)));
        assert_eq!(duration("PT1H30M"), Some(Duration::minutes(90)));
        assert_eq!(duration("P1DT2H"), Some(Duration::hours(26)));
        for bad in ["", "0", "-5", "PT", "P1X", "PT5", "1h"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn updates_keep_what_they_do_not_change() {
        let first = ScheduleInput {
            start: Some("2026-12-01T10:00".into()),
            duration: Some("30".into()),
            time_zone: Some("Europe/Berlin".into()),
            rrule: Some("RRULE:FREQ=WEEKLY".into()),
            ..Default::default()
        }
        .times(None)
        .unwrap();
        assert_eq!(first.rrule.as_deref(), Some("FREQ=WEEKLY"));
        let moved = ScheduleInput {
            start: Some("2026-12-01T11:00".into()),
            ..Default::default()
        }
        .times(Some(&first))
        .unwrap();
        assert_eq!(moved.end - moved.start, Duration::minutes(30));
        assert_eq!(moved.time_zone, "Europe/Berlin");
        assert_eq!(moved.rrule, first.rrule);
        let once = ScheduleInput {
            rrule: Some(String::new()),
            ..Default::default()
        }
        .times(Some(&first))
        .unwrap();
        assert_eq!(once.rrule, None);
        assert!(ScheduleInput::default().times(None).is_err());
        let bad = ScheduleInput {
            start: Some("2026-12-01T10:00".into()),
            duration: Some("30".into()),
            rrule: Some("FREQ=SOMETIMES".into()),
            ..Default::default()
        };
        assert!(bad.times(None).unwrap_err().contains("recurrence"));
    }
}
