//! Offline-first upload sync: every closed segment whose template names an upload target
//! (`upload = "vod"`) reaches that target exactly once, across crashes, reboots and outages.
//!
//! # How a segment travels
//!
//! 1. **Enqueue.** [`QueueHook`] runs inside the index commit that closes a segment (by its
//!    writer, or by recovery finishing or adopting it) and sets the row's upload state to
//!    `Pending`. The row is the durable queue entry: a crash can never leave a closed
//!    segment without it.
//! 2. **Order.** The worker keeps the pending rows in memory ([`queue::Queue`], pure):
//!    oldest first, or newest first then backfill (`upload.order`). It is built from the
//!    index at start and fed by the hook as segments close.
//! 3. **Transfer** ([`transfer`]). Small files go as one PUT; files above `part_size` as a
//!    multipart upload whose id and completed parts' ETags are saved durably in the
//!    `UploadParts` table after each part, so a restart resumes at the next part. Bodies
//!    are paced by one token bucket shared by all transfers ([`limiter`]), and transfers
//!    only start inside the configured time windows ([`windows`]) and while not paused.
//! 4. **Verify and record.** A HEAD checks the object's size; then one durable commit sets
//!    the row to `Uploaded { url, at_ms }`, removes its part progress and adds the
//!    `segment.uploaded` event to the outbox. With `delete_after_upload` the segment is then
//!    deleted by the store's protocol.
//!
//! # Failures
//!
//! Nothing drops a job. Transient errors (timeouts, resets, 5xx, SlowDown) are retried with
//! capped exponential backoff with jitter (1 s … 30 s); permanent ones (403, a missing
//! bucket, an unreadable file, a service that does not store what it was sent) raise an
//! `upload.alarm` (an event and an error log line) and are retried slowly (30 s … 10 min).
//! Multipart uploads left behind by segments that are gone are aborted at start.
//!
//! # Retention
//!
//! Uploaded segments are evicted first. Segments being uploaded are never evicted. What
//! happens to pending ones when only they are left over a limit is `storage.policy`
//! ([`retention_guard`]).

pub mod cli;
mod error;
mod http;
pub mod keys;
pub mod limiter;
pub mod queue;
pub mod transfer;
pub mod windows;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use error::UploadError;
pub use worker::spawn;

use crate::clock::SharedClock;
use crate::config::upload::StoragePolicy;
use crate::config::Config;
use crate::store::{
    AuxOp, AuxTable, IndexHook, SegmentRow, SegmentState, Store, StoreError, UploadState,
};

/// `Settings` key of the persisted "paused" flag.
pub const PAUSED_KEY: u64 = 1;

/// The upload backlog: pending segments, their bytes and the oldest one's start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub count: u64,
    pub bytes: u64,
    /// Start of the oldest pending segment, ms since the Unix epoch.
    pub oldest_ms: Option<i64>,
}

/// The backlog from the index (blocking: call off the async runtime).
pub fn backlog(store: &Store) -> Result<Backlog, StoreError> {
    Ok(backlog_of(&store.segments()?))
}

/// The backlog of `rows`.
pub fn backlog_of(rows: &[SegmentRow]) -> Backlog {
    let mut b = Backlog::default();
    for r in rows {
        if r.state == SegmentState::Closed && matches!(r.upload, UploadState::Pending { .. }) {
            b.count += 1;
            b.bytes += r.bytes;
            b.oldest_ms = Some(b.oldest_ms.map_or(r.start_ms, |o| o.min(r.start_ms)));
        }
    }
    b
}

/// A transfer under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub segment_id: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// The upload target a row's template names, if any.
pub fn target_name<'a>(cfg: &'a Config, app: &str, stream: &str) -> Option<&'a str> {
    crate::rules::resolve(cfg, app, stream)?.upload.as_deref()
}

/// Puts closed segments into the upload queue inside the commit that closes them.
pub struct QueueHook {
    cfg: Arc<Config>,
    clock: SharedClock,
    /// Segments queued since the worker last looked.
    fed: Mutex<Vec<u64>>,
    wake: Arc<Notify>,
}

impl QueueHook {
    fn take_fed(&self) -> Vec<u64> {
        std::mem::take(&mut *self.fed.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl IndexHook for QueueHook {
    fn closing(&self, row: &mut SegmentRow, _ops: &mut Vec<AuxOp>) {
        if row.upload == UploadState::NotQueued
            && target_name(&self.cfg, &row.app, &row.stream).is_some()
        {
            row.upload = UploadState::Pending {
                queued_at_ms: self.clock.wall_ms(),
                attempts: 0,
            };
            self.fed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(row.id);
            self.wake.notify_one();
        }
    }
}

/// A handle to the running uploader, for the CLI (through the control socket), MQTT
/// commands and telemetry. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<ControlInner>,
}

struct ControlInner {
    store: Arc<Store>,
    paused: AtomicBool,
    /// A drain (`upload --now`) is under way.
    now: AtomicBool,
    /// `now()` was called since the worker last looked: retry every waiting job at once.
    kick: AtomicBool,
    wake: Arc<Notify>,
    current: Mutex<Vec<(u64, Arc<AtomicU64>, u64)>>,
}

impl Control {
    fn new(store: Arc<Store>, wake: Arc<Notify>) -> Control {
        let paused =
            matches!(store.aux_get(AuxTable::Settings, PAUSED_KEY), Ok(Some(v)) if v == [1]);
        Control {
            inner: Arc::new(ControlInner {
                store,
                paused: AtomicBool::new(paused),
                now: AtomicBool::new(false),
                kick: AtomicBool::new(false),
                wake,
                current: Mutex::new(Vec::new()),
            }),
        }
    }

    fn set_paused(&self, p: bool) -> Result<(), StoreError> {
        self.inner.paused.store(p, Ordering::SeqCst);
        self.inner.wake.notify_one();
        self.inner.store.aux_commit(
            vec![AuxOp::put(
                AuxTable::Settings,
                PAUSED_KEY,
                vec![u8::from(p)],
            )],
            None,
            true,
        )
    }

    /// Stop starting transfers (one under way is stopped too, and resumes later from its
    /// last part). Survives restarts. Blocks for one index commit.
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

    fn started(&self, id: u64, total: u64) -> Arc<AtomicU64> {
        let done = Arc::new(AtomicU64::new(0));
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, done.clone(), total));
        done
    }

    fn finished(&self, id: u64) {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _, _)| *i != id);
    }

    fn take_kick(&self) -> bool {
        self.inner.kick.swap(false, Ordering::SeqCst)
    }

    fn drained(&self) {
        self.inner.now.store(false, Ordering::SeqCst);
    }
}

/// The uploader before it runs: its hook is registered on the store (so recovery's closes
/// and adoptions are queued too), then [`spawn`] starts it.
pub struct Uploads {
    cfg: Arc<Config>,
    store: Arc<Store>,
    clock: SharedClock,
    hook: Arc<QueueHook>,
    control: Control,
}

impl Uploads {
    /// Register the queue hook on `store` (call before [`Store::recover`]). `None` when the
    /// config has no `[upload]` section.
    pub fn register(cfg: &Config, store: &Arc<Store>, clock: SharedClock) -> Option<Uploads> {
        cfg.upload.as_ref()?;
        let cfg = Arc::new(cfg.clone());
        let wake = Arc::new(Notify::new());
        let hook = Arc::new(QueueHook {
            cfg: cfg.clone(),
            clock: clock.clone(),
            fed: Mutex::new(Vec::new()),
            wake: wake.clone(),
        });
        store.add_hook(hook.clone());
        Some(Uploads {
            control: Control::new(store.clone(), wake),
            cfg,
            store: store.clone(),
            clock,
            hook,
        })
    }

    /// The control handle (also available after [`spawn`]).
    pub fn control(&self) -> Control {
        self.control.clone()
    }
}

/// Closed segments still waiting for upload, by id (for retention).
pub fn pending_rows(rows: &[SegmentRow]) -> HashMap<u64, SegmentRow> {
    rows.iter()
        .filter(|r| {
            r.state == SegmentState::Closed && matches!(r.upload, UploadState::Pending { .. })
        })
        .map(|r| (r.id, r.clone()))
        .collect()
}

/// What retention may delete, given `storage.policy` and the uploader's state: never a
/// segment being uploaded; under `deny_new`, never one still waiting for upload.
pub fn retention_guard(
    cfg: &Config,
    control: Option<&Control>,
    pending: &HashMap<u64, SegmentRow>,
) -> impl Fn(&crate::retention::Candidate) -> bool {
    let busy = control.map(Control::in_flight).unwrap_or_default();
    let deny = cfg.storage.policy == StoragePolicy::DenyNew;
    let pending: HashSet<u64> = pending.keys().copied().collect();
    move |c: &crate::retention::Candidate| {
        !(busy.contains(&c.id) || deny && pending.contains(&c.id))
    }
}

/// What a retention plan means for uploads under `deny_new`: a limit it cannot meet while
/// segments wait for upload is an alarm, and the deny flag ([`DENY_KEY`]) is set until a
/// pass meets every limit again: recorders start no new segment meanwhile ([`DenyGate`]).
/// Called inside the retention pass, before it deletes (blocking).
pub fn report_retention(
    cfg: &Config,
    store: &Store,
    plan: &crate::retention::Plan,
    pending: &HashMap<u64, SegmentRow>,
) {
    let deny =
        cfg.storage.policy == StoragePolicy::DenyNew && plan.unmet.is_some() && !pending.is_empty();
    let was = matches!(store.aux_get(AuxTable::Settings, DENY_KEY), Ok(Some(v)) if v == [1]);
    if deny && !was {
        tracing::error!(
            alarm = "storage_full_unsynced",
            pending = pending.len(),
            "storage is full of segments not uploaded yet (storage.policy = deny_new): not starting new segments until uploads free space"
        );
    }
    if deny != was {
        if !deny {
            tracing::info!("storage has room again: recording new segments");
        }
        let op = AuxOp::put(AuxTable::Settings, DENY_KEY, vec![u8::from(deny)]);
        if let Err(e) = store.aux_commit(vec![op], None, false) {
            tracing::error!(error = %e, "cannot record the deny_new state");
        }
    }
}

/// After a retention pass deleted (under `delete_oldest`): every segment that was still
/// waiting for upload and is now gone (or marked for deletion, which recovery finishes) is
/// an `evicted_unsynced` warning with stream, start, end and bytes. Checked against the
/// index, so a delete that failed half-way reports exactly what went. Blocking.
pub fn report_evicted_unsynced(
    store: &Store,
    plan: &crate::retention::Plan,
    pending: &HashMap<u64, SegmentRow>,
) {
    for e in &plan.evict {
        let Some(r) = pending.get(&e.id) else {
            continue;
        };
        let gone = match store.segment(e.id) {
            Ok(None) => true,
            Ok(Some(now)) => now.state == SegmentState::Deleting,
            Err(_) => false,
        };
        if gone {
            tracing::warn!(
                event = "evicted_unsynced",
                segment = r.id,
                stream = %r.stream,
                start_ms = r.start_ms,
                end_ms = r.end_ms,
                bytes = r.bytes,
                reason = %e.reason,
                "evicted_unsynced: deleted a segment that was never uploaded (storage.policy = delete_oldest)"
            );
        }
    }
}

/// `Settings` key of the flag retention sets under `storage.policy = "deny_new"`.
pub const DENY_KEY: u64 = 2;

/// A recorder's view of the deny flag: may a new segment start? Reads the index at most
/// once a second.
#[derive(Debug, Default)]
pub struct DenyGate {
    checked: Option<std::time::Instant>,
    denied: bool,
}

impl DenyGate {
    /// True while recording must not start (or continue) a segment.
    pub fn denied(&mut self, store: &Store, now: std::time::Instant) -> bool {
        if self
            .checked
            .is_none_or(|t| now.saturating_duration_since(t) >= std::time::Duration::from_secs(1))
        {
            self.checked = Some(now);
            let d = matches!(store.aux_get(AuxTable::Settings, DENY_KEY), Ok(Some(v)) if v == [1]);
            if d != self.denied {
                if d {
                    tracing::warn!("not recording: storage is full of segments not uploaded yet (storage.policy = deny_new)");
                } else {
                    tracing::info!("recording again: storage has room");
                }
            }
            self.denied = d;
        }
        self.denied
    }
}

#[cfg(test)]
mod tests;
