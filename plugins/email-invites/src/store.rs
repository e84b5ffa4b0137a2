//! What the plugin keeps in its key-value store.
//!
//! | key | value |
//! | --- | --- |
//! | `invite/{link id}` | [`InviteRecord`] (JSON): the event's `UID` and `SEQUENCE`, the link as shared, its title, the organizer, the schedule invitees were told about, and every invitee with the `SEQUENCE` they last got |
//! | `rate/{user}` | [`RateWindow`] (JSON): how many people the user invited in each minute of the last hour; expires an hour after the last invitation |

use confab_plugin_sdk::{Error, kv};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::record::{InviteRecord, Status};

/// The largest record stored (the server takes values of up to 64 KiB).
pub const MAX_RECORD_BYTES: usize = 60 * 1024;
/// How long the per-user count looks back.
pub const RATE_WINDOW_SECS: i64 = 3600;
/// How long the invitations to a link are kept after the last mail or the call's
/// end (the server keeps call metadata 30 days by default).
pub const KEEP_DAYS: i64 = 30;

fn invite_key(link_id: &str) -> String {
    format!("invite/{link_id}")
}

fn rate_key(user: i64) -> String {
    format!("rate/{user}")
}

/// The invitations to link `link_id`, if anyone was invited to it.
pub fn record(link_id: &str) -> Result<Option<InviteRecord>, Error> {
    Ok(kv::get(&invite_key(link_id))?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// The record as stored, if it fits.
pub fn encode(record: &InviteRecord) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(record).map_err(|e| Error::Invalid(e.to_string()))?;
    if json.len() > MAX_RECORD_BYTES {
        return Err(Error::LimitReached(format!(
            "the invitations to one link take at most {} KiB",
            MAX_RECORD_BYTES / 1024
        )));
    }
    Ok(json)
}

/// Stores `record` until [`keep_until`] (`now` in Unix seconds).
pub fn save(record: &InviteRecord, now: i64) -> Result<(), Error> {
    let json = encode(record)?;
    let key = invite_key(&record.link_id);
    match keep_until(record, now) {
        Some(until) => {
            let ttl = Duration::from_secs(u64::try_from(until - now).unwrap_or(0).max(1));
            kv::set_with_ttl(&key, json, ttl)
        }
        None => kv::set(&key, json),
    }
}

/// Who was invited is call metadata: kept [`KEEP_DAYS`] after the last mail or the
/// end of the call, whichever is later (a revoked link's, after the last mail); a
/// call that repeats without end keeps it while it repeats, for its updates.
pub fn keep_until(record: &InviteRecord, now: i64) -> Option<i64> {
    let keep = KEEP_DAYS * 86_400;
    let last_mail = record.last_sent().unwrap_or(now).max(now);
    if record.status == Status::Revoked {
        return Some(last_mail + keep);
    }
    match &record.schedule {
        Some(schedule) if schedule.repeats_forever() => None,
        Some(schedule) => Some(last_mail.max(schedule.last_end()) + keep),
        None => Some(last_mail + keep),
    }
}

/// How many people a user invited recently: `(minute, count)` pairs, the minute
/// in Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateWindow {
    pub counts: Vec<(i64, u32)>,
}

impl RateWindow {
    /// People invited in the hour before `now` (Unix seconds).
    pub fn used(&self, now: i64) -> u32 {
        self.counts
            .iter()
            .filter(|(minute, _)| now - minute < RATE_WINDOW_SECS)
            .map(|(_, n)| n)
            .sum()
    }

    /// Counts `n` more people at `now`, forgetting what is older than an hour.
    pub fn add(&mut self, now: i64, n: u32) {
        self.counts
            .retain(|(minute, _)| now - minute < RATE_WINDOW_SECS);
        let minute = now - now.rem_euclid(60);
        match self.counts.last_mut() {
            Some((m, count)) if *m == minute => *count = count.saturating_add(n),
            _ => self.counts.push((minute, n)),
        }
    }

    /// Takes back `n` people counted at `now` whose invitations did not go out.
    pub fn release(&mut self, now: i64, n: u32) {
        let minute = now - now.rem_euclid(60);
        if let Some((_, count)) = self.counts.iter_mut().rev().find(|(m, _)| *m == minute) {
            *count = count.saturating_sub(n);
        }
    }
}

pub fn rate_window(user: i64) -> Result<RateWindow, Error> {
    Ok(kv::get(&rate_key(user))?
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default())
}

pub fn set_rate_window(user: i64, window: &RateWindow) -> Result<(), Error> {
    let json = serde_json::to_vec(window).map_err(|e| Error::Invalid(e.to_string()))?;
    let ttl = Duration::from_secs(RATE_WINDOW_SECS as u64 + 60);
    kv::set_with_ttl(&rate_key(user), json, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_is_a_sliding_hour() {
        let mut window = RateWindow::default();
        let t0 = 1_767_225_600;
        window.add(t0, 100);
        window.add(t0 + 10, 50);
        assert_eq!(window.counts.len(), 1, "one entry per minute");
        window.add(t0 + 1800, 100);
        assert_eq!(window.used(t0 + 1800), 250);
        assert_eq!(window.used(t0 + 3600), 100);
        window.release(t0 + 1800, 40);
        assert_eq!(window.used(t0 + 1801), 210);
        window.add(t0 + 4000, 1);
        assert_eq!(window.counts.len(), 2, "older minutes are forgotten");
    }
}
