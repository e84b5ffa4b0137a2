//! Sign-in throttling that cannot be turned against the account it protects.
//!
//! Failures are counted three ways within `window`:
//! - per (account, address): after `max_failures` that address may not try that
//!   account again until the window has passed;
//! - per address, whatever the account: after `max_failures_per_address` that
//!   address may not sign in at all (one machine guessing many accounts);
//! - per account, from anywhere: past `max_failures`, every attempt is slowed by a
//!   delay that doubles with each further failure (up to [`MAX_DELAY`]) but is never
//!   refused, so the right password from a new address still gets in while someone
//!   elsewhere guesses.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::AccountError;

/// Entries kept per table before old ones are pruned, so no table grows without bound.
const MAX_TRACKED: usize = 100_000;
/// The delay of the first attempt past the per-account ceiling; it doubles after.
const FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(250);
/// The longest delay an attempt waits.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(8);

/// Failures per key within a window.
#[derive(Debug)]
struct Failures<K> {
    window: Duration,
    counts: Mutex<HashMap<K, (u32, DateTime<Utc>)>>,
}

impl<K: Eq + Hash + Clone> Failures<K> {
    fn new(window: Duration) -> Self {
        Self {
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Failures of `key` in the current window, and when the window started.
    fn get(&self, key: &K, now: DateTime<Utc>) -> Option<(u32, DateTime<Utc>)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .get(key)
            .copied()
            .filter(|(_, since)| now - *since < self.window)
    }

    fn record(&self, key: K, now: DateTime<Utc>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_TRACKED && !counts.contains_key(&key) {
            let window = self.window;
            counts.retain(|_, (_, since)| now - *since < window);
            if counts.len() >= MAX_TRACKED {
                // Still full of current entries: forget the oldest half rather than grow.
                let mut starts: Vec<DateTime<Utc>> = counts.values().map(|(_, s)| *s).collect();
                starts.sort_unstable();
                let cutoff = starts[starts.len() / 2];
                counts.retain(|_, (_, since)| *since > cutoff);
            }
        }
        let entry = counts.entry(key).or_insert((0, now));
        if now - entry.1 >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn clear(&self, key: &K) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Limits failed sign-ins (see the module's documentation).
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    max_failures_per_address: u32,
    pairs: Failures<(String, Option<IpAddr>)>,
    addresses: Failures<IpAddr>,
    accounts: Failures<String>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, max_failures_per_address: u32, window: Duration) -> Self {
        Self {
            max_failures,
            max_failures_per_address,
            pairs: Failures::new(window),
            addresses: Failures::new(window),
            accounts: Failures::new(window),
        }
    }

    fn refused(&self, since: DateTime<Utc>, now: DateTime<Utc>, window: Duration) -> AccountError {
        AccountError::Throttled {
            retry_after_secs: (window - (now - since)).num_seconds().max(1),
        }
    }

    /// Whether `email` may be tried from `address` now: refused, or allowed after
    /// the returned delay (zero below the per-account ceiling).
    pub fn check(
        &self,
        email: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<std::time::Duration, AccountError> {
        if let Some((count, since)) = self.pairs.get(&(email.to_string(), address), now)
            && count >= self.max_failures
        {
            return Err(self.refused(since, now, self.pairs.window));
        }
        if let Some(address) = address
            && let Some((count, since)) = self.addresses.get(&address, now)
            && count >= self.max_failures_per_address
        {
            return Err(self.refused(since, now, self.addresses.window));
        }
        let delay = match self.accounts.get(&email.to_string(), now) {
            Some((count, _)) if count >= self.max_failures => {
                let doublings = (count - self.max_failures).min(8);
                (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
            }
            _ => std::time::Duration::ZERO,
        };
        Ok(delay)
    }

    pub fn record_failure(&self, email: &str, address: Option<IpAddr>, now: DateTime<Utc>) {
        self.pairs.record((email.to_string(), address), now);
        if let Some(address) = address {
            self.addresses.record(address, now);
        }
        self.accounts.record(email.to_string(), now);
    }

    /// A successful sign-in: this address's failures for the account are forgiven,
    /// and the account is no longer slowed down.
    pub fn reset(&self, email: &str, address: Option<IpAddr>) {
        self.pairs.clear(&(email.to_string(), address));
        self.accounts.clear(&email.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn one_address_guessing_one_account_is_refused_and_nobody_else_is() {
        let throttle = LoginThrottle::new(3, 100, Duration::minutes(15));
        for _ in 0..3 {
            assert!(throttle.check("a@x.org", ip("192.0.2.1"), t0()).is_ok());
            throttle.record_failure("a@x.org", ip("192.0.2.1"), t0());
        }
        assert!(matches!(
            throttle.check("a@x.org", ip("192.0.2.1"), t0()),
            Err(AccountError::Throttled { .. })
        ));
        // The owner, elsewhere, is slowed down, not refused.
        let delay = throttle.check("a@x.org", ip("198.51.100.1"), t0()).unwrap();
        assert!(delay > std::time::Duration::ZERO && delay <= MAX_DELAY);
        assert_eq!(
            throttle.check("b@x.org", ip("192.0.2.1"), t0()).unwrap(),
            std::time::Duration::ZERO,
            "other accounts are unaffected"
        );
        assert!(
            throttle
                .check("a@x.org", ip("192.0.2.1"), t0() + Duration::minutes(16))
                .is_ok()
        );
    }

    #[test]
    fn the_delay_past_the_ceiling_doubles_up_to_a_bound() {
        let throttle = LoginThrottle::new(2, 1000, Duration::minutes(15));
        let mut last = std::time::Duration::ZERO;
        for n in 0..20 {
            // Each failure from a new address: never refused.
            let address = ip(&format!("10.0.0.{n}"));
            let delay = throttle.check("a@x.org", address, t0()).unwrap();
            assert!(delay >= last && delay <= MAX_DELAY);
            last = delay;
            throttle.record_failure("a@x.org", address, t0());
        }
        assert_eq!(last, MAX_DELAY);
        throttle.reset("a@x.org", ip("10.0.0.99"));
        assert_eq!(
            throttle.check("a@x.org", ip("10.0.0.99"), t0()).unwrap(),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn one_address_guessing_many_accounts_is_refused() {
        let throttle = LoginThrottle::new(10, 5, Duration::minutes(15));
        for n in 0..5 {
            throttle.record_failure(&format!("u{n}@x.org"), ip("192.0.2.7"), t0());
        }
        assert!(throttle.check("new@x.org", ip("192.0.2.7"), t0()).is_err());
        assert!(throttle.check("new@x.org", ip("192.0.2.8"), t0()).is_ok());
    }
}
