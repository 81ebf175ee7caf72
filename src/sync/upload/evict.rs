//! Retention meets uploads: what retention may delete given `storage.policy` and the
//! uploader's state, what it reports when it deletes segments never uploaded
//! (`evicted_unsynced`), and the `deny_new` flag ([`DenyFlag`]) that stops recorders from starting new
//! segments while storage is full of segments waiting for upload.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Control;
use crate::config::upload::StoragePolicy;
use crate::config::Config;
use crate::storage::retention::pass::PassHooks;
use crate::storage::retention::Plan;
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

/// What uploads ask of a retention pass ([`PassHooks`]): never delete a segment being
/// uploaded; under `deny_new`, never one still waiting for upload; raise and clear the
/// deny flag ([`DenyFlag`]); report `evicted_unsynced`. One per pass.
pub struct UploadRetention {
    cfg: Config,
    control: Option<Control>,
    deny: DenyFlag,
    pending: HashMap<u64, SegmentRow>,
}

impl UploadRetention {
    pub fn new(cfg: &Config, control: Option<Control>, deny: DenyFlag) -> UploadRetention {
        UploadRetention {
            cfg: cfg.clone(),
            control,
            deny,
            pending: HashMap::new(),
        }
    }
}

impl PassHooks for UploadRetention {
    fn protected(&mut self, rows: &[SegmentRow]) -> HashSet<u64> {
        self.pending = pending_rows(rows);
        let mut keep = self
            .control
            .as_ref()
            .map(Control::in_flight)
            .unwrap_or_default();
        if self.cfg.storage.policy == StoragePolicy::DenyNew {
            keep.extend(self.pending.keys().copied());
        }
        keep
    }

    fn planned(&mut self, store: &Store, plan: &Plan) {
        report_retention(&self.cfg, store, &self.deny, plan, &self.pending);
    }

    fn deleted(&mut self, store: &Store, plan: &Plan) {
        report_evicted_unsynced(store, plan, &self.pending);
    }
}

/// What a retention plan means for uploads under `deny_new`: a limit it cannot meet while
/// segments wait for upload is an alarm, and the deny flag ([`DENY_KEY`]) is set until a
/// pass meets every limit again: recorders start no new segment meanwhile ([`DenyGate`]).
/// Called inside the retention pass, before it deletes (blocking).
fn report_retention(
    cfg: &Config,
    store: &Store,
    flag: &DenyFlag,
    plan: &Plan,
    pending: &HashMap<u64, SegmentRow>,
) {
    let deny =
        cfg.storage.policy == StoragePolicy::DenyNew && plan.unmet.is_some() && !pending.is_empty();
    let was = flag.is_set();
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
        flag.set(store, deny);
    }
}

/// After a retention pass deleted (under `delete_oldest`): every segment that was still
/// waiting for upload and is now gone (or marked for deletion, which recovery finishes) is
/// an `evicted_unsynced` warning with stream, start, end and bytes. Checked against the
/// index, so a delete that failed half-way reports exactly what went. Blocking.
fn report_evicted_unsynced(store: &Store, plan: &Plan, pending: &HashMap<u64, SegmentRow>) {
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

/// The deny flag, shared: retention raises and clears it (and stores it in the index, so
/// a restart keeps refusing new segments until a pass finds room); recorders hold a
/// [`DenyGate`] and see it without reading the index. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DenyFlag(Arc<tokio::sync::watch::Sender<bool>>);

impl DenyFlag {
    /// The flag as the index last stored it (clear if it cannot be read).
    pub fn load(store: &Store) -> DenyFlag {
        let set = matches!(store.aux_get(AuxTable::Settings, DENY_KEY), Ok(Some(v)) if v == [1]);
        DenyFlag(Arc::new(tokio::sync::watch::Sender::new(set)))
    }

    /// Whether new segments are refused now.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// A recorder's view.
    pub fn gate(&self) -> DenyGate {
        DenyGate {
            rx: self.0.subscribe(),
            denied: false,
        }
    }

    /// Store the flag, then let recorders see it (blocking: one index commit). Recorders
    /// see it even when the commit fails: refusing new segments must not wait for the disk.
    fn set(&self, store: &Store, deny: bool) {
        let op = AuxOp::put(AuxTable::Settings, DENY_KEY, vec![u8::from(deny)]);
        if let Err(e) = store.aux_commit(vec![op], None, false) {
            tracing::error!(error = %e, "cannot record the deny_new state");
        }
        self.0.send_replace(deny);
    }
}

/// A recorder's view of the deny flag: may a new segment start? A borrow of the shared
/// flag, no index read, so it is asked on every frame.
#[derive(Debug)]
pub struct DenyGate {
    rx: tokio::sync::watch::Receiver<bool>,
    denied: bool,
}

impl DenyGate {
    /// True while recording must not start (or continue) a segment.
    pub fn denied(&mut self) -> bool {
        let d = *self.rx.borrow();
        if d != self.denied {
            if d {
                tracing::warn!("not recording: storage is full of segments not uploaded yet (storage.policy = deny_new)");
            } else {
                tracing::info!("recording again: storage has room");
            }
            self.denied = d;
        }
        d
    }
}
