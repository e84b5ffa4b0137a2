//! The ICS engine: reads iCalendar files (RFC 5545) as they come from Google
//! Calendar, Outlook/Exchange, Apple Calendar and Thunderbird, puts a call link into
//! their events, and writes new calendars for scheduled calls and feeds. Pure Rust,
//! no plugin capability: it runs the same on the host and in the plugin.
//!
//! # Reading and changing foreign files
//!
//! [`Calendar::parse`] keeps every content line as it came (its unfolded text, and
//! its physical lines when they were well folded), so whatever the engine does not
//! change is written back byte for byte: other properties, parameters, VTIMEZONEs,
//! alarms, attendees, `X-` properties, other components. It does not go through a
//! typed model, which would reorder, re-escape or drop things (the `icalendar`
//! crate's typed model keeps one of several `CONFERENCE` lines and adds `DTSTAMP`
//! and `UID` to VTIMEZONEs; its low-level parser unescapes TEXT values and drops the
//! quotes of parameter values, so it cannot write a file back unchanged either).
//!
//! [`Calendar::with_links`] puts a link into the events (one link per UID, so a
//! recurring series and its `RECURRENCE-ID` exceptions share it):
//!
//! - `LOCATION`: the link is added after the existing text (`Room 4 | https://…`);
//! - `URL;VALUE=URI`: added when the event has none (an event's own URL is kept);
//! - `CONFERENCE;VALUE=URI;FEATURE=VIDEO;LABEL=…` (RFC 7986), next to any others;
//! - `DESCRIPTION`: a join block between [`BLOCK_START`] and [`BLOCK_END`];
//! - `X-ALT-DESC;FMTTYPE=text/html` (Outlook's HTML body): the same block between
//!   HTML comments, or a new HTML body made from the description;
//! - `X-CONFAB-LINK`: the link written, so that a later submission with another
//!   link replaces it everywhere instead of adding a second one.
//!
//! An event that changes gets `SEQUENCE` + 1 and `LAST-MODIFIED`; an event that
//! already has the link is left as it is, so submitting the output again gives the
//! same output. Events without `DTSTAMP` get one, events without `UID` get one made
//! from their content (the same content gives the same UID).
//!
//! # Writing
//!
//! [`schedule_ics`] writes a scheduled call (`METHOD:PUBLISH` for a download,
//! `REQUEST` for invitations, `CANCEL`), [`feed_ics`] many of them for a
//! subscription. Times are written in the meeting's time zone with a VTIMEZONE
//! generated from the zone's transitions (see [`tz`]), or in UTC (`Z`) for UTC;
//! every event has `UID` and `DTSTAMP`; `PRODID` is [`PRODID`]; lines end with CRLF
//! and are folded at 75 octets without splitting a UTF-8 character.
//!
//! # Limits
//!
//! Input of at most [`MAX_INPUT_BYTES`] with at most [`MAX_EVENTS`] events;
//! anything else is refused with an [`IcsError`] whose message is meant for people.

mod document;
mod line;
mod link;
/// Recurrence rules (RFC 5545 §3.3.10), checked as the server checks them.
pub use confab_plugin_contract::rrule;
mod schedule;
pub mod tz;

pub use document::{Calendar, EventInfo};
pub use line::{escape_text, fold, unescape_text};
pub use link::{Added, EventOutcome, MAX_SHARED_LINK_BYTES, add_link, check_link, shared_link};
pub use schedule::{Method, Person, ScheduleSpec, feed_ics, schedule_ics};

/// The product identifier of everything the engine writes.
pub const PRODID: &str = "-//Confab//Calendar//EN";
/// The largest file accepted (1 MiB).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// The most events (VEVENTs) a file may hold.
pub const MAX_EVENTS: usize = 1000;
/// Components nested deeper than this are refused.
pub const MAX_DEPTH: usize = 8;
/// The first line of the join block in a description.
pub const BLOCK_START: &str = "==== Confab call ====";
/// The last line of the join block in a description.
pub const BLOCK_END: &str = "==== end of Confab call ====";
/// The property that records the link written into an event.
pub const LINK_PROPERTY: &str = "X-CONFAB-LINK";

/// Why a file or a schedule was refused. The `Display` text is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcsError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    TooLarge { bytes: usize },
    /// The input does not start with `BEGIN:VCALENDAR`.
    NotICalendar,
    /// A line is not valid UTF-8.
    NotUtf8 { line: usize },
    /// A line or the component structure is broken.
    Malformed { line: usize, reason: String },
    /// The calendar has no event.
    NoEvents,
    /// More than [`MAX_EVENTS`] events.
    TooManyEvents { count: usize },
    /// An `RRULE` does not parse.
    BadRrule { line: usize, reason: String },
    /// The link to write is not an absolute http(s) URL that can go into a file.
    BadLink(String),
    /// A schedule cannot be written as it is (the text says why).
    BadSchedule(String),
}

impl std::fmt::Display for IcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IcsError::TooLarge { bytes } => write!(
                f,
                "The file is too large ({} KiB); calendars of up to {} KiB are accepted.",
                bytes.div_ceil(1024),
                MAX_INPUT_BYTES / 1024
            ),
            IcsError::NotICalendar => write!(
                f,
                "This is not an iCalendar (.ics) file: it must start with BEGIN:VCALENDAR."
            ),
            IcsError::NotUtf8 { line } => write!(
                f,
                "Line {line} is not UTF-8 text; export the calendar as UTF-8 and try again."
            ),
            IcsError::Malformed { line, reason } => {
                write!(f, "The calendar is broken at line {line}: {reason}.")
            }
            IcsError::NoEvents => write!(f, "The calendar has no event (VEVENT) to add a link to."),
            IcsError::TooManyEvents { count } => write!(
                f,
                "The calendar has {count} events; at most {MAX_EVENTS} are accepted at once."
            ),
            IcsError::BadRrule { line, reason } => write!(
                f,
                "The recurrence rule (RRULE) at line {line} is not valid: {reason}."
            ),
            IcsError::BadLink(why) => write!(f, "The call link cannot be used: {why}."),
            IcsError::BadSchedule(why) => write!(f, "The schedule cannot be used: {why}."),
        }
    }
}

impl std::error::Error for IcsError {}

/// A UTC time as iCalendar writes it: `20261201T090000Z`.
pub fn utc_stamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}
