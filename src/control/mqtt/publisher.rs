//! Outbox → broker, pure bookkeeping: which outbox events are in flight, which packet id
//! carries which event, and which event a PUBACK releases.
//!
//! The protocol, with the outbox (`crate::sync::events`) as the only record of what is undelivered:
//! 1. read the oldest stored events in key order, up to a window, skipping those in flight
//!    (keys are assigned inside the commit that stores an event, so key order is commit
//!    order: no event can appear later below a key already read);
//! 2. publish each at QoS 1 on `{prefix}/{device}/events/{kind}`;
//! 3. on PUBACK, move the MQTT consumer's cursor in the event log
//!    ([`crate::sync::events::MQTT`]) past every event acknowledged with no older one still
//!    in flight (never earlier); the log removes an event once every consumer passed it;
//! 4. on a lost connection (or a restart, which loses everything in memory) forget what was
//!    in flight and start again from the cursor.
//!
//! Events therefore arrive at least once and, by the first delivery of each id, in order:
//! after a reconnect the unacknowledged tail is sent again before anything newer.

use std::collections::{HashMap, VecDeque};

/// Events in flight at once (rumqttc allows more; commands' replies need room too).
pub const WINDOW: usize = 32;

/// The in-flight state of one connection.
#[derive(Debug)]
pub struct Window {
    max: usize,
    /// Outbox keys published on this connection and not acknowledged, oldest first.
    sent: VecDeque<u64>,
    /// Our publishes not yet numbered by the client, in order: `Some(key)` for events.
    unnumbered: VecDeque<Option<u64>>,
    by_pkid: HashMap<u16, u64>,
    /// The newest key published on this connection: reading resumes after it.
    highest: Option<u64>,
}

impl Window {
    pub fn new(max: usize) -> Window {
        Window {
            max: max.max(1),
            sent: VecDeque::new(),
            unnumbered: VecDeque::new(),
            by_pkid: HashMap::new(),
            highest: None,
        }
    }

    /// How many more events may be published now.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.sent.len())
    }

    /// How many stored events to read to find [`Window::room`] new ones: the in-flight
    /// ones come first in key order.
    pub fn scan_len(&self) -> usize {
        self.max
    }

    /// Whether event `key` was published on this connection (in flight or acknowledged).
    pub fn in_flight(&self, key: u64) -> bool {
        self.highest.is_some_and(|h| key <= h)
    }

    /// Where the next read of the log starts on this connection: after the newest event
    /// published (`None`: from the consumer's cursor).
    pub fn read_from(&self) -> Option<u64> {
        self.highest.map(|h| h + 1)
    }

    /// The cursor the acknowledgements so far allow: every key below it that was published
    /// is acknowledged (`None`: nothing published on this connection).
    pub fn passed(&self) -> Option<u64> {
        let h = self.highest?;
        Some(self.sent.front().copied().unwrap_or(h + 1))
    }

    /// Event `key` was handed to the client (keys in increasing order).
    pub fn sending(&mut self, key: u64) {
        self.highest = Some(self.highest.map_or(key, |h| h.max(key)));
        self.sent.push_back(key);
        self.unnumbered.push_back(Some(key));
    }

    /// A publish that is not an outbox event (status, reply, telemetry) was handed over.
    pub fn sending_other(&mut self) {
        self.unnumbered.push_back(None);
    }

    /// The client sent our oldest unnumbered publish with packet id `pkid`.
    pub fn numbered(&mut self, pkid: u16) {
        if let Some(Some(key)) = self.unnumbered.pop_front() {
            self.by_pkid.insert(pkid, key);
        }
    }

    /// PUBACK for `pkid`: the outbox key it releases, if it carried an event.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        let key = self.by_pkid.remove(&pkid)?;
        self.sent.retain(|k| *k != key);
        Some(key)
    }

    /// The connection is gone: nothing is in flight; resend from the oldest stored event.
    pub fn reset(&mut self) {
        self.sent.clear();
        self.unnumbered.clear();
        self.by_pkid.clear();
        self.highest = None;
    }
}

/// The JSON published for `event` (see [`crate::sync::events::payload`]).
pub use crate::sync::events::payload;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::events::{Event, EventKind};

    #[test]
    fn an_event_is_released_only_by_the_puback_of_its_own_packet() {
        let mut w = Window::new(4);
        w.sending(10);
        w.sending_other();
        w.sending(11);
        w.numbered(1);
        w.numbered(0);
        w.numbered(2);
        assert_eq!(w.acked(2), Some(11));
        assert_eq!(w.acked(7), None);
        assert_eq!(w.acked(1), Some(10));
        assert_eq!(w.acked(1), None, "a second PUBACK releases nothing");
        assert_eq!(w.room(), 4);
    }

    #[test]
    fn the_cursor_passes_only_events_with_no_older_one_in_flight() {
        let mut w = Window::new(4);
        assert_eq!(w.passed(), None);
        w.sending(10);
        w.sending(11);
        w.sending(12);
        w.numbered(1);
        w.numbered(2);
        w.numbered(3);
        assert_eq!(w.acked(2), Some(11));
        assert_eq!(w.passed(), Some(10), "10 is still in flight");
        assert!(w.in_flight(11), "an acknowledged event is not read again");
        assert_eq!(w.acked(1), Some(10));
        assert_eq!(w.passed(), Some(12));
        assert_eq!(w.acked(3), Some(12));
        assert_eq!(w.passed(), Some(13));
        assert_eq!(w.read_from(), Some(13));
    }

    #[test]
    fn the_window_limits_events_in_flight() {
        let mut w = Window::new(2);
        w.sending(1);
        w.sending(2);
        assert_eq!(w.room(), 0);
        assert!(w.in_flight(1) && w.in_flight(2) && !w.in_flight(3));
        w.numbered(5);
        w.acked(5);
        assert_eq!(w.room(), 1);
    }

    #[test]
    fn a_lost_connection_resends_from_the_oldest_stored_event() {
        let mut w = Window::new(8);
        w.sending(4);
        w.sending(5);
        w.numbered(1);
        w.reset();
        assert!(!w.in_flight(4), "everything is sent again");
        assert_eq!(w.room(), 8);
        assert_eq!(
            w.acked(1),
            None,
            "a PUBACK from the old connection releases nothing"
        );
    }

    #[test]
    fn the_payload_carries_id_kind_device_and_the_body_fields() {
        let e = Event {
            id: "edge-1-seg-cam1-3-closed".into(),
            kind: EventKind::SegmentClosed,
            at_ms: 42,
            body: r#"{"stream_id":"cam1","id":"ignored"}"#.into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&payload("edge-1", &e, Some(7))).unwrap();
        assert_eq!(v["id"], "edge-1-seg-cam1-3-closed");
        assert_eq!(v["kind"], "segment.closed");
        assert_eq!(v["device"], "edge-1");
        assert_eq!(v["at_ms"], 42);
        assert_eq!(v["event_seq"], 7);
        assert_eq!(v["stream_id"], "cam1");
    }
}
