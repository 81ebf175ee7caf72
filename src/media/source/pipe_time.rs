//! Timestamps for a pipe source, which carries none: decode times from arrival times, and
//! presentation times from the picture order count. Pure: the caller passes the clock's
//! readings in.
//!
//! [`Pacer`]: a camera pipe delivers frames in bursts (pipe buffers, encoder batching, an
//! encoder starved of CPU that stalls and then catches up), so raw arrival times jitter.
//! Each decode time is the previous one plus the frame interval: the `fps` hint, or an
//! estimate learned from the mean spacing of the last 1024 arrivals (after 256 of them;
//! 25 fps until then), taken as a common camera rate such as 25 or 29.97 when within 1.5%
//! of one and kept while it stays within 6%. Steps are constant on purpose: players and ffmpeg derive the frame rate from the
//! timestamps, and one step longer than a frame (a late frame pulled towards its arrival)
//! lowers that rate enough for the regular steps to share a frame slot (ffmpeg then refuses
//! the file: non monotonically increasing dts). A gap of more than a second (the camera
//! dropped frames or stalled) re-anchors at the arrival time; only when the stamps run
//! more than two seconds ahead of the arrivals (a hint faster than the camera) are early
//! frames pulled back, never closer than half an interval.
//!
//! [`PtsFromOrder`]: with B-frames, pictures arrive in decode order and are shown in POC
//! order. Frames are held back [`DEPTH`] at a time; the k-th picture in presentation order
//! gets the k-th decode time, shifted by the reordering delay measured on the first window;
//! a picture that would then come before its own decode time grows the delay for it and
//! every later one, so presentation steps are never shorter than decode steps. Without
//! B-frames the shift is 0 and pts = dts.

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
    /// The common camera rate the learned interval was taken as (ticks per frame); kept
    /// while the estimate stays within [`LEAVE`] of it.
    nominal: Option<f64>,
    /// The learned interval stamps are made with now.
    in_force: f64,
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
            nominal: None,
            in_force: f64::from(timescale) / 25.0,
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
            if self.arrivals.len() >= MIN_ESTIMATE {
                let (first, last) = (self.arrivals[0], arrival);
                let est = (last - first) / (self.arrivals.len() - 1) as f64;
                self.interval = est.max(1.0);
            }
        }
        let interval = if self.fixed {
            self.interval
        } else {
            self.nominal_interval(second)
        };
        let t = match self.last {
            None => arrival,
            Some(last) => {
                let predicted = last + interval;
                let err = arrival - predicted;
                if err > second {
                    // A gap: the camera stalled or dropped frames.
                    arrival
                } else if -err > AHEAD_LIMIT * second {
                    // Far ahead of the arrivals: a hint faster than the camera.
                    (predicted + err / 16.0).max(last + interval / 2.0)
                } else {
                    predicted
                }
            }
        };
        self.last = Some(t);
        t as i64
    }

    /// The interval to stamp with, learned: the common camera rate in force while the
    /// estimate stays within [`LEAVE`] of it, else the common rate the estimate is within
    /// 1.5% of. An estimate near no common rate is used as it is only once a whole
    /// [`WINDOW`] backs it (an unusual camera rate); until then the interval in force stays,
    /// since an early estimate's noise must never make steps shorter than a frame.
    fn nominal_interval(&mut self, second: f64) -> f64 {
        if let Some(n) = self.nominal {
            if (self.interval / n - 1.0).abs() < LEAVE {
                return n;
            }
        }
        if let Some(n) = snap(self.interval, second) {
            self.nominal = Some(n);
            self.in_force = n;
        } else if self.arrivals.len() == WINDOW {
            self.nominal = None;
            self.in_force = self.interval;
        }
        self.in_force
    }
}

/// Arrivals the frame interval is estimated over (about 34 s at 30 fps): the estimate is
/// the mean spacing, so only the jitter of the window's two ends counts, and a long window
/// keeps a starved encoder's stalls and catch-ups (a few hundred ms) within a percent or so
/// of the true rate. Encoders deliver frames in groups (frame threads, lookahead), so a
/// shorter-term statistic of spacings (a median, a trimmed mean) would read a wrong rate.
const WINDOW: usize = 1024;

/// Seconds the stamps may run ahead of the arrivals before early frames are pulled back
/// (a hint faster than the camera). Longer than the one-second gap that re-anchors, so the
/// burst a stalled encoder sends to catch up keeps whole-frame steps.
const AHEAD_LIMIT: f64 = 2.0;

/// Arrivals needed before the estimate replaces the 25 fps default (about 10 s): an
/// encoder starved of CPU at start delivers slower than its rate for seconds, and a rate
/// learned from that and changed later would mix two rates in one file. Give `fps` to
/// stamp at the camera's rate from the first frame.
const MIN_ESTIMATE: usize = 256;

/// How far the estimate may wander from the common rate it was taken as before the rate
/// is learned again (taking a rate needs 1.5%, leaving it 6%): a loaded machine reads a
/// 25 fps encoder at 24 for a while, and the rate must not flip between the two; a camera
/// that really changes rate (25 to 30 fps is 20%) is followed.
const LEAVE: f64 = 0.06;

/// Frame rates cameras use: a learned interval within 1.5% of one is taken as exactly it,
/// so the estimate's noise does not reach the stamps.
const COMMON_FPS: [f64; 13] = [
    5.0, 10.0, 12.5, 15.0, 20.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0,
];

/// The interval (ticks per frame at `second` ticks a second) of the nearest of
/// [`COMMON_FPS`] within 1.5% of `interval`, if any.
fn snap(interval: f64, second: f64) -> Option<f64> {
    let fps = second / interval;
    COMMON_FPS
        .iter()
        .filter(|r| (fps / **r - 1.0).abs() < 0.015)
        .min_by(|a, b| (fps - **a).abs().total_cmp(&(fps - **b).abs()))
        .map(|r| second / r)
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
        // A picture whose slot would come before its own decode time (decode times were
        // uneven: a late frame pulled the stamps) moves every later picture with it: the
        // delay grows once, so presentation steps stay the slots' steps, never shorter than
        // a frame. Clamping this picture alone put it a fraction of a frame before the next.
        let shift = shift.max(self.held[i].1 - slot);
        self.shift = Some(shift);
        self.held[i].2 = Some(slot + shift);
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
    fn an_encoder_that_stalls_and_catches_up_gives_steps_of_exactly_one_frame() {
        // 25 fps from an encoder starved of CPU (make test's load): every so often it
        // stalls for 120-480 ms, then the frames it owes arrive back to back. No hint: the
        // learned rate must not drift above 25 fps, or two stamps share one frame slot and
        // ffmpeg refuses the file (non monotonically increasing dts).
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut p = Pacer::new(90_000, None);
        let mut arrivals = Vec::new();
        let mut late_until = 0u64;
        for i in 0..1500u64 {
            let due = i * 40;
            if due >= late_until && next() % 40 == 0 {
                late_until = due + 120 + next() % 360;
            }
            arrivals.push(due.max(late_until) + next() % 5);
        }
        let dts: Vec<i64> = arrivals.iter().map(|a| p.next(ms(*a))).collect();
        for (i, w) in dts.windows(2).enumerate().skip(50) {
            let d = w[1] - w[0];
            assert!(
                d >= 3550,
                "step {d} at frame {i}, under a 25 fps frame (3600)"
            );
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
    fn uneven_decode_times_never_give_a_presentation_step_shorter_than_a_frame() {
        // B-frames (decode I0 P3 B1 B2 P6 B4 B5 ...) whose decode times are a frame apart
        // plus whatever late frames added (the pacer pulls late stamps towards arrivals).
        let mut extra = 7u64;
        let mut dts = 0i64;
        let mut r = PtsFromOrder::default();
        let mut out = Vec::new();
        for g in 0..100i64 {
            for k in [0, 3, 1, 2]
                .map(|k| g * 3 + k)
                .into_iter()
                .take(if g == 0 { 4 } else { 3 })
            {
                let k = if g == 0 { k } else { k + 1 };
                extra = extra
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                dts += 3600
                    + if extra >> 60 == 0 {
                        (extra >> 40) as i64 % 4000
                    } else {
                        0
                    };
                r.push(k, dts, k, &mut out);
            }
        }
        r.drain(&mut out);
        assert!(out.iter().all(|(d, p, _)| p >= d), "pts before dts");
        let mut pts: Vec<i64> = out.iter().map(|o| o.1).collect();
        pts.sort();
        for w in pts.windows(2) {
            assert!(
                w[1] - w[0] >= 3600,
                "presentation step {}: {pts:?}",
                w[1] - w[0]
            );
        }
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
