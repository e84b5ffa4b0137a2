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

use confab_plugin_contract::mail as contract;

/// A syntactically plausible address, optionally as `Name <address>`, without
/// anything that could start a new header.
pub(crate) fn check_address(field: &str, value: &str) -> Result<(), Error> {
    contract::check_address(field, value).map_err(Error::Invalid)
}

/// Checks a message before it is queued (the plugin contract's checks).
pub fn check_message(message: &Message) -> Result<(), Error> {
    let outgoing = contract::Outgoing {
        to: &message.to,
        cc: &message.cc,
        reply_to: message.reply_to.as_deref(),
        subject: &message.subject,
        body_bytes: message.text.len() + message.html.as_ref().map_or(0, String::len),
    };
    let attachments = message.attachments.iter().map(|a| contract::Attachment {
        filename: &a.filename,
        content_type: &a.content_type,
        bytes: a.data.len(),
    });
    contract::check_message(outgoing, attachments).map_err(|problem| match problem {
        contract::MailProblem::Invalid(why) => Error::Invalid(why),
        contract::MailProblem::LimitReached(why) => Error::LimitReached(why),
    })
}

/// The `mail` capability: queues the plugin's messages in the outbox, within the
/// manifest's hourly limit.
pub(crate) struct MailHost {
    grants: Arc<Grants>,
    store: Store,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
    public_url: Arc<str>,
}

impl MailHost {
    pub(super) fn new(grants: &Arc<Grants>, deps: &PluginDeps) -> Self {
        Self {
            grants: grants.clone(),
            store: deps.store.clone(),
            clock: deps.clock.clone(),
            outbox: deps.mail.clone(),
            public_url: deps.public_url.clone(),
        }
    }

    /// Queues `message`, with one-click unsubscribe at `unsubscribe` when given.
    async fn queue(&self, message: Message, unsubscribe: Option<String>) -> Result<String, Error> {
        check_message(&message)?;
        if let Some(url) = &unsubscribe {
            contract::check_unsubscribe_url(url, &self.public_url).map_err(
                |problem| match problem {
                    contract::MailProblem::Invalid(why) => Error::Invalid(why),
                    contract::MailProblem::LimitReached(why) => Error::LimitReached(why),
                },
            )?;
        }
        let per_hour = self.grants.manifest.mails_per_hour();
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
        queue(&self.outbox, &self.grants.name, message, unsubscribe)
            .await
            .map_err(Error::Unavailable)
    }
}

/// A plugin's message as the outbox keeps it.
fn new_mail(plugin: &str, message: Message, unsubscribe: Option<String>) -> NewMail {
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
        list_unsubscribe: unsubscribe,
    }
}

/// Queues `plugin`'s message in the server's outbox (after the capability's checks
/// and limit); returns its outbox id.
pub async fn queue(
    outbox: &Outbox,
    plugin: &str,
    message: Message,
    unsubscribe: Option<String>,
) -> Result<String, String> {
    match outbox.enqueue(new_mail(plugin, message, unsubscribe)).await {
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
            mail.queue(message, None).await
        }
        .await)
    }

    async fn queue_with_unsubscribe(
        &mut self,
        message: Message,
        unsubscribe_url: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        Ok(async {
            let mail = self.granted(Capability::Mail, |c| c.mail.as_mut())?;
            mail.queue(message, Some(unsubscribe_url)).await
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

    /// A plugin learns of a bad address when it queues the mail, not from a
    /// delivery that fails later: what the check lets through, the outbox can send.
    #[test]
    fn every_address_the_check_accepts_is_one_the_outbox_can_send_to() {
        for address in [
            "ana@example.org",
            "Ana <ana@example.org>",
            "\"User ana@example.org\" <ana@example.org>",
            "Zoë Ek <zoe@example.org>",
            "Ana B. Lima <ana@example.org>",
            "\"Lima, Ana \\\"A\\\"\" <ana@example.org>",
        ] {
            assert!(check_address("to", address).is_ok(), "{address}");
            address
                .parse::<lettre::message::Mailbox>()
                .unwrap_or_else(|e| panic!("{address}: {e}"));
        }
        // Unquoted, an @ or a comma in the name is refused at once.
        for address in [
            "User ana@example.org <ana@example.org>",
            "Lima, Ana <ana@example.org>",
        ] {
            assert!(check_address("to", address).is_err(), "{address}");
            assert!(
                address.parse::<lettre::message::Mailbox>().is_err(),
                "{address}"
            );
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
