//! Events for the fleet manager, written to the index's outbox table before anything
//! publishes them.
//!
//! Producers turn an event into an [`AuxOp`] with [`Events::ops`] and commit it together
//! with the state change it reports (inside an [`IndexHook`](crate::storage::store::IndexHook) for
//! segment closes and deletions, or in the same [`Store::aux_commit`] that records an
//! upload), or commit it alone with [`Events::emit`]. The MQTT publisher reads the outbox in
//! key order and removes an event only after the broker acknowledged it, so events survive
//! broker outages and reboots and arrive in order, at least once. Each event carries an `id`
//! for deduplication; an event that reports a fact about a segment has an id derived from
//! the segment and the fact, so a redelivery after a crash carries the same id.
//!
//! The outbox is bounded ([`Events::capacity`]): when full, the oldest events are dropped in
//! the commit that adds the new one, and counted durably ([`Events::dropped`]) until a
//! telemetry report carrying the count was handed to the broker client
//! ([`Events::forget_dropped`]).
//!
//! # Order and ids
//!
//! An event's outbox key is chosen inside the write transaction that stores it
//! ([`AuxOp::append`]); redb runs one write transaction at a time, so key order is commit
//! order, and the publisher, which reads in key order, never sends an older event after a
//! newer one. Keys only grow, across an emptied outbox and restarts (each run starts above
//! any key a crash may have taken back), so the publisher sends the key as the event's
//! `event_seq`: a consumer sees it increase in the order events were stored.
//!
//! Ids of events that are not about a segment ([`Events::fresh_id`]) are
//! `{device}-{run}-{n}`: `run` is 64 random bits drawn at start, `n` counts this run's ids
//! atomically, so ids never repeat across producers or reboots (even on a board whose clock
//! restarts in 1970). Segment events' ids are derived from the segment ([`segment`]).

pub mod alarm;
pub mod clock;
pub mod segment;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::storage::store::{AuxOp, AuxTable, Store, StoreError};

/// What happened. The topic is `{prefix}/{device}/events/{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    SegmentClosed,
    SegmentUploaded,
    SegmentRecovered,
    SegmentEvicted,
    TaskStatus,
    SourceState,
    StorageAlarm,
    UploadAlarm,
    // Appended: postcard stores the variant's position.
    ClockStep,
    ClockCorrected,
}

impl EventKind {
    /// The name used in topics and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SegmentClosed => "segment.closed",
            EventKind::SegmentUploaded => "segment.uploaded",
            EventKind::SegmentRecovered => "segment.recovered",
            EventKind::SegmentEvicted => "segment.evicted",
            EventKind::TaskStatus => "task.status",
            EventKind::SourceState => "source.state",
            EventKind::StorageAlarm => "storage.alarm",
            EventKind::UploadAlarm => "upload.alarm",
            EventKind::ClockStep => "clock.step",
            EventKind::ClockCorrected => "clock.corrected",
        }
    }
}

/// One stored event. `body` is the JSON payload's kind-specific fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id, for deduplication by consumers.
    pub id: String,
    pub kind: EventKind,
    /// When it happened, ms since the Unix epoch.
    pub at_ms: i64,
    /// The kind-specific fields, a JSON object.
    pub body: String,
}

impl Event {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an event always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Event> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The producer side of the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    device: String,
    /// Events are only kept when something publishes them (MQTT configured).
    enabled: bool,
    capacity: u64,
    /// Random per run (hex): with `count`, makes fresh ids unique across runs.
    run: String,
    /// Fresh ids handed out in this run.
    count: AtomicU64,
    /// Wakes the publisher when an event is about to be stored or was stored.
    stored: tokio::sync::Notify,
}

impl Events {
    /// The outbox of `store`, for one run of the recorder (blocking: with `enabled`, one
    /// durable commit starts a new run of outbox keys, see [`AuxOp::new_run`]). With
    /// `enabled` false, [`Events::ops`] produces no-ops and nothing is stored (no broker
    /// configured: nobody would ever drain it).
    pub fn new(
        store: Arc<Store>,
        device: &str,
        enabled: bool,
        capacity: u64,
    ) -> Result<Events, StoreError> {
        if enabled {
            store.aux_commit(vec![AuxOp::new_run(AuxTable::Outbox)], None, true)?;
        }
        Ok(Events {
            inner: Arc::new(Inner {
                store,
                device: device.to_string(),
                enabled,
                capacity: capacity.max(1),
                run: crate::storage::guard::random_hex(8),
                count: AtomicU64::new(1),
                stored: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    pub fn device(&self) -> &str {
        &self.inner.device
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Events dropped because the outbox was full and not yet reported (durable; blocking).
    pub fn dropped(&self) -> Result<u64, StoreError> {
        Ok(self.inner.store.aux_queue(AuxTable::Outbox)?.dropped)
    }

    /// `n` dropped events were reported: lower the count by that much (drops that happened
    /// meanwhile stay counted). Blocking; volatile (a crash reports them again).
    pub fn forget_dropped(&self, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let op = AuxOp::forget_dropped(AuxTable::Outbox, n);
        self.inner.store.aux_commit(vec![op], None, false)
    }

    /// A fresh unique id for an event that is not about a segment.
    pub fn fresh_id(&self) -> String {
        let n = self.inner.count.fetch_add(1, Ordering::SeqCst);
        format!("{}-{}-{n}", self.inner.device, self.inner.run)
    }

    /// The op that stores `event` in the outbox (its key, and the drop of the oldest event
    /// when the outbox is full, are decided when it commits). Empty when events are
    /// disabled. Commit it with the state change the event reports.
    pub fn ops(
        &self,
        kind: EventKind,
        id: String,
        at_ms: i64,
        body: serde_json::Value,
    ) -> Vec<AuxOp> {
        if !self.inner.enabled {
            return Vec::new();
        }
        let event = Event {
            id,
            kind,
            at_ms,
            body: body.to_string(),
        };
        // The commit follows; a publisher woken before it lands finds the event on its
        // next look (it also looks periodically).
        self.inner.stored.notify_one();
        vec![AuxOp::append(
            AuxTable::Outbox,
            event.encode(),
            self.inner.capacity,
        )]
    }

    /// Store an event on its own, durably (blocking: an fsync). Events committed alone
    /// (source states, alarms, task changes) are rare, and recovery could not redo them.
    pub fn emit(
        &self,
        kind: EventKind,
        at_ms: i64,
        body: serde_json::Value,
    ) -> Result<(), StoreError> {
        let ops = self.ops(kind, self.fresh_id(), at_ms, body);
        if ops.is_empty() {
            return Ok(());
        }
        self.inner.store.aux_commit(ops, None, true)?;
        self.inner.stored.notify_one();
        Ok(())
    }

    /// Resolves after an event was produced since the last call returned (for the publisher).
    pub async fn produced(&self) {
        self.inner.stored.notified().await
    }

    /// Up to `limit` stored events from key `from`, oldest first, with their keys.
    pub fn pending(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        Ok(self
            .inner
            .store
            .aux_scan(AuxTable::Outbox, from, limit)?
            .into_iter()
            .filter_map(|(k, v)| Event::decode(&v).map(|e| (k, e)))
            .collect())
    }

    /// Forget an acknowledged event (volatile: a lost removal means a redelivery).
    pub fn acked(&self, key: u64) -> Result<(), StoreError> {
        self.inner
            .store
            .aux_commit(vec![AuxOp::remove(AuxTable::Outbox, key)], None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(dir: &std::path::Path, cap: u64) -> Events {
        let store = Arc::new(Store::open(&dir.join("root")).unwrap());
        Events::new(store, "edge-1", true, cap).unwrap()
    }

    #[test]
    fn emitted_events_come_back_in_order_and_go_when_acked() {
        let dir = tempfile::tempdir().unwrap();
        let ev = events(dir.path(), 10);
        for i in 0..3 {
            ev.emit(EventKind::SourceState, i, serde_json::json!({ "n": i }))
                .unwrap();
        }
        let got = ev.pending(0, 10).unwrap();
        let bodies: Vec<&str> = got.iter().map(|(_, e)| e.body.as_str()).collect();
        assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
        let ids: std::collections::HashSet<&str> = got.iter().map(|(_, e)| e.id.as_str()).collect();
        assert_eq!(ids.len(), 3, "ids are unique: {got:?}");
        ev.acked(got[0].0).unwrap();
        assert_eq!(ev.pending(0, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let ev = events(dir.path(), 2);
        for i in 0..5 {
            ev.emit(EventKind::StorageAlarm, i, serde_json::json!({ "n": i }))
                .unwrap();
        }
        let got = ev.pending(0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1.body, r#"{"n":4}"#);
        assert_eq!(ev.dropped().unwrap(), 3);
        ev.forget_dropped(2).unwrap();
        assert_eq!(
            ev.dropped().unwrap(),
            1,
            "only what was reported is forgotten"
        );
    }

    #[test]
    fn disabled_events_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
        let ev = Events::new(store, "edge-1", false, 10).unwrap();
        ev.emit(EventKind::UploadAlarm, 0, serde_json::json!({}))
            .unwrap();
        assert!(ev.pending(0, 10).unwrap().is_empty());
    }

    #[test]
    fn fresh_ids_are_unique_across_threads_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
        let a = Events::new(store.clone(), "edge-1", true, 10).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || (0..100).map(|_| a.fresh_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut ids: std::collections::HashSet<String> = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(ids.insert(id.clone()), "{id} handed out twice");
            }
        }
        // A restart (a new `Events` on the same store) draws a new run id.
        let b = Events::new(store, "edge-1", true, 10).unwrap();
        assert!(!ids.contains(&b.fresh_id()));
    }

    #[test]
    fn events_stored_alone_are_durable_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ev = events(dir.path(), 10);
        let before = ev.store().index_commits();
        ev.emit(EventKind::StorageAlarm, 1, serde_json::json!({}))
            .unwrap();
        assert_eq!(ev.store().index_commits(), before + 1, "a durable commit");
    }
}
