//! Mail: the durable outbox.
//!
//! Anything that sends mail writes the whole message to the database first (table
//! `mail_outbox`, attachments in `mail_outbox_attachments`, one transaction) with
//! status `queued`, so a crash or an SMTP outage loses nothing. Each row has room
//! for what delivery records: attempts, the next attempt's time, the last error and
//! the outcome (`sent` or `failed`). Delivery itself (lettre, with retries) is not
//! here yet: until it is, queued messages stay queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::Clock;
use crate::plugins::MailMessage;
use crate::store::{NewAttachment, NewMail, Store, StoreResult};

/// The server's outbox, in its database.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Stores a message for delivery; returns its id.
    pub async fn enqueue(&self, mail: NewMail) -> StoreResult<i64> {
        self.store.queue_mail(mail, self.clock.now()).await
    }
}

/// A plugin's message as the outbox keeps it.
pub fn from_plugin(plugin: &str, message: MailMessage) -> NewMail {
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
    }
}

impl crate::plugins::Outbox for Outbox {
    fn queue<'a>(
        &'a self,
        plugin: &'a str,
        message: MailMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            match self.enqueue(from_plugin(plugin, message)).await {
                Ok(id) => {
                    tracing::debug!(%plugin, id, "mail queued");
                    Ok(id.to_string())
                }
                Err(err) => {
                    tracing::warn!(%plugin, error = %err, "cannot queue a plugin's mail");
                    Err("the outbox did not take the message; try again later".into())
                }
            }
        })
    }
}
