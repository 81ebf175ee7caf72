//! The codec toolkit: the one place that turns H.264 and H.265 parameter sets into what an
//! MP4 sample entry and a playlist need, for every source (RTSP pull, file, pipe, RTSP push,
//! RTMP push):
//!
//! - the decoder configuration records: `avcC` (AVCDecoderConfigurationRecord, ISO/IEC
//!   14496-15 §5.3.3.1) in [`avc`], `hvcC` (HEVCDecoderConfigurationRecord, §8.3.3.1) in
//!   [`hevc`], built from the parameter sets the way ffmpeg's `ff_isom_write_avcc` /
//!   `ff_isom_write_hvcc` build them, so a recording's sample entry equals the one
//!   `ffmpeg -c copy` writes for the same stream (`tests/e2e_codec_records.rs` checks it);
//! - reading such a record back into its parameter sets (RTMP sequence headers, RTSP pull's
//!   retina parameters, MP4 files), so those are rebuilt here too and never passed through;
//! - the RFC 6381 codec strings (`avc1.64001F`, `hvc1.2.4.L120.90`, ISO/IEC 14496-15
//!   Annex E), one spelling for every path: upper-case hex as retina and RFC 6381's examples
//!   write it, constraint bytes as two hex digits with trailing zero bytes left out but the
//!   first kept;
//! - [`sps`]: the one H.264/H.265 sequence parameter set reader;
//! - [`aac`]: the AAC AudioSpecificConfig reader (rate, channels, frame length), for MP4
//!   `esds`, RTSP push, LATM, RTMP and the ADTS writer.
//!
//! Pure and panic-free on any input; every failure is a [`CodecError`].
//!
//! May import: [`crate::media::frame`] (the track parameter types). Sources, push ingest and
//! formats import this module, never the other way round.

pub mod aac;
pub mod avc;
pub mod hevc;
pub mod sps;
#[cfg(test)]
pub(crate) mod testdata;

use thiserror::Error;

pub use sps::SpsError;

/// Why a decoder configuration record cannot be built or read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The record's version byte or fixed part is wrong.
    #[error("{record} record is malformed: {reason}")]
    Malformed {
        record: &'static str,
        reason: &'static str,
    },
    /// The record ends inside a field or parameter set.
    #[error("{record} record is truncated")]
    Truncated { record: &'static str },
    /// A parameter set the record needs is absent.
    #[error("{record} has no {what}")]
    Missing {
        record: &'static str,
        what: &'static str,
    },
    /// A parameter set too long for the record's 16-bit length field.
    #[error("{what} of {len} bytes is too long for a decoder configuration record")]
    TooLong { what: &'static str, len: usize },
    /// NAL unit lengths of a size the format does not allow.
    #[error("{record} says {size}-byte NAL lengths, which are not allowed")]
    LengthSize { record: &'static str, size: u8 },
    /// The sequence parameter set cannot be read.
    #[error("{record}: {source}")]
    Sps {
        record: &'static str,
        #[source]
        source: SpsError,
    },
}

/// A NAL unit's type (H.264: the low 5 bits of its first byte; H.265: bits 1..=6); 0 for
/// an empty unit.
pub fn nal_type(codec: crate::media::frame::VideoCodec, nal: &[u8]) -> u8 {
    use crate::media::frame::VideoCodec;
    match (codec, nal.first()) {
        (_, None) => 0,
        (VideoCodec::H264, Some(b)) => b & 0x1f,
        (VideoCodec::H265, Some(b)) => (b >> 1) & 0x3f,
    }
}

/// Appends a 16-bit length and the NAL unit.
fn put_nal(out: &mut Vec<u8>, nal: &[u8], what: &'static str) -> Result<(), CodecError> {
    let len = u16::try_from(nal.len()).map_err(|_| CodecError::TooLong {
        what,
        len: nal.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(nal);
    Ok(())
}

/// A big-endian 16-bit value at `at`, for record readers.
fn u16_at(d: &[u8], at: usize, record: &'static str) -> Result<usize, CodecError> {
    d.get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(CodecError::Truncated { record })
}

/// The NAL unit of `len` bytes at `at`.
fn nal_at<'a>(
    d: &'a [u8],
    at: usize,
    len: usize,
    record: &'static str,
) -> Result<&'a [u8], CodecError> {
    d.get(at..at + len).ok_or(CodecError::Truncated { record })
}
