use super::*;
use crate::media::codec::testdata::{FFMPEG_HEAD, PPS_MAIN10, SPS_MAIN10, VPS_MAIN10};

fn main10() -> VideoParams {
    params_from(VPS_MAIN10, SPS_MAIN10, PPS_MAIN10, 90_000).unwrap()
}

#[test]
fn main10_record_says_ten_bits_and_equals_ffmpegs_fixed_part() {
    let p = main10();
    assert_eq!(&p.config[..22], FFMPEG_HEAD);
    assert_eq!(p.config[17] & 7, 2, "bitDepthLumaMinus8");
    assert_eq!((p.width, p.height), (320, 240));
    let sets = parse_record(&p.config).unwrap();
    assert_eq!(sets.vps, [Bytes::from_static(VPS_MAIN10)]);
    assert_eq!(sets.sps, [Bytes::from_static(SPS_MAIN10)]);
    assert_eq!(sets.pps, [Bytes::from_static(PPS_MAIN10)]);
    assert_eq!(sets.nal_length_size, 4);
}

#[test]
fn codec_string_follows_annex_e() {
    // Main 10: profile 2, compatibility flag 2 only (reversed: 0x4), level 2 (60).
    assert_eq!(main10().rfc6381, "hvc1.2.4.L60.90");
    assert_eq!(codec_string(&main10().config).unwrap(), "hvc1.2.4.L60.90");
    // Annex E's own example: Main, compatibility flags 1 and 2, level 3.1, constraints B0.
    let mut r = main10().config.to_vec();
    r[1] = 0x01;
    r[2..6].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    r[6] = 0xb0;
    r[12] = 93;
    assert_eq!(codec_string(&r).unwrap(), "hvc1.1.6.L93.B0");
    // High tier, profile space 1, two constraint bytes; trailing zero bytes dropped.
    r[1] = 0x40 | 0x20 | 0x01;
    r[7] = 0x08;
    assert_eq!(codec_string(&r).unwrap(), "hvc1.A1.6.H93.B0.08");
    // All constraint bytes zero: the first is still written.
    r[6..12].fill(0);
    assert_eq!(codec_string(&r).unwrap(), "hvc1.A1.6.H93.00");
    assert!(codec_string(&r[..10]).is_err());
}

#[test]
fn sei_arrays_of_a_record_are_skipped_and_short_lengths_kept() {
    let mut r = main10().config.to_vec();
    r[21] = (r[21] & !3) | 1; // 2-byte NAL lengths
    r[22] = 4;
    r.extend_from_slice(&[0x80 | 39, 0, 1, 0, 3, 0x4e, 0x01, 0x05]);
    let sets = parse_record(&r).unwrap();
    assert_eq!(sets.nal_length_size, 2);
    assert_eq!(sets.sps.len(), 1);
    assert_eq!(params(&sets, 1000).unwrap().config, main10().config);
}

#[test]
fn every_truncation_of_a_record_is_an_error_not_a_panic() {
    let r = main10().config;
    for n in 0..r.len() {
        assert!(parse_record(&r[..n]).is_err(), "{n}");
    }
}

#[test]
fn a_missing_parameter_set_is_named() {
    let e = params_from(VPS_MAIN10, SPS_MAIN10, PPS_MAIN10, 1).unwrap();
    let mut sets = parse_record(&e.config).unwrap();
    sets.vps.clear();
    let e = params(&sets, 90_000).unwrap_err();
    assert_eq!(e.to_string(), "hvcC has no video parameter set");
}
