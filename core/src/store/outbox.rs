//! The mail outbox: messages waiting to be sent, with their attachments.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde::Serialize;

use super::{Store, StoreResult, mail_outbox, mail_outbox_attachment};

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting for (another) delivery attempt.
    Queued,
    Sent,
    /// Given up on after the last retry.
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Queued, Self::Sent, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A message to put in the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMail {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<NewAttachment>,
    /// The plugin queueing it, if a plugin does.
    pub plugin: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAttachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub inline_alternative: bool,
}

/// A message in the outbox, with its attachments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub message: mail_outbox::Model,
    pub attachments: Vec<mail_outbox_attachment::Model>,
}

impl OutboxMessage {
    /// The `To` addresses.
    pub fn to(&self) -> Vec<String> {
        serde_json::from_str(&self.message.recipients).unwrap_or_default()
    }

    /// The `Cc` addresses.
    pub fn cc(&self) -> Vec<String> {
        serde_json::from_str(&self.message.cc).unwrap_or_default()
    }
}

/// Messages in the outbox, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
}

fn addresses(list: &[String]) -> String {
    serde_json::Value::from(list).to_string()
}

impl Store {
    /// Writes a message and its attachments in one transaction, status `queued` and
    /// due at once; returns its id.
    pub async fn queue_mail(&self, mail: NewMail, now: DateTime<Utc>) -> StoreResult<i64> {
        let _turn = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let id = mail_outbox::Entity::insert(mail_outbox::ActiveModel {
            id: NotSet,
            recipients: Set(addresses(&mail.to)),
            cc: Set(addresses(&mail.cc)),
            reply_to: Set(mail.reply_to),
            subject: Set(mail.subject),
            body_text: Set(mail.text),
            body_html: Set(mail.html),
            plugin: Set(mail.plugin),
            status: Set(OutboxStatus::Queued.as_str().into()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
            created_at: Set(now),
        })
        .exec(&txn)
        .await?
        .last_insert_id;
        if !mail.attachments.is_empty() {
            let rows = mail.attachments.into_iter().zip(0..).map(|(a, position)| {
                mail_outbox_attachment::ActiveModel {
                    id: NotSet,
                    message_id: Set(id),
                    position: Set(position),
                    filename: Set(a.filename),
                    content_type: Set(a.content_type),
                    data: Set(a.data),
                    inline_alternative: Set(a.inline_alternative),
                }
            });
            mail_outbox_attachment::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(id)
    }

    /// One message of the outbox, with its attachments.
    pub async fn outbox_message(&self, id: i64) -> StoreResult<Option<OutboxMessage>> {
        let Some(message) = mail_outbox::Entity::find_by_id(id).one(self.conn()).await? else {
            return Ok(None);
        };
        let attachments = mail_outbox_attachment::Entity::find()
            .filter(mail_outbox_attachment::Column::MessageId.eq(id))
            .order_by_asc(mail_outbox_attachment::Column::Position)
            .all(self.conn())
            .await?;
        Ok(Some(OutboxMessage {
            message,
            attachments,
        }))
    }

    /// How many messages are queued, sent and failed.
    pub async fn outbox_counts(&self) -> StoreResult<OutboxCounts> {
        let rows: Vec<(String, i64)> = mail_outbox::Entity::find()
            .select_only()
            .column(mail_outbox::Column::Status)
            .column_as(mail_outbox::Column::Id.count(), "n")
            .group_by(mail_outbox::Column::Status)
            .into_tuple()
            .all(self.conn())
            .await?;
        let mut counts = OutboxCounts::default();
        for (status, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match OutboxStatus::parse(&status) {
                Some(OutboxStatus::Queued) => counts.queued = n,
                Some(OutboxStatus::Sent) => counts.sent = n,
                Some(OutboxStatus::Failed) => counts.failed = n,
                None => {}
            }
        }
        Ok(counts)
    }
}
