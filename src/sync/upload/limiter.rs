//! The bandwidth cap: a token bucket, pure. Callers ask [`TokenBucket::reserve`] before
//! sending a chunk and sleep for the delay it returns; all transfers share one bucket (behind
//! a mutex in [`Limiter`]), so the cap holds for the sum of them.
//!
//! The bucket starts empty and holds at most `burst` bytes of credit, so a transfer never
//! starts with a burst above the cap, and idle time saves up at most `burst`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket of `rate` bytes per second. Reservations may drive it into debt; the
/// returned delay is how long until the debt is paid.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket refilling at `rate` bytes/s, holding at most `burst` bytes, empty at `now`.
    pub fn new(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: rate.max(1) as f64,
            burst: burst as f64,
            tokens: 0.0,
            last: now,
        }
    }

    /// Take `n` bytes at `now`; returns how long the caller must wait before sending them.
    pub fn reserve(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Chunk size that paced senders cut their data into: small enough to keep the rate smooth
/// at low caps, large enough to keep syscalls few.
pub fn chunk_size(rate: u64) -> usize {
    ((rate / 20) as usize).clamp(4 << 10, 64 << 10)
}

/// A [`TokenBucket`] shared by every transfer; `None` inside = no cap.
#[derive(Debug)]
pub struct Limiter {
    bucket: Option<Mutex<TokenBucket>>,
    rate: Option<u64>,
}

impl Limiter {
    /// A limiter at `rate` bytes/s (`None`: unlimited).
    pub fn new(rate: Option<u64>, now: Instant) -> Limiter {
        Limiter {
            bucket: rate.map(|r| Mutex::new(TokenBucket::new(r, chunk_size(r) as u64, now))),
            rate,
        }
    }

    /// The cap, bytes/s.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Wait until `n` more bytes may be sent.
    pub async fn acquire(&self, n: usize) {
        let Some(b) = &self.bucket else { return };
        let wait = b
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(n as u64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_bucket_makes_the_first_chunk_wait_its_share() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 100, t0);
        assert_eq!(b.reserve(500, t0), Duration::from_millis(500));
    }

    #[test]
    fn sending_at_the_returned_pace_averages_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1 << 20, 16 << 10, t0);
        let mut now = t0;
        for _ in 0..640 {
            now += b.reserve(16 << 10, now);
        }
        // 10 MiB at 1 MiB/s: ten seconds, give or take one chunk.
        let secs = now.duration_since(t0).as_secs_f64();
        assert!((9.98..=10.0).contains(&secs), "{secs}");
    }

    #[test]
    fn idle_time_saves_up_at_most_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 200, t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.reserve(200, later), Duration::ZERO);
        assert_eq!(b.reserve(100, later), Duration::from_millis(100));
    }

    #[test]
    fn chunks_stay_between_4_and_64_kib() {
        assert_eq!(chunk_size(1000), 4 << 10);
        assert_eq!(chunk_size(1 << 20), 52_428);
        assert_eq!(chunk_size(1 << 30), 64 << 10);
    }
}
