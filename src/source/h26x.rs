//! Just enough of H.264 and H.265 to record an Annex-B elementary stream: NAL unit types,
//! the sequence parameter set fields that give the picture size, the slice-header fields
//! that give the picture order count, and the `avcC` / `hvcC` decoder configuration records
//! built from in-band parameter sets.
//!
//! Pure and panic-free on any input: every reader returns `None` on truncated or malformed
//! data (the pipe source then skips the unit).

use crate::frame::VideoCodec;

/// An exp-Golomb bit reader over an RBSP (emulation prevention bytes already removed).
pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    pub fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    pub fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len() * 8 {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Unsigned exp-Golomb (`ue(v)`); values past 2^31 are refused as malformed.
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed exp-Golomb (`se(v)`).
    pub fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let mag = (k / 2 + k % 2) as i32;
        Some(if k % 2 == 1 { mag } else { -mag })
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`).
pub fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

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

/// What the pipe source needs from an SPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub width: u16,
    pub height: u16,
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    /// H.264: `pic_order_cnt_type`; H.265: always 0 (POC lsb is always sent).
    pub poc_type: u32,
    /// Bits of `pic_order_cnt_lsb` in slice headers.
    pub log2_max_poc_lsb: u32,
    /// H.264 only: bits of `frame_num`.
    pub log2_max_frame_num: u32,
    /// H.264 only.
    pub frame_mbs_only: bool,
    /// H.264 only.
    pub separate_colour_plane: bool,
    /// H.265 only: `sps_max_sub_layers_minus1`.
    pub max_sub_layers_minus1: u32,
    /// H.265 only.
    pub temporal_id_nesting: bool,
}

/// Parses an H.264 SPS NAL unit (header included).
pub fn parse_h264_sps(nal: &[u8]) -> Option<SpsInfo> {
    let data = rbsp(nal.get(1..)?);
    let mut r = Bits::new(&data);
    let profile = r.bits(8)?;
    r.skip(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    let mut separate = false;
    let (mut depth_l, mut depth_c) = (8, 8);
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma = r.ue()?;
        if chroma == 3 {
            separate = r.bit()? == 1;
        }
        depth_l = r.ue()? + 8;
        depth_c = r.ue()? + 8;
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    let log2_max_frame_num = r.ue()?.checked_add(4)?;
    let poc_type = r.ue()?;
    let mut log2_max_poc_lsb = 0;
    match poc_type {
        0 => log2_max_poc_lsb = r.ue()?.checked_add(4)?,
        1 => {
            r.skip(1)?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()?.checked_add(1)?;
    let h_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()? == 1;
    if !frame_mbs_only {
        r.skip(1)?;
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (cl, cr, ct, cb) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let mbs_factor: u32 = if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y): (u32, u32) = match (chroma, separate) {
        (0, _) | (3, true) => (1, mbs_factor),
        (1, _) => (2, 2 * mbs_factor),
        (2, _) => (2, mbs_factor),
        _ => (1, mbs_factor),
    };
    let width = u64::from(w_mbs) * 16;
    let height = u64::from(h_units) * 16 * u64::from(mbs_factor);
    let width = width.checked_sub(u64::from(crop_x) * (u64::from(cl) + u64::from(cr)))?;
    let height = height.checked_sub(u64::from(crop_y) * (u64::from(ct) + u64::from(cb)))?;
    Some(SpsInfo {
        width: u16::try_from(width).ok().filter(|w| *w > 0)?,
        height: u16::try_from(height).ok().filter(|h| *h > 0)?,
        chroma_format_idc: chroma,
        bit_depth_luma: depth_l,
        bit_depth_chroma: depth_c,
        poc_type,
        log2_max_poc_lsb,
        log2_max_frame_num,
        frame_mbs_only,
        separate_colour_plane: separate,
        max_sub_layers_minus1: 0,
        temporal_id_nesting: false,
    })
}

/// Parses an H.265 SPS NAL unit (header included).
pub fn parse_h265_sps(nal: &[u8]) -> Option<SpsInfo> {
    let data = rbsp(nal.get(2..)?);
    let mut r = Bits::new(&data);
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?;
    let nesting = r.bit()? == 1;
    r.skip(96)?; // general profile_tier_level: 2+1+5+32+48 bits, then level 8 bits
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..sub_layers as usize {
        profile_present[i] = r.bit()? == 1;
        level_present[i] = r.bit()? == 1;
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers as usize))?;
    }
    for i in 0..sub_layers as usize {
        if profile_present[i] {
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    let mut separate = false;
    if chroma == 3 {
        separate = r.bit()? == 1;
    }
    let w = r.ue()?;
    let h = r.ue()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (cl, cr, ct, cb) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match (chroma, separate) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let depth_l = r.ue()?.checked_add(8)?;
    let depth_c = r.ue()?.checked_add(8)?;
    let log2_max_poc_lsb = r.ue()?.checked_add(4)?;
    let width = u64::from(w).checked_sub(sub_w * (u64::from(cl) + u64::from(cr)))?;
    let height = u64::from(h).checked_sub(sub_h * (u64::from(ct) + u64::from(cb)))?;
    Some(SpsInfo {
        width: u16::try_from(width).ok().filter(|w| *w > 0)?,
        height: u16::try_from(height).ok().filter(|h| *h > 0)?,
        chroma_format_idc: chroma,
        bit_depth_luma: depth_l,
        bit_depth_chroma: depth_c,
        poc_type: 0,
        log2_max_poc_lsb,
        log2_max_frame_num: 0,
        frame_mbs_only: true,
        separate_colour_plane: separate,
        max_sub_layers_minus1: sub_layers,
        temporal_id_nesting: nesting,
    })
}

/// What the slice-header parser needs from an H.265 PPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H265Pps {
    pub dependent_slice_segments_enabled: bool,
    pub output_flag_present: bool,
    pub num_extra_slice_header_bits: u32,
}

/// Parses the first fields of an H.265 PPS NAL unit (header included).
pub fn parse_h265_pps(nal: &[u8]) -> Option<H265Pps> {
    let data = rbsp(nal.get(2..)?);
    let mut r = Bits::new(&data);
    r.ue()?;
    r.ue()?;
    Some(H265Pps {
        dependent_slice_segments_enabled: r.bit()? == 1,
        output_flag_present: r.bit()? == 1,
        num_extra_slice_header_bits: r.bits(3)?,
    })
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
            r.ue()?; // first_mb_in_slice
            r.ue()?; // slice_type
            r.ue()?; // pic_parameter_set_id
            if sps.separate_colour_plane {
                r.skip(2)?;
            }
            r.skip(sps.log2_max_frame_num as usize)?;
            if !sps.frame_mbs_only && r.bit()? == 1 {
                r.skip(1)?; // bottom_field_flag
            }
            if t == 5 {
                r.ue()?; // idr_pic_id
            }
            r.bits(sps.log2_max_poc_lsb)
        }
        VideoCodec::H265 => {
            if t == 19 || t == 20 {
                return Some(0); // IDR
            }
            let pps = pps?;
            let data = rbsp(nal.get(2..nal.len().min(64))?);
            let mut r = Bits::new(&data);
            let first = r.bit()? == 1;
            if !first {
                return None; // only first slices are asked about
            }
            if (16..=23).contains(&t) {
                r.skip(1)?; // no_output_of_prior_pics_flag
            }
            r.ue()?; // slice_pic_parameter_set_id
            r.skip(pps.num_extra_slice_header_bits as usize)?;
            r.ue()?; // slice_type
            if pps.output_flag_present {
                r.skip(1)?;
            }
            if sps.separate_colour_plane {
                r.skip(2)?;
            }
            r.bits(sps.log2_max_poc_lsb)
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
