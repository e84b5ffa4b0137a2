//! The rules, without the server: who counts as the same caller, when reports
//! escalate and when a link looks leaked. Every function takes `now` and the
//! settings, so the unit tests below cover the thresholds exactly.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Milliseconds in a minute and in a day.
pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// How long an administrator may keep a report for investigation.
pub const KEEP_FOR_INVESTIGATION_DAYS: i64 = 90;

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Spam,
    Harassment,
    Inappropriate,
    Impersonation,
    Other,
}

impl Category {
    /// The words the review queue and the administrators' mail use.
    pub fn describe(self) -> &'static str {
        match self {
            Category::Spam => "Spam or unwanted caller",
            Category::Harassment => "Harassment",
            Category::Inappropriate => "Inappropriate content",
            Category::Impersonation => "Impersonation",
            Category::Other => "Other",
        }
    }
}

/// The settings of the plugin (`[config]` in plugin.toml), read once per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub block_days: i64,
    pub escalation_reports: usize,
    pub escalation_minutes: i64,
    pub leak_networks: usize,
    pub leak_denials: usize,
    pub leak_minutes: i64,
    pub retention_days: i64,
    pub reports_per_user_per_hour: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            block_days: 30,
            escalation_reports: 2,
            escalation_minutes: 10,
            leak_networks: 10,
            leak_denials: 5,
            leak_minutes: 10,
            retention_days: 30,
            reports_per_user_per_hour: 30,
        }
    }
}

impl Settings {
    /// The settings from `get` (the plugin's config), each falling back to its
    /// default when missing or not a positive number.
    pub fn from(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Settings::default();
        let num = |key: &str, default: i64, max: i64| {
            get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|n| (1..=max).contains(n))
                .unwrap_or(default)
        };
        let count = |key: &str, default: usize| {
            usize::try_from(num(key, i64::try_from(default).unwrap_or(1), 100_000))
                .unwrap_or(default)
        };
        Self {
            block_days: num("block_days", d.block_days, 3650),
            escalation_reports: count("escalation_reports", d.escalation_reports),
            escalation_minutes: num("escalation_minutes", d.escalation_minutes, 24 * 60),
            leak_networks: count("leak_networks", d.leak_networks),
            leak_denials: count("leak_denials", d.leak_denials),
            leak_minutes: num("leak_minutes", d.leak_minutes, 24 * 60),
            retention_days: num("retention_days", d.retention_days, 3650),
            reports_per_user_per_hour: count(
                "reports_per_user_per_hour",
                d.reports_per_user_per_hour,
            ),
        }
    }
}

/// A short, stable name for a caller in the review queue: the hash of their device
/// (when the server knew one) or else of their network, so reports of one person
/// from several calls group together without the queue's keys holding addresses.
pub fn identity(device: Option<&str>, network: Option<&str>) -> Option<String> {
    let (kind, value) = match (device, network) {
        (Some(d), _) => ("device", d),
        (None, Some(n)) => ("network", n),
        (None, None) => return None,
    };
    let digest = Sha256::digest(format!("{kind}\n{value}").as_bytes());
    Some(digest[..10].iter().map(|b| format!("{b:02x}")).collect())
}

/// The network a block holds on to for `address`: an IPv4 address as `a.b.c.d/32`,
/// an IPv6 address as its /64 (a household or a phone usually gets a whole /64).
/// The server gives this itself (`moderation.screened-origin`); this is for an
/// address alone.
pub fn network_of(address: &str) -> Option<String> {
    match address.trim().parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => Some(format!("{v4}/32")),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(format!("{v4}/32")),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                Some(format!("{prefix}/64"))
            }
        },
    }
}

/// Reports about one caller on one link: who reported them and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportWindow {
    /// `(reporter's user id, when)`, oldest first.
    pub reports: Vec<(i64, i64)>,
}

impl ReportWindow {
    /// Adds a report by `user` and tells whether the reports from different people
    /// within the escalation window now reach the threshold.
    pub fn add(&mut self, user: i64, now: i64, settings: &Settings) -> bool {
        let since = now - settings.escalation_minutes * MINUTE_MS;
        self.reports.retain(|&(_, at)| at > since);
        self.reports.push((user, now));
        self.reporters().len() >= settings.escalation_reports
    }

    /// The different people who reported, in the order of their first report.
    pub fn reporters(&self) -> Vec<i64> {
        let mut out: Vec<i64> = Vec::new();
        for &(user, _) in &self.reports {
            if !out.contains(&user) {
                out.push(user);
            }
        }
        out
    }
}

/// Join requests to one link, for leaked-link detection: the networks that asked
/// (hashed) and the requests turned away, each with when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkActivity {
    pub networks: Vec<(String, i64)>,
    pub denials: Vec<i64>,
    /// When the owner was last told, so a flood tells them once per window.
    pub warned_at: Option<i64>,
}

/// The most entries one window keeps of each kind (a flood cannot grow the record).
const ACTIVITY_CAP: usize = 200;

/// What the numbers say about a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakSigns {
    pub networks: usize,
    pub denials: usize,
    /// The owner should be told now.
    pub warn: bool,
}

impl LinkActivity {
    /// Records a request from `network` (none: not counted as a network), and
    /// whether it was turned away, at `now`.
    pub fn record(
        &mut self,
        network: Option<&str>,
        denied: bool,
        now: i64,
        settings: &Settings,
    ) -> LeakSigns {
        let since = now - settings.leak_minutes * MINUTE_MS;
        self.networks.retain(|&(_, at)| at > since);
        self.denials.retain(|&at| at > since);
        if let Some(network) = network {
            let hashed = identity(None, Some(network)).unwrap_or_default();
            match self.networks.iter_mut().find(|(n, _)| *n == hashed) {
                Some(entry) => entry.1 = now,
                None => self.networks.push((hashed, now)),
            }
        }
        if denied {
            self.denials.push(now);
        }
        trim(&mut self.networks);
        trim(&mut self.denials);
        let networks = self.networks.len();
        let denials = self.denials.len();
        let leaked = networks > settings.leak_networks || denials > settings.leak_denials;
        let told_recently = self.warned_at.is_some_and(|at| at > since);
        let warn = leaked && !told_recently;
        if warn {
            self.warned_at = Some(now);
        }
        LeakSigns {
            networks,
            denials,
            warn,
        }
    }
}

fn trim<T>(entries: &mut Vec<T>) {
    if entries.len() > ACTIVITY_CAP {
        let extra = entries.len() - ACTIVITY_CAP;
        entries.drain(..extra);
    }
}

/// Reports one person filed in the last hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReporterRate {
    pub at: Vec<i64>,
}

impl ReporterRate {
    /// Counts a report at `now` unless the person reached the hourly limit.
    pub fn allow(&mut self, now: i64, settings: &Settings) -> bool {
        self.at.retain(|&at| at > now - 60 * MINUTE_MS);
        if self.at.len() >= settings.reports_per_user_per_hour {
            return false;
        }
        self.at.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn settings_fall_back_to_their_defaults() {
        let s = Settings::from(|key| match key {
            "escalation_reports" => Some("3".into()),
            "leak_networks" => Some("zero".into()),
            "block_days" => Some("-4".into()),
            _ => None,
        });
        assert_eq!(s.escalation_reports, 3);
        assert_eq!(s.leak_networks, 10);
        assert_eq!(s.block_days, 30);
    }

    #[test]
    fn the_same_device_or_network_is_the_same_identity() {
        let a = identity(Some("dev-a"), Some("198.51.100.7/32"));
        assert_eq!(a, identity(Some("dev-a"), Some("203.0.113.1/32")));
        assert_ne!(a, identity(Some("dev-b"), Some("198.51.100.7/32")));
        assert_eq!(
            identity(None, Some("198.51.100.7/32")),
            identity(None, Some("198.51.100.7/32"))
        );
        assert_eq!(identity(None, None), None);
        assert_eq!(a.map(|s| s.len()), Some(20));
    }

    #[test]
    fn an_address_blocks_its_network() {
        assert_eq!(
            network_of("198.51.100.7").as_deref(),
            Some("198.51.100.7/32")
        );
        assert_eq!(
            network_of("2001:db8:1:2:3:4:5:6").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(
            network_of("::ffff:198.51.100.7").as_deref(),
            Some("198.51.100.7/32")
        );
        assert_eq!(network_of("not an address"), None);
    }

    #[test]
    fn reports_from_two_people_within_ten_minutes_escalate() {
        let s = Settings::default();
        let mut w = ReportWindow::default();
        assert!(!w.add(1, T0, &s));
        assert!(
            !w.add(1, T0 + MINUTE_MS, &s),
            "the same person twice is one person"
        );
        assert!(w.add(2, T0 + 9 * MINUTE_MS, &s));

        let mut late = ReportWindow::default();
        assert!(!late.add(1, T0, &s));
        assert!(
            !late.add(2, T0 + 10 * MINUTE_MS + 1, &s),
            "the first report is too old"
        );
    }

    #[test]
    fn a_link_is_leaked_past_ten_networks_or_five_denials_and_the_owner_is_told_once() {
        let s = Settings::default();
        let mut a = LinkActivity::default();
        for i in 0..10 {
            let signs = a.record(Some(&format!("198.51.100.{i}/32")), false, T0 + i, &s);
            assert!(!signs.warn, "{i}");
        }
        assert!(
            !a.record(Some("198.51.100.3/32"), false, T0 + 20, &s).warn,
            "a network seen already"
        );
        let signs = a.record(Some("198.51.100.99/32"), false, T0 + 30, &s);
        assert_eq!((signs.networks, signs.warn), (11, true));
        assert!(
            !a.record(Some("198.51.100.100/32"), false, T0 + 40, &s).warn,
            "told already"
        );
        // A quiet window later, a new flood warns again.
        let later = T0 + 30 * MINUTE_MS;
        for i in 0..11 {
            a.record(Some(&format!("203.0.113.{i}/32")), false, later + i, &s);
        }
        assert_eq!(a.warned_at, Some(later + 10));

        let mut d = LinkActivity::default();
        for i in 0..5 {
            assert!(!d.record(None, true, T0 + i, &s).warn);
        }
        assert!(d.record(None, true, T0 + 5, &s).warn);
    }

    #[test]
    fn a_flood_keeps_the_record_small() {
        let s = Settings::default();
        let mut a = LinkActivity::default();
        for i in 0..1000 {
            a.record(
                Some(&format!("10.0.{}.{}/32", i / 256, i % 256)),
                true,
                T0 + i,
                &s,
            );
        }
        assert_eq!(a.networks.len(), ACTIVITY_CAP);
        assert_eq!(a.denials.len(), ACTIVITY_CAP);
    }

    #[test]
    fn one_person_files_at_most_the_hourly_number_of_reports() {
        let s = Settings {
            reports_per_user_per_hour: 2,
            ..Settings::default()
        };
        let mut r = ReporterRate::default();
        assert!(r.allow(T0, &s));
        assert!(r.allow(T0 + 1, &s));
        assert!(!r.allow(T0 + 2, &s));
        assert!(r.allow(T0 + 60 * MINUTE_MS + 1, &s));
    }
}
