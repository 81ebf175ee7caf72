//! Test fixture: real H.264 segments. ffmpeg makes a clip; mp4-atom and the file source's
//! sample tables read its samples back; `format::fmp4` encodes them as the recorder would.
//! ffprobe/ffmpeg check the output.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mp4_atom::Codec;

use crate::media::codec::avc;
use crate::media::format::fmp4::{encode_fragment, encode_init};
use crate::media::format::testutil::{find_moov, track_samples};
use crate::media::frame::{StreamParams, TrackParams, VideoParams};
use crate::media::segment::event::{
    CloseReason, Fragment, Sample, SegmentClose, SegmentMeta, SegmentStart, TrackRun,
};

/// A segment as the recorder hands it to the store: init bytes and one encoded fragment
/// per second of video.
pub(crate) struct Clip {
    pub start: SegmentStart,
    pub init: Vec<u8>,
    pub fragments: Vec<Vec<u8>>,
    /// Media duration of each fragment, ms.
    pub fragment_ms: u64,
}

impl Clip {
    /// The close event after the first `n` fragments.
    pub fn close_after(&self, n: usize) -> SegmentClose {
        let duration_ms = self.fragment_ms * n as u64;
        SegmentClose {
            reason: CloseReason::Interval,
            start_ms: self.start.meta.start_ms,
            duration_ms,
            end_ms: self.start.meta.start_ms + duration_ms as i64,
        }
    }

    /// The same media under another identity.
    pub fn with_meta(&self, meta: SegmentMeta) -> Clip {
        let start = SegmentStart {
            meta,
            ..self.start.clone()
        };
        let init = encode_init(&start).expect("init encodes");
        Clip {
            start,
            init,
            fragments: self.fragments.clone(),
            fragment_ms: self.fragment_ms,
        }
    }
}

/// Metadata for tests.
pub(crate) fn meta(stream: &str, seq: u64) -> SegmentMeta {
    SegmentMeta {
        device: "pi-test".into(),
        app: String::new(),
        stream: stream.into(),
        seq,
        start_ms: 1_700_000_000_000 + seq as i64 * 60_000,
        formats: vec![],
        time_quality: None,
        boot: None,
    }
}

/// A `secs`-second 160x120 25 fps H.264 clip cut into 1 s fragments.
pub(crate) fn clip(dir: &Path, secs: u32) -> Clip {
    let path = dir.join("fixture-source.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=160x120:rate=25:duration={secs}"))
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-preset", "ultrafast"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the fixture clip");
    let bytes = std::fs::read(&path).unwrap();
    let mut moov = find_moov(&bytes);
    let trak = &mut moov.trak[0];
    let Codec::Avc1(entry) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("the fixture clip is not H.264");
    };
    let sps = entry.avcc.sequence_parameter_sets[0].clone();
    let pps = entry.avcc.picture_parameter_sets[0].clone();
    let (width, height) = (entry.visual.width, entry.visual.height);
    let timescale = trak.mdia.mdhd.timescale;
    let video = avc::params_from(&sps, &pps, timescale).expect("the fixture's SPS reads");
    let params = Arc::new(StreamParams {
        tracks: vec![TrackParams::Video(VideoParams {
            width,
            height,
            ..video
        })],
    });
    let start = SegmentStart {
        meta: meta("cam", 0),
        params,
        base_dts: vec![0],
    };
    let mut gops: Vec<(u64, Vec<Sample>)> = Vec::new();
    for (dts, s) in track_samples(trak, &bytes) {
        if s.keyframe || gops.is_empty() {
            gops.push((dts, Vec::new()));
        }
        gops.last_mut().unwrap().1.push(s);
    }
    let fragments = gops
        .into_iter()
        .enumerate()
        .map(|(k, (base, samples))| {
            let frag = Fragment {
                sequence: k as u32 + 1,
                runs: vec![TrackRun {
                    track: 0,
                    base_decode_time: base,
                    samples,
                }],
            };
            encode_fragment(&start, &frag)
        })
        .collect();
    let init = encode_init(&start).expect("init encodes");
    Clip {
        start,
        init,
        fragments,
        fragment_ms: 1000,
    }
}

/// What `ffmpeg -v error -i F -f null -` prints (empty = decodes cleanly).
pub(crate) fn decode_errors(path: &Path) -> String {
    crate::media::format::testutil::ffmpeg_decode_errors(path)
}

/// Frames ffprobe decodes in the first video stream.
pub(crate) fn decoded_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe gave no frame count for {}: {text}", path.display()))
}

/// The libtest name of test `name` in the module whose `module_path!()` is `module` (the
/// path without the crate's name), to re-execute this test binary on exactly that test;
/// right wherever the module moves.
pub(crate) fn libtest_name(module: &str, name: &str) -> String {
    let module = module
        .split_once("::")
        .map_or(module, |(_crate, rest)| rest);
    format!("{module}::{name}")
}
