//! A link's optional schedule: when the call is planned, in which time zone, and
//! how it repeats (an RFC 5545 RRULE).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{ScheduleRow, link};
use crate::validate::Invalid;

/// A schedule as submitted.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// Start, RFC 3339 with offset (e.g. `2026-12-01T10:00:00+01:00`).
    pub start: DateTime<Utc>,
    /// End, after `start`.
    pub end: DateTime<Utc>,
    /// IANA time zone the meeting is planned in (e.g. `Europe/Berlin`). Default: `UTC`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Recurrence rule without the `RRULE:` prefix (e.g. `FREQ=WEEKLY;BYDAY=MO`).
    #[serde(default)]
    pub rrule: Option<String>,
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Schedule {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub time_zone: String,
    pub rrule: Option<String>,
}

impl ScheduleInput {
    pub fn validate(self) -> Result<Schedule, Invalid> {
        if self.end <= self.start {
            return Err(Invalid::new("schedule.end", "must be after the start"));
        }
        if self.end - self.start > chrono::Duration::days(31) {
            return Err(Invalid::new(
                "schedule.end",
                "a call cannot last longer than 31 days",
            ));
        }
        let time_zone = self.time_zone.unwrap_or_else(|| "UTC".into());
        time_zone.parse::<chrono_tz::Tz>().map_err(|_| {
            Invalid::new(
                "schedule.time_zone",
                "must be an IANA time zone such as Europe/Berlin",
            )
        })?;
        let rrule = self
            .rrule
            .map(|r| r.trim().trim_start_matches("RRULE:").to_string())
            .filter(|r| !r.is_empty());
        if let Some(rule) = &rrule {
            check_rrule(rule)?;
        }
        Ok(Schedule {
            start: self.start,
            end: self.end,
            time_zone,
            rrule,
        })
    }
}

/// The rule is checked by the plugin contract's check, the one the calendar
/// plugin and the plugin test harness apply too, so that a rule one accepts the
/// others do.
fn check_rrule(rule: &str) -> Result<(), Invalid> {
    confab_plugin_contract::rrule::check(rule).map_err(|why| {
        Invalid::new(
            "schedule.rrule",
            format!("is not a valid recurrence rule: {why}"),
        )
    })
}

impl Schedule {
    /// For people: the start in the meeting's time zone, e.g.
    /// `Mon 7 Dec 2026, 10:00–10:30 (Europe/Berlin), repeats`.
    pub fn describe(&self) -> String {
        let tz: chrono_tz::Tz = self.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let start = self.start.with_timezone(&tz);
        let end = self.end.with_timezone(&tz);
        let end_format = if start.date_naive() == end.date_naive() {
            "%H:%M"
        } else {
            "%a %-d %b %Y, %H:%M"
        };
        let mut text = format!(
            "{}–{} ({})",
            start.format("%a %-d %b %Y, %H:%M"),
            end.format(end_format),
            self.time_zone
        );
        if self.rrule.is_some() {
            text.push_str(", repeats");
        }
        text
    }

    pub fn from_row(link: &link::Model) -> Option<Self> {
        Some(Self {
            start: link.schedule_start?,
            end: link.schedule_end?,
            time_zone: link.schedule_tz.clone().unwrap_or_else(|| "UTC".into()),
            rrule: link.schedule_rrule.clone(),
        })
    }

    /// The schedule as a link's row keeps it.
    pub(crate) fn row(&self) -> ScheduleRow {
        ScheduleRow {
            start: self.start,
            end: self.end,
            time_zone: self.time_zone.clone(),
            rrule: self.rrule.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(rrule: Option<&str>, tz: Option<&str>) -> ScheduleInput {
        ScheduleInput {
            start: "2026-12-01T09:00:00Z".parse().unwrap(),
            end: "2026-12-01T10:00:00Z".parse().unwrap(),
            time_zone: tz.map(Into::into),
            rrule: rrule.map(Into::into),
        }
    }

    #[test]
    fn accepts_a_weekly_meeting() {
        let s = input(
            Some("RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=10"),
            Some("Europe/Berlin"),
        )
        .validate()
        .unwrap();
        assert_eq!(s.rrule.as_deref(), Some("FREQ=WEEKLY;BYDAY=TU;COUNT=10"));
        assert_eq!(s.time_zone, "Europe/Berlin");
    }

    #[test]
    fn describes_the_time_where_the_meeting_happens() {
        let s = input(Some("FREQ=WEEKLY"), Some("Europe/Berlin"))
            .validate()
            .unwrap();
        assert_eq!(
            s.describe(),
            "Tue 1 Dec 2026, 10:00–11:00 (Europe/Berlin), repeats"
        );
    }

    #[test]
    fn rejects_bad_schedules() {
        assert_eq!(
            input(Some("FREQ=SOMETIMES"), None)
                .validate()
                .unwrap_err()
                .field,
            "schedule.rrule"
        );
        assert_eq!(
            input(None, Some("Mars/Olympus"))
                .validate()
                .unwrap_err()
                .field,
            "schedule.time_zone"
        );
        let mut backwards = input(None, None);
        backwards.end = backwards.start;
        assert_eq!(backwards.validate().unwrap_err().field, "schedule.end");
    }
}
