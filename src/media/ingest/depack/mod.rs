//! RTP depacketizers for pushed media: RTP packets in, [`Unit`]s (one access unit each, in
//! MP4 form) out. Pure: `push(packet)` then `pull()` until `None`, no I/O, no clock.
//!
//! Rules every depacketizer keeps:
//! - a sequence-number gap (loss) drops the access unit being assembled, and video then
//!   drops everything until the next key frame: a corrupt frame never reaches a segment;
//! - RTP timestamps are extended past their 32-bit wraparound; one that goes backwards is
//!   passed on as it is (the segmenter drops or resyncs on it), never a panic;
//! - memory is bounded: an access unit over [`MAX_UNIT_BYTES`] is dropped.
//!
//! Hand-written on purpose: retina's depacketizers take only the packets of its own RTSP
//! client session (its `ReceivedPacket` has no public constructor), and it has no
//! `MP4A-LATM` or Opus; the push servers receive RTP themselves and need all of those.
//!
//! # Layout
//!
//! - here: RTP header parsing ([`Rtp`]), loss detection and timestamp extension, and the
//!   [`Depacketizer`] over all codecs.
//! - [`video`]: the H.264/H.265 access-unit assembler, which builds the track parameters
//!   with the codec toolkit ([`crate::media::codec`]); [`h264`], [`h265`]: their packet
//!   formats, handing NAL units to the assembler through [`nal_sink`]'s trait.
//! - [`aac`]: RFC 3640 `mpeg4-generic` AAC-hbr; [`latm`]: RFC 6416 `MP4A-LATM` AAC, with
//!   [`latm_config`] reading its StreamMuxConfig; [`opus`]: RFC 7587.

pub mod aac;
pub mod h264;
pub mod h265;
pub mod latm;
pub mod latm_config;
mod nal_sink;
pub mod opus;
pub mod video;

pub use video::Video;

use bytes::Bytes;

use crate::media::frame::{AudioCodec, TrackParams, VideoCodec};

/// Largest access unit accepted (a 4K I-frame is well below this).
pub const MAX_UNIT_BYTES: usize = 8 << 20;
/// Units waiting in a depacketizer at most; more are dropped (a caller that never pulls).
pub const MAX_QUEUED_UNITS: usize = 64;

/// Something wrong with the packets; the depacketizer has already recovered (dropped what
/// it must) and keeps going, so a caller may log and continue or close the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepackError {
    #[error("malformed RTP packet: {0}")]
    Rtp(&'static str),
    #[error("malformed {codec} payload: {reason}")]
    Payload { codec: &'static str, reason: String },
    #[error("unsupported {codec} packetization: {reason}")]
    Unsupported { codec: &'static str, reason: String },
    #[error("access unit over {MAX_UNIT_BYTES} bytes dropped")]
    TooLarge,
}

/// One RTP packet (RFC 3550 §5.1), borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtp<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> Rtp<'a> {
    /// Parses the fixed header, CSRCs, header extension and padding.
    pub fn parse(b: &'a [u8]) -> Result<Rtp<'a>, DepackError> {
        if b.len() < 12 {
            return Err(DepackError::Rtp("shorter than the 12-byte header"));
        }
        if b[0] >> 6 != 2 {
            return Err(DepackError::Rtp("version is not 2"));
        }
        let csrcs = usize::from(b[0] & 0x0f);
        let mut start = 12 + 4 * csrcs;
        if b[0] & 0x10 != 0 {
            let ext = b
                .get(start + 2..start + 4)
                .ok_or(DepackError::Rtp("truncated header extension"))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            let pad = usize::from(b[end - 1]);
            if pad == 0 || pad > end {
                return Err(DepackError::Rtp("bad padding"));
            }
            end -= pad;
        }
        if start > end {
            return Err(DepackError::Rtp("header longer than the packet"));
        }
        Ok(Rtp {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7f,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: &b[start..end],
        })
    }
}

/// Detects loss from sequence numbers.
#[derive(Debug, Default)]
pub struct Sequence {
    last: Option<u16>,
}

/// What a packet's sequence number says.
#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next packet (or the first).
    InOrder,
    /// Packets before this one were lost (or reordered).
    Gap,
    /// A duplicate or an old packet: drop it.
    Old,
}

impl Sequence {
    pub fn check(&mut self, seq: u16) -> SeqCheck {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return SeqCheck::InOrder;
        };
        let d = seq.wrapping_sub(last);
        if d == 1 {
            self.last = Some(seq);
            SeqCheck::InOrder
        } else if d == 0 || d > 0x8000 {
            SeqCheck::Old
        } else {
            self.last = Some(seq);
            SeqCheck::Gap
        }
    }
}

/// Extends 32-bit RTP timestamps to 64 bits across wraparound. The first timestamp maps
/// to 0; later ones are the signed 32-bit difference from the previous one, accumulated,
/// so a small step backwards stays a small step backwards.
#[derive(Debug, Default)]
pub struct Timeline {
    last: Option<(u32, i64)>,
}

impl Timeline {
    pub fn extend(&mut self, ts: u32) -> i64 {
        let v = match self.last {
            None => 0,
            Some((raw, ext)) => ext + i64::from(ts.wrapping_sub(raw) as i32),
        };
        self.last = Some((ts, v));
        v
    }
}

/// One access unit of one track, in MP4 form (see [`crate::media::frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Extended RTP timestamp, in the track's clock rate.
    pub pts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// A depacketizer of one of the supported codecs.
#[derive(Debug)]
pub enum Depacketizer {
    Video(Box<video::Video>),
    Aac(aac::Aac),
    Latm(latm::Latm),
    Opus(opus::Opus),
}

impl Depacketizer {
    pub fn is_video(&self) -> bool {
        matches!(self, Depacketizer::Video(_))
    }

    /// The video codec, for a video track.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        match self {
            Depacketizer::Video(v) => Some(v.codec()),
            _ => None,
        }
    }

    /// The audio codec, for an audio track.
    pub fn audio_codec(&self) -> Option<AudioCodec> {
        match self {
            Depacketizer::Video(_) => None,
            Depacketizer::Aac(_) | Depacketizer::Latm(_) => Some(AudioCodec::Aac),
            Depacketizer::Opus(_) => Some(AudioCodec::Opus),
        }
    }

    /// Feed one packet. Errors are reported after recovery; feeding may continue.
    pub fn push(&mut self, pkt: &Rtp<'_>) -> Result<(), DepackError> {
        match self {
            Depacketizer::Video(v) => v.push(pkt),
            Depacketizer::Aac(a) => a.push(pkt),
            Depacketizer::Latm(l) => l.push(pkt),
            Depacketizer::Opus(o) => o.push(pkt),
        }
    }

    /// Next complete access unit.
    pub fn pull(&mut self) -> Option<Unit> {
        match self {
            Depacketizer::Video(v) => v.pull(),
            Depacketizer::Aac(a) => a.pull(),
            Depacketizer::Latm(l) => l.pull(),
            Depacketizer::Opus(o) => o.pull(),
        }
    }

    /// The track's parameters as of the last pulled unit (`None` before video parameter
    /// sets, or an in-band LATM config, are known).
    pub fn params(&self) -> Option<TrackParams> {
        match self {
            Depacketizer::Video(v) => v.params().map(|p| TrackParams::Video(p.clone())),
            Depacketizer::Aac(a) => Some(TrackParams::Audio(a.params().clone())),
            Depacketizer::Latm(l) => l.params().map(|p| TrackParams::Audio(p.clone())),
            Depacketizer::Opus(o) => Some(TrackParams::Audio(o.params().clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header_with_csrc_extension_and_padding_is_parsed() {
        let mut p = vec![0xb1, 0xe0, 0x01, 0x02, 0, 0, 0x03, 0xe8, 0, 0, 0, 7];
        p.extend_from_slice(&[0xaa; 4]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
        p.extend_from_slice(b"hello");
        p.extend_from_slice(&[0, 0, 3]); // padding
        let r = Rtp::parse(&p).unwrap();
        assert!(r.marker);
        assert_eq!(r.payload_type, 96);
        assert_eq!(r.seq, 0x0102);
        assert_eq!(r.timestamp, 1000);
        assert_eq!(r.ssrc, 7);
        assert_eq!(r.payload, b"hello");
    }

    #[test]
    fn truncated_or_wrong_version_rtp_is_an_error() {
        assert!(Rtp::parse(&[0x80, 0, 0]).is_err());
        assert!(Rtp::parse(&[0x40; 12]).is_err());
        assert!(Rtp::parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Rtp::parse(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200]).is_err());
    }

    #[test]
    fn sequence_detects_gaps_duplicates_and_wraps() {
        let mut s = Sequence::default();
        assert_eq!(s.check(65534), SeqCheck::InOrder);
        assert_eq!(s.check(65535), SeqCheck::InOrder);
        assert_eq!(s.check(0), SeqCheck::InOrder);
        assert_eq!(s.check(0), SeqCheck::Old);
        assert_eq!(s.check(3), SeqCheck::Gap);
        assert_eq!(s.check(2), SeqCheck::Old);
        assert_eq!(s.check(4), SeqCheck::InOrder);
    }

    #[test]
    fn timestamps_are_extended_across_wraparound_and_may_step_back() {
        let mut t = Timeline::default();
        assert_eq!(t.extend(u32::MAX - 10), 0);
        assert_eq!(t.extend(5), 16);
        assert_eq!(t.extend(3605), 3616);
        assert_eq!(t.extend(5), 16);
    }
}
