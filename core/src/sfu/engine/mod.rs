//! The SFU's sans-IO core: every peer connection of every call on this node, behind
//! one state machine. Socket threads feed it datagrams and take [`Transmit`]s; the
//! control plane feeds it [`MediaCommand`]s; time is always an argument.
//!
//! Each participant has up to two peer connections (as LiveKit does): a *publish*
//! connection the browser offers and the server answers, carrying what the browser
//! sends, and a *subscribe* connection the server offers, carrying everyone else.
//! Only the server renegotiates the subscribe connection, so offers never collide.
//!
//! Incoming packets are routed by 5-tuple once a STUN binding request has named the
//! connection by its ICE username fragment; until then they are dropped.
//!
//! The engine does no I/O: what it has to send comes out of
//! [`Engine::poll_transmit`], what it has to tell browsers out of
//! [`Engine::poll_event`], and its randomness comes in through [`Engine::new`].
//!
//! This file keeps the public surface (commands, events, the step functions); the
//! rest is split by concern:
//! - `path`: routes learnt from connectivity checks, following a browser that moved;
//! - `peer`: building a peer connection and draining what `rtc` has to say;
//! - `negotiate`: publish and subscribe offers and answers, who receives what;
//! - `fanout`: forwarding packets, simulcast layer choice, keyframes, speakers;
//! - `room`: a call's media state (members, their bindings, published tracks).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::{
    NackGeneratorBuilder, NackResponderBuilder, ReceiverReportBuilder, Registry,
    SenderReportBuilder, Slot, TwccReceiverBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::sync::Arc;

use rand::rngs::StdRng;

use super::allocate::{self, Demand, Downlink, LayerMeter};
use super::feedback;
use super::forward::{
    LayerForwarder, MAX_LAYERS, PacketDecision, Rewriter, VideoCodec, starts_keyframe,
};
use super::speaker::{SpeakerDetector, audio_level};

mod fanout;
mod negotiate;
mod path;
mod peer;
mod room;

use self::fanout::*;
use self::negotiate::*;
pub(crate) use self::path::stun_username;
use self::path::*;
use self::peer::*;
use self::room::*;

/// The RFC 6464 audio level extension.
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Keyframe requests to one publisher layer are spaced at least this far apart.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(300);
/// How long after subscribing a subscriber gets periodic keyframes, and how often.
const WARMUP: Duration = Duration::from_secs(8);
const WARMUP_INTERVAL: Duration = Duration::from_secs(1);
/// RTP header bytes counted with each payload when measuring rates.
const RTP_HEADER_BYTES: usize = 12;
/// Packets each forwarded stream keeps for retransmission on a NACK (a power of
/// two): 1.4 s of the largest layer, 5 s of audio. Browsers stop asking for a
/// packet well within that; the library's default (1,024) held 20 s of audio per
/// stream per subscriber.
const NACK_HISTORY: u16 = 256;
/// A simulcast layer silent this long counts as paused.
const LAYER_IDLE: Duration = Duration::from_millis(1000);
/// How often the active speaker is re-evaluated.
const SPEAKER_INTERVAL: Duration = Duration::from_millis(200);
/// A peer connection that never connects is dropped after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest SDP accepted from a client.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Tracks (audio, camera, screen) one participant may publish.
const MAX_PUBLISHED_TRACKS: usize = 4;

/// A call on this node, by its link's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub i64);

impl std::fmt::Display for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the media plane tells one participant's browser; signaling turns each into
/// its message (`From<MediaEvent> for ServerMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The answer to the participant's publish offer.
    PublishAnswer { sdp: String },
    /// An offer for the participant's subscribe connection.
    SubscribeOffer { sdp: String },
    /// Who is speaking now.
    ActiveSpeaker { participant: u32 },
    /// The participant's SDP could not be used (why, for the page).
    BadSdp(String),
    /// Media stopped after an error on the server (what the page says).
    Failed(String),
}

/// Where a participant's [`MediaEvent`]s go: its signaling connection. `deliver`
/// never blocks the engine; it says whether the event was taken.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    fn deliver(&self, event: MediaEvent) -> bool;
}

/// A participant's [`EventSink`].
pub type Events = Arc<dyn EventSink>;

/// What the control plane asks of the media plane.
#[derive(Debug)]
pub enum MediaCommand {
    /// A participant's offer for its publish connection (first, renegotiated, or
    /// after a reconnect with fresh ICE credentials).
    Publish {
        call: CallKey,
        participant: u32,
        offer: String,
        /// Where the participant's browser is told about answers, offers and speakers.
        events: Events,
    },
    /// A participant that publishes nothing asks to receive the others: its
    /// subscribe connection starts (over, if it had one).
    Subscribe {
        call: CallKey,
        participant: u32,
        events: Events,
    },
    /// The browser's answer to the last subscribe offer.
    SubscribeAnswer {
        call: CallKey,
        participant: u32,
        answer: String,
        /// Where a refusal goes (the participant may not have published yet).
        events: Events,
    },
    /// The participant asks for a lower or higher quality of one publisher's video.
    SetQuality {
        call: CallKey,
        participant: u32,
        publisher: u32,
        layer: usize,
    },
    /// The participant started or stopped sharing its screen. Browsers keep the
    /// screen's media section negotiated and only swap its track, so this, not a
    /// renegotiation, is what shows or hides the screen to the others.
    Sharing {
        call: CallKey,
        participant: u32,
        screen: bool,
    },
    /// Stop (or restart) forwarding everything the participant publishes: its
    /// packets are dropped on arrival, still encrypted, and nobody receives them.
    Suspend {
        call: CallKey,
        participant: u32,
        suspended: bool,
    },
    /// The participant is no longer on the call: close its connections.
    Leave { call: CallKey, participant: u32 },
    /// From now on, keep a copy of every payload forwarded (tests only).
    #[cfg(feature = "test-tap")]
    Tap(super::tap::Tap),
    /// Panic while working on `call`, as a bug would; with `teardown`, tearing
    /// the call down panics too (tests only).
    #[cfg(any(test, feature = "test-tap"))]
    Fail { call: CallKey, teardown: bool },
}

impl MediaCommand {
    /// The call the command is about.
    pub fn call(&self) -> Option<CallKey> {
        match self {
            MediaCommand::Publish { call, .. }
            | MediaCommand::Subscribe { call, .. }
            | MediaCommand::SubscribeAnswer { call, .. }
            | MediaCommand::SetQuality { call, .. }
            | MediaCommand::Sharing { call, .. }
            | MediaCommand::Suspend { call, .. }
            | MediaCommand::Leave { call, .. } => Some(*call),
            #[cfg(any(test, feature = "test-tap"))]
            MediaCommand::Fail { call, .. } => Some(*call),
            #[cfg(feature = "test-tap")]
            MediaCommand::Tap(_) => None,
        }
    }
}

/// Where a datagram came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub protocol: MediaTransport,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// The two transports media may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaTransport {
    Udp,
    Tcp,
}

/// A datagram (or, for TCP, one RFC 4571 frame) to send.
#[derive(Debug)]
pub struct Transmit {
    pub route: Route,
    pub data: BytesMut,
}

impl From<TaggedBytesMut> for Transmit {
    fn from(out: TaggedBytesMut) -> Self {
        Transmit {
            route: Route {
                protocol: match out.transport.transport_protocol {
                    TransportProtocol::TCP => MediaTransport::Tcp,
                    _ => MediaTransport::Udp,
                },
                local: out.transport.local_addr,
                peer: out.transport.peer_addr,
            },
            data: out.message,
        }
    }
}

/// Where the engine's sockets are and what it tells browsers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// Addresses put in candidates, each with the ports above.
    pub announce: Vec<IpAddr>,
    /// Which of the node's engine threads this is: the first character of every
    /// ICE username fragment it makes names it ([`shard_of_ufrag`]), so that a
    /// connectivity check finds its engine.
    pub shard: usize,
    /// Keep the routes learned and forgotten for [`Engine::poll_route_change`]
    /// (a node with several engines steers datagrams by them).
    pub report_routes: bool,
}

/// The characters that start ICE username fragments, one per engine thread.
const SHARD_MARKS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Engine threads a node can have: one per character that can start an ICE
/// username fragment.
pub const MAX_SHARDS: usize = SHARD_MARKS.len();

/// The engine thread whose connection has this local ICE username fragment.
pub fn shard_of_ufrag(ufrag: &str) -> Option<usize> {
    let first = *ufrag.as_bytes().first()?;
    SHARD_MARKS.iter().position(|&m| m == first)
}

/// A route an engine started or stopped taking datagrams from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChange {
    pub route: Route,
    pub known: bool,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub packets_in: u64,
    pub packets_forwarded: u64,
    pub peers: usize,
    /// Steps that panicked (each contained to its call, or not attributable).
    pub panics: u64,
}

/// How a [`Engine::guarded`] step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Done,
    /// It panicked while working on this call; the call's media was torn down and
    /// its people told, and the rest of the node goes on.
    Contained(CallKey),
    /// It panicked outside any one call; nothing was torn down.
    Unattributed,
    /// Tearing the call down panicked too: the engine can no longer be trusted.
    Broken,
}

/// The media plane of one node.
pub struct Engine {
    config: EngineConfig,
    peers: HashMap<PeerKey, Peer>,
    by_ufrag: HashMap<String, PeerKey>,
    by_route: HashMap<Route, PeerKey>,
    /// Changes to `by_route`, when the config asks for them.
    route_changes: VecDeque<RouteChange>,
    rooms: HashMap<CallKey, Room>,
    transmits: VecDeque<Transmit>,
    /// Events for browsers, until the driver takes them ([`Engine::poll_event`]).
    events: VecDeque<(Events, MediaEvent)>,
    /// Where the engine's own random values come from (ICE credentials).
    rng: StdRng,
    next_source: SourceId,
    next_speaker_check: Option<Instant>,
    stats: EngineStats,
    /// Reused between packets.
    scratch: Vec<(u32, rtp::Packet)>,
    /// The call the current step is about, for [`Engine::guarded`].
    working_on: Option<CallKey>,
    /// Make tearing a call down panic too (tests of a broken engine).
    #[cfg(any(test, feature = "test-tap"))]
    fail_teardown: bool,
    #[cfg(feature = "test-tap")]
    tap: Option<super::tap::Tap>,
}

impl Engine {
    /// An engine with nothing on it. `rng` makes its ICE credentials: seed it
    /// from the operating system (`StdRng::from_entropy()`), or with a fixed
    /// seed in tests.
    pub fn new(config: EngineConfig, rng: StdRng) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_route: HashMap::new(),
            route_changes: VecDeque::new(),
            rooms: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            next_source: 1,
            next_speaker_check: None,
            stats: EngineStats::default(),
            scratch: Vec::new(),
            working_on: None,
            #[cfg(any(test, feature = "test-tap"))]
            fail_teardown: false,
            #[cfg(feature = "test-tap")]
            tap: None,
        }
    }

    /// Runs one step (a datagram, a command, the timers) so that a panic in it,
    /// such as a bug reached by hostile input, costs only the call it was about:
    /// that call's peer connections and forwarding state are dropped, its people
    /// get `media_failed` (their pages start media again), and every other call on
    /// the node goes on. The state a panic leaves half-changed belongs to that
    /// call alone, which is why dropping all of it is safe.
    pub fn guarded(&mut self, step: impl FnOnce(&mut Self)) -> Step {
        self.working_on = None;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(self)));
        if ran.is_ok() {
            return Step::Done;
        }
        self.stats.panics += 1;
        let Some(call) = self.working_on.take() else {
            tracing::error!("the media engine panicked outside any call; going on");
            return Step::Unattributed;
        };
        tracing::error!(
            %call,
            "the media engine panicked; the call's media was reset"
        );
        let dropped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drop_call(call)));
        match dropped {
            Ok(()) => Step::Contained(call),
            Err(_) => Step::Broken,
        }
    }

    /// Forgets everything about `call`'s media and tells its people.
    fn drop_call(&mut self, call: CallKey) {
        #[cfg(any(test, feature = "test-tap"))]
        if self.fail_teardown {
            panic!("tearing down call {call} failed (test)");
        }
        let keys: Vec<PeerKey> = self
            .peers
            .keys()
            .filter(|k| k.call == call)
            .copied()
            .collect();
        for key in keys {
            if let Some(peer) = self.peers.remove(&key) {
                self.by_ufrag.remove(&peer.ufrag);
                for route in &peer.routes {
                    self.forget_route(route);
                }
            }
        }
        if let Some(room) = self.rooms.remove(&call) {
            for member in room.members.values() {
                let failed = MediaEvent::Failed(
                    "audio and video stopped after an error on the server; starting them again"
                        .into(),
                );
                self.events.push_back((member.events.clone(), failed));
            }
        }
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            peers: self.peers.len(),
            ..self.stats
        }
    }

    /// Queues `event` for a participant's browser.
    fn tell(&mut self, to: &Events, event: MediaEvent) {
        self.events.push_back((to.clone(), event));
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for a browser, with where it goes: the driver hands it to
    /// the sink (and counts it if the sink does not take it).
    pub fn poll_event(&mut self) -> Option<(Events, MediaEvent)> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.deadline)
            .chain(self.next_speaker_check)
            .min()
    }

    /// Runs timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(PeerKey, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now) || p.stale(now))
            .map(|(k, p)| (*k, p.stale(now)))
            .collect();
        for (key, stale) in due {
            self.working_on = Some(key.call);
            if stale {
                tracing::info!(
                    call = %key.call,
                    participant = key.participant,
                    "media connection never came up"
                );
                self.close_peer(key);
                self.sync_subscriptions(now, key.call);
                continue;
            }
            if let Some(peer) = self.peers.get_mut(&key)
                && let Err(err) = peer.pc.handle_timeout(now)
            {
                tracing::debug!(error = %err, "peer timeout");
            }
            self.drain(key, now);
        }
        self.working_on = None;
        if self.next_speaker_check.is_some_and(|t| t <= now) {
            self.next_speaker_check = None;
            self.check_speakers(now);
        }
    }

    /// Handles one datagram from a socket.
    pub fn handle_datagram(&mut self, now: Instant, route: Route, data: BytesMut) {
        self.stats.packets_in += 1;
        let key = match self.by_route.get(&route) {
            Some(key) => *key,
            None => {
                let Some(key) = stun_username(&data)
                    .and_then(|ufrag| self.by_ufrag.get(ufrag))
                    .copied()
                else {
                    tracing::trace!(route = ?route, len = data.len(), first = data.first().copied(), "datagram from an unknown route");
                    return; // not ours, or not yet: ICE will retry
                };
                key
            }
        };
        self.working_on = Some(key.call);
        let Some(peer) = self.peers.get_mut(&key) else {
            self.forget_route(&route);
            return;
        };
        let stun = is_stun(&data);
        let seen = peer.path.incoming(route);
        let tagged = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: seen.local,
                peer_addr: seen.peer,
                ecn: None,
                transport_protocol: match seen.protocol {
                    MediaTransport::Udp => TransportProtocol::UDP,
                    MediaTransport::Tcp => TransportProtocol::TCP,
                },
            },
            message: data,
        };
        if let Err(err) = peer.pc.handle_read(tagged) {
            tracing::trace!(error = %err, "dropped an unreadable packet");
        }
        let authenticated = self.drain(key, now);
        if authenticated
            && !stun
            && let Some(peer) = self.peers.get_mut(&key)
            && peer.connected
            && peer.path.follow(route)
        {
            tracing::info!(
                call = %key.call,
                participant = key.participant,
                dir = ?key.dir,
                to = %route.peer,
                protocol = ?route.protocol,
                "media path moved"
            );
        }
    }

    /// The local ICE username fragments of the open peer connections (tests and
    /// fuzzing).
    #[doc(hidden)]
    pub fn ufrags(&self) -> impl Iterator<Item = &str> {
        self.by_ufrag.keys().map(String::as_str)
    }

    /// Routes recorded (tests).
    #[cfg(test)]
    pub fn route_count(&self) -> usize {
        self.by_route.len()
    }

    /// Whether packets from `route` reach a peer connection: it passed a
    /// connectivity check and its peer connection is still open.
    pub fn knows_route(&self, route: &Route) -> bool {
        self.by_route.contains_key(route)
    }

    /// The next route this engine started or stopped taking datagrams from (only
    /// with [`EngineConfig::report_routes`]). Take them after every step, before
    /// sending what the step produced: the answer to a connectivity check must not
    /// reach a browser before the route it came from is known.
    pub fn poll_route_change(&mut self) -> Option<RouteChange> {
        self.route_changes.pop_front()
    }

    fn remember_route(&mut self, route: Route, key: PeerKey) {
        if self.by_route.insert(route, key).is_none() && self.config.report_routes {
            self.route_changes
                .push_back(RouteChange { route, known: true });
        }
    }

    fn forget_route(&mut self, route: &Route) -> Option<PeerKey> {
        let key = self.by_route.remove(route);
        if key.is_some() && self.config.report_routes {
            self.route_changes.push_back(RouteChange {
                route: *route,
                known: false,
            });
        }
        key
    }

    /// A TCP connection closed: forget its route.
    pub fn handle_route_closed(&mut self, route: Route) {
        if let Some(key) = self.forget_route(&route)
            && let Some(peer) = self.peers.get_mut(&key)
        {
            peer.routes.retain(|r| *r != route);
            if peer.path.moved == Some(route) {
                peer.path.moved = None;
            }
        }
    }

    /// Carries out a control-plane command.
    pub fn handle_command(&mut self, now: Instant, command: MediaCommand) {
        self.working_on = command.call();
        match command {
            MediaCommand::Publish {
                call,
                participant,
                offer,
                events,
            } => {
                if let Err(message) = self.publish(now, call, participant, offer, events.clone()) {
                    self.tell(&events, MediaEvent::BadSdp(message.to_string()));
                }
            }
            MediaCommand::Subscribe {
                call,
                participant,
                events,
            } => self.subscribe_only(now, call, participant, events),
            MediaCommand::SubscribeAnswer {
                call,
                participant,
                answer,
                events,
            } => {
                if let Err(message) = self.subscribe_answer(now, call, participant, answer) {
                    self.tell(&events, MediaEvent::BadSdp(message.to_string()));
                }
            }
            MediaCommand::SetQuality {
                call,
                participant,
                publisher,
                layer,
            } => self.set_quality(now, call, participant, publisher, layer),
            MediaCommand::Sharing {
                call,
                participant,
                screen,
            } => self.set_sharing(now, call, participant, screen),
            MediaCommand::Suspend {
                call,
                participant,
                suspended,
            } => self.set_suspended(now, call, participant, suspended),
            MediaCommand::Leave { call, participant } => self.leave(now, call, participant),
            #[cfg(any(test, feature = "test-tap"))]
            MediaCommand::Fail { call, teardown } => {
                self.fail_teardown = teardown;
                panic!("a step for call {call} failed (test)");
            }
            #[cfg(feature = "test-tap")]
            MediaCommand::Tap(tap) => self.tap = Some(tap),
        }
    }

    fn member_mut(&mut self, call: CallKey, participant: u32) -> Option<&mut Member> {
        self.rooms.get_mut(&call)?.members.get_mut(&participant)
    }
}
