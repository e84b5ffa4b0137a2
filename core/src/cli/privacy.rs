//! `confab privacy`: the retention purge.

use clap::Subcommand;

use crate::*;

#[derive(Subcommand)]
pub(crate) enum PrivacyCommand {
    /// Delete call metadata and mail delivery records older than the retention
    /// period, expired sessions and plugins' expired key-value entries.
    Purge {
        #[command(flatten)]
        out: Output,
    },
}
