//! Capped exponential backoff with jitter, pure: the caller sleeps.
//!
//! Hand-written on purpose: it is a dozen lines that take no clock at all (the caller waits
//! on the injected one, so tests run on simulated time), where the backoff crates bring
//! their own clock or a retry loop that sleeps.

use std::time::Duration;

/// Delays grow `initial, 2×, 4×, …` up to `max`, each with up to ±20 % jitter so a fleet
/// that lost its network together does not reconnect in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// Consecutive failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(20));
        let base = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: good enough for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 800 + (self.rng % 401); // 0.8 ..= 1.2
        base.mul_f64(permille as f64 / 1000.0).min(self.max)
    }

    /// Call after a success (or a long enough healthy run).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 42);
        let d: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(800) && d[0] <= Duration::from_millis(1200));
        assert!(d[3] >= Duration::from_millis(6400));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(30)));
        assert!(d[9] >= Duration::from_secs(24));
        assert_eq!(b.attempts(), 10);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 7);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }
}
