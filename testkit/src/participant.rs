//! One synthetic call participant: a publish and a subscribe peer connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::{Bytes, BytesMut};
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::stamp::{self, Stamp};

const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const RIDS: [&str; 3] = ["q", "h", "f"];
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const VIDEO_CLOCK: u32 = 90_000;

/// One simulcast layer's shape.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub fps: u32,
    pub packets_per_frame: u32,
    pub packet_bytes: usize,
}

/// What a participant sends.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Opus, 20 ms frames of this many bytes; `None` sends no audio.
    pub audio_bytes: Option<usize>,
    /// VP8 layers `q`, `h`, `f` (lowest first); empty sends no video.
    pub layers: Vec<LayerSpec>,
}

impl Profile {
    /// A 720p camera as Chrome sends it: 320×180 at ~150 kbit/s, 640×360 at
    /// ~500 kbit/s, 1280×720 at ~1.7 Mbit/s, 30 fps; Opus at ~40 kbit/s.
    pub fn camera() -> Self {
        Profile {
            audio_bytes: Some(100),
            layers: vec![
                LayerSpec {
                    fps: 30,
                    packets_per_frame: 1,
                    packet_bytes: 600,
                },
                LayerSpec {
                    fps: 30,
                    packets_per_frame: 2,
                    packet_bytes: 1000,
                },
                LayerSpec {
                    fps: 30,
                    packets_per_frame: 6,
                    packet_bytes: 1150,
                },
            ],
        }
    }

    /// Packets per second this profile publishes.
    pub fn packets_per_second(&self) -> u32 {
        let audio = if self.audio_bytes.is_some() { 50 } else { 0 };
        audio
            + self
                .layers
                .iter()
                .map(|l| l.fps * l.packets_per_frame)
                .sum::<u32>()
    }
}

/// A datagram a participant wants sent.
#[derive(Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: BytesMut,
}

/// What one participant received from one forwarded stream.
#[derive(Default, Clone)]
pub struct StreamStats {
    pub publisher: Option<u32>,
    pub audio: bool,
    /// A shared screen (counted as layer 0).
    pub screen: bool,
    /// Distinct packets (retransmissions of a packet already held do not count).
    pub received: u64,
    first: Option<u64>,
    highest: Option<u64>,
    window: Vec<u64>,
    /// Layer of the last packet, and how many packets came from each layer.
    pub layer: Option<u8>,
    pub per_layer: [u64; 3],
    /// Keyframe starts seen, per layer.
    pub keyframes: [u64; 3],
}

impl std::fmt::Debug for StreamStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamStats")
            .field("publisher", &self.publisher)
            .field("audio", &self.audio)
            .field("screen", &self.screen)
            .field("received", &self.received)
            .field("expected", &self.expected())
            .field("layer", &self.layer)
            .field("per_layer", &self.per_layer)
            .field("keyframes", &self.keyframes)
            .finish()
    }
}

impl StreamStats {
    const WINDOW: usize = 4096;

    /// Packets the sequence numbers say were sent.
    pub fn expected(&self) -> u64 {
        match (self.first, self.highest) {
            (Some(a), Some(b)) => b - a + 1,
            _ => 0,
        }
    }

    /// Extended sequence numbers in `first..=highest` never received.
    pub fn missing(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Records a sequence number; false if it was a duplicate.
    fn record(&mut self, sequence_number: u16) -> bool {
        let ext = match self.highest {
            None => 1 << 16 | u64::from(sequence_number),
            Some(highest) => {
                let base = highest & !0xffff;
                let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
                candidates
                    .into_iter()
                    .map(|b| b | u64::from(sequence_number))
                    .min_by_key(|c| c.abs_diff(highest))
                    .unwrap_or(highest)
            }
        };
        if self.window.is_empty() {
            self.window = vec![u64::MAX; Self::WINDOW];
        }
        let slot = (ext as usize) % Self::WINDOW;
        if self.window[slot] == ext {
            return false;
        }
        self.window[slot] = ext;
        self.received += 1;
        self.first = Some(self.first.map_or(ext, |f| f.min(ext)));
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        true
    }
}

/// Everything a participant received.
#[derive(Debug, Default, Clone)]
pub struct ReceiveStats {
    /// By SSRC of the forwarded stream.
    pub streams: HashMap<u32, StreamStats>,
    /// One-way latency of each distinct stamped packet, in microseconds.
    pub latencies_micros: Vec<u32>,
    /// NACKs and keyframe requests this participant's publisher received.
    pub nacks_received: u64,
    pub keyframe_requests: [u64; 3],
    /// Packets thrown away by [`Participant::drop_first_arrivals`].
    pub dropped_on_purpose: u64,
    /// Media packets sent; and those the publish connection refused, and why (the last).
    pub packets_sent: u64,
    /// Datagrams that could not be read (decryption, parsing), and why (the last).
    pub read_errors: u64,
    pub last_read_error: Option<String>,
    pub send_errors: u64,
    pub last_send_error: Option<String>,
}

struct Layer {
    ssrc: u32,
    spec: LayerSpec,
    sequence_number: u16,
    timestamp: u32,
    next_frame: Option<Instant>,
    keyframe_due: bool,
}

struct Audio {
    ssrc: u32,
    bytes: usize,
    sequence_number: u16,
    timestamp: u32,
    next_frame: Option<Instant>,
}

/// Negotiated numbers, read once after the publish answer.
#[derive(Default, Clone, Copy)]
struct Negotiated {
    video_pt: u8,
    audio_pt: u8,
    video_mid: Option<(u8, u8)>,
    audio_mid: Option<(u8, u8)>,
    rid: Option<u8>,
    level: Option<u8>,
}

struct Pc {
    pc: RTCPeerConnection,
    local: SocketAddr,
    connected: bool,
}

/// A synthetic participant. Drive it like any sans-IO connection: feed datagrams
/// and time, take datagrams to send.
pub struct Participant {
    pub id: u32,
    epoch: Instant,
    publish: Pc,
    subscribe: Option<Pc>,
    subscribe_addr: SocketAddr,
    subscribe_ufrag: Option<String>,
    audio_sender: Option<RTCRtpSenderId>,
    video_sender: Option<RTCRtpSenderId>,
    audio: Option<Audio>,
    layers: Vec<Layer>,
    /// The screen track, and whether it is being shared (sending) now.
    screen: Option<(RTCRtpSenderId, Layer)>,
    sharing: bool,
    negotiated: Option<Negotiated>,
    receivers: HashMap<u32, RTCRtpReceiverId>,
    /// Drops `n` of every `of` forwarded packets the first time they arrive, to
    /// test repair.
    first_arrival_loss: Option<(u32, u32)>,
    loss_counter: u32,
    dropped: HashSet<(u32, u16)>,
    pub stats: ReceiveStats,
}

impl Participant {
    /// A participant whose publish connection uses `publish_addr` and whose
    /// subscribe connection uses `subscribe_addr`. `epoch` is the clock stamps count
    /// from; every participant of one run must share it.
    pub fn new(
        id: u32,
        profile: &Profile,
        publish_addr: SocketAddr,
        subscribe_addr: SocketAddr,
        epoch: Instant,
        now: Instant,
    ) -> Result<Self> {
        let mut pc = new_pc(now, publish_addr, true)?;
        let stream = format!("loadgen-{id}");
        let mut audio = None;
        let mut audio_sender = None;
        if let Some(bytes) = profile.audio_bytes {
            let ssrc = rand::random();
            let track = MediaStreamTrack::new(
                stream.clone(),
                format!("{stream}-audio"),
                format!("{stream}-audio"),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus().rtp_codec,
                    ..Default::default()
                }],
            );
            audio_sender = Some(pc.add_track(track)?);
            audio = Some(Audio {
                ssrc,
                bytes: bytes.max(stamp::OFFSET + stamp::LEN),
                sequence_number: rand::random(),
                timestamp: rand::random(),
                next_frame: None,
            });
        }
        let mut layers = Vec::new();
        let mut video_sender = None;
        if !profile.layers.is_empty() {
            let mut codings = Vec::new();
            for (index, spec) in profile.layers.iter().take(RIDS.len()).enumerate() {
                let ssrc = rand::random();
                codings.push(RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: RIDS[index].to_owned(),
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: vp8().rtp_codec,
                    ..Default::default()
                });
                layers.push(Layer {
                    ssrc,
                    spec: *spec,
                    sequence_number: rand::random(),
                    timestamp: rand::random(),
                    next_frame: None,
                    keyframe_due: true,
                });
            }
            let track = MediaStreamTrack::new(
                stream.clone(),
                format!("{stream}-video"),
                format!("{stream}-video"),
                RtpCodecKind::Video,
                codings,
            );
            video_sender = Some(pc.add_track(track)?);
        }
        Ok(Participant {
            id,
            epoch,
            publish: Pc {
                pc,
                local: publish_addr,
                connected: false,
            },
            subscribe: None,
            subscribe_addr,
            subscribe_ufrag: None,
            audio_sender,
            video_sender,
            audio,
            layers,
            screen: None,
            sharing: false,
            negotiated: None,
            receivers: HashMap::new(),
            first_arrival_loss: None,
            loss_counter: 0,
            dropped: HashSet::new(),
            stats: ReceiveStats::default(),
        })
    }

    /// Drops `n` of every `of` forwarded packets on first arrival (NACK repair
    /// brings them back).
    pub fn drop_first_arrivals(&mut self, n: u32, of: u32) {
        self.first_arrival_loss = Some((n, of));
    }

    /// Adds a screen-share track (one plain VP8 stream, in its own media stream) to
    /// the publish connection and starts sharing (5 frames/s); send a new
    /// [`Participant::publish_offer`] after it.
    pub fn add_screen(&mut self) -> Result<()> {
        let stream = format!("loadgen-{}-screen", self.id);
        let ssrc = rand::random();
        let track = MediaStreamTrack::new(
            stream.clone(),
            format!("{stream}-video"),
            format!("{stream}-video"),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: vp8().rtp_codec,
                ..Default::default()
            }],
        );
        let sender = self.publish.pc.add_track(track)?;
        let layer = Layer {
            ssrc,
            spec: LayerSpec {
                fps: 5,
                packets_per_frame: 2,
                packet_bytes: 1000,
            },
            sequence_number: rand::random(),
            timestamp: rand::random(),
            next_frame: None,
            keyframe_due: true,
        };
        self.screen = Some((sender, layer));
        self.sharing = true;
        Ok(())
    }

    /// Pauses or resumes sending on the screen track, as a browser does when it
    /// swaps the track out and back in (the media section stays negotiated).
    pub fn set_sharing(&mut self, sharing: bool) {
        if sharing
            && !self.sharing
            && let Some((_, layer)) = self.screen.as_mut()
        {
            layer.keyframe_due = true;
            layer.next_frame = None;
        }
        self.sharing = sharing;
    }

    /// The offer for the publish connection.
    pub fn publish_offer(&mut self, now: Instant) -> Result<String> {
        let offer = self.publish.pc.create_offer(None)?;
        self.publish.pc.set_local_description(now, offer)?;
        self.publish
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| anyhow!("no local description"))
    }

    /// Applies the server's answer for the publish connection.
    pub fn publish_answer(&mut self, now: Instant, sdp: String) -> Result<()> {
        self.publish
            .pc
            .set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
        let mut n = Negotiated::default();
        if let Some((pt, extensions)) = self.negotiated_for(self.video_sender, "video")? {
            n.video_pt = pt;
            n.video_mid = extensions.get(MID_URI).map(|id| (*id, 0));
            n.rid = extensions.get(RID_URI).copied();
        }
        if let Some((pt, extensions)) = self.negotiated_for(self.audio_sender, "audio")? {
            n.audio_pt = pt;
            n.audio_mid = extensions.get(MID_URI).map(|id| (*id, 0));
            n.level = extensions.get(AUDIO_LEVEL_URI).copied();
        }
        // The mid the offer gave each kind's media section.
        let local = self
            .publish
            .pc
            .local_description()
            .map(|d| d.sdp)
            .unwrap_or_default();
        let mid_of = |kind: &str| -> Option<u8> {
            let section = local.split("\r\nm=").find(|s| s.starts_with(kind))?;
            section
                .lines()
                .find_map(|l| l.strip_prefix("a=mid:"))
                .and_then(|m| m.trim().parse().ok())
        };
        n.audio_mid = n.audio_mid.zip(mid_of("audio")).map(|((id, _), m)| (id, m));
        n.video_mid = n.video_mid.zip(mid_of("video")).map(|((id, _), m)| (id, m));
        self.negotiated = Some(n);
        Ok(())
    }

    /// The payload type and header extension ids (by URI) negotiated for a sender.
    fn negotiated_for(
        &mut self,
        sender: Option<RTCRtpSenderId>,
        kind: &str,
    ) -> Result<Option<(u8, HashMap<String, u8>)>> {
        let Some(mut sender) = sender.and_then(|id| self.publish.pc.rtp_sender(id)) else {
            return Ok(None);
        };
        let params = sender.get_parameters();
        let pt = params
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .with_context(|| format!("{kind} was not accepted"))?;
        let extensions = params
            .rtp_parameters
            .header_extensions
            .iter()
            .map(|e| (e.uri.clone(), e.id as u8))
            .collect();
        Ok(Some((pt, extensions)))
    }

    /// Answers a subscribe offer (a new connection when its ICE credentials change).
    pub fn subscribe_offer(&mut self, now: Instant, sdp: String) -> Result<String> {
        let ufrag = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .map(|u| u.trim().to_owned());
        if self.subscribe.is_none() || ufrag != self.subscribe_ufrag {
            self.subscribe = Some(Pc {
                pc: new_pc(now, self.subscribe_addr, false)?,
                local: self.subscribe_addr,
                connected: false,
            });
            self.subscribe_ufrag = ufrag;
            self.receivers.clear();
        }
        let pc = &mut self.subscribe.as_mut().expect("just made").pc;
        pc.set_remote_description(now, RTCSessionDescription::offer(sdp)?)?;
        let answer = pc.create_answer(None)?;
        pc.set_local_description(now, answer)?;
        pc.local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| anyhow!("no local description"))
    }

    /// The publish connection is up.
    pub fn publish_connected(&self) -> bool {
        self.publish.connected
    }

    /// Both connections are up.
    pub fn connected(&self) -> bool {
        self.publish.connected && self.subscribe.as_ref().is_some_and(|s| s.connected)
    }

    /// Asks the publisher of the stream with `ssrc` for a keyframe, as a browser
    /// does when it loses a picture.
    pub fn request_keyframe(&mut self, now: Instant, ssrc: u32) -> Result<()> {
        let receiver = *self.receivers.get(&ssrc).context("no such stream")?;
        let pc = &mut self.subscribe.as_mut().context("not subscribed")?.pc;
        let mut r = pc.rtp_receiver(receiver).context("no receiver")?;
        r.write_rtcp(
            now,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            })],
        )?;
        Ok(())
    }

    /// Reports a downlink estimate (REMB) for everything received, as a browser does.
    pub fn report_bandwidth(&mut self, now: Instant, bits_per_second: u64) -> Result<()> {
        let ssrcs: Vec<u32> = self.receivers.keys().copied().collect();
        let receiver = *self
            .receivers
            .values()
            .next()
            .context("nothing received yet")?;
        let pc = &mut self.subscribe.as_mut().context("not subscribed")?.pc;
        let mut r = pc.rtp_receiver(receiver).context("no receiver")?;
        r.write_rtcp(
            now,
            vec![Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 0,
                bitrate: bits_per_second as f32,
                ssrcs,
            })],
        )?;
        Ok(())
    }

    /// A datagram arrived at `local` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) {
        self.handle_datagram_arrived(now, now, local, from, data);
    }

    /// A datagram that reached the socket at `arrived` (the kernel's receive time,
    /// at or before `now`), handled at `now`: the latency recorded for the packet
    /// it carries runs to `arrived`, so the time it waited in the socket for this
    /// participant's turn is not counted as the server's.
    pub fn handle_datagram_arrived(
        &mut self,
        now: Instant,
        arrived: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) {
        if local == self.subscribe_addr && self.lose_on_purpose(&data) {
            return;
        }
        let pc = if local == self.publish.local {
            &mut self.publish
        } else if let Some(s) = self.subscribe.as_mut().filter(|s| s.local == local) {
            s
        } else {
            return;
        };
        if let Err(err) = pc.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: data,
        }) {
            self.stats.read_errors += 1;
            self.stats.last_read_error = Some(err.to_string());
        }
        self.drain(arrived.min(now));
    }

    /// Whether the simulated network loses this datagram: SRTP keeps the RTP header in
    /// clear, so a packet is known by SSRC and sequence number, and the copy sent again
    /// after a NACK gets through.
    fn lose_on_purpose(&mut self, data: &[u8]) -> bool {
        let Some((n, of)) = self.first_arrival_loss else {
            return false;
        };
        let is_rtp = data.len() >= 12 && data[0] >> 6 == 2 && !(64..96).contains(&(data[1] & 0x7f));
        if !is_rtp {
            return false;
        }
        let sequence_number = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let key = (ssrc, sequence_number);
        if self.dropped.remove(&key) {
            return false;
        }
        self.loss_counter = self.loss_counter.wrapping_add(1);
        if self.loss_counter % of < n {
            self.dropped.insert(key);
            self.stats.dropped_on_purpose += 1;
            return true;
        }
        false
    }

    /// Runs timers and sends the media that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.publish.pc.handle_timeout(now);
        if let Some(s) = self.subscribe.as_mut() {
            let _ = s.pc.handle_timeout(now);
        }
        self.send_media(now);
        self.drain(now);
    }

    /// When [`Participant::handle_timeout`] must next run.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let media = self
            .layers
            .iter()
            .filter_map(|l| l.next_frame)
            .chain(self.audio.as_ref().and_then(|a| a.next_frame));
        self.publish
            .pc
            .poll_timeout()
            .into_iter()
            .chain(self.subscribe.as_mut().and_then(|s| s.pc.poll_timeout()))
            .chain(media)
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        for pc in std::iter::once(&mut self.publish).chain(self.subscribe.as_mut()) {
            if let Some(out) = pc.pc.poll_write() {
                return Some(Datagram {
                    from: pc.local,
                    to: out.transport.peer_addr,
                    data: out.message,
                });
            }
        }
        None
    }

    fn send_media(&mut self, now: Instant) {
        if !self.publish.connected {
            return;
        }
        let Some(n) = self.negotiated else {
            return;
        };
        let sent_micros = now.saturating_duration_since(self.epoch).as_micros() as u64;
        if let (Some(audio), Some(sender)) = (self.audio.as_mut(), self.audio_sender) {
            let due = audio.next_frame.get_or_insert(now);
            if *due <= now {
                *due += AUDIO_INTERVAL;
                let mut payload = vec![0u8; audio.bytes];
                payload[0] = 0x78; // Opus TOC: SILK+CELT hybrid, 20 ms
                Stamp {
                    publisher: self.id,
                    layer: Stamp::AUDIO,
                    sent_micros,
                }
                .write(&mut payload);
                let mut header = rtp::header::Header {
                    version: 2,
                    payload_type: n.audio_pt,
                    sequence_number: audio.sequence_number,
                    timestamp: audio.timestamp,
                    ssrc: audio.ssrc,
                    ..Default::default()
                };
                audio.sequence_number = audio.sequence_number.wrapping_add(1);
                audio.timestamp = audio.timestamp.wrapping_add(960);
                if let Some((id, mid)) = n.audio_mid {
                    let _ = header.set_extension(id, Bytes::from(mid.to_string()));
                }
                if let Some(id) = n.level {
                    // Voice active, a level that differs by participant.
                    let level = 0x80 | (20 + (self.id % 40) as u8);
                    let _ = header.set_extension(id, Bytes::copy_from_slice(&[level]));
                }
                write_media(
                    &mut self.publish.pc,
                    &mut self.stats,
                    now,
                    sender,
                    header,
                    payload,
                );
            }
        }
        if let Some(sender) = self.video_sender {
            for (index, layer) in self.layers.iter_mut().enumerate() {
                let mut extensions = Vec::new();
                if let Some((id, mid)) = n.video_mid {
                    extensions.push((id, Bytes::from(mid.to_string())));
                }
                if let Some(id) = n.rid {
                    extensions.push((id, Bytes::from_static(RIDS[index].as_bytes())));
                }
                let stamp = Stamp {
                    publisher: self.id,
                    layer: index as u8,
                    sent_micros,
                };
                send_frame_if_due(
                    &mut self.publish.pc,
                    &mut self.stats,
                    now,
                    sender,
                    layer,
                    stamp,
                    n.video_pt,
                    &extensions,
                );
            }
        }
        if let Some((sender, layer)) = self.screen.as_mut().filter(|_| self.sharing) {
            // The screen's SSRC is in the SDP: no mid or rid needed.
            let stamp = Stamp {
                publisher: self.id,
                layer: Stamp::SCREEN,
                sent_micros,
            };
            send_frame_if_due(
                &mut self.publish.pc,
                &mut self.stats,
                now,
                *sender,
                layer,
                stamp,
                n.video_pt,
                &[],
            );
        }
    }

    /// Takes what the connections produced; `arrived` is when the input that
    /// produced it reached the socket (for the latency of stamped packets).
    fn drain(&mut self, arrived: Instant) {
        while let Some(event) = self.publish.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                self.publish.connected = state == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(message) = self.publish.pc.poll_read() {
            if let RTCMessage::RtcpPacket(_, packets) = message.message {
                for packet in packets {
                    let any = packet.as_any();
                    let ssrcs: Vec<u32> =
                        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                            vec![pli.media_ssrc]
                        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                            fir.fir.iter().map(|e| e.ssrc).collect()
                        } else {
                            if any.downcast_ref::<TransportLayerNack>().is_some() {
                                self.stats.nacks_received += 1;
                            }
                            Vec::new()
                        };
                    for ssrc in ssrcs {
                        if let Some(index) = self.layers.iter().position(|l| l.ssrc == ssrc) {
                            self.layers[index].keyframe_due = true;
                            self.stats.keyframe_requests[index] += 1;
                        }
                        if let Some((_, layer)) = self.screen.as_mut()
                            && layer.ssrc == ssrc
                        {
                            layer.keyframe_due = true;
                        }
                    }
                }
            }
        }
        let Some(sub) = self.subscribe.as_mut() else {
            return;
        };
        while let Some(event) = sub.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    sub.connected = state == RTCPeerConnectionState::Connected;
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    self.receivers.insert(init.ssrc, init.receiver_id);
                }
                _ => {}
            }
        }
        while let Some(message) = sub.pc.poll_read() {
            let RTCMessage::RtpPacket(_, packet) = message.message else {
                continue;
            };
            let stats = self.stats.streams.entry(packet.header.ssrc).or_default();
            if !stats.record(packet.header.sequence_number) {
                continue;
            }
            if let Some(stamp) = Stamp::read(&packet.payload) {
                stats.publisher = Some(stamp.publisher);
                let layer = if stamp.layer == Stamp::SCREEN {
                    stats.screen = true;
                    0
                } else {
                    stamp.layer
                };
                if stamp.layer == Stamp::AUDIO {
                    stats.audio = true;
                } else if let Some(count) = stats.per_layer.get_mut(layer as usize) {
                    *count += 1;
                    stats.layer = Some(layer);
                    if packet.payload.len() > 6
                        && packet.payload[0] & 0x10 != 0
                        && packet.payload[1] & 0x01 == 0
                    {
                        stats.keyframes[layer as usize] += 1;
                    }
                }
                let sent = self.epoch + Duration::from_micros(stamp.sent_micros);
                let latency = arrived.saturating_duration_since(sent).as_micros();
                self.stats
                    .latencies_micros
                    .push(latency.min(u128::from(u32::MAX)) as u32);
            }
        }
    }
}

/// Sends one video frame of `layer` if it is due (a keyframe when one was asked for).
#[allow(clippy::too_many_arguments)]
fn send_frame_if_due(
    pc: &mut RTCPeerConnection,
    stats: &mut ReceiveStats,
    now: Instant,
    sender: RTCRtpSenderId,
    layer: &mut Layer,
    stamp: Stamp,
    payload_type: u8,
    extensions: &[(u8, Bytes)],
) {
    let due = layer.next_frame.get_or_insert(now);
    if *due > now {
        return;
    }
    let interval = Duration::from_secs(1) / layer.spec.fps.max(1);
    *due += interval;
    let keyframe = std::mem::take(&mut layer.keyframe_due);
    // Keyframes are about three times the size of a delta frame.
    let packets = layer.spec.packets_per_frame * if keyframe { 3 } else { 1 };
    for i in 0..packets {
        let mut payload = vec![0u8; layer.spec.packet_bytes.max(stamp::OFFSET + stamp::LEN)];
        if i == 0 {
            payload[0] = 0x10; // VP8 descriptor: start of partition 0
            if keyframe {
                payload[1] = 0x10; // frame header: show_frame, key frame
                payload[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            } else {
                payload[1] = 0x11;
            }
        }
        stamp.write(&mut payload);
        let mut header = rtp::header::Header {
            version: 2,
            marker: i + 1 == packets,
            payload_type,
            sequence_number: layer.sequence_number,
            timestamp: layer.timestamp,
            ssrc: layer.ssrc,
            ..Default::default()
        };
        layer.sequence_number = layer.sequence_number.wrapping_add(1);
        for (id, value) in extensions {
            let _ = header.set_extension(*id, value.clone());
        }
        write_media(pc, stats, now, sender, header, payload);
    }
    layer.timestamp = layer
        .timestamp
        .wrapping_add(VIDEO_CLOCK / layer.spec.fps.max(1));
}

/// Sends one media packet on the publish connection, counting it or why it failed.
fn write_media(
    pc: &mut RTCPeerConnection,
    stats: &mut ReceiveStats,
    now: Instant,
    sender: RTCRtpSenderId,
    header: rtp::header::Header,
    payload: Vec<u8>,
) {
    let packet = rtp::Packet {
        header,
        payload: payload.into(),
    };
    let sent = match pc.rtp_sender(sender) {
        Some(mut s) => s.write_rtp(now, packet).map_err(|e| e.to_string()),
        None => Err("the sender is gone".to_owned()),
    };
    match sent {
        Ok(()) => stats.packets_sent += 1,
        Err(err) => {
            stats.send_errors += 1;
            stats.last_send_error = Some(err);
        }
    }
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

fn vp8() -> RTCRtpCodecParameters {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: VIDEO_CLOCK,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![
                feedback("ccm", "fir"),
                feedback("nack", ""),
                feedback("nack", "pli"),
            ],
        },
        payload_type: 96,
    }
}

fn new_pc(now: Instant, local: SocketAddr, publish: bool) -> Result<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    media.register_codec(opus(), RtpCodecKind::Audio)?;
    media.register_codec(vp8(), RtpCodecKind::Video)?;
    if publish {
        for uri in [MID_URI, RID_URI] {
            media.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: uri.to_owned(),
                },
                RtpCodecKind::Video,
                None,
            )?;
        }
        for uri in [MID_URI, AUDIO_LEVEL_URI] {
            media.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: uri.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )?;
        }
    }
    let registry = configure_nack(Registry::new(), &mut media);
    let registry = configure_rtcp_reports(registry).with(Slot::Custom(20_000), AllRtcp::default());
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(SettingEngineBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(now)?;
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    Ok(pc)
}

/// webrtc-rs keeps inbound RTCP inside its interceptor chain unless a packet is
/// marked for the application; a participant wants all of it (keyframe requests,
/// NACK counts).
#[derive(Default)]
struct AllRtcp {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for AllRtcp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if matches!(msg.message.packet, Packet::Rtcp(_)) {
            msg.message.attributes.push(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for AllRtcp {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
