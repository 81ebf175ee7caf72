//! H.264 over RTP (RFC 6184), packetization mode 0 and 1: single NAL unit packets, STAP-A
//! and FU-A. STAP-B, MTAP and FU-B (interleaved mode) are refused.

use super::nal_sink::NalSink;
use super::DepackError;

fn unsupported(reason: String) -> DepackError {
    DepackError::Unsupported {
        codec: "H.264",
        reason,
    }
}

/// Splits one RTP payload into NAL units for the assembler.
pub(super) fn depacketize(v: &mut impl NalSink, p: &[u8]) -> Result<(), DepackError> {
    let Some(&first) = p.first() else {
        return Err(DepackError::Payload {
            codec: "H.264",
            reason: "empty payload".into(),
        });
    };
    match first & 0x1f {
        1..=23 => v.nal(p),
        24 => {
            let mut rest = &p[1..];
            while !rest.is_empty() {
                let Some(len) = rest
                    .get(..2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return v.nal(&[]); // reports a malformed STAP-A
                };
                let Some(nal) = rest.get(2..2 + len) else {
                    return v.nal(&[]);
                };
                v.nal(nal)?;
                rest = &rest[2 + len..];
            }
            Ok(())
        }
        28 => {
            let Some(&fu_header) = p.get(1) else {
                return v.nal(&[]);
            };
            let header = [(first & 0xe0) | (fu_header & 0x1f)];
            let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
            if start && end {
                return v.nal(&[]);
            }
            if start {
                v.fu_start(&header, &p[2..])
            } else {
                v.fu_more(&p[2..], end)
            }
        }
        t => Err(unsupported(format!(
            "NAL unit type {t} (STAP-B, MTAP, FU-B: interleaved mode); use packetization-mode 1"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Rtp, Unit, Video};
    use super::*;
    use crate::media::frame::VideoCodec;

    /// 320x240 baseline SPS and a PPS, as x264 writes them.
    pub const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8,
    ];
    pub const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

    fn video() -> Video {
        Video::new(
            VideoCodec::H264,
            &[Bytes::from_static(SPS), Bytes::from_static(PPS)],
        )
    }

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }

    fn push(v: &mut Video, raw: &[u8]) -> Result<(), DepackError> {
        v.push(&Rtp::parse(raw).unwrap())
    }

    fn all(v: &mut Video) -> Vec<Unit> {
        std::iter::from_fn(|| v.pull()).collect()
    }

    #[test]
    fn sdp_parameter_sets_give_the_size_and_avcc() {
        let v = video();
        let p = v.params().unwrap();
        assert_eq!((p.width, p.height), (320, 240));
        assert_eq!(&p.config[..6], &[1, 0x42, 0xc0, 0x0d, 0xff, 0xe1]);
        assert_eq!(p.rfc6381, "avc1.42C00D");
    }

    #[test]
    fn single_nal_units_become_length_prefixed_frames() {
        let mut v = video();
        push(&mut v, &pkt(1, 0, true, &[0x65, 1, 2, 3])).unwrap();
        push(&mut v, &pkt(2, 3600, true, &[0x41, 4, 5])).unwrap();
        let u = all(&mut v);
        assert_eq!(u.len(), 2);
        assert!(u[0].keyframe && !u[1].keyframe);
        assert_eq!(&u[0].data[..], &[0, 0, 0, 4, 0x65, 1, 2, 3]);
        assert_eq!((u[0].pts, u[1].pts), (0, 3600));
    }

    #[test]
    fn stap_a_with_parameter_sets_and_an_idr_keeps_only_the_slice() {
        let mut v = Video::new(VideoCodec::H264, &[]);
        let mut stap = vec![0x18];
        for nal in [SPS, PPS, &[0x65, 9, 9][..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        push(&mut v, &pkt(1, 0, true, &stap)).unwrap();
        let u = all(&mut v);
        assert_eq!(u.len(), 1);
        assert_eq!(&u[0].data[..], &[0, 0, 0, 3, 0x65, 9, 9]);
        assert_eq!(v.params().unwrap().width, 320);
    }

    #[test]
    fn fu_a_is_reassembled() {
        let mut v = video();
        push(&mut v, &pkt(1, 0, false, &[0x7c, 0x85, 1, 2])).unwrap();
        push(&mut v, &pkt(2, 0, false, &[0x7c, 0x05, 3])).unwrap();
        push(&mut v, &pkt(3, 0, true, &[0x7c, 0x45, 4])).unwrap();
        let u = all(&mut v);
        assert_eq!(&u[0].data[..], &[0, 0, 0, 5, 0x65, 1, 2, 3, 4]);
    }

    #[test]
    fn a_lost_packet_drops_frames_until_the_next_key_frame() {
        let mut v = video();
        push(&mut v, &pkt(1, 0, true, &[0x65, 1])).unwrap();
        push(&mut v, &pkt(2, 3600, false, &[0x7c, 0x81, 1])).unwrap();
        // seq 3 lost: the rest of this FU-A and the following P-frame are dropped.
        push(&mut v, &pkt(4, 3600, true, &[0x7c, 0x41, 2])).unwrap();
        push(&mut v, &pkt(5, 7200, true, &[0x41, 3])).unwrap();
        push(&mut v, &pkt(6, 10800, true, &[0x65, 4])).unwrap();
        let u = all(&mut v);
        assert_eq!(u.len(), 2);
        assert_eq!((u[0].pts, u[1].pts), (0, 10800));
        assert!(u[1].keyframe);
    }

    #[test]
    fn a_truncated_fu_a_is_dropped_not_emitted() {
        let mut v = video();
        push(&mut v, &pkt(1, 0, true, &[0x65, 1])).unwrap();
        push(&mut v, &pkt(2, 3600, true, &[0x7c, 0x81, 1])).unwrap(); // start, marker, no end
        assert!(push(&mut v, &pkt(3, 7200, true, &[0x7c, 0x01, 1])).is_err());
        push(&mut v, &pkt(4, 10800, true, &[0x41, 1])).unwrap();
        assert_eq!(all(&mut v).len(), 1);
    }

    #[test]
    fn frames_before_the_first_key_frame_or_without_parameter_sets_are_dropped() {
        let mut v = Video::new(VideoCodec::H264, &[]);
        push(&mut v, &pkt(1, 0, true, &[0x65, 1])).unwrap();
        assert!(v.pull().is_none());
        let mut v = video();
        push(&mut v, &pkt(1, 0, true, &[0x41, 1])).unwrap();
        assert!(v.pull().is_none());
    }

    #[test]
    fn interleaved_mode_packets_are_refused() {
        let mut v = video();
        let e = push(&mut v, &pkt(1, 0, true, &[0x19, 0, 0])).unwrap_err();
        assert!(matches!(e, DepackError::Unsupported { .. }));
    }
}
