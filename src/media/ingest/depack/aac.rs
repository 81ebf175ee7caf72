//! AAC over RTP, RFC 3640 `mpeg4-generic` in AAC-hbr mode: a 16-bit AU-headers-length,
//! AU headers of `sizelength` + `indexlength` bits (13 + 3), then the access units. Several
//! AUs per packet, and one AU fragmented over several packets (marker on the last), are
//! both handled. Interleaving (a non-zero AU-Index-delta) is refused.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{DepackError, Rtp, SeqCheck, Sequence, Timeline, Unit, MAX_QUEUED_UNITS};
use crate::media::frame::{AudioCodec, AudioParams};

/// Largest AAC access unit (6144 bits per channel, 8 channels).
const MAX_AU: usize = 6144;

fn bad(reason: impl Into<String>) -> DepackError {
    DepackError::Payload {
        codec: "AAC",
        reason: reason.into(),
    }
}

#[derive(Debug)]
pub struct Aac {
    params: AudioParams,
    /// RTP ticks per access unit.
    step: i64,
    seq: Sequence,
    timeline: Timeline,
    /// A fragmented AU: expected size and bytes so far.
    frag: Option<(usize, BytesMut)>,
    out: VecDeque<Unit>,
}

impl Aac {
    /// From the SDP: the RTP clock rate and the fmtp `config` (AudioSpecificConfig in hex),
    /// `sizelength`, `indexlength` and `indexdeltalength`.
    pub fn new(clock_rate: u32, fmtp: &[(String, String)]) -> Result<Aac, String> {
        let get = |k: &str| {
            fmtp.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let mode = get("mode").unwrap_or("");
        if !mode.eq_ignore_ascii_case("AAC-hbr") {
            return Err(format!(
                "mpeg4-generic mode \"{mode}\" (supported: AAC-hbr)"
            ));
        }
        for (k, want) in [
            ("sizelength", "13"),
            ("indexlength", "3"),
            ("indexdeltalength", "3"),
        ] {
            if get(k).is_some_and(|v| v.trim() != want) {
                return Err(format!("{k}={} (supported: {want})", get(k).unwrap_or("")));
            }
        }
        let hex = get("config").ok_or("no config= (AudioSpecificConfig) in the fmtp")?;
        let config = decode_hex(hex).ok_or_else(|| format!("config={hex} is not hex"))?;
        let info = crate::media::codec::aac::parse_asc(&config).map_err(|e| e.to_string())?;
        if clock_rate == 0 {
            return Err("RTP clock rate 0".into());
        }
        let step = i64::from(info.frame_samples) * i64::from(clock_rate)
            / i64::from(info.sample_rate.max(1));
        Ok(Aac {
            params: AudioParams {
                codec: AudioCodec::Aac,
                sample_rate: info.sample_rate,
                channels: info.channels.max(1),
                config: Bytes::from(config),
                timescale: clock_rate,
                frame_samples: step.clamp(1, 1 << 20) as u32,
            },
            step: step.max(1),
            seq: Sequence::default(),
            timeline: Timeline::default(),
            frag: None,
            out: VecDeque::new(),
        })
    }

    pub fn params(&self) -> &AudioParams {
        &self.params
    }

    pub fn pull(&mut self) -> Option<Unit> {
        self.out.pop_front()
    }

    fn emit(&mut self, pts: i64, data: Bytes) {
        if self.out.len() >= MAX_QUEUED_UNITS {
            self.out.pop_front();
        }
        self.out.push_back(Unit {
            pts,
            keyframe: true,
            data,
        });
    }

    pub fn push(&mut self, pkt: &Rtp<'_>) -> Result<(), DepackError> {
        match self.seq.check(pkt.seq) {
            SeqCheck::Old => return Ok(()),
            SeqCheck::Gap => self.frag = None,
            SeqCheck::InOrder => {}
        }
        let pts = self.timeline.extend(pkt.timestamp);
        let p = pkt.payload;
        let bits = usize::from(u16::from_be_bytes([
            *p.first().ok_or_else(|| bad("empty payload"))?,
            *p.get(1).ok_or_else(|| bad("truncated AU-headers-length"))?,
        ]));
        if bits == 0 || bits % 16 != 0 {
            self.frag = None;
            return Err(bad(format!(
                "AU-headers-length {bits} is not a multiple of 16"
            )));
        }
        let n = bits / 16;
        let headers = p
            .get(2..2 + 2 * n)
            .ok_or_else(|| bad("truncated AU headers"))?;
        let mut data = &p[2 + 2 * n..];
        if let Some((size, mut buf)) = self.frag.take() {
            // Continuation of a fragmented AU: one header giving the whole AU's size.
            let h = u16::from_be_bytes([headers[0], headers[1]]);
            if n != 1 || usize::from(h >> 3) != size || buf.len() + data.len() > size {
                return Err(bad("fragmented access unit does not continue"));
            }
            buf.extend_from_slice(data);
            if buf.len() == size {
                self.emit(pts, buf.freeze());
            } else if pkt.marker {
                return Err(bad("fragmented access unit ended short"));
            } else {
                self.frag = Some((size, buf));
            }
            return Ok(());
        }
        for (i, h) in headers.chunks_exact(2).enumerate() {
            let h = u16::from_be_bytes([h[0], h[1]]);
            let (size, index) = (usize::from(h >> 3), h & 7);
            if index != 0 {
                return Err(bad(
                    "interleaved access units (AU-Index not 0) are not supported",
                ));
            }
            if size == 0 || size > MAX_AU {
                return Err(bad(format!("access unit size {size}")));
            }
            let au_pts = pts + i as i64 * self.step;
            if size > data.len() {
                if n == 1 && !pkt.marker {
                    let mut buf = BytesMut::with_capacity(size);
                    buf.extend_from_slice(data);
                    self.frag = Some((size, buf));
                    return Ok(());
                }
                return Err(bad(format!(
                    "access unit of {size} bytes but {} left",
                    data.len()
                )));
            }
            self.emit(au_pts, Bytes::copy_from_slice(&data[..size]));
            data = &data[size..];
        }
        Ok(())
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || s.len() > 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmtp(config: &str) -> Vec<(String, String)> {
        [
            ("profile-level-id", "1"),
            ("mode", "AAC-hbr"),
            ("sizelength", "13"),
            ("indexlength", "3"),
            ("indexdeltalength", "3"),
            ("config", config),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 97 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    fn au_payload(sizes: &[usize]) -> Vec<u8> {
        let mut p = ((sizes.len() * 16) as u16).to_be_bytes().to_vec();
        for s in sizes {
            p.extend_from_slice(&((*s as u16) << 3).to_be_bytes());
        }
        for (i, s) in sizes.iter().enumerate() {
            p.extend(std::iter::repeat_n(i as u8, *s));
        }
        p
    }

    #[test]
    fn config_gives_rate_channels_and_step() {
        let a = Aac::new(48_000, &fmtp("1188")).unwrap();
        assert_eq!(a.params().sample_rate, 48_000);
        assert_eq!(a.params().channels, 1);
        assert_eq!(a.params().frame_samples, 1024);
        assert!(Aac::new(48_000, &fmtp("zz")).is_err());
        let mut f = fmtp("1188");
        f[1].1 = "AAC-lbr".into();
        assert!(Aac::new(48_000, &f).is_err());
    }

    #[test]
    fn several_access_units_in_one_packet_get_consecutive_timestamps() {
        let mut a = Aac::new(48_000, &fmtp("1188")).unwrap();
        a.push(&Rtp::parse(&pkt(1, 1000, true, &au_payload(&[5, 7]))).unwrap())
            .unwrap();
        let u1 = a.pull().unwrap();
        let u2 = a.pull().unwrap();
        assert_eq!((u1.pts, u2.pts), (0, 1024));
        assert_eq!((u1.data.len(), u2.data.len()), (5, 7));
        assert!(a.pull().is_none());
    }

    #[test]
    fn a_fragmented_access_unit_is_reassembled_and_a_lost_fragment_drops_it() {
        let mut a = Aac::new(48_000, &fmtp("1188")).unwrap();
        let mut first = au_payload(&[10]);
        first.truncate(4 + 6);
        let mut second = au_payload(&[10]);
        second.drain(4..10);
        a.push(&Rtp::parse(&pkt(1, 0, false, &first)).unwrap())
            .unwrap();
        a.push(&Rtp::parse(&pkt(2, 0, true, &second)).unwrap())
            .unwrap();
        assert_eq!(a.pull().unwrap().data.len(), 10);
        a.push(&Rtp::parse(&pkt(3, 1024, false, &first)).unwrap())
            .unwrap();
        // seq 4 lost; the next packet is a new AU.
        a.push(&Rtp::parse(&pkt(5, 3072, true, &au_payload(&[3]))).unwrap())
            .unwrap();
        let u = a.pull().unwrap();
        assert_eq!((u.pts, u.data.len()), (3072, 3));
    }

    #[test]
    fn sizes_beyond_the_payload_are_errors() {
        let mut a = Aac::new(48_000, &fmtp("1188")).unwrap();
        let mut p = au_payload(&[5, 7]);
        p.truncate(p.len() - 2);
        assert!(a.push(&Rtp::parse(&pkt(1, 0, true, &p)).unwrap()).is_err());
        assert!(a
            .push(&Rtp::parse(&pkt(2, 0, true, &[0, 3, 1])).unwrap())
            .is_err());
    }
}
