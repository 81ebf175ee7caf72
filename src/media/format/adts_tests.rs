//! The ADTS writer checked by ffmpeg: a real clip's AAC written as `.aac` decodes cleanly,
//! with its ID3 tag in front, whole and torn.

use std::io::Cursor;

use super::*;
use crate::media::format::testutil::{self, Audio, Video};

#[test]
fn ffmpeg_decodes_the_adts_file_whole_and_torn() {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, Some(Audio::Aac), 3);
    let (start, frags) = testutil::load_clip(&src);
    let mut enc = AdtsEncoder::new();
    let mut bytes = enc.init(&start).unwrap();
    for f in &frags {
        bytes.extend(enc.fragment(f).unwrap());
    }
    let path = dir.path().join("segment.aac");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(testutil::ffmpeg_decode_errors(&path), "");
    let probe = testutil::ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{probe}");
    assert_eq!(streams[0]["codec_name"], "aac");
    assert_eq!(streams[0]["profile"], "LC");
    assert_eq!(testutil::stream_f64(&probe, 0, "sample_rate"), 48_000.0);
    let s = scan(Cursor::new(&bytes)).unwrap();
    assert_eq!(s.frames, testutil::decoded_frames(&path, "a:0"));
    assert!((2900..=3100).contains(&s.duration_ms), "{}", s.duration_ms);

    let cut = bytes.len() / 2 + 3;
    let s = scan(Cursor::new(&bytes[..cut])).unwrap();
    let torn = dir.path().join("torn.aac");
    std::fs::write(&torn, &bytes[..s.complete_end as usize]).unwrap();
    assert_eq!(testutil::ffmpeg_decode_errors(&torn), "");
    assert_eq!(s.frames, testutil::decoded_frames(&torn, "a:0"));
}
