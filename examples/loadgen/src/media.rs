//! One synthetic participant's media: its two UDP sockets (publish and subscribe
//! connection) and the sans-IO [`Participant`] they feed, whatever server and
//! signaling it talks to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::BytesMut;
use confab_testkit::{Participant, Profile, ReceiveStats};
use tokio::net::UdpSocket;

use crate::{Run, arrival};

/// Rounds of datagrams taken from the sockets per wake-up.
const BATCH: usize = 64;

/// What one participant received in the measured window.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) received: u64,
    pub(crate) expected: u64,
    pub(crate) missing: u64,
    pub(crate) streams: usize,
    pub(crate) latencies: Vec<u32>,
    /// How long each datagram waited in the socket for the participant's turn on
    /// the generator's threads (µs): the generator's own delay, not in `latencies`.
    pub(crate) waits: Vec<u32>,
}

pub(crate) struct Media {
    publish_socket: UdpSocket,
    subscribe_socket: UdpSocket,
    publish_addr: SocketAddr,
    subscribe_addr: SocketAddr,
    /// The participant, once signaling has let it in.
    pub(crate) me: Option<Participant>,
    counted: bool,
    baseline: Option<HashMap<u32, (u64, u64)>>,
    buf_a: Vec<u8>,
    buf_b: Vec<u8>,
    waits: Vec<u32>,
}

impl Media {
    /// Two sockets on `ip` (the generator's side of the path to the server).
    pub(crate) async fn bind(ip: IpAddr) -> Result<Media> {
        let publish_socket = UdpSocket::bind((ip, 0)).await?;
        let subscribe_socket = UdpSocket::bind((ip, 0)).await?;
        arrival::enable(&publish_socket)?;
        arrival::enable(&subscribe_socket)?;
        Ok(Media {
            publish_addr: publish_socket.local_addr()?,
            subscribe_addr: subscribe_socket.local_addr()?,
            publish_socket,
            subscribe_socket,
            me: None,
            counted: false,
            baseline: None,
            buf_a: vec![0u8; 2048],
            buf_b: vec![0u8; 2048],
            waits: Vec::new(),
        })
    }

    /// Makes the participant (camera and microphone) once signaling has let it in.
    pub(crate) fn start(&mut self, id: u32, run: &Run, now: Instant) -> Result<&mut Participant> {
        let p = Participant::new(
            id,
            &Profile::camera(),
            self.publish_addr,
            self.subscribe_addr,
            run.epoch,
            now,
        )?;
        Ok(self.me.insert(p))
    }

    pub(crate) fn participant(&mut self) -> Result<&mut Participant> {
        self.me.as_mut().context("no media before joining")
    }

    /// Runs due timers, sends what is queued, counts the participant in once both
    /// its connections are up, and notes where the measured window starts.
    pub(crate) async fn step(&mut self, run: &Run, now: Instant) {
        let Some(p) = self.me.as_mut() else { return };
        if p.poll_timeout().is_some_and(|t| t <= now) {
            p.handle_timeout(now);
        }
        while let Some(d) = p.poll_transmit() {
            let socket = if d.from == self.publish_addr {
                &self.publish_socket
            } else {
                &self.subscribe_socket
            };
            let _ = socket.send_to(&d.data, d.to).await;
        }
        if !self.counted && p.connected() {
            self.counted = true;
            run.connected.fetch_add(1, Ordering::Relaxed);
        }
        if self.baseline.is_none() && run.measuring.load(Ordering::Relaxed) {
            self.baseline = Some(snapshot(&p.stats));
            p.stats.latencies_micros.clear();
        }
    }

    /// When [`Media::step`] must next run (at most 50 ms from now).
    pub(crate) fn wake(&mut self, now: Instant) -> Instant {
        let cap = now + Duration::from_millis(50);
        self.me
            .as_mut()
            .and_then(|p| p.poll_timeout())
            .map_or(cap, |t| t.min(cap))
    }

    /// Waits until either socket has datagrams, then hands the participant every
    /// datagram queued on both (up to [`BATCH`] rounds), so that a busy receiver
    /// goes through the participant's loop once per batch, not once per packet.
    pub(crate) async fn recv(&mut self) -> Result<()> {
        tokio::select! {
            ready = self.publish_socket.readable() => ready?,
            ready = self.subscribe_socket.readable() => ready?,
        }
        for _ in 0..BATCH {
            let from_publish = self.take(true)?;
            let from_subscribe = self.take(false)?;
            if !from_publish && !from_subscribe {
                break;
            }
        }
        Ok(())
    }

    /// One datagram from one socket to the participant, if one is queued.
    fn take(&mut self, publish: bool) -> Result<bool> {
        let (socket, local, buf) = if publish {
            (&self.publish_socket, self.publish_addr, &mut self.buf_a)
        } else {
            (&self.subscribe_socket, self.subscribe_addr, &mut self.buf_b)
        };
        let now = Instant::now();
        let (n, from, arrived) = match arrival::try_recv(socket, buf, now) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if let Some(p) = self.me.as_mut() {
            if self.baseline.is_some() {
                let waited = now.duration_since(arrived).as_micros();
                self.waits.push(waited.min(u128::from(u32::MAX)) as u32);
            }
            p.handle_datagram_arrived(now, arrived, local, from, BytesMut::from(&buf[..n]));
        }
        Ok(true)
    }

    /// What arrived since the measured window started.
    pub(crate) fn received(self) -> Option<Received> {
        let mut p = self.me?;
        let base = self.baseline.unwrap_or_default();
        let mut r = Received {
            streams: p.stats.streams.len(),
            latencies: std::mem::take(&mut p.stats.latencies_micros),
            waits: self.waits,
            ..Received::default()
        };
        for (ssrc, s) in &p.stats.streams {
            let (r0, e0) = base.get(ssrc).copied().unwrap_or((0, 0));
            let (got, expected) = (s.received - r0, s.expected() - e0);
            r.received += got;
            r.expected += expected;
            r.missing += expected.saturating_sub(got);
        }
        Some(r)
    }
}

fn snapshot(stats: &ReceiveStats) -> HashMap<u32, (u64, u64)> {
    stats
        .streams
        .iter()
        .map(|(ssrc, s)| (*ssrc, (s.received, s.expected())))
        .collect()
}
