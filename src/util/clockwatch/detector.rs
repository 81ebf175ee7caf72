//! The step detector and the sync judgement: pure, fed with clock readings.
//!
//! A *step* is a change of the offset between the wall clock and the boot clock (which is
//! never stepped) by more than a threshold, in either direction. Smaller changes are the
//! slow corrections NTP makes by slewing (at most 0.5 ms per second): the detector follows
//! them, so they never add up to a false step.

/// Offset changes larger than this are steps.
pub const STEP_THRESHOLD_MS: i64 = 1_000;
/// A reading whose two boot-clock reads (before and after the wall read) are further apart
/// than this was interrupted (the thread was preempted) and is not trusted.
pub const MAX_READ_SPREAD_MS: i64 = 50;
/// A wall clock before this (2025-01-01T00:00:00Z) is wrong, whatever the kernel says: a
/// board without a battery-backed clock boots at 1970 or at its last shutdown.
pub const PLAUSIBLE_FLOOR_MS: i64 = 1_735_689_600_000;
/// `adjtimex`'s estimated maximum error above which the clock does not count as synced.
pub const MAX_ERROR_US: i64 = 5_000_000;

/// One reading: the wall clock between two reads of the boot clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub boot_before_ms: i64,
    pub wall_ms: i64,
    pub boot_after_ms: i64,
}

impl Reading {
    /// The wall − boot offset, `None` when the reading was interrupted.
    pub fn offset(&self) -> Option<i64> {
        let spread = self.boot_after_ms - self.boot_before_ms;
        if !(0..=MAX_READ_SPREAD_MS).contains(&spread) {
            return None;
        }
        Some(self.wall_ms - (self.boot_before_ms + spread / 2))
    }

    /// The boot clock at the reading.
    pub fn boot_ms(&self) -> i64 {
        self.boot_after_ms
    }
}

/// A detected change of offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetChange {
    /// The offset in force before, and the new one (wall − boot, ms).
    pub from: i64,
    pub to: i64,
}

/// The step detector.
#[derive(Clone, Debug)]
pub struct Detector {
    threshold_ms: i64,
    /// The offset in force and the boot time of the reading that set it.
    reference: Option<(i64, i64)>,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(STEP_THRESHOLD_MS)
    }
}

impl Detector {
    pub fn new(threshold_ms: i64) -> Detector {
        Detector {
            threshold_ms,
            reference: None,
        }
    }

    /// The offset in force (wall − boot), once a reading was seen.
    pub fn offset(&self) -> Option<i64> {
        self.reference.map(|r| r.0)
    }

    /// Whether `offset` differs from the one in force by more than the threshold.
    pub fn is_step(&self, offset: i64) -> bool {
        self.reference
            .is_none_or(|(r, _)| (offset - r).abs() > self.threshold_ms)
    }

    /// Feed a reading. Returns the change when it is a step. Readings taken before the
    /// reading that set the offset in force (a thread that read the clock before a step and
    /// got here after it) are ignored, as are interrupted ones.
    pub fn observe(&mut self, r: Reading) -> Option<OffsetChange> {
        let offset = r.offset()?;
        match self.reference {
            None => {
                self.reference = Some((offset, r.boot_ms()));
                None
            }
            Some((_, at)) if r.boot_ms() < at => None,
            Some((from, _)) => {
                self.reference = Some((offset, r.boot_ms()));
                ((offset - from).abs() > self.threshold_ms)
                    .then_some(OffsetChange { from, to: offset })
            }
        }
    }
}

/// Whether the kernel's clock discipline says the clock is synchronized: `adjtimex`'s
/// return value is not `TIME_ERROR`, `STA_UNSYNC` is clear, and the maximum error is below
/// [`MAX_ERROR_US`]; and the wall clock is past [`PLAUSIBLE_FLOOR_MS`].
pub fn judge_sync(rc: i32, status: i64, maxerror_us: i64, wall_ms: i64) -> bool {
    const TIME_ERROR: i32 = 5;
    const STA_UNSYNC: i64 = 0x0040;
    rc >= 0
        && rc != TIME_ERROR
        && status & STA_UNSYNC == 0
        && maxerror_us < MAX_ERROR_US
        && wall_ms >= PLAUSIBLE_FLOOR_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(boot: i64, wall: i64) -> Reading {
        Reading {
            boot_before_ms: boot,
            wall_ms: wall,
            boot_after_ms: boot,
        }
    }

    #[test]
    fn the_first_reading_sets_the_offset_and_is_no_step() {
        let mut d = Detector::default();
        assert_eq!(d.observe(at(1_000, 5_000)), None);
        assert_eq!(d.offset(), Some(4_000));
    }

    #[test]
    fn a_forward_and_a_backward_step_are_both_reported_with_their_offsets() {
        let mut d = Detector::default();
        d.observe(at(1_000, 5_000));
        let fwd = d.observe(at(2_000, 6_000 + 3_600_000)).unwrap();
        assert_eq!((fwd.from, fwd.to), (4_000, 3_604_000));
        let back = d.observe(at(3_000, 7_000)).unwrap();
        assert_eq!((back.from, back.to), (3_604_000, 4_000));
    }

    #[test]
    fn slewing_is_followed_and_never_adds_up_to_a_step() {
        let mut d = Detector::default();
        // 500 ppm for an hour, read every second: 1.8 s in total, never a step.
        let mut wall = 10_000_000;
        for s in 0..3_600i64 {
            wall += 1_000 + if s % 2 == 0 { 1 } else { 0 };
            assert_eq!(d.observe(at(s * 1_000, wall)), None, "at {s} s");
        }
        assert_eq!(d.offset(), Some(wall - 3_599_000));
    }

    #[test]
    fn a_change_at_the_threshold_is_not_a_step_and_one_past_it_is() {
        let mut d = Detector::default();
        d.observe(at(0, 0));
        assert_eq!(d.observe(at(10, 10 + STEP_THRESHOLD_MS)), None);
        assert!(d.observe(at(20, 20 + 2 * STEP_THRESHOLD_MS + 1)).is_some());
    }

    #[test]
    fn an_interrupted_reading_is_ignored() {
        let mut d = Detector::default();
        d.observe(at(0, 0));
        let r = Reading {
            boot_before_ms: 100,
            wall_ms: 5_000,
            boot_after_ms: 100 + MAX_READ_SPREAD_MS + 1,
        };
        assert_eq!(d.observe(r), None);
        assert_eq!(d.offset(), Some(0));
    }

    #[test]
    fn a_reading_older_than_the_step_does_not_step_back() {
        let mut d = Detector::default();
        d.observe(at(0, 0));
        assert!(d.observe(at(2_000, 3_602_000)).is_some());
        // Read at boot 1 900 (before the step), observed after it.
        assert_eq!(d.observe(at(1_900, 1_900)), None);
        assert_eq!(d.offset(), Some(3_600_000));
    }

    #[test]
    fn a_clock_counts_as_synced_only_when_every_sign_agrees() {
        let now = PLAUSIBLE_FLOOR_MS + 1;
        assert!(judge_sync(0, 0x2001, 10_000, now));
        assert!(!judge_sync(5, 0, 10_000, now), "TIME_ERROR");
        assert!(!judge_sync(0, 0x40, 10_000, now), "STA_UNSYNC");
        assert!(!judge_sync(0, 0, MAX_ERROR_US, now), "maxerror");
        assert!(!judge_sync(0, 0, 10_000, 0), "1970");
        assert!(!judge_sync(-1, 0, 10_000, now), "adjtimex failed");
    }
}
