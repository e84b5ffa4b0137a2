//! Mail: the durable outbox and its delivery.
//!
//! Anything that sends mail writes the whole message to the database first (table
//! `mail_outbox`, attachments in `mail_outbox_attachments`, one transaction) with
//! status `queued` and a fixed `Message-ID`, so a crash, a restart or an SMTP outage
//! loses nothing. The [`worker`] delivers queued messages through the configured
//! [`transport`] (an SMTP relay with lettre, or `.eml` files under
//! `{data_dir}/outbox` when no relay is configured), retrying with exponential
//! backoff, and records the outcome. A sent or failed message keeps only its
//! delivery metadata (its bodies may carry a link's secret); the metadata goes with
//! the privacy purge after `privacy.retention_days`.
//!
//! Delivery is at least once: a message whose outcome could not be recorded (the
//! process died right after the relay accepted it) is attempted again after its
//! claim's lease, with the same `Message-ID`, which receivers use to drop the copy.

pub mod compose;
pub mod transport;
pub mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::{NewMail, OutboxCounts, Store, StoreResult};

pub use transport::Transport;

/// The server's outbox, in its database.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    clock: Arc<dyn Clock>,
    /// Wakes this node's delivery worker when a message is queued.
    wake: Arc<Notify>,
    /// The right-hand side of the `Message-ID`s made here.
    domain: Arc<str>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// The host part of `public_url`, or `localhost` when it is an address.
fn public_host(config: &Config) -> String {
    url::Url::parse(&config.public_url())
        .ok()
        .and_then(|u| match u.host() {
            Some(url::Host::Domain(d)) => Some(d.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "localhost".into())
}

/// The `From` of the server's mail: `mail.from`, or `Confab <confab@{host}>`.
pub fn sender(config: &Config) -> Result<Mailbox, String> {
    let text = if config.mail.from.is_empty() {
        format!("Confab <confab@{}>", public_host(config))
    } else {
        config.mail.from.clone()
    };
    text.parse::<Mailbox>()
        .map_err(|e| format!("mail.from {text:?} is not an address: {e}"))
}

impl Outbox {
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: &Config) -> Self {
        Self {
            store,
            clock,
            wake: Arc::new(Notify::new()),
            domain: public_host(config).into(),
        }
    }

    /// Stores a message for delivery and wakes the worker; returns its id.
    pub async fn enqueue(&self, mut mail: NewMail) -> StoreResult<i64> {
        mail.message_id = Some(format!(
            "{}@{}",
            crate::secret::random_base62(24),
            self.domain
        ));
        let id = self.store.queue_mail(mail, self.clock.now()).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Starts delivering this outbox's mail as `config.mail` says, until the
    /// returned handle is stopped.
    pub fn start_delivery(
        &self,
        config: &Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Delivery, String> {
        let transport = Transport::from_config(config)?;
        let worker = worker::Worker {
            store: self.store.clone(),
            clock: self.clock.clone(),
            transport,
            from: sender(config)?,
            metrics,
            wake: self.wake.clone(),
            settings: config.mail.clone(),
        };
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(worker.run(shutdown));
        Ok(Delivery { trigger, task })
    }
}

/// The running delivery worker.
#[derive(Debug)]
pub struct Delivery {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Delivery {
    /// Stops after the attempts under way are recorded.
    pub async fn stop(self) {
        self.trigger.trigger();
        let _ = self.task.await;
    }
}

/// A message that was given up on, as operators see it (no addresses, no body).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FailedMail {
    pub id: i64,
    /// The plugin that queued it; `null` for the server's own mail.
    pub plugin: Option<String>,
    pub attempts: i32,
    /// The relay's reply, or why it was not sent.
    pub error: Option<String>,
    pub queued_at: DateTime<Utc>,
}

/// The outbox as operators see it (`GET /api/v1/admin/mail`, `confab mail status`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MailStatus {
    /// Where mail goes: `smtp://host:port (starttls)` or `files in …`.
    pub transport: String,
    pub from: String,
    pub queued: u64,
    /// Of the queued, those whose last attempt failed (the relay said "try again
    /// later" or could not be reached) and that wait for their next attempt.
    pub retrying: u64,
    pub sent: u64,
    pub failed: u64,
    /// When the oldest message still waiting was queued.
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// The latest failures, newest first (at most 20).
    pub recent_failures: Vec<FailedMail>,
}

/// Reads the outbox's state.
pub async fn status(store: &Store, config: &Config) -> Result<MailStatus, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    let OutboxCounts {
        queued,
        retrying,
        sent,
        failed,
    } = store.outbox_counts().await.map_err(err)?;
    let recent_failures = store
        .failed_mail(20)
        .await
        .map_err(err)?
        .into_iter()
        .map(|m| FailedMail {
            id: m.id,
            plugin: m.plugin,
            attempts: m.attempts,
            error: m.last_error,
            queued_at: m.created_at,
        })
        .collect();
    Ok(MailStatus {
        transport: Transport::from_config(config)
            .map(|t| t.describe())
            .unwrap_or_else(|e| format!("misconfigured: {e}")),
        from: sender(config).map(|m| m.to_string()).unwrap_or_default(),
        queued,
        retrying,
        sent,
        failed,
        oldest_queued_at: store.oldest_queued_mail().await.map_err(err)?,
        recent_failures,
    })
}
