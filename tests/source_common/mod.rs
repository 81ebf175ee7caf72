//! Helpers shared by the source tests: an independent check of frames with ffmpeg, by
//! rewriting them as elementary streams (Annex B video with the parameter sets from the
//! avcC/hvcC record, ADTS audio) that ffmpeg must decode without error.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use edgerec::media::frame::{AudioCodec, Frame, TrackParams, VideoCodec};

/// Frames ffmpeg decodes from `path` without error.
pub fn decoded_frames(path: &Path, format: &str) -> usize {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-f",
            format,
            "-count_frames",
            "-select_streams",
            "0",
        ])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-f", format, "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .status()
        .expect("ffmpeg runs");
    assert!(st.success(), "ffmpeg failed decoding {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a frame count")
}

/// Parameter sets out of an avcC or hvcC record, as Annex B.
fn annexb_params(codec: VideoCodec, config: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |nal: &[u8]| {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    };
    match codec {
        VideoCodec::H264 => {
            let mut at = 5;
            for _ in 0..2 {
                let n = usize::from(config[at] & if at == 5 { 0x1f } else { 0xff });
                at += 1;
                for _ in 0..n {
                    let len = usize::from(u16::from_be_bytes([config[at], config[at + 1]]));
                    push(&config[at + 2..at + 2 + len]);
                    at += 2 + len;
                }
            }
        }
        VideoCodec::H265 => {
            let arrays = usize::from(config[22]);
            let mut at = 23;
            for _ in 0..arrays {
                let n = usize::from(u16::from_be_bytes([config[at + 1], config[at + 2]]));
                at += 3;
                for _ in 0..n {
                    let len = usize::from(u16::from_be_bytes([config[at], config[at + 1]]));
                    push(&config[at + 2..at + 2 + len]);
                    at += 2 + len;
                }
            }
        }
    }
    out
}

/// Writes the video frames as Annex B and the audio frames as ADTS next to `base`.
pub fn dump(frames: &[Frame], base: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let params = &frames[0].params;
    let mut video_out = None;
    let mut audio_out = None;
    for (i, t) in params.tracks.iter().enumerate() {
        match t {
            TrackParams::Video(v) => {
                let mut es = annexb_params(v.codec, &v.config);
                for f in frames.iter().filter(|f| f.track == i) {
                    let d = &f.data[..];
                    let mut at = 0;
                    while at < d.len() {
                        let len = u32::from_be_bytes(d[at..at + 4].try_into().unwrap()) as usize;
                        es.extend_from_slice(&[0, 0, 0, 1]);
                        es.extend_from_slice(&d[at + 4..at + 4 + len]);
                        at += 4 + len;
                    }
                    assert_eq!(at, d.len(), "NAL lengths add up to the frame size");
                }
                let (ext, _) = match v.codec {
                    VideoCodec::H264 => ("h264", ()),
                    VideoCodec::H265 => ("hevc", ()),
                };
                let p = base.with_extension(ext);
                std::fs::write(&p, es).unwrap();
                video_out = Some(p);
            }
            TrackParams::Audio(a) => {
                assert_eq!(a.codec, AudioCodec::Aac);
                let profile = (a.config[0] >> 3) - 1;
                let freq = ((a.config[0] & 7) << 1) | (a.config[1] >> 7);
                let ch = (a.config[1] >> 3) & 0xf;
                let mut es = Vec::new();
                for f in frames.iter().filter(|f| f.track == i) {
                    let len = f.data.len() + 7;
                    es.extend_from_slice(&[
                        0xff,
                        0xf1,
                        (profile << 6) | (freq << 2) | (ch >> 2),
                        ((ch & 3) << 6) | (len >> 11) as u8,
                        (len >> 3) as u8,
                        ((len & 7) << 5) as u8 | 0x1f,
                        0xfc,
                    ]);
                    es.extend_from_slice(&f.data);
                }
                let p = base.with_extension("aac");
                std::fs::write(&p, es).unwrap();
                audio_out = Some(p);
            }
        }
    }
    (video_out, audio_out)
}

pub fn count(frames: &[Frame], track: usize) -> usize {
    frames.iter().filter(|f| f.track == track).count()
}

pub fn assert_time_order(frames: &[Frame]) {
    let secs = |f: &Frame| f.dts as f64 / f64::from(f.track_params().timescale());
    for w in frames.windows(2) {
        assert!(
            secs(&w[0]) <= secs(&w[1]) + 1e-9,
            "frames interleave in dts order"
        );
    }
    for track in 0..frames[0].params.tracks.len() {
        let dts: Vec<i64> = frames
            .iter()
            .filter(|f| f.track == track)
            .map(|f| f.dts)
            .collect();
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "dts increases on track {track}"
        );
    }
}
