//! Retention meets uploads: what retention may delete given `storage.policy` and the
//! uploader's state, what it reports when it deletes segments never uploaded
//! (`evicted_unsynced`), and the `deny_new` flag that stops recorders from starting new
//! segments while storage is full of segments waiting for upload.

use std::collections::{HashMap, HashSet};

use super::Control;
use crate::config::upload::StoragePolicy;
use crate::config::Config;
use crate::storage::store::{AuxOp, AuxTable, SegmentRow, SegmentState, Store, UploadState};

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
) -> impl Fn(&crate::storage::retention::Candidate) -> bool {
    let busy = control.map(Control::in_flight).unwrap_or_default();
    let deny = cfg.storage.policy == StoragePolicy::DenyNew;
    let pending: HashSet<u64> = pending.keys().copied().collect();
    move |c: &crate::storage::retention::Candidate| {
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
    plan: &crate::storage::retention::Plan,
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
    plan: &crate::storage::retention::Plan,
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
