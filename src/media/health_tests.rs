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
