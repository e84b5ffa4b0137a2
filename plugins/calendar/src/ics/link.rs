//! Putting a call link into the events of a calendar file.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::document::{Calendar, EventInfo, EventSpan};
use super::line::{ContentLine, escape_text, param_value, unescape_text};
use super::{BLOCK_END, BLOCK_START, IcsError, LINK_PROPERTY, PRODID, utc_stamp};

/// Marks the join block in an HTML description.
pub(crate) const HTML_START: &str = "<!-- confab-call -->";
pub(crate) const HTML_END: &str = "<!-- /confab-call -->";
/// Between the existing location and the link.
pub(crate) const LOCATION_SEPARATOR: &str = " | ";

/// The calendar with its links, and what happened to each event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The whole file (CRLF line ends, folded lines).
    pub ics: String,
    /// One entry per VEVENT, in file order.
    pub events: Vec<EventOutcome>,
}

/// What happened to one VEVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    pub uid: String,
    /// The `RECURRENCE-ID` of an exception, as written.
    pub recurrence_id: Option<String>,
    pub summary: Option<String>,
    /// The link written into it (none when the caller gave none for its UID).
    pub link: Option<String>,
    /// Whether anything in it changed (false when it already had the link).
    pub changed: bool,
    /// The event's own `URL`, kept in place of adding the link as `URL`.
    pub kept_url: Option<String>,
}

/// Checks that `link` is an absolute http(s) URL that can be written into every
/// property as it is: ASCII, no spaces, quotes or angle brackets, at most 2048
/// characters. A fragment (`#k=…`) is part of the link and is kept.
pub fn check_link(link: &str) -> Result<(), IcsError> {
    let bad = |why: &str| Err(IcsError::BadLink(why.to_string()));
    if link.is_empty() || link.len() > 2048 {
        return bad("it must have 1 to 2048 characters");
    }
    let lower = link.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return bad("it must start with https:// or http://");
    };
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return bad("it has no host");
    }
    if let Some(c) = link
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "\"<>\\^`{|}".contains(c))
    {
        return bad(&format!("it contains the character {c:?}"));
    }
    Ok(())
}

/// Longest link accepted from a browser, in bytes.
pub const MAX_SHARED_LINK_BYTES: usize = 2048;

/// The link to write for link `id` on the server at `public_url` (no trailing
/// slash): the one the user shares, as the browser has it (`given`: the server's
/// `/j/{id}`, with the fragment the server never sees), or the server's own
/// address for it when none is given.
///
/// `given` must be exactly this server's link for `id`, optionally followed by a
/// `#fragment`, with no spaces or control characters, so nobody writes another
/// address (or someone else's link) into a calendar or an invitation under a
/// Confab link's name. The `Err` text says why, for people.
pub fn shared_link(public_url: &str, id: &str, given: Option<&str>) -> Result<String, String> {
    let base = format!("{}/j/{id}", public_url.trim_end_matches('/'));
    let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(base);
    };
    if given.len() > MAX_SHARED_LINK_BYTES {
        return Err(format!(
            "the link is longer than {MAX_SHARED_LINK_BYTES} bytes"
        ));
    }
    if given.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the link contains spaces or control characters".into());
    }
    match given.strip_prefix(&base) {
        Some("") => Ok(given.to_string()),
        Some(rest) if rest.starts_with('#') => Ok(given.to_string()),
        _ => Err(format!(
            "the link must be {base}, optionally with a #fragment"
        )),
    }
}

/// Puts `link` into every event of `input` (see [`Calendar::with_links`]).
pub fn add_link(
    input: &[u8],
    link: &str,
    label: &str,
    now: DateTime<Utc>,
) -> Result<Added, IcsError> {
    Calendar::parse(input)?.with_links(|_| Some(link.to_string()), label, now)
}

/// The join block in a description.
pub(crate) fn text_block(label: &str, link: &str) -> String {
    format!("{BLOCK_START}\n{label}: {link}\n{BLOCK_END}")
}

/// The join block in an HTML description.
pub(crate) fn html_block(label: &str, link: &str) -> String {
    let link = html_escape(link);
    format!(
        "{HTML_START}<p><a href=\"{link}\">{}</a><br>{link}</p>{HTML_END}",
        html_escape(label)
    )
}

pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML body for a plain description, with `block` after it.
pub(crate) fn html_body(description: &str, block: &str) -> String {
    let text = html_escape(description).replace('\n', "<br>");
    let gap = if text.is_empty() { "" } else { "<br><br>" };
    format!("<html><body>{text}{gap}{block}</body></html>")
}

/// `text` with `block` in place of the join block(s) it has, or after it.
fn put_text_block(text: &str, block: &str) -> String {
    let mut out = String::with_capacity(text.len() + block.len() + 2);
    let mut rest = text;
    let mut placed = false;
    while let Some(start) = rest.find(BLOCK_START) {
        let Some(len) = rest[start..].find(BLOCK_END) else {
            break;
        };
        out.push_str(&rest[..start]);
        if !placed {
            out.push_str(block);
            placed = true;
        }
        rest = &rest[start + len + BLOCK_END.len()..];
    }
    out.push_str(rest);
    if placed {
        return out;
    }
    let gap = if text.is_empty() || text.ends_with("\n\n") {
        ""
    } else if text.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    format!("{text}{gap}{block}")
}

/// `html` with `block` in place of the join block it has, or before `</body>`, or
/// at the end.
fn put_html_block(html: &str, block: &str) -> String {
    if let Some(start) = html.find(HTML_START)
        && let Some(len) = html[start..].find(HTML_END)
    {
        let end = start + len + HTML_END.len();
        return format!("{}{block}{}", &html[..start], &html[end..]);
    }
    match html.to_ascii_lowercase().rfind("</body>") {
        Some(at) => format!("{}{block}{}", &html[..at], &html[at..]),
        None => format!("{html}{block}"),
    }
}

/// The location with the link: kept if it is there, put in place of the previous
/// link, or added after the existing text.
fn location_with(text: &str, link: &str, previous: Option<&str>) -> String {
    if text.contains(link) {
        return text.to_string();
    }
    if let Some(old) = previous
        && !old.is_empty()
        && text.contains(old)
    {
        return text.replace(old, link);
    }
    if text.trim().is_empty() {
        return link.to_string();
    }
    format!("{}{LOCATION_SEPARATOR}{link}", text.trim_end())
}

pub(crate) fn conference_line(link: &str, label: &str) -> ContentLine {
    ContentLine::build(
        "CONFERENCE",
        &[
            ("VALUE", "URI"),
            ("FEATURE", "VIDEO"),
            ("LABEL", &param_value(label)),
        ],
        link,
    )
}

enum Edit {
    Keep,
    Replace(ContentLine),
}

struct Edits {
    lines: Vec<Edit>,
    inserts: BTreeMap<usize, Vec<ContentLine>>,
}

impl Edits {
    /// Adds `lines` before line `at` of the input (after what is already there).
    fn insert(&mut self, at: usize, lines: Vec<ContentLine>) {
        if !lines.is_empty() {
            self.inserts.entry(at).or_default().extend(lines);
        }
    }
}

impl Calendar {
    /// Writes the calendar with a link in its events: `link_for` is asked once per
    /// UID (see [`Calendar::events`]) and answers the full link to share, or `None`
    /// to leave that event alone. Every VEVENT with that UID (a series and its
    /// exceptions) gets the same link. `label` names the link (`CONFERENCE`'s
    /// `LABEL`, the join block); `now` stamps `LAST-MODIFIED` (and `DTSTAMP` where
    /// it was missing).
    pub fn with_links(
        &self,
        mut link_for: impl FnMut(&EventInfo) -> Option<String>,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<Added, IcsError> {
        let mut links: HashMap<String, Option<String>> = HashMap::new();
        for info in self.events() {
            let link = link_for(&info);
            if let Some(link) = &link {
                check_link(link)?;
            }
            links.insert(info.uid, link);
        }
        let label = label.trim();
        let label = if label.is_empty() {
            "Join the call"
        } else {
            label
        };
        let stamp = utc_stamp(now);
        let mut edits = Edits {
            lines: self.lines.iter().map(|_| Edit::Keep).collect(),
            inserts: BTreeMap::new(),
        };
        for calendar in &self.calendars {
            let mut missing = Vec::new();
            if !calendar.has_version {
                missing.push(ContentLine::build("VERSION", &[], "2.0"));
            }
            if !calendar.has_prodid {
                missing.push(ContentLine::build("PRODID", &[], PRODID));
            }
            if !missing.is_empty() {
                edits
                    .inserts
                    .entry(calendar.begin + 1)
                    .or_default()
                    .extend(missing);
            }
        }
        let mut outcomes = Vec::with_capacity(self.events.len());
        for event in &self.events {
            let link = links.get(&event.uid).cloned().flatten();
            outcomes.push(self.edit_event(event, link, label, &stamp, &mut edits));
        }

        let mut ics = String::with_capacity(self.input_len() + self.events.len() * 1024);
        for (i, line) in self.lines.iter().enumerate() {
            if let Some(new) = edits.inserts.get(&i) {
                for l in new {
                    l.write(&mut ics);
                }
            }
            match &edits.lines[i] {
                Edit::Keep => line.write(&mut ics),
                Edit::Replace(new) => new.write(&mut ics),
            }
        }
        Ok(Added {
            ics,
            events: outcomes,
        })
    }

    fn edit_event(
        &self,
        event: &EventSpan,
        link: Option<String>,
        label: &str,
        stamp: &str,
        edits: &mut Edits,
    ) -> EventOutcome {
        let lines = &self.lines;
        let mut outcome = EventOutcome {
            uid: event.uid.clone(),
            recurrence_id: event
                .find(lines, "RECURRENCE-ID")
                .map(|i| lines[i].value().trim().to_string()),
            summary: event.text(lines, "SUMMARY"),
            link: link.clone(),
            changed: false,
            kept_url: None,
        };
        let mut added: Vec<ContentLine> = Vec::new();
        if event.uid_generated {
            let uid = ContentLine::build("UID", &[], &event.uid);
            // An empty UID line gets the value, so the event has one UID.
            match event.find(lines, "UID") {
                Some(i) => edits.lines[i] = Edit::Replace(uid),
                None => added.push(uid),
            }
        }
        if event.find(lines, "DTSTAMP").is_none() {
            added.push(ContentLine::build("DTSTAMP", &[], stamp));
        }
        let Some(link) = link else {
            edits.insert(event.insert_at, added);
            return outcome;
        };
        let link = link.as_str();
        let previous = event
            .find(lines, LINK_PROPERTY)
            .map(|i| lines[i].value().trim().to_string())
            .filter(|old| old != link);
        let previous = previous.as_deref();
        let mut changed = false;
        let replace = |i: usize, line: ContentLine, edits: &mut Edits| {
            edits.lines[i] = Edit::Replace(line);
        };

        // LOCATION: the existing text, then the link.
        match event.find(lines, "LOCATION") {
            Some(i) => {
                let text = unescape_text(lines[i].value());
                let new = location_with(&text, link, previous);
                if new != text {
                    replace(i, lines[i].with_value(&escape_text(&new)), edits);
                    changed = true;
                }
            }
            None => {
                added.push(ContentLine::build("LOCATION", &[], &escape_text(link)));
                changed = true;
            }
        }

        // URL: at most one per event; an event's own URL stays.
        let url_line = || ContentLine::build("URL", &[("VALUE", "URI")], link);
        match event.find(lines, "URL") {
            Some(i) => {
                let value = lines[i].value().trim();
                if value == link {
                } else if Some(value) == previous {
                    replace(i, url_line(), edits);
                    changed = true;
                } else {
                    outcome.kept_url = Some(value.to_string());
                }
            }
            None => {
                added.push(url_line());
                changed = true;
            }
        }

        // CONFERENCE (RFC 7986), next to whatever other conferences it lists.
        let conferences: Vec<usize> = event.find_all(lines, "CONFERENCE").collect();
        if !conferences.iter().any(|&i| lines[i].value().trim() == link) {
            match conferences
                .iter()
                .find(|&&i| Some(lines[i].value().trim()) == previous)
            {
                Some(&i) => replace(i, conference_line(link, label), edits),
                None => added.push(conference_line(link, label)),
            }
            changed = true;
        }

        // DESCRIPTION: the join block, replaced on later submissions.
        let block = text_block(label, link);
        let original_description = event.text(lines, "DESCRIPTION");
        match event.find(lines, "DESCRIPTION") {
            Some(i) => {
                let text = original_description.clone().unwrap_or_default();
                let new = put_text_block(&text, &block);
                if new != text {
                    replace(i, lines[i].with_value(&escape_text(&new)), edits);
                    changed = true;
                }
            }
            None => {
                added.push(ContentLine::build("DESCRIPTION", &[], &escape_text(&block)));
                changed = true;
            }
        }

        // X-ALT-DESC: Outlook's HTML description.
        let html = html_block(label, link);
        match event.find(lines, "X-ALT-DESC") {
            Some(i) => {
                let text = unescape_text(lines[i].value());
                let new = put_html_block(&text, &html);
                if new != text {
                    replace(i, lines[i].with_value(&escape_text(&new)), edits);
                    changed = true;
                }
            }
            None => {
                let body = html_body(original_description.as_deref().unwrap_or(""), &html);
                added.push(ContentLine::build(
                    "X-ALT-DESC",
                    &[("FMTTYPE", "text/html")],
                    &escape_text(&body),
                ));
                changed = true;
            }
        }

        match event.find(lines, LINK_PROPERTY) {
            Some(i) if previous.is_some() => {
                replace(i, ContentLine::build(LINK_PROPERTY, &[], link), edits);
                changed = true;
            }
            Some(_) => {}
            None => {
                added.push(ContentLine::build(LINK_PROPERTY, &[], link));
                changed = true;
            }
        }

        if changed {
            match event.find(lines, "SEQUENCE") {
                Some(i) => {
                    let n = lines[i].value().trim().parse::<u64>().unwrap_or(0);
                    replace(i, lines[i].with_value(&(n + 1).to_string()), edits);
                }
                None => added.push(ContentLine::build("SEQUENCE", &[], "1")),
            }
            match event.find(lines, "LAST-MODIFIED") {
                Some(i) => replace(i, ContentLine::build("LAST-MODIFIED", &[], stamp), edits),
                None => added.push(ContentLine::build("LAST-MODIFIED", &[], stamp)),
            }
        }
        outcome.changed = changed || !added.is_empty();
        edits.insert(event.insert_at, added);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_uid_gets_a_value_once_and_adding_again_changes_nothing() {
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n\
                   UID:\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\n\
                   SUMMARY:Sync\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let now = "2026-01-01T00:00:00Z".parse().unwrap();
        let link = "https://confab.example/j/abc";
        let first = add_link(ics.as_bytes(), link, "Join", now).unwrap();
        let uids: Vec<&str> = first.ics.lines().filter(|l| l.starts_with("UID")).collect();
        assert_eq!(uids.len(), 1, "{}", first.ics);
        assert!(uids[0].starts_with("UID:confab-"), "{uids:?}");
        let second = add_link(first.ics.as_bytes(), link, "Join", now).unwrap();
        assert!(
            second.events.iter().all(|e| !e.changed),
            "{:?}",
            second.events
        );
        assert_eq!(second.ics, first.ics);
    }

    #[test]
    fn checks_links() {
        assert!(check_link("https://confab.example/j/abc#k=x-y_z").is_ok());
        assert!(check_link("http://localhost:8080/j/abc").is_ok());
        for bad in [
            "",
            "ftp://x/j",
            "https://",
            "https:///j/abc",
            "https://a b",
            "https://x/\"",
            "javascript:alert(1)",
            "https://x/é",
        ] {
            assert!(check_link(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_links_are_this_servers_link_for_the_id() {
        let base = "https://confab.example/";
        assert_eq!(
            shared_link(base, "abc", None).as_deref(),
            Ok("https://confab.example/j/abc")
        );
        for good in [
            "https://confab.example/j/abc",
            " https://confab.example/j/abc#k=s3cr3t-Z_k ",
        ] {
            assert_eq!(
                shared_link(base, "abc", Some(good)).as_deref(),
                Ok(good.trim())
            );
        }
        let long = format!("https://confab.example/j/abc#{}", "k".repeat(2048));
        for bad in [
            "https://evil.example/j/abc#k=x",
            "https://confab.example/j/abcd",
            "https://confab.example/j/abc?next=https://evil.example",
            "https://confab.example/j/abc#k=a b",
            "https://confab.example/j/abc#k=a\r\nb",
            "https://confab.example/j/xyz",
            long.as_str(),
        ] {
            assert!(shared_link(base, "abc", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_links_keep_the_link_secret() {
        // The server's secrets: `#k=` and 16 random bytes as unpadded base64url (22
        // characters, `-` and `_` included); longer ones are kept too.
        let base = "https://confab.example";
        let id = "4kV9xQ2mT7bN1cR8zL3wYp";
        for secret in [
            "q8Vb3kT0wXcZ1mN5rJ7y-_",
            "-_-_AAAAzzzz0000999_-_",
            "Zx_9-aQ2mT7bN1cR8zL3wYpE4q8Vb3kT0wXcZ1mN5rJ",
        ] {
            let shared = format!("{base}/j/{id}#k={secret}");
            assert_eq!(
                shared_link(base, id, Some(&shared)).as_deref(),
                Ok(shared.as_str())
            );
            assert!(check_link(&shared).is_ok(), "{shared}");
        }
    }

    #[test]
    fn the_location_keeps_its_text() {
        let link = "https://c.example/j/1";
        assert_eq!(location_with("", link, None), link);
        assert_eq!(
            location_with("Room 4", link, None),
            format!("Room 4 | {link}")
        );
        assert_eq!(
            location_with(&format!("Room 4 | {link}"), link, None),
            format!("Room 4 | {link}")
        );
        assert_eq!(
            location_with(
                "Room 4 | https://c.example/j/0",
                link,
                Some("https://c.example/j/0")
            ),
            format!("Room 4 | {link}")
        );
    }

    #[test]
    fn the_block_is_replaced_not_repeated() {
        let one = put_text_block("Agenda:\n- intro", &text_block("Join", "https://a/j/1"));
        assert_eq!(
            one,
            format!("Agenda:\n- intro\n\n{BLOCK_START}\nJoin: https://a/j/1\n{BLOCK_END}")
        );
        let two = put_text_block(&one, &text_block("Join", "https://a/j/2"));
        assert_eq!(two, one.replace("/j/1", "/j/2"));
        assert_eq!(
            put_text_block(&two, &text_block("Join", "https://a/j/2")),
            two
        );

        let html = put_html_block(
            "<html><BODY><p>Hi</p></BODY></html>",
            &html_block("Join", "https://a/j/1?a=1&b=2"),
        );
        assert_eq!(
            html,
            format!(
                "<html><BODY><p>Hi</p>{HTML_START}<p><a href=\"https://a/j/1?a=1&amp;b=2\">Join</a><br>https://a/j/1?a=1&amp;b=2</p>{HTML_END}</BODY></html>"
            )
        );
        let again = put_html_block(&html, &html_block("Join", "https://a/j/1?a=1&b=2"));
        assert_eq!(again, html);
    }
}
