//! Where a connection's packets go: routes learnt from connectivity checks, and
//! following a browser whose network changed.

use super::*;

/// Where a connection's packets go, when the browser has moved (see [`Path::follow`]).
///
/// `rtc`'s ICE-lite agent keeps the first candidate pair the browser nominates. A
/// browser whose network changes (a NAT rebinding, a laptop leaving Wi-Fi, a new
/// interface its ICE agent prefers) moves to another pair, and the agent would keep
/// sending to the old one and let the connection fail. So the engine follows the
/// browser: once a route has passed a connectivity check (`rtc` answered a binding
/// request on it, which it does only with the right credentials) and has brought an
/// SRTP or SRTCP packet that `rtc` authenticated, that route is where everything goes,
/// and what comes from it reaches `rtc` as if it came over the pair `rtc` selected.
#[derive(Debug, Default)]
pub(super) struct Path {
    /// The route `rtc` sends media on (its selected pair).
    pub(super) selected: Option<Route>,
    /// The route the browser uses now, when not `selected`.
    pub(super) moved: Option<Route>,
    /// The last few routes `rtc` answered a binding request on (a browser checks
    /// several pairs in turn).
    pub(super) checked: [Option<Route>; CHECKED_ROUTES],
    /// Where the next one goes in `checked`.
    pub(super) next_checked: usize,
    /// Routes `rtc` answered a binding request on, or sent one to, since the
    /// engine last recorded them (see [`Engine::record_route`]).
    pub(super) verified: Vec<Route>,
}

/// Routes remembered as checked per connection.
pub(super) const CHECKED_ROUTES: usize = 4;

/// Routes kept per connection (a browser checks a few candidate pairs, and moves
/// when its network changes); the oldest goes first.
pub(super) const MAX_ROUTES: usize = 8;

/// RFC 7983: the first byte of a datagram tells STUN (0-3) from DTLS (20-63) and
/// RTP/RTCP (128-191).
pub(super) fn is_stun(data: &[u8]) -> bool {
    data.first().is_some_and(|b| *b < 4)
}

/// A STUN Binding success response (type 0x0101).
pub(super) fn is_binding_success(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] == 0x01 && data[1] == 0x01
}

/// A STUN Binding request (type 0x0001).
pub(super) fn is_binding_request(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] == 0x00 && data[1] == 0x01
}

impl Path {
    /// What `rtc` wants sent, aimed at where the browser is now.
    pub(super) fn outgoing(&mut self, out: TaggedBytesMut, connected: bool) -> Transmit {
        let mut transmit = Transmit::from(out);
        if is_stun(&transmit.data) {
            // `rtc` answers a request only when it carries the right credentials,
            // and checks a pair only towards a candidate the browser signalled or
            // one that sent such a request. A browser that nominates on its first
            // check gets no answer until `rtc`'s own check of the pair succeeds, so
            // the answer to that check must get through too.
            if (is_binding_success(&transmit.data) || is_binding_request(&transmit.data))
                && !self.verified.contains(&transmit.route)
            {
                self.verified.push(transmit.route);
            }
            if is_binding_success(&transmit.data) && !self.checked.contains(&Some(transmit.route)) {
                self.checked[self.next_checked] = Some(transmit.route);
                self.next_checked = (self.next_checked + 1) % CHECKED_ROUTES;
            }
        } else if connected && self.selected != Some(transmit.route) {
            self.selected = Some(transmit.route);
        }
        if let Some(moved) = self.moved
            && self.selected == Some(transmit.route)
        {
            transmit.route = moved;
        }
        transmit
    }

    /// The route `rtc` should see for a datagram that came over `route`.
    pub(super) fn incoming(&self, route: Route) -> Route {
        match (self.moved, self.selected) {
            (Some(moved), Some(selected)) if moved == route => selected,
            _ => route,
        }
    }

    /// A datagram from `route` carried SRTP or SRTCP that `rtc` authenticated: if
    /// the browser has moved there (and the route passed a check), follow it. True
    /// on a move.
    pub(super) fn follow(&mut self, route: Route) -> bool {
        let Some(selected) = self.selected else {
            return false;
        };
        if self.moved.unwrap_or(selected) == route {
            return false;
        }
        if route == selected {
            self.moved = None;
            return true;
        }
        if !self.checked.contains(&Some(route)) {
            return false;
        }
        self.moved = Some(route);
        true
    }
}

impl Engine {
    /// Keeps `route` for the peer `key` once `rtc` answered a binding request on it
    /// (which it does only when the request carries the right credentials) or sent
    /// its own check there (only towards candidates the browser signalled or that
    /// passed such a request): a username alone, which anyone who saw it can send
    /// from any port, records nothing. A peer keeps its [`MAX_ROUTES`] latest routes
    /// (and always the one `rtc` selected).
    pub(super) fn record_route(&mut self, key: PeerKey, route: Route) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if self.by_route.contains_key(&route) {
            return;
        }
        let mut evicted = None;
        if peer.routes.len() >= MAX_ROUTES
            && let Some(at) = peer
                .routes
                .iter()
                .position(|r| peer.path.selected != Some(*r))
        {
            let oldest = peer.routes.remove(at);
            if peer.path.moved == Some(oldest) {
                peer.path.moved = None;
            }
            evicted = Some(oldest);
        }
        tracing::trace!(call = %key.call, participant = key.participant, dir = ?key.dir, route = ?route, "route recorded");
        peer.routes.push(route);
        if let Some(oldest) = evicted {
            self.forget_route(&oldest);
        }
        self.remember_route(route, key);
    }
}

/// The local ICE username fragment named by a STUN binding request
/// (`USERNAME = local:remote`), if `data` is one.
pub(crate) fn stun_username(data: &[u8]) -> Option<&str> {
    // STUN: first two bits zero, magic cookie at 4..8, 20-byte header.
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_usernames_are_read_from_binding_requests() {
        // Binding request, length 12, cookie, transaction id, USERNAME "abcd:wxyz".
        let mut msg = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
        msg.extend_from_slice(b"abcd:wxyz\0\0\0");
        assert_eq!(stun_username(&msg), Some("abcd"));
        assert_eq!(stun_username(&msg[..30]), None, "truncated");
        assert_eq!(stun_username(&[0x80; 40]), None, "RTP is not STUN");
        assert_eq!(stun_username(&[]), None);
    }
}
