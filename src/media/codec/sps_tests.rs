use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Parameter sets written by ffmpeg (libx264 / libx265) for the sizes in the names.
const H264_SPS_320X240: &str = "6764000dacd94141fb011000000300100000030320f1429960";
const H264_SPS_1080P: &str = "67640028acd940780227e5c044000003000400000300c83c60c658";
/// x264 Baseline 1920x1080: 120x68 macroblocks, cropped by 8 rows.
const H264_BASELINE_1080P: &str = "6742c028d900780227e5c04400000300040000030050 3c60c920";
const H265_SPS_320X240: &str =
    "42010101600000030090000003000003003ca00a080f16595924932bc05a020000030002000003003210";
const H265_SPS_1080P: &str =
    "420101016000000300900000030000030078a003c08010e596564924caf0168080000003008000000c84";
const H265_SPS_720P: &str =
    "42010101600000030090000003000003005da0028080 2d165959a4932bc05a0200000300020000030014 10";
const H265_PPS: &str = "4401c172b46240";

fn nal(s: &str) -> Vec<u8> {
    hex(&s.replace(' ', ""))
}

#[test]
fn h264_sps_gives_the_picture_size_including_cropping() {
    let s = parse_h264_sps(&nal(H264_SPS_320X240)).unwrap();
    assert_eq!((s.width, s.height), (320, 240));
    assert_eq!(s.chroma_format_idc, 1);
    // 1088 coded lines cropped to 1080.
    let s = parse_h264_sps(&nal(H264_SPS_1080P)).unwrap();
    assert_eq!((s.width, s.height), (1920, 1080));
    assert_eq!(s.poc_type, 0);
    let s = parse_h264_sps(&nal(H264_BASELINE_1080P)).unwrap();
    assert_eq!((s.width, s.height), (1920, 1080));
    assert_eq!((s.bit_depth_luma, s.bit_depth_chroma), (8, 8));
}

#[test]
fn h265_sps_gives_the_picture_size_and_bit_depth() {
    let s = parse_h265_sps(&nal(H265_SPS_320X240)).unwrap();
    assert_eq!((s.width, s.height), (320, 240));
    assert_eq!((s.bit_depth_luma, s.bit_depth_chroma), (8, 8));
    let s = parse_h265_sps(&nal(H265_SPS_1080P)).unwrap();
    assert_eq!((s.width, s.height), (1920, 1080));
    let s = parse_sps(VideoCodec::H265, &nal(H265_SPS_720P)).unwrap();
    assert_eq!((s.width, s.height), (1280, 720));
}

#[test]
fn truncated_sps_is_an_error_not_a_panic() {
    let sps = nal(H264_SPS_320X240);
    for n in 0..9 {
        assert!(parse_h264_sps(&sps[..n]).is_err(), "{n} bytes");
    }
    let sps = nal(H265_SPS_320X240);
    for n in 0..20 {
        assert!(parse_h265_sps(&sps[..n]).is_err(), "{n} bytes");
    }
    assert_eq!(
        parse_h264_sps(&sps[..12]).unwrap_err().to_string(),
        "not an H.264 sequence parameter set NAL unit"
    );
}

#[test]
fn a_parameter_set_of_another_kind_or_codec_is_refused() {
    assert!(matches!(
        parse_h264_sps(&[0x68, 0xee, 0x3c, 0x80]),
        Err(SpsError::WrongNal { .. })
    ));
    assert!(matches!(
        parse_h265_sps(&nal(H264_SPS_320X240)),
        Err(SpsError::WrongNal { .. })
    ));
    assert!(matches!(
        parse_h265_pps(&nal(H265_SPS_320X240)),
        Err(SpsError::WrongNal { .. })
    ));
    let pps = parse_h265_pps(&nal(H265_PPS)).unwrap();
    assert_eq!(pps.num_extra_slice_header_bits, 0);
}

#[test]
fn a_picture_larger_than_the_limit_is_refused() {
    // Baseline, level 4, pic_width_in_mbs_minus1 = 1100 (17 616 pixels), 16 rows.
    let mut r = BitWriter::default();
    r.bits(0x42, 8);
    r.bits(0, 8);
    r.bits(40, 8);
    r.ue(0); // seq_parameter_set_id
    r.ue(0); // log2_max_frame_num_minus4
    r.ue(2); // pic_order_cnt_type
    r.ue(1); // max_num_ref_frames
    r.bits(0, 1);
    r.ue(1100);
    r.ue(0);
    r.bits(1, 1); // frame_mbs_only
    r.bits(1, 1); // direct_8x8_inference
    r.bits(0, 1); // no cropping
    r.bits(1, 1); // rbsp stop bit
    let mut sps = vec![0x67];
    sps.extend(r.finish());
    assert_eq!(
        parse_h264_sps(&sps).unwrap_err(),
        SpsError::Size {
            width: 17_616,
            height: 16
        }
    );
}

#[test]
fn an_invalid_chroma_format_is_refused_by_name() {
    // High profile with chroma_format_idc = 4.
    let mut r = BitWriter::default();
    r.bits(100, 8);
    r.bits(0, 16);
    r.ue(0);
    r.ue(4);
    r.bits(1, 8);
    let mut sps = vec![0x67];
    sps.extend(r.finish());
    let e = parse_h264_sps(&sps).unwrap_err();
    assert_eq!(e.to_string(), "chroma_format_idc 4 is invalid");
}

#[test]
fn emulation_prevention_bytes_are_removed() {
    assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    assert_eq!(rbsp(&[0, 3, 0, 0, 3, 3]), vec![0, 3, 0, 0, 3]);
}

#[test]
fn exp_golomb_reads_known_codes() {
    // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3 then se(4) = -2
    let mut r = Bits::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
    assert_eq!(r.ue(), Ok(0));
    assert_eq!(r.ue(), Ok(1));
    assert_eq!(r.ue(), Ok(2));
    assert_eq!(r.ue(), Ok(3));
    assert_eq!(r.se(), Ok(-2));
    assert_eq!(r.ue(), Err(SpsError::Truncated), "ran out of bits");
}

#[test]
fn exp_golomb_longer_than_32_bits_is_refused() {
    let zeros = [0u8; 8];
    assert_eq!(Bits::new(&zeros).ue(), Err(SpsError::LongCode));
}

#[test]
fn random_and_mutated_parameter_sets_never_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds = [
        nal(H264_SPS_320X240),
        nal(H264_SPS_1080P),
        nal(H265_SPS_320X240),
        nal(H265_SPS_1080P),
    ];
    for i in 0..4000usize {
        let mut data = seeds[i % seeds.len()].clone();
        if i % 3 == 0 {
            data = (0..next() % 97).map(|_| next() as u8).collect();
        } else {
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % data.len();
                data[at] ^= 1 << (next() % 8);
            }
        }
        let parsed = [parse_h264_sps(&data), parse_h265_sps(&data)];
        for s in parsed.into_iter().flatten() {
            assert!(s.width > 0 && u64::from(s.width) <= MAX_DIMENSION);
            assert!(s.height > 0 && u64::from(s.height) <= MAX_DIMENSION);
        }
        let _ = parse_h265_pps(&data);
    }
}

/// Writes Exp-Golomb test parameter sets.
#[derive(Default)]
struct BitWriter {
    bits: Vec<bool>,
}

impl BitWriter {
    fn bits(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.bits.push((v >> i) & 1 == 1);
        }
    }
    fn ue(&mut self, v: u32) {
        let x = v + 1;
        let len = 32 - x.leading_zeros();
        self.bits(0, len - 1);
        self.bits(x, len);
    }
    fn finish(self) -> Vec<u8> {
        self.bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &v)| b | (u8::from(v) << (7 - i)))
            })
            .collect()
    }
}
