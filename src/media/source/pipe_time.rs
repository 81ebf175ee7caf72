//! Timestamps for a pipe source, which carries none: decode times from arrival times, and
//! presentation times from the picture order count. Pure: the caller passes the clock's
//! readings in.
//!
//! [`Pacer`]: a camera pipe delivers frames in bursts (pipe buffers, encoder batching), so
//! raw arrival times jitter. Each decode time is the previous one plus the frame interval
//! (the `fps` hint, or an estimate of it learned from the spacing of arrivals and taken as
//! a common camera rate such as 25 or 29.97 when within 1.5% of one), pulled 1/16
//! of the way towards the actual arrival time when the frame is late, so the long-term rate
//! follows the camera. A frame that comes early (a burst of buffered ones, or jitter under
//! load) gets exactly one interval: a step shorter than a frame makes players and ffmpeg see
//! two pictures at one time at the stream's frame rate. Only when the stamps run more than
//! half a second ahead of the arrivals (a hint faster than the camera) are early frames
//! pulled back, never closer than half an interval. A gap of more than a second (the camera
//! dropped frames or stalled) re-anchors at the arrival time.
//!
//! [`PtsFromOrder`]: with B-frames, pictures arrive in decode order and are shown in POC
//! order. Frames are held back [`DEPTH`] at a time; the k-th picture in presentation order
//! gets the k-th decode time, shifted by the reordering delay measured on the first window,
//! and never before its own decode time. Without B-frames the shift is 0 and pts = dts.

use std::collections::VecDeque;
use std::time::Duration;

/// Pictures held back to find the presentation order (~130 ms at 30 fps).
pub const DEPTH: usize = 4;

/// Decode times (in `timescale` ticks since the source started) from arrival times.
#[derive(Debug)]
pub struct Pacer {
    timescale: u64,
    /// Ticks per frame: fixed by the hint, or estimated.
    interval: f64,
    fixed: bool,
    last: Option<f64>,
    /// The last arrivals (ticks), at most [`WINDOW`], for the estimate.
    arrivals: VecDeque<f64>,
}

impl Pacer {
    /// `fps`: the frame rate hint; `None` estimates it from arrivals.
    pub fn new(timescale: u32, fps: Option<f64>) -> Pacer {
        let fixed = fps.is_some_and(|f| f > 0.0);
        Pacer {
            timescale: u64::from(timescale),
            interval: f64::from(timescale) / fps.filter(|f| *f > 0.0).unwrap_or(25.0),
            fixed,
            last: None,
            arrivals: VecDeque::new(),
        }
    }

    /// The decode time of a frame that arrived `since_start` after the source started.
    pub fn next(&mut self, since_start: Duration) -> i64 {
        let second = self.timescale as f64;
        let arrival = since_start.as_secs_f64() * second;
        if !self.fixed {
            // The mean spacing of the last arrivals: over a window, the jitter of each
            // arrival counts only at the two ends. A gap or a clock step back starts the
            // window over; until it holds a few frames the estimate stays as it was.
            if let Some(&la) = self.arrivals.back() {
                let d = arrival - la;
                if !(0.0..second).contains(&d) {
                    self.arrivals.clear();
                }
            }
            if self.arrivals.len() == WINDOW {
                self.arrivals.pop_front();
            }
            self.arrivals.push_back(arrival);
            if self.arrivals.len() >= 16 {
                let (first, last) = (self.arrivals[0], arrival);
                let est = (last - first) / (self.arrivals.len() - 1) as f64;
                self.interval = est.max(1.0);
            }
        }
        let interval = if self.fixed {
            self.interval
        } else {
            snap(self.interval, second)
        };
        let t = match self.last {
            None => arrival,
            Some(last) => {
                let predicted = last + interval;
                let err = arrival - predicted;
                if err > second {
                    // A gap: the camera stalled or dropped frames.
                    arrival
                } else {
                    let floor = if -err < second / 2.0 {
                        interval
                    } else {
                        interval / 2.0
                    };
                    (predicted + err / 16.0).max(last + floor)
                }
            }
        };
        self.last = Some(t);
        t as i64
    }
}

/// Arrivals the frame interval is estimated over (about 2 s at 30 fps).
const WINDOW: usize = 64;

/// Frame rates cameras use: a learned interval within 1.5% of one is taken as exactly it,
/// so the estimate's noise does not reach the stamps.
const COMMON_FPS: [f64; 13] = [
    5.0, 10.0, 12.5, 15.0, 20.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0,
];

/// `interval` (ticks per frame at `second` ticks a second), snapped to the nearest of
/// [`COMMON_FPS`] within 1.5%.
fn snap(interval: f64, second: f64) -> f64 {
    let fps = second / interval;
    COMMON_FPS
        .iter()
        .filter(|r| (fps / **r - 1.0).abs() < 0.015)
        .min_by(|a, b| (fps - **a).abs().total_cmp(&(fps - **b).abs()))
        .map_or(interval, |r| second / r)
}

/// Presentation times from decode times and presentation-order keys.
#[derive(Debug)]
pub struct PtsFromOrder<K, T> {
    /// Held pictures in decode order: key, dts, pts once known, payload.
    held: VecDeque<(K, i64, Option<i64>, T)>,
    /// Decode times not yet handed out as presentation slots, oldest first.
    slots: VecDeque<i64>,
    shift: Option<i64>,
}

impl<K: Ord + Copy, T> Default for PtsFromOrder<K, T> {
    fn default() -> Self {
        PtsFromOrder {
            held: VecDeque::new(),
            slots: VecDeque::new(),
            shift: None,
        }
    }
}

impl<K: Ord + Copy, T> PtsFromOrder<K, T> {
    /// Adds a picture; pushes every picture whose pts is now known, as `(dts, pts, T)` in
    /// decode order, to `out`.
    pub fn push(&mut self, key: K, dts: i64, item: T, out: &mut Vec<(i64, i64, T)>) {
        self.held.push_back((key, dts, None, item));
        self.slots.push_back(dts);
        while self.held.iter().filter(|h| h.2.is_none()).count() > DEPTH {
            self.assign_one();
        }
        self.emit(out);
    }

    /// Hands out everything held (end of stream).
    pub fn drain(&mut self, out: &mut Vec<(i64, i64, T)>) {
        while self.held.iter().any(|h| h.2.is_none()) {
            self.assign_one();
        }
        self.emit(out);
    }

    fn assign_one(&mut self) {
        let shift = *self.shift.get_or_insert_with(|| {
            // Measured once: how far any held picture's slot comes before its own dts.
            let mut order: Vec<usize> = (0..self.held.len()).collect();
            order.sort_by_key(|&i| self.held[i].0);
            order
                .iter()
                .enumerate()
                .map(|(rank, &i)| self.held[i].1 - self.slots.get(rank).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
                .max(0)
        });
        let Some(i) = (0..self.held.len())
            .filter(|&i| self.held[i].2.is_none())
            .min_by_key(|&i| self.held[i].0)
        else {
            return;
        };
        let slot = self.slots.pop_front().unwrap_or(self.held[i].1);
        let pts = (slot + shift).max(self.held[i].1);
        self.held[i].2 = Some(pts);
    }

    fn emit(&mut self, out: &mut Vec<(i64, i64, T)>) {
        while self.held.front().is_some_and(|h| h.2.is_some()) {
            let (_, dts, pts, item) = self.held.pop_front().expect("checked");
            out.push((dts, pts.expect("checked"), item));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bursty_arrivals_with_an_fps_hint_give_even_decode_times() {
        let mut p = Pacer::new(90_000, Some(25.0));
        // Frames every 40 ms on average, delivered in pairs.
        let arrivals: Vec<u64> = (0..100).map(|i| (i / 2) * 80 + 5).collect();
        let dts: Vec<i64> = arrivals.iter().map(|a| p.next(ms(*a))).collect();
        for w in dts.windows(2).skip(20) {
            let d = w[1] - w[0];
            assert!((3300..=3900).contains(&d), "step {d}: {dts:?}");
        }
    }

    #[test]
    fn without_a_hint_the_interval_is_learned() {
        let mut p = Pacer::new(90_000, None);
        let dts: Vec<i64> = (0..300).map(|i| p.next(ms(i * 100))).collect();
        let d = dts[299] - dts[298];
        assert!((8500..=9500).contains(&d), "10 fps is 9000 ticks, got {d}");
    }

    #[test]
    fn jittered_arrivals_never_give_a_step_shorter_than_a_frame() {
        // 25 fps delivered late and early by up to 30 ms (a loaded machine), no hint: at
        // the stream's frame rate, two stamps must never fall on one frame slot.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut jitter = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % 30
        };
        for fps in [None, Some(25.0)] {
            let mut p = Pacer::new(90_000, fps);
            let arrivals: Vec<u64> = (0..750).map(|i| i * 40 + jitter()).collect();
            let dts: Vec<i64> = arrivals.iter().map(|a| p.next(ms(*a))).collect();
            for w in dts.windows(2).skip(50) {
                let d = w[1] - w[0];
                assert!((3550..=4500).contains(&d), "{fps:?}: step {d}");
            }
            let drift = dts[749] as f64 / 90.0 - arrivals[749] as f64;
            assert!(drift.abs() < 200.0, "{fps:?}: {drift} ms from the arrivals");
        }
    }

    #[test]
    fn a_stall_re_anchors_and_time_never_goes_back() {
        let mut p = Pacer::new(90_000, Some(30.0));
        let a = p.next(ms(0));
        let b = p.next(ms(33));
        let c = p.next(ms(5000));
        assert!(b > a && c > b);
        assert!((c - 450_000).abs() < 100, "re-anchored at the arrival: {c}");
        let d = p.next(ms(4000)); // a clock reading from the past
        assert!(d > c);
    }

    #[test]
    fn a_burst_of_buffered_frames_is_spread_not_collapsed() {
        let mut p = Pacer::new(90_000, Some(25.0));
        let mut dts = vec![p.next(ms(0))];
        // 50 frames (2 s of video) arrive at once, 3 s later than the first.
        dts.extend((0..50).map(|_| p.next(ms(100))));
        for w in dts.windows(2) {
            assert!(
                w[1] - w[0] >= 1800,
                "steps stay at least half a frame: {dts:?}"
            );
        }
    }

    #[test]
    fn decode_order_equals_presentation_order_keeps_pts_equal_to_dts() {
        let mut r = PtsFromOrder::default();
        let mut out = Vec::new();
        for i in 0..10i64 {
            r.push(i, i * 3000, i, &mut out);
        }
        r.drain(&mut out);
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|(d, p, _)| d == p));
    }

    #[test]
    fn b_frames_get_presentation_times_in_poc_order_never_before_dts() {
        // Decode order I0 P3 B1 B2 P6 B4 B5 ...: keys are display positions.
        let order = [0i64, 3, 1, 2, 6, 4, 5, 9, 7, 8];
        let mut r = PtsFromOrder::default();
        let mut out = Vec::new();
        for (i, k) in order.iter().enumerate() {
            r.push(*k, i as i64 * 1000, *k, &mut out);
        }
        r.drain(&mut out);
        assert_eq!(out.len(), order.len());
        let dts: Vec<i64> = out.iter().map(|o| o.0).collect();
        assert_eq!(
            dts,
            (0..10).map(|i| i * 1000).collect::<Vec<_>>(),
            "decode order kept"
        );
        for (d, p, _) in &out {
            assert!(p >= d, "pts {p} before dts {d}");
        }
        // Sorting by pts gives the display order, one frame apart.
        let mut shown: Vec<(i64, i64)> = out.iter().map(|(_, p, k)| (*p, *k)).collect();
        shown.sort();
        assert_eq!(
            shown.iter().map(|s| s.1).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        for w in shown.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 1000);
        }
    }
}
