//! The segmenter across wall-clock steps: no overlap, corrections move the open segment.

use super::tests::{av, closes, params, seg, starts};
use super::*;

const T0: i64 = 1_700_000_000_000;

/// Frames pushed with a wall clock that follows media time, plus `step(i)` after frame i.
fn run_stepped(s: &mut Segmenter, secs: i64, step: impl Fn(usize) -> i64) -> Vec<SegmentEvent> {
    let p = params(320);
    let mut out = Vec::new();
    for (i, f) in av(&p, 0, secs, 25).into_iter().enumerate() {
        let wall = T0 + f.dts * 1000 / f.track_params().timescale() as i64 + step(i);
        s.push(f, wall, &mut out);
    }
    s.finish(CloseReason::Shutdown, &mut out);
    out
}

fn assert_no_overlap(ev: &[SegmentEvent]) {
    let st = starts(ev);
    let cl = closes(ev);
    for (i, c) in cl.iter().enumerate() {
        assert_eq!(
            c.start_ms, st[i].meta.start_ms,
            "segment {i} keeps its start"
        );
        if let Some(next) = st.get(i + 1) {
            assert!(
                next.meta.start_ms >= c.end_ms,
                "segment {} starts at {} before {i} ends at {}",
                i + 1,
                next.meta.start_ms,
                c.end_ms
            );
        }
    }
}

#[test]
fn a_backward_step_never_makes_a_segment_overlap_the_one_before() {
    let mut s = seg(2, 500);
    // An hour back after 5 s of 12.
    let ev = run_stepped(&mut s, 12, |i| if i > 5 * 72 { -3_600_000 } else { 0 });
    assert!(starts(&ev).len() >= 5);
    assert_no_overlap(&ev);
}

#[test]
fn a_forward_step_starts_the_next_segment_on_the_new_time() {
    let mut s = seg(2, 500);
    let ev = run_stepped(&mut s, 8, |i| if i > 3 * 72 { 3_600_000 } else { 0 });
    assert_no_overlap(&ev);
    let last = starts(&ev).last().unwrap().meta.start_ms;
    assert!(last > T0 + 3_600_000, "{last}");
}

#[test]
fn a_correction_moves_the_open_segment_and_what_follows() {
    let p = params(320);
    let mut s = seg(2, 500);
    let mut ev = Vec::new();
    let frames = av(&p, 0, 6, 25);
    let half = frames.len() / 2;
    let delta = 1_796_000_000_000 - T0;
    for (i, f) in frames.into_iter().enumerate() {
        if i == half {
            s.shift_time(delta);
        }
        let shift = if i >= half { delta } else { 0 };
        let wall = T0 + f.dts * 1000 / f.track_params().timescale() as i64 + shift;
        s.push(f, wall, &mut ev);
    }
    s.finish(CloseReason::Shutdown, &mut ev);
    let st = starts(&ev);
    let cl = closes(&ev);
    // The segment open at the correction closes with its start moved by delta.
    let i = (0..cl.len())
        .find(|&i| cl[i].start_ms != st[i].meta.start_ms)
        .expect("one segment was open across the correction");
    assert_eq!(cl[i].start_ms, st[i].meta.start_ms + delta);
    assert_eq!(cl[i].end_ms, cl[i].start_ms + cl[i].duration_ms as i64);
    // And the next one follows on without a gap or an overlap.
    assert_eq!(st[i + 1].meta.start_ms, cl[i].end_ms);
}

#[test]
fn not_before_keeps_a_restarted_stream_after_its_last_segment() {
    let mut s = seg(2, 500);
    s.not_before(T0 + 3_600_000);
    let ev = run_stepped(&mut s, 4, |_| 0);
    assert_eq!(starts(&ev)[0].meta.start_ms, T0 + 3_600_000);
    assert_no_overlap(&ev);
}
