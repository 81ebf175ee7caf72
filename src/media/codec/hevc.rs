//! H.265: the `hvcC` record (ISO/IEC 14496-15 §8.3.3.1) and the `hvc1` codec string
//! (Annex E).
//!
//! The record is built like ffmpeg's `ff_isom_write_hvcc`: profile space, tier, profile,
//! compatibility and constraint flags and level from the SPS's `profile_tier_level`;
//! chroma format and bit depths from the SPS (so Main 10 says 10 bits, where an older copy
//! of this code said 8); no average frame rate; 4-byte NAL lengths; one complete array
//! each of VPS, SPS and PPS. `min_spatial_segmentation_idc` and `parallelismType` are 0
//! ("unknown"), which is what ffmpeg writes too unless the SPS's VUI restricts them.

use bytes::Bytes;

use super::sps::{parse_h265_sps, rbsp, SpsInfo};
use super::{nal_at, put_nal, u16_at, CodecError};
use crate::media::frame::{VideoCodec, VideoParams};

const RECORD: &str = "hvcC";

/// NAL unit types of the parameter sets an `hvcC` carries.
const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;

/// The parameter sets an `hvcC` carries, with NAL headers, and the NAL length size its
/// frames use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HevcSets {
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// 1, 2 or 4.
    pub nal_length_size: u8,
}

/// The 12 bytes of the general profile_tier_level (profile space .. level) and the byte
/// before them (max sub-layers, temporal id nesting), from an SPS with its NAL header.
fn general_ptl(sps: &[u8]) -> Result<(u8, [u8; 12]), CodecError> {
    let r = rbsp(sps.get(2..sps.len().min(40)).unwrap_or(&[]));
    match r.get(..13) {
        Some(b) => Ok((b[0], b[1..13].try_into().expect("12 bytes"))),
        None => Err(CodecError::Truncated {
            record: "H.265 SPS",
        }),
    }
}

/// `hvc1.[A-C]P.C.TL.B…` from the 12 general profile_tier_level bytes.
fn ptl_string(ptl: &[u8; 12]) -> String {
    let space = ["", "A", "B", "C"][usize::from(ptl[0] >> 6)];
    let tier = if ptl[0] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = ptl[0] & 0x1f;
    let compat = u32::from_be_bytes([ptl[1], ptl[2], ptl[3], ptl[4]]).reverse_bits();
    let level = ptl[11];
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{level}");
    let mut constraints = &ptl[5..11];
    while let [head @ .., 0] = constraints {
        if head.is_empty() {
            break; // the first byte is written even when zero
        }
        constraints = head;
    }
    for b in constraints {
        s.push_str(&format!(".{b:02X}"));
    }
    s
}

/// The RFC 6381 codec string of an `hvcC` record.
pub fn codec_string(hvcc: &[u8]) -> Result<String, CodecError> {
    if hvcc.len() < 23 || hvcc[0] != 1 {
        return Err(CodecError::Malformed {
            record: RECORD,
            reason: "version is not 1 or the fixed part is short",
        });
    }
    Ok(ptl_string(hvcc[1..13].try_into().expect("12 bytes")))
}

/// Builds the `hvcC` record (4-byte NAL lengths) from the parameter sets (headers
/// included); `info` is the first SPS read by [`parse_h265_sps`].
pub fn record(sets: &HevcSets, info: &SpsInfo) -> Result<Vec<u8>, CodecError> {
    let arrays = [
        (VPS, &sets.vps, "video parameter set"),
        (SPS, &sets.sps, "sequence parameter set"),
        (PPS, &sets.pps, "picture parameter set"),
    ];
    for (_, list, what) in &arrays {
        if list.is_empty() {
            return Err(CodecError::Missing {
                record: RECORD,
                what,
            });
        }
    }
    let (_, ptl) = general_ptl(&sets.sps[0])?;
    let mut c = vec![1];
    c.extend_from_slice(&ptl);
    c.extend_from_slice(&[0xf0, 0x00, 0xfc]); // min_spatial_segmentation 0, parallelism 0
    c.push(0xfc | (info.chroma_format_idc as u8 & 3));
    c.push(0xf8 | (info.bit_depth_luma.saturating_sub(8) as u8 & 7));
    c.push(0xf8 | (info.bit_depth_chroma.saturating_sub(8) as u8 & 7));
    c.extend_from_slice(&[0, 0]); // avgFrameRate unknown
    let layers = (info.max_sub_layers_minus1 as u8 + 1) & 7;
    c.push((layers << 3) | (u8::from(info.temporal_id_nesting) << 2) | 3);
    c.push(arrays.len() as u8);
    for (t, list, what) in arrays {
        c.push(0x80 | t); // array_completeness: all parameter sets are here
        let n = u16::try_from(list.len()).map_err(|_| CodecError::TooLong {
            what,
            len: list.len(),
        })?;
        c.extend_from_slice(&n.to_be_bytes());
        for nal in list {
            put_nal(&mut c, nal, what)?;
        }
    }
    Ok(c)
}

/// Track parameters from parameter sets: the size from the first SPS, the record and the
/// codec string.
pub fn params(sets: &HevcSets, timescale: u32) -> Result<VideoParams, CodecError> {
    let sps = sets.sps.first().ok_or(CodecError::Missing {
        record: RECORD,
        what: "sequence parameter set",
    })?;
    let info = parse_h265_sps(sps).map_err(|source| CodecError::Sps {
        record: RECORD,
        source,
    })?;
    let (_, ptl) = general_ptl(sps)?;
    Ok(VideoParams {
        codec: VideoCodec::H265,
        width: info.width,
        height: info.height,
        config: Bytes::from(record(sets, &info)?),
        rfc6381: ptl_string(&ptl),
        timescale,
    })
}

/// Track parameters from one VPS, SPS and PPS.
pub fn params_from(
    vps: &[u8],
    sps: &[u8],
    pps: &[u8],
    timescale: u32,
) -> Result<VideoParams, CodecError> {
    let one = |n: &[u8]| vec![Bytes::copy_from_slice(n)];
    let sets = HevcSets {
        vps: one(vps),
        sps: one(sps),
        pps: one(pps),
        nal_length_size: 4,
    };
    params(&sets, timescale)
}

/// Reads an `hvcC` record's VPS, SPS and PPS arrays and NAL length size. Other arrays
/// (SEI) are skipped: they are not needed to decode, and [`record`] does not write them.
pub fn parse_record(r: &[u8]) -> Result<HevcSets, CodecError> {
    if r.len() < 23 || r[0] != 1 {
        return Err(CodecError::Malformed {
            record: RECORD,
            reason: "version is not 1 or the fixed part is short",
        });
    }
    let nal_length_size = (r[21] & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(CodecError::LengthSize {
            record: RECORD,
            size: 3,
        });
    }
    let mut sets = HevcSets {
        nal_length_size,
        ..HevcSets::default()
    };
    let mut at = 23;
    for _ in 0..r[22] {
        let t = r.get(at).ok_or(CodecError::Truncated { record: RECORD })? & 0x3f;
        let count = u16_at(r, at + 1, RECORD)?;
        at += 3;
        for _ in 0..count {
            let len = u16_at(r, at, RECORD)?;
            let nal = Bytes::copy_from_slice(nal_at(r, at + 2, len, RECORD)?);
            match t {
                VPS => sets.vps.push(nal),
                SPS => sets.sps.push(nal),
                PPS => sets.pps.push(nal),
                _ => {}
            }
            at += 2 + len;
        }
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
#[path = "hevc_tests.rs"]
mod tests;
