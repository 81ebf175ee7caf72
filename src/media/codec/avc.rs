//! H.264: the `avcC` record (ISO/IEC 14496-15 §5.3.3.1) and the `avc1` codec string.
//!
//! The record is built like ffmpeg's `ff_isom_write_avcc`: 4-byte NAL lengths, the
//! parameter sets as they came (emulation prevention kept), and for the High profiles
//! (`profile_idc` 100, 110, 122, 144) the trailer with chroma format and bit depths that
//! the standard requires there and that older copies of this code left out.

use bytes::Bytes;

use super::sps::{parse_h264_sps, SpsInfo};
use super::{nal_at, put_nal, u16_at, CodecError};
use crate::media::frame::{VideoCodec, VideoParams};

const RECORD: &str = "avcC";

/// The parameter sets an `avcC` carries, with NAL headers, and the NAL length size its
/// frames use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvcSets {
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// 1, 2 or 4.
    pub nal_length_size: u8,
}

/// `avc1.PPCCLL`: profile, constraint flags and level of an SPS (NAL header included).
pub fn codec_string(sps: &[u8]) -> Result<String, CodecError> {
    match sps.get(1..4) {
        Some(&[p, c, l]) => Ok(format!("avc1.{p:02X}{c:02X}{l:02X}")),
        _ => Err(CodecError::Truncated {
            record: "H.264 SPS",
        }),
    }
}

/// Whether the record carries the chroma format / bit depth trailer.
fn has_trailer(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 144)
}

/// Builds the `avcC` record (4-byte NAL lengths) from the SPSs and PPSs (headers
/// included); `info` is the first SPS read by [`parse_h264_sps`].
pub fn record(sps: &[Bytes], pps: &[Bytes], info: &SpsInfo) -> Result<Vec<u8>, CodecError> {
    let first = sps.first().ok_or(CodecError::Missing {
        record: RECORD,
        what: "sequence parameter set",
    })?;
    if pps.is_empty() {
        return Err(CodecError::Missing {
            record: RECORD,
            what: "picture parameter set",
        });
    }
    let Some(&[profile, compat, level]) = first.get(1..4) else {
        return Err(CodecError::Truncated {
            record: "H.264 SPS",
        });
    };
    if sps.len() > 31 {
        return Err(CodecError::TooLong {
            what: "SPS list",
            len: sps.len(),
        });
    }
    let pps_count = u8::try_from(pps.len()).map_err(|_| CodecError::TooLong {
        what: "PPS list",
        len: pps.len(),
    })?;
    let mut c = vec![1, profile, compat, level, 0xff, 0xe0 | sps.len() as u8];
    for s in sps {
        put_nal(&mut c, s, "SPS")?;
    }
    c.push(pps_count);
    for p in pps {
        put_nal(&mut c, p, "PPS")?;
    }
    if has_trailer(profile) {
        c.push(0xfc | (info.chroma_format_idc as u8 & 3));
        c.push(0xf8 | (info.bit_depth_luma.saturating_sub(8) as u8 & 7));
        c.push(0xf8 | (info.bit_depth_chroma.saturating_sub(8) as u8 & 7));
        c.push(0); // numOfSequenceParameterSetExt
    }
    Ok(c)
}

/// Track parameters from parameter sets: the size from the first SPS, the record and the
/// codec string.
pub fn params(sets: &AvcSets, timescale: u32) -> Result<VideoParams, CodecError> {
    let sps = sets.sps.first().ok_or(CodecError::Missing {
        record: RECORD,
        what: "sequence parameter set",
    })?;
    let info = parse_h264_sps(sps).map_err(|source| CodecError::Sps {
        record: RECORD,
        source,
    })?;
    Ok(VideoParams {
        codec: VideoCodec::H264,
        width: info.width,
        height: info.height,
        config: Bytes::from(record(&sets.sps, &sets.pps, &info)?),
        rfc6381: codec_string(sps)?,
        timescale,
    })
}

/// Track parameters from one SPS and one PPS.
pub fn params_from(sps: &[u8], pps: &[u8], timescale: u32) -> Result<VideoParams, CodecError> {
    let sets = AvcSets {
        sps: vec![Bytes::copy_from_slice(sps)],
        pps: vec![Bytes::copy_from_slice(pps)],
        nal_length_size: 4,
    };
    params(&sets, timescale)
}

/// Reads an `avcC` record's parameter sets and NAL length size (the trailer, if any, is
/// rebuilt from the SPS by [`record`], so it is not read).
pub fn parse_record(r: &[u8]) -> Result<AvcSets, CodecError> {
    if r.len() < 7 || r[0] != 1 {
        return Err(CodecError::Malformed {
            record: RECORD,
            reason: "version is not 1 or the fixed part is short",
        });
    }
    let nal_length_size = (r[4] & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(CodecError::LengthSize {
            record: RECORD,
            size: 3,
        });
    }
    let mut sets = AvcSets {
        nal_length_size,
        ..AvcSets::default()
    };
    let mut at = 6;
    for _ in 0..r[5] & 0x1f {
        let len = u16_at(r, at, RECORD)?;
        sets.sps
            .push(Bytes::copy_from_slice(nal_at(r, at + 2, len, RECORD)?));
        at += 2 + len;
    }
    let n = *r.get(at).ok_or(CodecError::Truncated { record: RECORD })?;
    at += 1;
    for _ in 0..n {
        let len = u16_at(r, at, RECORD)?;
        sets.pps
            .push(Bytes::copy_from_slice(nal_at(r, at + 2, len, RECORD)?));
        at += 2 + len;
    }
    if sets.sps.is_empty() {
        return Err(CodecError::Missing {
            record: RECORD,
            what: "sequence parameter set",
        });
    }
    Ok(sets)
}

#[cfg(test)]
#[path = "avc_tests.rs"]
mod tests;
