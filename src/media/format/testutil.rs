//! Test helpers: make real clips with ffmpeg, read them into segment events, and check our
//! output with ffprobe / ffmpeg (independent readers).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use mp4_atom::{Atom, Avcc, Codec, Moov, Trak};

use super::boxes::{read_body, read_header, Found};
use super::fmp4::{encode_fragment, encode_init};
use crate::media::frame::{
    AudioCodec, AudioParams, StreamParams, TrackParams, VideoCodec, VideoParams,
};
use crate::media::segment::event::{Fragment, Sample, SegmentMeta, SegmentStart, TrackRun};
use crate::media::source::mp4_entry::opus_head;
use crate::media::source::mp4_table::{Cursor as SampleCursor, SampleTable};

/// Video encoders the clips can use.
#[derive(Clone, Copy, Debug)]
pub enum Video {
    H264,
    H265,
}

/// Audio encoders the clips can use.
#[derive(Clone, Copy, Debug)]
pub enum Audio {
    Aac,
    Opus,
}

/// Whether this ffmpeg has `encoder` (e.g. `libx265`).
pub fn has_encoder(encoder: &str) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w == encoder)
}

/// Makes a `secs`-second 320x240 25 fps clip with 1 s GOPs and B-frames, plus a 48 kHz tone.
pub fn make_clip(dir: &Path, video: Video, audio: Option<Audio>, secs: u32) -> PathBuf {
    let path = dir.join("source.mp4");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate=25:duration={secs}"));
    if audio.is_some() {
        cmd.args(["-f", "lavfi", "-i"])
            .arg(format!("sine=f=440:r=48000:duration={secs}"));
    }
    match video {
        Video::H264 => cmd.args(["-c:v", "libx264", "-g", "25", "-bf", "2"]),
        Video::H265 => cmd.args([
            "-c:v",
            "libx265",
            "-x265-params",
            "keyint=25:min-keyint=25:bframes=2:log-level=error",
        ]),
    };
    match audio {
        Some(Audio::Aac) => cmd.args(["-c:a", "aac"]),
        Some(Audio::Opus) => cmd.args(["-c:a", "libopus"]),
        None => &mut cmd,
    };
    let status = cmd.arg(&path).status().expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make the test clip");
    path
}

/// The metadata tests write into files.
pub fn meta() -> SegmentMeta {
    SegmentMeta {
        device: "pi-garage".to_string(),
        app: String::new(),
        stream: "front door".to_string(),
        seq: 42,
        start_ms: 1_700_000_000_123,
        formats: vec![],
        time_quality: None,
        boot: None,
    }
}

/// A tiny stream: one fake H.264 track (valid avcC, not decodable data) and one AAC track.
pub fn synthetic_start() -> SegmentStart {
    let avcc = Avcc::new(&[0x67, 0x64, 0x00, 0x1f, 0xac], &[0x68, 0xeb]).unwrap();
    let mut record = Vec::new();
    avcc.encode_body(&mut record).unwrap();
    SegmentStart {
        meta: meta(),
        params: Arc::new(StreamParams {
            tracks: vec![
                TrackParams::Video(VideoParams {
                    codec: VideoCodec::H264,
                    width: 640,
                    height: 480,
                    config: Bytes::from(record),
                    rfc6381: "avc1.64001f".to_string(),
                    timescale: 90_000,
                }),
                TrackParams::Audio(AudioParams {
                    codec: AudioCodec::Aac,
                    sample_rate: 16_000,
                    channels: 1,
                    config: Bytes::from_static(&[0x14, 0x08]),
                    timescale: 16_000,
                    frame_samples: 1024,
                }),
            ],
        }),
        base_dts: vec![0, 0],
    }
}

/// Reads an MP4 made by ffmpeg into a segment start and ~1 s fragments cut on video key
/// frames, as the segmenter would produce them.
pub fn load_clip(path: &Path) -> (SegmentStart, Vec<Fragment>) {
    let bytes = std::fs::read(path).unwrap();
    let mut moov = find_moov(&bytes);

    let mut tracks = Vec::new();
    let mut samples: Vec<Vec<(u64, Sample)>> = Vec::new();
    for trak in &mut moov.trak {
        let timescale = trak.mdia.mdhd.timescale;
        let params = match &trak.mdia.minf.stbl.stsd.codecs[0] {
            Codec::Avc1(a) => video(VideoCodec::H264, &a.visual, &a.avcc, timescale),
            Codec::Hev1(h) => video(VideoCodec::H265, &h.visual, &h.hvcc, timescale),
            Codec::Hvc1(h) => video(VideoCodec::H265, &h.visual, &h.hvcc, timescale),
            Codec::Mp4a(m) => TrackParams::Audio(AudioParams {
                codec: AudioCodec::Aac,
                sample_rate: timescale,
                channels: m.audio.channel_count,
                config: Bytes::from(m.esds.es_desc.dec_config.dec_specific.clone().unwrap().raw),
                timescale,
                frame_samples: 1024,
            }),
            Codec::Opus(o) => TrackParams::Audio(AudioParams {
                codec: AudioCodec::Opus,
                sample_rate: 48000,
                channels: o.audio.channel_count,
                config: opus_head(&o.dops),
                timescale,
                frame_samples: 960,
            }),
            other => panic!("unexpected codec in test clip: {other:?}"),
        };
        tracks.push(params);
        samples.push(track_samples(trak, &bytes));
    }

    let params = Arc::new(StreamParams { tracks });
    let video = params.video_track().expect("clip has video");
    let scale = |t: usize, ticks: u64| ticks as f64 / f64::from(params.tracks[t].timescale());
    // Fragment boundaries: the decode times (seconds) of the video key frames.
    let mut cuts: Vec<f64> = samples[video]
        .iter()
        .filter(|(_, s)| s.keyframe)
        .map(|(dts, _)| scale(video, *dts))
        .collect();
    cuts.push(f64::INFINITY);
    let mut frags = Vec::new();
    for (k, w) in cuts.windows(2).enumerate() {
        let mut runs = Vec::new();
        for (t, list) in samples.iter().enumerate() {
            let in_frag: Vec<_> = list
                .iter()
                .filter(|(dts, _)| {
                    let s = scale(t, *dts);
                    (k == 0 || s >= w[0]) && s < w[1]
                })
                .collect();
            if let Some((first, _)) = in_frag.first() {
                runs.push(TrackRun {
                    track: t,
                    base_decode_time: *first,
                    samples: in_frag.iter().map(|(_, s)| s.clone()).collect(),
                });
            }
        }
        frags.push(Fragment {
            sequence: k as u32 + 1,
            runs,
        });
    }
    let start = SegmentStart {
        meta: meta(),
        base_dts: vec![0; params.tracks.len()],
        params,
    };
    (start, frags)
}

fn video<C: Atom>(
    codec: VideoCodec,
    v: &mp4_atom::Visual,
    config: &C,
    timescale: u32,
) -> TrackParams {
    let mut record = Vec::new();
    config.encode_body(&mut record).unwrap();
    TrackParams::Video(VideoParams {
        codec,
        width: v.width,
        height: v.height,
        config: Bytes::from(record),
        rfc6381: String::new(),
        timescale,
    })
}

/// Every sample of a track of the MP4 file `bytes`, as `(decode time, sample)`, read with
/// the file source's sample tables.
pub fn track_samples(trak: &mut Trak, bytes: &[u8]) -> Vec<(u64, Sample)> {
    let table = SampleTable::take(&mut trak.mdia.minf.stbl);
    let mut cursor = SampleCursor::default();
    let mut out = Vec::new();
    while let Some(s) = table.next(&mut cursor).unwrap() {
        let at = usize::try_from(s.offset).unwrap();
        out.push((
            s.dts,
            Sample {
                duration: s.duration,
                cts_offset: i32::try_from(s.cts).unwrap(),
                keyframe: s.sync,
                data: Bytes::copy_from_slice(&bytes[at..at + s.size as usize]),
            },
        ));
    }
    out
}

/// The decoded `moov` of an MP4 file held in memory.
pub fn find_moov(bytes: &[u8]) -> Moov {
    let mut r = Cursor::new(bytes);
    let mut at = 0;
    while let Found::Box(h) = read_header(&mut r, at, bytes.len() as u64).unwrap() {
        if &h.kind == b"moov" {
            let body = read_body(&mut r, &h, u64::MAX).unwrap().unwrap();
            return Moov::decode_body(&mut &body[..]).unwrap();
        }
        at = h.end();
    }
    panic!("no moov in file");
}

/// Top-level box kinds of a file, in order.
pub fn top_level_kinds(bytes: &[u8]) -> Vec<String> {
    let mut r = Cursor::new(bytes);
    let mut at = 0;
    let mut kinds = Vec::new();
    while let Found::Box(h) = read_header(&mut r, at, bytes.len() as u64).unwrap() {
        kinds.push(String::from_utf8_lossy(&h.kind).into_owned());
        at = h.end();
    }
    kinds
}

/// A whole fMP4 segment: init then every fragment.
pub fn write_fmp4(start: &SegmentStart, frags: &[Fragment]) -> Vec<u8> {
    let mut out = encode_init(start).unwrap();
    for f in frags {
        out.extend_from_slice(&encode_fragment(start, f));
    }
    out
}

/// `ffprobe -show_streams -show_format` as JSON.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe rejected {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `ffmpeg -v error -i F -f null -` prints while decoding everything (empty = clean).
pub fn ffmpeg_decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    text
}

/// Number of frames ffprobe counts when decoding a stream (`-count_frames`).
pub fn decoded_frames(path: &Path, stream: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no frame count: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A stream's field as f64 (ffprobe prints most numbers as strings).
pub fn stream_f64(probe: &serde_json::Value, index: usize, field: &str) -> f64 {
    let v = &probe["streams"][index][field];
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or_else(|| panic!("stream {index} has no numeric {field}: {probe}"))
}
