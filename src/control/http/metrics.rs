//! `GET /metrics`: Prometheus text exposition format 0.0.4, every family with `# HELP` and
//! `# TYPE`. [`render`] is pure: it takes a [`Snapshot`] (the status report, the event log's
//! consumers, the run's [`Counters`]) and returns the text.
//!
//! The counters count since the recorder started (Prometheus handles the reset at a
//! restart); the gauges are read from the index and the live stream states at each scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::control::report::Report;
use crate::media::health::StreamState;
use crate::storage::store::{AuxOp, IndexHook, SegmentRow};

/// Counters of this run, handed down from the daemon: segments and bytes written per stream
/// (an index hook: every segment close, by a writer or by recovery, passes through it) and
/// retention's evictions (the daemon's retention loop adds each pass's outcome).
#[derive(Default)]
pub struct Counters {
    written: Mutex<BTreeMap<String, Written>>,
    evicted_segments: AtomicU64,
    evicted_bytes: AtomicU64,
}

/// One stream's closed segments and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub segments: u64,
    pub bytes: u64,
}

impl Counters {
    /// A retention pass deleted `segments` segments holding `bytes`.
    pub fn evicted(&self, segments: u64, bytes: u64) {
        self.evicted_segments.fetch_add(segments, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn written(&self) -> BTreeMap<String, Written> {
        self.written.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl IndexHook for Counters {
    fn closing(&self, row: &mut SegmentRow, _ops: &mut Vec<AuxOp>) {
        if let Ok(mut m) = self.written.lock() {
            let w = m.entry(row.stream.clone()).or_default();
            w.segments += 1;
            w.bytes += row.bytes;
        }
    }
}

/// One consumer of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// `mqtt`, or `callback:<name>` for a webhook endpoint.
    pub name: String,
    /// Events stored and not yet passed.
    pub lag: u64,
    /// Events the log's capacity dropped before it passed them.
    pub dropped: u64,
}

/// What one scrape shows.
pub struct Snapshot<'a> {
    pub report: &'a Report,
    pub consumers: Vec<Consumer>,
    pub written: BTreeMap<String, Written>,
    pub evicted_segments: u64,
    pub evicted_bytes: u64,
}

impl<'a> Snapshot<'a> {
    pub fn new(report: &'a Report, consumers: Vec<Consumer>, c: &Arc<Counters>) -> Snapshot<'a> {
        Snapshot {
            report,
            consumers,
            written: c.written(),
            evicted_segments: c.evicted_segments.load(Ordering::Relaxed),
            evicted_bytes: c.evicted_bytes.load(Ordering::Relaxed),
        }
    }
}

const STATES: [(StreamState, &str); 5] = [
    (StreamState::Connecting, "connecting"),
    (StreamState::Recording, "recording"),
    (StreamState::Retrying, "retrying"),
    (StreamState::Failed, "failed"),
    (StreamState::Stopped, "stopped"),
];

/// A label value escaped as the format asks: `\`, `"` and newlines.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {v}");
    }
}

/// The exposition text of `s`.
pub fn render(s: &Snapshot) -> String {
    let r = s.report;
    let mut o = Out(String::new());
    o.family(
        "edgerec_stream_state",
        "gauge",
        "1 for the state each stream is in (connecting, recording, retrying, failed, stopped).",
    );
    for st in &r.streams {
        for (state, name) in STATES {
            let v = u8::from(st.state == state);
            o.sample(
                "edgerec_stream_state",
                &[("stream", &st.name), ("state", name)],
                v,
            );
        }
    }
    o.family(
        "edgerec_segments_written_total",
        "counter",
        "Segments closed since the recorder started (by a writer or by crash recovery).",
    );
    for (stream, w) in &s.written {
        o.sample(
            "edgerec_segments_written_total",
            &[("stream", stream)],
            w.segments,
        );
    }
    o.family(
        "edgerec_written_bytes_total",
        "counter",
        "Bytes of the segments closed since the recorder started.",
    );
    for (stream, w) in &s.written {
        o.sample(
            "edgerec_written_bytes_total",
            &[("stream", stream)],
            w.bytes,
        );
    }
    o.family(
        "edgerec_segments_stored",
        "gauge",
        "Closed segments in the index (on disk) per stream.",
    );
    for c in &r.segments {
        o.sample(
            "edgerec_segments_stored",
            &[("stream", &c.stream)],
            c.closed,
        );
    }
    o.family(
        "edgerec_stored_bytes",
        "gauge",
        "Bytes of the closed segments in the index per stream.",
    );
    for c in &r.segments {
        o.sample("edgerec_stored_bytes", &[("stream", &c.stream)], c.bytes);
    }
    o.family(
        "edgerec_retention_evicted_segments_total",
        "counter",
        "Segments retention deleted since the recorder started.",
    );
    o.sample(
        "edgerec_retention_evicted_segments_total",
        &[],
        s.evicted_segments,
    );
    o.family(
        "edgerec_retention_evicted_bytes_total",
        "counter",
        "Bytes retention freed since the recorder started.",
    );
    o.sample(
        "edgerec_retention_evicted_bytes_total",
        &[],
        s.evicted_bytes,
    );
    o.family(
        "edgerec_upload_backlog_segments",
        "gauge",
        "Segments waiting to be uploaded.",
    );
    o.sample(
        "edgerec_upload_backlog_segments",
        &[],
        r.uploads.backlog_segments,
    );
    o.family(
        "edgerec_upload_backlog_bytes",
        "gauge",
        "Bytes of the segments waiting to be uploaded.",
    );
    o.sample("edgerec_upload_backlog_bytes", &[], r.uploads.backlog_bytes);
    o.family(
        "edgerec_event_log_lag_events",
        "gauge",
        "Events in the durable event log that a consumer (mqtt, callback:<name>) has not passed yet.",
    );
    for c in &s.consumers {
        o.sample(
            "edgerec_event_log_lag_events",
            &[("consumer", &c.name)],
            c.lag,
        );
    }
    o.family(
        "edgerec_event_log_dropped_events",
        "gauge",
        "Events the event log's capacity dropped before a consumer passed them (not yet reported).",
    );
    for c in &s.consumers {
        o.sample(
            "edgerec_event_log_dropped_events",
            &[("consumer", &c.name)],
            c.dropped,
        );
    }
    o.family(
        "edgerec_callback_disabled",
        "gauge",
        "1 when a webhook endpoint is disabled (it answered 410).",
    );
    for c in &r.callbacks {
        o.sample(
            "edgerec_callback_disabled",
            &[("endpoint", &c.name)],
            u8::from(c.disabled),
        );
    }
    if let Some(d) = &r.disk {
        for (name, help, v) in [
            (
                "edgerec_disk_free_bytes",
                "Free bytes of the filesystem holding the storage root.",
                d.free_bytes,
            ),
            (
                "edgerec_disk_total_bytes",
                "Size of the filesystem holding the storage root.",
                d.total_bytes,
            ),
            (
                "edgerec_disk_used_bytes",
                "Bytes of all segments in the index.",
                d.used_bytes,
            ),
            (
                "edgerec_disk_quota_bytes",
                "storage.max_bytes.",
                d.quota_bytes,
            ),
        ] {
            o.family(name, "gauge", help);
            o.sample(name, &[], v);
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::report::{DiskReport, SegmentCounts};

    fn report() -> Report {
        serde_json::from_value(serde_json::json!({
            "running": true, "device_id": "d", "root": "/r", "pid": 1, "started_ms": 0,
            "streams": [], "disk": null, "segments": [],
            "uploads": {"configured": false, "paused": false, "backlog_segments": 3,
                        "backlog_bytes": 300, "oldest_ms": null, "oldest_age_s": null,
                        "failing": 0},
        }))
        .unwrap()
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let mut r = report();
        r.disk = Some(DiskReport {
            used_bytes: 1,
            quota_bytes: 2,
            free_bytes: 3,
            total_bytes: 4,
        });
        r.segments = vec![SegmentCounts {
            stream: "cam\"1".into(),
            closed: 5,
            ..Default::default()
        }];
        let c = Arc::new(Counters::default());
        c.evicted(2, 2048);
        let text = render(&Snapshot::new(
            &r,
            vec![Consumer {
                name: "mqtt".into(),
                lag: 7,
                dropped: 0,
            }],
            &c,
        ));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name} sampled before its TYPE");
            }
        }
        assert!(
            text.contains("edgerec_segments_stored{stream=\"cam\\\"1\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("edgerec_event_log_lag_events{consumer=\"mqtt\"} 7\n"));
        assert!(text.contains("edgerec_retention_evicted_bytes_total 2048\n"));
        assert!(text.contains("edgerec_upload_backlog_segments 3\n"));
        assert!(text.contains("edgerec_disk_free_bytes 3\n"));
    }

    #[test]
    fn a_closing_segment_counts_once_with_its_bytes() {
        let c = Counters::default();
        let meta = crate::media::segment::event::SegmentMeta {
            device: "pi".into(),
            app: String::new(),
            stream: "cam".into(),
            seq: 1,
            start_ms: 0,
            formats: vec![],
            time_quality: None,
            boot: None,
        };
        let mut row = SegmentRow::writing(1, &meta, "cam/a".into(), vec![]);
        row.bytes = 100;
        c.closing(&mut row, &mut Vec::new());
        c.closing(&mut row, &mut Vec::new());
        assert_eq!(
            c.written()["cam"],
            Written {
                segments: 2,
                bytes: 200
            }
        );
    }
}
