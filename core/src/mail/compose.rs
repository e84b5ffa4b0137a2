//! An outbox row as an RFC 5322 message.
//!
//! The MIME tree follows what Gmail, Outlook and Apple Mail expect of an iMIP
//! invitation (RFC 6047) when one attachment is marked `inline_alternative`:
//!
//! ```text
//! multipart/mixed
//! ├── multipart/alternative
//! │   ├── text/plain
//! │   ├── text/html                       (when the message has HTML)
//! │   └── text/calendar; method=REQUEST   (each inline-alternative attachment)
//! └── invite.ics                          (every attachment, as a file too)
//! ```
//!
//! Without attachments the top is `multipart/alternative` (or a single `text/plain`).
//! Text parts are UTF-8 and sent as 7bit when they can be, so links arrive
//! unchanged; otherwise quoted-printable, which every client decodes before a click.

use lettre::Message;
use lettre::message::header::{ContentDisposition, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes, MultiPart, SinglePart};

use crate::store::{OutboxMessage, mail_outbox_attachment};

/// Why a queued message cannot be made into mail (it will never send).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(String);

fn mailbox(field: &str, value: &str) -> Result<Mailbox, ComposeError> {
    value
        .parse::<Mailbox>()
        .map_err(|e| ComposeError(format!("{field} {value:?} is not an address: {e}")))
}

fn mailboxes(field: &str, values: &[String]) -> Result<Option<Mailboxes>, ComposeError> {
    let mut out = Mailboxes::new();
    for value in values {
        out.push(mailbox(field, value)?);
    }
    Ok((!values.is_empty()).then_some(out))
}

fn content_type(value: &str) -> Result<ContentType, ComposeError> {
    ContentType::parse(value)
        .map_err(|e| ComposeError(format!("content type {value:?} is not valid: {e}")))
}

/// The part an attachment offers as an alternative body: text stays text.
fn alternative_part(a: &mail_outbox_attachment::Model) -> Result<SinglePart, ComposeError> {
    let kind = content_type(&a.content_type)?;
    Ok(match String::from_utf8(a.data.clone()) {
        Ok(text) => SinglePart::builder().content_type(kind).body(text),
        Err(raw) => SinglePart::builder()
            .content_type(kind)
            .body(raw.into_bytes()),
    })
}

fn attachment_part(a: &mail_outbox_attachment::Model) -> Result<SinglePart, ComposeError> {
    Ok(SinglePart::builder()
        .content_type(content_type(&a.content_type)?)
        .header(ContentDisposition::attachment(&a.filename))
        .body(a.data.clone()))
}

/// `List-Unsubscribe` (RFC 2369) with one URL, as RFC 8058 wants it.
#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        ))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): the URL
/// unsubscribes with one `POST`, no page to visit.
#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

/// Builds the message for `row`, sent from `from`.
pub fn compose(row: &OutboxMessage, from: &Mailbox) -> Result<Message, ComposeError> {
    let m = &row.message;
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(m.subject.clone())
        .date(m.created_at.into())
        .message_id(m.message_id.as_ref().map(|id| format!("<{id}>")));
    if let Some(to) = mailboxes("to", &row.to())? {
        builder = builder.mailbox(lettre::message::header::To::from(to));
    }
    if let Some(cc) = mailboxes("cc", &row.cc())? {
        builder = builder.mailbox(lettre::message::header::Cc::from(cc));
    }
    if let Some(reply_to) = &m.reply_to {
        builder = builder.reply_to(mailbox("reply-to", reply_to)?);
    }
    // Checked when queued; checked again, as a row may come from an older server.
    if let Some(url) = &m.list_unsubscribe {
        if url.is_empty()
            || !url.is_ascii()
            || url.contains(|c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(ComposeError(format!(
                "the unsubscribe URL {url:?} cannot go into a header"
            )));
        }
        builder = builder
            .header(ListUnsubscribe(url.clone()))
            .header(ListUnsubscribePost);
    }

    let text = SinglePart::builder()
        .content_type(ContentType::TEXT_PLAIN)
        .body(m.body_text.clone());
    let mut alternatives = Vec::new();
    if let Some(html) = &m.body_html {
        alternatives.push(
            SinglePart::builder()
                .content_type(ContentType::TEXT_HTML)
                .body(html.clone()),
        );
    }
    for a in row.attachments.iter().filter(|a| a.inline_alternative) {
        alternatives.push(alternative_part(a)?);
    }
    let body = if alternatives.is_empty() {
        None
    } else {
        Some(alternatives.into_iter().fold(
            MultiPart::alternative().singlepart(text.clone()),
            |mp, p| mp.singlepart(p),
        ))
    };
    let result = if row.attachments.is_empty() {
        match body {
            Some(alternative) => builder.multipart(alternative),
            None => builder.singlepart(text),
        }
    } else {
        let mut mixed = match body {
            Some(alternative) => MultiPart::mixed().multipart(alternative),
            None => MultiPart::mixed().singlepart(text),
        };
        for a in &row.attachments {
            mixed = mixed.singlepart(attachment_part(a)?);
        }
        builder.multipart(mixed)
    };
    result.map_err(|e| ComposeError(format!("cannot build the message: {e}")))
}
