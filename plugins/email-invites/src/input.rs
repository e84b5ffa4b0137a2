//! Reading an invitation request: the link as the user shares it, the people to
//! invite and a personal note. No capability calls here, so it is tested on the
//! host.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most people one request invites (after duplicates are removed).
pub const MAX_RECIPIENTS: usize = 100;
/// The most entries read from one request, duplicates included.
const MAX_ENTRIES: usize = 1000;
/// The longest personal note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// The longest name in `Name <address>`, in characters (as long as a guest's name).
pub const MAX_NAME_CHARS: usize = 64;

/// Someone with an email address, as a request names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Person {
    /// The address for a mail header: `Name <address>` (the name quoted when it
    /// has characters that mean something there), or the bare address.
    pub fn mailbox(&self) -> String {
        match self.display_name() {
            None => self.email.clone(),
            Some(name) if name.chars().any(|c| "()<>[]:;@\\,.\"".contains(c)) => {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{quoted}\" <{}>", self.email)
            }
            Some(name) => format!("{name} <{}>", self.email),
        }
    }

    /// The name on one line, if there is one.
    pub fn display_name(&self) -> Option<String> {
        self.name
            .as_deref()
            .map(|n| one_line(n, MAX_NAME_CHARS))
            .filter(|n| !n.is_empty())
    }

    /// Addresses are compared without regard to case.
    pub fn key(&self) -> String {
        self.email.to_lowercase()
    }
}

/// A request that was refused, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status: 422,
        code,
        message: message.into(),
    }
}

/// A checked invitation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRequest {
    /// The link as the user shares it (not checked against the server yet).
    pub url: String,
    /// 1 to [`MAX_RECIPIENTS`] people, each address once, in the order given.
    pub recipients: Vec<Person>,
    /// The personal note, without NULs or control characters but line breaks.
    pub note: Option<String>,
}

impl InviteRequest {
    /// Reads a JSON body `{"url": …, "recipients": […], "note": …}`.
    pub fn from_json(body: &[u8]) -> Result<Self, Refusal> {
        let malformed = |why: String| Refusal {
            status: 400,
            code: "malformed_json",
            message: why,
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("The body is not JSON: {e}.")))?;
        let Value::Object(body) = value else {
            return Err(malformed("The body must be a JSON object.".into()));
        };
        let url = match body.get("url") {
            Some(Value::String(url)) if !url.trim().is_empty() => url.trim().to_string(),
            _ => {
                return Err(refuse(
                    "invalid_url",
                    "Give the link to invite people to (url), as you share it.",
                ));
            }
        };
        let entries = match body.get("recipients") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    refuse(
                        "invalid_recipients",
                        "recipients must be a list of addresses (text).",
                    )
                })?,
            _ => {
                return Err(refuse(
                    "invalid_recipients",
                    "recipients must be a list of addresses.",
                ));
            }
        };
        let recipients = recipients(&entries)?;
        let note = match body.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => note(text)?,
            Some(_) => return Err(refuse("invalid_note", "The note must be text.")),
        };
        Ok(Self {
            url,
            recipients,
            note,
        })
    }
}

/// The people `entries` name, each address once (the first spelling wins).
pub fn recipients(entries: &[String]) -> Result<Vec<Person>, Refusal> {
    if entries.len() > MAX_ENTRIES {
        return Err(refuse(
            "too_many_recipients",
            format!("At most {MAX_RECIPIENTS} people at once."),
        ));
    }
    let mut out: Vec<Person> = Vec::with_capacity(entries.len().min(MAX_RECIPIENTS));
    for entry in entries {
        if entry.trim().is_empty() {
            continue;
        }
        let person = recipient(entry).map_err(|why| refuse("invalid_recipients", why))?;
        if !out.iter().any(|p| p.key() == person.key()) {
            out.push(person);
        }
    }
    match out.len() {
        0 => Err(refuse(
            "invalid_recipients",
            "Add at least one address to invite.",
        )),
        n if n > MAX_RECIPIENTS => Err(refuse(
            "too_many_recipients",
            format!("At most {MAX_RECIPIENTS} people at once; this invites {n}."),
        )),
        _ => Ok(out),
    }
}

/// One entry: `ana@example.org`, `Ana Lima <ana@example.org>` or
/// `"Lima, Ana" <ana@example.org>`. The `Err` text is for people.
pub fn recipient(entry: &str) -> Result<Person, String> {
    if entry.contains(['\r', '\n', '\0']) {
        return Err(format!("{} contains a line break.", shown(entry)));
    }
    let entry = entry.trim();
    let (name, email) = match entry.rfind('<') {
        Some(open) => {
            let Some(email) = entry[open + 1..].strip_suffix('>') else {
                return Err(format!("{} is not an email address.", shown(entry)));
            };
            (Some(unquote(entry[..open].trim())), email.trim())
        }
        None => (None, entry),
    };
    if !valid_email(email) {
        return Err(format!("{} is not an email address.", shown(entry)));
    }
    let name = name.filter(|n| !n.is_empty());
    if let Some(name) = &name {
        if name.chars().any(|c| c.is_control() || c == '<' || c == '>') {
            return Err(format!(
                "The name in {} has characters a name cannot have.",
                shown(entry)
            ));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "The name in {} is longer than {MAX_NAME_CHARS} characters.",
                shown(entry)
            ));
        }
    }
    Ok(Person {
        email: email.to_string(),
        name,
    })
}

/// A name without the quotes around it (`"Lima, Ana"` → `Lima, Ana`).
fn unquote(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => name.to_string(),
    }
}

/// Whether `email` can go into a mail header and a `mailto:` as it is: what the
/// server's outbox accepts, and nothing that has a meaning in either (spaces,
/// control characters, `<>"(),;:[]\`).
pub fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"(),;:[]\\".contains(c))
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && !domain.contains('@')
        })
}

/// The note as it goes into the mail: line breaks as `\n`, no other control
/// characters but tabs, trimmed; none when empty.
pub fn note(text: &str) -> Result<Option<String>, Refusal> {
    if text.contains('\0') {
        return Err(refuse(
            "invalid_note",
            "The note cannot contain NUL characters.",
        ));
    }
    let count = text.chars().count();
    if count > MAX_NOTE_CHARS {
        return Err(refuse(
            "invalid_note",
            format!("The note has {count} characters; at most {MAX_NOTE_CHARS} fit."),
        ));
    }
    let clean: String = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    let clean = clean.trim();
    Ok((!clean.is_empty()).then(|| clean.to_string()))
}

/// The id of the link `url` points to on the server at `public_url`
/// (`{public_url}/j/{id}`, maybe with more after it); none when it is not a link
/// of that server. [`confab_calendar::ics::shared_link`] checks the rest.
pub fn link_id<'a>(public_url: &str, url: &'a str) -> Option<&'a str> {
    let rest = url
        .trim()
        .strip_prefix(public_url.trim_end_matches('/'))?
        .strip_prefix("/j/")?;
    let id = rest.split('#').next().unwrap_or_default();
    let well_formed =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    well_formed.then_some(id)
}

/// Whether `url` can be written into HTML as it is (`{{ url | safe }}`): only
/// letters, digits and the URL characters that mean nothing to HTML, so the link
/// in the mail's source is the link byte for byte. (Tera's escaping would write
/// `/` as `&#x2F;`; `&` and `'` are left out because they could start an entity or
/// end an attribute.)
pub fn html_safe(url: &str) -> bool {
    url.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$()*+,;=%".contains(&b))
}

/// `text` on one line: control characters and runs of white space become one
/// space, at most `max_chars` characters (cut with `…`).
pub fn one_line(text: &str, max_chars: usize) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let joined = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max_chars {
        return joined;
    }
    let mut cut: String = joined.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// An entry as an error message shows it: quoted, control characters spelled
/// out, at most 80 characters.
fn shown(entry: &str) -> String {
    let mut out = String::from("“");
    for (i, c) in entry.chars().enumerate() {
        if i == 80 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('”');
    out
}

/// The value of `key` in a query string (`link=…&…`), as it is written there.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(email: &str, name: Option<&str>) -> Person {
        Person {
            email: email.into(),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn reads_addresses_with_and_without_names() {
        assert_eq!(
            recipient(" ana@example.org "),
            Ok(person("ana@example.org", None))
        );
        assert_eq!(
            recipient("Bo Ek <bo@example.org>"),
            Ok(person("bo@example.org", Some("Bo Ek")))
        );
        assert_eq!(
            recipient("\"Lima, Ana \\\"A\\\"\" <ana@example.org>"),
            Ok(person("ana@example.org", Some("Lima, Ana \"A\"")))
        );
        assert_eq!(
            recipient("<zoe@example.net>"),
            Ok(person("zoe@example.net", None))
        );
    }

    #[test]
    fn refuses_what_could_break_a_header() {
        for bad in [
            "ana@example.org\r\nBcc: victim@example.org",
            "Ana\n <ana@example.org>",
            "ana@example.org\0",
            "ana",
            "ana@",
            "@example.org",
            "ana@localhost",
            "ana@example..org",
            "a b@example.org",
            "a,b@example.org",
            "Ana <ana@example.org",
            "Ana <a@b@example.org>",
            "A\u{7}na <ana@example.org>",
        ] {
            assert!(recipient(bad).is_err(), "{bad:?}");
        }
        let why = recipient("ana@example.org\r\nBcc: x@example.org").unwrap_err();
        assert!(why.contains("\\r\\n"), "{why}");
        assert!(!why.contains('\r'));
    }

    #[test]
    fn removes_duplicates_without_regard_to_case() {
        let list = recipients(&[
            "ana@example.org".into(),
            "Ana <ANA@Example.org>".into(),
            " ".into(),
            "bo@example.org".into(),
        ])
        .unwrap();
        assert_eq!(
            list,
            [
                person("ana@example.org", None),
                person("bo@example.org", None)
            ]
        );
    }

    #[test]
    fn invites_one_to_a_hundred_people() {
        let many =
            |n: usize| -> Vec<String> { (0..n).map(|i| format!("p{i}@example.org")).collect() };
        assert_eq!(recipients(&many(100)).unwrap().len(), 100);
        assert_eq!(
            recipients(&many(101)).unwrap_err().code,
            "too_many_recipients"
        );
        let mut twice = many(100);
        twice.extend(many(100));
        assert_eq!(recipients(&twice).unwrap().len(), 100);
        assert_eq!(recipients(&[]).unwrap_err().code, "invalid_recipients");
    }

    #[test]
    fn reads_the_request() {
        let request = InviteRequest::from_json(
            br#"{"url":" http://c.test/j/abc#k=1 ","recipients":["a@example.org"],"note":" Hi!\r\nSee you \u0007"}"#,
        )
        .unwrap();
        assert_eq!(request.url, "http://c.test/j/abc#k=1");
        assert_eq!(request.note.as_deref(), Some("Hi!\nSee you"));
        for (body, code) in [
            (&br#"nope"#[..], "malformed_json"),
            (br#"[]"#, "malformed_json"),
            (br#"{"recipients":["a@example.org"]}"#, "invalid_url"),
            (
                br#"{"url":"x","recipients":"a@example.org"}"#,
                "invalid_recipients",
            ),
            (br#"{"url":"x","recipients":[1]}"#, "invalid_recipients"),
            (
                br#"{"url":"x","recipients":["a@example.org"],"note":"a\u0000b"}"#,
                "invalid_note",
            ),
            (
                br#"{"url":"x","recipients":["a@example.org"],"note":5}"#,
                "invalid_note",
            ),
        ] {
            assert_eq!(
                InviteRequest::from_json(body).unwrap_err().code,
                code,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(
            r#"{{"url":"x","recipients":["a@example.org"],"note":"{}"}}"#,
            "é".repeat(MAX_NOTE_CHARS + 1)
        );
        assert_eq!(
            InviteRequest::from_json(long.as_bytes()).unwrap_err().code,
            "invalid_note"
        );
    }

    #[test]
    fn finds_the_link_id() {
        let base = "https://meet.example/";
        assert_eq!(
            link_id(base, "https://meet.example/j/Ab12#k=x"),
            Some("Ab12")
        );
        assert_eq!(link_id(base, "https://meet.example/j/Ab12"), Some("Ab12"));
        for other in [
            "https://evil.example/j/Ab12",
            "https://meet.example/x/Ab12",
            "https://meet.example/j/",
            "https://meet.example/j/Ab12?x=1",
            "https://meet.example/j/Ab12/more",
        ] {
            assert_eq!(link_id(base, other), None, "{other}");
        }
    }

    #[test]
    fn only_plain_url_characters_go_into_html_unescaped() {
        assert!(html_safe("https://meet.example/j/Ab12#k=a-b_c.d~e%2F"));
        for bad in ["\"", "<", ">", "'", "&", " ", "`", "é"] {
            assert!(
                !html_safe(&format!("https://m.example/j/a#k={bad}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn mailboxes_quote_names_that_need_it() {
        assert_eq!(person("a@example.org", None).mailbox(), "a@example.org");
        assert_eq!(
            person("a@example.org", Some("Zoë Ōkubo")).mailbox(),
            "Zoë Ōkubo <a@example.org>"
        );
        assert_eq!(
            person("a@example.org", Some("Lima, \"A\"")).mailbox(),
            "\"Lima, \\\"A\\\"\" <a@example.org>"
        );
        assert_eq!(
            person("a@example.org", Some("  ")).mailbox(),
            "a@example.org"
        );
    }

    #[test]
    fn one_line_drops_line_breaks_and_cuts() {
        assert_eq!(one_line("a\r\nBcc: b\t c", 100), "a Bcc: b c");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("ab  cdef", 4), "ab…");
    }

    #[test]
    fn reads_query_parameters() {
        assert_eq!(query_param("a=1&link=XY&link=Z", "link"), Some("XY"));
        assert_eq!(query_param("a=1", "link"), None);
    }
}
