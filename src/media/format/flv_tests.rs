//! The FLV writer checked by independent readers: ffmpeg decodes what it writes, ffprobe
//! measures what the metadata claims, and a torn file, cut back and patched, still plays.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::media::format::testutil::{self, Audio, Video};

/// The duration ffprobe measures from the packets: the end of the last video packet
/// (pts + duration) minus the first one's pts, in seconds.
fn measured_video_span(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["packet=pts_time,duration_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut first: Option<f64> = None;
    let mut end: f64 = 0.0;
    for line in text.lines() {
        let mut f = line
            .split(',')
            .map(|v| v.trim().parse::<f64>().unwrap_or(0.0));
        let (pts, dur) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
        first = Some(first.map_or(pts, |p: f64| p.min(pts)));
        end = end.max(pts + dur);
    }
    end - first.unwrap_or(0.0)
}

/// A real 4 s H.264 (B-frames) + AAC clip written as FLV.
fn written(dir: &Path) -> (Vec<u8>, Vec<u8>, std::path::PathBuf) {
    let src = testutil::make_clip(dir, Video::H264, Some(Audio::Aac), 4);
    let (start, frags) = testutil::load_clip(&src);
    let mut enc = FlvEncoder::new(Duration::from_secs(60));
    let mut open = enc.init(&start).unwrap();
    for f in &frags {
        open.extend(enc.fragment(f).unwrap());
    }
    let mut closed = open.clone();
    let p = enc.finish().unwrap();
    closed[p.offset as usize..p.offset as usize + p.bytes.len()].copy_from_slice(&p.bytes);
    let path = dir.join("segment.flv");
    std::fs::write(&path, &closed).unwrap();
    (open, closed, path)
}

#[test]
fn ffmpeg_decodes_the_flv_and_its_duration_and_index_match_the_packets() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, path) = written(dir.path());
    assert_eq!(testutil::ffmpeg_decode_errors(&path), "");
    let probe = testutil::ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    let codecs: Vec<&str> = streams
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe}");
    assert_eq!(testutil::stream_f64(&probe, 0, "width"), 320.0);
    assert_eq!(testutil::stream_f64(&probe, 1, "sample_rate"), 48_000.0);
    assert_eq!(testutil::decoded_frames(&path, "v:0"), 100);
    let s = scan(Cursor::new(&bytes)).unwrap();
    let m = Metadata::decode(&s.metadata.unwrap().1).unwrap();
    let span = measured_video_span(&path);
    assert!(
        (m.duration - span).abs() <= 0.040 + 1e-6,
        "onMetaData says {} s, the packets span {span} s",
        m.duration
    );
    assert_eq!(probe["format"]["tags"]["encoder"], "edgerec");
    assert!(m.keyframes.as_ref().unwrap().len() >= 4);
}

#[test]
fn a_torn_flv_cut_back_and_patched_plays_to_its_last_complete_tag() {
    let dir = tempfile::tempdir().unwrap();
    let (open, _, _) = written(dir.path());
    // Torn in the middle of a tag, about two thirds in.
    let cut = open.len() * 2 / 3 + 5;
    let s = scan(Cursor::new(&open[..cut])).unwrap();
    assert!(s.complete_end < cut as u64);
    let mut torn = open[..s.complete_end as usize].to_vec();
    let p = repair_patch(&s).unwrap();
    torn[p.offset as usize..p.offset as usize + p.bytes.len()].copy_from_slice(&p.bytes);
    let path = dir.path().join("torn.flv");
    std::fs::write(&path, &torn).unwrap();
    assert_eq!(testutil::ffmpeg_decode_errors(&path), "");
    let m = Metadata::decode(&p.bytes).unwrap();
    assert_eq!(m.filesize, torn.len() as f64);
    let span = measured_video_span(&path);
    assert!(
        (m.duration - span).abs() <= 0.040 + 1e-6,
        "patched duration {} s, the packets span {span} s",
        m.duration
    );
    assert!(span > 1.5 && span < 3.5, "{span}");
}
