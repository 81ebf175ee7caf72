//! H.265 over RTP (RFC 7798) without DONL: single NAL unit packets, aggregation packets
//! (AP, type 48) and fragmentation units (FU, type 49). PACI (type 50) is refused.

use super::nal_sink::NalSink;
use super::DepackError;

/// Splits one RTP payload into NAL units for the assembler.
pub(super) fn depacketize(v: &mut impl NalSink, p: &[u8]) -> Result<(), DepackError> {
    if p.len() < 3 {
        return v.nal(&[]);
    }
    match (p[0] >> 1) & 0x3f {
        0..=47 => v.nal(p),
        48 => {
            let mut rest = &p[2..];
            while !rest.is_empty() {
                let Some(len) = rest
                    .get(..2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return v.nal(&[]);
                };
                let Some(nal) = rest.get(2..2 + len) else {
                    return v.nal(&[]);
                };
                v.nal(nal)?;
                rest = &rest[2 + len..];
            }
            Ok(())
        }
        49 => {
            let fu = p[2];
            let header = [(p[0] & 0x81) | ((fu & 0x3f) << 1), p[1]];
            let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
            if start && end {
                return v.nal(&[]);
            }
            if start {
                v.fu_start(&header, &p[3..])
            } else {
                v.fu_more(&p[3..], end)
            }
        }
        t => Err(DepackError::Unsupported {
            codec: "H.265",
            reason: format!("payload type {t} (PACI or reserved)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Rtp, Video};
    use super::*;
    use crate::media::frame::VideoCodec;

    const VPS: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x98, 0x09,
    ];
    const SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a,
        0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
    ];
    const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }

    fn video() -> Video {
        let sets = [VPS, SPS, PPS].map(Bytes::from_static);
        Video::new(VideoCodec::H265, &sets)
    }

    #[test]
    fn parameter_sets_give_size_hvcc_and_codec_string() {
        let v = video();
        let p = v.params().unwrap();
        assert_eq!((p.width, p.height), (320, 240));
        assert_eq!(p.rfc6381, "hvc1.1.6.L60.90");
        assert_eq!(p.config[0], 1);
        assert_eq!(p.config[22], 3); // three arrays
    }

    #[test]
    fn fu_and_ap_are_reassembled_and_idr_is_a_key_frame() {
        let mut v = video();
        // FU of an IDR_W_RADL (19): header type 49, FU header S + 19.
        let h = [49 << 1, 1];
        let mut a = h.to_vec();
        a.extend_from_slice(&[0x80 | 19, 1, 2]);
        let mut b = h.to_vec();
        b.extend_from_slice(&[0x40 | 19, 3]);
        v.push(&Rtp::parse(&pkt(1, 0, false, &a)).unwrap()).unwrap();
        v.push(&Rtp::parse(&pkt(2, 0, true, &b)).unwrap()).unwrap();
        let u = v.pull().unwrap();
        assert!(u.keyframe);
        assert_eq!(&u.data[..], &[0, 0, 0, 5, 19 << 1, 1, 1, 2, 3]);
        // AP with two trailing-picture NAL units (type 1).
        let mut ap = vec![48 << 1, 1];
        for nal in [[2u8, 1, 7], [2, 1, 8]] {
            ap.extend_from_slice(&3u16.to_be_bytes());
            ap.extend_from_slice(&nal);
        }
        v.push(&Rtp::parse(&pkt(3, 3600, true, &ap)).unwrap())
            .unwrap();
        let u = v.pull().unwrap();
        assert!(!u.keyframe);
        assert_eq!(u.data.len(), 14);
    }

    #[test]
    fn paci_is_refused() {
        let mut v = video();
        let e = v.push(&Rtp::parse(&pkt(1, 0, true, &[50 << 1, 1, 0, 0])).unwrap());
        assert!(matches!(e, Err(DepackError::Unsupported { .. })));
    }
}
