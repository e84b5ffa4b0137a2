//! Peer connections: building one with Confab's codecs, interceptors and
//! candidates, and draining what `rtc` has to say.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Dir {
    Publish,
    Subscribe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PeerKey {
    pub(super) call: CallKey,
    pub(super) participant: u32,
    pub(super) dir: Dir,
}

pub(super) struct Peer {
    pub(super) pc: RTCPeerConnection,
    pub(super) ufrag: String,
    pub(super) routes: Vec<Route>,
    pub(super) deadline: Option<Instant>,
    pub(super) created: Instant,
    pub(super) connected: bool,
    pub(super) path: Path,
}

impl Engine {
    /// Builds a peer connection with Confab's codecs, interceptors and candidates.
    pub(super) fn new_peer(&mut self, now: Instant, dir: Dir) -> Result<Peer, NegotiationError> {
        let mut media = MediaEngine::default();
        register_codecs(&mut media).map_err(setup)?;
        let answering_role = match dir {
            // Receives simulcast: needs the mid and rid header extensions.
            Dir::Publish => {
                configure_simulcast_extension_headers(&mut media).map_err(setup)?;
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
            .map_err(setup)?;
        // Both directions offer the same feedback (NACK, PLI, transport-cc), but a
        // publish connection only receives media and a subscribe connection only
        // sends it, so each carries only its half of the interceptors: every
        // forwarded packet walks the subscribe chain, and a shorter chain is fewer
        // moves of it (docs/BENCHMARKS.md, "Side by side with Janus").
        let _ = configure_nack(Registry::new(), &mut media);
        let _ = configure_twcc_receiver_only(Registry::new(), &mut media).map_err(setup)?;
        let registry = match dir {
            // Asks for what was lost, reports arrivals for the browser's estimate.
            Dir::Publish => Registry::new()
                .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
                .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
                .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
            // Keeps what it sent for retransmission, and sends sender reports.
            Dir::Subscribe => Registry::new()
                .with(
                    Slot::NackResponder,
                    NackResponderBuilder::new().with_size(NACK_HISTORY).build(),
                )
                .with(Slot::SenderReport, SenderReportBuilder::new().build()),
        }
        .with(feedback::SLOT, feedback::FeedbackToApplication::default());
        // The first character names this engine thread (`shard_of_ufrag`).
        let mark = char::from(SHARD_MARKS[self.config.shard % MAX_SHARDS]);
        let ufrag = format!("{mark}{}", random_token(&mut self.rng, 15));
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_answering_dtls_role(answering_role)
            .with_ice_credentials(ufrag.clone(), random_token(&mut self.rng, 32))
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(setup)?;
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
                .map_err(setup)?;
                let init = RTCIceCandidate::from(&candidate).to_json().map_err(setup)?;
                pc.add_local_candidate(init).map_err(setup)?;
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

    pub(super) fn insert_peer(&mut self, key: PeerKey, peer: Peer) {
        self.by_ufrag.insert(peer.ufrag.clone(), key);
        self.peers.insert(key, peer);
    }

    /// Closes one connection and forgets what depended on it: a publish connection's
    /// sources, a subscribe connection's bindings. Callers re-sync subscriptions.
    pub(super) fn close_peer(&mut self, key: PeerKey) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        let _ = peer.pc.close();
        self.by_ufrag.remove(&peer.ufrag);
        for route in &peer.routes {
            self.forget_route(route);
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
    pub(super) fn drain(&mut self, key: PeerKey, now: Instant) -> bool {
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
                                call = %key.call,
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
                call = %key.call,
                participant = key.participant,
                "media connection closed"
            );
            self.close_peer(key);
            self.sync_subscriptions(now, key.call);
        }
        authenticated
    }
}

impl Peer {
    pub(super) fn stale(&self, now: Instant) -> bool {
        !self.connected && now.saturating_duration_since(self.created) > CONNECT_TIMEOUT
    }
}

pub(super) fn flush_writes(peer: &mut Peer, transmits: &mut VecDeque<Transmit>) {
    while let Some(out) = peer.pc.poll_write() {
        transmits.push_back(peer.path.outgoing(out, peer.connected));
    }
    peer.deadline = peer.pc.poll_timeout();
}

/// Opus for audio; VP8 and H.264 (constrained baseline) for video: the codecs whose
/// keyframes the forwarder recognises.
pub(super) fn register_codecs(media: &mut MediaEngine) -> rtc::shared::error::Result<()> {
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

pub(super) fn random_token(rng: &mut impl rand::Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn setup(e: impl std::fmt::Display) -> NegotiationError {
    NegotiationError::Setup(e.to_string())
}
