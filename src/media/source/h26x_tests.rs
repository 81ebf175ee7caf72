use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// An SPS written by ffmpeg (libx264) for the size in the name.
const H264_SPS_320X240: &str = "6764000dacd94141fb011000000300100000030320f1429960";

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
    }
}
