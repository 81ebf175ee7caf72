//! The one sequence parameter set reader, for every source that sees H.264 or H.265 (through
//! the codec toolkit's records: RTSP pull, file, pipe, RTSP push, RTMP push) and for the pipe
//! source's slice headers.
//!
//! It reads the fields up to the picture size and cropping window (plus what the slice
//! header parser needs: POC type and sizes, bit depths, chroma format), never the VUI, so an
//! odd encoder's trailing fields cannot make it fail. Pure and panic-free on any input:
//! every read is checked, Exp-Golomb codes longer than 32 bits are errors, and sizes are
//! checked before they are used.
//!
//! Hand-written on purpose: `h264-reader` (in the tree through retina) reads H.264 only and
//! parses the whole SPS including the VUI, where encoders' mistakes make it fail, and no
//! small crate reads the H.265 SPS; one bit reader here serves both codecs.

use thiserror::Error;

use crate::media::frame::VideoCodec;

/// Largest width or height accepted from an SPS (H.264 level 6.2 and H.265 level 6.2 stay
/// under it; anything larger is a corrupt or hostile parameter set).
pub const MAX_DIMENSION: u64 = 16_384;

/// Why a parameter set cannot be read. Each says what was wrong, for logs and refusals.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SpsError {
    #[error("not an {codec} {what} NAL unit")]
    WrongNal {
        codec: &'static str,
        what: &'static str,
    },
    #[error("parameter set is truncated")]
    Truncated,
    #[error("Exp-Golomb code longer than 32 bits in a parameter set")]
    LongCode,
    #[error("{field} {value} is invalid")]
    Invalid { field: &'static str, value: u64 },
    #[error("sequence parameter set gives a {width}x{height} picture (1..={MAX_DIMENSION} each)")]
    Size { width: u64, height: u64 },
}

/// An Exp-Golomb bit reader over an RBSP (emulation prevention bytes already removed).
pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    pub fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = *self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    /// `n` bits (at most 32), most significant first.
    pub fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    pub fn flag(&mut self) -> Result<bool, SpsError> {
        Ok(self.bit()? == 1)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), SpsError> {
        let end = self.pos.checked_add(n).ok_or(SpsError::Truncated)?;
        if end > self.data.len() * 8 {
            return Err(SpsError::Truncated);
        }
        self.pos = end;
        Ok(())
    }

    /// Unsigned Exp-Golomb (`ue(v)`).
    pub fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::LongCode);
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb (`se(v)`).
    pub fn se(&mut self) -> Result<i32, SpsError> {
        let k = self.ue()?;
        let mag = (k / 2 + k % 2) as i32;
        Ok(if k % 2 == 1 { mag } else { -mag })
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

/// What the recorder needs from an SPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// Picture size after cropping, 1..=[`MAX_DIMENSION`].
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

/// Parses an SPS of either codec (NAL header included).
pub fn parse_sps(codec: VideoCodec, nal: &[u8]) -> Result<SpsInfo, SpsError> {
    match codec {
        VideoCodec::H264 => parse_h264_sps(nal),
        VideoCodec::H265 => parse_h265_sps(nal),
    }
}

/// Crop units (SubWidthC, SubHeightC) for a chroma format; 1/1 for monochrome or 4:4:4
/// coded as separate planes.
fn crop_units(chroma_format_idc: u32, separate_planes: bool) -> (u64, u64) {
    match (chroma_format_idc, separate_planes) {
        (0, _) | (3, true) => (1, 1),
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    }
}

/// The cropped picture size, checked: both in 1..=[`MAX_DIMENSION`].
fn cropped(w: u64, h: u64, crop_w: u64, crop_h: u64) -> Result<(u16, u16), SpsError> {
    let (width, height) = (w.saturating_sub(crop_w), h.saturating_sub(crop_h));
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(SpsError::Size { width, height });
    }
    Ok((width as u16, height as u16))
}

fn chroma_format(r: &mut Bits) -> Result<(u32, bool), SpsError> {
    let chroma = r.ue()?;
    if chroma > 3 {
        return Err(SpsError::Invalid {
            field: "chroma_format_idc",
            value: chroma.into(),
        });
    }
    let separate = chroma == 3 && r.flag()?;
    Ok((chroma, separate))
}

fn bit_depth(r: &mut Bits, field: &'static str) -> Result<u32, SpsError> {
    match r.ue()? {
        v @ 0..=8 => Ok(v + 8),
        v => Err(SpsError::Invalid {
            field,
            value: v.into(),
        }),
    }
}

/// Parses an H.264 SPS NAL unit (header included), ITU-T H.264 §7.3.2.1.1.
pub fn parse_h264_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal.first().map(|b| b & 0x1f) != Some(7) {
        return Err(SpsError::WrongNal {
            codec: "H.264",
            what: "sequence parameter set",
        });
    }
    let data = rbsp(&nal[1..]);
    let mut r = Bits::new(&data);
    let profile = r.bits(8)?;
    r.skip(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let (mut chroma, mut separate) = (1, false);
    let (mut depth_l, mut depth_c) = (8, 8);
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        (chroma, separate) = chroma_format(&mut r)?;
        depth_l = bit_depth(&mut r, "bit_depth_luma_minus8")?;
        depth_c = bit_depth(&mut r, "bit_depth_chroma_minus8")?;
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let log2_max_frame_num = r.ue()?.saturating_add(4);
    let poc_type = r.ue()?;
    let mut log2_max_poc_lsb = 0;
    match poc_type {
        0 => log2_max_poc_lsb = r.ue()?.saturating_add(4),
        1 => {
            r.skip(1)?; // delta_pic_order_always_zero_flag
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(SpsError::Invalid {
                    field: "num_ref_frames_in_pic_order_cnt_cycle",
                    value: cycle.into(),
                });
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        t => {
            return Err(SpsError::Invalid {
                field: "pic_order_cnt_type",
                value: t.into(),
            })
        }
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        left = r.ue()?.into();
        right = r.ue()?.into();
        top = r.ue()?.into();
        bottom = r.ue()?.into();
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (sub_w, sub_h) = crop_units(chroma, separate);
    let (width, height) = cropped(
        width_mbs * 16,
        height_units * 16 * field_factor,
        sub_w * (left + right),
        sub_h * field_factor * (top + bottom),
    )?;
    Ok(SpsInfo {
        width,
        height,
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

fn skip_scaling_list(r: &mut Bits, size: usize) -> Result<(), SpsError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + i64::from(r.se()?) + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Parses an H.265 SPS NAL unit (header included), ITU-T H.265 §7.3.2.2.
pub fn parse_h265_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal.len() < 2 || (nal[0] >> 1) & 0x3f != 33 {
        return Err(SpsError::WrongNal {
            codec: "H.265",
            what: "sequence parameter set",
        });
    }
    let data = rbsp(&nal[2..]);
    let mut r = Bits::new(&data);
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?; // sps_max_sub_layers_minus1
    let nesting = r.flag()?;
    // profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3: general part is
    // 2+1+5+32+48 bits, then the level's 8.
    r.skip(96)?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(sub_layers as usize) {
        *p = (r.flag()?, r.flag()?);
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers as usize))?;
    }
    for &(profile, level) in present.iter().take(sub_layers as usize) {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let (chroma, separate) = chroma_format(&mut r)?;
    let w = u64::from(r.ue()?);
    let h = u64::from(r.ue()?);
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        left = r.ue()?.into();
        right = r.ue()?.into();
        top = r.ue()?.into();
        bottom = r.ue()?.into();
    }
    let (sub_w, sub_h) = crop_units(chroma, separate);
    let (width, height) = cropped(w, h, sub_w * (left + right), sub_h * (top + bottom))?;
    let depth_l = bit_depth(&mut r, "bit_depth_luma_minus8")?;
    let depth_c = bit_depth(&mut r, "bit_depth_chroma_minus8")?;
    let log2_max_poc_lsb = r.ue()?.saturating_add(4);
    Ok(SpsInfo {
        width,
        height,
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
pub fn parse_h265_pps(nal: &[u8]) -> Result<H265Pps, SpsError> {
    if nal.len() < 2 || (nal[0] >> 1) & 0x3f != 34 {
        return Err(SpsError::WrongNal {
            codec: "H.265",
            what: "picture parameter set",
        });
    }
    let data = rbsp(&nal[2..]);
    let mut r = Bits::new(&data);
    r.ue()?; // pps_pic_parameter_set_id
    r.ue()?; // pps_seq_parameter_set_id
    Ok(H265Pps {
        dependent_slice_segments_enabled: r.flag()?,
        output_flag_present: r.flag()?,
        num_extra_slice_header_bits: r.bits(3)?,
    })
}

#[cfg(test)]
#[path = "sps_tests.rs"]
mod tests;
