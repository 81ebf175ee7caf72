//! Tests of the fMP4 encoder: structure checks with mp4-atom, and real clips checked with
//! ffprobe and a full ffmpeg decode.

use std::sync::Arc;

use bytes::Bytes;
use mp4_atom::{Atom, Codec, Decode, Moof};

use super::*;
use crate::media::format::boxes::{is_sync, read_header, Found};
use crate::media::format::testutil::{self, Audio, Video};
use crate::media::segment::event::{Sample, TrackRun};

fn check_clip(video: Video, audio: Audio, video_codec: &str, audio_codec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), video, Some(audio), 3);
    let (start, frags) = testutil::load_clip(&src);
    assert!(
        frags.len() >= 3,
        "expected 1 s fragments, got {}",
        frags.len()
    );
    let reordered = frags
        .iter()
        .flat_map(|f| &f.runs)
        .flat_map(|r| &r.samples)
        .any(|s| s.cts_offset != 0);
    assert!(reordered, "clip should have B-frames (composition offsets)");

    let out = dir.path().join("segment.mp4");
    let bytes = testutil::write_fmp4(&start, &frags);
    std::fs::write(&out, &bytes).unwrap();
    let source = std::fs::read(&src).unwrap();
    // (esds is rebuilt around the AudioSpecificConfig, so its bitrate fields differ.)
    for kind in [b"avcC", b"hvcC", b"dOps"] {
        assert_eq!(
            config_box(&bytes, kind),
            config_box(&source, kind),
            "{} must be carried byte for byte",
            String::from_utf8_lossy(kind)
        );
    }

    let probe = testutil::ffprobe(&out);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{probe}");
    assert_eq!(streams[0]["codec_name"], video_codec);
    assert_eq!(streams[0]["width"], 320);
    assert_eq!(streams[1]["codec_name"], audio_codec);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2.9..3.2).contains(&duration), "duration {duration}");
    assert_eq!(testutil::decoded_frames(&out, "v:0"), 75);
    assert_eq!(testutil::ffmpeg_decode_errors(&out), "");
}

/// The bytes of the first box of `kind` anywhere in `file` (decoder configuration boxes).
fn config_box<'a>(file: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let at = file.windows(4).position(|w| w == kind)?.checked_sub(4)?;
    let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    file.get(at..at + size)
}

#[test]
fn h264_and_aac_segment_probes_and_decodes_cleanly() {
    check_clip(Video::H264, Audio::Aac, "h264", "aac");
}

#[test]
fn h265_segment_probes_and_decodes_cleanly() {
    if !testutil::has_encoder("libx265") {
        eprintln!("skipping: this ffmpeg has no libx265");
        return;
    }
    check_clip(Video::H265, Audio::Aac, "hevc", "aac");
}

#[test]
fn opus_audio_segment_probes_and_decodes_cleanly() {
    if !testutil::has_encoder("libopus") {
        eprintln!("skipping: this ffmpeg has no libopus");
        return;
    }
    check_clip(Video::H264, Audio::Opus, "h264", "opus");
}

fn sample(duration: u32, cts_offset: i32, keyframe: bool, data: &'static [u8]) -> Sample {
    Sample {
        duration,
        cts_offset,
        keyframe,
        data: Bytes::from_static(data),
    }
}

fn synthetic_fragment() -> Fragment {
    Fragment {
        sequence: 7,
        runs: vec![
            TrackRun {
                track: 0,
                base_decode_time: 180_000,
                samples: vec![
                    sample(3600, 7200, true, b"key!"),
                    sample(3600, -3600, false, b"delta"),
                ],
            },
            TrackRun {
                track: 1,
                base_decode_time: 32_000,
                samples: vec![sample(1024, 0, true, b"aac")],
            },
        ],
    }
}

#[test]
fn init_starts_with_ftyp_then_meta_uuid_then_moov() {
    let start = testutil::synthetic_start();
    let init = encode_init(&start).unwrap();
    assert_eq!(testutil::top_level_kinds(&init), ["ftyp", "uuid", "moov"]);
    assert_eq!(&init[8..12], b"iso6");

    let mut r = std::io::Cursor::new(&init);
    let Found::Box(ftyp) = read_header(&mut r, 0, init.len() as u64).unwrap() else {
        panic!("no ftyp");
    };
    let Found::Box(uuid) = read_header(&mut r, ftyp.end(), init.len() as u64).unwrap() else {
        panic!("no uuid");
    };
    let body = &init[uuid.body_start() as usize..uuid.end() as usize];
    assert_eq!(body[..16], META_UUID);
    let meta: SegmentMeta = serde_json::from_slice(&body[16..]).unwrap();
    assert_eq!(meta, start.meta);
}

#[test]
fn init_moov_has_one_trak_and_trex_per_track_with_their_timescales() {
    let start = testutil::synthetic_start();
    let moov = testutil::find_moov(&encode_init(&start).unwrap());
    assert_eq!(moov.mvhd.next_track_id, 3);
    let ids: Vec<u32> = moov.trak.iter().map(|t| t.tkhd.track_id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(moov.trak[0].mdia.mdhd.timescale, 90_000);
    assert_eq!(moov.trak[1].mdia.mdhd.timescale, 16_000);
    let trex: Vec<u32> = moov.mvex.unwrap().trex.iter().map(|t| t.track_id).collect();
    assert_eq!(trex, [1, 2]);
    let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("video entry is not avc1");
    };
    let mut record = Vec::new();
    avc1.avcc.encode_body(&mut record).unwrap();
    let TrackParams::Video(v) = &start.params.tracks[0] else {
        unreachable!()
    };
    assert_eq!(record, v.config, "avcC must be carried byte for byte");
    let Codec::Mp4a(mp4a) = &moov.trak[1].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("audio entry is not mp4a");
    };
    let asc = &mp4a
        .esds
        .es_desc
        .dec_config
        .dec_specific
        .as_ref()
        .unwrap()
        .raw;
    assert_eq!(asc, &[0x14, 0x08]);
}

#[test]
fn fragment_data_offsets_point_at_each_runs_samples() {
    let start = testutil::synthetic_start();
    let frag = synthetic_fragment();
    let bytes = encode_fragment(&start, &frag);
    assert_eq!(testutil::top_level_kinds(&bytes), ["moof", "mdat"]);

    let moof = Moof::decode(&mut &bytes[..]).unwrap();
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.traf.len(), 2);
    for (traf, run) in moof.traf.iter().zip(&frag.runs) {
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfhd.track_id, run.track as u32 + 1);
        assert_eq!(
            traf.tfdt.as_ref().unwrap().base_media_decode_time,
            run.base_decode_time
        );
        let trun = &traf.trun[0];
        let mut at = trun.data_offset.unwrap() as usize;
        for (entry, s) in trun.samples.iter().zip(&run.samples) {
            let size = entry.size.unwrap() as usize;
            assert_eq!(&bytes[at..at + size], &s.data[..]);
            assert_eq!(entry.duration, Some(s.duration));
            assert_eq!(entry.cts, Some(i64::from(s.cts_offset)));
            assert_eq!(is_sync(entry.flags.unwrap()), s.keyframe);
            at += size;
        }
    }
    assert_eq!(bytes.len(), moof_end(&bytes) + 8 + frag.media_bytes());
}

fn moof_end(bytes: &[u8]) -> usize {
    u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
}

#[test]
fn negative_composition_offsets_use_trun_version_1() {
    let bytes = encode_fragment(&testutil::synthetic_start(), &synthetic_fragment());
    let trun_at = bytes.windows(4).position(|w| w == b"trun").unwrap();
    assert_eq!(bytes[trun_at + 4], 1, "trun version");
    let moof = Moof::decode(&mut &bytes[..]).unwrap();
    assert_eq!(
        moof.traf[0].trun[0].samples.get(1).unwrap().cts,
        Some(-3600)
    );
}

#[test]
fn a_broken_avcc_is_a_config_error_naming_the_track() {
    let mut start = testutil::synthetic_start();
    let mut params = (*start.params).clone();
    if let TrackParams::Video(v) = &mut params.tracks[0] {
        v.config = Bytes::from_static(&[2, 0, 0]);
    }
    start.params = Arc::new(params);
    match encode_init(&start) {
        Err(FormatError::Config { track: 0, reason }) => assert!(reason.contains("avcC")),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn opus_head_is_converted_to_big_endian_dops() {
    // version 1, 2 channels, pre-skip 312, 48 kHz, gain -256, family 0 (RFC 7845 layout).
    let head = [1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0x00, 0xff, 0];
    let d = dops(&head).unwrap();
    assert_eq!(
        (
            d.output_channel_count,
            d.pre_skip,
            d.input_sample_rate,
            d.output_gain
        ),
        (2, 312, 48_000, -256)
    );
    assert!(d.channel_mapping.is_none());
    let mut with_magic = b"OpusHead".to_vec();
    with_magic.extend_from_slice(&head);
    assert_eq!(dops(&with_magic).unwrap(), d);
    assert!(dops(&head[..5]).is_err());
}
