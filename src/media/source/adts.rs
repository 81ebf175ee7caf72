//! ADTS (the framing `ffmpeg -f adts` and most AAC encoders write to a pipe) into raw AAC
//! access units and their AudioSpecificConfig. I/O-free; resynchronises on garbage.

use bytes::{Bytes, BytesMut};

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// What an ADTS header says about the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdtsConfig {
    pub sample_rate: u32,
    pub channels: u16,
    /// The 2-byte AudioSpecificConfig for the `esds` box.
    pub asc: [u8; 2],
}

/// Splits ADTS bytes into `(config, raw access unit)`.
#[derive(Default)]
pub struct AdtsSplitter {
    buf: BytesMut,
}

impl AdtsSplitter {
    /// Appends `data`; pushes every complete frame to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<(AdtsConfig, Bytes)>) {
        self.buf.extend_from_slice(data);
        loop {
            // Find a sync word.
            let Some(at) = self
                .buf
                .windows(2)
                .position(|w| w[0] == 0xff && w[1] & 0xf6 == 0xf0)
            else {
                let keep = self.buf.len().min(1);
                let _ = self.buf.split_to(self.buf.len() - keep);
                return;
            };
            let _ = self.buf.split_to(at);
            if self.buf.len() < 7 {
                return;
            }
            let h = &self.buf[..7];
            let crc_absent = h[1] & 1 == 1;
            let object_type = (h[2] >> 6) + 1;
            let rate_idx = (h[2] >> 2) & 0xf;
            let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
            let len =
                (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            let header = if crc_absent { 7 } else { 9 };
            let raw_blocks = h[6] & 3;
            if usize::from(rate_idx) >= RATES.len()
                || channels == 0
                || len <= header
                || raw_blocks != 0
            {
                // Not a usable header (or a multi-block frame we do not split): skip a byte.
                let _ = self.buf.split_to(1);
                continue;
            }
            if self.buf.len() < len {
                return;
            }
            let frame = self.buf.split_to(len).freeze();
            let asc = [
                (object_type << 3) | (rate_idx >> 1),
                ((rate_idx & 1) << 7) | (channels << 3),
            ];
            out.push((
                AdtsConfig {
                    sample_rate: RATES[usize::from(rate_idx)],
                    channels: u16::from(channels),
                    asc,
                },
                frame.slice(header..),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adts(payload: &[u8]) -> Vec<u8> {
        // AAC-LC (2), 48 kHz (3), stereo, no CRC.
        let len = payload.len() + 7;
        let mut h = vec![
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (2 << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            ((len as u8 & 7) << 5) | 0x1f,
            0xfc,
        ];
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn frames_are_split_with_their_config_across_any_read_boundaries() {
        let mut stream = vec![0x12, 0x34];
        stream.extend(adts(&[1, 2, 3]));
        stream.extend(adts(&[4; 300]));
        for chunk in [1, 5, 1000] {
            let mut s = AdtsSplitter::default();
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                s.push(c, &mut out);
            }
            assert_eq!(out.len(), 2, "chunk {chunk}");
            assert_eq!(&out[0].1[..], &[1, 2, 3]);
            assert_eq!(out[1].1.len(), 300);
            assert_eq!(out[0].0.sample_rate, 48000);
            assert_eq!(out[0].0.channels, 2);
            assert_eq!(out[0].0.asc, [0x11, 0x90], "AAC-LC 48 kHz stereo");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 77u64;
        let mut s = AdtsSplitter::default();
        let mut out = Vec::new();
        for _ in 0..5000 {
            let chunk: Vec<u8> = (0..13)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x % 5 == 0 {
                        0xff
                    } else {
                        x as u8
                    }
                })
                .collect();
            s.push(&chunk, &mut out);
        }
        assert!(out.iter().all(|(c, _)| c.channels > 0));
    }
}
