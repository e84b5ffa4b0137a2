//! The marker every synthetic payload carries, after the few codec bytes the SFU
//! reads (VP8 payload descriptor and frame header, Opus TOC).

/// Where the stamp starts in a payload.
pub const OFFSET: usize = 10;
const MAGIC: [u8; 4] = *b"CFLG";
/// Bytes a stamp takes.
pub const LEN: usize = 4 + 4 + 1 + 1 + 8;

/// Who sent a payload, on which layer, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    /// 0–2 for camera layers, [`Stamp::SCREEN`] for a screen, [`Stamp::AUDIO`] for audio.
    pub layer: u8,
    /// Microseconds since the generator's epoch.
    pub sent_micros: u64,
}

impl Stamp {
    pub const AUDIO: u8 = 0xff;
    pub const SCREEN: u8 = 0xfe;

    /// Writes the stamp at [`OFFSET`]; `payload` must be at least `OFFSET + LEN` long.
    pub fn write(&self, payload: &mut [u8]) {
        let at = &mut payload[OFFSET..OFFSET + LEN];
        at[..4].copy_from_slice(&MAGIC);
        at[4..8].copy_from_slice(&self.publisher.to_be_bytes());
        at[8] = self.layer;
        at[9] = 0;
        at[10..18].copy_from_slice(&self.sent_micros.to_be_bytes());
    }

    /// Reads a stamp, if `payload` has one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let at = payload.get(OFFSET..OFFSET + LEN)?;
        if at[..4] != MAGIC {
            return None;
        }
        Some(Stamp {
            publisher: u32::from_be_bytes(at[4..8].try_into().ok()?),
            layer: at[8],
            sent_micros: u64::from_be_bytes(at[10..18].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_foreign_payloads_have_none() {
        let stamp = Stamp {
            publisher: 7,
            layer: 2,
            sent_micros: 123_456_789,
        };
        let mut payload = vec![0u8; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert_eq!(Stamp::read(&[0u8; 64]), None);
        assert_eq!(Stamp::read(&payload[..20]), None);
    }
}
