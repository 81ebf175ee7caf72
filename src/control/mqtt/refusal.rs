//! The storage guard's alarm on the broker: while `edgerec run` refuses its data directory
//! (see [`crate::storage::guard::wait`]), nothing under it may be touched, so the outbox (which lives
//! in the index under the root) cannot be used. This small client publishes straight to the
//! broker instead:
//!
//! - the retained status `online`, with `"recording": false` and the refusal in `refused`
//!   (the device is alive and reachable, and says why it does not record);
//! - a `storage.alarm` event (`unmarked_root`, `missing_root` or `damaged_marker`, with
//!   `path` and `error`) at QoS 1, again at every reconnection (same id, so consumers
//!   deduplicate it).
//!
//! When the marker appears it publishes the alarm cleared (`"active": false`) and
//! disconnects cleanly; the recorder's own client then connects and publishes its status.
//! On SIGTERM it publishes the retained `offline` status instead. It connects as
//! `{client_id}-guard` with a clean session, so the recorder's persistent session (and the
//! commands queued in it) is left alone; its Last Will is the usual `offline` status.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::MqttConfig;
use crate::storage::guard::wait::Waited as End;
use crate::storage::guard::GuardError;
use crate::sync::events::{Event, EventKind};
use crate::util::backoff::Backoff;

use super::conn::{Link, Net, Session, RECONNECT_MAX, RECONNECT_MIN};
use super::topics::Topics;

/// How long the goodbye (last publish, PUBACK, DISCONNECT) may take.
const GOODBYE: Duration = Duration::from_secs(3);

/// The `storage.alarm` fields of a refusal of `root`.
pub fn alarm_body(alarm: &Alarm, active: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "alarm": alarm.kind,
        "active": active,
        "path": alarm.root.display().to_string(),
    });
    if active {
        v["error"] = alarm.error.clone().into();
    }
    v
}

/// The running refusal client.
pub struct Refusal {
    end: mpsc::UnboundedSender<End>,
    task: tokio::task::JoinHandle<()>,
}

/// What the refusal client publishes.
pub struct Alarm {
    pub device: String,
    /// [`GuardError::alarm_kind`] of the refusal.
    pub kind: &'static str,
    /// The refusal's message.
    pub error: String,
    pub root: std::path::PathBuf,
    /// When the refusal began (the alarm's `at_ms`), ms since the Unix epoch.
    pub at_ms: i64,
    /// A unique id for the alarm (`-raised` and `-cleared` are appended).
    pub id: String,
    pub clock: crate::util::clock::SharedClock,
}

impl Alarm {
    /// The alarm for refusal `e` of `root`, beginning now.
    pub fn new(
        device: &str,
        e: &GuardError,
        root: &std::path::Path,
        clock: crate::util::clock::SharedClock,
    ) -> Alarm {
        Alarm {
            device: device.to_owned(),
            kind: e.alarm_kind(),
            error: e.to_string(),
            root: root.to_owned(),
            at_ms: clock.wall_ms(),
            id: format!("{device}-guard-{}", crate::storage::guard::random_hex(8)),
            clock,
        }
    }
}

impl Refusal {
    /// Connect to the broker of `cfg` and keep the alarm and status published until
    /// [`Refusal::finish`]. A connection problem is logged and retried; it never ends the wait.
    pub fn spawn(cfg: &MqttConfig, alarm: Alarm) -> Refusal {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(cfg.clone(), alarm, rx));
        Refusal { end: tx, task }
    }

    /// Publish the last word for `end`, disconnect, and return (bounded by a few seconds).
    pub async fn finish(self, end: End) {
        let _ = self.end.send(end);
        let _ = self.task.await;
    }
}

fn status(state: &str, alarm: &Alarm, at_ms: i64) -> Vec<u8> {
    let mut v = serde_json::json!({
        "state": state,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": 0,
        "at_ms": at_ms,
        "recording": false,
    });
    if state == "online" {
        v["refused"] = alarm.error.clone().into();
    } else {
        v["reason"] = "shutdown".into();
    }
    v.to_string().into_bytes()
}

fn alarm_event(alarm: &Alarm, active: bool, at_ms: i64) -> Vec<u8> {
    let event = Event {
        id: format!("{}-{}", alarm.id, if active { "raised" } else { "cleared" }),
        kind: EventKind::StorageAlarm,
        at_ms,
        body: alarm_body(alarm, active).to_string(),
    };
    super::publisher::payload(&alarm.device, &event, None)
}

async fn run(mut cfg: MqttConfig, alarm: Alarm, mut end: mpsc::UnboundedReceiver<End>) {
    cfg.client_id = format!("{}-guard", cfg.client_id);
    let topics = Topics::new(&cfg.prefix, &alarm.device);
    let will = serde_json::json!({
        "state": "offline",
        "version": env!("CARGO_PKG_VERSION"),
        "reason": "connection lost",
    })
    .to_string()
    .into_bytes();
    // A clean session: nothing of it needs to outlive the refusal at the broker.
    let session = Session {
        will: Some((&topics.status(), will)),
        persistent: false,
    };
    let (link, mut lp) = match Link::with_session(&cfg, session) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "mqtt: cannot report the storage guard's refusal");
            let _ = end.recv().await;
            return;
        }
    };
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX, alarm.at_ms as u64);
    let mut connected = false;
    let how = 'run: loop {
        let polled = {
            let poll = lp.poll();
            tokio::pin!(poll);
            tokio::select! {
                r = &mut poll => r,
                e = end.recv() => break 'run e.unwrap_or(End::Stopped),
            }
        };
        match polled {
            Ok(Net::Connected { .. }) => {
                info!(broker = %cfg.url, "mqtt: connected; reporting the storage guard's refusal");
                connected = true;
                backoff.reset();
                link.publish(
                    &topics.status(),
                    status("online", &alarm, alarm.at_ms),
                    true,
                    true,
                    None,
                );
                let raised = alarm_event(&alarm, true, alarm.at_ms);
                link.publish(
                    &topics.event(EventKind::StorageAlarm),
                    raised,
                    true,
                    false,
                    None,
                );
            }
            Ok(_) => {}
            Err(e) => {
                connected = false;
                debug!(error = %e, "mqtt: cannot reach the broker to report the refusal");
                let wait = tokio::time::sleep(backoff.next_delay());
                tokio::select! {
                    _ = wait => {}
                    e = end.recv() => break 'run e.unwrap_or(End::Stopped),
                }
            }
        }
    };
    if !connected {
        return;
    }
    let now = alarm.clock.wall_ms();
    match how {
        End::Marked => link.publish(
            &topics.event(EventKind::StorageAlarm),
            alarm_event(&alarm, false, now),
            true,
            false,
            None,
        ),
        End::Stopped => link.publish(
            &topics.status(),
            status("offline", &alarm, now),
            true,
            true,
            None,
        ),
    };
    // Wait for the PUBACK of that last publish (or the deadline), then disconnect. The
    // earlier publishes went out long ago: the next packet id sent is the last one's.
    let deadline = tokio::time::Instant::now() + GOODBYE;
    let mut last = None;
    while let Ok(Ok(net)) = tokio::time::timeout_at(deadline, lp.poll()).await {
        match net {
            Net::Sent(pkid) => last = Some(pkid),
            Net::Acked(pkid) if Some(pkid) == last => break,
            _ => {}
        }
    }
    link.disconnect();
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, lp.poll()).await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_reported_with_its_kind_path_and_error() {
        let root = std::path::Path::new("/mnt/sd/edgerec");
        let e = GuardError::Unmarked {
            root: root.to_path_buf(),
        };
        let clock: crate::util::clock::SharedClock =
            std::sync::Arc::new(crate::util::clock::SystemClock);
        let alarm = Alarm::new("dev", &e, root, clock);
        let b = alarm_body(&alarm, true);
        assert_eq!(b["alarm"], "unmarked_root");
        assert_eq!(b["active"], true);
        assert_eq!(b["path"], "/mnt/sd/edgerec");
        assert!(b["error"].as_str().unwrap().contains("edgerec init"), "{b}");
        let cleared = alarm_body(&alarm, false);
        assert_eq!(cleared["active"], false);
        assert!(cleared.get("error").is_none());
        let missing = GuardError::Missing {
            root: root.to_path_buf(),
        };
        assert_eq!(missing.alarm_kind(), "missing_root");
        assert!(alarm.id.starts_with("dev-guard-"), "{}", alarm.id);
    }
}
