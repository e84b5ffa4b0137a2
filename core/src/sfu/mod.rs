//! The media plane: a selective forwarding unit on one UDP port and one TCP port.
//!
//! [`engine::Engine`] is a synchronous state machine (webrtc-rs's sans-IO `rtc`
//! peer connections plus Confab's forwarding); this module runs it, one engine per
//! engine thread (`media.threads`, one per core by default). Each call lives on one
//! engine (its key modulo the number of engines), so the hot path shares nothing.
//! A UDP reader thread and one ICE-TCP thread (every TCP connection is a task on
//! its own small event loop, not a thread) turn sockets into `Input`s on each
//! engine's bounded channel, steered by `Steering`: a connectivity check by the
//! engine its ICE username names, anything else by the route it came from, which
//! the engines report as they learn and forget routes. Each engine thread applies
//! its inputs, runs timers, and writes what its engine wants sent. The control
//! plane reaches them only through [`MediaHandle::send`], which never waits.
//!
//! ICE-TCP costs an idle stranger little: connections are capped in all and per
//! address, one that has not passed a connectivity check within
//! `media.tcp_check_timeout_secs` is closed, and so is one whose peer connection
//! is gone or that has been silent for `CONSENT_TIMEOUT`.

pub mod allocate;
pub mod engine;
mod feedback;
pub mod forward;
#[cfg(test)]
mod sim_tests;
pub mod speaker;
#[cfg(feature = "test-tap")]
pub mod tap;
mod udp_batch;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

pub use engine::{CallKey, EventSink, Events, MAX_SDP_BYTES, MediaCommand, MediaEvent};
use engine::{Engine, EngineConfig, EngineStats, MediaTransport, Route, Step};
use udp_batch::{RecvBatch, SendBatch};

use crate::config::MediaConfig;
use crate::limits::{ConnectionSlots, network_of};

/// Engine threads a node can run (`media.threads`).
pub const MAX_ENGINE_THREADS: usize = engine::MAX_SHARDS;
const _: () = assert!(MAX_ENGINE_THREADS == crate::config::MAX_MEDIA_THREADS);

/// Inputs waiting for one engine thread; beyond this, sockets wait and commands fail.
const INPUT_QUEUE: usize = 8192;
/// Frames waiting for one slow ICE-TCP client before new ones are dropped.
const TCP_OUTBOX: usize = 1024;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 1500;
/// How often blocked socket threads look up to notice shutdown.
const POLL: Duration = Duration::from_millis(250);
/// RFC 7675: consent to send expires after 30 s without a successful check;
/// browsers check every few seconds, so a connection this silent is gone.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the engine thread looks for ICE-TCP connections to close.
const TCP_SWEEP: Duration = Duration::from_secs(1);

enum Input {
    Datagram(Route, BytesMut),
    Command(MediaCommand),
    TcpOpened(Route, tokio::sync::mpsc::Sender<BytesMut>),
    TcpClosed(Route),
    Shutdown,
}

/// One ICE-TCP connection as the engine thread sees it: dropping `writer` closes it.
struct TcpRoute {
    writer: tokio::sync::mpsc::Sender<BytesMut>,
    opened: Instant,
}

/// Counters the engine thread publishes.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// ICE-TCP connections open now, and refused by the caps since the start.
    pub tcp_connections: AtomicU64,
    pub tcp_refused: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub peer_connections: AtomicU64,
    /// Engine steps that panicked (see [`engine::Engine::guarded`]).
    pub panics: AtomicU64,
    /// Media events a participant's signaling connection did not take.
    pub events_dropped: AtomicU64,
    /// The engine thread is running (false once it has stopped for good).
    pub running: AtomicBool,
}

/// Panics in a row that no call can be blamed for before the engine thread stops
/// (and `/readyz` says so): a fault that is not about one call and keeps coming.
const UNATTRIBUTED_PANICS: u32 = 100;

/// Marks the engine thread stopped however it ends.
struct Running(Arc<MediaStats>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

/// The control plane's side of the media plane. Cheap to clone.
#[derive(Clone)]
pub struct MediaHandle {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per engine thread.
    inputs: Vec<SyncSender<Input>>,
    stop: Arc<AtomicBool>,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    stats: Arc<MediaStats>,
}

impl std::fmt::Debug for MediaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaHandle")
            .field("udp", &self.inner.udp)
            .field("tcp", &self.inner.tcp)
            .finish()
    }
}

/// The media plane could not take a command right now.
#[derive(Debug, thiserror::Error)]
#[error("the media server is overloaded; try again")]
pub struct Busy;

impl MediaHandle {
    /// Binds the media sockets and starts the media threads.
    pub fn start(config: &MediaConfig) -> io::Result<Self> {
        let udp = config
            .udp_enabled
            .then(|| UdpSocket::bind(SocketAddr::new(config.bind, config.udp_port)))
            .transpose()?;
        let tcp = config
            .tcp_enabled
            .then(|| TcpListener::bind(SocketAddr::new(config.bind, config.tcp_port)))
            .transpose()?;
        let announce = if config.public_ips.is_empty() {
            vec![announced_ip(config.bind)]
        } else {
            config.public_ips.clone()
        };
        // Routes carry the address browsers talk to, not the wildcard we bound.
        let local = |port: u16| SocketAddr::new(announce[0], port);
        let udp_local = udp
            .as_ref()
            .map(|s| s.local_addr())
            .transpose()?
            .map(|a| local(a.port()));
        let tcp_local = tcp
            .as_ref()
            .map(|s| s.local_addr())
            .transpose()?
            .map(|a| local(a.port()));
        let shards = config.engine_threads().clamp(1, MAX_ENGINE_THREADS);
        let (inputs, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| sync_channel(INPUT_QUEUE)).unzip();
        // Engines tell the UDP reader which routes they take (only needed with more
        // than one).
        let (route_reports, route_changes) = std::sync::mpsc::channel();
        let route_reports = (shards > 1).then_some(route_reports);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(MediaStats {
            running: AtomicBool::new(true),
            ..MediaStats::default()
        });
        let mut udp_sends = Vec::with_capacity(shards);
        for _ in 0..shards {
            udp_sends.push(match &udp {
                Some(socket) => Some(socket.try_clone()?),
                None => None,
            });
        }
        if let (Some(socket), Some(local)) = (udp, udp_local) {
            socket.set_read_timeout(Some(POLL))?;
            let inputs = inputs.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("media-udp".into())
                .spawn(move || udp_reader(socket, local, inputs, route_changes, stop))?;
        }
        if let (Some(listener), Some(local)) = (tcp, tcp_local) {
            listener.set_nonblocking(true)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            let tcp = TcpServer {
                local,
                inputs: inputs.clone(),
                stop: stop.clone(),
                stats: stats.clone(),
                slots: ConnectionSlots::new(config.tcp_max_per_address),
                max_connections: u64::from(config.tcp_max_connections),
            };
            std::thread::Builder::new()
                .name("media-tcp".into())
                .spawn(move || runtime.block_on(tcp.run(listener)))?;
        }
        let tcp_check = Duration::from_secs(u64::from(config.tcp_check_timeout_secs));
        for (shard, (receiver, udp_send)) in receivers.into_iter().zip(udp_sends).enumerate() {
            let engine = Engine::new(
                EngineConfig {
                    udp: udp_local,
                    tcp: tcp_local,
                    announce: announce.clone(),
                    shard,
                    report_routes: route_reports.is_some(),
                },
                rand::SeedableRng::from_entropy(),
            );
            let thread = EngineThread {
                shard,
                inputs: receiver,
                udp: udp_send,
                stats: stats.clone(),
                routes: route_reports.clone(),
                tcp_check,
            };
            std::thread::Builder::new()
                .name(format!("media-engine-{shard}"))
                .spawn(move || thread.run(engine))?;
        }
        tracing::info!(udp = ?udp_local, tcp = ?tcp_local, threads = shards, "media ports open");
        Ok(Self {
            inner: Arc::new(Inner {
                inputs,
                stop,
                udp: udp_local,
                tcp: tcp_local,
                stats,
            }),
        })
    }

    /// Hands a command to the engine thread of its call, without waiting.
    pub fn send(&self, command: MediaCommand) -> Result<(), Busy> {
        let shard = command
            .call()
            .map_or(0, |call| shard_of_call(call, self.inner.inputs.len()));
        self.send_to(shard, command)
    }

    fn send_to(&self, shard: usize, command: MediaCommand) -> Result<(), Busy> {
        match self.inner.inputs[shard].try_send(Input::Command(command)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Starts keeping a copy of every payload this node forwards (tests only).
    #[cfg(feature = "test-tap")]
    pub fn tap(&self) -> Result<tap::Tap, Busy> {
        let tap = tap::Tap::default();
        for shard in 0..self.inner.inputs.len() {
            self.send_to(shard, MediaCommand::Tap(tap.clone()))?;
        }
        Ok(tap)
    }

    /// How many engine threads forward media on this node.
    pub fn threads(&self) -> usize {
        self.inner.inputs.len()
    }

    /// The UDP address announced to browsers.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner.udp
    }

    /// The ICE-TCP address announced to browsers.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp
    }

    pub fn stats(&self) -> &MediaStats {
        &self.inner.stats
    }

    /// Whether every engine thread is still running.
    pub fn running(&self) -> bool {
        self.inner.stats.running.load(Ordering::Relaxed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for input in &self.inputs {
            let _ = input.try_send(Input::Shutdown);
        }
    }
}

/// Where browsers should send media when we bound `bind`: itself, or for a wildcard,
/// the address this host uses for its default route (no packet is sent to find it).
fn announced_ip(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The engine thread for a call: calls are spread over the engines by key.
fn shard_of_call(call: CallKey, shards: usize) -> usize {
    usize::try_from(call.0.rem_euclid(i64::try_from(shards.max(1)).unwrap_or(1))).unwrap_or(0)
}

/// One engine thread: its engine, its inputs, its own handle on the UDP socket.
struct EngineThread {
    shard: usize,
    inputs: Receiver<Input>,
    udp: Option<UdpSocket>,
    stats: Arc<MediaStats>,
    /// Where it reports the UDP routes it learns and forgets (several engines).
    routes: Option<std::sync::mpsc::Sender<RouteReport>>,
    tcp_check: Duration,
}

/// An engine took (or stopped taking) datagrams from a UDP address.
#[derive(Debug, Clone, Copy)]
struct RouteReport {
    peer: SocketAddr,
    shard: usize,
    known: bool,
}

impl EngineThread {
    fn run(self, mut engine: Engine) {
        let _running = Running(self.stats.clone());
        let mut tcp_writers: HashMap<Route, TcpRoute> = HashMap::new();
        let mut next_sweep = Instant::now() + TCP_SWEEP;
        let mut batch = SendBatch::default();
        let mut published = EngineStats::default();
        let mut unattributed = 0;
        let mut went = |step: Step| -> bool {
            match step {
                Step::Done | Step::Contained(_) => unattributed = 0,
                Step::Unattributed => unattributed += 1,
                Step::Broken => {
                    tracing::error!(
                        shard = self.shard,
                        "a media engine could not recover from a panic; media is down on this node"
                    );
                    return false;
                }
            }
            if unattributed >= UNATTRIBUTED_PANICS {
                tracing::error!(
                    shard = self.shard,
                    "a media engine keeps panicking; media is down on this node"
                );
                return false;
            }
            true
        };
        'run: loop {
            let now = Instant::now();
            let wait = engine
                .poll_timeout()
                .map_or(next_sweep, |t| t.min(next_sweep))
                .saturating_duration_since(now);
            let first = match self.inputs.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut next = first;
            // Take whatever else is queued before looking at timers again.
            let mut budget = 256;
            while let Some(input) = next.take() {
                let now = Instant::now();
                let step = match input {
                    Input::Datagram(route, data) => {
                        engine.guarded(|e| e.handle_datagram(now, route, data))
                    }
                    Input::Command(command) => engine.guarded(|e| e.handle_command(now, command)),
                    Input::TcpOpened(route, writer) => {
                        tcp_writers.insert(
                            route,
                            TcpRoute {
                                writer,
                                opened: now,
                            },
                        );
                        Step::Done
                    }
                    Input::TcpClosed(route) => {
                        tcp_writers.remove(&route);
                        engine.guarded(|e| e.handle_route_closed(route))
                    }
                    Input::Shutdown => break 'run,
                };
                if !went(step) {
                    break 'run;
                }
                budget -= 1;
                if budget > 0 {
                    next = self.inputs.try_recv().ok();
                }
                self.report_routes(&mut engine);
                transmit(&mut engine, self.udp.as_ref(), &tcp_writers, &mut batch);
                deliver_events(&mut engine, &self.stats);
            }
            let now = Instant::now();
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                if !went(engine.guarded(|e| e.handle_timeout(now))) {
                    break 'run;
                }
                self.report_routes(&mut engine);
                transmit(&mut engine, self.udp.as_ref(), &tcp_writers, &mut batch);
                deliver_events(&mut engine, &self.stats);
            }
            if let Some(socket) = self.udp.as_ref() {
                batch.flush(socket);
            }
            if now >= next_sweep {
                next_sweep = now + TCP_SWEEP;
                // Closed by dropping its writer: a connection that never passed a
                // check, or whose peer connection is gone (or that is another
                // engine's: each engine hears of every connection).
                tcp_writers.retain(|route, tcp| {
                    now.saturating_duration_since(tcp.opened) < self.tcp_check
                        || engine.knows_route(route)
                });
            }
            publish(&engine, &self.stats, &mut published);
        }
        publish(&engine, &self.stats, &mut published);
    }

    /// Tells the UDP reader which addresses this engine now takes datagrams from.
    fn report_routes(&self, engine: &mut Engine) {
        while let Some(change) = engine.poll_route_change() {
            if let (Some(routes), MediaTransport::Udp) = (&self.routes, change.route.protocol) {
                let _ = routes.send(RouteReport {
                    peer: change.route.peer,
                    shard: self.shard,
                    known: change.known,
                });
            }
        }
    }
}

/// Adds what changed in this engine's counters since it last published to the
/// node's, where the control plane reads them.
fn publish(engine: &Engine, stats: &MediaStats, published: &mut EngineStats) {
    let now = engine.stats();
    let add = |counter: &AtomicU64, now: u64, before: u64| {
        if now != before {
            counter.fetch_add(now.wrapping_sub(before), Ordering::Relaxed);
        }
    };
    add(&stats.packets_in, now.packets_in, published.packets_in);
    add(
        &stats.packets_forwarded,
        now.packets_forwarded,
        published.packets_forwarded,
    );
    add(
        &stats.peer_connections,
        now.peers as u64,
        published.peers as u64,
    );
    add(&stats.panics, now.panics, published.panics);
    *published = now;
}

/// Hands the engine's events to the participants' connections; one a connection
/// does not take (its queue is full, or it closed) is counted and dropped.
fn deliver_events(engine: &mut Engine, stats: &MediaStats) {
    while let Some((to, event)) = engine.poll_event() {
        if !to.deliver(event) {
            stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends what the engine has to send: TCP frames to their connections' writers,
/// UDP into the batch (sent when it fills up or the burst of input ends).
fn transmit(
    engine: &mut Engine,
    udp: Option<&UdpSocket>,
    tcp: &HashMap<Route, TcpRoute>,
    batch: &mut SendBatch,
) {
    while let Some(t) = engine.poll_transmit() {
        match t.route.protocol {
            MediaTransport::Udp => {
                if let Some(socket) = udp {
                    batch.push(socket, t.route.peer, t.data);
                }
            }
            MediaTransport::Tcp => {
                if let Some(tcp) = tcp.get(&t.route) {
                    // A full queue means a stalled client: drop, as a network would.
                    let _ = tcp.writer.try_send(t.data);
                }
            }
        }
    }
}

/// Which engine thread a datagram goes to.
///
/// A connectivity check (a STUN binding request) goes to the engine its ICE
/// username names: the first character of every username an engine makes is its
/// own ([`engine::shard_of_ufrag`]). Anything else goes by the address it came
/// from, as the engines report the routes they learn (only after `rtc` accepted a
/// check with the right credentials) and forget; an address no engine reported
/// goes to the first engine, which drops it as every engine drops strangers. The
/// table holds exactly the routes the engines hold, so it is bounded as theirs are.
#[derive(Debug)]
pub(crate) struct Steering {
    shards: usize,
    routes: HashMap<SocketAddr, usize>,
}

impl Steering {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: shards.max(1),
            routes: HashMap::new(),
        }
    }

    fn learn(&mut self, report: RouteReport) {
        if report.known {
            self.routes.insert(report.peer, report.shard);
        } else if self.routes.get(&report.peer) == Some(&report.shard) {
            // Only the engine that holds a route forgets it: another may have
            // taken the address over since (a port reused for another call).
            self.routes.remove(&report.peer);
        }
    }

    /// The engine for a datagram from `peer`.
    pub(crate) fn shard_for(&self, peer: SocketAddr, data: &[u8]) -> usize {
        if self.shards == 1 {
            return 0;
        }
        if let Some(shard) = engine::stun_username(data)
            .and_then(engine::shard_of_ufrag)
            .filter(|s| *s < self.shards)
        {
            return shard;
        }
        self.routes.get(&peer).copied().unwrap_or(0)
    }
}

fn udp_reader(
    socket: UdpSocket,
    local: SocketAddr,
    inputs: Vec<SyncSender<Input>>,
    reports: Receiver<RouteReport>,
    stop: Arc<AtomicBool>,
) {
    let mut batch = RecvBatch::<MAX_DATAGRAM>::default();
    let mut steering = Steering::new(inputs.len());
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(&socket) {
            Ok(_) => {
                // What the engines learned before they answered what led here.
                while let Ok(report) = reports.try_recv() {
                    steering.learn(report);
                }
                for (peer, data) in batch.datagrams() {
                    let route = Route {
                        protocol: MediaTransport::Udp,
                        local,
                        peer,
                    };
                    let shard = steering.shard_for(peer, data);
                    if inputs[shard]
                        .send(Input::Datagram(route, BytesMut::from(data)))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(err) if read_timed_out(&err) => {}
            // ICMP port unreachable and the like surface here on some systems.
            Err(err) => tracing::trace!(error = %err, "UDP receive error"),
        }
    }
}

/// Every ICE-TCP connection, as tasks on the `media-tcp` thread's event loop.
struct TcpServer {
    local: SocketAddr,
    /// One per engine thread.
    inputs: Vec<SyncSender<Input>>,
    stop: Arc<AtomicBool>,
    stats: Arc<MediaStats>,
    slots: ConnectionSlots,
    max_connections: u64,
}

impl TcpServer {
    async fn run(self, listener: TcpListener) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(error = %err, "ICE-TCP is off: cannot listen");
                return;
            }
        };
        let this = Arc::new(self);
        while !this.stop.load(Ordering::Relaxed) {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tokio::time::sleep(POLL) => continue,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some(open) = this.admit(peer) else {
                        this.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
                        continue; // dropping the stream closes it
                    };
                    tokio::spawn(this.clone().serve(stream, peer, open));
                }
                Err(err) => {
                    tracing::debug!(error = %err, "ICE-TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// A place for one more connection from `peer`, within both caps.
    fn admit(&self, peer: SocketAddr) -> Option<OpenTcp> {
        if self.stats.tcp_connections.load(Ordering::Relaxed) >= self.max_connections {
            return None;
        }
        let slot = self.slots.take(network_of(peer.ip().to_canonical()))?;
        self.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        Some(OpenTcp {
            _slot: slot,
            stats: self.stats.clone(),
        })
    }

    /// Carries one connection (RFC 4571 framing: each packet preceded by its 16-bit
    /// length) until the client leaves, goes silent, or the engine drops the route.
    async fn serve(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        _open: OpenTcp,
    ) {
        let route = Route {
            protocol: MediaTransport::Tcp,
            local: self.local,
            peer,
        };
        let _ = stream.set_nodelay(true);
        let (frames, outbox) = tokio::sync::mpsc::channel(TCP_OUTBOX);
        // Every engine hears of the connection; those that never take its route
        // let go of it after `media.tcp_check_timeout_secs`, as of any stranger.
        for input in &self.inputs {
            if input.send(Input::TcpOpened(route, frames.clone())).is_err() {
                return;
            }
        }
        drop(frames);
        // The engine this connection's frames go to: the one its first
        // connectivity check names.
        let steering = Steering::new(self.inputs.len());
        let mut shard = None;
        let (mut reader, writer) = stream.into_split();
        let mut writing = tokio::spawn(write_frames(writer, outbox));
        let mut decoder = FrameDecoder::default();
        'read: loop {
            decoder.buf.reserve(4096);
            let read = tokio::select! {
                _ = &mut writing => break,
                read = tokio::time::timeout(CONSENT_TIMEOUT, reader.read_buf(&mut decoder.buf)) => read,
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Closed, failed, or silent past consent.
                _ => break,
            }
            loop {
                match decoder.next_frame() {
                    // Waits when the engine is behind, as the UDP reader does.
                    Ok(Some(frame)) => {
                        let to = *shard.get_or_insert_with(|| steering.shard_for(peer, &frame));
                        if self.inputs[to].send(Input::Datagram(route, frame)).is_err() {
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(()) => break 'read,
                }
            }
        }
        writing.abort();
        for input in &self.inputs {
            let _ = input.send(Input::TcpClosed(route));
        }
    }
}

/// Counts an open ICE-TCP connection until dropped.
struct OpenTcp {
    _slot: crate::limits::ConnectionSlot,
    stats: Arc<MediaStats>,
}

impl Drop for OpenTcp {
    fn drop(&mut self) {
        self.stats.tcp_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes what the engine sends on one connection, until the engine drops the
/// route (closing the channel) or the client stops reading.
async fn write_frames(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut outbox: tokio::sync::mpsc::Receiver<BytesMut>,
) {
    use tokio::io::AsyncWriteExt;
    let mut framed = Vec::with_capacity(MAX_DATAGRAM + 2);
    while let Some(data) = outbox.recv().await {
        let Ok(len) = u16::try_from(data.len()) else {
            continue;
        };
        framed.clear();
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&data);
        if writer.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// A blocking read gave up for its timeout (or a signal): not an error, look again.
fn read_timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Feeds `data` to the ICE-TCP framing, cut into reads where its first bytes say:
/// every frame that comes out is a whole packet of an acceptable size (fuzzing).
#[doc(hidden)]
pub fn fuzz_tcp_frames(data: &[u8]) {
    let (cuts, stream) = data.split_at(data.len().min(4));
    let mut decoder = FrameDecoder::default();
    let mut rest = stream;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = usize::from(*cut.next().unwrap_or(&255)).clamp(1, rest.len());
        let (read, after) = rest.split_at(n);
        rest = after;
        decoder.buf.extend_from_slice(read);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => assert!(!frame.is_empty() && frame.len() <= MAX_DATAGRAM * 2),
                Ok(None) => break,
                Err(()) => return,
            }
        }
        assert!(decoder.buf.len() < 2 + MAX_DATAGRAM * 2 + 256);
    }
}

/// Splits an RFC 4571 byte stream into packets.
#[derive(Default)]
struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    #[cfg(test)]
    fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame; `Err` for a stream that cannot be ICE (a zero or
    /// oversized length), which closes the connection.
    fn next_frame(&mut self) -> Result<Option<BytesMut>, ()> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len == 0 || len > MAX_DATAGRAM * 2 {
            return Err(());
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        let _ = self.buf.split_to(2);
        Ok(Some(self.buf.split_to(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_frames_are_split_across_reads() {
        let mut d = FrameDecoder::default();
        d.extend(&[0, 3, b'a']);
        assert_eq!(d.next_frame(), Ok(None));
        d.extend(&[b'b', b'c', 0, 1]);
        assert_eq!(d.next_frame().unwrap().unwrap().as_ref(), b"abc");
        assert_eq!(d.next_frame(), Ok(None));
        d.extend(b"z");
        assert_eq!(d.next_frame().unwrap().unwrap().as_ref(), b"z");
        d.extend(&[0, 0]);
        assert_eq!(d.next_frame(), Err(()), "a zero length is not ICE-TCP");
    }

    /// A STUN binding request whose USERNAME is `local:remote`.
    fn binding_request(username: &str) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&u16::try_from(4 + padded).unwrap().to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[9; 12]);
        msg.extend_from_slice(&[0x00, 0x06]);
        msg.extend_from_slice(&u16::try_from(username.len()).unwrap().to_be_bytes());
        msg.extend_from_slice(username.as_bytes());
        msg.resize(20 + 4 + padded, 0);
        msg
    }

    #[test]
    fn datagrams_find_the_engine_of_their_call() {
        let alice: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let bob: SocketAddr = "192.0.2.2:6000".parse().unwrap();
        let srtp = [0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut steering = Steering::new(3);
        // Checks go where their username says, before any route is known.
        assert_eq!(
            steering.shard_for(alice, &binding_request("cAbcdefghijklmno:x")),
            2
        );
        assert_eq!(
            steering.shard_for(alice, &binding_request("bAbcdefghijklmno:x")),
            1
        );
        // A username no engine of this node makes, and media from an address no
        // engine took, go to the first engine (which drops them).
        assert_eq!(
            steering.shard_for(alice, &binding_request("zAbcdefghijklmno:x")),
            0
        );
        assert_eq!(steering.shard_for(alice, &srtp), 0);
        // Media follows the routes the engines report.
        steering.learn(RouteReport {
            peer: alice,
            shard: 2,
            known: true,
        });
        steering.learn(RouteReport {
            peer: bob,
            shard: 1,
            known: true,
        });
        assert_eq!(steering.shard_for(alice, &srtp), 2);
        assert_eq!(steering.shard_for(bob, &srtp), 1);
        // Engine 1 took Alice's address over (a reused port); engine 2 forgetting
        // it afterwards does not undo that.
        steering.learn(RouteReport {
            peer: alice,
            shard: 1,
            known: true,
        });
        steering.learn(RouteReport {
            peer: alice,
            shard: 2,
            known: false,
        });
        assert_eq!(steering.shard_for(alice, &srtp), 1);
        steering.learn(RouteReport {
            peer: alice,
            shard: 1,
            known: false,
        });
        assert_eq!(steering.shard_for(alice, &srtp), 0);
        assert_eq!(steering.routes.len(), 1, "only Bob's route is left");
        // One engine takes everything.
        let one = Steering::new(1);
        assert_eq!(
            one.shard_for(alice, &binding_request("cAbcdefghijklmno:x")),
            0
        );
    }

    #[test]
    fn calls_are_spread_over_the_engines() {
        let shards: Vec<usize> = (1..=6).map(|k| shard_of_call(CallKey(k), 3)).collect();
        assert_eq!(shards, [1, 2, 0, 1, 2, 0]);
        assert_eq!(shard_of_call(CallKey(-4), 3), 2, "never out of range");
        assert_eq!(shard_of_call(CallKey(7), 1), 0);
        assert_eq!(engine::shard_of_ufrag("cxyz"), Some(2));
        assert_eq!(engine::shard_of_ufrag("9xyz"), Some(61));
        assert_eq!(engine::shard_of_ufrag("-xyz"), None);
        assert_eq!(engine::shard_of_ufrag(""), None);
    }

    /// A TCP connection to `to` from `ip` (any loopback address).
    async fn tcp_from(ip: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Whether the server closes `stream` within `wait`.
    async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(n)) => panic!("the server sent {n} bytes to a stranger"),
            Err(_) => false,
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    /// Threads of this process whose name starts with `prefix`.
    fn threads_named(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .filter(|name| name.starts_with(prefix))
                    .count()
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn ice_tcp_strangers_are_capped_and_closed_without_a_thread_each() {
        let media = MediaHandle::start(&MediaConfig {
            udp_enabled: false,
            tcp_port: 0,
            tcp_max_connections: 3,
            tcp_max_per_address: 2,
            tcp_check_timeout_secs: 1,
            ..MediaConfig::default()
        })
        .unwrap();
        let to = media.tcp_addr().unwrap();
        let stats = media.stats();
        let open = || stats.tcp_connections.load(Ordering::Relaxed);
        let refused = || stats.tcp_refused.load(Ordering::Relaxed);

        let mut kept = Vec::new();
        for (n, ip) in [[127, 0, 0, 1], [127, 0, 0, 1], [127, 0, 0, 2]]
            .into_iter()
            .enumerate()
        {
            kept.push(tcp_from(ip, to).await);
            until("the connection is accepted", || open() == n as u64 + 1).await;
        }
        // A third from one address, then a fourth in all: closed at once.
        let mut same_address = tcp_from([127, 0, 0, 1], to).await;
        assert!(closed_within(&mut same_address, Duration::from_secs(2)).await);
        let mut over_all = tcp_from([127, 0, 0, 3], to).await;
        assert!(closed_within(&mut over_all, Duration::from_secs(2)).await);
        assert_eq!((open(), refused()), (3, 2));
        assert!(
            threads_named("media-tcp") <= 1,
            "one ICE-TCP thread, not one per connection"
        );

        // Nobody sent a connectivity check: each is closed after the deadline
        // (1 s here), and the places are free again.
        for stream in &mut kept {
            assert!(closed_within(stream, Duration::from_secs(4)).await);
        }
        until("the places are freed", || open() == 0).await;
        let _again = tcp_from([127, 0, 0, 1], to).await;
        until("a new connection is accepted", || open() == 1).await;

        // A stream that is not RFC 4571 ICE-TCP (a zero length) is closed at once.
        let mut garbage = tcp_from([127, 0, 0, 4], to).await;
        tokio::io::AsyncWriteExt::write_all(&mut garbage, &[0, 0, 1, 2])
            .await
            .unwrap();
        assert!(closed_within(&mut garbage, Duration::from_millis(900)).await);
    }

    #[test]
    fn a_wildcard_bind_announces_a_real_address() {
        let ip = announced_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(!ip.is_unspecified());
        assert_eq!(
            announced_ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
        );
    }
}
