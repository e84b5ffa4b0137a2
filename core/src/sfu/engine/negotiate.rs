//! Negotiation: publish offers, subscribe offers and answers, and which sources
//! each subscriber's connection carries.

use super::*;
use rtc::sdp::SessionDescription;

/// Why an offer or answer could not be used; its text is what the page shows
/// (`MediaEvent::BadSdp`).
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    #[error("SDP is limited to {MAX_SDP_BYTES} bytes")]
    TooLong,
    /// Not parseable as the kind of description expected (`offer`, `answer`).
    #[error("not an SDP {0}: {1}")]
    NotSdp(&'static str, String),
    #[error("publish at most {MAX_PUBLISHED_TRACKS} tracks (audio, camera, screen)")]
    TooManyTracks,
    /// `rtc` refused the remote description.
    #[error("the {0} was refused: {1}")]
    Refused(&'static str, String),
    #[error("could not answer: {0}")]
    CouldNotAnswer(String),
    #[error("could not answer")]
    NoAnswer,
    #[error("publish or subscribe first")]
    PublishFirst,
    #[error("no subscribe offer is waiting for an answer")]
    NoOfferWaiting,
    /// Something the step needs is gone (a connection, the call, the member).
    #[error("no {0}")]
    Missing(&'static str),
    /// A peer connection could not be built.
    #[error("{0}")]
    Setup(String),
}

impl Engine {
    /// Shows or hides a participant's screen track to everyone else.
    pub(super) fn set_sharing(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        screen: bool,
    ) {
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

    /// Stops or restarts forwarding a participant's media. On restart every
    /// subscriber of its video starts over at the next keyframe, which is asked for
    /// at once, so the tiles come back without waiting for the next one.
    pub(super) fn set_suspended(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        suspended: bool,
    ) {
        let Some(room) = self.rooms.get_mut(&call) else {
            return;
        };
        let Some(member) = room.members.get_mut(&participant) else {
            return;
        };
        if member.suspended == suspended {
            return;
        }
        member.suspended = suspended;
        if suspended {
            return;
        }
        let owned: Vec<SourceId> = room
            .sources
            .iter()
            .filter(|(_, s)| s.owner == participant)
            .map(|(id, _)| *id)
            .collect();
        for member in room.members.values_mut() {
            for id in &owned {
                if let Some(forwarder) = member.bindings.get_mut(id).and_then(|b| b.video.as_mut())
                {
                    forwarder.resync();
                }
            }
        }
        self.request_owed_keyframes(now, call);
    }

    pub(super) fn publish(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        offer: String,
        events: Events,
    ) -> Result<(), NegotiationError> {
        if offer.len() > MAX_SDP_BYTES {
            return Err(NegotiationError::TooLong);
        }
        let description = RTCSessionDescription::offer(offer.clone())
            .map_err(|e| NegotiationError::NotSdp("offer", e.to_string()))?;
        let parsed = description
            .unmarshal()
            .map_err(|e| NegotiationError::NotSdp("offer", e.to_string()))?;
        if parsed.media_descriptions.len() > MAX_PUBLISHED_TRACKS {
            return Err(NegotiationError::TooManyTracks);
        }
        let key = PeerKey {
            call,
            participant,
            dir: Dir::Publish,
        };
        let room = self.rooms.entry(call).or_default();
        let member = room
            .members
            .entry(participant)
            .or_insert_with(|| Member::new(events.clone()));
        member.events = events.clone();
        // Same ICE credentials: a renegotiation of the live connection. New ones: the
        // browser started over (reload, reconnect), so the old connections go.
        let renegotiation = self.peers.get(&key).is_some_and(|peer| {
            let live = peer
                .pc
                .remote_description()
                .and_then(|d| d.unmarshal().ok());
            live.as_ref()
                .and_then(ice_ufrag)
                .zip(ice_ufrag(&parsed))
                .is_some_and(|(a, b)| a == b)
        });
        tracing::debug!(%call, participant, renegotiation, "publish offer");
        if !renegotiation {
            self.close_peer(key);
            self.close_peer(PeerKey {
                dir: Dir::Subscribe,
                ..key
            });
            let peer = self.new_peer(now, Dir::Publish)?;
            self.insert_peer(key, peer);
        }
        let peer = self
            .peers
            .get_mut(&key)
            .ok_or(NegotiationError::Missing("connection"))?;
        peer.pc
            .set_remote_description(now, description)
            .map_err(|e| NegotiationError::Refused("offer", e.to_string()))?;
        let answer = peer
            .pc
            .create_answer(None)
            .map_err(|e| NegotiationError::CouldNotAnswer(e.to_string()))?;
        peer.pc
            .set_local_description(now, answer)
            .map_err(|e| NegotiationError::CouldNotAnswer(e.to_string()))?;
        let sdp = peer
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or(NegotiationError::NoAnswer)?;
        self.tell(&events, MediaEvent::PublishAnswer { sdp });
        // Tracks removed by the renegotiation stop being forwarded.
        self.prune_sources(now, call, participant, &parsed);
        self.drain(key, now);
        // Whatever the others already publish, this participant now receives.
        self.sync_subscriptions(now, call);
        Ok(())
    }

    /// A participant that publishes nothing asks to receive: its subscribe
    /// connection starts over, and carries the others' sources from the next offer
    /// on (none is sent while there is nothing to receive).
    pub(super) fn subscribe_only(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        events: Events,
    ) {
        let room = self.rooms.entry(call).or_default();
        let member = room
            .members
            .entry(participant)
            .or_insert_with(|| Member::new(events.clone()));
        member.events = events;
        member.receive_only = true;
        tracing::debug!(%call, participant, "receive only");
        self.close_peer(PeerKey {
            call,
            participant,
            dir: Dir::Subscribe,
        });
        self.sync_subscriptions(now, call);
    }

    pub(super) fn subscribe_answer(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        answer: String,
    ) -> Result<(), NegotiationError> {
        if answer.len() > MAX_SDP_BYTES {
            return Err(NegotiationError::TooLong);
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
            .ok_or(NegotiationError::PublishFirst)?;
        if !member.negotiating {
            return Err(NegotiationError::NoOfferWaiting);
        }
        let description = RTCSessionDescription::answer(answer)
            .map_err(|e| NegotiationError::NotSdp("answer", e.to_string()))?;
        let peer = self
            .peers
            .get_mut(&key)
            .ok_or(NegotiationError::Missing("subscribe connection"))?;
        peer.pc
            .set_remote_description(now, description)
            .map_err(|e| NegotiationError::Refused("answer", e.to_string()))?;
        member.negotiating = false;
        // Payload types are fixed now.
        let room = self
            .rooms
            .get_mut(&call)
            .ok_or(NegotiationError::Missing("call"))?;
        let member = room
            .members
            .get_mut(&participant)
            .ok_or(NegotiationError::Missing("member"))?;
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
        tracing::debug!(%call, participant, again, "subscribe answer applied");
        self.drain(key, now);
        if again {
            self.offer_subscriptions(now, call, participant);
        }
        // Video starts at a keyframe: ask for one now that the path exists.
        self.request_owed_keyframes(now, call);
        Ok(())
    }

    pub(super) fn leave(&mut self, now: Instant, call: CallKey, participant: u32) {
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

    /// A publisher's track started: remember it and offer it to everyone else.
    pub(super) fn track_opened(
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
            .and_then(|d| d.unmarshal().ok())
            .and_then(|d| extmap_id(&d, AUDIO_LEVEL_URI));
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
            call = %key.call,
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

    /// Drops sources whose tracks a renegotiated offer no longer sends.
    pub(super) fn prune_sources(
        &mut self,
        now: Instant,
        call: CallKey,
        participant: u32,
        offer: &SessionDescription,
    ) {
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
    pub(super) fn sync_subscriptions(&mut self, now: Instant, call: CallKey) {
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
            let Some(room) = self.rooms.get(&call) else {
                return;
            };
            let Some(member) = room.members.get(&participant) else {
                continue;
            };
            // Participants get a subscribe connection once they publish, or once
            // they ask to receive only.
            if !member.receive_only
                && !self.peers.contains_key(&PeerKey {
                    dir: Dir::Publish,
                    ..key
                })
            {
                continue;
            }
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
    pub(super) fn offer_subscriptions(&mut self, now: Instant, call: CallKey, participant: u32) {
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
                %call,
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
            let sdp = with_msid_semantic(sdp);
            member.negotiating = true;
            let tracks = member.bindings.len();
            self.events
                .push_back((member.events.clone(), MediaEvent::SubscribeOffer { sdp }));
            tracing::debug!(%call, participant, tracks, ufrag = %peer.ufrag, "subscribe offer");
        }
        self.drain(key, now);
    }
}

/// The offer with `a=msid-semantic:WMS *` at session level. `rtc` writes it into
/// every offer but a connection's first; without it some stacks (aiortc) ignore
/// the `a=msid` lines, so their tracks lose the stream id that says whose they are.
pub(super) fn with_msid_semantic(sdp: String) -> String {
    if sdp.contains("\na=msid-semantic:") {
        return sdp;
    }
    match sdp
        .find("\nt=")
        .and_then(|t| sdp[t + 1..].find('\n').map(|end| t + 2 + end))
    {
        Some(after_timing) => {
            let mut with = String::with_capacity(sdp.len() + 24);
            with.push_str(&sdp[..after_timing]);
            with.push_str("a=msid-semantic:WMS *\r\n");
            with.push_str(&sdp[after_timing..]);
            with
        }
        None => sdp,
    }
}

/// The ICE username fragment of a description (session level, else the first
/// media section that has one, where browsers put it).
pub(super) fn ice_ufrag(sdp: &SessionDescription) -> Option<&str> {
    sdp.attribute("ice-ufrag").map(String::as_str).or_else(|| {
        sdp.media_descriptions
            .iter()
            .find_map(|m| m.attribute("ice-ufrag").flatten())
    })
}

/// The id a description gives an RTP header extension (`a=extmap:<id>[/<dir>] <uri>`).
pub(super) fn extmap_id(sdp: &SessionDescription, uri: &str) -> Option<u8> {
    sdp.attributes
        .iter()
        .chain(sdp.media_descriptions.iter().flat_map(|m| &m.attributes))
        .filter(|a| a.key == "extmap")
        .find_map(|a| {
            let (id, rest) = a.value.as_deref()?.split_once(' ')?;
            let id = id.split('/').next()?;
            (rest.split_whitespace().next()? == uri).then(|| id.parse().ok())?
        })
}

/// Track ids of the media sections an offer sends (`a=msid:<stream> <track>` in a
/// section that is `sendrecv` or `sendonly`).
pub(super) fn sending_track_ids(sdp: &SessionDescription) -> Vec<String> {
    sdp.media_descriptions
        .iter()
        .filter(|m| m.has_attribute("sendrecv") || m.has_attribute("sendonly"))
        .filter_map(|m| m.attribute("msid").flatten()?.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::engine::layer_of_rid;

    #[test]
    fn sdp_helpers_find_what_they_look_for() {
        let text = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:Ab12\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=msid:s1 t-audio\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:Cd34\r\na=extmap:4/sendrecv urn:x\r\na=inactive\r\na=msid:s1 t-video\r\n";
        let sdp = &SessionDescription::unmarshal(&mut std::io::Cursor::new(text.as_bytes()))
            .expect("a valid SDP");
        assert_eq!(ice_ufrag(sdp), Some("Ab12"), "the first section's");
        assert_eq!(extmap_id(sdp, AUDIO_LEVEL_URI), Some(1));
        assert_eq!(extmap_id(sdp, "urn:x"), Some(4));
        assert_eq!(extmap_id(sdp, "urn:y"), None);
        assert_eq!(sending_track_ids(sdp), vec!["t-audio".to_owned()]);
        assert_eq!(layer_of_rid("q"), 0);
        assert_eq!(layer_of_rid("h"), 1);
        assert_eq!(layer_of_rid("f"), 2);
    }

    #[test]
    fn offers_name_their_stream_semantics_once() {
        let bare = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:p1-0 p1-0-1\r\n";
        let with = with_msid_semantic(bare.to_owned());
        assert_eq!(
            with,
            bare.replace("t=0 0\r\n", "t=0 0\r\na=msid-semantic:WMS *\r\n")
        );
        let parsed = SessionDescription::unmarshal(&mut std::io::Cursor::new(with.as_bytes()))
            .expect("still a valid SDP");
        assert_eq!(
            parsed.attribute("msid-semantic").map(String::as_str),
            Some("WMS *")
        );
        assert_eq!(with_msid_semantic(with.clone()), with, "added once");
    }
}
