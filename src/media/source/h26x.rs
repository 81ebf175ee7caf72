//! Just enough of H.264 and H.265 to record an Annex-B elementary stream: NAL unit types
//! and the slice-header fields that give the picture order count. The parameter set reader
//! and the `avcC` / `hvcC` records are the codec toolkit's ([`crate::media::codec`]).
//!
//! Pure and panic-free on any input: every reader returns `None` on truncated or malformed
//! data (the pipe source then skips the unit).

pub use crate::media::codec::nal_type;
pub use crate::media::codec::sps;
pub use crate::media::codec::sps::{
    parse_h264_sps, parse_h265_pps, parse_h265_sps, parse_sps, rbsp, Bits, H265Pps, SpsError,
    SpsInfo,
};

use crate::media::frame::VideoCodec;

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

#[cfg(test)]
#[path = "h26x_tests.rs"]
mod tests;
