//! Fan-out: forwarding each publisher packet to its subscribers, choosing the
//! simulcast layer each gets, keyframe requests and active speakers.

use super::*;

impl Engine {
    pub(super) fn set_quality(
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

    /// Forwards one publisher packet to every subscriber of its source.
    pub(super) fn forward(&mut self, now: Instant, from: PeerKey, ssrc: u32, packet: rtp::Packet) {
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
        if room
            .members
            .get(&from.participant)
            .is_some_and(|m| m.suspended)
        {
            return;
        }
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
            tap.record(|| crate::sfu::tap::TapRecord {
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
    pub(super) fn subscriber_connected(&mut self, now: Instant, key: PeerKey) {
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
    pub(super) fn downlink_feedback(
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
                call = %key.call,
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
    pub(super) fn subscriber_wants_keyframe(&mut self, now: Instant, key: PeerKey, ssrc: u32) {
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
    pub(super) fn request_owed_keyframes(&mut self, now: Instant, call: CallKey) {
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

    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        call: CallKey,
        source_id: SourceId,
        layer: usize,
    ) {
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
            %call,
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

    pub(super) fn check_speakers(&mut self, now: Instant) {
        let mut again = false;
        for (call, room) in self.rooms.iter_mut() {
            self.working_on = Some(*call);
            if let Some(speaker) = room.speakers.poll(now) {
                for member in room.members.values() {
                    let event = MediaEvent::ActiveSpeaker {
                        participant: speaker,
                    };
                    self.events.push_back((member.events.clone(), event));
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

/// Re-aims every binding of `member` to `source` at the best layer it has.
pub(super) fn retarget(room: &mut Room, member: u32, source_id: SourceId) {
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
pub(super) fn best_active_layer(source: &PublishedTrack, wanted: usize, now: Instant) -> usize {
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
pub(super) fn best_layer(source: &PublishedTrack, wanted: usize) -> usize {
    (0..=wanted.min(MAX_LAYERS - 1))
        .rev()
        .find(|l| source.layers[*l].is_some())
        .or_else(|| (0..MAX_LAYERS).find(|l| source.layers[*l].is_some()))
        .unwrap_or(0)
}

/// Simulcast rid → layer: `q`/`l`/`0` low, `h`/`m`/`1` middle, `f`/`2` full.
pub(super) fn layer_of_rid(rid: &str) -> usize {
    match rid {
        "q" | "l" | "lo" | "low" | "0" => 0,
        "h" | "m" | "mid" | "1" => 1,
        _ => 2,
    }
}
