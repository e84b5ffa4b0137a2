//! `mail`: queue a message in the server's outbox. Addresses and headers are checked
//! here and the manifest's hourly limit applies; delivery belongs to the outbox.

use std::sync::Arc;

use super::Grants;
use crate::clock::Clock;
use crate::mail::Outbox;
use crate::plugins::bindings::confab::plugin::mail::{Host, Message};
use crate::plugins::bindings::confab::plugin::types::Error;
use crate::plugins::deps::PluginDeps;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::store::{NewAttachment, NewMail, Store};

/// Recipients (to and cc together) per message.
pub const MAX_RECIPIENTS: usize = 100;
/// Subject length in characters.
const MAX_SUBJECT_CHARS: usize = 400;
/// Bodies and attachments together.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// A syntactically plausible address, optionally as `Name <address>`, without
/// anything that could start a new header.
pub(crate) fn check_address(field: &str, value: &str) -> Result<(), Error> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(Error::Invalid(format!(
            "{field}: {value:?} contains a line break"
        )));
    }
    let addr = match (value.rfind('<'), value.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => value.trim(),
    };
    let valid = addr.len() <= 254
        && addr.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && domain.contains('.')
                && !addr.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{field}: {value:?} is not an email address"
        )))
    }
}

/// Checks a message before it is queued.
pub fn check_message(message: &Message) -> Result<(), Error> {
    if message.to.is_empty() {
        return Err(Error::Invalid(
            "a message needs at least one recipient".into(),
        ));
    }
    if message.to.len() + message.cc.len() > MAX_RECIPIENTS {
        return Err(Error::LimitReached(format!(
            "at most {MAX_RECIPIENTS} recipients per message"
        )));
    }
    for to in &message.to {
        check_address("to", to)?;
    }
    for cc in &message.cc {
        check_address("cc", cc)?;
    }
    if let Some(reply_to) = &message.reply_to {
        check_address("reply-to", reply_to)?;
    }
    if message.subject.contains(['\r', '\n', '\0']) {
        return Err(Error::Invalid("the subject contains a line break".into()));
    }
    if message.subject.trim().is_empty() || message.subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(Error::Invalid(format!(
            "the subject must be 1 to {MAX_SUBJECT_CHARS} characters"
        )));
    }
    let mut size = message.text.len() + message.html.as_ref().map_or(0, String::len);
    for a in &message.attachments {
        if a.filename.is_empty()
            || a.filename.contains(['\r', '\n', '\0', '/', '\\', '"'])
            || a.filename.len() > 255
        {
            return Err(Error::Invalid(format!(
                "attachment file name {:?} is not allowed",
                a.filename
            )));
        }
        if a.content_type.contains(['\r', '\n', '\0']) || !a.content_type.contains('/') {
            return Err(Error::Invalid(format!(
                "attachment content type {:?} is not a MIME type",
                a.content_type
            )));
        }
        size += a.data.len();
    }
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::LimitReached(format!(
            "the message is larger than {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The `mail` capability: queues the plugin's messages in the outbox, within the
/// manifest's hourly limit.
pub(crate) struct MailHost {
    grants: Arc<Grants>,
    store: Store,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
}

impl MailHost {
    pub(super) fn new(grants: &Arc<Grants>, deps: &PluginDeps) -> Self {
        Self {
            grants: grants.clone(),
            store: deps.store.clone(),
            clock: deps.clock.clone(),
            outbox: deps.mail.clone(),
        }
    }

    async fn queue(&self, message: Message) -> Result<String, Error> {
        check_message(&message)?;
        let per_hour = self
            .grants
            .manifest
            .permissions
            .mail
            .as_ref()
            .map_or(0, |m| m.per_hour);
        // Counted from the outbox itself, so the limit holds across restarts and
        // reloads, and a message the outbox did not take does not count.
        let _turn = self.grants.mail_turn.lock().await;
        let since = self.clock.now() - chrono::Duration::hours(1);
        let queued = self
            .store
            .plugin_mail_since(&self.grants.name, since)
            .await
            .map_err(|_| Error::Unavailable("the outbox cannot be read; try again later".into()))?;
        if queued >= u64::from(per_hour) {
            return Err(Error::LimitReached(format!(
                "this plugin may queue {per_hour} mails per hour"
            )));
        }
        queue(&self.outbox, &self.grants.name, message)
            .await
            .map_err(Error::Unavailable)
    }
}

/// A plugin's message as the outbox keeps it.
fn new_mail(plugin: &str, message: Message) -> NewMail {
    NewMail {
        to: message.to,
        cc: message.cc,
        reply_to: message.reply_to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        attachments: message
            .attachments
            .into_iter()
            .map(|a| NewAttachment {
                filename: a.filename,
                content_type: a.content_type,
                data: a.data,
                inline_alternative: a.inline_alternative,
            })
            .collect(),
        plugin: Some(plugin.to_string()),
        message_id: None,
    }
}

/// Queues `plugin`'s message in the server's outbox (after the capability's checks
/// and limit); returns its outbox id.
pub async fn queue(outbox: &Outbox, plugin: &str, message: Message) -> Result<String, String> {
    match outbox.enqueue(new_mail(plugin, message)).await {
        Ok(id) => {
            tracing::debug!(%plugin, id, "mail queued");
            Ok(id.to_string())
        }
        Err(err) => {
            tracing::warn!(%plugin, error = %err, "cannot queue a plugin's mail");
            Err("the outbox did not take the message; try again later".into())
        }
    }
}

impl Host for HostState {
    async fn queue(&mut self, message: Message) -> wasmtime::Result<Result<String, Error>> {
        Ok(async {
            let mail = self.granted(Capability::Mail, |c| c.mail.as_mut())?;
            mail.queue(message).await
        }
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            to: vec!["Ana <ana@example.org>".into()],
            cc: vec!["bo@example.org".into()],
            reply_to: None,
            subject: "Our call".into(),
            text: "Join at https://confab.example/j/abc".into(),
            html: None,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn header_injection_and_bad_addresses_are_refused() {
        assert!(check_message(&message()).is_ok());
        let mut m = message();
        m.subject = "Hi\r\nBcc: victim@example.org".into();
        assert!(matches!(check_message(&m), Err(Error::Invalid(_))));
        let mut m = message();
        m.to = vec!["Ana\n <ana@example.org>".into()];
        assert!(matches!(check_message(&m), Err(Error::Invalid(_))));
        for bad in [
            "ana",
            "ana@",
            "@example.org",
            "ana@localhost",
            "a b@example.org",
        ] {
            let mut m = message();
            m.to = vec![bad.into()];
            assert!(matches!(check_message(&m), Err(Error::Invalid(_))), "{bad}");
        }
        let mut m = message();
        m.to = (0..101).map(|i| format!("u{i}@example.org")).collect();
        assert!(matches!(check_message(&m), Err(Error::LimitReached(_))));
    }
}
