use super::*;

#[test]
fn a_stream_that_stops_beating_is_stalled_but_a_stopped_one_is_not() {
    let t0 = Instant::now();
    let board = StatusBoard::default();
    let a = board.add(StreamStatus::new("a", "file:x", t0, 0));
    let b = board.add(StreamStatus::new("b", "file:y", t0, 0));
    let later = t0 + Duration::from_secs(61);
    a.frame(t0 + Duration::from_secs(30));
    assert_eq!(board.stalled(later, STALL), vec!["b".to_string()]);
    b.set_state(StreamState::Stopped, t0, 0);
    assert!(board.stalled(later, STALL).is_empty());
    assert!(!board
        .stalled(t0 + Duration::from_secs(200), STALL)
        .is_empty());
}

#[test]
fn failures_record_a_redacted_error_and_the_state() {
    let t0 = Instant::now();
    let s = StreamStatus::new("cam", "rtsp://***@cam/", t0, 5);
    s.segment_started(3, 1000);
    s.set_state(StreamState::Recording, t0, 6);
    s.failed("cannot connect to rtsp://u:pw@cam/x", false, t0, 7);
    let r = s.report(t0);
    assert_eq!(r.state, StreamState::Retrying);
    assert_eq!(r.since_ms, 7);
    assert_eq!(r.segment, None, "no open segment while retrying");
    assert_eq!(
        r.last_error.as_deref(),
        Some("cannot connect to rtsp://***@cam/x")
    );
    s.failed("401", true, t0, 8);
    assert_eq!(s.report(t0).state, StreamState::Failed);
}

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
        disk: Some(DiskReport {
            used_bytes: 2048,
            quota_bytes: 1 << 30,
            free_bytes: 5 << 20,
            total_bytes: 10 << 30,
        }),
        segments: vec![],
        uploads: UploadReport::default(),
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
}

#[test]
fn removing_a_stream_drops_only_that_entry() {
    let t0 = Instant::now();
    let board = StatusBoard::default();
    let a = board.add(StreamStatus::new("cam", "rtsp push", t0, 0));
    let _b = board.add(StreamStatus::new("cam", "rtmp push", t0, 0));
    board.remove(&a);
    let reports = board.reports(t0);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].source, "rtmp push");
}

#[test]
fn skipped_tracks_are_news_only_when_they_change() {
    let t0 = Instant::now();
    let s = StreamStatus::new("cam", "rtsp://cam/", t0, 0);
    let latm = vec!["audio MP4A-LATM/48000 (why)".to_string()];
    assert!(s.set_skipped(latm.clone()));
    assert!(
        !s.set_skipped(latm.clone()),
        "a reconnect with the same tracks"
    );
    assert_eq!(s.report(t0).skipped, latm);
    assert!(s.set_skipped(Vec::new()));
    let json = serde_json::to_string(&s.report(t0)).unwrap();
    assert!(!json.contains("skipped"), "{json}");
}
