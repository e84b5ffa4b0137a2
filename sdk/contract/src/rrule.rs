//! Checking recurrence rules (RFC 5545 §3.3.10) before anything is written: the
//! server checks a link's schedule with this, the calendar plugin an imported or
//! submitted event's, and the test harness a plugin's call.

/// Longest rule accepted, in characters.
pub const MAX_RRULE_CHARS: usize = 512;

const WEEKDAYS: [&str; 7] = ["SU", "MO", "TU", "WE", "TH", "FR", "SA"];

/// Checks `rule` (without the `RRULE:` prefix); the error says what is wrong, for
/// people.
pub fn check(rule: &str) -> Result<(), String> {
    if rule.is_empty() {
        return Err("the rule is empty".into());
    }
    if rule.len() > MAX_RRULE_CHARS {
        return Err(format!(
            "the rule is longer than {MAX_RRULE_CHARS} characters"
        ));
    }
    if rule.chars().any(char::is_control) {
        return Err("the rule must be one line without control characters".into());
    }
    let mut seen: Vec<String> = Vec::new();
    for part in rule.split(';') {
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("“{part}” is not NAME=VALUE"));
        };
        let name = name.to_ascii_uppercase();
        if value.is_empty() {
            return Err(format!("{name} has no value"));
        }
        if seen.contains(&name) {
            return Err(format!("{name} appears twice"));
        }
        let list = || value.split(',');
        let ok = match name.as_str() {
            "FREQ" => matches!(
                value.to_ascii_uppercase().as_str(),
                "SECONDLY" | "MINUTELY" | "HOURLY" | "DAILY" | "WEEKLY" | "MONTHLY" | "YEARLY"
            ),
            "UNTIL" => is_date_or_date_time(value),
            "COUNT" | "INTERVAL" => value.parse::<u32>().is_ok_and(|n| n >= 1),
            "BYSECOND" => list().all(|v| in_range(v, 0, 60, false)),
            "BYMINUTE" => list().all(|v| in_range(v, 0, 59, false)),
            "BYHOUR" => list().all(|v| in_range(v, 0, 23, false)),
            "BYDAY" => list().all(is_weekday_num),
            "BYMONTHDAY" => list().all(|v| in_range(v, 1, 31, true)),
            "BYYEARDAY" | "BYSETPOS" => list().all(|v| in_range(v, 1, 366, true)),
            "BYWEEKNO" => list().all(|v| in_range(v, 1, 53, true)),
            // RFC 7529 allows leap months such as 5L with RSCALE.
            "BYMONTH" => list().all(|v| in_range(v.trim_end_matches(['L', 'l']), 1, 13, false)),
            "WKST" => WEEKDAYS.contains(&value.to_ascii_uppercase().as_str()),
            "RSCALE" => value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "SKIP" => matches!(
                value.to_ascii_uppercase().as_str(),
                "OMIT" | "BACKWARD" | "FORWARD"
            ),
            n if n.starts_with("X-") => true,
            _ => return Err(format!("{name} is not a part of a recurrence rule")),
        };
        if !ok {
            return Err(format!("{name}={value} is out of range or malformed"));
        }
        seen.push(name);
    }
    if !seen.iter().any(|n| n == "FREQ") {
        return Err("FREQ is missing (e.g. FREQ=WEEKLY)".into());
    }
    if seen.iter().any(|n| n == "COUNT") && seen.iter().any(|n| n == "UNTIL") {
        return Err("COUNT and UNTIL cannot both be given".into());
    }
    Ok(())
}

/// The value of `part` (e.g. `UNTIL`) in `rule`, if present.
pub fn part<'a>(rule: &'a str, part: &str) -> Option<&'a str> {
    rule.split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.eq_ignore_ascii_case(part))
        .map(|(_, v)| v)
}

fn in_range(value: &str, min: i32, max: i32, signed: bool) -> bool {
    let digits = if signed {
        value.strip_prefix(['+', '-']).unwrap_or(value)
    } else {
        value
    };
    !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits
            .parse::<i32>()
            .is_ok_and(|n| (min..=max).contains(&n))
}

fn is_weekday_num(value: &str) -> bool {
    let upper = value.to_ascii_uppercase();
    // The day is two ASCII letters; anything else (such as a multi-byte character
    // where they should be) is not a weekday.
    if upper.len() < 2 || !upper.is_char_boundary(upper.len() - 2) {
        return false;
    }
    let (ordinal, day) = upper.split_at(upper.len() - 2);
    WEEKDAYS.contains(&day) && (ordinal.is_empty() || in_range(ordinal, 1, 53, true))
}

/// `YYYYMMDD` or `YYYYMMDDTHHMMSS` with an optional `Z`, a real date and time.
pub fn is_date_or_date_time(value: &str) -> bool {
    let utc = value.ends_with(['Z', 'z']);
    let value = value.strip_suffix(['Z', 'z']).unwrap_or(value);
    let (date, time) = match value.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if chrono::NaiveDate::parse_from_str(date, "%Y%m%d").is_err() {
        return false;
    }
    match time {
        None => !utc,
        Some(t) => {
            t.len() == 6
                && t.bytes().all(|b| b.is_ascii_digit())
                && t[0..2] <= *"23"
                && t[2..4] <= *"59"
                && t[4..6] <= *"60"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rules_calendars_write() {
        for rule in [
            "FREQ=WEEKLY;BYDAY=MO,WE,FR",
            "FREQ=WEEKLY;WKST=SU;UNTIL=20261231T225959Z;BYDAY=TU",
            "FREQ=MONTHLY;BYDAY=-1FR;COUNT=12",
            "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
            "FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO,TU,WE,TH,FR",
            "freq=daily;interval=2",
            "FREQ=DAILY;UNTIL=20270101",
        ] {
            assert_eq!(check(rule), Ok(()), "{rule}");
        }
    }

    #[test]
    fn refuses_malformed_rules() {
        for rule in [
            "",
            "BYDAY=MO",
            "FREQ=SOMETIMES",
            "FREQ=WEEKLY;FREQ=DAILY",
            "FREQ=WEEKLY;COUNT=0",
            "FREQ=WEEKLY;COUNT=3;UNTIL=20270101",
            "FREQ=WEEKLY;BYDAY=XX",
            "FREQ=WEEKLY;BYDAY=60MO",
            // A multi-byte character where the day's letters go (found by fuzzing).
            "FREQ=WEEKLY;BYDAY=\u{3e8}U",
            "FREQ=WEEKLY;BYDAY=1é",
            "FREQ=MONTHLY;BYMONTHDAY=32",
            "FREQ=WEEKLY;UNTIL=20271301",
            "FREQ=WEEKLY;UNTIL=2027-01-01",
            "FREQ=WEEKLY;COLOR=RED",
            "FREQ=WEEKLY;;",
            "FREQ",
            "FREQ=WEEKLY;X-NOTE=a\nb",
        ] {
            assert!(check(rule).is_err(), "{rule} was accepted");
        }
    }
}
