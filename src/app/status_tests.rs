use std::time::Instant;

use super::*;
use crate::control::report::{DiskReport, UploadReport};
use crate::media::health::{StreamState, StreamStatus};

#[test]
fn report_round_trips_through_json_and_renders_every_stream() {
    let t0 = Instant::now();
    let s = StreamStatus::new("cam1", "pipe:x", t0, 0);
    s.set_state(StreamState::Recording, t0, 1);
    s.segment_started(4, 1234);
    s.set_skipped(vec!["audio PCMU/8000 (not a codec edgerec records)".into()]);
    let r = Report {
        running: true,
        device_id: "d".into(),
        root: "/data".into(),
        pid: Some(7),
        started_ms: Some(0),
        streams: vec![s.report(t0)],
        storage: vec![crate::storage::watchdog::Condition {
            alarm: "write_error".into(),
            stream: Some("cam1".into()),
            op: Some("fdatasync".into()),
            path: Some("cam1/x.mp4.part".into()),
            errno: Some("EIO".into()),
            error: Some("fdatasync cam1/x.mp4.part: Input/output error".into()),
            since_ms: 2000,
            failures: 3,
        }],
        disk: Some(DiskReport {
            used_bytes: 2048,
            quota_bytes: 1 << 30,
            free_bytes: 5 << 20,
            total_bytes: 10 << 30,
        }),
        segments: vec![],
        uploads: UploadReport::default(),
        clock: Some(crate::util::clockwatch::ClockReport {
            state: "unsynced".into(),
            maxerror_ms: Some(16_000),
            offset_ms: 5,
            steps: 1,
            corrections: 1,
            last_step: Some(crate::util::clockwatch::Step {
                from_ms: 3_000,
                to_ms: 1_796_000_003_000,
                delta_ms: 1_796_000_000_000,
                old_offset_ms: 0,
                new_offset_ms: 1_796_000_000_000,
                was_synced: false,
                correction: true,
            }),
        }),
        callbacks: vec![crate::sync::webhooks::EndpointStatus {
            name: "backend".into(),
            url: "https://example.com/hook".into(),
            format: "standard".into(),
            lag_events: 3,
            oldest_age_s: Some(42),
            disabled: true,
            disabled_reason: Some("HTTP 410 Gone".into()),
            ..Default::default()
        }],
    };
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"state\":\"recording\""), "{json}");
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    let text = render(&r);
    assert!(
        text.contains("cam1") && text.contains("recording"),
        "{text}"
    );
    assert!(
        text.contains("writing #4 (started 1970-01-01T00:00:01Z)"),
        "{text}"
    );
    assert!(text.contains("2.0 KiB used of 1.0 GiB quota"), "{text}");
    assert!(
        text.contains("not recorded: audio PCMU/8000 (not a codec edgerec records)"),
        "{text}"
    );
    assert!(text.contains("uploads: not configured"), "{text}");
    assert!(
        text.contains("callback backend (standard, DISABLED): 3 event(s) behind, oldest 42s old")
            && text.contains("last error: HTTP 410 Gone"),
        "{text}"
    );
    assert!(
        text.contains("write_error cam1: fdatasync EIO since 1970-01-01T00:00:02Z"),
        "{text}"
    );
    assert!(text.contains("Input/output error"), "{text}");
    assert!(
        text.contains("clock: unsynced (max error 16000 ms), 1 step(s) seen (1 correction(s)); last: 1970-01-01T00:00:03Z -> 2026-11-30"),
        "{text}"
    );
}
