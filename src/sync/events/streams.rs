//! `source.state` events from the status board ([`crate::media::health`]): a stream that
//! connects, loses its source, retries or fails gets an event in the log, for every consumer
//! (MQTT and webhooks alike). The board says when something changed
//! ([`StatusBoard::changes`]); this task compares each stream's state with the one it saw
//! last ([`StateWatch`], pure) and stores what moved. It runs whenever the log has a
//! consumer, with or without MQTT.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::media::health::{StatusBoard, StreamReport, StreamState};
use crate::sync::events::{EventKind, Events};
use crate::util::clock::SharedClock;

/// The `source.state` to report when a stream goes from `before` to `now`, if any:
/// `connected` when frames start flowing, `lost` when they stop, `retrying` on a retry not
/// preceded by recording, `failed` when retrying soon will not help.
pub fn source_state(before: Option<StreamState>, now: StreamState) -> Option<&'static str> {
    use StreamState::*;
    if before == Some(now) {
        return None;
    }
    match (before, now) {
        (_, Recording) => Some("connected"),
        (_, Failed) => Some("failed"),
        (Some(Recording), Retrying | Connecting) => Some("lost"),
        (_, Retrying) => Some("retrying"),
        _ => None,
    }
}

/// The last state seen per stream. Pure.
#[derive(Debug, Default)]
pub struct StateWatch {
    states: HashMap<String, StreamState>,
}

impl StateWatch {
    /// The `source.state` bodies for what changed since the last look.
    pub fn changes(&mut self, reports: &[StreamReport]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for r in reports {
            let before = self.states.insert(r.name.clone(), r.state);
            if let Some(state) = source_state(before, r.state) {
                out.push(serde_json::json!({
                    "stream_id": r.name,
                    "state": state,
                    "error": r.last_error,
                }));
            }
        }
        out
    }
}

/// Store `source.state` events for the board's changes until cancelled. Nothing is stored
/// when the log has no consumer.
pub async fn serve(
    board: Arc<StatusBoard>,
    events: Events,
    clock: SharedClock,
    cancel: CancellationToken,
) {
    if !events.enabled() {
        return;
    }
    let mut changes = board.changes();
    let mut watch = StateWatch::default();
    loop {
        let bodies = watch.changes(&board.reports(clock.now()));
        if !bodies.is_empty() {
            let events = events.clone();
            let at = clock.wall_ms();
            let r = tokio::task::spawn_blocking(move || {
                for body in bodies {
                    events.emit(EventKind::SourceState, at, body)?;
                }
                Ok::<_, crate::storage::store::StoreError>(())
            })
            .await;
            if let Ok(Err(e)) = r {
                warn!(error = %e, "cannot store a source.state event");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::health::StreamStatus;
    use std::time::Instant;
    use StreamState::*;

    #[test]
    fn stream_state_changes_map_to_source_states() {
        assert_eq!(source_state(None, Connecting), None);
        assert_eq!(source_state(Some(Connecting), Recording), Some("connected"));
        assert_eq!(source_state(Some(Recording), Recording), None);
        assert_eq!(source_state(Some(Recording), Retrying), Some("lost"));
        assert_eq!(source_state(Some(Connecting), Retrying), Some("retrying"));
        assert_eq!(source_state(Some(Retrying), Failed), Some("failed"));
        assert_eq!(source_state(Some(Recording), Stopped), None);
    }

    #[test]
    fn the_board_wakes_its_watcher_on_a_state_change_and_the_watch_reports_it_once() {
        let board = StatusBoard::default();
        let mut rx = board.changes();
        let t0 = Instant::now();
        let cam = board.add(StreamStatus::new("cam", "rtsp://x", t0, 0));
        assert!(rx.has_changed().unwrap(), "adding a stream is a change");
        rx.borrow_and_update();
        let mut w = StateWatch::default();
        assert!(
            w.changes(&board.reports(t0)).is_empty(),
            "connecting: nothing"
        );
        cam.beat(t0);
        cam.frame(t0);
        assert!(
            !rx.has_changed().unwrap(),
            "beats and frames are not changes"
        );
        cam.set_state(Recording, t0, 1);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        let c = w.changes(&board.reports(t0));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["stream_id"], "cam");
        assert_eq!(c[0]["state"], "connected");
        assert!(w.changes(&board.reports(t0)).is_empty(), "reported once");
        cam.set_state(Recording, t0, 2);
        assert!(
            !rx.has_changed().unwrap(),
            "the same state again is no change"
        );
        cam.failed("refused", false, t0, 3);
        assert!(rx.has_changed().unwrap());
        let c = w.changes(&board.reports(t0));
        assert_eq!(c[0]["state"], "lost");
        assert_eq!(c[0]["error"], "refused");
    }
}
