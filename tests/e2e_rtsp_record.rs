//! End to end: a real RTSP server (gst-rtsp-server, `tests/peers/rtsp_server.py`) serves an
//! H.264 + AAC clip; `edgerec run` records it over RTSP/TCP into 4 s segments; SIGTERM; then
//! every file is checked with ffmpeg/ffprobe and against `edgerec segments --json`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Slack for comparing wall-clock based `start_ms`/`end_ms` on top of one frame.
const SLACK_MS: f64 = 30.0;

#[test]
fn records_rtsp_camera_into_valid_contiguous_segments() {
    record_and_check(ClipSpec::h264(20, 1)); // GOP 1 s
}

/// RTP carries presentation times only: with B-frames, decode times must be rebuilt, or
/// frames come out with broken timing (seen as half the frames dropped by the decoder).
#[test]
fn records_b_frames_over_rtsp_without_losing_or_stretching_frames() {
    record_and_check(ClipSpec {
        bframes: 2,
        ..ClipSpec::h264(20, 1)
    });
}

fn record_and_check(spec: ClipSpec) {
    let clip = clip(&spec);
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let dir = workdir("rtsp_record");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "4s".into(),
        fragment: "1s".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam1", &format!("{}?transport=tcp", peer.url("/cam")))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        daemon.running(),
        "edgerec exited early; log:\n{}",
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(20));
    let log = daemon.log();
    assert!(
        status.success(),
        "edgerec exited with {status} on SIGTERM; log:\n{log}"
    );

    assert_eq!(
        part_files(&root),
        Vec::<String>::new(),
        "working files left after a clean stop"
    );
    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let closed: Vec<&SegmentRow> = rows.iter().filter(|r| r.state == "closed").collect();
    assert_eq!(
        closed.len(),
        rows.len(),
        "rows not closed after a clean stop: {rows:?}"
    );
    assert!(
        closed.len() >= 3,
        "15 s at 4 s per segment should give at least 3 segments, got {}; log:\n{log}",
        closed.len()
    );

    let frame_ms = spec.frame_ms();
    let (interval_ms, gop_ms) = (4000.0, spec.gop_ms());
    let mut spans = Vec::new();
    for (i, row) in closed.iter().enumerate() {
        assert_eq!(row.stream, "cam1");
        assert!(
            !row.recovered,
            "a cleanly closed segment is marked recovered: {row:?}"
        );
        assert_eq!(row.files.len(), 1, "one fmp4 file per segment: {row:?}");
        let file = &row.files[0];
        assert_eq!(file.format, "fmp4");
        assert!(
            file.path.starts_with("cam1/"),
            "naming template not applied: {}",
            file.path
        );
        let path = root.join(&file.path);
        let span_ms = check_segment_file(&path, &spec) * 1000.0;
        spans.push(span_ms);
        // Every frame of the span is there: none lost, none stretched.
        let packets = video_packets(&path).len() as f64;
        assert!(
            (packets - span_ms / frame_ms).abs() <= 1.0,
            "{}: {packets} video frames in {span_ms:.0} ms at {frame_ms} ms per frame",
            file.path
        );

        // The index's duration is the media duration.
        assert!(
            (row.duration_ms as f64 - span_ms).abs() <= frame_ms + 1.0,
            "{}: index duration {} ms, ffprobe {span_ms:.1} ms",
            file.path,
            row.duration_ms
        );
        assert!(
            (row.end_ms - row.start_ms - row.duration_ms).abs() <= 1,
            "end_ms - start_ms != duration_ms: {row:?}"
        );
        // Cut on the first key frame at or after the interval: within one GOP of it. The
        // last one was closed by the shutdown and may be shorter.
        let last = i + 1 == closed.len();
        assert!(
            span_ms <= interval_ms + gop_ms + frame_ms,
            "{}: {span_ms:.0} ms is more than a GOP past the {interval_ms} ms interval",
            file.path
        );
        if !last {
            assert!(
                span_ms >= interval_ms - frame_ms,
                "{}: {span_ms:.0} ms is shorter than the {interval_ms} ms interval",
                file.path
            );
        }
    }

    // Consecutive segments neither overlap nor leave a gap (beyond a frame + clock slack).
    for (i, pair) in closed.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(b.seq, a.seq + 1, "sequence numbers must be consecutive");
        let gap = (b.start_ms - a.end_ms) as f64;
        assert!(
            gap.abs() <= frame_ms + SLACK_MS,
            "seq {} -> {}: {gap} ms between end and next start",
            a.seq,
            b.seq
        );
        let by_media = a.start_ms as f64 + spans[i];
        assert!(
            (b.start_ms as f64 - by_media).abs() <= frame_ms + SLACK_MS,
            "seq {} starts at {} but seq {} ends (by ffprobe) at {by_media:.0}",
            b.seq,
            b.start_ms,
            a.seq
        );
    }
}

/// Checks one segment with ffmpeg/ffprobe; returns its video duration in seconds.
fn check_segment_file(path: &Path, spec: &ClipSpec) -> f64 {
    assert_decodes(path);
    let p = probe(path);
    assert_eq!(
        p.streams.len(),
        2,
        "{}: want video + audio: {p:?}",
        path.display()
    );
    let v = p.stream("video").expect("video stream");
    assert_eq!(v.codec_name, "h264");
    assert_eq!(v.width, Some(spec.width as u64));
    let a = p.stream("audio").expect("audio stream");
    assert_eq!(a.codec_name, "aac");
    assert_eq!(a.sample_rate, Some(48000));
    let packets = video_packets(path);
    assert!(
        packets.first().is_some_and(|p| p.key),
        "{}: must start on a key frame",
        path.display()
    );
    // No frame missing inside the segment either.
    let mut pts: Vec<f64> = packets.iter().map(|p| p.pts).collect();
    pts.sort_by(f64::total_cmp);
    for w in pts.windows(2) {
        assert!(
            (w[1] - w[0]) * 1000.0 < 2.0 * spec.frame_ms() - 5.0,
            "{}: {:.3} s hole in video at {:.3}",
            path.display(),
            w[1] - w[0],
            w[0]
        );
    }
    // Both tracks cover the same time: audio is not held back less than the video.
    let (video, audio) = (video_span(path), audio_span(path));
    assert!(
        (audio - video).abs() <= 0.1,
        "{}: audio {audio:.3} s, video {video:.3} s",
        path.display()
    );
    video
}
