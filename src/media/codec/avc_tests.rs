use super::*;
use crate::media::codec::testdata::{FFMPEG_AVCC, PPS_BASELINE, SPS_BASELINE};

fn ffmpeg_sets() -> AvcSets {
    parse_record(FFMPEG_AVCC).unwrap()
}

#[test]
fn high_profile_record_from_parameter_sets_equals_ffmpegs_byte_for_byte() {
    let sets = ffmpeg_sets();
    assert_eq!((sets.sps.len(), sets.pps.len()), (1, 1));
    let p = params(&sets, 90_000).unwrap();
    assert_eq!(&p.config[..], FFMPEG_AVCC);
    assert_eq!((p.width, p.height), (1280, 720));
    assert_eq!(p.codec, VideoCodec::H264);
}

#[test]
fn codec_string_is_profile_constraints_and_level_in_upper_case_hex() {
    assert_eq!(codec_string(&ffmpeg_sets().sps[0]).unwrap(), "avc1.64001F");
    // RFC 6381 §3.3's example: Baseline (66) with constraint_set1, level 3.0.
    assert_eq!(
        codec_string(&[0x67, 0x42, 0xe0, 0x1e]).unwrap(),
        "avc1.42E01E"
    );
    assert!(codec_string(&[0x67, 0x42]).is_err());
}

#[test]
fn baseline_and_main_records_have_no_trailer() {
    let (sps, pps) = (SPS_BASELINE, PPS_BASELINE);
    let p = params_from(sps, pps, 90_000).unwrap();
    assert_eq!(p.config.len(), 6 + 2 + sps.len() + 1 + 2 + pps.len());
    assert_eq!(p.rfc6381, "avc1.42C00D");
}

#[test]
fn a_short_length_record_is_read_and_rebuilt_with_four_byte_lengths() {
    let mut r = FFMPEG_AVCC.to_vec();
    r[4] = 0xfd; // 2-byte NAL lengths
    let sets = parse_record(&r).unwrap();
    assert_eq!(sets.nal_length_size, 2);
    assert_eq!(&params(&sets, 1000).unwrap().config[..], FFMPEG_AVCC);
    r[4] = 0xfe;
    assert_eq!(
        parse_record(&r),
        Err(CodecError::LengthSize {
            record: "avcC",
            size: 3
        })
    );
}

#[test]
fn every_truncation_of_a_record_is_an_error_not_a_panic() {
    // Cut inside the SPS or PPS: the trailer is optional, so cuts after the PPS are fine.
    for n in 0..FFMPEG_AVCC.len() - 4 {
        assert!(parse_record(&FFMPEG_AVCC[..n]).is_err(), "{n}");
    }
}

#[test]
fn missing_parameter_sets_are_named() {
    let sets = AvcSets {
        pps: vec![],
        ..ffmpeg_sets()
    };
    let e = params(&sets, 90_000).unwrap_err();
    assert_eq!(e.to_string(), "avcC has no picture parameter set");
    let e = params(&AvcSets::default(), 90_000).unwrap_err();
    assert_eq!(e.to_string(), "avcC has no sequence parameter set");
}
