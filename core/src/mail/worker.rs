//! The delivery worker: takes due messages from the outbox and sends them.
//!
//! Each round claims a batch of due messages (one UPDATE; a message another worker
//! holds is skipped) and sends up to `mail.smtp_pool_size` at a time over the pooled
//! connections. Every attempt is recorded as it ends: sent (bodies deleted), a retry
//! at `retry_initial_ms · 2^(attempt-1)` (at most `retry_max_ms`, ±10 %), or failed
//! with the relay's reply (a 5xx, or the last of `max_attempts`). Queueing on this
//! node wakes the worker at once; otherwise it looks again when the next message
//! comes due, and at least every `poll_interval_ms`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lettre::message::Mailbox;
use rand::Rng;
use tokio::sync::Notify;

use super::compose::compose;
use super::transport::{SendError, Transport};
use crate::clock::Clock;
use crate::config::MailConfig;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{DeliveryOutcome, OutboxMessage, Store};

/// How long a claimed message stays away from other workers: longer than any
/// attempt can take, so that only a worker that died gives it up.
const LEASE: chrono::Duration = chrono::Duration::minutes(10);

/// Messages claimed per round (a few per connection, so the pool stays busy).
const BATCH_PER_CONNECTION: u64 = 8;

/// Everything the worker works with.
pub struct Worker {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub transport: Transport,
    pub from: Mailbox,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    pub settings: MailConfig,
}

impl Worker {
    /// The wait after `attempt` (1 = the first) failed.
    fn backoff(&self, attempt: u32) -> chrono::Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let base = self
            .settings
            .retry_initial_ms
            .saturating_mul(1 << exponent)
            .min(self.settings.retry_max_ms);
        let jitter = rand::thread_rng().gen_range(0.9..=1.1);
        chrono::Duration::milliseconds((base as f64 * jitter) as i64)
    }

    /// Runs until `shutdown`; an attempt under way is finished and recorded first.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(transport = %self.transport.describe(), "mail delivery started");
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            // Deliver whatever is due, round after round.
            loop {
                match self.round().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "mail delivery: the outbox is unavailable; will retry");
                        break;
                    }
                }
                if shutdown.is_triggered() {
                    return;
                }
            }
            let wait = match self.store.next_mail_due().await {
                Ok(Some(due)) => (due - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(poll),
                _ => poll,
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// One round: claims due messages and attempts each; returns how many.
    async fn round(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let claim = crate::secret::random_base62(20);
        let batch = self
            .store
            .claim_due_mail(
                now,
                now + LEASE,
                &claim,
                u64::from(self.settings.smtp_pool_size) * BATCH_PER_CONNECTION,
            )
            .await?;
        let n = batch.len();
        futures_util::stream::iter(batch)
            .for_each_concurrent(self.settings.smtp_pool_size as usize, |row| {
                self.attempt(row, &claim)
            })
            .await;
        Ok(n)
    }

    async fn attempt(&self, row: OutboxMessage, claim: &str) {
        let id = row.message.id;
        let attempt = u32::try_from(row.message.attempts).unwrap_or(u32::MAX);
        let result = match compose(&row, &self.from) {
            Ok(message) => self.transport.send(id, &message).await,
            Err(err) => Err(SendError::Permanent(err.to_string())),
        };
        let now = self.clock.now();
        let outcome = match result {
            Ok(()) => DeliveryOutcome::Sent,
            Err(SendError::Permanent(error)) => DeliveryOutcome::Failed { error },
            Err(SendError::Transient(error)) if attempt >= self.settings.max_attempts => {
                DeliveryOutcome::Failed {
                    error: format!("gave up after {attempt} attempts: {error}"),
                }
            }
            Err(SendError::Transient(error)) => DeliveryOutcome::Retry {
                next_attempt_at: now + self.backoff(attempt),
                error,
            },
        };
        match &outcome {
            DeliveryOutcome::Sent => {
                tracing::debug!(id, attempt, "mail sent");
                let waited = (now - row.message.created_at).num_milliseconds() as f64 / 1000.0;
                self.metrics.mail_attempt("sent", Some(waited));
            }
            DeliveryOutcome::Retry {
                next_attempt_at,
                error,
            } => {
                tracing::info!(id, attempt, %next_attempt_at, %error, "mail not delivered yet; will retry");
                self.metrics.mail_attempt("retry", None);
            }
            DeliveryOutcome::Failed { error } => {
                tracing::warn!(id, attempt, %error, "mail failed");
                self.metrics.mail_attempt("failed", None);
            }
        }
        self.record(id, claim, &outcome, now).await;
    }

    /// Records an outcome, trying a few times: if the database stays away the lease
    /// runs out and the message is attempted again (the relay sees the same
    /// `Message-ID`).
    async fn record(&self, id: i64, claim: &str, outcome: &DeliveryOutcome, now: DateTime<Utc>) {
        for wait_ms in [0, 100, 500, 2_000] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            match self.store.record_delivery(id, claim, outcome, now).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(
                        id,
                        "mail delivery: the message's claim ran out before its outcome was recorded"
                    );
                    return;
                }
                Err(err) => {
                    tracing::warn!(id, error = %err, "mail delivery: cannot record the outcome")
                }
            }
        }
    }
}
