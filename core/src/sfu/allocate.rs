//! Which simulcast layer of each camera a subscriber's downlink can carry.
//!
//! The subscriber's browser estimates what its downlink carries and reports it (REMB);
//! receiver reports add the loss it sees. From that estimate, the layers each
//! subscriber asked for (by tile size) and what each layer of each publisher really
//! sends (measured), the allocator caps layers, lowering the biggest first, so that
//! the sum fits. Nothing here does I/O; time is an argument.

use std::time::{Duration, Instant};

use super::forward::MAX_LAYERS;

/// Assumed rates before a layer has been measured: Chrome's 180p/360p/720p.
const DEFAULT_LAYER_BPS: [u64; MAX_LAYERS] = [150_000, 500_000, 1_700_000];
/// Share of the estimate video may use (audio, RTCP and headroom take the rest).
const VIDEO_SHARE: f64 = 0.9;
/// Loss above this in a receiver report lowers the estimate (as in GCC's loss rule).
const HIGH_LOSS: f64 = 0.10;
/// With an estimate capping layers and loss under this, try one layer up now and then:
/// a receive-side estimate only grows with what it receives, so it never proves on
/// its own that a higher layer would fit.
const LOW_LOSS: f64 = 0.02;
const PROBE_INTERVAL: Duration = Duration::from_secs(8);
/// How long a probe runs before the estimate is trusted again.
const PROBE_HOLD: Duration = Duration::from_secs(2);
/// Estimates are acted on at most this often.
pub const REALLOCATE_GAP: Duration = Duration::from_millis(500);

/// One subscriber's view of its downlink.
#[derive(Debug, Clone, Default)]
pub struct Downlink {
    /// Latest REMB, bits per second.
    remb_bps: Option<u64>,
    /// Latest loss fraction from a receiver report (0–1).
    loss: f64,
    /// A loss-based estimate (GCC's rule): cut on high loss, grown slowly while loss
    /// stays low. Covers browsers that send receiver reports but no REMB.
    loss_bps: Option<u64>,
    /// What was forwarded to it over the last measurement, bits per second.
    pub forwarded_bps: u64,
    last_allocation: Option<Instant>,
    last_probe: Option<Instant>,
    /// Since when allocations have held some source below what was asked for.
    capped_since: Option<Instant>,
}

impl Downlink {
    pub fn on_remb(&mut self, bps: u64) {
        self.remb_bps = Some(bps);
    }

    /// A receiver report's loss; call after updating `forwarded_bps`.
    pub fn on_loss(&mut self, fraction_lost: u8) {
        self.loss = f64::from(fraction_lost) / 256.0;
        if self.loss > HIGH_LOSS && self.forwarded_bps > 0 {
            self.loss_bps = Some((self.forwarded_bps as f64 * (1.0 - 0.5 * self.loss)) as u64);
        } else if self.loss < LOW_LOSS
            && let Some(bps) = self.loss_bps.as_mut()
        {
            *bps = (*bps as f64 * 1.05) as u64;
        }
    }

    /// The usable estimate: the browser's, and the loss-based one, whichever is lower.
    pub fn estimate_bps(&self) -> Option<u64> {
        match (self.remb_bps, self.loss_bps) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a new allocation is due.
    pub fn due(&self, now: Instant) -> bool {
        self.estimate_bps().is_some()
            && self
                .last_allocation
                .is_none_or(|t| now.saturating_duration_since(t) >= REALLOCATE_GAP)
    }
}

/// One video source as the allocator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// The layer the subscriber asked for (tile size).
    pub wanted: usize,
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
}

/// Caps one layer per demand (same order) so that the total fits the downlink.
/// Without an estimate yet, everyone gets what they asked for; `None` keeps the
/// current layers (a probe is being given time to show whether it fits).
pub fn allocate(downlink: &mut Downlink, demands: &[Demand], now: Instant) -> Option<Vec<usize>> {
    let Some(estimate) = downlink.estimate_bps() else {
        return Some(
            demands
                .iter()
                .map(|d| d.best_at_or_below(d.wanted).unwrap_or(d.wanted))
                .collect(),
        );
    };
    let probing = downlink
        .last_probe
        .is_some_and(|t| now.saturating_duration_since(t) < PROBE_HOLD);
    if probing && downlink.loss <= HIGH_LOSS {
        return None;
    }
    downlink.last_allocation = Some(now);
    let budget = (estimate as f64 * VIDEO_SHARE) as u64;
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
    // Lower the most expensive layer until the sum fits (never below the lowest).
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
    let capped = demands
        .iter()
        .zip(&layers)
        .any(|(d, l)| *l != d.best_at_or_below(d.wanted));
    downlink.capped_since = if capped {
        Some(downlink.capped_since.unwrap_or(now))
    } else {
        None
    };
    let waited =
        |t: Option<Instant>| t.is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL);
    // A quiet downlink capped for a while tries one step up for one source.
    if capped
        && downlink.loss < LOW_LOSS
        && downlink
            .capped_since
            .is_some_and(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL)
        && waited(downlink.last_probe)
        && let Some(i) = demands
            .iter()
            .zip(&layers)
            .position(|(d, l)| *l != d.best_at_or_below(d.wanted))
    {
        let current = layers[i].unwrap_or(0);
        layers[i] = demands[i].best_at_or_below(current + 1).or(layers[i]);
        downlink.last_probe = Some(now);
    }
    Some(
        layers
            .into_iter()
            .zip(demands)
            .map(|(l, d)| l.unwrap_or(d.wanted))
            .collect(),
    )
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
            available: [true; MAX_LAYERS],
            layer_bps: [150_000, 500_000, 1_700_000],
        }
    }

    fn downlink(remb: u64) -> Downlink {
        let mut d = Downlink::default();
        d.on_remb(remb);
        d
    }

    #[test]
    fn without_an_estimate_nothing_is_capped() {
        let mut d = Downlink::default();
        assert_eq!(
            allocate(&mut d, &[camera(2), camera(1)], Instant::now()),
            Some(vec![2, 1])
        );
    }

    #[test]
    fn a_wide_downlink_gets_what_the_tiles_ask_for() {
        let mut d = downlink(20_000_000);
        let got = allocate(&mut d, &[camera(2), camera(1), camera(0)], Instant::now());
        assert_eq!(got, Some(vec![2, 1, 0]));
    }

    #[test]
    fn a_narrow_downlink_lowers_the_biggest_layers_first() {
        // 4 Mbit/s, 90 % for video = 3.6 Mbit/s: two 720p (3.4) fit, three do not.
        let mut d = downlink(4_000_000);
        let got = allocate(&mut d, &[camera(2), camera(2), camera(2)], Instant::now()).unwrap();
        let total: u64 = got.iter().map(|l| [150_000, 500_000, 1_700_000][*l]).sum();
        assert!(total <= 3_600_000, "{got:?} fits: {total}");
        assert_eq!(got.iter().filter(|l| **l == 2).count(), 1, "{got:?}");
        // And never below the lowest layer, however narrow.
        let mut d = downlink(10_000);
        let got = allocate(&mut d, &[camera(2), camera(2)], Instant::now()).unwrap();
        assert_eq!(got, vec![0, 0]);
    }

    #[test]
    fn high_loss_lowers_the_estimate_and_it_recovers_slowly() {
        let mut d = downlink(10_000_000);
        d.forwarded_bps = 2_000_000;
        d.on_loss(64); // 25 %
        let cut = d.estimate_bps().unwrap();
        assert!(cut < 2_000_000, "{cut}");
        d.on_loss(0);
        let grown = d.estimate_bps().unwrap();
        assert!(grown > cut && grown < 2_000_000, "{cut} → {grown}");
        // Without any REMB, loss alone drives the estimate.
        let mut d = Downlink::default();
        d.forwarded_bps = 3_000_000;
        assert!(!d.due(Instant::now()), "nothing known yet");
        d.on_loss(80);
        assert!(d.due(Instant::now()));
        assert!(d.estimate_bps().unwrap() < 3_000_000);
    }

    #[test]
    fn a_capped_quiet_downlink_probes_one_layer_up_now_and_then() {
        let now = Instant::now();
        let at = |secs: u64| now + Duration::from_secs(secs);
        let mut d = downlink(400_000);
        assert_eq!(allocate(&mut d, &[camera(2)], now), Some(vec![0]), "capped");
        assert_eq!(
            allocate(&mut d, &[camera(2)], at(1)),
            Some(vec![0]),
            "no probe yet"
        );
        let probe = PROBE_INTERVAL.as_secs();
        assert_eq!(
            allocate(&mut d, &[camera(2)], at(probe)),
            Some(vec![1]),
            "a probe"
        );
        assert_eq!(
            allocate(&mut d, &[camera(2)], at(probe + 1)),
            None,
            "given time"
        );
        let after = probe + PROBE_HOLD.as_secs();
        assert_eq!(
            allocate(&mut d, &[camera(2)], at(after)),
            Some(vec![0]),
            "the estimate did not grow: back down"
        );
        // The next probe; this time the estimate grows with it and the layer stays.
        assert_eq!(allocate(&mut d, &[camera(2)], at(2 * probe)), Some(vec![1]));
        d.on_remb(700_000);
        assert_eq!(
            allocate(&mut d, &[camera(2)], at(2 * probe + PROBE_HOLD.as_secs())),
            Some(vec![1])
        );
        // No probes while losing packets.
        d.on_remb(400_000);
        d.on_loss(20);
        assert_eq!(allocate(&mut d, &[camera(2)], at(5 * probe)), Some(vec![0]));
        assert_eq!(allocate(&mut d, &[camera(2)], at(7 * probe)), Some(vec![0]));
    }

    #[test]
    fn layers_the_publisher_does_not_send_are_skipped() {
        let mut d = downlink(1_000_000);
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
