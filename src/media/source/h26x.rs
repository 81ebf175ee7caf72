//! Just enough of H.264 and H.265 to record an Annex-B elementary stream: NAL unit types,
//! the sequence parameter set fields that give the picture size, the slice-header fields
//! that give the picture order count, and the `avcC` / `hvcC` decoder configuration records
//! built from in-band parameter sets.
//!
//! Pure and panic-free on any input: every reader returns `None` (or an error) on truncated
//! or malformed data (the pipe source then skips the unit). The parameter set readers live
//! in [`sps`], the one SPS parser every H.264/H.265 source uses.

pub mod sps;

pub use sps::{
    parse_h264_sps, parse_h265_pps, parse_h265_sps, parse_sps, rbsp, Bits, H265Pps, SpsError,
    SpsInfo,
};

use crate::media::frame::VideoCodec;

/// NAL unit type.
pub fn nal_type(codec: VideoCodec, nal: &[u8]) -> u8 {
    match (codec, nal.first()) {
        (_, None) => 0,
        (VideoCodec::H264, Some(b)) => b & 0x1f,
        (VideoCodec::H265, Some(b)) => (b >> 1) & 0x3f,
    }
}

/// What a NAL unit is, for access-unit splitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NalKind {
    /// A slice of a picture; `first` when it starts a new picture; `key` for IDR / IRAP.
    Slice {
        first: bool,
        key: bool,
    },
    /// VPS (H.265 only), SPS, PPS.
    Vps,
    Sps,
    Pps,
    /// Access unit delimiter: always starts an access unit and is dropped.
    Aud,
    /// SEI and other non-VCL units that may only come before the first slice of an AU.
    Prefix,
    /// Anything else (end of sequence, filler, suffix SEI...).
    Other,
}

/// Classifies a NAL unit (with its header).
pub fn classify(codec: VideoCodec, nal: &[u8]) -> NalKind {
    let t = nal_type(codec, nal);
    match codec {
        VideoCodec::H264 => match t {
            1 | 5 => NalKind::Slice {
                // first_mb_in_slice == 0 is ue(v) "1": the first payload bit is set.
                first: nal.get(1).is_some_and(|b| b & 0x80 != 0),
                key: t == 5,
            },
            7 => NalKind::Sps,
            8 => NalKind::Pps,
            9 => NalKind::Aud,
            6 | 14..=18 => NalKind::Prefix,
            _ => NalKind::Other,
        },
        VideoCodec::H265 => match t {
            0..=9 | 16..=21 => NalKind::Slice {
                // first_slice_segment_in_pic_flag is the first bit after the 2-byte header.
                first: nal.get(2).is_some_and(|b| b & 0x80 != 0),
                key: (16..=21).contains(&t),
            },
            32 => NalKind::Vps,
            33 => NalKind::Sps,
            34 => NalKind::Pps,
            35 => NalKind::Aud,
            39 | 41..=44 | 48..=55 => NalKind::Prefix,
            _ => NalKind::Other,
        },
    }
}

/// `pic_order_cnt_lsb` of the first slice of a picture, or `None` when the stream does not
/// send one (H.264 POC types 1 and 2) or the header is malformed. IDR pictures have POC 0.
pub fn poc_lsb(codec: VideoCodec, nal: &[u8], sps: &SpsInfo, pps: Option<&H265Pps>) -> Option<u32> {
    let t = nal_type(codec, nal);
    match codec {
        VideoCodec::H264 => {
            if sps.poc_type != 0 {
                return None;
            }
            let data = rbsp(nal.get(1..nal.len().min(64))?);
            let mut r = Bits::new(&data);
            r.ue().ok()?; // first_mb_in_slice
            r.ue().ok()?; // slice_type
            r.ue().ok()?; // pic_parameter_set_id
            if sps.separate_colour_plane {
                r.skip(2).ok()?;
            }
            r.skip(sps.log2_max_frame_num as usize).ok()?;
            if !sps.frame_mbs_only && r.bit().ok()? == 1 {
                r.skip(1).ok()?; // bottom_field_flag
            }
            if t == 5 {
                r.ue().ok()?; // idr_pic_id
            }
            r.bits(sps.log2_max_poc_lsb).ok()
        }
        VideoCodec::H265 => {
            if t == 19 || t == 20 {
                return Some(0); // IDR
            }
            let pps = pps?;
            let data = rbsp(nal.get(2..nal.len().min(64))?);
            let mut r = Bits::new(&data);
            let first = r.bit().ok()? == 1;
            if !first {
                return None; // only first slices are asked about
            }
            if (16..=23).contains(&t) {
                r.skip(1).ok()?; // no_output_of_prior_pics_flag
            }
            r.ue().ok()?; // slice_pic_parameter_set_id
            r.skip(pps.num_extra_slice_header_bits as usize).ok()?;
            r.ue().ok()?; // slice_type
            if pps.output_flag_present {
                r.skip(1).ok()?;
            }
            if sps.separate_colour_plane {
                r.skip(2).ok()?;
            }
            r.bits(sps.log2_max_poc_lsb).ok()
        }
    }
}

/// Builds the `avcC` record from one SPS and one PPS (headers included); returns it with
/// the RFC 6381 codec string.
pub fn avcc(sps: &[u8], pps: &[u8], info: &SpsInfo) -> Option<(Vec<u8>, String)> {
    let (profile, compat, level) = (*sps.get(1)?, *sps.get(2)?, *sps.get(3)?);
    let mut c = vec![1, profile, compat, level, 0xff, 0xe1];
    c.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    c.extend_from_slice(sps);
    c.push(1);
    c.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    c.extend_from_slice(pps);
    if matches!(profile, 100 | 110 | 122 | 144) {
        c.push(0xfc | (info.chroma_format_idc as u8 & 3));
        c.push(0xf8 | (info.bit_depth_luma.saturating_sub(8) as u8 & 7));
        c.push(0xf8 | (info.bit_depth_chroma.saturating_sub(8) as u8 & 7));
        c.push(0);
    }
    Some((c, format!("avc1.{profile:02x}{compat:02x}{level:02x}")))
}

/// Builds the `hvcC` record from a VPS, SPS and PPS (headers included).
pub fn hvcc(vps: &[u8], sps: &[u8], pps: &[u8], info: &SpsInfo) -> Option<Vec<u8>> {
    // general_profile_space..general_level_idc: 12 bytes after the SPS's first RBSP byte.
    let ptl = rbsp(sps.get(2..sps.len().min(40))?);
    let ptl = ptl.get(1..13)?;
    let mut c = vec![1];
    c.extend_from_slice(ptl);
    c.extend_from_slice(&[0xf0, 0x00, 0xfc]); // min_spatial_segmentation 0, parallelism 0
    c.push(0xfc | (info.chroma_format_idc as u8 & 3));
    c.push(0xf8 | (info.bit_depth_luma.saturating_sub(8) as u8 & 7));
    c.push(0xf8 | (info.bit_depth_chroma.saturating_sub(8) as u8 & 7));
    c.extend_from_slice(&[0, 0]); // avgFrameRate unknown
    let layers = (info.max_sub_layers_minus1 as u8 + 1) & 7;
    c.push((layers << 3) | (u8::from(info.temporal_id_nesting) << 2) | 3);
    c.push(3);
    for (t, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        c.push(0x80 | t); // array_completeness: all parameter sets are here
        c.extend_from_slice(&1u16.to_be_bytes());
        c.extend_from_slice(&u16::try_from(nal.len()).ok()?.to_be_bytes());
        c.extend_from_slice(nal);
    }
    Some(c)
}

#[cfg(test)]
#[path = "h26x_tests.rs"]
mod tests;
