//! Offline-first upload sync: every closed segment whose template names an upload target
//! (`upload = "vod"`) reaches that target exactly once, across crashes, reboots and outages.
//!
//! # How a segment travels
//!
//! 1. **Enqueue.** [`QueueHook`] runs inside the index commit that closes a segment (by its
//!    writer, or by recovery finishing or adopting it, or by `edgerec index rebuild`) and
//!    sets the row's upload state to `Pending`. The row is the durable queue entry: a crash
//!    can never leave a closed segment without it.
//! 2. **Order.** The worker keeps the pending rows in memory ([`queue::Queue`], pure):
//!    oldest first, or newest first then backfill (`upload.order`). It is built from the
//!    index at start and fed by the hook as segments close. Up to `upload.concurrency`
//!    segments go at once.
//! 3. **Transfer** ([`transfer`], clients in [`target`]). Small files go as one PUT; files
//!    above `part_size` as a multipart upload whose id and completed parts' ETags are saved
//!    durably in the `UploadParts` table after each part, so a restart resumes at the next
//!    part. The next part is read from disk while the current one is sent. Bodies are paced
//!    by one token bucket shared by all transfers ([`limiter`]). Transfers start only inside
//!    the time windows ([`windows`]) and while not paused, and check again before every
//!    part ([`Control::may_transfer`]): pausing, or a window closing, stops a transfer at
//!    the next part boundary; it resumes from there. A file not begun is first looked up
//!    with a HEAD: an object under its key with its size is that file (sent just before a
//!    crash came before its commit, or before an index rebuild) and is not sent again.
//! 4. **Verify and record.** A HEAD checks the object's size; then one durable commit sets
//!    the row to `Uploaded { url, at_ms }`, removes its `UploadParts` entry and adds the
//!    `segment.uploaded` event to the outbox. With `delete_after_upload` the segment is then
//!    deleted by the store's protocol.
//!
//! # Failures
//!
//! Nothing drops a job. Transient errors (timeouts, resets, 5xx, SlowDown) are retried with
//! capped exponential backoff with jitter (1 s … 30 s), and hold every transfer to the same
//! target for that long (the link is down, not the segment); permanent ones (403, a missing
//! bucket, an unreadable file, a service that does not store what it was sent) are retried
//! slowly (30 s … 10 min). The backoff follows the latest error's kind ([`failure`]). A
//! permanent error, or five transient ones in a row, raise an `upload.alarm` (an event and
//! an error log line) once per kind; a success ends the alarm. Each job's attempts (also in
//! the row's `Pending { attempts }`), last error and next retry time are saved in its
//! `UploadParts` entry, so a restart keeps backoffs and alarms, and `edgerec uploads` shows
//! them.
//!
//! Multipart uploads left behind are aborted at start (`orphans.rs`): those recorded for
//! segments that are gone, and those the service lists under this device's key prefix that
//! no segment's progress names (a kill between CreateMultipartUpload and saving its id).
//!
//! # Retention
//!
//! Uploaded segments are evicted first. Segments being uploaded are never evicted. What
//! happens to pending ones when only they are left over a limit is `storage.policy`
//! ([`UploadRetention`], the hooks the daemon hands each retention pass: the storage layer
//! does not know uploads). Under `deny_new` the [`DenyFlag`] stops new segments; recorders
//! see it through a watch handle, not by reading the index per frame.

mod control;
mod error;
mod evict;
pub mod failure;
mod http;
pub mod limiter;
mod orphans;
pub mod queue;
pub mod report;
mod segment;
mod shared;
pub mod target;
pub mod transfer;
pub mod uploads;
mod worker;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use control::{may_transfer, paused_in, set_paused_in, Control};
pub use error::UploadError;
pub use evict::{pending_rows, DenyFlag, DenyGate, UploadRetention, DENY_KEY};
pub use worker::spawn;

use crate::config::Config;
use crate::storage::store::{AuxOp, IndexHook, SegmentRow, SegmentState, Store, UploadState};
use crate::util::clock::SharedClock;

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
    crate::config::rules::resolve(cfg, app, stream)?
        .upload
        .as_deref()
}

/// Puts closed segments into the upload queue inside the commit that closes them, and
/// hands them to the worker once that commit landed (so the worker always finds them
/// `Closed` and pending, with no polling for commits still on their way).
pub struct QueueHook {
    cfg: Arc<Config>,
    clock: SharedClock,
    /// Segments marked pending in a commit that has not landed yet.
    staged: Mutex<Vec<u64>>,
    /// Segments whose commit landed since the worker last looked.
    fed: Mutex<Vec<u64>>,
    wake: Arc<Notify>,
}

impl QueueHook {
    fn take_fed(&self) -> Vec<u64> {
        std::mem::take(&mut *self.fed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Hand back what [`take_fed`](Self::take_fed) returned but could not be looked up.
    fn refeed(&self, ids: Vec<u64>) {
        self.fed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids);
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
            self.staged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(row.id);
        }
    }

    fn committed(&self, ids: &[u64]) {
        let mut landed = Vec::new();
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id| {
                let hit = ids.contains(id);
                if hit {
                    landed.push(*id);
                }
                !hit
            });
        if landed.is_empty() {
            return;
        }
        landed.dedup();
        self.fed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(landed);
        self.wake.notify_one();
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
            staged: Mutex::new(Vec::new()),
            fed: Mutex::new(Vec::new()),
            wake: wake.clone(),
        });
        store.add_hook(hook.clone());
        Some(Uploads {
            control: Control::new(
                store.clone(),
                clock.clone(),
                cfg.upload
                    .as_ref()
                    .map(|u| u.windows.clone())
                    .unwrap_or_default(),
                wake,
            ),
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

#[cfg(test)]
mod tests;
