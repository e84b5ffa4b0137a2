//! Which simulcast layer of each camera a subscriber's downlink can carry.
//!
//! Browsers report what their downlink carries (REMB) and what they lose (receiver
//! reports). Chrome's receive-side estimate starts low and only grows with what it
//! receives, so its value alone is no reason to lower anyone: the allocator acts on
//! *congestion* — an estimate that falls below what is being forwarded, or loss
//! above 10 % — and then caps layers, lowering the most expensive first, so that the
//! sum of measured layer rates fits the estimate. A downlink that has been capped
//! for a while without loss tries one layer up for one camera; if that congests it,
//! the next report brings it back down. Nothing here does I/O; time is an argument.

use std::time::{Duration, Instant};

use super::forward::MAX_LAYERS;

/// Assumed rates before a layer has been measured: Chrome's 180p/360p/720p.
const DEFAULT_LAYER_BPS: [u64; MAX_LAYERS] = [150_000, 500_000, 1_700_000];
/// Share of the estimate video may use (audio, RTCP and headroom take the rest).
const VIDEO_SHARE: f64 = 0.9;
/// Loss above this in a receiver report means congestion (as in GCC's loss rule).
const HIGH_LOSS: f64 = 0.10;
/// Probes up happen only while loss stays under this.
const LOW_LOSS: f64 = 0.02;
/// A falling estimate under this share of what is forwarded means congestion.
const FALLING_BELOW: f64 = 0.95;
const PROBE_INTERVAL: Duration = Duration::from_secs(8);
/// Estimates are acted on at most this often.
pub const REALLOCATE_GAP: Duration = Duration::from_millis(500);

/// One subscriber's view of its downlink.
#[derive(Debug, Clone, Default)]
pub struct Downlink {
    /// Latest REMB, and whether it fell compared with the one before.
    remb_bps: Option<u64>,
    remb_falling: bool,
    /// Latest loss fraction from a receiver report (0–1).
    loss: f64,
    /// What was forwarded to it over the last measurement, bits per second, and the
    /// bytes counted since `sent_since` for the next one.
    forwarded_bps: u64,
    sent_bytes: u64,
    sent_since: Option<Instant>,
    last_allocation: Option<Instant>,
    last_probe: Option<Instant>,
    /// Since when some source has been held below what was asked for.
    capped_since: Option<Instant>,
}

impl Downlink {
    /// Counts a packet forwarded to this subscriber (the media path: no allocation).
    pub fn on_sent(&mut self, bytes: usize, now: Instant) {
        self.sent_bytes += bytes as u64;
        self.sent_since.get_or_insert(now);
    }

    /// Turns the bytes counted since the last measurement into `forwarded_bps`.
    pub fn measure(&mut self, now: Instant) {
        let Some(since) = self.sent_since else {
            return;
        };
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        if elapsed > 0.2 {
            self.forwarded_bps = (self.sent_bytes as f64 * 8.0 / elapsed) as u64;
            self.sent_bytes = 0;
            self.sent_since = Some(now);
        }
    }

    pub fn on_remb(&mut self, bps: u64) {
        self.remb_falling = self
            .remb_bps
            .is_some_and(|before| (bps as f64) < before as f64 * 0.97);
        self.remb_bps = Some(bps);
    }

    pub fn on_loss(&mut self, fraction_lost: u8) {
        self.loss = f64::from(fraction_lost) / 256.0;
    }

    /// What the downlink carries now: the browser's estimate, lowered while loss is
    /// high (the rate forwarded × (1 − loss/2)).
    pub fn estimate_bps(&self) -> Option<u64> {
        let lossy = (self.loss > HIGH_LOSS && self.forwarded_bps > 0)
            .then_some((self.forwarded_bps as f64 * (1.0 - 0.5 * self.loss)) as u64);
        match (self.remb_bps, lossy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn congested(&self) -> bool {
        if self.loss > HIGH_LOSS {
            return true;
        }
        self.remb_falling
            && self
                .remb_bps
                .is_some_and(|remb| (remb as f64) < self.forwarded_bps as f64 * FALLING_BELOW)
    }

    /// Whether a new allocation is due.
    pub fn due(&self, now: Instant) -> bool {
        self.last_allocation
            .is_none_or(|t| now.saturating_duration_since(t) >= REALLOCATE_GAP)
    }
}

/// One video source as the allocator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// The layer the subscriber asked for (tile size).
    pub wanted: usize,
    /// The layer it is capped at now (`wanted` when not capped).
    pub current: usize,
    /// Which layers the publisher sends.
    pub available: [bool; MAX_LAYERS],
    /// Measured rate per layer (0 = not measured yet).
    pub layer_bps: [u64; MAX_LAYERS],
}

impl Demand {
    fn rate(&self, layer: usize) -> u64 {
        match self.layer_bps[layer] {
            0 => DEFAULT_LAYER_BPS[layer],
            bps => bps,
        }
    }

    fn best_at_or_below(&self, layer: usize) -> Option<usize> {
        (0..=layer.min(MAX_LAYERS - 1))
            .rev()
            .find(|l| self.available[*l])
    }

    fn capped(&self) -> bool {
        self.best_at_or_below(self.current) != self.best_at_or_below(self.wanted)
    }
}

/// New caps, one per demand (same order), or `None` to keep the current ones.
pub fn allocate(downlink: &mut Downlink, demands: &[Demand], now: Instant) -> Option<Vec<usize>> {
    downlink.last_allocation = Some(now);
    let capped = demands.iter().any(Demand::capped);
    downlink.capped_since = if capped {
        Some(downlink.capped_since.unwrap_or(now))
    } else {
        None
    };
    if downlink.congested()
        && let Some(estimate) = downlink.estimate_bps()
    {
        return Some(fit(demands, (estimate as f64 * VIDEO_SHARE) as u64));
    }
    // A quiet downlink capped for a while tries one step up for one source.
    let waited =
        |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL);
    if downlink.loss < LOW_LOSS
        && waited(downlink.capped_since)
        && (downlink.last_probe.is_none() || waited(downlink.last_probe))
        && let Some(i) = demands.iter().position(Demand::capped)
    {
        downlink.last_probe = Some(now);
        let mut layers: Vec<usize> = demands.iter().map(|d| d.current).collect();
        let d = &demands[i];
        layers[i] = ((d.current + 1)..=d.wanted.min(MAX_LAYERS - 1))
            .find(|l| d.available[*l])
            .unwrap_or(d.wanted);
        return Some(layers);
    }
    None
}

/// The layers that fit `budget`: from what was asked, lowering the most expensive
/// layer first, never below the lowest.
fn fit(demands: &[Demand], budget: u64) -> Vec<usize> {
    let mut layers: Vec<Option<usize>> = demands
        .iter()
        .map(|d| d.best_at_or_below(d.wanted))
        .collect();
    let total = |layers: &[Option<usize>]| -> u64 {
        demands
            .iter()
            .zip(layers)
            .filter_map(|(d, l)| l.map(|l| d.rate(l)))
            .sum()
    };
    while total(&layers) > budget {
        let worst = demands
            .iter()
            .zip(&layers)
            .enumerate()
            .filter_map(|(i, (d, l))| {
                let l = (*l)?;
                let lower = d.best_at_or_below(l.checked_sub(1)?)?;
                Some((i, d.rate(l), lower))
            })
            .max_by_key(|(_, rate, _)| *rate);
        let Some((i, _, lower)) = worst else {
            break;
        };
        layers[i] = Some(lower);
    }
    layers
        .into_iter()
        .zip(demands)
        .map(|(l, d)| l.unwrap_or(d.wanted))
        .collect()
}

/// Bytes per layer over a window, turned into rates.
#[derive(Debug, Clone, Default)]
pub struct LayerMeter {
    bytes: [u64; MAX_LAYERS],
    since: Option<Instant>,
    pub bps: [u64; MAX_LAYERS],
}

impl LayerMeter {
    const WINDOW: Duration = Duration::from_secs(1);

    pub fn add(&mut self, layer: usize, bytes: usize, now: Instant) {
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= Self::WINDOW {
            for (rate, bytes) in self.bps.iter_mut().zip(&mut self.bytes) {
                let measured = (*bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
                // Smooth, but let a paused layer fall to zero within a few windows.
                *rate = if *rate == 0 {
                    measured
                } else {
                    (*rate + measured) / 2
                };
                *bytes = 0;
            }
            self.since = Some(now);
        }
        if let Some(b) = self.bytes.get_mut(layer) {
            *b += bytes as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(wanted: usize) -> Demand {
        Demand {
            wanted,
            current: wanted,
            available: [true; MAX_LAYERS],
            layer_bps: [150_000, 500_000, 1_700_000],
        }
    }

    /// A downlink whose estimate fell to `remb` while `forwarded` was being sent.
    fn congested(remb: u64, forwarded: u64) -> Downlink {
        let mut d = Downlink {
            forwarded_bps: forwarded,
            ..Default::default()
        };
        d.on_remb(remb * 2);
        d.on_remb(remb);
        d
    }

    #[test]
    fn a_low_but_growing_estimate_caps_nobody() {
        // Chrome's estimate starts low and climbs with what it receives.
        let mut d = Downlink {
            forwarded_bps: 3_400_000,
            ..Default::default()
        };
        for remb in [300_000, 400_000, 600_000] {
            d.on_remb(remb);
            assert_eq!(
                allocate(&mut d, &[camera(2), camera(2)], Instant::now()),
                None
            );
        }
    }

    #[test]
    fn a_falling_estimate_lowers_the_biggest_layers_first() {
        // 4 Mbit/s, 90 % for video = 3.6 Mbit/s: two 720p (3.4) fit, three do not.
        let mut d = congested(4_000_000, 5_100_000);
        let got = allocate(&mut d, &[camera(2), camera(2), camera(2)], Instant::now()).unwrap();
        let total: u64 = got.iter().map(|l| [150_000, 500_000, 1_700_000][*l]).sum();
        assert!(total <= 3_600_000, "{got:?} fits: {total}");
        assert_eq!(got.iter().filter(|l| **l == 2).count(), 1, "{got:?}");
        // And never below the lowest layer, however narrow.
        let mut d = congested(10_000, 3_400_000);
        let got = allocate(&mut d, &[camera(2), camera(2)], Instant::now()).unwrap();
        assert_eq!(got, vec![0, 0]);
    }

    #[test]
    fn high_loss_is_congestion_even_without_an_estimate() {
        let mut d = Downlink {
            forwarded_bps: 2_000_000,
            ..Default::default()
        };
        d.on_loss(64); // 25 %
        assert!(d.estimate_bps().unwrap() < 2_000_000);
        let got = allocate(&mut d, &[camera(2)], Instant::now()).unwrap();
        assert_eq!(got, vec![1], "1.75 Mbit/s × 90 % fits 360p, not 720p");
    }

    #[test]
    fn a_capped_quiet_downlink_probes_one_layer_up_now_and_then() {
        let now = Instant::now();
        let at = |secs: u64| now + Duration::from_secs(secs);
        let mut d = congested(400_000, 1_700_000);
        assert_eq!(allocate(&mut d, &[camera(2)], now), Some(vec![0]), "capped");
        let mut held = camera(2);
        held.current = 0;
        d.forwarded_bps = 150_000;
        d.on_remb(420_000); // growing again: no congestion
        assert_eq!(allocate(&mut d, &[held], at(1)), None, "no probe yet");
        let probe = PROBE_INTERVAL.as_secs();
        assert_eq!(
            allocate(&mut d, &[held], at(probe + 1)),
            Some(vec![1]),
            "a probe"
        );
        held.current = 1;
        assert_eq!(allocate(&mut d, &[held], at(probe + 2)), None, "it holds");
        assert_eq!(
            allocate(&mut d, &[held], at(2 * probe + 1)),
            Some(vec![2]),
            "the next step"
        );
        // No probes while losing packets.
        held.current = 0;
        d.on_loss(20);
        assert_eq!(allocate(&mut d, &[held], at(5 * probe)), None);
    }

    #[test]
    fn layers_the_publisher_does_not_send_are_skipped() {
        let mut d = congested(1_000_000, 2_000_000);
        let mut demand = camera(2);
        demand.available = [true, false, true];
        assert_eq!(allocate(&mut d, &[demand], Instant::now()), Some(vec![0]));
    }

    #[test]
    fn the_meter_measures_rates_per_layer() {
        let start = Instant::now();
        let mut meter = LayerMeter::default();
        for i in 0..=100u32 {
            // 1250 bytes every 10 ms = 1 Mbit/s on layer 2.
            meter.add(2, 1250, start + Duration::from_millis(u64::from(i) * 10));
        }
        assert!(
            (900_000..1_100_000).contains(&meter.bps[2]),
            "{:?}",
            meter.bps
        );
        assert_eq!(meter.bps[0], 0);
    }
}
