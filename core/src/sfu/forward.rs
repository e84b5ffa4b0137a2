//! Per-subscriber forwarding decisions, free of I/O: which simulcast layer a
//! subscriber gets, when a switch may happen (only on a keyframe of the new layer),
//! and how sequence numbers and timestamps are rewritten so the subscriber sees one
//! continuous stream whatever layer, or publisher restart, it came from.

/// Simulcast layers a publisher may send, lowest first.
pub const MAX_LAYERS: usize = 3;

/// What to do with one incoming packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketDecision {
    /// Send it with these rewritten numbers.
    Forward {
        sequence_number: u16,
        timestamp: u32,
    },
    /// Not for this subscriber (another layer, or waiting for a keyframe).
    Drop,
}

/// Chooses and switches the layer one subscriber receives from one video source,
/// and keeps its outgoing numbering continuous.
#[derive(Debug, Clone)]
pub struct LayerForwarder {
    /// The layer being forwarded, once a keyframe started it.
    current: Option<usize>,
    /// The layer wanted; differs from `current` while waiting for its keyframe.
    target: usize,
    /// A keyframe request is owed to the publisher for `target`.
    keyframe_wanted: bool,
    rewriter: Rewriter,
}

impl LayerForwarder {
    /// Starts wanting `target`; nothing is forwarded until its first keyframe.
    pub fn new(target: usize) -> Self {
        Self {
            current: None,
            target,
            keyframe_wanted: true,
            rewriter: Rewriter::default(),
        }
    }

    /// The layer now being forwarded.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The layer this subscriber should get.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Asks for another layer; the switch happens at its next keyframe.
    pub fn set_target(&mut self, target: usize) {
        if target != self.target {
            self.target = target;
            self.keyframe_wanted = self.current != Some(target);
        }
    }

    /// Starts over at the next keyframe of the target layer (the subscriber's
    /// connection just came up, and what was sent before it may be lost).
    pub fn resync(&mut self) {
        self.current = None;
        self.keyframe_wanted = true;
    }

    /// True once per needed keyframe request: the caller sends a PLI for `target`.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    /// Decides for a packet of `layer`. A keyframe of the target layer switches to it.
    pub fn on_packet(
        &mut self,
        layer: usize,
        sequence_number: u16,
        timestamp: u32,
        starts_keyframe: bool,
    ) -> PacketDecision {
        if layer == self.target && self.current != Some(layer) {
            if !starts_keyframe {
                return PacketDecision::Drop;
            }
            self.current = Some(layer);
            self.rewriter.new_origin(sequence_number, timestamp);
        }
        if self.current != Some(layer) {
            return PacketDecision::Drop;
        }
        let (sequence_number, timestamp) = self.rewriter.map(sequence_number, timestamp);
        PacketDecision::Forward {
            sequence_number,
            timestamp,
        }
    }

    /// A packet of `layer` that is not forwarded (padding used by the publisher to probe
    /// bandwidth): if it is on the forwarded layer, close the gap it would leave, so
    /// the subscriber does not ask for it again and again.
    pub fn skip(&mut self, layer: usize, sequence_number: u16) {
        if self.current == Some(layer) {
            self.rewriter.skip(sequence_number);
        }
    }

    /// The publisher stopped sending `layer` (or left): forward nothing until a keyframe.
    pub fn layer_gone(&mut self, layer: usize) {
        if self.current == Some(layer) {
            self.current = None;
            self.keyframe_wanted = true;
        }
    }
}

/// Rewrites (sequence number, timestamp) from several origins into one continuous
/// outgoing series.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    seq_offset: u16,
    ts_offset: u32,
    last_out: Option<(u16, u32)>,
    /// Highest incoming sequence number seen since the last origin.
    highest_in: Option<u16>,
}

impl Rewriter {
    /// Packets from now on come from a new series starting at (`seq`, `ts`): continue
    /// right after the last forwarded packet.
    pub fn new_origin(&mut self, seq: u16, ts: u32) {
        match self.last_out {
            Some((last_seq, last_ts)) => {
                self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
                // One 90 kHz tick per ~11 µs is invisible; +1 keeps timestamps increasing.
                self.ts_offset = last_ts.wrapping_add(1).wrapping_sub(ts);
            }
            None => {
                self.seq_offset = 0;
                self.ts_offset = 0;
            }
        }
        self.highest_in = None;
    }

    /// Leaves out an incoming packet without a gap in the outgoing numbers. Only an
    /// in-order packet can be left out; a late one is ignored.
    pub fn skip(&mut self, seq: u16) {
        let newer = self
            .highest_in
            .is_none_or(|h| seq.wrapping_sub(h) < 0x8000 && seq != h);
        if newer {
            self.highest_in = Some(seq);
            self.seq_offset = self.seq_offset.wrapping_sub(1);
        }
    }

    /// The outgoing numbers for an incoming packet.
    pub fn map(&mut self, seq: u16, ts: u32) -> (u16, u32) {
        let out = (
            seq.wrapping_add(self.seq_offset),
            ts.wrapping_add(self.ts_offset),
        );
        let newer = self
            .highest_in
            .is_none_or(|h| seq.wrapping_sub(h) < 0x8000 && seq != h);
        if newer {
            self.highest_in = Some(seq);
            self.last_out = Some(out);
        }
        out
    }
}

/// Whether an RTP payload starts a keyframe, for the codecs Confab forwards.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::H264 => h264_starts_keyframe(payload),
        VideoCodec::Other => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
    Other,
}

impl VideoCodec {
    pub fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case("video/vp8") {
            Self::Vp8
        } else if mime.eq_ignore_ascii_case("video/h264") {
            Self::H264
        } else {
            Self::Other
        }
    }
}

/// RFC 7741: the payload descriptor, then (at the start of a partition) the VP8
/// frame header, whose lowest bit is 0 for a keyframe.
fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut at = 1;
    if extended {
        let Some(&x) = payload.get(at) else {
            return false;
        };
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// RFC 6184: an IDR slice or SPS, alone, at the start of a fragment, or in a STAP-A.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let is_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match first & 0x1f {
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while at + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if is_key(payload[at + 2] & 0x1f) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        nal_type => is_key(nal_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: descriptor with a 15-bit picture id, then a frame header.
    fn vp8(keyframe: bool, start: bool) -> Vec<u8> {
        let s = if start { 0x10 } else { 0 };
        vec![
            0x80 | s,
            0x80,
            0x81,
            0x23,
            if keyframe { 0x10 } else { 0x11 },
            0,
            0,
        ]
    }

    #[test]
    fn vp8_keyframes_are_recognised() {
        assert!(starts_keyframe(VideoCodec::Vp8, &vp8(true, true)));
        assert!(!starts_keyframe(VideoCodec::Vp8, &vp8(false, true)));
        assert!(!starts_keyframe(VideoCodec::Vp8, &vp8(true, false)));
        // No extension: descriptor byte, then the header.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x50]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80]));
    }

    #[test]
    fn h264_keyframes_are_recognised() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 1, 2]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 1, 2]));
        // STAP-A holding an SPS.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0]
        ));
        // FU-A start of an IDR slice, and a continuation of one.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0]));
    }

    #[test]
    fn nothing_is_forwarded_before_the_first_keyframe() {
        let mut f = LayerForwarder::new(2);
        assert!(
            f.take_keyframe_request(),
            "a new subscriber asks for a keyframe"
        );
        assert!(!f.take_keyframe_request(), "only once");
        assert_eq!(f.on_packet(2, 10, 900, false), PacketDecision::Drop);
        assert_eq!(
            f.on_packet(2, 11, 1800, true),
            PacketDecision::Forward {
                sequence_number: 11,
                timestamp: 1800
            }
        );
        assert_eq!(
            f.on_packet(0, 500, 1800, true),
            PacketDecision::Drop,
            "other layers are dropped"
        );
    }

    #[test]
    fn a_layer_switch_asks_for_a_keyframe_and_waits_for_it() {
        let mut f = LayerForwarder::new(2);
        f.take_keyframe_request();
        f.on_packet(2, 100, 9000, true);
        f.on_packet(2, 101, 9000, false);
        f.set_target(0);
        assert!(
            f.take_keyframe_request(),
            "switching asks the publisher for a keyframe"
        );
        // Until the low layer's keyframe arrives, the high layer keeps flowing.
        assert!(matches!(
            f.on_packet(0, 7000, 3000, false),
            PacketDecision::Drop
        ));
        assert_eq!(
            f.on_packet(2, 102, 12000, false),
            PacketDecision::Forward {
                sequence_number: 102,
                timestamp: 12000
            }
        );
        // The keyframe switches; numbering continues right after 102.
        assert_eq!(
            f.on_packet(0, 7001, 6000, true),
            PacketDecision::Forward {
                sequence_number: 103,
                timestamp: 12001
            }
        );
        assert_eq!(f.current(), Some(0));
        assert_eq!(f.on_packet(2, 103, 15000, true), PacketDecision::Drop);
        assert_eq!(
            f.on_packet(0, 7002, 9000, false),
            PacketDecision::Forward {
                sequence_number: 104,
                timestamp: 15001
            }
        );
    }

    #[test]
    fn rewriting_survives_wraparound_and_reordering() {
        let mut r = Rewriter::default();
        r.new_origin(65534, u32::MAX - 10);
        assert_eq!(r.map(65534, u32::MAX - 10), (65534, u32::MAX - 10));
        assert_eq!(r.map(65535, u32::MAX - 10), (65535, u32::MAX - 10));
        assert_eq!(r.map(1, 5), (1, 5));
        // A late packet maps consistently but does not move the continuation point.
        assert_eq!(r.map(0, 5), (0, 5));
        r.new_origin(40000, 77);
        assert_eq!(r.map(40000, 77), (2, 6));
    }

    #[test]
    fn skipped_padding_leaves_no_gap() {
        let mut f = LayerForwarder::new(0);
        f.on_packet(0, 10, 100, true);
        f.skip(0, 11);
        f.skip(0, 12);
        f.skip(2, 500); // another layer: nothing to close
        assert_eq!(
            f.on_packet(0, 13, 200, false),
            PacketDecision::Forward {
                sequence_number: 11,
                timestamp: 200
            }
        );
        // A packet lost upstream stays a gap the subscriber can ask for.
        assert_eq!(
            f.on_packet(0, 15, 300, false),
            PacketDecision::Forward {
                sequence_number: 13,
                timestamp: 300
            }
        );
    }

    #[test]
    fn losing_the_forwarded_layer_waits_for_a_new_keyframe() {
        let mut f = LayerForwarder::new(1);
        f.take_keyframe_request();
        f.on_packet(1, 1, 1, true);
        f.layer_gone(1);
        assert!(f.take_keyframe_request());
        assert_eq!(f.on_packet(1, 2, 2, false), PacketDecision::Drop);
    }
}
