//! Injected time. Logic never calls `SystemTime::now()` itself: it gets a [`Clock`], so
//! tests can drive a simulated one.
//!
//! Three clocks: the wall clock (names, metadata; it can be stepped, by days on a board
//! without a battery-backed clock), the monotonic clock (durations and pacing) and the boot
//! clock (ms since boot, counting suspend, never stepped: the truth inside one boot, see
//! [`crate::util::clockwatch`] and `docs/time.md`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall time (for names and metadata) and monotonic time (for durations and pacing).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> i64;
    /// Monotonic time.
    fn now(&self) -> Instant;
    /// Milliseconds since boot (Linux `CLOCK_BOOTTIME`): never stepped, counts suspend.
    fn boot_ms(&self) -> i64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn boot_ms(&self) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we own; CLOCK_BOOTTIME exists on every
        // Linux edgerec supports (2.6.39+).
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            return 0;
        }
        // `time_t` and `c_long` are 32 bits on armv7: the casts are not no-ops there.
        #[allow(clippy::unnecessary_cast)]
        let ms = ts.tv_sec as i64 * 1000 + ts.tv_nsec as i64 / 1_000_000;
        ms
    }
}

/// A clock tests move by hand. [`ManualClock::advance`] moves every clock together;
/// [`ManualClock::step_wall`] moves the wall clock alone, as `date -s` or NTP does.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset_ms: AtomicI64,
    wall_base_ms: i64,
    /// What the wall clock was stepped by in total.
    stepped_ms: AtomicI64,
}

/// The boot clock of a fresh [`ManualClock`]: it booted a minute ago.
pub const MANUAL_BOOT_MS: i64 = 60_000;

impl ManualClock {
    pub fn new(wall_ms: i64) -> Arc<Self> {
        Arc::new(ManualClock {
            base: Instant::now(),
            offset_ms: AtomicI64::new(0),
            wall_base_ms: wall_ms,
            stepped_ms: AtomicI64::new(0),
        })
    }
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
    /// Step the wall clock by `delta_ms` (either way); the monotonic and boot clocks do
    /// not move.
    pub fn step_wall(&self, delta_ms: i64) {
        self.stepped_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall_ms(&self) -> i64 {
        self.wall_base_ms
            + self.offset_ms.load(Ordering::SeqCst)
            + self.stepped_ms.load(Ordering::SeqCst)
    }
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst) as u64)
    }
    fn boot_ms(&self) -> i64 {
        MANUAL_BOOT_MS + self.offset_ms.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;
