//! When a call is, in words, for the mails: `Tuesday 1 December 2026, 10:00–10:45
//! (Europe/Berlin, UTC+01:00)` and `every week on Tuesday`. No capability calls.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use confab_calendar::ics::{rrule, tz};
use serde::{Deserialize, Serialize};

/// A link's schedule as the plugin keeps it (the SDK's `Schedule`: Unix
/// milliseconds, an IANA zone, an RRULE without `RRULE:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct When {
    pub start: i64,
    pub end: i64,
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
}

impl When {
    pub fn start_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.start).unwrap_or_default()
    }

    pub fn end_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.end).unwrap_or_default()
    }

    /// The times in the meeting's own zone, with the zone:
    /// `Tuesday 1 December 2026, 10:00–10:45 (Europe/Berlin, UTC+01:00)`.
    pub fn describe(&self) -> String {
        let (start, end) = (self.start_utc(), self.end_utc());
        match tz::zone(&self.time_zone).filter(|_| !tz::is_utc(&self.time_zone)) {
            Some(zone) => {
                let start = start.with_timezone(&zone);
                let offset = start.format("%:z").to_string();
                format!(
                    "{} ({}, UTC{offset})",
                    span(&start, &end.with_timezone(&zone)),
                    zone.name()
                )
            }
            None => format!("{} (UTC)", span(&start, &end)),
        }
    }

    /// Whether the call repeats with no last time (no `COUNT`, no `UNTIL`).
    pub fn repeats_forever(&self) -> bool {
        self.rule()
            .is_some_and(|r| rrule::part(r, "COUNT").is_none() && rrule::part(r, "UNTIL").is_none())
    }

    /// When the call (the last time of a series that ends) is over, in Unix
    /// seconds; for a series with `COUNT` an upper bound (every time a whole
    /// `INTERVAL` of its `FREQ` apart).
    pub fn last_end(&self) -> i64 {
        let end = self.end.div_euclid(1000);
        let Some(rule) = self.rule() else {
            return end;
        };
        if let Some(until) = rrule::part(rule, "UNTIL")
            .and_then(|u| u.get(..8))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .and_then(|d| d.and_hms_opt(23, 59, 59))
        {
            return until.and_utc().timestamp().max(end);
        }
        let number = |name: &str| {
            rrule::part(rule, name)
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(1)
        };
        let period = match rrule::part(rule, "FREQ")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("WEEKLY") => 7,
            Some("MONTHLY") => 31,
            Some("YEARLY") => 366,
            _ => 1,
        } * 86_400;
        let span = number("COUNT")
            .saturating_mul(number("INTERVAL"))
            .saturating_mul(period)
            .min(100 * 366 * 86_400);
        end.saturating_add(span)
    }

    fn rule(&self) -> Option<&str> {
        self.rrule
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }

    /// How the call repeats, in words (`every week on Tuesday`), if it does.
    pub fn repeats(&self) -> Option<String> {
        self.rrule
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(repeats)
    }
}

fn span<Z: TimeZone>(start: &DateTime<Z>, end: &DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    let day = "%A %-d %B %Y, %H:%M";
    if start.date_naive() == end.date_naive() {
        format!("{}–{}", start.format(day), end.format("%H:%M"))
    } else {
        format!("{} – {}", start.format(day), end.format(day))
    }
}

const DAYS: [(&str, &str); 7] = [
    ("MO", "Monday"),
    ("TU", "Tuesday"),
    ("WE", "Wednesday"),
    ("TH", "Thursday"),
    ("FR", "Friday"),
    ("SA", "Saturday"),
    ("SU", "Sunday"),
];

/// A recurrence rule in words. Rules beyond the usual ones are just `repeats`.
fn repeats(rule: &str) -> String {
    let part = |name: &str| rrule::part(rule, name).map(str::to_ascii_uppercase);
    let interval = part("INTERVAL")
        .and_then(|i| i.parse::<u32>().ok())
        .unwrap_or(1);
    let every = |one: &str, many: &str| match interval {
        1 => format!("every {one}"),
        n => format!("every {n} {many}"),
    };
    let days: Option<Vec<&str>> = part("BYDAY").map(|list| {
        list.split(',')
            .filter_map(|d| DAYS.iter().find(|(code, _)| *code == d).map(|(_, n)| *n))
            .collect()
    });
    let mut text = match part("FREQ").as_deref() {
        Some("DAILY") => every("day", "days"),
        Some("WEEKLY") => match days.as_deref() {
            Some(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]) if interval == 1 => {
                "every weekday".to_string()
            }
            Some(list) if !list.is_empty() => {
                format!("{} on {}", every("week", "weeks"), and_list(list))
            }
            _ => every("week", "weeks"),
        },
        Some("MONTHLY") => every("month", "months"),
        Some("YEARLY") => every("year", "years"),
        _ => "repeats".to_string(),
    };
    if let Some(count) = part("COUNT") {
        text.push_str(&format!(", {count} times"));
    } else if let Some(until) = part("UNTIL")
        && let Some(date) = until
            .get(..8)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
    {
        text.push_str(&format!(", until {}", date.format("%-d %B %Y")));
    }
    text
}

fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn when(zone: &str, rrule: Option<&str>) -> When {
        // 2026-12-01T09:00Z, 45 minutes.
        let start = 1_796_115_600_000;
        When {
            start,
            end: start + 45 * 60_000,
            time_zone: zone.into(),
            rrule: rrule.map(Into::into),
        }
    }

    #[test]
    fn says_when_in_the_meetings_zone() {
        assert_eq!(
            when("Europe/Berlin", None).describe(),
            "Tuesday 1 December 2026, 10:00–10:45 (Europe/Berlin, UTC+01:00)"
        );
        assert_eq!(
            when("UTC", None).describe(),
            "Tuesday 1 December 2026, 09:00–09:45 (UTC)"
        );
        assert_eq!(
            when("America/Los_Angeles", None).describe(),
            "Tuesday 1 December 2026, 01:00–01:45 (America/Los_Angeles, UTC-08:00)"
        );
        let mut long = when("Asia/Tokyo", None);
        long.end += 86_400_000;
        assert_eq!(
            long.describe(),
            "Tuesday 1 December 2026, 18:00 – Wednesday 2 December 2026, 18:45 (Asia/Tokyo, UTC+09:00)"
        );
    }

    #[test]
    fn says_how_it_repeats() {
        let words = |rule: &str| when("UTC", Some(rule)).repeats().unwrap();
        assert_eq!(words("FREQ=WEEKLY"), "every week");
        assert_eq!(words("FREQ=WEEKLY;BYDAY=TU"), "every week on Tuesday");
        assert_eq!(
            words("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR"),
            "every 2 weeks on Monday, Wednesday and Friday"
        );
        assert_eq!(words("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"), "every weekday");
        assert_eq!(words("FREQ=DAILY;COUNT=5"), "every day, 5 times");
        assert_eq!(
            words("FREQ=MONTHLY;UNTIL=20270630T000000Z"),
            "every month, until 30 June 2027"
        );
        assert_eq!(words("FREQ=HOURLY"), "repeats");
        assert_eq!(when("UTC", None).repeats(), None);
    }

    #[test]
    fn knows_when_the_last_call_is_over() {
        let once = when("UTC", None);
        let end = once.end / 1000;
        assert_eq!(once.last_end(), end);
        assert!(!once.repeats_forever());
        assert!(when("UTC", Some("FREQ=WEEKLY")).repeats_forever());
        let until = when("UTC", Some("FREQ=WEEKLY;UNTIL=20270105T090000Z"));
        assert!(!until.repeats_forever());
        assert_eq!(until.last_end(), 1_799_193_599); // 2027-01-05T23:59:59Z
        let count = when("UTC", Some("FREQ=WEEKLY;INTERVAL=2;COUNT=3"));
        assert_eq!(count.last_end(), end + 6 * 7 * 86_400);
    }
}
