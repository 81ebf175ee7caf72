//! Health of the running recorder: what each stream is doing, for `edgerec status` and the
//! systemd watchdog.
//!
//! Each stream task owns an `Arc<`[`StreamStatus`]`>` and updates it as it goes
//! (connecting → recording → retrying/failed → …); the daemon keeps them all in a
//! [`StatusBoard`]. The control socket's `status` request answers with a [`Report`] (JSON),
//! and [`render`] prints one as text.
//!
//! **Heartbeat.** A stream task beats when a frame arrives, when a segment closes, when its
//! state changes, and every second while it legitimately waits (backing off before
//! reconnecting to a dead camera). A stream that ended for good (a file without `loop`) is
//! excluded. [`StatusBoard::stalled`] names the streams that have not beaten for
//! [`STALL`]; the daemon feeds the systemd watchdog only while that list is empty, so a
//! hung pipeline (a source stuck without a timeout, a writer stuck in the kernel, a dead
//! task) gets the service restarted, while a camera that is merely offline does not.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A state change (also a heartbeat).
    pub fn set_state(&self, state: StreamState, now: Instant, wall_ms: i64) {
        let mut i = self.lock();
        if i.report.state != state {
            i.report.state = state;
            i.report.since_ms = wall_ms;
        }
        if !matches!(state, StreamState::Recording) {
            i.report.segment = None;
        }
        i.beat = now;
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
        i.report.last_error = Some(crate::redact::redact_url(error));
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
#[derive(Debug, Default)]
pub struct StatusBoard {
    streams: Mutex<Vec<Arc<StreamStatus>>>,
}

impl StatusBoard {
    /// Adds a stream and returns its handle for the stream task.
    pub fn add(&self, status: StreamStatus) -> Arc<StreamStatus> {
        let s = Arc::new(status);
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.clone());
        s
    }

    /// Removes a stream added with [`StatusBoard::add`] (a push that ended); other entries
    /// with the same name stay.
    pub fn remove(&self, status: &Arc<StreamStatus>) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, status));
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

/// Disk use as reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    /// Bytes of all segments in the index.
    pub used_bytes: u64,
    /// `storage.max_bytes`.
    pub quota_bytes: u64,
    /// Free and total bytes of the filesystem holding the root.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Segment counts of one stream, from the index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub stream: String,
    pub closed: u64,
    pub writing: u64,
    pub bytes: u64,
    /// Wall-clock start of the oldest and end of the newest closed segment.
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

pub use crate::upload::report::UploadReport;

/// The answer to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// False when no recorder runs and the report comes from the index alone.
    pub running: bool,
    pub device_id: String,
    pub root: String,
    /// Process id and wall-clock start of the running recorder.
    pub pid: Option<u32>,
    pub started_ms: Option<i64>,
    pub streams: Vec<StreamReport>,
    pub disk: Option<DiskReport>,
    pub segments: Vec<SegmentCounts>,
    pub uploads: UploadReport,
}

/// What only a running recorder knows.
#[derive(Debug)]
pub struct Live {
    pub board: Arc<StatusBoard>,
    pub pid: u32,
    pub started_ms: i64,
}

/// Builds the report from the index (blocking: call it off the async runtime) and, when the
/// recorder runs, its live stream states.
pub fn build_report(
    store: &crate::store::Store,
    live: Option<&Live>,
    device_id: &str,
    quota_bytes: u64,
    now: Instant,
) -> Result<Report, crate::store::StoreError> {
    let rows = store.segments()?;
    let (segments, used_bytes) = count_segments(&rows);
    let disk = store.disk().ok().map(|d| DiskReport {
        used_bytes,
        quota_bytes,
        free_bytes: d.free,
        total_bytes: d.total,
    });
    Ok(Report {
        running: live.is_some(),
        device_id: device_id.to_owned(),
        root: store.root().display().to_string(),
        pid: live.map(|l| l.pid),
        started_ms: live.map(|l| l.started_ms),
        streams: live.map(|l| l.board.reports(now)).unwrap_or_default(),
        uploads: UploadReport::from_index(store, &rows)?,
        disk,
        segments,
    })
}

/// Per-stream segment counts and total bytes from index rows.
pub fn count_segments(rows: &[crate::store::SegmentRow]) -> (Vec<SegmentCounts>, u64) {
    use crate::store::SegmentState;
    let mut out: Vec<SegmentCounts> = Vec::new();
    let mut total = 0;
    for r in rows {
        let c = match out.iter_mut().position(|c| c.stream == r.stream) {
            Some(i) => &mut out[i],
            None => {
                out.push(SegmentCounts {
                    stream: r.stream.clone(),
                    ..SegmentCounts::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        match r.state {
            SegmentState::Closed => {
                c.closed += 1;
                c.oldest_ms = Some(c.oldest_ms.map_or(r.start_ms, |o| o.min(r.start_ms)));
                c.newest_ms = Some(c.newest_ms.map_or(r.end_ms, |n| n.max(r.end_ms)));
            }
            SegmentState::Writing => c.writing += 1,
            SegmentState::Deleting => {}
        }
        c.bytes += r.bytes;
        total += r.bytes;
    }
    out.sort_by(|a, b| a.stream.cmp(&b.stream));
    (out, total)
}

/// The report as text for a terminal.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.running {
        let _ = writeln!(
            s,
            "edgerec recording on {} (device {}, pid {})",
            r.root,
            r.device_id,
            r.pid.map_or("?".into(), |p| p.to_string())
        );
    } else {
        let _ = writeln!(
            s,
            "no recorder is running on {} (device {}); from the index:",
            r.root, r.device_id
        );
    }
    if !r.streams.is_empty() {
        let _ = writeln!(
            s,
            "\n{:<16} {:<10} {:>8} {:>10}  segment / last error",
            "stream", "state", "frames", "idle"
        );
        for st in &r.streams {
            let seg = match &st.segment {
                Some(o) => format!("writing #{} (started {})", o.seq, utc(o.start_ms)),
                None => st.last_closed.clone().unwrap_or_else(|| "-".into()),
            };
            let state = serde_json::to_value(st.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{:<16} {:<10} {:>8} {:>9}s  {seg}",
                st.name, state, st.frames, st.idle_s
            );
            if let Some(e) = &st.last_error {
                let _ = writeln!(s, "{:<16} last error: {e}", "");
            }
            for t in &st.skipped {
                let _ = writeln!(s, "{:<16} not recorded: {t}", "");
            }
        }
    }
    if let Some(d) = &r.disk {
        let _ = writeln!(
            s,
            "\ndisk: {} used of {} quota; {} free of {}",
            human(d.used_bytes),
            human(d.quota_bytes),
            human(d.free_bytes),
            human(d.total_bytes)
        );
    }
    let _ = writeln!(
        s,
        "\n{:<16} {:>7} {:>7} {:>10}",
        "segments", "closed", "writing", "bytes"
    );
    for c in &r.segments {
        let _ = writeln!(
            s,
            "{:<16} {:>7} {:>7} {:>10}",
            c.stream,
            c.closed,
            c.writing,
            human(c.bytes)
        );
    }
    let _ = writeln!(s, "\n{}", r.uploads.render());
    s
}

/// `2026-01-02T03:04:05Z` from ms since the Unix epoch.
fn utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
