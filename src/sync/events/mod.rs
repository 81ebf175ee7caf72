//! Events for the fleet manager and webhooks, written to the index's event log (the
//! outbox table) before anything delivers them.
//!
//! Producers turn an event into an [`AuxOp`] with [`Events::ops`] and commit it together
//! with the state change it reports (inside an [`IndexHook`](crate::storage::store::IndexHook) for
//! segment closes and deletions, or in the same [`Store::aux_commit`] that records an
//! upload), or commit it alone with [`Events::emit`]. Each event carries an `id` for
//! deduplication; an event that reports a fact about a segment has an id derived from the
//! segment and the fact, so a redelivery after a crash carries the same id.
//!
//! # Consumers and cursors
//!
//! The log has consumers, each with a durable **cursor** (the first `event_seq` it has not
//! passed) kept in the index beside the log ([`AuxOp::consumers`], [`AuxOp::advance`]): the
//! MQTT publisher ([`MQTT`], when `[mqtt]` is configured) and every webhook endpoint
//! (`callback:{name}`, see [`crate::sync::webhooks`]). A consumer reads the log in key order
//! from its cursor and moves the cursor only after its peer acknowledged the events below it
//! (a PUBACK, a 2xx), so each consumer gets every event in order, at least once, across
//! broker or endpoint outages, kill -9 and reboots. An event stays until **every** consumer
//! passed it, and is removed in the commit that moves the last cursor past it: a slow
//! endpoint never loses an event another consumer already took, and MQTT acks do not touch
//! an endpoint's cursor.
//!
//! The consumers are set once per run from the config ([`Events::open`]): a consumer that
//! is new starts at the **head** (the events stored from now on; it gets no history), and a
//! consumer no longer configured loses its cursor at once, so an endpoint removed from the
//! config never pins the log. (An index from before cursors existed, or one whose log had
//! no consumer, starts its first consumers at the oldest stored event, so nothing stored
//! is skipped.) Cursor moves are volatile commits: a crash can take one back, and the
//! events after it are sent again (same ids).
//!
//! The log is bounded ([`Events::capacity`], `mqtt.outbox_capacity`): when full, the oldest
//! event is dropped in the commit that adds the new one, and counted durably **per consumer
//! that had not passed it** ([`Events::consumer_dropped`]). The MQTT consumer's count is
//! reported in telemetry and lowered once a report carrying it was handed to the broker
//! client ([`Events::forget_dropped`]); an endpoint's count only grows (its telemetry).
//!
//! # Order and ids
//!
//! An event's outbox key is chosen inside the write transaction that stores it
//! ([`AuxOp::append`]); redb runs one write transaction at a time, so key order is commit
//! order, and a consumer, which reads in key order, never gets an older event after a
//! newer one. Keys only grow, across an emptied log and restarts (each run starts above
//! any key a crash may have taken back), so consumers send the key as the event's
//! `event_seq`: a receiver sees it increase in the order events were stored.
//!
//! Ids of events that are not about a segment ([`Events::fresh_id`]) are
//! `{device}-{run}-{n}`: `run` is 64 random bits drawn at start, `n` counts this run's ids
//! atomically, so ids never repeat across producers or reboots (even on a board whose clock
//! restarts in 1970). Segment events' ids are derived from the segment ([`segment`]).

pub mod alarm;
pub mod clock;
pub mod segment;
pub mod streams;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::storage::store::{AuxOp, AuxTable, ConsumerMeta, Store, StoreError};

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
    CallbackAlarm,
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
            EventKind::CallbackAlarm => "callback.alarm",
        }
    }

    /// Every kind, in the order they were added.
    pub const ALL: [EventKind; 11] = [
        EventKind::SegmentClosed,
        EventKind::SegmentUploaded,
        EventKind::SegmentRecovered,
        EventKind::SegmentEvicted,
        EventKind::TaskStatus,
        EventKind::SourceState,
        EventKind::StorageAlarm,
        EventKind::UploadAlarm,
        EventKind::ClockStep,
        EventKind::ClockCorrected,
        EventKind::CallbackAlarm,
    ];

    /// The kind named `name` (as in topics), if any.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// The MQTT publisher's consumer name in the event log.
pub const MQTT: &str = "mqtt";

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

/// The JSON of `event` for MQTT and webhooks: `id`, `kind`, `device`, `at_ms`, `event_seq`
/// (its log key: increasing in the order events were stored; absent for events sent
/// outside the log), then its own fields.
pub fn payload(device: &str, event: &Event, seq: Option<u64>) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), event.id.clone().into());
    obj.insert("kind".into(), event.kind.as_str().into());
    obj.insert("device".into(), device.into());
    obj.insert("at_ms".into(), event.at_ms.into());
    if let Some(seq) = seq {
        obj.insert("event_seq".into(), seq.into());
    }
    if let Ok(serde_json::Value::Object(body)) = serde_json::from_str(&event.body) {
        for (k, v) in body {
            obj.entry(k).or_insert(v);
        }
    }
    serde_json::to_vec(&obj).expect("a JSON object serializes")
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
    /// Events are only kept when something consumes them (MQTT or a webhook configured).
    enabled: bool,
    capacity: u64,
    /// Random per run (hex): with `count`, makes fresh ids unique across runs.
    run: String,
    /// Fresh ids handed out in this run.
    count: AtomicU64,
    /// Wakes the publisher when an event is about to be stored or was stored.
    stored: tokio::sync::Notify,
    /// Counts stores, for the other consumers (webhook tasks) to wait on.
    count_tx: tokio::sync::watch::Sender<u64>,
}

impl Events {
    /// The event log of `store` with only the MQTT consumer, when `enabled` (see
    /// [`Events::open`]).
    pub fn new(
        store: Arc<Store>,
        device: &str,
        enabled: bool,
        capacity: u64,
    ) -> Result<Events, StoreError> {
        let consumers = if enabled {
            vec![MQTT.to_string()]
        } else {
            Vec::new()
        };
        Events::open(store, device, &consumers, capacity)
    }

    /// The event log of `store` for one run of the recorder, consumed by `consumers`
    /// (blocking: one durable commit starts a new run of keys, see [`AuxOp::new_run`], and
    /// sets the consumers, see the module docs). Without consumers, [`Events::ops`]
    /// produces no-ops and nothing is stored: nobody would ever drain it.
    pub fn open(
        store: Arc<Store>,
        device: &str,
        consumers: &[String],
        capacity: u64,
    ) -> Result<Events, StoreError> {
        let enabled = !consumers.is_empty();
        if enabled {
            store.aux_commit(
                vec![
                    AuxOp::new_run(AuxTable::Outbox),
                    AuxOp::consumers(AuxTable::Outbox, consumers),
                ],
                None,
                true,
            )?;
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
                count_tx: tokio::sync::watch::Sender::new(0),
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

    /// Events the MQTT consumer lost because the log was full, not yet reported (durable;
    /// blocking).
    pub fn dropped(&self) -> Result<u64, StoreError> {
        self.consumer_dropped(MQTT)
    }

    /// Events consumer `name` lost because the log was full before it passed them
    /// (durable; blocking).
    pub fn consumer_dropped(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.consumer(name)?.map_or(0, |c| c.dropped))
    }

    /// Consumer `name`'s cursor and drop count, if it is a consumer (blocking).
    pub fn consumer(&self, name: &str) -> Result<Option<ConsumerMeta>, StoreError> {
        Ok(self
            .inner
            .store
            .aux_consumers(AuxTable::Outbox)?
            .into_iter()
            .find(|c| c.name == name))
    }

    /// The first key consumer `name` has not passed (blocking; 0 when it is not one).
    pub fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.consumer(name)?.map_or(0, |c| c.cursor))
    }

    /// `n` of the MQTT consumer's dropped events were reported: lower its count by that
    /// much (drops that happened meanwhile stay counted). Blocking; volatile (a crash
    /// reports them again).
    pub fn forget_dropped(&self, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let op = AuxOp::forget_consumer_dropped(AuxTable::Outbox, MQTT, n);
        self.inner.store.aux_commit(vec![op], None, false)
    }

    /// Consumer `name` is done with every event below key `next` (its peer acknowledged
    /// them): move its cursor, and remove what every consumer passed. Volatile: a crash
    /// that takes it back means a redelivery.
    pub fn advance(&self, name: &str, next: u64) -> Result<(), StoreError> {
        let op = AuxOp::advance(AuxTable::Outbox, name, next);
        self.inner.store.aux_commit(vec![op], None, false)
    }

    /// The same, durable (blocking: an fsync), for a consumer whose peer is slow anyway.
    pub fn advance_durably(&self, name: &str, next: u64) -> Result<(), StoreError> {
        let op = AuxOp::advance(AuxTable::Outbox, name, next);
        self.inner.store.aux_commit(vec![op], None, true)
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
        self.inner.count_tx.send_modify(|n| *n += 1);
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
        self.inner.count_tx.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A receiver that changes whenever an event is about to be stored or was stored (for
    /// consumers other than the MQTT publisher; they also look periodically).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.count_tx.subscribe()
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
}

#[cfg(test)]
mod tests;
