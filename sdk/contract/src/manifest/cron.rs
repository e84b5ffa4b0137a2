//! Five-field cron expressions for plugin timers, in UTC:
//! `minute hour day-of-month month day-of-week`.
//!
//! Each field is `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from
//! `a` to the field's end), or a comma-separated list of those. Months and days of
//! the week may also be written as `jan`…`dec` and `sun`…`sat`; Sunday is 0 or 7.
//! As in classic cron, when both day-of-month and day-of-week are restricted (neither
//! starts with `*`), a day matches if either matches.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// The day-of-month field starts with `*`.
    any_day: bool,
    /// The day-of-week field starts with `*`.
    any_weekday: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field::new("minute", 0, 59, &[]);
const HOUR: Field = Field::new("hour", 0, 23, &[]);
const DAY: Field = Field::new("day of month", 1, 31, &[]);
const MONTH: Field = Field::new(
    "month",
    1,
    12,
    &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
);
const WEEKDAY: Field = Field::new(
    "day of week",
    0,
    7,
    &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
);

/// How far ahead [`Cron::next_after`] looks (covers Feb 29 on a given weekday).
const HORIZON_YEARS: i32 = 50;

impl Field {
    const fn new(name: &'static str, min: u32, max: u32, names: &'static [&'static str]) -> Self {
        Self {
            name,
            min,
            max,
            names,
        }
    }

    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0 (Sunday).
            return Ok(i as u32 + self.min);
        }
        let n: u32 = text
            .parse()
            .map_err(|_| format!("{} {text:?} is not a number", self.name))?;
        if !(self.min..=self.max).contains(&n) {
            return Err(format!(
                "{} {n} is out of range {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(n)
    }

    /// The values a field allows, as bits.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut bits = 0u64;
        for part in text.split(',') {
            if part.is_empty() {
                return Err(format!("{} {text:?} has an empty list item", self.name));
            }
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step
                        .parse()
                        .map_err(|_| format!("{} step {step:?} is not a number", self.name))?;
                    if step == 0 || step > self.max {
                        return Err(format!(
                            "{} step {step} must be 1 to {}",
                            self.name, self.max
                        ));
                    }
                    (range, Some(step))
                }
                None => (part, None),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else {
                let v = self.value(range)?;
                // `a/n` runs from a to the end of the field.
                (v, if step.is_some() { self.max } else { v })
            };
            if low > high {
                return Err(format!("{} range {range:?} runs backwards", self.name));
            }
            for v in (low..=high).step_by(step.unwrap_or(1) as usize) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`; the error says which field
    /// is wrong and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "{text:?} must have 5 fields (minute hour day-of-month month day-of-week), not {}",
                fields.len()
            ));
        };
        let mut weekdays = WEEKDAY.parse(weekday)?;
        if has(weekdays, 7) {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Cron {
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)?,
            days: DAY.parse(day)?,
            months: MONTH.parse(month)?,
            weekdays,
            any_day: day.starts_with('*'),
            any_weekday: weekday.starts_with('*'),
        };
        let reference = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default();
        if cron.next_after(reference).is_none() {
            return Err(format!("{text:?} never fires (no such day)"));
        }
        Ok(cron)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = has(self.days, date.day());
        let weekday = has(self.weekdays, date.weekday().num_days_from_sunday());
        if self.any_day || self.any_weekday {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// Whether the expression fires in the minute of `t`.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        has(self.months, t.month())
            && self.day_matches(t.date_naive())
            && has(self.hours, t.hour())
            && has(self.minutes, t.minute())
    }

    /// The first minute strictly after `now` at which the expression fires.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = now.naive_utc();
        let minute = start.date().and_hms_opt(start.hour(), start.minute(), 0)?;
        let mut t = minute + Duration::minutes(1);
        let give_up = start.year() + HORIZON_YEARS;
        while t.year() <= give_up {
            let date = t.date();
            if !has(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_time(NaiveTime::MIN);
            } else if !self.day_matches(date) {
                t = date.succ_opt()?.and_time(NaiveTime::MIN);
            } else if !has(self.hours, t.hour()) {
                t = at_hour(date, t.hour() + 1)?;
            } else if !has(self.minutes, t.minute()) {
                t += Duration::minutes(1);
            } else {
                return Some(t.and_utc());
            }
        }
        None
    }
}

/// `hour`:00 on `date`, or midnight of the next day after 23.
fn at_hour(date: NaiveDate, hour: u32) -> Option<NaiveDateTime> {
    if hour > 23 {
        Some(date.succ_opt()?.and_time(NaiveTime::MIN))
    } else {
        date.and_hms_opt(hour, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn next(expr: &str, now: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(at(now))
            .unwrap()
            .format("%Y-%m-%d %H:%M %a")
            .to_string()
    }

    #[test]
    fn the_next_fire_time_follows_each_field() {
        // Daily at 03:00: later today, or tomorrow once it has passed.
        assert_eq!(
            next("0 3 * * *", "2026-11-21T01:59:30Z"),
            "2026-11-21 03:00 Sat"
        );
        assert_eq!(
            next("0 3 * * *", "2026-11-21T03:00:00Z"),
            "2026-11-22 03:00 Sun",
            "strictly after now, even at the very minute"
        );
        assert_eq!(
            next("0 3 * * *", "2026-12-31T03:00:10Z"),
            "2027-01-01 03:00 Fri"
        );
        // Every minute.
        assert_eq!(
            next("* * * * *", "2026-11-21T12:00:59Z"),
            "2026-11-21 12:01 Sat"
        );
        // Steps, ranges and lists.
        assert_eq!(
            next("*/15 * * * *", "2026-11-21T12:16:00Z"),
            "2026-11-21 12:30 Sat"
        );
        assert_eq!(
            next("5-10/5 9-17 * * *", "2026-11-21T17:10:00Z"),
            "2026-11-22 09:05 Sun"
        );
        assert_eq!(
            next("0 8,20 * * *", "2026-11-21T08:00:00Z"),
            "2026-11-21 20:00 Sat"
        );
        assert_eq!(
            next("30/10 * * * *", "2026-11-21T12:55:00Z"),
            "2026-11-21 13:30 Sat"
        );
        // Weekdays, by number and by name; 7 is Sunday too.
        assert_eq!(
            next("0 9 * * 1-5", "2026-11-21T10:00:00Z"),
            "2026-11-23 09:00 Mon"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2026-11-21T10:00:00Z"),
            "2026-11-23 09:00 Mon"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-11-21T10:00:00Z"),
            "2026-11-22 00:00 Sun"
        );
        // Months and days of the month.
        assert_eq!(
            next("0 0 1 * *", "2026-11-21T00:00:00Z"),
            "2026-12-01 00:00 Tue"
        );
        assert_eq!(
            next("15 10 1 jan,jul *", "2026-11-21T00:00:00Z"),
            "2027-01-01 10:15 Fri"
        );
        assert_eq!(
            next("0 0 31 * *", "2026-11-21T00:00:00Z"),
            "2026-12-31 00:00 Thu"
        );
        // Only in leap years.
        assert_eq!(
            next("0 12 29 2 *", "2026-11-21T00:00:00Z"),
            "2028-02-29 12:00 Tue"
        );
        // Both day fields restricted: either one matches.
        assert_eq!(
            next("0 0 25 * 1", "2026-11-21T00:00:00Z"),
            "2026-11-23 00:00 Mon"
        );
        assert_eq!(
            next("0 0 22 * 1", "2026-11-21T00:00:00Z"),
            "2026-11-22 00:00 Sun"
        );
        // A day-of-month step with every weekday: both must match.
        assert_eq!(
            next("0 0 */10 * *", "2026-11-21T00:00:00Z"),
            "2026-12-01 00:00 Tue"
        );
    }

    #[test]
    fn matching_agrees_with_the_next_fire_time() {
        let cron = Cron::parse("0 3 * * *").unwrap();
        assert!(cron.matches(at("2026-11-21T03:00:45Z")));
        assert!(!cron.matches(at("2026-11-21T03:01:00Z")));
        let cron = Cron::parse("*/20 6-7 1,15 * sun").unwrap();
        let mut t = at("2026-01-01T00:00:00Z");
        for _ in 0..200 {
            let n = cron.next_after(t).unwrap();
            assert!(cron.matches(n), "{n}");
            // Nothing in between matches.
            let mut m = t + Duration::minutes(1);
            while m < n {
                assert!(!cron.matches(m), "{m} before {n}");
                m += Duration::minutes(1);
            }
            t = n;
        }
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, needle) in [
            ("0 3 * *", "5 fields"),
            ("0 3 * * * *", "5 fields"),
            ("60 * * * *", "minute 60 is out of range 0-59"),
            ("* 24 * * *", "hour 24"),
            ("* * 0 * *", "day of month 0"),
            ("* * * 13 *", "month 13"),
            ("* * * * 8", "day of week 8"),
            ("*/0 * * * *", "step 0"),
            ("*/90 * * * *", "step 90"),
            ("10-5 * * * *", "runs backwards"),
            ("1,,2 * * * *", "empty list item"),
            ("x * * * *", "minute \"x\" is not a number"),
            ("* * * foo *", "month \"foo\""),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
        ] {
            let err = Cron::parse(expr).unwrap_err();
            assert!(err.contains(needle), "{expr}: {err}");
        }
    }
}
