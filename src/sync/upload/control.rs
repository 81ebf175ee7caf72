//! The handle to the running uploader ([`Control`]): pause, resume, drain now, what is in
//! flight; and the gate every transfer consults between parts ([`Control::may_transfer`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Transfer, PAUSED_KEY};
use crate::storage::store::{AuxOp, AuxTable, Store, StoreError};
use crate::util::clock::SharedClock;
use crate::util::windows::{is_open, local_minute, Window};

/// Whether transfers may run, pure: an `upload --now` drain runs regardless; otherwise not
/// while paused, and only inside the windows (none = any time). `minute` is the local
/// minute of the day.
pub fn may_transfer(paused: bool, draining: bool, windows: &[Window], minute: u32) -> bool {
    draining || (!paused && is_open(windows, minute))
}

/// Milliseconds from `now_ms` to the next wall-clock minute (windows open and close on
/// minute boundaries), at least 1.
pub fn until_next_minute_ms(now_ms: i64) -> u64 {
    (60_000 - now_ms.rem_euclid(60_000)).max(1) as u64
}

/// A handle to the running uploader, for the CLI (through the control socket), MQTT
/// commands and telemetry. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<ControlInner>,
}

struct ControlInner {
    store: Arc<Store>,
    clock: SharedClock,
    windows: Vec<Window>,
    paused: AtomicBool,
    /// A drain (`upload --now`) is under way.
    now: AtomicBool,
    /// `now()` was called since the worker last looked: retry every waiting job at once.
    kick: AtomicBool,
    /// The recorder is shutting down: transfers stop at their next part boundary.
    stopping: AtomicBool,
    wake: Arc<Notify>,
    current: Mutex<Vec<(u64, Arc<AtomicU64>, u64)>>,
}

/// Whether the index says uploads are paused (`edgerec upload --pause`). Blocking.
pub fn paused_in(store: &Store) -> Result<bool, StoreError> {
    Ok(matches!(store.aux_get(AuxTable::Settings, PAUSED_KEY)?, Some(v) if v == [1]))
}

/// Persist the paused flag (used by [`Control`], and by `edgerec upload --pause` when no
/// recorder runs). Blocks for one durable index commit.
pub fn set_paused_in(store: &Store, paused: bool) -> Result<(), StoreError> {
    store.aux_commit(
        vec![AuxOp::put(
            AuxTable::Settings,
            PAUSED_KEY,
            vec![u8::from(paused)],
        )],
        None,
        true,
    )
}

impl Control {
    pub(super) fn new(
        store: Arc<Store>,
        clock: SharedClock,
        windows: Vec<Window>,
        wake: Arc<Notify>,
    ) -> Control {
        let paused = paused_in(&store).unwrap_or(false);
        Control {
            inner: Arc::new(ControlInner {
                store,
                clock,
                windows,
                paused: AtomicBool::new(paused),
                now: AtomicBool::new(false),
                kick: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                wake,
                current: Mutex::new(Vec::new()),
            }),
        }
    }

    fn set_paused(&self, p: bool) -> Result<(), StoreError> {
        self.inner.paused.store(p, Ordering::SeqCst);
        self.inner.wake.notify_one();
        set_paused_in(&self.inner.store, p)
    }

    /// Stop uploading: no transfer starts, and one under way stops at its next part
    /// boundary (the part being sent completes; the upload resumes from the next part).
    /// Survives restarts. Blocks for one index commit.
    pub fn pause(&self) -> Result<(), StoreError> {
        self.set_paused(true)
    }

    /// Undo [`Control::pause`]. Blocks for one index commit.
    pub fn resume(&self) -> Result<(), StoreError> {
        self.set_paused(false)
    }

    /// Upload now: retry every waiting job at once and ignore windows and pause until the
    /// backlog is empty.
    pub fn now(&self) {
        self.inner.now.store(true, Ordering::SeqCst);
        self.inner.kick.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    /// True while an `upload --now` drain is under way.
    pub fn is_draining(&self) -> bool {
        self.inner.now.load(Ordering::SeqCst)
    }

    /// Shutting down: [`Control::may_transfer`] says no from now on, so every transfer
    /// stops at its next part boundary (not persisted, unlike a pause).
    pub(super) fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether transfers may run at this moment (see [`may_transfer`]). Transfers ask
    /// before every part, so pausing, a window closing or shutdown stops them at a part
    /// boundary.
    pub fn may_transfer(&self) -> bool {
        !self.inner.stopping.load(Ordering::SeqCst)
            && may_transfer(
                self.is_paused(),
                self.is_draining(),
                &self.inner.windows,
                local_minute(self.inner.clock.wall_ms()),
            )
    }

    /// True when upload windows are configured (they open and close over time).
    pub(super) fn has_windows(&self) -> bool {
        !self.inner.windows.is_empty()
    }

    /// The transfer under way (the oldest started, when several run).
    pub fn current(&self) -> Option<Transfer> {
        let cur = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.first().map(|(id, done, total)| Transfer {
            segment_id: *id,
            bytes_done: done.load(Ordering::Relaxed).min(*total),
            bytes_total: *total,
        })
    }

    /// Segments being uploaded now: retention must not delete them.
    pub fn in_flight(&self) -> HashSet<u64> {
        let cur = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.iter().map(|(id, _, _)| *id).collect()
    }

    pub(super) fn started(&self, id: u64, total: u64) -> Arc<AtomicU64> {
        let done = Arc::new(AtomicU64::new(0));
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, done.clone(), total));
        done
    }

    pub(super) fn finished(&self, id: u64) {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _, _)| *i != id);
    }

    pub(super) fn take_kick(&self) -> bool {
        self.inner.kick.swap(false, Ordering::SeqCst)
    }

    pub(super) fn drained(&self) {
        self.inner.now.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_runs_regardless_otherwise_pause_and_windows_decide() {
        let night = [Window::parse("22:00-06:00").unwrap()];
        let noon = 12 * 60;
        let midnight = 0;
        assert!(may_transfer(false, false, &[], noon));
        assert!(!may_transfer(true, false, &[], noon));
        assert!(may_transfer(false, false, &night, midnight));
        assert!(!may_transfer(false, false, &night, noon));
        assert!(!may_transfer(true, false, &night, midnight));
        assert!(may_transfer(true, true, &night, noon));
    }

    #[test]
    fn the_next_minute_is_never_now() {
        assert_eq!(until_next_minute_ms(0), 60_000);
        assert_eq!(until_next_minute_ms(59_999), 1);
        assert_eq!(until_next_minute_ms(61_000), 59_000);
        assert_eq!(until_next_minute_ms(-1), 1);
    }
}
