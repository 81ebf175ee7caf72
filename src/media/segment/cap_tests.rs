//! Segmenter tests for sources that misbehave over time: no key frames for longer than the
//! interval (the segment cap), a video track that stalls while audio flows; and a B-frame
//! stream that ends, wherever the last fragment boundary fell.

use super::tests::{audio, av, closes, params, run, seg, starts, video, ADUR, VDUR};
use super::*;

pub(super) fn fragments(ev: &[SegmentEvent]) -> Vec<&Fragment> {
    ev.iter()
        .filter_map(|e| match e {
            SegmentEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn a_source_without_key_frames_is_cut_at_twice_the_interval() {
    let p = params(320);
    let mut s = seg(1, 1000);
    // One key frame, then 60 s without another.
    let mut frames = vec![video(&p, 0, 1)];
    frames.extend((1..1500).map(|n| video(&p, n, i64::MAX)));
    let mut ev = run(&mut s, frames);
    s.finish(CloseReason::Shutdown, &mut ev);
    let st = starts(&ev);
    let cl = closes(&ev);
    assert_eq!(st.len(), 30, "a segment every 2 s");
    for c in &cl[..29] {
        assert_eq!(c.reason, CloseReason::KeyFrameOverdue);
        assert_eq!(c.duration_ms, 2000);
    }
    // No frame is lost at the cuts: the durations add up to the whole stream.
    let total: u64 = cl.iter().map(|c| c.duration_ms).sum();
    assert_eq!(total, 1500 * 40);
    for w in st.windows(2) {
        assert_eq!(w[1].meta.start_ms - w[0].meta.start_ms, 2000);
    }
    // The segments after the first start on a frame that is not a key frame.
    let firsts: Vec<bool> = ev
        .iter()
        .scan(false, |after_start, e| {
            Some(match e {
                SegmentEvent::Start(_) => {
                    *after_start = true;
                    None
                }
                SegmentEvent::Fragment(f) if std::mem::take(after_start) => {
                    Some(f.runs[0].samples[0].keyframe)
                }
                _ => None,
            })
        })
        .flatten()
        .collect();
    assert_eq!(firsts.len(), 30);
    assert!(firsts[0] && firsts[1..].iter().all(|k| !k), "{firsts:?}");
    assert_eq!(s.keyless_episodes(), 1, "warned once for the whole run");
    assert!(fragments(&ev).len() >= 59);
}

#[test]
fn a_key_frame_after_the_interval_but_before_the_cap_still_cuts_on_it() {
    let p = params(320);
    let mut s = seg(1, 1000);
    // A key frame every 1.6 s: later than `interval`, earlier than twice it.
    let mut ev = run(&mut s, (0..400).map(|n| video(&p, n, 40)).collect());
    s.finish(CloseReason::Shutdown, &mut ev);
    let cl = closes(&ev);
    assert_eq!(cl.len(), 10);
    assert!(cl[..9].iter().all(|c| c.reason == CloseReason::Interval));
    assert!(cl[..9].iter().all(|c| c.duration_ms == 1600));
    assert_eq!(s.keyless_episodes(), 0);
}

#[test]
fn each_run_of_cuts_without_key_frames_warns_once() {
    let p = params(320);
    let mut s = seg(1, 1000);
    // Key frames at 0 and 10 s only: two runs of key-frame-less cuts.
    let frames = (0..500)
        .map(|n| video(&p, n, if n == 250 { 1 } else { i64::MAX }))
        .map(|mut f| {
            f.keyframe |= f.dts == 0;
            f
        })
        .collect();
    let ev = run(&mut s, frames);
    let cl = closes(&ev);
    assert!(
        cl.iter().any(|c| c.reason == CloseReason::Interval),
        "{cl:?}"
    );
    assert!(
        cl.iter()
            .filter(|c| c.reason == CloseReason::KeyFrameOverdue)
            .count()
            >= 6
    );
    assert_eq!(s.keyless_episodes(), 2);
}

#[test]
fn fragments_close_on_audio_time_while_video_stalls() {
    let p = params(320);
    let mut s = seg(60, 1000);
    // 1 s of A/V, then the video stops and 5 s of audio follow.
    let mut frames = av(&p, 0, 1, 25);
    let a0 = frames.iter().filter(|f| f.track == 1).count() as i64;
    frames.extend((a0..a0 + 5 * 47).map(|n| audio(&p, n)));
    let ev = run(&mut s, frames);
    let frags = fragments(&ev);
    assert!(frags.len() >= 5, "{} fragments", frags.len());
    for f in &frags[1..] {
        let a = f.runs.iter().find(|r| r.track == 1).unwrap();
        let secs = a.samples.len() as f64 * ADUR as f64 / 48_000.0;
        assert!((0.9..=1.1).contains(&secs), "an audio fragment of {secs} s");
    }
}

#[test]
fn a_complete_b_frame_stream_keeps_every_frame_wherever_the_last_fragment_starts() {
    let p = params(320);
    // Decode order I, then P B B groups: P shown after its two B-frames; every frame
    // arrived. Stream lengths and fragment sizes put the last boundary anywhere in a group.
    let pts_of = |n: i64| {
        if n == 0 {
            0
        } else {
            3 * ((n - 1) / 3) + [3, 1, 2][((n - 1) % 3) as usize]
        }
    };
    for total in [28, 31, 34, 37, 40] {
        for frag_frames in 2..=7u64 {
            let mut s = seg(60, frag_frames * 40);
            let mut ev = Vec::new();
            for n in 0..total {
                let mut f = video(&p, n, 1000);
                f.pts = pts_of(n) * VDUR + VDUR;
                f.keyframe = n == 0;
                s.push(f, 0, &mut ev);
            }
            s.finish(CloseReason::SourceEnded, &mut ev);
            let samples: usize = ev
                .iter()
                .filter_map(|e| match e {
                    SegmentEvent::Fragment(f) => Some(f.runs[0].samples.len()),
                    _ => None,
                })
                .sum();
            let case = format!("{total} frames in fragments of {frag_frames}");
            assert_eq!(samples, total as usize, "{case}");
            assert_eq!(closes(&ev)[0].duration_ms, total as u64 * 40, "{case}");
        }
    }
}
