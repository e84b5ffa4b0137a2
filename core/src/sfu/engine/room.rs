//! A call's media state: its members, their bindings, and the tracks published.

use super::*;

pub(super) type SourceId = u64;

/// One track a participant publishes (with its simulcast layers).
pub(super) struct PublishedTrack {
    pub(super) owner: u32,
    pub(super) kind: RtpCodecKind,
    /// Stream id shown to subscribers: `p{owner}-{n}`.
    pub(super) stream: String,
    /// The owner's second video track: its screen.
    pub(super) screen: bool,
    pub(super) track: String,
    pub(super) codec: RTCRtpCodec,
    pub(super) video: VideoCodec,
    pub(super) receiver: RTCRtpReceiverId,
    /// SSRC per layer (index = layer), filled as layers start.
    pub(super) layers: [Option<u32>; MAX_LAYERS],
    pub(super) audio_level_ext: Option<u8>,
    pub(super) last_keyframe_request: [Option<Instant>; MAX_LAYERS],
    /// When each layer last sent a packet: browsers pause upper layers when their
    /// bandwidth estimate drops, and viewers must then be moved down.
    pub(super) last_seen: [Option<Instant>; MAX_LAYERS],
    /// What each layer really sends, for bandwidth allocation.
    pub(super) meter: LayerMeter,
}

/// One source as seen by one subscriber.
pub(super) struct Binding {
    pub(super) sender: RTCRtpSenderId,
    pub(super) ssrc: u32,
    /// Known once the subscriber answered.
    pub(super) payload_type: Option<u8>,
    pub(super) video: Option<LayerForwarder>,
    pub(super) audio: Rewriter,
    /// When forwarding to this subscriber could start, and when a warm-up keyframe
    /// was last requested for it (see [`WARMUP`]).
    pub(super) ready_at: Option<Instant>,
    pub(super) last_warmup: Option<Instant>,
}

pub(super) struct Member {
    pub(super) events: Events,
    pub(super) bindings: BTreeMap<SourceId, Binding>,
    /// Preferred layer per publisher (from `SetQuality`), else the best.
    pub(super) quality: HashMap<u32, usize>,
    pub(super) negotiating: bool,
    pub(super) renegotiate: bool,
    /// Whether this participant's screen track is shown to the others (see
    /// [`MediaCommand::Sharing`]); until a client says otherwise, a screen track that
    /// sends is shown.
    pub(super) sharing_screen: bool,
    /// Nothing this participant publishes is forwarded (see
    /// [`MediaCommand::Suspend`]).
    pub(super) suspended: bool,
    /// The subscriber's downlink estimate, and the layer caps it led to.
    pub(super) downlink: Downlink,
    pub(super) caps: HashMap<SourceId, usize>,
    /// Asked to receive without publishing ([`MediaCommand::Subscribe`]): gets a
    /// subscribe connection although it has no publish connection.
    pub(super) receive_only: bool,
}

impl Member {
    pub(super) fn new(events: Events) -> Self {
        Self {
            events,
            bindings: BTreeMap::new(),
            quality: HashMap::new(),
            negotiating: false,
            renegotiate: false,
            sharing_screen: true,
            suspended: false,
            downlink: Downlink::default(),
            caps: HashMap::new(),
            receive_only: false,
        }
    }

    /// The layer this subscriber should get from a source: what its tile asks for,
    /// within what its downlink carries.
    pub(super) fn wanted(&self, source_id: SourceId, owner: u32) -> usize {
        wanted_within_caps(&self.quality, &self.caps, source_id, owner)
    }
}

/// What a subscriber's tile asks of `owner`'s camera (the best, unless it said less).
pub(super) fn asked_layer(quality: &HashMap<u32, usize>, owner: u32) -> usize {
    quality.get(&owner).copied().unwrap_or(MAX_LAYERS - 1)
}

/// [`Member::wanted`] on the member's fields, for callers holding one of its bindings.
pub(super) fn wanted_within_caps(
    quality: &HashMap<u32, usize>,
    caps: &HashMap<SourceId, usize>,
    source_id: SourceId,
    owner: u32,
) -> usize {
    asked_layer(quality, owner).min(caps.get(&source_id).copied().unwrap_or(MAX_LAYERS - 1))
}

#[derive(Default)]
pub(super) struct Room {
    pub(super) members: BTreeMap<u32, Member>,
    pub(super) sources: BTreeMap<SourceId, PublishedTrack>,
    /// (publisher, SSRC) → (source, layer).
    pub(super) by_ssrc: HashMap<(u32, u32), (SourceId, usize)>,
    pub(super) speakers: SpeakerDetector,
}
