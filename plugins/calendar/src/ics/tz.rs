//! Time zones: IANA names (chrono-tz), Windows names as Outlook writes them, and
//! VTIMEZONE components generated from the zone's real transitions.
//!
//! A VTIMEZONE lists the offset in force at the start of the first year asked for,
//! then every transition of at least [`HORIZON_YEARS`] years. Transitions that repeat
//! yearly on one rule (e.g. the last Sunday of March at 02:00) over that span become
//! one observance with an `RRULE`; the last rule of a zone that still changes its
//! clocks is left open, so a series that runs on past the horizon still gets the
//! right offsets. Irregular transitions (rules that no `BYDAY` expresses, such as
//! Egypt's "the day after the last Thursday") are listed as `RDATE`s.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Weekday};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use super::line::ContentLine;

/// The zone called `name`: an IANA name, or a Windows name (`W. Europe Standard
/// Time`) mapped to its IANA zone.
pub fn zone(name: &str) -> Option<Tz> {
    let name = name.trim().trim_matches('"');
    if let Ok(tz) = name.parse::<Tz>() {
        return Some(tz);
    }
    windows_to_iana(name).and_then(|iana| iana.parse().ok())
}

/// Whether `name` means UTC (then times are written with `Z` and need no VTIMEZONE).
pub fn is_utc(name: &str) -> bool {
    matches!(
        name.trim(),
        "UTC" | "Etc/UTC" | "Etc/Universal" | "Etc/Zulu" | "Universal" | "Zulu" | "Z"
    )
}

/// The IANA zone for a Windows time-zone name (the region-less mapping), if known.
pub fn windows_to_iana(name: &str) -> Option<&'static str> {
    WINDOWS_ZONES
        .iter()
        .find(|(windows, _)| windows.eq_ignore_ascii_case(name))
        .map(|(_, iana)| *iana)
}

/// Windows time-zone names and the IANA zone each stands for.
const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("Dateline Standard Time", "Etc/GMT+12"),
    ("UTC-11", "Etc/GMT+11"),
    ("Aleutian Standard Time", "America/Adak"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Marquesas Standard Time", "Pacific/Marquesas"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("UTC-09", "Etc/GMT+9"),
    ("Pacific Standard Time (Mexico)", "America/Tijuana"),
    ("UTC-08", "Etc/GMT+8"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Mountain Standard Time (Mexico)", "America/Mazatlan"),
    ("Mountain Standard Time", "America/Denver"),
    ("Yukon Standard Time", "America/Whitehorse"),
    ("Central America Standard Time", "America/Guatemala"),
    ("Central Standard Time", "America/Chicago"),
    ("Easter Island Standard Time", "Pacific/Easter"),
    ("Central Standard Time (Mexico)", "America/Mexico_City"),
    ("Canada Central Standard Time", "America/Regina"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("Eastern Standard Time (Mexico)", "America/Cancun"),
    ("Eastern Standard Time", "America/New_York"),
    ("Haiti Standard Time", "America/Port-au-Prince"),
    ("Cuba Standard Time", "America/Havana"),
    ("US Eastern Standard Time", "America/Indiana/Indianapolis"),
    ("Turks And Caicos Standard Time", "America/Grand_Turk"),
    ("Paraguay Standard Time", "America/Asuncion"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("Venezuela Standard Time", "America/Caracas"),
    ("Central Brazilian Standard Time", "America/Cuiaba"),
    ("SA Western Standard Time", "America/La_Paz"),
    ("Pacific SA Standard Time", "America/Santiago"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("Tocantins Standard Time", "America/Araguaina"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
    ("SA Eastern Standard Time", "America/Cayenne"),
    ("Argentina Standard Time", "America/Argentina/Buenos_Aires"),
    ("Greenland Standard Time", "America/Nuuk"),
    ("Montevideo Standard Time", "America/Montevideo"),
    ("Magallanes Standard Time", "America/Punta_Arenas"),
    ("Saint Pierre Standard Time", "America/Miquelon"),
    ("Bahia Standard Time", "America/Bahia"),
    ("UTC-02", "Etc/GMT+2"),
    ("Mid-Atlantic Standard Time", "Etc/GMT+2"),
    ("Azores Standard Time", "Atlantic/Azores"),
    ("Cape Verde Standard Time", "Atlantic/Cape_Verde"),
    ("UTC", "Etc/UTC"),
    ("Coordinated Universal Time", "Etc/UTC"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("Sao Tome Standard Time", "Africa/Sao_Tome"),
    ("Morocco Standard Time", "Africa/Casablanca"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("W. Central Africa Standard Time", "Africa/Lagos"),
    ("Jordan Standard Time", "Asia/Amman"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("Middle East Standard Time", "Asia/Beirut"),
    ("Egypt Standard Time", "Africa/Cairo"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("Syria Standard Time", "Asia/Damascus"),
    ("West Bank Standard Time", "Asia/Hebron"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("FLE Standard Time", "Europe/Kyiv"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("South Sudan Standard Time", "Africa/Juba"),
    ("Kaliningrad Standard Time", "Europe/Kaliningrad"),
    ("Sudan Standard Time", "Africa/Khartoum"),
    ("Libya Standard Time", "Africa/Tripoli"),
    ("Namibia Standard Time", "Africa/Windhoek"),
    ("Arabic Standard Time", "Asia/Baghdad"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Arab Standard Time", "Asia/Riyadh"),
    ("Belarus Standard Time", "Europe/Minsk"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("E. Africa Standard Time", "Africa/Nairobi"),
    ("Volgograd Standard Time", "Europe/Volgograd"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Astrakhan Standard Time", "Europe/Astrakhan"),
    ("Azerbaijan Standard Time", "Asia/Baku"),
    ("Russia Time Zone 3", "Europe/Samara"),
    ("Mauritius Standard Time", "Indian/Mauritius"),
    ("Saratov Standard Time", "Europe/Saratov"),
    ("Georgian Standard Time", "Asia/Tbilisi"),
    ("Caucasus Standard Time", "Asia/Yerevan"),
    ("Afghanistan Standard Time", "Asia/Kabul"),
    ("West Asia Standard Time", "Asia/Tashkent"),
    ("Ekaterinburg Standard Time", "Asia/Yekaterinburg"),
    ("Pakistan Standard Time", "Asia/Karachi"),
    ("Qyzylorda Standard Time", "Asia/Qyzylorda"),
    ("India Standard Time", "Asia/Kolkata"),
    ("Sri Lanka Standard Time", "Asia/Colombo"),
    ("Nepal Standard Time", "Asia/Kathmandu"),
    ("Central Asia Standard Time", "Asia/Bishkek"),
    ("Bangladesh Standard Time", "Asia/Dhaka"),
    ("Omsk Standard Time", "Asia/Omsk"),
    ("Myanmar Standard Time", "Asia/Yangon"),
    ("SE Asia Standard Time", "Asia/Bangkok"),
    ("Altai Standard Time", "Asia/Barnaul"),
    ("W. Mongolia Standard Time", "Asia/Hovd"),
    ("North Asia Standard Time", "Asia/Krasnoyarsk"),
    ("N. Central Asia Standard Time", "Asia/Novosibirsk"),
    ("Tomsk Standard Time", "Asia/Tomsk"),
    ("China Standard Time", "Asia/Shanghai"),
    ("North Asia East Standard Time", "Asia/Irkutsk"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("W. Australia Standard Time", "Australia/Perth"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("Ulaanbaatar Standard Time", "Asia/Ulaanbaatar"),
    ("Aus Central W. Standard Time", "Australia/Eucla"),
    ("Transbaikal Standard Time", "Asia/Chita"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("North Korea Standard Time", "Asia/Pyongyang"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("Yakutsk Standard Time", "Asia/Yakutsk"),
    ("Cen. Australia Standard Time", "Australia/Adelaide"),
    ("AUS Central Standard Time", "Australia/Darwin"),
    ("E. Australia Standard Time", "Australia/Brisbane"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("West Pacific Standard Time", "Pacific/Port_Moresby"),
    ("Tasmania Standard Time", "Australia/Hobart"),
    ("Vladivostok Standard Time", "Asia/Vladivostok"),
    ("Lord Howe Standard Time", "Australia/Lord_Howe"),
    ("Bougainville Standard Time", "Pacific/Bougainville"),
    ("Russia Time Zone 10", "Asia/Srednekolymsk"),
    ("Magadan Standard Time", "Asia/Magadan"),
    ("Norfolk Standard Time", "Pacific/Norfolk"),
    ("Sakhalin Standard Time", "Asia/Sakhalin"),
    ("Central Pacific Standard Time", "Pacific/Guadalcanal"),
    ("Russia Time Zone 11", "Asia/Kamchatka"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
    ("UTC+12", "Etc/GMT-12"),
    ("Fiji Standard Time", "Pacific/Fiji"),
    ("Chatham Islands Standard Time", "Pacific/Chatham"),
    ("UTC+13", "Etc/GMT-13"),
    ("Tonga Standard Time", "Pacific/Tongatapu"),
    ("Samoa Standard Time", "Pacific/Apia"),
    ("Line Islands Standard Time", "Pacific/Kiritimati"),
];

/// What is in force at one instant: offset from UTC (seconds), daylight saving or
/// not, the abbreviation.
#[derive(Debug, Clone, PartialEq)]
struct State {
    offset: i32,
    dst: bool,
    name: Option<String>,
}

fn state(tz: Tz, at: i64) -> State {
    let utc = DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .naive_utc();
    let offset = tz.offset_from_utc_datetime(&utc);
    State {
        offset: offset.fix().local_minus_utc(),
        dst: !offset.dst_offset().is_zero(),
        name: offset.abbreviation().map(str::to_string),
    }
}

#[derive(Debug, Clone)]
struct Transition {
    at: i64,
    from: State,
    to: State,
}

impl Transition {
    /// When it happens, in the local time before it (as a VTIMEZONE's DTSTART).
    fn local_onset(&self) -> NaiveDateTime {
        DateTime::from_timestamp(self.at + i64::from(self.from.offset), 0)
            .unwrap_or_default()
            .naive_utc()
    }
}

/// How many years every VTIMEZONE covers at least (the weekdays of dates repeat
/// every 28 years, so a rule that holds this long is the zone's rule).
pub const HORIZON_YEARS: i32 = 30;

/// How far apart the instants are at which the offset is looked up; the exact
/// second of a change is then found by bisection. No zone changes twice within it.
const STEP: i64 = 4 * 86_400;

fn offset_key(tz: Tz, at: i64) -> (i32, bool) {
    let utc = DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .naive_utc();
    let offset = tz.offset_from_utc_datetime(&utc);
    (
        offset.fix().local_minus_utc(),
        !offset.dst_offset().is_zero(),
    )
}

/// The transitions of `tz` between the starts of `from_year` and `to_year + 1`.
fn transitions(tz: Tz, from_year: i32, to_year: i32) -> (State, Vec<Transition>) {
    let start = year_start(from_year);
    let end = year_start(to_year + 1);
    let first = state(tz, start);
    let mut out = Vec::new();
    let mut before = first.clone();
    let mut t = start;
    while t < end {
        let next = (t + STEP).min(end);
        if offset_key(tz, next) != (before.offset, before.dst) {
            // The change is in (t, next]: find the second it happens.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_key(tz, mid) == (before.offset, before.dst) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let to = state(tz, hi);
            out.push(Transition {
                at: hi,
                from: before,
                to: to.clone(),
            });
            before = to;
        }
        t = next;
    }
    (first, out)
}

fn year_start(year: i32) -> i64 {
    NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp())
}

/// A run of yearly transitions on one rule.
struct Run {
    items: Vec<Transition>,
    /// Thresholds `d` for which every item falls on the first such weekday on or
    /// after day `d` of the month.
    lo: i32,
    hi: i32,
    /// Every item falls on the last such weekday of its month.
    all_last: bool,
}

fn day_facts(t: &Transition) -> (i32, bool) {
    let local = t.local_onset();
    let day = local.day() as i32;
    let days_in_month = days_in_month(local.year(), local.month()) as i32;
    (day, day + 7 > days_in_month)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

impl Run {
    fn new(t: Transition) -> Self {
        let (day, last) = day_facts(&t);
        Self {
            items: vec![t],
            lo: day - 6,
            hi: day,
            all_last: last,
        }
    }

    /// Adds `t` if it follows the same yearly rule.
    fn extend(&mut self, t: &Transition) -> bool {
        let prev = self.items.last().expect("a run is never empty");
        let (a, b) = (prev.local_onset(), t.local_onset());
        let same = prev.from == t.from
            && prev.to == t.to
            && b.year() == a.year() + 1
            && a.month() == b.month()
            && a.weekday() == b.weekday()
            && a.time() == b.time();
        if !same {
            return false;
        }
        let (day, last) = day_facts(t);
        let (lo, hi) = (self.lo.max(day - 6), self.hi.min(day));
        let all_last = self.all_last && last;
        if lo > hi && !all_last {
            return false;
        }
        self.lo = lo;
        self.hi = hi;
        self.all_last = all_last;
        self.items.push(t.clone());
        true
    }

    fn by_day(&self) -> String {
        let weekday = weekday_code(self.items[0].local_onset().weekday());
        if self.all_last {
            return format!("BYDAY=-1{weekday}");
        }
        if let Some(d) = (self.lo.max(1)..=self.hi).find(|d| (d - 1) % 7 == 0) {
            return format!("BYDAY={}{weekday}", (d - 1) / 7 + 1);
        }
        let d = self.lo.max(1);
        let days: Vec<String> = (d..d + 7).map(|d| d.to_string()).collect();
        format!("BYDAY={weekday};BYMONTHDAY={}", days.join(","))
    }
}

fn weekday_code(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

/// `+0100`, `-0330`, `+053028` (seconds only when there are any).
fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if sec == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{sec:02}")
    }
}

fn local_stamp(t: NaiveDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn utc_stamp(at: i64) -> String {
    let t = DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .naive_utc();
    format!("{}Z", local_stamp(t))
}

fn observance(
    lines: &mut Vec<ContentLine>,
    from: &State,
    to: &State,
    dtstart: NaiveDateTime,
    rrule: Option<String>,
    rdates: &[NaiveDateTime],
) {
    let kind = if to.dst { "DAYLIGHT" } else { "STANDARD" };
    lines.push(ContentLine::build("BEGIN", &[], kind));
    lines.push(ContentLine::build(
        "TZOFFSETFROM",
        &[],
        &utc_offset(from.offset),
    ));
    lines.push(ContentLine::build(
        "TZOFFSETTO",
        &[],
        &utc_offset(to.offset),
    ));
    if let Some(name) = &to.name {
        lines.push(ContentLine::build(
            "TZNAME",
            &[],
            &super::line::escape_text(name),
        ));
    }
    lines.push(ContentLine::build("DTSTART", &[], &local_stamp(dtstart)));
    if let Some(rule) = rrule {
        lines.push(ContentLine::build("RRULE", &[], &rule));
    }
    if !rdates.is_empty() {
        let list: Vec<String> = rdates.iter().map(|t| local_stamp(*t)).collect();
        lines.push(ContentLine::build("RDATE", &[], &list.join(",")));
    }
    lines.push(ContentLine::build("END", &[], kind));
}

/// A VTIMEZONE for `tz`, right for every instant from the start of `from_year` to
/// the end of `to_year`, and at least [`HORIZON_YEARS`] years (and on, for zones
/// whose rules keep repeating).
pub fn vtimezone(tz: Tz, from_year: i32, to_year: i32) -> Vec<ContentLine> {
    let to_year = to_year.max(from_year + HORIZON_YEARS - 1);
    let (first, all) = transitions(tz, from_year, to_year);
    let mut lines = vec![
        ContentLine::build("BEGIN", &[], "VTIMEZONE"),
        ContentLine::build("TZID", &[], tz.name()),
    ];
    // What is in force from the start of the range.
    let start = DateTime::from_timestamp(year_start(from_year) + i64::from(first.offset), 0)
        .unwrap_or_default()
        .naive_utc();
    observance(&mut lines, &first, &first, start, None, &[]);

    // Yearly runs, separately for the changes into and out of daylight saving time.
    let mut runs: Vec<Run> = Vec::new();
    for kind in [true, false] {
        let mut current: Option<Run> = None;
        for t in all.iter().filter(|t| t.to.dst == kind) {
            let extended = current.as_mut().is_some_and(|run| run.extend(t));
            if !extended {
                runs.extend(current.take());
                current = Some(Run::new(t.clone()));
            }
        }
        runs.extend(current);
    }
    runs.sort_by_key(|r| r.items[0].at);

    // Runs of one transition: listed, one observance per kind of change.
    let mut singles: Vec<(&State, &State, Vec<NaiveDateTime>)> = Vec::new();
    for run in runs.iter().filter(|r| r.items.len() == 1) {
        let t = &run.items[0];
        match singles
            .iter_mut()
            .find(|(from, to, _)| **from == t.from && **to == t.to)
        {
            Some((_, _, onsets)) => onsets.push(t.local_onset()),
            None => singles.push((&t.from, &t.to, vec![t.local_onset()])),
        }
    }
    for (from, to, onsets) in &singles {
        observance(&mut lines, from, to, onsets[0], None, &onsets[1..]);
    }
    for run in runs.iter().filter(|r| r.items.len() > 1) {
        let first = &run.items[0];
        let last = run.items.last().expect("a run is never empty");
        let mut rule = format!(
            "FREQ=YEARLY;BYMONTH={};{}",
            first.local_onset().month(),
            run.by_day()
        );
        let open = last.local_onset().year() == to_year;
        if !open {
            // A day after the last change: some readers compare UNTIL with the
            // local DTSTART as if both were local; a day later is right either way
            // (the next change of this kind is months away).
            rule.push_str(&format!(";UNTIL={}", utc_stamp(last.at + 86_400)));
        }
        observance(
            &mut lines,
            &first.from,
            &first.to,
            first.local_onset(),
            Some(rule),
            &[],
        );
    }
    lines.push(ContentLine::build("END", &[], "VTIMEZONE"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[ContentLine]) -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn every_windows_name_maps_to_a_known_zone() {
        for (windows, iana) in WINDOWS_ZONES {
            assert!(iana.parse::<Tz>().is_ok(), "{windows} → {iana} is unknown");
        }
        assert_eq!(
            zone("W. Europe Standard Time"),
            Some(chrono_tz::Europe::Berlin)
        );
        assert_eq!(zone("Europe/Lisbon"), Some(chrono_tz::Europe::Lisbon));
        assert_eq!(zone("Mars/Olympus"), None);
    }

    #[test]
    fn berlin_gets_open_yearly_rules() {
        let lines = text(&vtimezone(chrono_tz::Europe::Berlin, 2025, 2027));
        let joined = lines.join("\n");
        assert!(joined.contains("TZID:Europe/Berlin"), "{joined}");
        assert!(
            joined.contains(
                "BEGIN:DAYLIGHT\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nTZNAME:CEST\nDTSTART:20250330T020000\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\nEND:DAYLIGHT"
            ),
            "{joined}"
        );
        assert!(
            joined.contains(
                "BEGIN:STANDARD\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nTZNAME:CET\nDTSTART:20251026T030000\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\nEND:STANDARD"
            ),
            "{joined}"
        );
    }

    #[test]
    fn new_york_uses_the_second_and_first_sundays() {
        let joined = text(&vtimezone(chrono_tz::America::New_York, 2026, 2026)).join("\n");
        assert!(
            joined.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU"),
            "{joined}"
        );
        assert!(
            joined.contains("RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU"),
            "{joined}"
        );
    }

    #[test]
    fn zones_without_changes_have_one_observance() {
        let lines = text(&vtimezone(chrono_tz::Asia::Tokyo, 2026, 2026));
        assert_eq!(
            lines,
            [
                "BEGIN:VTIMEZONE",
                "TZID:Asia/Tokyo",
                "BEGIN:STANDARD",
                "TZOFFSETFROM:+0900",
                "TZOFFSETTO:+0900",
                "TZNAME:JST",
                "DTSTART:20260101T090000",
                "END:STANDARD",
                "END:VTIMEZONE"
            ]
        );
    }

    #[test]
    fn offsets_are_written_with_seconds_only_when_needed() {
        assert_eq!(utc_offset(3600), "+0100");
        assert_eq!(utc_offset(-12600), "-0330");
        assert_eq!(utc_offset(19800 + 28), "+053028");
    }
}
