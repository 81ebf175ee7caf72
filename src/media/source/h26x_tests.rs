use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Parameter sets written by ffmpeg (libx264 / libx265) for the sizes in the names.
const H264_SPS_320X240: &str = "6764000dacd94141fb011000000300100000030320f1429960";
const H264_PPS: &str = "68ebe3cb22c0";
const H265_VPS: &str = "40010c01ffff01600000030090000003000003003c959009";
const H265_SPS_320X240: &str =
    "42010101600000030090000003000003003ca00a080f16595924932bc05a020000030002000003003210";
const H265_PPS: &str = "4401c172b46240";

#[test]
fn avcc_carries_profile_level_and_both_parameter_sets() {
    let sps = hex(H264_SPS_320X240);
    let pps = hex(H264_PPS);
    let info = parse_h264_sps(&sps).unwrap();
    let (c, codec) = avcc(&sps, &pps, &info).unwrap();
    assert_eq!(codec, "avc1.64000d");
    assert_eq!(&c[..6], &[1, 0x64, 0, 0x0d, 0xff, 0xe1]);
    assert_eq!(&c[8..8 + sps.len()], &sps[..]);
    // High profile: the chroma / bit depth trailer is present.
    assert_eq!(c.len(), 6 + 2 + sps.len() + 1 + 2 + pps.len() + 4);
}

#[test]
fn hvcc_has_three_complete_arrays_and_a_valid_codec_string() {
    let (vps, sps, pps) = (hex(H265_VPS), hex(H265_SPS_320X240), hex(H265_PPS));
    let info = parse_h265_sps(&sps).unwrap();
    let c = hvcc(&vps, &sps, &pps, &info).unwrap();
    assert_eq!(c[0], 1);
    assert_eq!(c[22], 3, "three NAL arrays");
    assert_eq!(c[23], 0x80 | 32);
    assert_eq!(
        crate::media::source::mp4_entry::hevc_rfc6381(&c).unwrap(),
        "hvc1.1.6.L60.90"
    );
}

#[test]
fn random_bytes_never_panic_any_parser() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..2000usize {
        let data: Vec<u8> = (0..len % 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = parse_h264_sps(&data);
        let _ = parse_h265_sps(&data);
        let _ = parse_h265_pps(&data);
        let info = parse_h264_sps(&hex(H264_SPS_320X240)).unwrap();
        let _ = poc_lsb(VideoCodec::H264, &data, &info, None);
        let _ = poc_lsb(VideoCodec::H265, &data, &info, Some(&H265Pps::default()));
        let _ = classify(VideoCodec::H265, &data);
        let _ = hvcc(&data, &data, &data, &info);
    }
}
