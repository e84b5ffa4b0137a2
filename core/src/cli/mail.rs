//! `confab mail`: where mail goes and how the outbox is doing.

use clap::Subcommand;

use crate::*;

#[derive(Subcommand)]
pub(crate) enum MailCommand {
    /// Where mail goes, how many messages are queued, sent and failed, and the
    /// latest failures with the relay's reply.
    Status {
        #[command(flatten)]
        out: Output,
    },
}

pub(crate) fn mail_status_text(status: &confab_core::mail::MailStatus) -> String {
    let mut text = format!(
        "Mail goes to {} from {}.\nQueued: {}  Sent: {}  Failed: {}",
        status.transport, status.from, status.queued, status.sent, status.failed
    );
    if status.retrying > 0 {
        text.push_str(&format!(
            "\nWaiting to retry after a failed attempt: {}",
            status.retrying
        ));
    }
    if let Some(oldest) = status.oldest_queued_at {
        text.push_str(&format!("\nOldest queued message: {}", oldest.to_rfc3339()));
    }
    if !status.recent_failures.is_empty() {
        text.push_str("\nLatest failures:");
        for f in &status.recent_failures {
            text.push_str(&format!(
                "\n  #{} {} after {} attempt(s), queued {}: {}",
                f.id,
                f.plugin.as_deref().unwrap_or("server"),
                f.attempts,
                f.queued_at.to_rfc3339(),
                f.error.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    text
}
