//! A copy of every payload the SFU forwards, for tests that check that media
//! crosses the server only as ciphertext. Compiled only with the `test-tap` feature,
//! which only the test build turns on.

use std::sync::{Arc, Mutex, PoisonError};

/// Payloads kept at most; later ones are counted, not kept.
const CAPACITY: usize = 100_000;

/// One forwarded RTP payload.
#[derive(Debug, Clone)]
pub struct TapRecord {
    pub call: super::CallKey,
    /// The participant who sent it.
    pub participant: u32,
    pub video: bool,
    /// The RTP marker bit: the last packet of a video frame.
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// What one engine forwarded since the tap was put on.
#[derive(Debug, Clone, Default)]
pub struct Tap(Arc<Mutex<Vec<TapRecord>>>);

impl Tap {
    pub(super) fn record(&self, record: impl FnOnce() -> TapRecord) {
        let mut records = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() < CAPACITY {
            records.push(record());
        }
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<TapRecord> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
