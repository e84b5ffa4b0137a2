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

use crate::Run;

/// What one participant received in the measured window.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) received: u64,
    pub(crate) expected: u64,
    pub(crate) missing: u64,
    pub(crate) streams: usize,
    pub(crate) latencies: Vec<u32>,
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
}

impl Media {
    /// Two sockets on `ip` (the generator's side of the path to the server).
    pub(crate) async fn bind(ip: IpAddr) -> Result<Media> {
        let publish_socket = UdpSocket::bind((ip, 0)).await?;
        let subscribe_socket = UdpSocket::bind((ip, 0)).await?;
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

    /// Waits for a datagram on either socket and hands it to the participant.
    pub(crate) async fn recv(&mut self) -> Result<()> {
        let (local, n, from, buf) = tokio::select! {
            got = self.publish_socket.recv_from(&mut self.buf_a) => {
                let (n, from) = got?;
                (self.publish_addr, n, from, &self.buf_a)
            }
            got = self.subscribe_socket.recv_from(&mut self.buf_b) => {
                let (n, from) = got?;
                (self.subscribe_addr, n, from, &self.buf_b)
            }
        };
        if let Some(p) = self.me.as_mut() {
            p.handle_datagram(Instant::now(), local, from, BytesMut::from(&buf[..n]));
        }
        Ok(())
    }

    /// What arrived since the measured window started.
    pub(crate) fn received(self) -> Option<Received> {
        let mut p = self.me?;
        let base = self.baseline.unwrap_or_default();
        let mut r = Received {
            streams: p.stats.streams.len(),
            latencies: std::mem::take(&mut p.stats.latencies_micros),
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
