//! Active speaker detection from the audio-level header extension (RFC 6464): each
//! audio packet carries the sender's level in -dBov (0 loudest, 127 silence). A
//! participant becomes the active speaker after being the loudest, above a floor,
//! for a short while, so a cough does not steal the highlight.

use std::time::{Duration, Instant};

/// Levels quieter than this (-dBov) count as silence.
const SILENCE_DBOV: u8 = 60;
/// How far back levels are averaged.
const WINDOW: Duration = Duration::from_millis(600);
/// How long a challenger must be the loudest before taking over.
const HOLD: Duration = Duration::from_millis(400);

/// One speaker's recent loudness.
#[derive(Debug, Clone, Default)]
struct Loudness {
    /// Exponentially decayed energy, updated per packet.
    energy: f32,
    last: Option<Instant>,
}

impl Loudness {
    fn add(&mut self, level_dbov: u8, now: Instant) {
        self.decay(now);
        let level = if level_dbov >= SILENCE_DBOV {
            0.0
        } else {
            f32::from(SILENCE_DBOV - level_dbov)
        };
        // Each packet (20 ms) nudges the average towards its level.
        self.energy += (level - self.energy) * 0.1;
        self.last = Some(now);
    }

    fn decay(&mut self, now: Instant) {
        if let Some(last) = self.last
            && now.saturating_duration_since(last) > WINDOW
        {
            self.energy = 0.0;
        }
    }
}

/// Tracks who is speaking in one call.
#[derive(Debug, Clone, Default)]
pub struct SpeakerDetector {
    speakers: Vec<(u32, Loudness)>,
    active: Option<u32>,
    /// The loudest other than `active`, and since when.
    challenger: Option<(u32, Instant)>,
}

impl SpeakerDetector {
    /// Records one audio packet's level for `participant`.
    pub fn add(&mut self, participant: u32, level_dbov: u8, now: Instant) {
        match self.speakers.iter_mut().find(|(p, _)| *p == participant) {
            Some((_, loudness)) => loudness.add(level_dbov, now),
            None => {
                let mut loudness = Loudness::default();
                loudness.add(level_dbov, now);
                self.speakers.push((participant, loudness));
            }
        }
    }

    /// Forgets a participant who left.
    pub fn remove(&mut self, participant: u32) {
        self.speakers.retain(|(p, _)| *p != participant);
        if self.active == Some(participant) {
            self.active = None;
        }
    }

    /// Nobody has made a sound recently: no need to keep checking.
    pub fn is_idle(&self) -> bool {
        self.speakers.iter().all(|(_, l)| l.energy <= 1.0)
    }

    /// The active speaker, if it changed since the last call.
    pub fn poll(&mut self, now: Instant) -> Option<u32> {
        for (_, loudness) in &mut self.speakers {
            loudness.decay(now);
        }
        let loudest = self
            .speakers
            .iter()
            .filter(|(_, l)| l.energy > 1.0)
            .max_by(|a, b| a.1.energy.total_cmp(&b.1.energy))
            .map(|(p, _)| *p)?;
        if Some(loudest) == self.active {
            self.challenger = None;
            return None;
        }
        match self.challenger {
            Some((p, since)) if p == loudest => {
                if now.saturating_duration_since(since) >= HOLD || self.active.is_none() {
                    self.active = Some(loudest);
                    self.challenger = None;
                    return Some(loudest);
                }
                None
            }
            _ => {
                self.challenger = Some((loudest, now));
                if self.active.is_none() {
                    self.active = Some(loudest);
                    self.challenger = None;
                    return Some(loudest);
                }
                None
            }
        }
    }
}

/// The level from an RFC 6464 extension payload (`V` bit, then 7 bits of -dBov).
pub fn audio_level(payload: &[u8]) -> Option<u8> {
    payload.first().map(|b| b & 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talk(d: &mut SpeakerDetector, who: u32, level: u8, from: Instant, ms: u64) -> Instant {
        let mut t = from;
        for _ in 0..ms / 20 {
            d.add(who, level, t);
            t += Duration::from_millis(20);
        }
        t
    }

    #[test]
    fn the_loudest_becomes_active_after_holding_the_floor() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        assert_eq!(d.poll(start), None, "nobody spoke");
        let t = talk(&mut d, 1, 20, start, 400);
        assert_eq!(d.poll(t), Some(1), "the first speaker is active at once");
        // Participant 2 gets louder; 1 goes quiet.
        let mut t = t;
        for _ in 0..40 {
            d.add(1, 127, t);
            d.add(2, 10, t);
            t += Duration::from_millis(20);
            if let Some(who) = d.poll(t) {
                assert_eq!(who, 2);
                return;
            }
        }
        panic!("participant 2 never became the active speaker");
    }

    #[test]
    fn a_short_noise_does_not_take_over() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut t = talk(&mut d, 1, 30, start, 600);
        assert_eq!(d.poll(t), Some(1));
        // 2 coughs for 100 ms while 1 keeps talking.
        for _ in 0..5 {
            d.add(1, 30, t);
            d.add(2, 0, t);
            t += Duration::from_millis(20);
            assert_eq!(d.poll(t), None);
        }
    }

    #[test]
    fn silence_and_departures_are_not_speakers() {
        let start = Instant::now();
        let mut d = SpeakerDetector::default();
        let t = talk(&mut d, 3, 127, start, 1000);
        assert_eq!(d.poll(t), None, "silence is nobody speaking");
        let t = talk(&mut d, 4, 25, t, 300);
        assert_eq!(d.poll(t), Some(4));
        d.remove(4);
        let t = talk(&mut d, 3, 30, t, 300);
        assert_eq!(d.poll(t), Some(3));
        assert_eq!(audio_level(&[0x80 | 42]), Some(42));
        assert_eq!(audio_level(&[]), None);
    }
}
