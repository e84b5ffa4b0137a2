use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::AccountError;

/// Limits failed sign-ins per email address: after `max_failures` failures within
/// `window`, further attempts are refused until the window has passed.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, DateTime<Utc>)>>,
}

/// Entries kept before old ones are pruned, so the map cannot grow without bound.
const MAX_TRACKED: usize = 100_000;

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, email: &str, now: DateTime<Utc>) -> Result<(), AccountError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(email) {
            Some(&(count, since)) if count >= self.max_failures && now - since < self.window => {
                Err(AccountError::Throttled {
                    retry_after_secs: (self.window - (now - since)).num_seconds().max(1),
                })
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, email: &str, now: DateTime<Utc>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            let window = self.window;
            failures.retain(|_, (_, since)| now - *since < window);
        }
        let entry = failures.entry(email.to_string()).or_insert((0, now));
        if now - entry.1 >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn reset(&self, email: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(email);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let throttle = LoginThrottle::new(3, Duration::minutes(15));
        for _ in 0..3 {
            assert!(throttle.check("a@x.org", t0).is_ok());
            throttle.record_failure("a@x.org", t0);
        }
        assert!(matches!(
            throttle.check("a@x.org", t0),
            Err(AccountError::Throttled { .. })
        ));
        assert!(
            throttle.check("b@x.org", t0).is_ok(),
            "other accounts are unaffected"
        );
        assert!(
            throttle
                .check("a@x.org", t0 + Duration::minutes(16))
                .is_ok()
        );
    }
}
