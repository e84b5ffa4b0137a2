//! The mails: one per invitee, with the bodies from the plugin's templates
//! (`templates/invite.*`, `update.*`, `cancel.*`, a `.txt` and an `.html` each, in
//! the server's shared frame `email/base.*`) and, for a call with a time, an iMIP
//! part (RFC 6047): the `.ics` of the invitation, update or cancellation, offered as
//! an alternative body and as the file `invite.ics`.

use chrono::{DateTime, Utc};
use confab_calendar::ics::{self, IcsError, Method, ScheduleSpec};
use confab_plugin_sdk::mail::{Attachment, Message};
use confab_plugin_sdk::{Error, templates};
use serde_json::{Value, json};

use crate::input::{Person, html_safe, one_line};
use crate::record::{InviteRecord, Notice, Status};

/// The name of the calendar file in every mail that has one.
pub const ICS_FILENAME: &str = "invite.ics";
/// What the link is called in the calendar event.
const LABEL: &str = "Join the call";
/// The longest title in a subject, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// The longest subject the server's outbox takes, in characters.
const MAX_SUBJECT_CHARS: usize = 400;

/// Why a mail could not be written (nothing is queued then).
#[derive(Debug)]
pub enum ComposeError {
    /// The server could not render a template (the text says why).
    Template(String, Error),
    /// The calendar engine refused the event.
    Calendar(IcsError),
    /// The link cannot go into HTML as it is.
    UnsafeLink,
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComposeError::Template(name, e) => write!(f, "the template {name} failed: {e:?}"),
            ComposeError::Calendar(e) => write!(f, "{e}"),
            ComposeError::UnsafeLink => write!(f, "the link cannot be written into a mail"),
        }
    }
}

impl Notice {
    /// The plugin's templates for this notice, without `.txt` / `.html`.
    fn template(self) -> &'static str {
        match self {
            Notice::Invite => "invite",
            Notice::Update => "update",
            Notice::Cancel => "cancel",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Notice::Invite => "invite",
            Notice::Update => "update",
            Notice::Cancel => "cancel",
        }
    }

    fn method(self) -> Method {
        match self {
            Notice::Invite | Notice::Update => Method::Request,
            Notice::Cancel => Method::Cancel,
        }
    }
}

/// The inviter's name as mails show it: the account's name, else its address.
pub fn inviter(record: &InviteRecord) -> Option<String> {
    let organizer = record.organizer.as_ref()?;
    Some(
        organizer
            .display_name()
            .unwrap_or_else(|| organizer.email.clone()),
    )
}

fn title(record: &InviteRecord) -> String {
    match one_line(&record.title, MAX_TITLE_CHARS) {
        t if t.is_empty() => "Call".to_string(),
        t => t,
    }
}

/// The subject: one line whatever the names and titles hold.
pub fn subject(notice: Notice, inviter: Option<&str>, title: &str) -> String {
    match (notice, inviter) {
        (Notice::Invite, Some(name)) => format!("{name} invited you to a call: {title}"),
        (Notice::Invite, None) => format!("You are invited to a call: {title}"),
        (Notice::Update, _) => format!("Updated invitation: {title}"),
        (Notice::Cancel, _) => format!("Cancelled: {title}"),
    }
}

/// What the templates get (see the README for each variable).
pub fn context(
    record: &InviteRecord,
    notice: Notice,
    to: &Person,
    note: Option<&str>,
    unsubscribe: &str,
) -> Value {
    let calendar = record.has_calendar().then(|| {
        json!({
            "summary": title(record),
            "method": notice.method().as_str(),
            "sequence": record.sequence,
            "filename": ICS_FILENAME,
        })
    });
    json!({
        "notice": notice.as_str(),
        "inviter": inviter(record),
        "inviter_email": record.organizer.as_ref().map(|o| o.email.clone()),
        "title": title(record),
        "note": note,
        "url": record.url,
        "when": record.schedule.as_ref().map(|s| s.describe()),
        "repeats": record.schedule.as_ref().and_then(|s| s.repeats()),
        "previous_when": record.previous.as_ref().map(|s| s.describe()),
        "revoked": record.status == Status::Revoked,
        "recipient_name": to.display_name(),
        "calendar": calendar,
        "unsubscribe_url": unsubscribe,
    })
}

fn person(p: &Person) -> ics::Person {
    ics::Person {
        email: p.email.clone(),
        name: p.display_name(),
    }
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

/// The `.ics` for `to`, when the call has a time: the event with its organizer and
/// `to` as the one attendee (invitees do not see each other's addresses).
pub fn calendar(
    record: &InviteRecord,
    notice: Notice,
    to: &Person,
    now: DateTime<Utc>,
) -> Result<Option<(Method, String)>, IcsError> {
    let (Some(schedule), Some(organizer)) = (&record.schedule, &record.organizer) else {
        return Ok(None);
    };
    let spec = ScheduleSpec {
        uid: record.uid.clone(),
        title: title(record),
        description: None,
        start: schedule.start_utc(),
        end: schedule.end_utc(),
        time_zone: schedule.time_zone.clone(),
        rrule: schedule.rrule.clone(),
        organizer: Some(person(organizer)),
        attendees: vec![person(to)],
        sequence: record.sequence,
        cancelled: notice == Notice::Cancel,
        link_url: record.url.clone(),
        label: LABEL.to_string(),
        created: Some(time(record.created)),
        last_modified: Some(time(record.updated)),
    };
    let method = notice.method();
    ics::schedule_ics(&spec, method, now).map(|ics| Some((method, ics)))
}

/// Renders the plugin's template `name` (`invite.txt` …), unless the operator still
/// overrides it the way of before it moved into the plugin: a file `email/{name}`
/// under the server's `templates.dir`, which the server then shares as the template
/// `email/{name}` (it has none of that name otherwise).
fn render(name: &str, context: &str) -> Result<String, ComposeError> {
    let legacy = format!("email/{name}");
    match templates::render(&legacy, context) {
        Err(Error::NotFound(_)) => templates::render(name, context)
            .map_err(|e| ComposeError::Template(name.to_string(), e)),
        rendered => rendered.map_err(|e| ComposeError::Template(legacy, e)),
    }
}

/// The mail that tells `to` about the call (with the inviter's `note` on an
/// invitation), with `unsubscribe`, the page where `to` can ask for no more
/// invitations, as a link in the text (its `List-Unsubscribe` header is the
/// outbox's: `mail.queue-with-unsubscribe`).
pub fn compose(
    record: &InviteRecord,
    notice: Notice,
    to: &Person,
    note: Option<&str>,
    unsubscribe: &str,
    now: DateTime<Utc>,
) -> Result<Message, ComposeError> {
    if !html_safe(&record.url) || !html_safe(unsubscribe) {
        return Err(ComposeError::UnsafeLink);
    }
    let context = context(record, notice, to, note, unsubscribe).to_string();
    let text = render(&format!("{}.txt", notice.template()), &context)?;
    let html = render(&format!("{}.html", notice.template()), &context)?;
    let attachments = match calendar(record, notice, to, now).map_err(ComposeError::Calendar)? {
        Some((method, ics)) => vec![Attachment {
            filename: ICS_FILENAME.to_string(),
            content_type: format!("text/calendar; charset=UTF-8; method={}", method.as_str()),
            data: ics.into_bytes(),
            inline_alternative: true,
        }],
        None => Vec::new(),
    };
    Ok(Message {
        to: vec![to.mailbox()],
        cc: Vec::new(),
        reply_to: record.organizer.as_ref().map(Person::mailbox),
        subject: one_line(
            &subject(notice, inviter(record).as_deref(), &title(record)),
            MAX_SUBJECT_CHARS,
        ),
        text,
        html: Some(html),
        attachments,
    })
}
