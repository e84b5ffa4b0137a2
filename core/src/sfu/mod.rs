//! The media plane: a selective forwarding unit on one UDP port and one TCP port.
//!
//! [`engine::Engine`] is a synchronous state machine (webrtc-rs's sans-IO `rtc`
//! peer connections plus Confab's forwarding); this module runs it. A UDP reader
//! thread and a TCP acceptor (with a reader and a writer thread per ICE-TCP
//! connection) turn sockets into [`Input`]s on one bounded channel; the engine
//! thread applies them, runs timers, and writes what the engine wants sent. The
//! control plane reaches it only through [`MediaHandle::send`], which never waits.

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

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bytes::BytesMut;

pub use engine::{CallKey, Command, MAX_SDP_BYTES};
use engine::{Engine, EngineConfig, Protocol4, Route};
use udp_batch::SendBatch;

use crate::config::MediaConfig;

/// Inputs waiting for the engine thread; beyond this, sockets wait and commands fail.
const INPUT_QUEUE: usize = 8192;
/// Frames waiting for one slow ICE-TCP client before new ones are dropped.
const TCP_OUTBOX: usize = 1024;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 1500;
/// How often blocked socket threads look up to notice shutdown.
const POLL: Duration = Duration::from_millis(250);

enum Input {
    Datagram(Route, BytesMut),
    Command(Command),
    TcpOpened(Route, SyncSender<BytesMut>),
    TcpClosed(Route),
    Shutdown,
}

/// Counters the engine thread publishes.
#[derive(Debug, Default)]
pub struct MediaStats {
    pub packets_in: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub peer_connections: AtomicU64,
}

/// The control plane's side of the media plane. Cheap to clone.
#[derive(Clone)]
pub struct MediaHandle {
    inner: Arc<Inner>,
}

struct Inner {
    input: SyncSender<Input>,
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
        let (input, inputs) = sync_channel(INPUT_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(MediaStats::default());
        let udp_send = match &udp {
            Some(socket) => Some(socket.try_clone()?),
            None => None,
        };
        if let (Some(socket), Some(local)) = (udp, udp_local) {
            socket.set_read_timeout(Some(POLL))?;
            let input = input.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("media-udp".into())
                .spawn(move || udp_reader(socket, local, input, stop))?;
        }
        if let (Some(listener), Some(local)) = (tcp, tcp_local) {
            listener.set_nonblocking(true)?;
            let input = input.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("media-tcp".into())
                .spawn(move || tcp_acceptor(listener, local, input, stop))?;
        }
        let engine = Engine::new(EngineConfig {
            udp: udp_local,
            tcp: tcp_local,
            announce,
        });
        {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("media-engine".into())
                .spawn(move || run_engine(engine, inputs, udp_send, stats))?;
        }
        tracing::info!(udp = ?udp_local, tcp = ?tcp_local, "media ports open");
        Ok(Self {
            inner: Arc::new(Inner {
                input,
                stop,
                udp: udp_local,
                tcp: tcp_local,
                stats,
            }),
        })
    }

    /// Hands a command to the media plane without waiting.
    pub fn send(&self, command: Command) -> Result<(), Busy> {
        match self.inner.input.try_send(Input::Command(command)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Starts keeping a copy of every payload this node forwards (tests only).
    #[cfg(feature = "test-tap")]
    pub fn tap(&self) -> Result<tap::Tap, Busy> {
        let tap = tap::Tap::default();
        self.send(Command::Tap(tap.clone()))?;
        Ok(tap)
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
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.input.try_send(Input::Shutdown);
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

fn run_engine(
    mut engine: Engine,
    inputs: Receiver<Input>,
    udp: Option<UdpSocket>,
    stats: Arc<MediaStats>,
) {
    let mut tcp_writers: std::collections::HashMap<Route, SyncSender<BytesMut>> =
        std::collections::HashMap::new();
    let mut batch = SendBatch::default();
    loop {
        let now = Instant::now();
        let wait = engine
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1));
        let first = match inputs.recv_timeout(wait) {
            Ok(input) => Some(input),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut next = first;
        // Take whatever else is queued before looking at timers again.
        let mut budget = 256;
        while let Some(input) = next.take() {
            let now = Instant::now();
            match input {
                Input::Datagram(route, data) => engine.handle_datagram(now, route, data),
                Input::Command(command) => engine.handle_command(now, command),
                Input::TcpOpened(route, writer) => {
                    tcp_writers.insert(route, writer);
                }
                Input::TcpClosed(route) => {
                    tcp_writers.remove(&route);
                    engine.handle_route_closed(route);
                }
                Input::Shutdown => return,
            }
            budget -= 1;
            if budget > 0 {
                next = inputs.try_recv().ok();
            }
            transmit(&mut engine, udp.as_ref(), &tcp_writers, &mut batch);
        }
        let now = Instant::now();
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now);
            transmit(&mut engine, udp.as_ref(), &tcp_writers, &mut batch);
        }
        if let Some(socket) = udp.as_ref() {
            batch.flush(socket);
        }
        let s = engine.stats();
        stats.packets_in.store(s.packets_in, Ordering::Relaxed);
        stats
            .packets_forwarded
            .store(s.packets_forwarded, Ordering::Relaxed);
        stats
            .peer_connections
            .store(s.peers as u64, Ordering::Relaxed);
    }
}

/// Sends what the engine has to send: TCP frames to their connections' writers,
/// UDP into the batch (sent when it fills up or the burst of input ends).
fn transmit(
    engine: &mut Engine,
    udp: Option<&UdpSocket>,
    tcp: &std::collections::HashMap<Route, SyncSender<BytesMut>>,
    batch: &mut SendBatch,
) {
    while let Some(t) = engine.poll_transmit() {
        match t.route.protocol {
            Protocol4::Udp => {
                if let Some(socket) = udp {
                    batch.push(socket, t.route.peer, t.data);
                }
            }
            Protocol4::Tcp => {
                if let Some(writer) = tcp.get(&t.route) {
                    // A full queue means a stalled client: drop, as a network would.
                    let _ = writer.try_send(t.data);
                }
            }
        }
    }
}

fn udp_reader(
    socket: UdpSocket,
    local: SocketAddr,
    input: SyncSender<Input>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let route = Route {
                    protocol: Protocol4::Udp,
                    local,
                    peer,
                };
                if input
                    .send(Input::Datagram(route, BytesMut::from(&buf[..n])))
                    .is_err()
                {
                    return;
                }
            }
            Err(err) if read_timed_out(&err) => {}
            // ICMP port unreachable and the like surface here on some systems.
            Err(err) => tracing::trace!(error = %err, "UDP receive error"),
        }
    }
}

fn tcp_acceptor(
    listener: TcpListener,
    local: SocketAddr,
    input: SyncSender<Input>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let route = Route {
                    protocol: Protocol4::Tcp,
                    local,
                    peer,
                };
                if let Err(err) = serve_tcp(stream, route, input.clone(), stop.clone()) {
                    tracing::debug!(error = %err, "ICE-TCP connection failed");
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(err) => {
                tracing::debug!(error = %err, "ICE-TCP accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Starts a reader and a writer thread for one ICE-TCP connection (RFC 4571 framing:
/// each packet preceded by its 16-bit length).
fn serve_tcp(
    stream: TcpStream,
    route: Route,
    input: SyncSender<Input>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut writer_stream = stream.try_clone()?;
    let (frames, outbox) = sync_channel::<BytesMut>(TCP_OUTBOX);
    if input.send(Input::TcpOpened(route, frames)).is_err() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("media-tcp-w".into())
        .spawn(move || {
            let mut framed = Vec::with_capacity(MAX_DATAGRAM + 2);
            while let Ok(data) = outbox.recv() {
                let Ok(len) = u16::try_from(data.len()) else {
                    continue;
                };
                framed.clear();
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&data);
                if writer_stream.write_all(&framed).is_err() {
                    break;
                }
            }
            let _ = writer_stream.shutdown(std::net::Shutdown::Both);
        })?;
    std::thread::Builder::new()
        .name("media-tcp-r".into())
        .spawn(move || {
            let mut stream = stream;
            let mut decoder = FrameDecoder::default();
            let mut buf = [0u8; 4096];
            'read: while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        decoder.extend(&buf[..n]);
                        loop {
                            match decoder.next_frame() {
                                Ok(Some(frame)) => {
                                    if input.send(Input::Datagram(route, frame)).is_err() {
                                        break 'read;
                                    }
                                }
                                Ok(None) => break,
                                Err(()) => break 'read,
                            }
                        }
                    }
                    Err(err) if read_timed_out(&err) => {}
                    Err(_) => break,
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = input.send(Input::TcpClosed(route));
        })?;
    Ok(())
}

/// A blocking read gave up for its timeout (or a signal): not an error, look again.
fn read_timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Splits an RFC 4571 byte stream into packets.
#[derive(Default)]
struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
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
