//! Failure bookkeeping, pure: what one more failed attempt of a job means (its next retry
//! time, whether to raise an alarm), and the hold a transient error puts on its target.
//!
//! The backoff follows the **latest** error's kind: a job that failed permanently (403) and
//! then transiently (a reset) is retried on the short transient schedule, and the reverse.
//! An alarm is raised once per kind: at the first permanent error, or at the fifth
//! transient one in a row. A job's [`Failure`] is saved with its upload progress, so a
//! restart keeps its attempts, backoff and alarm; a success removes it.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::backoff::Backoff;

/// Consecutive transient failures of one job after which an alarm is raised anyway.
pub const TRANSIENT_ALARM_AFTER: u32 = 5;

/// Backoff bounds of transient errors (timeouts, resets, 5xx, throttling).
pub const TRANSIENT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// Backoff bounds of permanent errors (403, a missing bucket, an unreadable file).
pub const PERMANENT: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(600));

/// A job's failures so far, as saved in its `UploadParts` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Failed attempts, of any kind.
    pub attempts: u32,
    /// Consecutive failures of the latest kind.
    pub streak: u32,
    /// The latest error was transient.
    pub transient: bool,
    /// The latest error, for the operator (no credentials: see `UploadError`).
    pub error: String,
    /// When the latest attempt failed, ms since the Unix epoch.
    pub at_ms: i64,
    /// Not retried before this wall time (ms).
    pub retry_at_ms: i64,
    /// An alarm was raised for the latest kind.
    pub alarmed: bool,
}

/// What one more failure means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The job's new record (save it).
    pub failure: Failure,
    /// How long the job waits.
    pub delay: Duration,
    /// Raise an alarm now.
    pub alarm: bool,
}

/// The `n`-th delay (1-based) of a capped exponential backoff with jitter.
fn nth_delay((lo, hi): (Duration, Duration), n: u32, seed: u64) -> Duration {
    let mut b = Backoff::new(lo, hi, seed);
    let mut d = lo;
    // Past about ten doublings every delay is the cap; no need to step further.
    for _ in 0..n.clamp(1, 32) {
        d = b.next_delay();
    }
    d
}

/// Record a failed attempt of a job whose previous record is `prev`. `seed` varies the
/// jitter (e.g. the segment id xor the time).
pub fn record(
    prev: Option<&Failure>,
    transient: bool,
    error: String,
    now_ms: i64,
    seed: u64,
) -> Verdict {
    let same_kind = prev.is_some_and(|p| p.transient == transient);
    let streak = if same_kind {
        prev.map_or(0, |p| p.streak).saturating_add(1)
    } else {
        1
    };
    let alarmed_before = same_kind && prev.is_some_and(|p| p.alarmed);
    let bounds = if transient { TRANSIENT } else { PERMANENT };
    let delay = nth_delay(bounds, streak, seed);
    let alarm = !alarmed_before && (!transient || streak >= TRANSIENT_ALARM_AFTER);
    let failure = Failure {
        attempts: prev.map_or(0, |p| p.attempts).saturating_add(1),
        streak,
        transient,
        error,
        at_ms: now_ms,
        retry_at_ms: now_ms.saturating_add(delay.as_millis() as i64),
        alarmed: alarmed_before || alarm,
    };
    Verdict {
        failure,
        delay,
        alarm,
    }
}

/// Per target: until when no transfer may start, after a transient error (the link or the
/// service is down: one job probes, the others wait). A success lifts it.
#[derive(Debug, Default)]
pub struct Holds {
    until: HashMap<String, i64>,
}

impl Holds {
    /// A transient error on `target`: hold it until `until_ms` (never shortening a hold).
    pub fn hold(&mut self, target: &str, until_ms: i64) {
        let e = self.until.entry(target.to_string()).or_insert(until_ms);
        *e = (*e).max(until_ms);
    }

    /// A success on `target`.
    pub fn lift(&mut self, target: &str) {
        self.until.remove(target);
    }

    /// Until when `target` is held (0: not held).
    pub fn until(&self, target: &str) -> i64 {
        self.until.get(target).copied().unwrap_or(0)
    }

    /// Lift every hold (`upload --now`).
    pub fn clear(&mut self) {
        self.until.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(prev: Option<&Failure>, transient: bool) -> Verdict {
        record(prev, transient, "e".into(), 1_000, 7)
    }

    #[test]
    fn the_backoff_follows_the_latest_error_not_the_first() {
        // A permanent error first: the slow schedule.
        let v = fail(None, false);
        assert!(v.delay >= Duration::from_secs(24), "{:?}", v.delay);
        // Then a transient one: back to the quick schedule, a new streak.
        let v = fail(Some(&v.failure), true);
        assert!(v.delay <= Duration::from_millis(1200), "{:?}", v.delay);
        assert_eq!(v.failure.streak, 1);
        assert_eq!(v.failure.attempts, 2);
        // Transient ones grow, capped at 30 s.
        let mut f = v.failure;
        for _ in 0..12 {
            f = fail(Some(&f), true).failure;
        }
        let v = fail(Some(&f), true);
        assert!(v.delay <= Duration::from_secs(30), "{:?}", v.delay);
        assert!(v.delay >= Duration::from_secs(24), "{:?}", v.delay);
        // And a permanent one switches back to the slow schedule.
        let v = fail(Some(&v.failure), false);
        assert!(v.delay >= Duration::from_secs(24), "{:?}", v.delay);
        assert_eq!(v.failure.retry_at_ms, 1_000 + v.delay.as_millis() as i64);
    }

    #[test]
    fn a_permanent_error_alarms_once_per_kind() {
        let v = fail(None, false);
        assert!(v.alarm && v.failure.alarmed);
        let v = fail(Some(&v.failure), false);
        assert!(!v.alarm && v.failure.alarmed);
        // Five transient errors in a row after it: a new kind, a new alarm at the fifth.
        let mut f = v.failure;
        for i in 1..=5 {
            let v = fail(Some(&f), true);
            assert_eq!(v.alarm, i == 5, "transient failure {i}");
            f = v.failure;
        }
        assert!(!fail(Some(&f), true).alarm);
        assert_eq!(f.attempts, 7);
    }

    #[test]
    fn a_saved_record_keeps_counting_after_a_restart() {
        let mut f = fail(None, true).failure;
        for _ in 0..3 {
            f = fail(Some(&f), true).failure;
        }
        let saved = postcard::to_allocvec(&f).unwrap();
        let back: Failure = postcard::from_bytes(&saved).unwrap();
        let v = fail(Some(&back), true);
        assert_eq!(v.failure.streak, 5);
        assert!(
            v.alarm,
            "the fifth transient failure alarms, across the restart"
        );
    }

    #[test]
    fn a_hold_is_never_shortened_and_a_success_lifts_it() {
        let mut h = Holds::default();
        h.hold("vod", 5_000);
        h.hold("vod", 3_000);
        assert_eq!(h.until("vod"), 5_000);
        assert_eq!(h.until("other"), 0);
        h.lift("vod");
        assert_eq!(h.until("vod"), 0);
    }
}
