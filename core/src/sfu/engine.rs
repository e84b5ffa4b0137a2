//! The SFU's sans-IO core: every peer connection of every call on this node, behind
//! one state machine. Socket threads feed it datagrams and take [`Transmit`]s; the
//! control plane feeds it [`Command`]s; time is always an argument.
//!
//! Each participant has up to two peer connections (as LiveKit does): a *publish*
//! connection the browser offers and the server answers, carrying what the browser
//! sends, and a *subscribe* connection the server offers, carrying everyone else.
//! Only the server renegotiates the subscribe connection, so offers never collide.
//!
//! Incoming packets are routed by 5-tuple once a STUN binding request has named the
//! connection by its ICE username fragment; until then they are dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
    configure_twcc_receiver_only,
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

use super::allocate::{self, Demand, Downlink, LayerMeter};
use super::feedback;
use super::forward::{
    LayerForwarder, MAX_LAYERS, PacketDecision, Rewriter, VideoCodec, starts_keyframe,
};
use super::speaker::{SpeakerDetector, audio_level};

/// The RFC 6464 audio level extension.
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Keyframe requests to one publisher layer are spaced at least this far apart.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(300);
/// How long after subscribing a subscriber gets periodic keyframes, and how often.
const WARMUP: Duration = Duration::from_secs(8);
const WARMUP_INTERVAL: Duration = Duration::from_secs(1);
/// RTP header bytes counted with each payload when measuring rates.
const RTP_HEADER_BYTES: usize = 12;
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
pub type CallKey = i64;

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
pub enum Command {
    /// A participant's offer for its publish connection (first, renegotiated, or
    /// after a reconnect with fresh ICE credentials).
    Publish {
        call: CallKey,
        participant: u32,
        offer: String,
        /// Where the participant's browser is told about answers, offers and speakers.
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

impl Command {
    /// The call the command is about.
    fn call(&self) -> Option<CallKey> {
        match self {
            Command::Publish { call, .. }
            | Command::SubscribeAnswer { call, .. }
            | Command::SetQuality { call, .. }
            | Command::Sharing { call, .. }
            | Command::Leave { call, .. } => Some(*call),
            #[cfg(any(test, feature = "test-tap"))]
            Command::Fail { call, .. } => Some(*call),
            #[cfg(feature = "test-tap")]
            Command::Tap(_) => None,
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
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub packets_in: u64,
    pub packets_forwarded: u64,
    pub peers: usize,
    /// Steps that panicked (each contained to its call, or not attributable).
    pub panics: u64,
    /// Media events a participant's connection did not take (its queue was full
    /// or it had closed).
    pub events_dropped: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Dir {
    Publish,
    Subscribe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerKey {
    call: CallKey,
    participant: u32,
    dir: Dir,
}

struct Peer {
    pc: RTCPeerConnection,
    ufrag: String,
    routes: Vec<Route>,
    deadline: Option<Instant>,
    created: Instant,
    connected: bool,
    path: Path,
}

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
struct Path {
    /// The route `rtc` sends media on (its selected pair).
    selected: Option<Route>,
    /// The route the browser uses now, when not `selected`.
    moved: Option<Route>,
    /// The last few routes `rtc` answered a binding request on (a browser checks
    /// several pairs in turn).
    checked: [Option<Route>; CHECKED_ROUTES],
    /// Where the next one goes in `checked`.
    next_checked: usize,
    /// Routes `rtc` answered a binding request on, or sent one to, since the
    /// engine last recorded them (see [`Engine::record_route`]).
    verified: Vec<Route>,
}

/// Routes remembered as checked per connection.
const CHECKED_ROUTES: usize = 4;

/// Routes kept per connection (a browser checks a few candidate pairs, and moves
/// when its network changes); the oldest goes first.
const MAX_ROUTES: usize = 8;

/// RFC 7983: the first byte of a datagram tells STUN (0-3) from DTLS (20-63) and
/// RTP/RTCP (128-191).
fn is_stun(data: &[u8]) -> bool {
    data.first().is_some_and(|b| *b < 4)
}

/// A STUN Binding success response (type 0x0101).
fn is_binding_success(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] == 0x01 && data[1] == 0x01
}

/// A STUN Binding request (type 0x0001).
fn is_binding_request(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] == 0x00 && data[1] == 0x01
}

impl Path {
    /// What `rtc` wants sent, aimed at where the browser is now.
    fn outgoing(&mut self, out: TaggedBytesMut, connected: bool) -> Transmit {
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
    fn incoming(&self, route: Route) -> Route {
        match (self.moved, self.selected) {
            (Some(moved), Some(selected)) if moved == route => selected,
            _ => route,
        }
    }

    /// A datagram from `route` carried SRTP or SRTCP that `rtc` authenticated: if
    /// the browser has moved there (and the route passed a check), follow it. True
    /// on a move.
    fn follow(&mut self, route: Route) -> bool {
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

type SourceId = u64;

/// One track a participant publishes (with its simulcast layers).
struct PublishedTrack {
    owner: u32,
    kind: RtpCodecKind,
    /// Stream id shown to subscribers: `p{owner}-{n}`.
    stream: String,
    /// The owner's second video track: its screen.
    screen: bool,
    track: String,
    codec: RTCRtpCodec,
    video: VideoCodec,
    receiver: RTCRtpReceiverId,
    /// SSRC per layer (index = layer), filled as layers start.
    layers: [Option<u32>; MAX_LAYERS],
    audio_level_ext: Option<u8>,
    last_keyframe_request: [Option<Instant>; MAX_LAYERS],
    /// When each layer last sent a packet: browsers pause upper layers when their
    /// bandwidth estimate drops, and viewers must then be moved down.
    last_seen: [Option<Instant>; MAX_LAYERS],
    /// What each layer really sends, for bandwidth allocation.
    meter: LayerMeter,
}

/// One source as seen by one subscriber.
struct Binding {
    sender: RTCRtpSenderId,
    ssrc: u32,
    /// Known once the subscriber answered.
    payload_type: Option<u8>,
    video: Option<LayerForwarder>,
    audio: Rewriter,
    /// When forwarding to this subscriber could start, and when a warm-up keyframe
    /// was last requested for it (see [`WARMUP`]).
    ready_at: Option<Instant>,
    last_warmup: Option<Instant>,
}

struct Member {
    events: Events,
    bindings: BTreeMap<SourceId, Binding>,
    /// Preferred layer per publisher (from `SetQuality`), else the best.
    quality: HashMap<u32, usize>,
    negotiating: bool,
    renegotiate: bool,
    /// Whether this participant's screen track is shown to the others (see
    /// [`Command::Sharing`]); until a client says otherwise, a screen track that
    /// sends is shown.
    sharing_screen: bool,
    /// The subscriber's downlink estimate, and the layer caps it led to.
    downlink: Downlink,
    caps: HashMap<SourceId, usize>,
}

impl Member {
    /// The layer this subscriber should get from a source: what its tile asks for,
    /// within what its downlink carries.
    fn wanted(&self, source_id: SourceId, owner: u32) -> usize {
        wanted_within_caps(&self.quality, &self.caps, source_id, owner)
    }
}

/// What a subscriber's tile asks of `owner`'s camera (the best, unless it said less).
fn asked_layer(quality: &HashMap<u32, usize>, owner: u32) -> usize {
    quality.get(&owner).copied().unwrap_or(MAX_LAYERS - 1)
}

/// [`Member::wanted`] on the member's fields, for callers holding one of its bindings.
fn wanted_within_caps(
    quality: &HashMap<u32, usize>,
    caps: &HashMap<SourceId, usize>,
    source_id: SourceId,
    owner: u32,
) -> usize {
    asked_layer(quality, owner).min(caps.get(&source_id).copied().unwrap_or(MAX_LAYERS - 1))
}

#[derive(Default)]
struct Room {
    members: BTreeMap<u32, Member>,
    sources: BTreeMap<SourceId, PublishedTrack>,
    /// (publisher, SSRC) → (source, layer).
    by_ssrc: HashMap<(u32, u32), (SourceId, usize)>,
    speakers: SpeakerDetector,
}

/// The media plane of one node.
pub struct Engine {
    config: EngineConfig,
    peers: HashMap<PeerKey, Peer>,
    by_ufrag: HashMap<String, PeerKey>,
    by_route: HashMap<Route, PeerKey>,
    rooms: HashMap<CallKey, Room>,
    transmits: VecDeque<Transmit>,
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
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_route: HashMap::new(),
            rooms: HashMap::new(),
            transmits: VecDeque::new(),
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
            call,
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
                    self.by_route.remove(route);
                }
            }
        }
        if let Some(room) = self.rooms.remove(&call) {
            for member in room.members.values() {
                let failed = MediaEvent::Failed(
                    "audio and video stopped after an error on the server; starting them again"
                        .into(),
                );
                if !member.events.deliver(failed) {
                    self.stats.events_dropped += 1;
                }
            }
        }
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            peers: self.peers.len(),
            ..self.stats
        }
    }

    /// Tells a participant's browser `event`, counting it if it was not taken.
    fn tell(&mut self, to: &Events, event: MediaEvent) {
        if !to.deliver(event) {
            self.stats.events_dropped += 1;
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
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
                    call = key.call,
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
            self.by_route.remove(&route);
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
                call = key.call,
                participant = key.participant,
                dir = ?key.dir,
                to = %route.peer,
                protocol = ?route.protocol,
                "media path moved"
            );
        }
    }

    /// Keeps `route` for the peer `key` once `rtc` answered a binding request on it
    /// (which it does only when the request carries the right credentials) or sent
    /// its own check there (only towards candidates the browser signalled or that
    /// passed such a request): a username alone, which anyone who saw it can send
    /// from any port, records nothing. A peer keeps its [`MAX_ROUTES`] latest routes
    /// (and always the one `rtc` selected).
    fn record_route(&mut self, key: PeerKey, route: Route) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if self.by_route.contains_key(&route) {
            return;
        }
        if peer.routes.len() >= MAX_ROUTES
            && let Some(at) = peer
                .routes
                .iter()
                .position(|r| peer.path.selected != Some(*r))
        {
            let oldest = peer.routes.remove(at);
            self.by_route.remove(&oldest);
            if peer.path.moved == Some(oldest) {
                peer.path.moved = None;
            }
        }
        tracing::trace!(call = key.call, participant = key.participant, dir = ?key.dir, route = ?route, "route recorded");
        peer.routes.push(route);
        self.by_route.insert(route, key);
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

    /// A TCP connection closed: forget its route.
    pub fn handle_route_closed(&mut self, route: Route) {
        if let Some(key) = self.by_route.remove(&route)
            && let Some(peer) = self.peers.get_mut(&key)
        {
            peer.routes.retain(|r| *r != route);
            if peer.path.moved == Some(route) {
                peer.path.moved = None;
            }
        }
    }

    /// Carries out a control-plane command.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.working_on = command.call();
        match command {
            Command::Publish {
                call,
                participant,
                offer,
                events,
            } => {
                if let Err(message) = self.publish(now, call, participant, offer, events.clone()) {
                    self.tell(&events, MediaEvent::BadSdp(message));
                }
            }
            Command::SubscribeAnswer {
                call,
                participant,
                answer,
                events,
            } => {
                if let Err(message) = self.subscribe_answer(now, call, participant, answer) {
                    self.tell(&events, MediaEvent::BadSdp(message));
                }
            }
            Command::SetQuality {
                call,
                participant,
                publisher,
                layer,
            } => self.set_quality(now, call, participant, publisher, layer),
            Command::Sharing {
                call,
                participant,
                screen,
            } => self.set_sharing(now, call, participant, screen),
            Command::Leave { call, participant } => self.leave(now, call, participant),
            #[cfg(any(test, feature = "test-tap"))]
            Command::Fail { call, teardown } => {
                self.fail_teardown = teardown;
                panic!("a step for call {call} failed (test)");
            }
            #[cfg(feature = "test-tap")]
            Command::Tap(tap) => self.tap = Some(tap),
        }
    }

    /// Shows or hides a participant's screen track to everyone else.
    fn set_sharing(&mut self, now: Instant, call: CallKey, participant: u32, screen: bool) {
        let Some(member) = self.member_mut(call, participant) else {
            return;
        };
        if member.sharing_screen == screen {
            return;
        }
        member.sharing_screen = screen;
        self.sync_subscriptions(now, call);
        self.request_owed_keyframes(now, call);
    }

    fn member_mut(&mut self, call: CallKey, participant: u32) -> Option<&mut Member> {
        self.rooms.get_mut(&call)?.members.get_mut(&participant)
    }

    fn publish(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        offer: String,
        events: Events,
    ) -> Result<(), String> {
        if offer.len() > MAX_SDP_BYTES {
            return Err(format!("SDP is limited to {MAX_SDP_BYTES} bytes"));
        }
        let description = RTCSessionDescription::offer(offer.clone())
            .map_err(|e| format!("not an SDP offer: {e}"))?;
        let media_sections = offer.lines().filter(|l| l.starts_with("m=")).count();
        if media_sections > MAX_PUBLISHED_TRACKS {
            return Err(format!(
                "publish at most {MAX_PUBLISHED_TRACKS} tracks (audio, camera, screen)"
            ));
        }
        let key = PeerKey {
            call,
            participant,
            dir: Dir::Publish,
        };
        let room = self.rooms.entry(call).or_default();
        let member = room.members.entry(participant).or_insert_with(|| Member {
            events: events.clone(),
            bindings: BTreeMap::new(),
            quality: HashMap::new(),
            negotiating: false,
            renegotiate: false,
            sharing_screen: true,
            downlink: Downlink::default(),
            caps: HashMap::new(),
        });
        member.events = events.clone();
        // Same ICE credentials: a renegotiation of the live connection. New ones: the
        // browser started over (reload, reconnect), so the old connections go.
        let renegotiation = self.peers.get(&key).is_some_and(|peer| {
            peer.pc
                .remote_description()
                .and_then(|d| sdp_value(&d.sdp, "a=ice-ufrag:"))
                .zip(sdp_value(&offer, "a=ice-ufrag:"))
                .is_some_and(|(a, b)| a == b)
        });
        tracing::debug!(call, participant, renegotiation, "publish offer");
        if !renegotiation {
            self.close_peer(key);
            self.close_peer(PeerKey {
                dir: Dir::Subscribe,
                ..key
            });
            let peer = self.new_peer(now, Dir::Publish)?;
            self.insert_peer(key, peer);
        }
        let peer = self.peers.get_mut(&key).ok_or("no connection")?;
        peer.pc
            .set_remote_description(now, description)
            .map_err(|e| format!("the offer was refused: {e}"))?;
        let answer = peer
            .pc
            .create_answer(None)
            .map_err(|e| format!("could not answer: {e}"))?;
        peer.pc
            .set_local_description(now, answer)
            .map_err(|e| format!("could not answer: {e}"))?;
        let sdp = peer
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or("could not answer")?;
        self.tell(&events, MediaEvent::PublishAnswer { sdp });
        // Tracks removed by the renegotiation stop being forwarded.
        self.prune_sources(now, call, participant, &offer);
        self.drain(key, now);
        // Whatever the others already publish, this participant now receives.
        self.sync_subscriptions(now, call);
        Ok(())
    }

    fn subscribe_answer(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        answer: String,
    ) -> Result<(), String> {
        if answer.len() > MAX_SDP_BYTES {
            return Err(format!("SDP is limited to {MAX_SDP_BYTES} bytes"));
        }
        let key = PeerKey {
            call,
            participant,
            dir: Dir::Subscribe,
        };
        let member = self
            .rooms
            .get_mut(&call)
            .and_then(|r| r.members.get_mut(&participant))
            .ok_or("publish first")?;
        if !member.negotiating {
            return Err("no subscribe offer is waiting for an answer".into());
        }
        let description =
            RTCSessionDescription::answer(answer).map_err(|e| format!("not an SDP answer: {e}"))?;
        let peer = self.peers.get_mut(&key).ok_or("no subscribe connection")?;
        peer.pc
            .set_remote_description(now, description)
            .map_err(|e| format!("the answer was refused: {e}"))?;
        member.negotiating = false;
        // Payload types are fixed now.
        let room = self.rooms.get_mut(&call).ok_or("no call")?;
        let member = room.members.get_mut(&participant).ok_or("no member")?;
        for (source_id, binding) in &mut member.bindings {
            let Some(source) = room.sources.get(source_id) else {
                continue;
            };
            binding.ready_at.get_or_insert(now);
            binding.payload_type = peer.pc.rtp_sender(binding.sender).and_then(|mut s| {
                s.get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| {
                        c.rtp_codec
                            .mime_type
                            .eq_ignore_ascii_case(&source.codec.mime_type)
                    })
                    .map(|c| c.payload_type)
            });
        }
        let again = std::mem::take(&mut member.renegotiate);
        tracing::debug!(call, participant, again, "subscribe answer applied");
        self.drain(key, now);
        if again {
            self.offer_subscriptions(now, call, participant);
        }
        // Video starts at a keyframe: ask for one now that the path exists.
        self.request_owed_keyframes(now, call);
        Ok(())
    }

    fn set_quality(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        publisher: u32,
        layer: usize,
    ) {
        let Some(room) = self.rooms.get_mut(&call) else {
            return;
        };
        let Some(member) = room.members.get_mut(&participant) else {
            return;
        };
        let layer = layer.min(MAX_LAYERS - 1);
        member.quality.insert(publisher, layer);
        for (source_id, binding) in &mut member.bindings {
            if let (Some(source), Some(forwarder)) =
                (room.sources.get(source_id), binding.video.as_mut())
                && source.owner == publisher
            {
                let cap = member
                    .caps
                    .get(source_id)
                    .copied()
                    .unwrap_or(MAX_LAYERS - 1);
                forwarder.set_target(best_layer(source, layer.min(cap)));
            }
        }
        self.request_owed_keyframes(now, call);
    }

    fn leave(&mut self, now: Instant, call: CallKey, participant: u32) {
        for dir in [Dir::Publish, Dir::Subscribe] {
            self.close_peer(PeerKey {
                call,
                participant,
                dir,
            });
        }
        let Some(room) = self.rooms.get_mut(&call) else {
            return;
        };
        room.members.remove(&participant);
        if room.members.is_empty() {
            self.rooms.remove(&call);
            return;
        }
        self.sync_subscriptions(now, call);
    }

    /// Builds a peer connection with Confab's codecs, interceptors and candidates.
    fn new_peer(&self, now: Instant, dir: Dir) -> Result<Peer, String> {
        let mut media = MediaEngine::default();
        register_codecs(&mut media).map_err(|e| e.to_string())?;
        let answering_role = match dir {
            // Receives simulcast: needs the mid and rid header extensions.
            Dir::Publish => {
                configure_simulcast_extension_headers(&mut media).map_err(|e| e.to_string())?;
                RTCDtlsRole::Server
            }
            // Sends one plain stream per track: a rid on those packets would make
            // browsers look for a simulcast stream that does not exist.
            Dir::Subscribe => RTCDtlsRole::Client,
        };
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(|e| e.to_string())?;
        let registry = configure_nack(Registry::new(), &mut media);
        let registry =
            configure_twcc_receiver_only(registry, &mut media).map_err(|e| e.to_string())?;
        let registry = configure_rtcp_reports(registry)
            .with(feedback::SLOT, feedback::FeedbackToApplication::default());
        let ufrag = random_token(16);
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_answering_dtls_role(answering_role)
            .with_ice_credentials(ufrag.clone(), random_token(32))
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| e.to_string())?;
        for ip in &self.config.announce {
            for (network, port) in [
                ("udp", self.config.udp.map(|a| a.port())),
                ("tcp", self.config.tcp.map(|a| a.port())),
            ] {
                let Some(port) = port else { continue };
                let base_config = CandidateConfig {
                    network: network.to_owned(),
                    address: ip.to_string(),
                    port,
                    component: 1,
                    ..Default::default()
                };
                let candidate = if network == "tcp" {
                    CandidateHostConfig {
                        base_config,
                        tcp_type: rtc::ice::tcp_type::TcpType::Passive,
                    }
                } else {
                    CandidateHostConfig {
                        base_config,
                        ..Default::default()
                    }
                }
                .new_candidate_host()
                .map_err(|e| e.to_string())?;
                let init = RTCIceCandidate::from(&candidate)
                    .to_json()
                    .map_err(|e| e.to_string())?;
                pc.add_local_candidate(init).map_err(|e| e.to_string())?;
            }
        }
        Ok(Peer {
            pc,
            ufrag,
            routes: Vec::new(),
            deadline: Some(now),
            created: now,
            connected: false,
            path: Path::default(),
        })
    }

    fn insert_peer(&mut self, key: PeerKey, peer: Peer) {
        self.by_ufrag.insert(peer.ufrag.clone(), key);
        self.peers.insert(key, peer);
    }

    /// Closes one connection and forgets what depended on it: a publish connection's
    /// sources, a subscribe connection's bindings. Callers re-sync subscriptions.
    fn close_peer(&mut self, key: PeerKey) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        let _ = peer.pc.close();
        self.by_ufrag.remove(&peer.ufrag);
        for route in &peer.routes {
            self.by_route.remove(route);
        }
        let Some(room) = self.rooms.get_mut(&key.call) else {
            return;
        };
        match key.dir {
            Dir::Publish => {
                room.sources.retain(|_, s| s.owner != key.participant);
                room.by_ssrc
                    .retain(|(owner, _), _| *owner != key.participant);
                room.speakers.remove(key.participant);
            }
            Dir::Subscribe => {
                if let Some(member) = room.members.get_mut(&key.participant) {
                    member.bindings.clear();
                    member.negotiating = false;
                    member.renegotiate = false;
                }
            }
        }
    }

    /// Takes everything a peer connection has to say: packets to send, events, media.
    /// True when it read RTP or RTCP (which `rtc` has authenticated).
    fn drain(&mut self, key: PeerKey, now: Instant) -> bool {
        let mut authenticated = false;
        let mut received = std::mem::take(&mut self.scratch);
        let mut rtcp_keyframe_requests: Vec<u32> = Vec::new();
        let mut remb: Option<u64> = None;
        let mut loss: Option<u8> = None;
        let mut opened = Vec::new();
        let mut failed = false;
        let mut came_up = false;
        let verified = {
            let Some(peer) = self.peers.get_mut(&key) else {
                self.scratch = received;
                return false;
            };
            loop {
                let mut progressed = false;
                while let Some(out) = peer.pc.poll_write() {
                    progressed = true;
                    let transmit = peer.path.outgoing(out, peer.connected);
                    self.transmits.push_back(transmit);
                }
                while let Some(event) = peer.pc.poll_event() {
                    progressed = true;
                    match event {
                        RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                            tracing::debug!(
                                call = key.call,
                                participant = key.participant,
                                dir = ?key.dir,
                                ?state,
                                "media connection state"
                            );
                            match state {
                                RTCPeerConnectionState::Connected => {
                                    came_up = !peer.connected;
                                    peer.connected = true;
                                }
                                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                                    failed = true
                                }
                                _ => {}
                            }
                        }
                        RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                            opened.push(init);
                        }
                        _ => {}
                    }
                }
                while let Some(message) = peer.pc.poll_read() {
                    progressed = true;
                    authenticated = true;
                    match message.message {
                        RTCMessage::RtpPacket(_, packet) => {
                            received.push((packet.header.ssrc, packet));
                        }
                        RTCMessage::RtcpPacket(_, packets) => {
                            for packet in packets {
                                let any = packet.as_any();
                                if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                                    rtcp_keyframe_requests.push(pli.media_ssrc);
                                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                                    rtcp_keyframe_requests.extend(fir.fir.iter().map(|e| e.ssrc));
                                } else if let Some(r) =
                                    any.downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                                {
                                    remb = Some(r.bitrate as u64);
                                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                                    let worst = rr.reports.iter().map(|r| r.fraction_lost).max();
                                    loss = loss.max(worst);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if !progressed {
                    break;
                }
            }
            peer.deadline = peer.pc.poll_timeout();
            // Empty unless `rtc` sent STUN: then taking it costs no allocation here.
            std::mem::take(&mut peer.path.verified)
        };
        for route in verified {
            self.record_route(key, route);
        }
        for init in opened {
            self.track_opened(now, key, init);
        }
        if !received.is_empty() {
            for (ssrc, packet) in received.drain(..) {
                self.forward(now, key, ssrc, packet);
            }
        }
        self.scratch = received;
        if key.dir == Dir::Subscribe {
            if came_up {
                self.subscriber_connected(now, key);
            }
            for ssrc in rtcp_keyframe_requests {
                self.subscriber_wants_keyframe(now, key, ssrc);
            }
            if remb.is_some() || loss.is_some() {
                self.downlink_feedback(now, key, remb, loss);
            }
        }
        if failed {
            tracing::info!(
                call = key.call,
                participant = key.participant,
                "media connection closed"
            );
            self.close_peer(key);
            self.sync_subscriptions(now, key.call);
        }
        authenticated
    }

    /// A publisher's track started: remember it and offer it to everyone else.
    fn track_opened(
        &mut self,
        now: Instant,
        key: PeerKey,
        init: rtc::peer_connection::event::RTCTrackEventInit,
    ) {
        if key.dir != Dir::Publish {
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let track = receiver.track();
        let kind = track.kind();
        let Some(codec) = track.codec(init.ssrc).cloned() else {
            return;
        };
        let audio_level_ext = peer
            .pc
            .remote_description()
            .and_then(|d| extmap_id(&d.sdp, AUDIO_LEVEL_URI));
        let layer = init.rid.as_deref().map(layer_of_rid).unwrap_or(0);
        // The first audio and the first video section are the camera stream, a later
        // video section is the screen (docs/signaling.md, "Media").
        let receivers: Vec<_> = peer.pc.get_transceivers().collect();
        let mut earlier_of_kind = 0;
        for id in receivers {
            if RTCRtpReceiverId::from(id) == init.receiver_id {
                break;
            }
            if peer
                .pc
                .rtp_receiver(RTCRtpReceiverId::from(id))
                .is_some_and(|r| r.track().kind() == kind)
            {
                earlier_of_kind += 1;
            }
        }
        let screen = kind == RtpCodecKind::Video && earlier_of_kind > 0;
        tracing::debug!(
            call = key.call,
            participant = key.participant,
            ssrc = init.ssrc,
            rid = ?init.rid,
            track = %init.track_id,
            "track opened"
        );
        let Some(room) = self.rooms.get_mut(&key.call) else {
            return;
        };
        // Simulcast layers of a known track join its source.
        let existing = room
            .sources
            .iter()
            .find(|(_, s)| s.owner == key.participant && s.track == init.track_id)
            .map(|(id, _)| *id);
        let source_id = match existing {
            Some(id) => id,
            None => {
                let id = self.next_source;
                self.next_source += 1;
                room.sources.insert(
                    id,
                    PublishedTrack {
                        owner: key.participant,
                        kind,
                        stream: format!("p{}-{}", key.participant, u8::from(screen)),
                        screen,
                        track: init.track_id.clone(),
                        video: VideoCodec::from_mime(&codec.mime_type),
                        codec,
                        receiver: init.receiver_id,
                        layers: [None; MAX_LAYERS],
                        audio_level_ext: audio_level_ext.filter(|_| kind == RtpCodecKind::Audio),
                        last_keyframe_request: [None; MAX_LAYERS],
                        last_seen: [None; MAX_LAYERS],
                        meter: LayerMeter::default(),
                    },
                );
                id
            }
        };
        if let Some(source) = room.sources.get_mut(&source_id) {
            source.layers[layer] = Some(init.ssrc);
        }
        room.by_ssrc
            .insert((key.participant, init.ssrc), (source_id, layer));
        // A new, better layer may suit subscribers that wanted more.
        let members: Vec<u32> = room.members.keys().copied().collect();
        for m in members {
            retarget(room, m, source_id);
        }
        self.sync_subscriptions(now, key.call);
        self.request_owed_keyframes(now, key.call);
    }

    /// Forwards one publisher packet to every subscriber of its source.
    fn forward(&mut self, now: Instant, from: PeerKey, ssrc: u32, packet: rtp::Packet) {
        if from.dir != Dir::Publish {
            return;
        }
        let Some(room) = self.rooms.get_mut(&from.call) else {
            return;
        };
        let Some(&(source_id, layer)) = room.by_ssrc.get(&(from.participant, ssrc)) else {
            return;
        };
        let Some(source) = room.sources.get_mut(&source_id) else {
            return;
        };
        if packet.payload.is_empty() {
            // Padding only (bandwidth probing): not media, not a sign of a live layer.
            for member in room.members.values_mut() {
                if let Some(binding) = member.bindings.get_mut(&source_id) {
                    match binding.video.as_mut() {
                        Some(forwarder) => forwarder.skip(layer, packet.header.sequence_number),
                        None => binding.audio.skip(packet.header.sequence_number),
                    }
                }
            }
            return;
        }
        #[cfg(feature = "test-tap")]
        if let Some(tap) = &self.tap {
            tap.record(|| super::tap::TapRecord {
                call: from.call,
                participant: from.participant,
                video: source.kind == RtpCodecKind::Video,
                marker: packet.header.marker,
                payload: packet.payload.to_vec(),
            });
        }
        let layer_came_back =
            source.last_seen[layer].is_none_or(|t| now.saturating_duration_since(t) > LAYER_IDLE);
        source.last_seen[layer] = Some(now);
        let packet_bytes = packet.payload.len() + RTP_HEADER_BYTES;
        if source.kind == RtpCodecKind::Video {
            source.meter.add(layer, packet_bytes, now);
        }
        let source = &*source;
        if let Some(ext) = source.audio_level_ext
            && let Some(level) = packet
                .header
                .get_extension(ext)
                .as_deref()
                .and_then(audio_level)
        {
            room.speakers.add(from.participant, level, now);
            if self.next_speaker_check.is_none() {
                self.next_speaker_check = Some(now + SPEAKER_INTERVAL);
            }
        }
        let mut keyframe: Option<bool> = None;
        let mut wanted_layer: Option<usize> = None;
        for (&participant, member) in room.members.iter_mut() {
            if participant == from.participant {
                continue;
            }
            let Some(binding) = member.bindings.get_mut(&source_id) else {
                continue;
            };
            let Some(payload_type) = binding.payload_type else {
                continue;
            };
            let (sequence_number, timestamp) = match binding.video.as_mut() {
                Some(forwarder) => {
                    // Follow paused and resumed layers.
                    let current_idle = forwarder.current().is_some_and(|l| {
                        source.last_seen[l]
                            .is_none_or(|t| now.saturating_duration_since(t) > LAYER_IDLE)
                    });
                    if layer_came_back || current_idle || forwarder.current().is_none() {
                        let wanted = wanted_within_caps(
                            &member.quality,
                            &member.caps,
                            source_id,
                            source.owner,
                        );
                        forwarder.set_target(best_active_layer(source, wanted, now));
                    }
                    let is_key = *keyframe
                        .get_or_insert_with(|| starts_keyframe(source.video, &packet.payload));
                    let verdict = forwarder.on_packet(
                        layer,
                        packet.header.sequence_number,
                        packet.header.timestamp,
                        is_key,
                    );
                    // Still waiting for the wanted layer's keyframe: keep asking
                    // (spaced by KEYFRAME_REQUEST_GAP).
                    forwarder.take_keyframe_request();
                    if forwarder.current() != Some(forwarder.target()) {
                        wanted_layer = Some(forwarder.target());
                    }
                    // A safety net while a subscription starts: a keyframe every second
                    // for its first seconds, so a lost first keyframe (or one the
                    // subscriber's own PLI does not bring back soon) is not a frozen tile.
                    let warming = binding
                        .ready_at
                        .is_some_and(|t| now.saturating_duration_since(t) < WARMUP);
                    let due = binding
                        .last_warmup
                        .is_none_or(|t| now.saturating_duration_since(t) >= WARMUP_INTERVAL);
                    if warming && due {
                        binding.last_warmup = Some(now);
                        wanted_layer = Some(forwarder.current().unwrap_or(forwarder.target()));
                    }
                    match verdict {
                        PacketDecision::Forward {
                            sequence_number,
                            timestamp,
                        } => (sequence_number, timestamp),
                        PacketDecision::Drop => continue,
                    }
                }
                None => binding
                    .audio
                    .map(packet.header.sequence_number, packet.header.timestamp),
            };
            let Some(peer) = self.peers.get_mut(&PeerKey {
                call: from.call,
                participant,
                dir: Dir::Subscribe,
            }) else {
                continue;
            };
            let mut out = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    padding: false,
                    extension: false,
                    marker: packet.header.marker,
                    payload_type,
                    sequence_number,
                    timestamp,
                    ssrc: binding.ssrc,
                    csrc: Vec::new(),
                    extension_profile: rtp::header::EXTENSION_PROFILE_ONE_BYTE,
                    extensions: Vec::new(),
                    extensions_padding: 0,
                },
                payload: packet.payload.clone(),
            };
            out.header.padding = false;
            if let Some(mut sender) = peer.pc.rtp_sender(binding.sender) {
                match sender.write_rtp(now, out) {
                    Ok(()) => {
                        self.stats.packets_forwarded += 1;
                        member.downlink.on_sent(packet_bytes, now);
                    }
                    Err(err) => tracing::trace!(error = %err, "could not forward"),
                }
            }
            flush_writes(peer, &mut self.transmits);
        }
        if let Some(layer) = wanted_layer {
            self.request_keyframe(now, from.call, source_id, layer);
        }
    }

    /// A subscriber's connection is up: its video starts at fresh keyframes, since
    /// whatever was forwarded before could not reach it.
    fn subscriber_connected(&mut self, now: Instant, key: PeerKey) {
        let Some(member) = self.member_mut(key.call, key.participant) else {
            return;
        };
        for binding in member.bindings.values_mut() {
            if let Some(forwarder) = binding.video.as_mut() {
                forwarder.resync();
            }
        }
        self.request_owed_keyframes(now, key.call);
    }

    /// A subscriber reported its downlink (REMB, loss): fit its video layers to it.
    fn downlink_feedback(
        &mut self,
        now: Instant,
        key: PeerKey,
        remb: Option<u64>,
        loss: Option<u8>,
    ) {
        let Some(room) = self.rooms.get_mut(&key.call) else {
            return;
        };
        let Some(member) = room.members.get_mut(&key.participant) else {
            return;
        };
        member.downlink.measure(now);
        if let Some(bps) = remb {
            member.downlink.on_remb(bps);
        }
        if let Some(fraction) = loss {
            member.downlink.on_loss(fraction);
        }
        if !member.downlink.due(now) {
            return;
        }
        let videos: Vec<(SourceId, Demand)> = member
            .bindings
            .iter()
            .filter(|(_, b)| b.video.is_some())
            .filter_map(|(id, _)| {
                let source = room.sources.get(id)?;
                let wanted = asked_layer(&member.quality, source.owner);
                Some((
                    *id,
                    Demand {
                        wanted,
                        current: wanted.min(member.caps.get(id).copied().unwrap_or(MAX_LAYERS - 1)),
                        available: source.layers.map(|l| l.is_some()),
                        layer_bps: source.meter.bps,
                    },
                ))
            })
            .collect();
        let demands: Vec<Demand> = videos.iter().map(|(_, d)| *d).collect();
        let Some(layers) = allocate::allocate(&mut member.downlink, &demands, now) else {
            return;
        };
        let mut changed = false;
        for ((source_id, _), layer) in videos.iter().zip(layers) {
            if member.caps.insert(*source_id, layer) != Some(layer) {
                changed = true;
            }
        }
        if changed {
            tracing::debug!(
                call = key.call,
                participant = key.participant,
                estimate = member.downlink.estimate_bps(),
                caps = ?member.caps,
                "downlink allocation"
            );
            for (source_id, _) in &videos {
                retarget(room, key.participant, *source_id);
            }
            self.request_owed_keyframes(now, key.call);
        }
    }

    /// A subscriber lost a picture: ask the publisher of that stream for a keyframe.
    fn subscriber_wants_keyframe(&mut self, now: Instant, key: PeerKey, ssrc: u32) {
        let Some(room) = self.rooms.get(&key.call) else {
            return;
        };
        let Some(member) = room.members.get(&key.participant) else {
            return;
        };
        let Some((source_id, layer)) = member.bindings.iter().find_map(|(id, b)| {
            (b.ssrc == ssrc).then(|| {
                (
                    *id,
                    b.video.as_ref().map(|f| f.current().unwrap_or(f.target())),
                )
            })
        }) else {
            return;
        };
        if let Some(layer) = layer {
            self.request_keyframe(now, key.call, source_id, layer);
        }
    }

    /// Sends the keyframe requests subscribers' forwarders are waiting for.
    fn request_owed_keyframes(&mut self, now: Instant, call: CallKey) {
        let Some(room) = self.rooms.get_mut(&call) else {
            return;
        };
        let mut wanted = Vec::new();
        for member in room.members.values_mut() {
            for (source_id, binding) in &mut member.bindings {
                if binding.payload_type.is_none() {
                    continue;
                }
                if let Some(f) = binding.video.as_mut()
                    && f.take_keyframe_request()
                {
                    wanted.push((*source_id, f.target()));
                }
            }
        }
        for (source_id, layer) in wanted {
            self.request_keyframe(now, call, source_id, layer);
        }
    }

    fn request_keyframe(&mut self, now: Instant, call: CallKey, source_id: SourceId, layer: usize) {
        let Some(source) = self
            .rooms
            .get_mut(&call)
            .and_then(|r| r.sources.get_mut(&source_id))
        else {
            return;
        };
        let Some(media_ssrc) = source.layers[layer] else {
            return;
        };
        if source.last_keyframe_request[layer]
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_GAP)
        {
            return;
        }
        source.last_keyframe_request[layer] = Some(now);
        tracing::trace!(
            call,
            owner = source.owner,
            layer,
            media_ssrc,
            "keyframe requested"
        );
        let receiver = source.receiver;
        let key = PeerKey {
            call,
            participant: source.owner,
            dir: Dir::Publish,
        };
        if let Some(peer) = self.peers.get_mut(&key) {
            if let Some(mut r) = peer.pc.rtp_receiver(receiver) {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if let Err(err) = r.write_rtcp(now, vec![Box::new(pli)]) {
                    tracing::debug!(error = %err, "could not request a keyframe");
                }
            }
            flush_writes(peer, &mut self.transmits);
        }
    }

    /// Drops sources whose tracks a renegotiated offer no longer sends.
    fn prune_sources(&mut self, now: Instant, call: CallKey, participant: u32, offer: &str) {
        let Some(room) = self.rooms.get_mut(&call) else {
            return;
        };
        let sending = sending_track_ids(offer);
        let before = room.sources.len();
        room.sources
            .retain(|_, s| s.owner != participant || sending.contains(&s.track));
        if room.sources.len() != before {
            let sources = &room.sources;
            room.by_ssrc.retain(|_, (id, _)| sources.contains_key(id));
            self.sync_subscriptions(now, call);
        }
    }

    /// Makes every member's subscribe connection carry exactly the others' sources,
    /// renegotiating where that changed.
    fn sync_subscriptions(&mut self, now: Instant, call: CallKey) {
        let Some(room) = self.rooms.get(&call) else {
            return;
        };
        let members: Vec<u32> = room.members.keys().copied().collect();
        for participant in members {
            let key = PeerKey {
                call,
                participant,
                dir: Dir::Subscribe,
            };
            // Only participants whose publish connection exists get a subscribe connection.
            if !self.peers.contains_key(&PeerKey {
                dir: Dir::Publish,
                ..key
            }) {
                continue;
            }
            let Some(room) = self.rooms.get(&call) else {
                return;
            };
            let Some(member) = room.members.get(&participant) else {
                continue;
            };
            let wanted: Vec<SourceId> = room
                .sources
                .iter()
                .filter(|(_, s)| {
                    s.owner != participant
                        && (!s.screen
                            || room.members.get(&s.owner).is_none_or(|m| m.sharing_screen))
                })
                .map(|(id, _)| *id)
                .collect();
            let stale: Vec<SourceId> = member
                .bindings
                .keys()
                .filter(|id| !wanted.contains(id))
                .copied()
                .collect();
            let missing: Vec<SourceId> = wanted
                .iter()
                .filter(|id| !member.bindings.contains_key(id))
                .copied()
                .collect();
            if stale.is_empty() && missing.is_empty() {
                continue;
            }
            if !self.peers.contains_key(&key) {
                match self.new_peer(now, Dir::Subscribe) {
                    Ok(peer) => self.insert_peer(key, peer),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not create a subscribe connection");
                        continue;
                    }
                }
            }
            let Some(room) = self.rooms.get_mut(&call) else {
                return;
            };
            let Some(member) = room.members.get_mut(&participant) else {
                continue;
            };
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            for id in stale {
                if let Some(binding) = member.bindings.remove(&id) {
                    let _ = peer.pc.remove_track(binding.sender);
                }
            }
            for id in missing {
                let Some(source) = room.sources.get(&id) else {
                    continue;
                };
                let ssrc = rand::random::<u32>();
                let track = MediaStreamTrack::new(
                    source.stream.clone(),
                    format!("{}-{}", source.stream, id),
                    source.track.clone(),
                    source.kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: source.codec.clone(),
                        ..Default::default()
                    }],
                );
                match peer.pc.add_track(track) {
                    Ok(sender) => {
                        let video = (source.kind == RtpCodecKind::Video).then(|| {
                            LayerForwarder::new(best_layer(source, member.wanted(id, source.owner)))
                        });
                        member.bindings.insert(
                            id,
                            Binding {
                                sender,
                                ssrc,
                                payload_type: None,
                                video,
                                audio: Rewriter::default(),
                                ready_at: None,
                                last_warmup: None,
                            },
                        );
                    }
                    Err(err) => tracing::warn!(error = %err, "could not add a track"),
                }
            }
            self.offer_subscriptions(now, call, participant);
        }
    }

    /// Sends a fresh subscribe offer, or notes that one is due after the pending answer.
    fn offer_subscriptions(&mut self, now: Instant, call: CallKey, participant: u32) {
        let key = PeerKey {
            call,
            participant,
            dir: Dir::Subscribe,
        };
        let Some(member) = self
            .rooms
            .get_mut(&call)
            .and_then(|r| r.members.get_mut(&participant))
        else {
            return;
        };
        if member.negotiating {
            tracing::debug!(
                call,
                participant,
                "subscribe offer due after the pending answer"
            );
            member.renegotiate = true;
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let offer = match peer.pc.create_offer(None) {
            Ok(offer) => offer,
            Err(err) => {
                tracing::warn!(error = %err, "could not create a subscribe offer");
                return;
            }
        };
        if let Err(err) = peer.pc.set_local_description(now, offer) {
            tracing::warn!(error = %err, "could not apply a subscribe offer");
            return;
        }
        if let Some(sdp) = peer.pc.local_description().map(|d| d.sdp) {
            member.negotiating = true;
            let tracks = member.bindings.len();
            let sent = member.events.deliver(MediaEvent::SubscribeOffer { sdp });
            if !sent {
                self.stats.events_dropped += 1;
            }
            tracing::debug!(call, participant, tracks, sent, ufrag = %peer.ufrag, "subscribe offer");
        }
        self.drain(key, now);
    }

    fn check_speakers(&mut self, now: Instant) {
        let mut again = false;
        for (call, room) in self.rooms.iter_mut() {
            self.working_on = Some(*call);
            if let Some(speaker) = room.speakers.poll(now) {
                for member in room.members.values() {
                    let event = MediaEvent::ActiveSpeaker {
                        participant: speaker,
                    };
                    if !member.events.deliver(event) {
                        self.stats.events_dropped += 1;
                    }
                }
            }
            again |= !room.speakers.is_idle();
        }
        self.working_on = None;
        if again {
            self.next_speaker_check = Some(now + SPEAKER_INTERVAL);
        }
    }
}

impl Peer {
    fn stale(&self, now: Instant) -> bool {
        !self.connected && now.saturating_duration_since(self.created) > CONNECT_TIMEOUT
    }
}

fn flush_writes(peer: &mut Peer, transmits: &mut VecDeque<Transmit>) {
    while let Some(out) = peer.pc.poll_write() {
        transmits.push_back(peer.path.outgoing(out, peer.connected));
    }
    peer.deadline = peer.pc.poll_timeout();
}

/// Re-aims every binding of `member` to `source` at the best layer it has.
fn retarget(room: &mut Room, member: u32, source_id: SourceId) {
    let Some(source) = room.sources.get(&source_id) else {
        return;
    };
    let Some(m) = room.members.get_mut(&member) else {
        return;
    };
    let wanted = m.wanted(source_id, source.owner);
    if let Some(forwarder) = m
        .bindings
        .get_mut(&source_id)
        .and_then(|b| b.video.as_mut())
    {
        forwarder.set_target(best_layer(source, wanted));
    }
}

/// Like [`best_layer`], among layers that sent a packet recently.
fn best_active_layer(source: &PublishedTrack, wanted: usize, now: Instant) -> usize {
    let active = |l: usize| {
        source.last_seen[l].is_some_and(|t| now.saturating_duration_since(t) <= LAYER_IDLE)
    };
    (0..=wanted.min(MAX_LAYERS - 1))
        .rev()
        .find(|l| active(*l))
        .or_else(|| (0..MAX_LAYERS).find(|l| active(*l)))
        .unwrap_or_else(|| best_layer(source, wanted))
}

/// The highest layer at or below `wanted` that the source sends (or its lowest).
fn best_layer(source: &PublishedTrack, wanted: usize) -> usize {
    (0..=wanted.min(MAX_LAYERS - 1))
        .rev()
        .find(|l| source.layers[*l].is_some())
        .or_else(|| (0..MAX_LAYERS).find(|l| source.layers[*l].is_some()))
        .unwrap_or(0)
}

/// Simulcast rid → layer: `q`/`l`/`0` low, `h`/`m`/`1` middle, `f`/`2` full.
fn layer_of_rid(rid: &str) -> usize {
    match rid {
        "q" | "l" | "lo" | "low" | "0" => 0,
        "h" | "m" | "mid" | "1" => 1,
        _ => 2,
    }
}

/// Opus for audio; VP8 and H.264 (constrained baseline) for video: the codecs whose
/// keyframes the forwarder recognises.
fn register_codecs(media: &mut MediaEngine) -> rtc::shared::error::Result<()> {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let video_feedback = vec![
        feedback("goog-remb", ""),
        feedback("ccm", "fir"),
        feedback("nack", ""),
        feedback("nack", "pli"),
    ];
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: video_feedback.clone(),
            },
            payload_type: 96,
        },
        RtpCodecKind::Video,
    )?;
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line:
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                        .to_owned(),
                rtcp_feedback: video_feedback,
            },
            payload_type: 102,
        },
        RtpCodecKind::Video,
    )
}

/// The local ICE username fragment named by a STUN binding request
/// (`USERNAME = local:remote`), if `data` is one.
pub fn stun_username(data: &[u8]) -> Option<&str> {
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

/// The value after `prefix` on the first SDP line that starts with it.
fn sdp_value<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

/// The id an SDP gives an RTP header extension.
fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.strip_prefix("a=extmap:")?;
        let (id, rest) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        (rest.split_whitespace().next()? == uri).then(|| id.parse().ok())?
    })
}

/// Track ids of the media sections an offer sends (`a=msid:<stream> <track>` in a
/// section that is `sendrecv` or `sendonly`).
fn sending_track_ids(sdp: &str) -> Vec<String> {
    let mut tracks = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let sends = section
            .lines()
            .any(|l| matches!(l.trim(), "a=sendrecv" | "a=sendonly"));
        if !sends {
            continue;
        }
        if let Some(track) = section
            .lines()
            .find_map(|l| l.strip_prefix("a=msid:"))
            .and_then(|v| v.split_whitespace().nth(1))
        {
            tracks.push(track.trim().to_owned());
        }
    }
    tracks
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
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

    #[test]
    fn sdp_helpers_find_what_they_look_for() {
        let sdp = "v=0\r\na=ice-ufrag:Ab12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=msid:s1 t-audio\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:4/sendrecv urn:x\r\na=inactive\r\na=msid:s1 t-video\r\n";
        assert_eq!(sdp_value(sdp, "a=ice-ufrag:"), Some("Ab12"));
        assert_eq!(extmap_id(sdp, AUDIO_LEVEL_URI), Some(1));
        assert_eq!(extmap_id(sdp, "urn:x"), Some(4));
        assert_eq!(extmap_id(sdp, "urn:y"), None);
        assert_eq!(sending_track_ids(sdp), vec!["t-audio".to_owned()]);
        assert_eq!(layer_of_rid("q"), 0);
        assert_eq!(layer_of_rid("h"), 1);
        assert_eq!(layer_of_rid("f"), 2);
    }
}
