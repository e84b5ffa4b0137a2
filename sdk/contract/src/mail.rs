//! The checks a message passes before the `mail` capability queues it: addresses
//! that cannot start a new header, a subject on one line, and the size limits of
//! [`crate::limits`].

use crate::limits::{
    MAIL_MAX_MESSAGE_BYTES, MAIL_MAX_RECIPIENTS, MAIL_MAX_SUBJECT_CHARS,
    MAIL_MAX_UNSUBSCRIBE_URL_BYTES,
};

/// Why a message is refused: malformed (`error.invalid`) or over a limit
/// (`error.limit-reached`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailProblem {
    Invalid(String),
    LimitReached(String),
}

/// A message's parts, as the checks read them.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub to: &'a [String],
    pub cc: &'a [String],
    pub reply_to: Option<&'a str>,
    pub subject: &'a str,
    /// The text and HTML bodies together, in bytes.
    pub body_bytes: usize,
}

/// An attachment's parts, as the checks read them.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub filename: &'a str,
    pub content_type: &'a str,
    pub bytes: usize,
}

fn has_line_break(text: &str) -> bool {
    text.contains(['\r', '\n', '\0'])
}

/// Whether `name` can stand before `<address>` as it is: plain words (RFC 5322's
/// phrase, letters beyond ASCII included), or a quoted string.
fn display_name_ok(name: &str) -> bool {
    if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        let mut escaped = false;
        for c in inner.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return false,
                _ => {}
            }
        }
        return !escaped;
    }
    !name.contains(['(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"'])
}

/// A syntactically plausible address, optionally as `Name <address>`, without
/// anything that could start a new header. `field` names it in the refusal.
pub fn check_address(field: &str, value: &str) -> Result<(), String> {
    if has_line_break(value) {
        return Err(format!("{field}: {value:?} contains a line break"));
    }
    let (name, addr) = match (value.rfind('<'), value.strip_suffix('>')) {
        (Some(open), Some(inner)) => (value[..open].trim(), &inner[open + 1..]),
        _ => ("", value.trim()),
    };
    if !display_name_ok(name) {
        return Err(format!(
            "{field}: the name in {value:?} must be in double quotes: it has characters that mean something in an address (for example @ , ; < >)"
        ));
    }
    let valid = addr.len() <= 254
        && !addr.contains(char::is_whitespace)
        && addr.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{field}: {value:?} is not an email address"))
    }
}

/// Checks a message before it is queued.
pub fn check_message<'a>(
    message: Outgoing<'_>,
    attachments: impl IntoIterator<Item = Attachment<'a>>,
) -> Result<(), MailProblem> {
    let invalid = |why: String| Err(MailProblem::Invalid(why));
    if message.to.is_empty() {
        return invalid("a message needs at least one recipient".into());
    }
    if message.to.len() + message.cc.len() > MAIL_MAX_RECIPIENTS {
        return Err(MailProblem::LimitReached(format!(
            "at most {MAIL_MAX_RECIPIENTS} recipients per message"
        )));
    }
    let to = message.to.iter().map(|a| ("to", a.as_str()));
    let cc = message.cc.iter().map(|a| ("cc", a.as_str()));
    let reply_to = message.reply_to.into_iter().map(|a| ("reply-to", a));
    for (field, address) in to.chain(cc).chain(reply_to) {
        check_address(field, address).map_err(MailProblem::Invalid)?;
    }
    if has_line_break(message.subject) {
        return invalid("the subject contains a line break".into());
    }
    if message.subject.trim().is_empty() || message.subject.chars().count() > MAIL_MAX_SUBJECT_CHARS
    {
        return invalid(format!(
            "the subject must be 1 to {MAIL_MAX_SUBJECT_CHARS} characters"
        ));
    }
    let mut size = message.body_bytes;
    for a in attachments {
        if a.filename.is_empty()
            || a.filename.contains(['\r', '\n', '\0', '/', '\\', '"'])
            || a.filename.len() > 255
        {
            return invalid(format!(
                "attachment file name {:?} is not allowed",
                a.filename
            ));
        }
        if has_line_break(a.content_type) || !a.content_type.contains('/') {
            return invalid(format!(
                "attachment content type {:?} is not a MIME type",
                a.content_type
            ));
        }
        size += a.bytes;
    }
    if size > MAIL_MAX_MESSAGE_BYTES {
        return Err(MailProblem::LimitReached(format!(
            "the message is larger than {MAIL_MAX_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks the URL of RFC 8058 one-click unsubscribe (`List-Unsubscribe`) for a
/// server whose public address is `public_url`: `https`, or on that address (a
/// server tried out over plain HTTP), with nothing that could end the header's
/// `<…>` or start another header.
pub fn check_unsubscribe_url(url: &str, public_url: &str) -> Result<(), MailProblem> {
    if url.len() > MAIL_MAX_UNSUBSCRIBE_URL_BYTES {
        return Err(MailProblem::LimitReached(format!(
            "the unsubscribe URL is longer than {MAIL_MAX_UNSUBSCRIBE_URL_BYTES} bytes"
        )));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'))
        || !url.is_ascii()
    {
        return Err(MailProblem::Invalid(
            "the unsubscribe URL must be plain ASCII without spaces, commas, quotes, < or >".into(),
        ));
    }
    let own = public_url.trim_end_matches('/');
    let on_own = !own.is_empty()
        && url
            .strip_prefix(own)
            .is_some_and(|rest| rest.starts_with('/'));
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        && url.len() > 8;
    if !https && !on_own {
        return Err(MailProblem::Invalid(
            "the unsubscribe URL must be https (RFC 8058), or on the server's own address".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_urls_are_https_or_the_servers_own_and_cannot_break_the_header() {
        let public = "http://127.0.0.1:8080";
        for good in [
            "https://confab.example/p/email-invites/unsubscribe?t=abc",
            "http://127.0.0.1:8080/p/email-invites/unsubscribe?t=abc",
        ] {
            assert_eq!(check_unsubscribe_url(good, public), Ok(()), "{good}");
        }
        for bad in [
            "http://elsewhere.example/u",
            "http://127.0.0.1:80801/u",
            "mailto:unsubscribe@example.org",
            "https://confab.example/u>, <https://evil.example/",
            "https://confab.example/u\r\nBcc: victim@example.org",
            "https://confab.example/ü",
            "https://",
            "",
        ] {
            assert!(
                matches!(
                    check_unsubscribe_url(bad, public),
                    Err(MailProblem::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let long = format!("https://confab.example/{}", "a".repeat(2048));
        assert!(matches!(
            check_unsubscribe_url(&long, public),
            Err(MailProblem::LimitReached(_))
        ));
    }

    fn check(to: &[&str], subject: &str) -> Result<(), MailProblem> {
        let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        let message = Outgoing {
            to: &to,
            cc: &[],
            reply_to: None,
            subject,
            body_bytes: 10,
        };
        check_message(message, [])
    }

    #[test]
    fn header_injection_and_bad_addresses_are_refused() {
        assert_eq!(check(&["Ana <ana@example.org>"], "Our call"), Ok(()));
        for good in [
            "\"User ana@example.org\" <ana@example.org>",
            "\"Lima, Ana \\\"A\\\"\" <ana@example.org>",
            "Zoë Ek <zoe@example.org>",
        ] {
            assert_eq!(check(&[good], "Our call"), Ok(()), "{good}");
        }
        assert!(matches!(
            check(&["ana@example.org"], "Hi\r\nBcc: victim@example.org"),
            Err(MailProblem::Invalid(_))
        ));
        for bad in [
            "ana",
            "ana@",
            "@example.org",
            "ana@localhost",
            "a b@example.org",
            "Ana\n <ana@example.org>",
            "User ana@example.org <ana@example.org>",
            "Lima, Ana <ana@example.org>",
            "Ana\" <ana@example.org>",
            "\"Ana <ana@example.org>",
        ] {
            assert!(
                matches!(check(&[bad], "Our call"), Err(MailProblem::Invalid(_))),
                "{bad}"
            );
        }
        let many: Vec<String> = (0..101).map(|i| format!("u{i}@example.org")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            check(&many, "Our call"),
            Err(MailProblem::LimitReached(_))
        ));
    }

    #[test]
    fn attachments_count_towards_the_size_and_need_safe_names() {
        let to = vec!["ana@example.org".to_string()];
        let message = Outgoing {
            to: &to,
            cc: &[],
            reply_to: None,
            subject: "Files",
            body_bytes: 0,
        };
        let attachment = |filename, bytes| Attachment {
            filename,
            content_type: "text/calendar",
            bytes,
        };
        assert_eq!(
            check_message(message, [attachment("invite.ics", 100)]),
            Ok(())
        );
        assert!(matches!(
            check_message(message, [attachment("../x", 1)]),
            Err(MailProblem::Invalid(_))
        ));
        assert!(matches!(
            check_message(message, [attachment("big.bin", MAIL_MAX_MESSAGE_BYTES + 1)]),
            Err(MailProblem::LimitReached(_))
        ));
    }
}
