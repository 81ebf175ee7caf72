//! The clock watched: whether it is synchronized, and when it is stepped.
//!
//! [`ClockWatch`] wraps the injected [`Clock`] and is itself the clock every part of the
//! recorder reads. Each wall-clock read is also a look at the offset between the wall
//! clock and the boot clock ([`detector`]): the recorder reads the wall clock for every
//! frame, so a step is seen within a frame of happening, with no timer and no write of its
//! own. A step is logged, counted, and handed to whoever listens (the daemon publishes
//! `clock.step` and re-stamps the segments recorded on the old offset).
//!
//! Whether the clock is synchronized comes from the kernel (`adjtimex`, see [`system`]),
//! read once per segment start and for status, never per frame.
//!
//! A step of a clock that was not synchronized is a *correction*: the new time is taken as
//! the truth, and segments recorded on the old offset are moved onto the new one.
//! [`ClockWatch::corrections`] lets a stream recorder move the segment it has open. See
//! `docs/time.md`.

pub mod detector;
pub mod system;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use self::detector::{Detector, Reading};
use crate::util::clock::{Clock, SharedClock};

/// How far a segment's wall-clock times can be trusted.
///
/// postcard stores the variant's position: never reorder these, append new ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeQuality {
    /// Recorded while the kernel said the clock was synchronized. Also what rows and files
    /// written before edgerec knew clock quality are read as (the trust they had).
    #[default]
    Synced,
    /// Recorded while the clock was not synchronized: the times may be anything.
    Unsynced,
    /// Recorded unsynchronized, then re-stamped after the clock was stepped.
    Corrected,
}

impl TimeQuality {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeQuality::Synced => "synced",
            TimeQuality::Unsynced => "unsynced",
            TimeQuality::Corrected => "corrected",
        }
    }
}

/// Where a segment sits on the boot clock, which is never stepped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTime {
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub id: String,
    /// Boot clock at the segment's first frame, ms.
    pub ms: i64,
    /// The wall − boot offset its wall-clock times were stamped with, ms: moving a segment
    /// onto a new offset adds the difference to its times.
    pub offset_ms: i64,
}

/// A detected step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What the wall clock said on the old offset, and says now, ms since the epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    /// `to_ms - from_ms`.
    pub delta_ms: i64,
    /// The offset in force before and after (wall − boot).
    pub old_offset_ms: i64,
    pub new_offset_ms: i64,
    /// Whether the clock was synchronized before the step (as last read).
    pub was_synced: bool,
    /// The step corrects an unsynchronized clock: segments recorded on the old offset are
    /// re-stamped.
    pub correction: bool,
}

/// The clock's state for `edgerec status` and telemetry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockReport {
    /// `synced` or `unsynced`.
    pub state: String,
    /// The kernel's estimated maximum error, ms (when it could be read).
    pub maxerror_ms: Option<i64>,
    /// Wall − boot offset in force, ms.
    pub offset_ms: i64,
    /// Steps seen since start, and how many of them were corrections.
    pub steps: u64,
    pub corrections: u64,
    pub last_step: Option<Step>,
}

/// What the kernel says about the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncState {
    pub synced: bool,
    pub maxerror_ms: Option<i64>,
}

/// Reads the sync state; gets the wall time (to catch a clock before 2025).
pub type SyncProbe = Box<dyn Fn(i64) -> SyncState + Send + Sync>;

struct State {
    detector: Detector,
    sync: Option<SyncState>,
    steps: u64,
    corrections: u64,
    last_step: Option<Step>,
    /// Sum of all corrections' deltas.
    corrected_ms: i64,
    listener: Option<tokio::sync::mpsc::UnboundedSender<Step>>,
}

/// The watched clock. Cheap to share (`Arc`); implements [`Clock`].
pub struct ClockWatch {
    inner: SharedClock,
    probe: SyncProbe,
    boot_id: String,
    /// The detector's offset, for the lock-free fast path (`i64::MIN`: none yet).
    offset: AtomicI64,
    /// Bumped by every correction (read per frame by stream recorders).
    corrections: AtomicU64,
    state: Mutex<State>,
}

impl std::fmt::Debug for ClockWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockWatch")
            .field("boot_id", &self.boot_id)
            .field("offset", &self.offset)
            .finish()
    }
}

impl ClockWatch {
    /// Watch `inner`; `probe` says whether it is synchronized, `boot_id` names this boot.
    pub fn new(inner: SharedClock, probe: SyncProbe, boot_id: String) -> Arc<ClockWatch> {
        let w = Arc::new(ClockWatch {
            inner,
            probe,
            boot_id,
            offset: AtomicI64::new(i64::MIN),
            corrections: AtomicU64::new(0),
            state: Mutex::new(State {
                detector: Detector::default(),
                sync: None,
                steps: 0,
                corrections: 0,
                last_step: None,
                corrected_ms: 0,
                listener: None,
            }),
        });
        w.wall_ms();
        w
    }

    /// The system clock, watched with `adjtimex` and this boot's id.
    pub fn system() -> Arc<ClockWatch> {
        ClockWatch::new(
            Arc::new(crate::util::clock::SystemClock),
            Box::new(system::sync_state),
            system::boot_id(),
        )
    }

    /// Steps are sent to the returned receiver (one listener; a new call replaces it).
    pub fn listen(&self) -> tokio::sync::mpsc::UnboundedReceiver<Step> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().listener = Some(tx);
        rx
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This boot's id.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// The wall − boot offset in force, ms.
    pub fn offset_ms(&self) -> i64 {
        match self.offset.load(Ordering::SeqCst) {
            i64::MIN => {
                let wall = self.wall_ms();
                self.lock()
                    .detector
                    .offset()
                    .unwrap_or(wall - self.inner.boot_ms())
            }
            o => o,
        }
    }

    /// Reads the kernel's sync state now (one `adjtimex`; no write) and keeps it as the
    /// state a step is judged by. Call it at segment starts, not per frame.
    pub fn sync_now(&self) -> SyncState {
        let s = (self.probe)(self.wall_ms());
        self.lock().sync = Some(s);
        s
    }

    /// The quality a segment starting now gets.
    pub fn quality_now(&self) -> TimeQuality {
        if self.sync_now().synced {
            TimeQuality::Synced
        } else {
            TimeQuality::Unsynced
        }
    }

    /// Where "now" is on the boot clock, with the offset in force.
    pub fn boot_time_now(&self) -> BootTime {
        BootTime {
            id: self.boot_id.clone(),
            ms: self.inner.boot_ms(),
            offset_ms: self.offset_ms(),
        }
    }

    /// How many corrections so far, and the sum of their deltas: a recorder that saw
    /// `(n, sum)` before and sees `(m, sum2)` now with `m != n` moves its open segment by
    /// `sum2 - sum`. The count is one atomic load.
    pub fn corrections(&self) -> (u64, i64) {
        let n = self.corrections.load(Ordering::SeqCst);
        if n == 0 {
            return (0, 0);
        }
        let st = self.lock();
        (self.corrections.load(Ordering::SeqCst), st.corrected_ms)
    }

    /// The clock's state for status and telemetry (reads the sync state).
    pub fn report(&self) -> ClockReport {
        let sync = self.sync_now();
        let st = self.lock();
        ClockReport {
            state: if sync.synced { "synced" } else { "unsynced" }.into(),
            maxerror_ms: sync.maxerror_ms,
            offset_ms: st.detector.offset().unwrap_or(0),
            steps: st.steps,
            corrections: st.corrections,
            last_step: st.last_step.clone(),
        }
    }

    fn read(&self) -> Reading {
        let boot_before_ms = self.inner.boot_ms();
        let wall_ms = self.inner.wall_ms();
        Reading {
            boot_before_ms,
            wall_ms,
            boot_after_ms: self.inner.boot_ms(),
        }
    }

    /// The slow path: the detector, under the lock.
    fn observe(&self, r: Reading) {
        let mut st = self.lock();
        let Some(change) = st.detector.observe(r) else {
            if let Some(o) = st.detector.offset() {
                self.offset.store(o, Ordering::SeqCst);
            }
            return;
        };
        self.offset.store(change.to, Ordering::SeqCst);
        let was_synced = st.sync.is_some_and(|s| s.synced);
        let now_boot = r.boot_ms();
        let step = Step {
            from_ms: now_boot + change.from,
            to_ms: now_boot + change.to,
            delta_ms: change.to - change.from,
            old_offset_ms: change.from,
            new_offset_ms: change.to,
            was_synced,
            correction: !was_synced,
        };
        st.steps += 1;
        if step.correction {
            st.corrections += 1;
            st.corrected_ms += step.delta_ms;
            self.corrections.fetch_add(1, Ordering::SeqCst);
        }
        tracing::warn!(
            from_ms = step.from_ms,
            to_ms = step.to_ms,
            delta_ms = step.delta_ms,
            was_synced,
            "the wall clock was stepped{}",
            if step.correction {
                "; it was not synchronized: segments recorded on the old time are re-stamped"
            } else {
                ""
            }
        );
        st.last_step = Some(step.clone());
        if let Some(tx) = &st.listener {
            let _ = tx.send(step);
        }
    }
}

impl Clock for ClockWatch {
    /// The wall clock; each read is also a look for a step (two extra reads of the boot
    /// clock, through the vDSO: no system call, no write, no wake-up).
    fn wall_ms(&self) -> i64 {
        let r = self.read();
        let known = self.offset.load(Ordering::SeqCst);
        match r.offset() {
            // Within a quarter of the threshold of the offset in force: nothing to do.
            Some(o)
                if known != i64::MIN && (o - known).abs() <= detector::STEP_THRESHOLD_MS / 4 => {}
            Some(_) => self.observe(r),
            None => {}
        }
        r.wall_ms
    }
    fn now(&self) -> Instant {
        self.inner.now()
    }
    fn boot_ms(&self) -> i64 {
        self.inner.boot_ms()
    }
}

#[cfg(test)]
mod tests;
