//! Health of the running recorder: what each stream is doing, for `edgerec status` and the
//! systemd watchdog. The pipeline writes it (sources, push ingest, recorders); the control
//! layer reads it ([`crate::control::report`]) and the app renders it.
//!
//! Each stream task owns an `Arc<`[`StreamStatus`]`>` and updates it as it goes
//! (connecting → recording → retrying/failed → …); the daemon keeps them all in a
//! [`StatusBoard`]. The control socket's `status` request answers with a [`crate::control::report::Report`]
//! (JSON), and [`crate::app::status::render`] prints one as text.
//!
//! **Heartbeat.** A stream task beats when a frame arrives, when a segment closes, when its
//! state changes, and every second while it legitimately waits (backing off before
//! reconnecting to a dead camera). A stream that ended for good (a file without `loop`) is
//! excluded. [`StatusBoard::stalled`] names the streams that have not beaten for
//! [`STALL`]; the daemon feeds the systemd watchdog only while that list is empty, so a
//! hung pipeline (a source stuck without a timeout, a writer stuck in the kernel, a dead
//! task) gets the service restarted, while a camera that is merely offline does not.
//!
//! **Changes.** A state change, and a stream added or removed, bumps the board's change
//! counter ([`StatusBoard::changes`]), so whoever reports state changes
//! (`sync::events::streams`, the `source.state` events) wakes on them instead of polling.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use serde::{Deserialize, Serialize};

/// A stream that has not beaten for this long counts as hung. Longer than any legitimate
/// silence: sources time out after 10 s, the longest backoff wait beats every second.
pub const STALL: Duration = Duration::from_secs(60);

/// What a stream is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Opening the source (connecting to the camera, starting the command).
    Connecting,
    /// Frames are flowing.
    Recording,
    /// The source failed; waiting to reconnect.
    Retrying,
    /// The source failed in a way retrying soon will not fix (bad credentials, unsupported
    /// codec, missing file); retrying slowly.
    Failed,
    /// Ended for good (a file without `loop`) or shut down.
    Stopped,
}

/// One stream's state as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReport {
    pub name: String,
    /// The source, credentials redacted.
    pub source: String,
    pub state: StreamState,
    /// Wall-clock time of the last state change (ms since the Unix epoch).
    pub since_ms: i64,
    /// The segment being written: sequence number and wall-clock start.
    pub segment: Option<OpenSegment>,
    /// Path (relative to the storage root) of the last closed segment.
    pub last_closed: Option<String>,
    /// The last error, redacted, with its wall-clock time.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Frames received since the recorder started.
    pub frames: u64,
    /// Seconds since the last heartbeat.
    pub idle_s: u64,
    /// Tracks the source offers that are not recorded, each with the reason (e.g. `audio
    /// MP4A-LATM/48000 (retina cannot depacketize it)`), as of the last session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// The segment a stream is writing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSegment {
    pub seq: u64,
    pub start_ms: i64,
}

/// Shared, updatable state of one stream.
#[derive(Debug)]
pub struct StreamStatus {
    inner: Mutex<Inner>,
    /// The board's change counter, once added to a board.
    changes: OnceLock<Arc<watch::Sender<u64>>>,
}

#[derive(Debug)]
struct Inner {
    report: StreamReport,
    beat: Instant,
}

impl StreamStatus {
    pub fn new(name: &str, source: &str, now: Instant, wall_ms: i64) -> StreamStatus {
        StreamStatus {
            inner: Mutex::new(Inner {
                report: StreamReport {
                    name: name.to_owned(),
                    source: source.to_owned(),
                    state: StreamState::Connecting,
                    since_ms: wall_ms,
                    segment: None,
                    last_closed: None,
                    last_error: None,
                    last_error_ms: None,
                    frames: 0,
                    idle_s: 0,
                    skipped: Vec::new(),
                },
                beat: now,
            }),
            changes: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A state change (also a heartbeat).
    pub fn set_state(&self, state: StreamState, now: Instant, wall_ms: i64) {
        let mut i = self.lock();
        let changed = i.report.state != state;
        if changed {
            i.report.state = state;
            i.report.since_ms = wall_ms;
        }
        if !matches!(state, StreamState::Recording) {
            i.report.segment = None;
        }
        i.beat = now;
        drop(i);
        if changed {
            self.changed();
        }
    }

    fn changed(&self) {
        if let Some(tx) = self.changes.get() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The source failed with `error`; the stream now waits (`failed`: a long wait).
    pub fn failed(&self, error: &str, permanent: bool, now: Instant, wall_ms: i64) {
        let state = if permanent {
            StreamState::Failed
        } else {
            StreamState::Retrying
        };
        self.set_state(state, now, wall_ms);
        let mut i = self.lock();
        i.report.last_error = Some(crate::util::redact::redact_url(error));
        i.report.last_error_ms = Some(wall_ms);
    }

    /// The tracks the source offers but that are not recorded, with reasons. Returns true
    /// when that changed, so the caller can say so once, not at every reconnect.
    pub fn set_skipped(&self, skipped: Vec<String>) -> bool {
        let mut i = self.lock();
        if i.report.skipped == skipped {
            return false;
        }
        i.report.skipped = skipped;
        true
    }

    /// A frame arrived.
    pub fn frame(&self, now: Instant) {
        let mut i = self.lock();
        i.report.frames += 1;
        i.beat = now;
    }

    /// A heartbeat without news (waiting legitimately).
    pub fn beat(&self, now: Instant) {
        self.lock().beat = now;
    }

    /// A segment started.
    pub fn segment_started(&self, seq: u64, start_ms: i64) {
        self.lock().report.segment = Some(OpenSegment { seq, start_ms });
    }

    /// A segment closed and is on disk.
    pub fn segment_closed(&self, path: String, now: Instant) {
        let mut i = self.lock();
        i.report.last_closed = Some(path);
        i.beat = now;
    }

    /// The report, with the time since the last heartbeat.
    pub fn report(&self, now: Instant) -> StreamReport {
        let i = self.lock();
        let mut r = i.report.clone();
        r.idle_s = now.saturating_duration_since(i.beat).as_secs();
        r
    }

    /// True when the stream ended for good or beat within `stall`.
    pub fn alive(&self, now: Instant, stall: Duration) -> bool {
        let i = self.lock();
        i.report.state == StreamState::Stopped || now.saturating_duration_since(i.beat) <= stall
    }
}

/// All streams of the running recorder.
#[derive(Debug)]
pub struct StatusBoard {
    streams: Mutex<Vec<Arc<StreamStatus>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for StatusBoard {
    fn default() -> StatusBoard {
        StatusBoard {
            streams: Mutex::default(),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl StatusBoard {
    /// Adds a stream and returns its handle for the stream task.
    pub fn add(&self, status: StreamStatus) -> Arc<StreamStatus> {
        let _ = status.changes.set(self.changes.clone());
        let s = Arc::new(status);
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.clone());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        s
    }

    /// Removes a stream added with [`StatusBoard::add`] (a push that ended); other entries
    /// with the same name stay.
    pub fn remove(&self, status: &Arc<StreamStatus>) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, status));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes on every state change and every stream added or removed (the value is a
    /// counter; look at [`StatusBoard::reports`] for what changed).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn all(&self) -> Vec<Arc<StreamStatus>> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every stream's report.
    pub fn reports(&self, now: Instant) -> Vec<StreamReport> {
        self.all().iter().map(|s| s.report(now)).collect()
    }

    /// Names of the streams that have not beaten for `stall`; empty when all are alive.
    pub fn stalled(&self, now: Instant, stall: Duration) -> Vec<String> {
        self.all()
            .iter()
            .filter(|s| !s.alive(now, stall))
            .map(|s| s.report(now).name)
            .collect()
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
