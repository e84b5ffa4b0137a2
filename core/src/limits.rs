//! Limits on what strangers can make the server hold: requests per address in a
//! sliding window, connections per address, and who the client is behind a
//! reverse proxy. Every limit is a configuration key, listed with its default in
//! docs/security.md ("Limits").

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Keys a [`RateWindow`] remembers at most; past this, keys whose window is over are
/// dropped, and if all are current the request is refused (a flood of new keys must
/// not grow memory without bound).
const MAX_KEYS: usize = 100_000;

/// At most `limit` events per key within `window`, counted exactly (a sliding log).
#[derive(Debug)]
pub struct RateWindow<K> {
    limit: usize,
    window: Duration,
    events: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Eq + Hash + Clone> RateWindow<K> {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an event for `key` at `now` and says whether it is within the limit;
    /// events over the limit are not counted.
    pub fn allow(&self, key: &K, now: Instant) -> bool {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if !events.contains_key(key) && events.len() >= MAX_KEYS {
            let window = self.window;
            events.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
            if events.len() >= MAX_KEYS {
                return false;
            }
        }
        let times = events.entry(key.clone()).or_default();
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// The IPv4 address, or the /64 network of an IPv6 address (one home or phone).
pub fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Connections open at once per client address.
#[derive(Debug)]
pub struct ConnectionSlots {
    limit: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl ConnectionSlots {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `address`, held until the slot is dropped;
    /// `None` when the address has all its slots.
    pub fn take(&self, address: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            address,
            open: self.open.clone(),
        })
    }

    /// Connections open now, from every address.
    pub fn total(&self) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.values().sum()
    }

    /// Connections open now from `address`.
    #[cfg(test)]
    fn open_from(&self, address: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&address).copied().unwrap_or(0)
    }
}

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// The client's address: the peer, or behind a trusted reverse proxy the last
/// address of `X-Forwarded-For` that is not itself a trusted proxy. A header from
/// anyone else is ignored (a client could write anything there). Limits count
/// per network ([`network_of`]: IPv6 clients by their /64).
pub fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip.to_canonical(),
            // A hop that is not an address: trust nothing before it.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_window_allows_the_limit_then_refuses_until_the_window_moves_on() {
        let rate = RateWindow::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(rate.allow(&"a", t0 + Duration::from_secs(i)));
        }
        assert!(!rate.allow(&"a", t0 + Duration::from_secs(10)));
        assert!(rate.allow(&"b", t0 + Duration::from_secs(10)), "per key");
        assert!(rate.allow(&"a", t0 + Duration::from_secs(60)));
        assert!(!rate.allow(&"a", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn connection_slots_free_their_place_when_dropped() {
        let slots = ConnectionSlots::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = slots.take(ip).unwrap();
        let _b = slots.take(ip).unwrap();
        assert!(slots.take(ip).is_none());
        assert!(slots.take("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert_eq!(slots.open_from(ip), 1);
        assert!(slots.take(ip).is_some());
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.9, 203.0.113.5, 10.0.0.3".parse().unwrap(),
        );
        let trusted: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()];
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap(),
            "the first hop the trusted proxies did not add"
        );
        assert_eq!(
            client_address(proxy, &headers, &[]),
            "10.0.0.2".parse::<IpAddr>().unwrap(),
            "nobody trusted: the header is ignored"
        );
        let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(
            client_address(stranger, &headers, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        let v6: SocketAddr = "[2001:db8:1:2:3:4:5:6]:443".parse().unwrap();
        assert_eq!(
            network_of(client_address(v6, &HeaderMap::new(), &[])),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap(),
            "an IPv6 client counts as its /64"
        );
    }
}
