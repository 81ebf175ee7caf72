//! Decode timestamps for video that only carries presentation timestamps.
//!
//! RTP (and so RTSP) timestamps are *presentation* times. A stream with B-frames sends its
//! frames in decode order with presentation times that jump back and forth, and MP4 needs
//! a decode time per sample that only goes forward and is never after the presentation
//! time. The classic answer, used here: delay the frames by a few, give the n-th frame (in
//! decode order) the n-th smallest presentation time seen, and shift all of them back by the
//! stream's reordering delay, measured once on the first [`DEPTH`]` + 1` frames (the most any
//! frame's sorted time comes after its own presentation time). For a stream without B-frames
//! the shift is 0 and decode times equal presentation times; with B-frames, every decode time
//! is at or before its presentation time, as MP4 wants, and composition offsets stay positive.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Frames held back. x264 and most encoders reorder at most 2–3 frames (B-pyramid); 4 costs
/// ~130 ms of latency at 30 fps, which a recorder does not notice.
pub const DEPTH: usize = 4;

/// Assigns decode times to frames given in decode order with presentation times only.
#[derive(Debug)]
pub struct DtsFromPts<T> {
    /// Frames waiting for their decode time, in decode order, with their pts.
    held: VecDeque<(i64, T)>,
    /// Presentation times not yet handed out as decode times.
    pts: BinaryHeap<Reverse<i64>>,
    last_dts: i64,
    /// The reordering delay subtracted from every decode time; fixed before the first frame
    /// leaves, so decode times never go back.
    shift: Option<i64>,
}

impl<T> Default for DtsFromPts<T> {
    fn default() -> Self {
        DtsFromPts {
            held: VecDeque::with_capacity(DEPTH + 1),
            pts: BinaryHeap::with_capacity(DEPTH + 1),
            last_dts: i64::MIN,
            shift: None,
        }
    }
}

impl<T> DtsFromPts<T> {
    /// Add a frame; returns the frame that leaves the window as `(dts, pts, frame)`.
    pub fn push(&mut self, pts: i64, frame: T) -> Option<(i64, i64, T)> {
        self.held.push_back((pts, frame));
        self.pts.push(Reverse(pts));
        if self.held.len() > DEPTH {
            self.pop()
        } else {
            None
        }
    }

    /// Hand out the frames still held (end of stream).
    pub fn drain(&mut self) -> Option<(i64, i64, T)> {
        self.pop()
    }

    /// Forget everything held (a discontinuity).
    pub fn clear(&mut self) {
        self.held.clear();
        self.pts.clear();
        self.last_dts = i64::MIN;
        self.shift = None;
    }

    fn pop(&mut self) -> Option<(i64, i64, T)> {
        let shift = *self.shift.get_or_insert_with(|| {
            let mut sorted: Vec<i64> = self.held.iter().map(|(p, _)| *p).collect();
            sorted.sort_unstable();
            let late = self.held.iter().zip(&sorted).map(|((p, _), s)| s - p);
            late.max().unwrap_or(0).max(0)
        });
        let (pts, frame) = self.held.pop_front()?;
        let Reverse(smallest) = self.pts.pop()?;
        // Reordering deeper than measured would put dts after pts: clamp, stay monotonic.
        let dts = (smallest - shift).min(pts).max(self.last_dts);
        self.last_dts = dts;
        Some((dts, pts, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pts: &[i64]) -> Vec<(i64, i64)> {
        let mut r = DtsFromPts::default();
        let mut out = Vec::new();
        for (i, &p) in pts.iter().enumerate() {
            if let Some((d, p, _)) = r.push(p, i) {
                out.push((d, p));
            }
        }
        while let Some((d, p, _)) = r.drain() {
            out.push((d, p));
        }
        out
    }

    #[test]
    fn stream_without_b_frames_keeps_its_timestamps() {
        let pts: Vec<i64> = (0..20).map(|i| i * 3000).collect();
        let out = run(&pts);
        assert_eq!(out.len(), 20);
        assert!(out.iter().all(|(d, p)| d == p));
    }

    #[test]
    fn b_frames_get_increasing_decode_times_not_after_presentation() {
        // I P B B P B B ... in decode order (pts in frame units of 3000).
        let order = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12, 10, 11];
        let pts: Vec<i64> = order.iter().map(|n| n * 3000).collect();
        let out = run(&pts);
        assert_eq!(out.len(), pts.len());
        for w in out.windows(2) {
            assert!(w[1].0 > w[0].0, "decode times strictly increase: {out:?}");
        }
        for (d, p) in &out {
            assert!(d <= p, "dts {d} after pts {p}");
        }
        // Every sample lasts one frame.
        for w in out.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 3000);
        }
    }

    #[test]
    fn b_pyramid_is_handled() {
        // I P B b b with a reference B (pyramid): decode order 0 4 2 1 3 8 6 5 7.
        let order = [0, 4, 2, 1, 3, 8, 6, 5, 7];
        let out = run(&order.iter().map(|n| n * 1000).collect::<Vec<_>>());
        for w in out.windows(2) {
            assert!(w[1].0 > w[0].0);
        }
        assert!(out.iter().all(|(d, p)| d <= p));
    }

    #[test]
    fn reordering_deeper_than_the_window_stays_monotonic() {
        let out = run(&[
            0, 10_000, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000,
        ]);
        for w in out.windows(2) {
            assert!(w[1].0 >= w[0].0);
        }
        assert!(out.iter().all(|(d, p)| d <= p));
    }
}
