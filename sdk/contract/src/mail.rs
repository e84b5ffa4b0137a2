//! The checks a message passes before the `mail` capability queues it: addresses
//! that cannot start a new header, a subject on one line, and the size limits of
//! [`crate::limits`].

use crate::limits::{MAIL_MAX_MESSAGE_BYTES, MAIL_MAX_RECIPIENTS, MAIL_MAX_SUBJECT_CHARS};

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

/// A syntactically plausible address, optionally as `Name <address>`, without
/// anything that could start a new header. `field` names it in the refusal.
pub fn check_address(field: &str, value: &str) -> Result<(), String> {
    if has_line_break(value) {
        return Err(format!("{field}: {value:?} contains a line break"));
    }
    let addr = match (value.rfind('<'), value.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => value.trim(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
