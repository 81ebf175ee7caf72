//! Segmenter tests with synthetic frames: 25 fps video at 90 kHz with a key frame every
//! second, and AAC at 48 kHz (1024 samples per frame), interleaved in dts order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::media::frame::*;

const VTS: i64 = 90_000;
pub(super) const VDUR: i64 = 3_600; // 25 fps
pub(super) const ADUR: i64 = 1_024;

pub(super) fn params(width: u16) -> Arc<StreamParams> {
    Arc::new(StreamParams {
        tracks: vec![
            TrackParams::Video(VideoParams {
                codec: VideoCodec::H264,
                width,
                height: 240,
                config: Bytes::from_static(b"avcC"),
                rfc6381: "avc1.64001f".into(),
                timescale: VTS as u32,
            }),
            TrackParams::Audio(AudioParams {
                codec: AudioCodec::Aac,
                sample_rate: 48_000,
                channels: 1,
                config: Bytes::from_static(&[0x11, 0x88]),
                timescale: 48_000,
                frame_samples: 1024,
            }),
        ],
    })
}

pub(super) fn video(p: &Arc<StreamParams>, n: i64, gop: i64) -> Frame {
    Frame {
        params: p.clone(),
        track: 0,
        dts: n * VDUR,
        pts: n * VDUR,
        keyframe: n % gop == 0,
        data: Bytes::from(vec![0u8; 100]),
    }
}

pub(super) fn audio(p: &Arc<StreamParams>, n: i64) -> Frame {
    Frame {
        params: p.clone(),
        track: 1,
        dts: n * ADUR,
        pts: n * ADUR,
        keyframe: true,
        data: Bytes::from(vec![1u8; 10]),
    }
}

/// `secs` seconds of interleaved A/V in dts order, video frames numbered from `v0`.
pub(super) fn av(p: &Arc<StreamParams>, v0: i64, secs: i64, gop: i64) -> Vec<Frame> {
    let mut out = Vec::new();
    let (mut v, mut a) = (v0, (v0 * VDUR * 48_000 / VTS) / ADUR);
    let vend = v0 + secs * 25;
    while v < vend {
        let vt = v * VDUR * 1_000 / VTS;
        let at = a * ADUR * 1_000 / 48_000;
        if at < vt {
            out.push(audio(p, a));
            a += 1;
        } else {
            out.push(video(p, v, gop));
            v += 1;
        }
    }
    out
}

pub(super) fn seg(interval: u64, fragment_ms: u64) -> Segmenter {
    Segmenter::new(
        SegmenterConfig {
            interval: Duration::from_secs(interval),
            fragment: Duration::from_millis(fragment_ms),
            max_fragment_bytes: 1 << 20,
        },
        StreamIdentity {
            device: "d".into(),
            app: "".into(),
            stream: "cam".into(),
        },
        7,
    )
}

pub(super) fn run(s: &mut Segmenter, frames: Vec<Frame>) -> Vec<SegmentEvent> {
    let mut out = Vec::new();
    for f in frames {
        let wall = 1_700_000_000_000 + f.dts * 1000 / f.track_params().timescale() as i64;
        s.push(f, wall, &mut out);
    }
    out
}

pub(super) fn starts(ev: &[SegmentEvent]) -> Vec<&SegmentStart> {
    ev.iter()
        .filter_map(|e| match e {
            SegmentEvent::Start(s) => Some(s),
            _ => None,
        })
        .collect()
}

pub(super) fn closes(ev: &[SegmentEvent]) -> Vec<&SegmentClose> {
    ev.iter()
        .filter_map(|e| match e {
            SegmentEvent::Close(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn waits_for_a_key_frame_before_starting() {
    let p = params(320);
    let mut s = seg(4, 1000);
    // Start mid-GOP: frames 10..25 are not key frames.
    let ev = run(&mut s, av(&p, 10, 3, 25));
    let st = starts(&ev);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].base_dts[0], 25 * VDUR);
    assert!(s.dropped().waiting_for_key > 0);
    // The first sample written is a key frame.
    let first = ev
        .iter()
        .find_map(|e| match e {
            SegmentEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .unwrap();
    let vrun = first.runs.iter().find(|r| r.track == 0).unwrap();
    assert!(vrun.samples[0].keyframe);
    assert_eq!(vrun.base_decode_time, 0);
}

#[test]
fn cuts_segment_only_on_keyframe_after_interval() {
    let p = params(320);
    let mut s = seg(3, 1000);
    // GOP of 2 s: the cut after 3 s must wait for the key frame at 4 s.
    let ev = run(&mut s, av(&p, 0, 9, 50));
    let st = starts(&ev);
    let cl = closes(&ev);
    assert_eq!(st.len(), 3, "starts at 0, 4 and 8 s");
    assert_eq!(cl.len(), 2);
    assert_eq!(st[1].base_dts[0], 100 * VDUR);
    assert_eq!(cl[0].duration_ms, 4000);
    assert_eq!(cl[0].reason, CloseReason::Interval);
    assert_eq!(st[0].meta.seq, 7);
    assert_eq!(st[1].meta.seq, 8);
}

#[test]
fn consecutive_segments_tile_the_wall_clock() {
    let p = params(320);
    let mut s = seg(2, 500);
    let ev = run(&mut s, av(&p, 0, 10, 25));
    let st = starts(&ev);
    let cl = closes(&ev);
    for (i, c) in cl.iter().enumerate() {
        assert_eq!(
            c.end_ms,
            st[i + 1].meta.start_ms,
            "segment {i} ends where the next starts"
        );
    }
}

#[test]
fn fragments_follow_the_fragment_duration() {
    let p = params(320);
    let mut s = seg(60, 500);
    let ev = run(&mut s, av(&p, 0, 5, 25));
    let frags: Vec<&Fragment> = ev
        .iter()
        .filter_map(|e| match e {
            SegmentEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .collect();
    // 5 s in 0.5 s fragments; the last one is still open.
    assert_eq!(frags.len(), 9);
    let mut frames = 0;
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(f.sequence, i as u32 + 1);
        let v = f.runs.iter().find(|r| r.track == 0).unwrap();
        assert!(
            (12..=13).contains(&v.samples.len()),
            "{i}: {}",
            v.samples.len()
        );
        frames += v.samples.len();
    }
    // On a fixed grid: 12.5 frames per 0.5 s on average, no drift (the video frame whose
    // duration is not known yet waits for the next fragment).
    assert_eq!(frames, 112);
}

#[test]
fn sample_durations_and_decode_times_are_continuous() {
    let p = params(320);
    let mut s = seg(60, 1000);
    let mut ev = run(&mut s, av(&p, 0, 4, 25));
    s.finish(CloseReason::Shutdown, &mut ev);
    for track in 0..2 {
        let mut next = 0u64;
        for e in &ev {
            if let SegmentEvent::Fragment(f) = e {
                if let Some(r) = f.runs.iter().find(|r| r.track == track) {
                    assert_eq!(r.base_decode_time, next, "track {track} tfdt");
                    next += r.samples.iter().map(|s| s.duration as u64).sum::<u64>();
                }
            }
        }
        assert!(next > 0);
    }
    let cl = closes(&ev);
    assert_eq!(cl[0].reason, CloseReason::Shutdown);
    assert_eq!(cl[0].duration_ms, 4000);
}

#[test]
fn new_parameters_start_a_new_segment() {
    let p1 = params(320);
    let p2 = params(640);
    let mut s = seg(60, 1000);
    let mut frames = av(&p1, 0, 2, 25);
    frames.extend(av(&p2, 50, 2, 25));
    let ev = run(&mut s, frames);
    let st = starts(&ev);
    assert_eq!(st.len(), 2);
    assert!(Arc::ptr_eq(&st[1].params, &p2));
    assert_eq!(closes(&ev)[0].reason, CloseReason::ParamsChanged);
    assert_eq!(closes(&ev)[0].duration_ms, 2000);
}

#[test]
fn equal_parameters_in_a_new_allocation_do_not_cut() {
    let p1 = params(320);
    let p2 = params(320);
    let mut s = seg(60, 1000);
    let mut frames = av(&p1, 0, 2, 25);
    frames.extend(av(&p2, 50, 2, 25));
    let ev = run(&mut s, frames);
    assert_eq!(starts(&ev).len(), 1);
}

#[test]
fn backwards_timestamp_closes_and_restarts_on_next_key_frame() {
    let p = params(320);
    let mut s = seg(60, 1000);
    let mut frames = av(&p, 100, 2, 25);
    frames.extend(av(&p, 0, 2, 25));
    let ev = run(&mut s, frames);
    assert_eq!(starts(&ev).len(), 2);
    assert_eq!(closes(&ev)[0].reason, CloseReason::Discontinuity);
}

#[test]
fn oversized_fragment_is_flushed_early() {
    let p = params(320);
    let mut s = Segmenter::new(
        SegmenterConfig {
            interval: Duration::from_secs(60),
            fragment: Duration::from_secs(10),
            max_fragment_bytes: 1000,
        },
        StreamIdentity::default(),
        0,
    );
    let ev = run(&mut s, (0..100).map(|n| video(&p, n, 1000)).collect());
    for e in &ev {
        if let SegmentEvent::Fragment(f) = e {
            assert!(f.media_bytes() <= 1100, "{}", f.media_bytes());
        }
    }
}

#[test]
fn audio_only_stream_cuts_on_any_frame() {
    let p = Arc::new(StreamParams {
        tracks: vec![params(1).tracks[1].clone()],
    });
    let mut s = seg(2, 1000);
    let frames = (0..300)
        .map(|n| {
            let mut f = audio(&p, n);
            f.track = 0;
            f
        })
        .collect();
    let ev = run(&mut s, frames);
    // 300 * 1024 / 48000 = 6.4 s -> segments start at 0, ~2, ~4, ~6 s.
    assert_eq!(starts(&ev).len(), 4);
}

#[test]
fn start_times_never_go_back_when_media_runs_ahead_of_the_wall_clock() {
    let p = params(320);
    let mut s = seg(2, 1000);
    let mut ev = Vec::new();
    // Replay as fast as possible: the wall clock barely moves while media time runs.
    for (i, f) in av(&p, 0, 20, 25).into_iter().enumerate() {
        s.push(f, 1_700_000_000_000 + i as i64 / 10, &mut ev);
    }
    let st = starts(&ev);
    assert!(st.len() >= 9);
    for w in st.windows(2) {
        assert!(
            w[1].meta.start_ms >= w[0].meta.start_ms + 2000,
            "{} then {}",
            w[0].meta.start_ms,
            w[1].meta.start_ms
        );
    }
}

#[test]
fn shutdown_drops_a_reference_frame_whose_b_frames_never_came() {
    let p = params(320);
    let mut s = seg(60, 10_000);
    let mut ev = Vec::new();
    // Decode order I P B B P(pts 6): the stream stops before P's B-frames arrive.
    let order = [
        (0, 0, true),
        (1, 3, false),
        (2, 1, false),
        (3, 2, false),
        (4, 6, false),
    ];
    for (n, pts, key) in order {
        let mut f = video(&p, n, 1000);
        f.pts = pts * VDUR + VDUR; // presentation one frame after decode, as after reordering
        f.dts = n * VDUR;
        f.keyframe = key;
        s.push(f, 0, &mut ev);
    }
    s.finish(CloseReason::Shutdown, &mut ev);
    let samples: usize = ev
        .iter()
        .filter_map(|e| match e {
            SegmentEvent::Fragment(f) => Some(f.runs[0].samples.len()),
            _ => None,
        })
        .sum();
    assert_eq!(samples, 4, "the trailing P without its B-frames is dropped");
    assert_eq!(closes(&ev)[0].duration_ms, 160);
}

#[test]
fn shutdown_drops_a_reference_frame_and_the_b_frame_that_needs_it_when_one_is_missing() {
    let p = params(320);
    let mut s = seg(60, 10_000);
    let mut ev = Vec::new();
    // Decode order I P B B P B [B missing]: the second P and its one B must go.
    let order = [
        (0, 0, true),
        (1, 3, false),
        (2, 1, false),
        (3, 2, false),
        (4, 6, false),
        (5, 4, false),
    ];
    for (n, pts, key) in order {
        let mut f = video(&p, n, 1000);
        f.pts = pts * VDUR + VDUR;
        f.dts = n * VDUR;
        f.keyframe = key;
        s.push(f, 0, &mut ev);
    }
    s.finish(CloseReason::Shutdown, &mut ev);
    let samples: usize = ev
        .iter()
        .filter_map(|e| match e {
            SegmentEvent::Fragment(f) => Some(f.runs[0].samples.len()),
            _ => None,
        })
        .sum();
    assert_eq!(samples, 4);
}

#[test]
fn shutdown_after_a_lone_reference_frame_keeps_the_index_duration_equal_to_the_media() {
    use crate::media::source::reorder::DtsFromPts;
    let p = params(320);
    let mut s = seg(60, 10_000);
    let mut ev = Vec::new();
    // RTP gives presentation times only; decode times come from the reorderer, which at the
    // end of the stream hands the lone P (pts 12) a decode time past the missing B-frames.
    let order = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12];
    let mut r = DtsFromPts::default();
    let mut out = Vec::new();
    for (n, &pts) in order.iter().enumerate() {
        out.extend(r.push(pts * VDUR, n));
    }
    while let Some(x) = r.drain() {
        out.push(x);
    }
    for (dts, pts, n) in out {
        let mut f = video(&p, n as i64, 1000);
        f.pts = pts;
        f.dts = dts;
        f.keyframe = n == 0;
        s.push(f, 0, &mut ev);
    }
    s.finish(CloseReason::Shutdown, &mut ev);
    let samples: Vec<&Sample> = ev
        .iter()
        .filter_map(|e| match e {
            SegmentEvent::Fragment(f) => Some(f.runs[0].samples.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(samples.len(), 10, "the P without its B-frames is dropped");
    let total: u64 = samples.iter().map(|s| s.duration as u64).sum();
    assert_eq!(total, 10 * VDUR as u64, "durations: {samples:?}");
    assert_eq!(closes(&ev)[0].duration_ms, (10 * VDUR * 1000 / VTS) as u64);
}

#[test]
fn audio_that_arrives_before_the_delayed_key_frame_is_kept() {
    let p = params(320);
    let mut s = seg(60, 1000);
    let mut ev = Vec::new();
    // Audio for 0..200 ms arrives first, then the video from 0 (held back upstream).
    for n in 0..10 {
        s.push(audio(&p, n), 0, &mut ev);
    }
    let mut sent = 10;
    for f in av(&p, 0, 1, 25) {
        if f.track == 1 && f.dts < 10 * ADUR {
            continue; // already sent above
        }
        sent += usize::from(f.track == 1);
        s.push(f, 0, &mut ev);
    }
    s.finish(CloseReason::Shutdown, &mut ev);
    assert_eq!(starts(&ev).len(), 1, "one segment, no discontinuity");
    let audio_samples: usize = ev
        .iter()
        .filter_map(|e| match e {
            SegmentEvent::Fragment(f) => f
                .runs
                .iter()
                .find(|r| r.track == 1)
                .map(|r| r.samples.len()),
            _ => None,
        })
        .sum();
    assert_eq!(audio_samples, sent, "every audio frame is kept");
    let first_audio = ev
        .iter()
        .find_map(|e| match e {
            SegmentEvent::Fragment(f) => f.runs.iter().find(|r| r.track == 1).cloned(),
            _ => None,
        })
        .unwrap();
    assert_eq!(first_audio.base_decode_time, 0, "audio from time 0 is kept");
}

#[test]
fn audio_held_while_waiting_is_bounded() {
    let p = params(320);
    let mut s = seg(60, 1000);
    let mut ev = Vec::new();
    for n in 0..1000 {
        s.push(audio(&p, n), 0, &mut ev);
    }
    assert!(ev.is_empty());
    assert!(s.dropped().waiting_for_key >= 1000 - 64);
}
