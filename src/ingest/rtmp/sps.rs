//! Picture size out of an H.264 or H.265 sequence parameter set, for [`VideoParams`]'
//! `width`/`height`. Reads only the fields up to the size and cropping window (never the
//! VUI), so an odd encoder's trailing fields cannot make it fail. Pure and bounded: every
//! read is checked, Exp-Golomb codes longer than 32 bits are errors.
//!
//! [`VideoParams`]: crate::frame::VideoParams

/// Reads bits from an RBSP (emulation-prevention bytes already removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    /// From a NAL unit payload (after the NAL header): drops `00 00 03` escapes.
    fn from_nal_payload(nal: &[u8]) -> Bits {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, String> {
        let byte = *self
            .data
            .get(self.pos / 8)
            .ok_or("sequence parameter set is truncated")?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.data.len() * 8 {
            return Err("sequence parameter set is truncated".into());
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("Exp-Golomb code longer than 32 bits".into());
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb (only skipped here, so the value is not mapped).
    fn se(&mut self) -> Result<(), String> {
        self.ue().map(drop)
    }
}

/// Width and height of a picture, after cropping; both non-zero and at most 16384.
fn checked(w: u64, h: u64) -> Result<(u16, u16), String> {
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(format!("sequence parameter set gives a {w}x{h} picture"));
    }
    Ok((w as u16, h as u16))
}

/// Crop units (SubWidthC, SubHeightC) for a chroma format, 1/1 for monochrome or 4:4:4
/// coded as separate planes.
fn crop_units(chroma_format_idc: u32, separate_planes: bool) -> (u64, u64) {
    match (chroma_format_idc, separate_planes) {
        (0, _) | (3, true) => (1, 1),
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    }
}

/// Size from an H.264 SPS NAL unit (with its one-byte header), ITU-T H.264 §7.3.2.1.1.
pub fn h264_size(nal: &[u8]) -> Result<(u16, u16), String> {
    if nal.first().map(|b| b & 0x1f) != Some(7) {
        return Err("not an H.264 sequence parameter set".into());
    }
    let mut r = Bits::from_nal_payload(&nal[1..]);
    let profile = r.bits(8)?;
    r.skip(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let (mut chroma, mut separate) = (1, false);
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma = r.ue()?;
        if chroma > 3 {
            return Err(format!("chroma_format_idc {chroma} is invalid"));
        }
        if chroma == 3 {
            separate = r.bit()? == 1;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(format!(
                    "num_ref_frames_in_pic_order_cnt_cycle {cycle} > 255"
                ));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        t => return Err(format!("pic_order_cnt_type {t} is invalid")),
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }
    let field_factor = 2 - u64::from(frame_mbs_only);
    let (sub_w, sub_h) = crop_units(chroma, separate);
    let w = (width_mbs * 16).saturating_sub(sub_w * (left + right));
    let h =
        (field_factor * height_units * 16).saturating_sub(sub_h * field_factor * (top + bottom));
    checked(w, h)
}

fn skip_scaling_list(r: &mut Bits, size: usize) -> Result<(), String> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let code = i64::from(r.ue()?);
            let delta = if code % 2 == 1 {
                (code + 1) / 2
            } else {
                -(code / 2)
            };
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Size from an H.265 SPS NAL unit (with its two-byte header), ITU-T H.265 §7.3.2.2.
pub fn h265_size(nal: &[u8]) -> Result<(u16, u16), String> {
    if nal.len() < 2 || (nal[0] >> 1) & 0x3f != 33 {
        return Err("not an H.265 sequence parameter set".into());
    }
    let mut r = Bits::from_nal_payload(&nal[2..]);
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)? as usize; // sps_max_sub_layers_minus1
    r.skip(1)?; // sps_temporal_id_nesting_flag
                // profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3.
    r.skip(96)?;
    let mut present = Vec::with_capacity(sub_layers);
    for _ in 0..sub_layers {
        present.push((r.bit()?, r.bit()?));
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers))?;
    }
    for (profile, level) in present {
        if profile == 1 {
            r.skip(88)?;
        }
        if level == 1 {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    if chroma > 3 {
        return Err(format!("chroma_format_idc {chroma} is invalid"));
    }
    let separate = chroma == 3 && r.bit()? == 1;
    let w = u64::from(r.ue()?);
    let h = u64::from(r.ue()?);
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }
    let (sub_w, sub_h) = crop_units(chroma, separate);
    checked(
        w.saturating_sub(sub_w * (left + right)),
        h.saturating_sub(sub_h * (top + bottom)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x264's SPS for 320x240 High (`ffmpeg -f lavfi -i testsrc=size=320x240 -c:v libx264`).
    const SPS_320X240: &[u8] = &[
        0x67, 0x64, 0x00, 0x0c, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x01, 0x40, 0xf1, 0x42, 0x99, 0x60,
    ];

    #[test]
    fn h264_high_profile_sps_gives_its_picture_size() {
        assert_eq!(h264_size(SPS_320X240).unwrap(), (320, 240));
    }

    #[test]
    fn h264_sps_with_cropping_gives_the_cropped_size() {
        // x264 Baseline 1920x1080: 120x68 macroblocks, cropped by 8 rows.
        let sps = [
            0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
            0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x50, 0x3c, 0x60, 0xc9, 0x20,
        ];
        assert_eq!(h264_size(&sps).unwrap(), (1920, 1080));
    }

    #[test]
    fn truncated_or_foreign_sps_is_an_error_not_a_panic() {
        // The picture size ends in byte 9; any cut before it is an error.
        for n in 0..9 {
            assert!(h264_size(&SPS_320X240[..n]).is_err(), "{n} bytes");
        }
        assert!(h264_size(&[0x68, 0xee, 0x3c, 0x80]).is_err());
        assert!(h265_size(SPS_320X240).is_err());
    }

    #[test]
    fn h265_sps_gives_its_picture_size() {
        // x265 Main SPSs for 320x240 and 1280x720 (`-c:v libx265`).
        let mut sps = vec![
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b,
            0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x14, 0x10,
        ];
        assert_eq!(h265_size(&sps).unwrap(), (320, 240));
        let hd = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93,
            0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x14,
            0x10,
        ];
        assert_eq!(h265_size(&hd).unwrap(), (1280, 720));
        sps.truncate(20);
        for n in 0..20 {
            assert!(h265_size(&sps[..n]).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn exp_golomb_longer_than_32_bits_is_refused() {
        let mut r = Bits {
            data: vec![0; 8],
            pos: 0,
        };
        assert!(r.ue().is_err());
    }
}
