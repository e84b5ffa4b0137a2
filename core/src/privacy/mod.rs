//! Privacy: the call-metadata log and its retention.
//!
//! Confab never writes call content (media, chat, shared-activity payloads) to disk.
//! What it keeps is limited metadata — which link, when a call was attempted,
//! started or ended, who was invited or asked to join — and only for
//! `privacy.retention_days` (30 by default). A background job purges older rows,
//! together with expired sessions and plugins' expired key-value entries, and
//! `confab privacy purge` does the same on demand.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::clock::Clock;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// What happened, in the call-metadata log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    /// Someone opened a link and asked to join.
    JoinRequested,
    CallStarted,
    CallEnded,
    Admitted,
    Denied,
    Removed,
    Invited,
}

impl CallEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JoinRequested => "join_requested",
            Self::CallStarted => "call_started",
            Self::CallEnded => "call_ended",
            Self::Admitted => "admitted",
            Self::Denied => "denied",
            Self::Removed => "removed",
            Self::Invited => "invited",
        }
    }
}

/// Appends one line to the call-metadata log.
pub async fn record(
    store: &Store,
    link_id: &str,
    kind: CallEventKind,
    subject: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store
        .insert_call_event(link_id, kind.as_str(), subject, now)
        .await
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Call-metadata rows older than the retention period.
    pub call_events: u64,
    /// Expired web sessions.
    pub sessions: u64,
    /// Plugins' key-value entries past their expiry time.
    pub plugin_kv: u64,
    /// Delivery records of sent and failed mail older than the retention period.
    pub mail: u64,
    /// Messages of the file outbox older than the retention period.
    pub outbox_files: u64,
    /// Places on calls of a cluster kept for a day or more (calls whose every
    /// node died; a call that ends forgets its own at once).
    pub call_seats: u64,
}

impl PurgeReport {
    /// Rows deleted, all kinds together.
    pub fn total(&self) -> u64 {
        self.call_events
            + self.sessions
            + self.plugin_kv
            + self.mail
            + self.outbox_files
            + self.call_seats
    }
}

/// Deletes call metadata and mail delivery records older than `retention_days`
/// before `now`, expired sessions and plugins' expired key-value entries (reads already skip them; this frees the
/// space).
pub async fn purge(
    store: &Store,
    now: DateTime<Utc>,
    retention_days: u32,
) -> Result<PurgeReport, StoreError> {
    let cutoff = now - Duration::days(i64::from(retention_days));
    Ok(PurgeReport {
        call_events: store.delete_call_events_before(cutoff).await?,
        sessions: store.delete_expired_sessions(now).await?,
        plugin_kv: store.delete_expired_plugin_kv(now).await?,
        mail: store.delete_outbox_before(cutoff).await?,
        outbox_files: 0,
        call_seats: store.prune_seats(now - Duration::days(1)).await?,
    })
}

/// Deletes the file outbox's messages (`.eml`, which hold links and their secrets)
/// older than `retention_days` before `now`; returns how many.
pub async fn purge_outbox_files(
    dir: std::path::PathBuf,
    now: DateTime<Utc>,
    retention_days: u32,
) -> std::io::Result<u64> {
    let cutoff = now - Duration::days(i64::from(retention_days));
    let cutoff = std::time::SystemTime::from(cutoff);
    tokio::task::spawn_blocking(move || {
        crate::mail::transport::delete_outbox_files_before(&dir, cutoff)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Runs [`purge`] every `interval` until `shutdown` resolves; with `outbox_dir`
/// (the file outbox), [`purge_outbox_files`] too.
pub async fn run_purge_job(
    store: Store,
    clock: Arc<dyn Clock>,
    retention_days: u32,
    interval: std::time::Duration,
    outbox_dir: Option<std::path::PathBuf>,
    shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        match purge(&store, clock.now(), retention_days).await {
            Ok(report) if report.total() > 0 => {
                tracing::info!(
                    call_events = report.call_events,
                    sessions = report.sessions,
                    plugin_kv = report.plugin_kv,
                    mail = report.mail,
                    "privacy purge"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "privacy purge failed; will retry"),
        }
        if let Some(dir) = &outbox_dir {
            match purge_outbox_files(dir.clone(), clock.now(), retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "privacy purge: old outbox messages deleted"),
                Err(err) => tracing::warn!(error = %err, "could not purge the outbox directory"),
            }
        }
    }
}
