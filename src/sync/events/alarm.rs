//! `storage.alarm` events from the storage watchdog ([`crate::storage::watchdog`]): every
//! condition it raises or clears (write errors and stalls of a stream, a full or read-only
//! disk) goes into the outbox, for MQTT to publish. The watchdog runs with or without MQTT;
//! this is only its publisher.

use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use crate::sync::events::{EventKind, Events};
use crate::util::clock::SharedClock;

/// Store every alarm body from `alarms` as a `storage.alarm` event, until the watchdog is
/// gone. Nothing is stored when events are disabled (no MQTT).
pub async fn forward(
    mut alarms: UnboundedReceiver<serde_json::Value>,
    events: Events,
    clock: SharedClock,
) {
    if !events.enabled() {
        return;
    }
    while let Some(body) = alarms.recv().await {
        let events = events.clone();
        let at = clock.wall_ms();
        let r = tokio::task::spawn_blocking(move || events.emit(EventKind::StorageAlarm, at, body))
            .await;
        if let Ok(Err(e)) = r {
            warn!(error = %e, "cannot store a storage.alarm event");
        }
    }
}
