//! The mail outbox: messages waiting to be sent, with their attachments.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
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
    /// The `Message-ID` header, without angle brackets (the outbox makes one).
    pub message_id: Option<String>,
    /// One-click unsubscribe (RFC 8058): the URL of `List-Unsubscribe`, sent with
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub list_unsubscribe: Option<String>,
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

/// What a delivery attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Accepted by the SMTP server (or written to the file outbox).
    Sent,
    /// Try again at `next_attempt_at`.
    Retry {
        next_attempt_at: DateTime<Utc>,
        error: String,
    },
    /// Given up: a permanent refusal, or the last attempt failed.
    Failed { error: String },
}

/// Messages in the outbox, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub queued: u64,
    /// Of the queued, those whose last attempt failed and that wait for the next
    /// (not counting one being attempted right now).
    pub retrying: u64,
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
            message_id: Set(mail.message_id),
            claim: Set(None),
            sent_at: Set(None),
            list_unsubscribe: Set(mail.list_unsubscribe),
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
        let retrying = mail_outbox::Entity::find()
            .filter(mail_outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
            .filter(mail_outbox::Column::Attempts.gt(0))
            .filter(mail_outbox::Column::Claim.is_null())
            .count(self.conn())
            .await?;
        counts.retrying = retrying;
        Ok(counts)
    }

    /// Claims up to `limit` queued messages that are due at `now` for one delivery
    /// attempt: each gets `claim` as its holder, one more attempt, and
    /// `next_attempt_at = lease_until`, so that a worker that dies mid-attempt leaves
    /// it due again after the lease. Rows another worker claimed first are skipped.
    pub async fn claim_due_mail(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        claim: &str,
        limit: u64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let due: Vec<i64> = mail_outbox::Entity::find()
            .select_only()
            .column(mail_outbox::Column::Id)
            .filter(mail_outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
            .filter(mail_outbox::Column::NextAttemptAt.lte(now))
            .order_by_asc(mail_outbox::Column::NextAttemptAt)
            .order_by_asc(mail_outbox::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(self.conn())
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        {
            let _turn = self.write_turn().await;
            mail_outbox::Entity::update_many()
                .col_expr(mail_outbox::Column::Claim, Expr::value(claim))
                .col_expr(mail_outbox::Column::NextAttemptAt, Expr::value(lease_until))
                .col_expr(
                    mail_outbox::Column::Attempts,
                    Expr::col(mail_outbox::Column::Attempts).add(1),
                )
                .filter(mail_outbox::Column::Id.is_in(due.iter().copied()))
                .filter(mail_outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
                .filter(mail_outbox::Column::NextAttemptAt.lte(now))
                .exec(self.conn())
                .await?;
        }
        let messages = mail_outbox::Entity::find()
            .filter(mail_outbox::Column::Id.is_in(due.iter().copied()))
            .filter(mail_outbox::Column::Claim.eq(claim))
            .order_by_asc(mail_outbox::Column::Id)
            .all(self.conn())
            .await?;
        let mut attachments = mail_outbox_attachment::Entity::find()
            .filter(mail_outbox_attachment::Column::MessageId.is_in(messages.iter().map(|m| m.id)))
            .order_by_asc(mail_outbox_attachment::Column::MessageId)
            .order_by_asc(mail_outbox_attachment::Column::Position)
            .all(self.conn())
            .await?
            .into_iter()
            .peekable();
        Ok(messages
            .into_iter()
            .map(|message| {
                let mut own = Vec::new();
                while let Some(a) = attachments.next_if(|a| a.message_id == message.id) {
                    own.push(a);
                }
                OutboxMessage {
                    message,
                    attachments: own,
                }
            })
            .collect())
    }

    /// Records the outcome of the attempt that holds `claim`. A sent or failed
    /// message keeps only its delivery metadata: its bodies and attachments (which
    /// may carry a link's secret) are deleted in the same transaction. Returns false
    /// when the claim is no longer held (the lease ran out and another attempt took
    /// the message).
    pub async fn record_delivery(
        &self,
        id: i64,
        claim: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let mut update = mail_outbox::Entity::update_many()
            .col_expr(
                mail_outbox::Column::Claim,
                Expr::value(Option::<String>::None),
            )
            .filter(mail_outbox::Column::Id.eq(id))
            .filter(mail_outbox::Column::Claim.eq(claim));
        let finished = match outcome {
            DeliveryOutcome::Sent => {
                update = update
                    .col_expr(
                        mail_outbox::Column::Status,
                        Expr::value(OutboxStatus::Sent.as_str()),
                    )
                    .col_expr(mail_outbox::Column::SentAt, Expr::value(now))
                    .col_expr(
                        mail_outbox::Column::LastError,
                        Expr::value(Option::<String>::None),
                    );
                true
            }
            DeliveryOutcome::Retry {
                next_attempt_at,
                error,
            } => {
                update = update
                    .col_expr(
                        mail_outbox::Column::NextAttemptAt,
                        Expr::value(*next_attempt_at),
                    )
                    .col_expr(mail_outbox::Column::LastError, Expr::value(error.as_str()));
                false
            }
            DeliveryOutcome::Failed { error } => {
                update = update
                    .col_expr(
                        mail_outbox::Column::Status,
                        Expr::value(OutboxStatus::Failed.as_str()),
                    )
                    .col_expr(mail_outbox::Column::LastError, Expr::value(error.as_str()));
                true
            }
        };
        if finished {
            update = update
                .col_expr(mail_outbox::Column::BodyText, Expr::value(""))
                .col_expr(
                    mail_outbox::Column::BodyHtml,
                    Expr::value(Option::<String>::None),
                );
        }
        let held = update.exec(&txn).await?.rows_affected == 1;
        if held && finished {
            mail_outbox_attachment::Entity::delete_many()
                .filter(mail_outbox_attachment::Column::MessageId.eq(id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(held)
    }

    /// When the next queued message is due, if any is queued.
    pub async fn next_mail_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(mail_outbox::Entity::find()
            .select_only()
            .column(mail_outbox::Column::NextAttemptAt)
            .filter(mail_outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
            .order_by_asc(mail_outbox::Column::NextAttemptAt)
            .limit(1)
            .into_tuple()
            .one(self.conn())
            .await?)
    }

    /// Messages `plugin` queued at or after `since` (its hourly limit).
    pub async fn plugin_mail_since(&self, plugin: &str, since: DateTime<Utc>) -> StoreResult<u64> {
        let n: Option<i64> = mail_outbox::Entity::find()
            .select_only()
            .column_as(mail_outbox::Column::Id.count(), "n")
            .filter(mail_outbox::Column::Plugin.eq(plugin))
            .filter(mail_outbox::Column::CreatedAt.gte(since))
            .into_tuple()
            .one(self.conn())
            .await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// The latest failed messages, newest first (metadata only: their bodies are gone).
    pub async fn failed_mail(&self, limit: u64) -> StoreResult<Vec<mail_outbox::Model>> {
        Ok(mail_outbox::Entity::find()
            .filter(mail_outbox::Column::Status.eq(OutboxStatus::Failed.as_str()))
            .order_by_desc(mail_outbox::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    /// When the oldest queued message was queued, if any is.
    pub async fn oldest_queued_mail(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(mail_outbox::Entity::find()
            .select_only()
            .column(mail_outbox::Column::CreatedAt)
            .filter(mail_outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
            .order_by_asc(mail_outbox::Column::CreatedAt)
            .limit(1)
            .into_tuple()
            .one(self.conn())
            .await?)
    }

    /// Deletes sent and failed messages queued before `cutoff` (the retention period);
    /// queued ones stay until they are delivered or given up on.
    pub async fn delete_outbox_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let finished = [OutboxStatus::Sent.as_str(), OutboxStatus::Failed.as_str()];
        let old: Vec<i64> = mail_outbox::Entity::find()
            .select_only()
            .column(mail_outbox::Column::Id)
            .filter(mail_outbox::Column::Status.is_in(finished))
            .filter(mail_outbox::Column::CreatedAt.lt(cutoff))
            .into_tuple()
            .all(&txn)
            .await?;
        let mut deleted = 0;
        for chunk in old.chunks(500) {
            mail_outbox_attachment::Entity::delete_many()
                .filter(mail_outbox_attachment::Column::MessageId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
            deleted += mail_outbox::Entity::delete_many()
                .filter(mail_outbox::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        txn.commit().await?;
        Ok(deleted)
    }
}
