//! What the MQTT task watches besides the connection: stream states (`source.state`) and
//! the live config (the retained config topic). Storage alarms come from the storage
//! watchdog (`storage::watchdog`), through the outbox.

use tracing::warn;

use crate::media::health::StreamState;
use crate::sync::events::{EventKind, Events};

use super::Client;

impl Client {
    /// Turn stream state changes on the status board into `source.state` events.
    pub(super) async fn watch_streams(&mut self) {
        if !self.ctx.events.enabled() {
            return;
        }
        let now = self.ctx.clock.now();
        let mut out = Vec::new();
        for r in self.ctx.board.reports(now) {
            let before = self.states.insert(r.name.clone(), r.state);
            if let Some(state) = source_state(before, r.state) {
                out.push(serde_json::json!({
                    "stream_id": r.name,
                    "state": state,
                    "error": r.last_error,
                }));
            }
        }
        if out.is_empty() {
            return;
        }
        let events: Events = self.ctx.events.clone();
        let at = self.ctx.clock.wall_ms();
        let _ = tokio::task::spawn_blocking(move || {
            for body in out {
                if let Err(e) = events.emit(EventKind::SourceState, at, body) {
                    warn!(error = %e, "cannot store a source.state event");
                }
            }
        })
        .await;
    }

    /// Republish the retained config when the live config changed (`config.set`).
    pub(super) fn watch_config(&mut self) {
        let Some(live) = &self.ctx.live_config else {
            return;
        };
        let now = live();
        if !std::sync::Arc::ptr_eq(&now, &self.last_config) {
            self.config_json = crate::control::mqtt::effective_config(&now);
            self.last_config = now;
            self.publish_config();
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
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
}
