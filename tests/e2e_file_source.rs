//! End to end: the looping file source (`file:CLIP?loop=true`) recorded by `edgerec run`.
//! Segments must be valid (ffmpeg, ffprobe) and contiguous across the clip's loops, both
//! when replaying as fast as possible and in real time; a file without `loop` is replayed
//! once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Slack on top of one frame when comparing `start_ms`/`end_ms`.
const SLACK_MS: f64 = 30.0;

#[test]
fn fast_replay_of_a_looping_file_gives_contiguous_segments_across_loops() {
    // 6 s clip, 2 s segments: three segments per loop, and a loop boundary right on a cut.
    let spec = ClipSpec::h264(6, 1);
    let clip = clip(&spec);
    let dir = workdir("file_fast");
    let root = dir.path().join("data");
    let source = format!("file:{}?loop=true&realtime=false", clip.display());
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "1s".into(),
        ..TestConfig::new(&root)
    }
    .stream("loop", &source)
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    // At least 3 loops' worth of segments.
    let enough = wait_until(Duration::from_secs(30), || segment_files(&root).len() >= 10);
    assert!(enough, "no 10 segments after 30 s; log:\n{}", daemon.log());
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());

    // Replayed faster than real time, wall-clock start times mean nothing: contiguity is
    // checked on the pictures instead.
    let checked = check_recording(&cfg, &root, &clip, &spec, 2000.0, 40, false);
    checked.assert_crossed_a_loop();
    let rows = checked.rows;
    assert!(rows >= 10, "{rows} segments");
}

#[test]
fn realtime_replay_of_a_short_looping_file_stays_contiguous() {
    // 3 s clip, 2 s segments, ~9 s of recording: three loops, boundaries mid-segment.
    let spec = ClipSpec::h264(3, 1);
    let clip = clip(&spec);
    let dir = workdir("file_realtime");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("rt", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_secs(9));
    assert!(
        daemon.running(),
        "edgerec exited early; log:\n{}",
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());

    let checked = check_recording(&cfg, &root, &clip, &spec, 2000.0, usize::MAX, true);
    checked.assert_crossed_a_loop();
    let rows = checked.rows;
    assert!(
        rows >= 3,
        "9 s at 2 s per segment gave only {rows} segments"
    );
    // Real time: the recording lasted about as long as the wall clock (start-up takes well
    // under 2 s). A replay at 2/3 speed (a regression once seen) would give ~6 s.
    let all = segments(&cfg);
    let media_ms: i64 = all.iter().map(|r| r.duration_ms).sum();
    assert!(
        (7000..=9500).contains(&media_ms),
        "{media_ms} ms recorded in ~9 s of real-time replay"
    );
}

#[test]
fn a_file_without_loop_is_recorded_once_and_its_stream_shows_stopped() {
    // 4 s clip replayed once, fast: the stream ends, and must stay ended while the recorder
    // runs on (it was once restarted, and the file replayed, at every scheduler tick).
    let spec = ClipSpec::h264(4, 1);
    let clip = clip(&spec);
    let dir = workdir("file_once");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("once", &format!("file:{}?realtime=false", clip.display()))
    // A camera that refuses connections: each failed attempt (1, 2, 4 s apart) wakes the
    // scheduler, which re-applies the wanted streams.
    .stream("dead", &format!("rtsp://127.0.0.1:{}/none", free_port()))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    let ended = wait_until(Duration::from_secs(20), || {
        daemon.log().contains("source ended")
    });
    assert!(ended, "the file never ended; log:\n{}", daemon.log());
    // Several scheduler wake-ups later, still one replay.
    std::thread::sleep(Duration::from_secs(5));
    assert!(daemon.running(), "edgerec exited; log:\n{}", daemon.log());
    let out = cli(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"));
    let state = v["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "once"))
        .map(|s| s["state"].clone());
    assert_eq!(
        state,
        Some(serde_json::json!("stopped")),
        "status of an ended file stream: {v:#}"
    );
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());

    let log = daemon.log();
    assert_eq!(
        log.matches("source ended").count(),
        1,
        "the file was replayed more than once; log:\n{log}"
    );
    let checked = check_recording(&cfg, &root, &clip, &spec, 2000.0, usize::MAX, false);
    assert!(
        checked.rows >= 2,
        "{} segments from a 4 s clip at 2 s",
        checked.rows
    );
    assert_eq!(
        checked.frames, checked.clip_frames,
        "one replay must record every picture of the clip once"
    );
    let media_ms: i64 = segments(&cfg).iter().map(|r| r.duration_ms).sum();
    assert!(
        (3500..=4500).contains(&media_ms),
        "{media_ms} ms recorded from one replay of a 4 s clip"
    );
}

/// Checks a stopped recording of one stream: index == disk, no working files, every
/// segment (up to `max_decode` of them) decodes with both tracks and no inner holes,
/// durations fit the interval, and the decoded pictures of the segments in order are the
/// clip's pictures looped, none lost or repeated. With `wall_timeline`, consecutive
/// segments' `start_ms`/`end_ms` must also touch. Returns the number of segments.
fn check_recording(
    cfg: &Path,
    root: &Path,
    clip: &Path,
    spec: &ClipSpec,
    interval_ms: f64,
    max_decode: usize,
    wall_timeline: bool,
) -> Checked {
    let clip_frames = frame_hashes(clip);
    let mut recorded_frames = Vec::new();
    assert_eq!(part_files(root), Vec::<String>::new(), "working files left");
    let rows = segments(cfg);
    assert_index_matches_disk(root, &rows);
    assert!(
        rows.iter().all(|r| r.state == "closed" && !r.recovered),
        "{rows:?}"
    );
    let frame_ms = spec.frame_ms();
    for (i, row) in rows.iter().enumerate() {
        let last = i + 1 == rows.len();
        let d = row.duration_ms as f64;
        assert!(
            d <= interval_ms + spec.gop_ms() + frame_ms,
            "too long: {row:?}"
        );
        assert!(last || d >= interval_ms - frame_ms, "too short: {row:?}");
        if i >= max_decode {
            continue;
        }
        let path = root.join(&row.files[0].path);
        assert_decodes(&path);
        let p = probe(&path);
        assert_eq!(p.streams.len(), 2, "{}: {p:?}", path.display());
        assert_eq!(p.stream("video").unwrap().codec_name, "h264");
        assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
        let packets = video_packets(&path);
        assert!(
            packets[0].key,
            "{}: first frame not a key frame",
            path.display()
        );
        for w in packets.windows(2) {
            assert!(
                w[1].dts > w[0].dts,
                "{}: dts not increasing",
                path.display()
            );
        }
        let mut pts: Vec<f64> = packets.iter().map(|p| p.pts).collect();
        pts.sort_by(f64::total_cmp);
        for w in pts.windows(2) {
            let hole_ms = (w[1] - w[0]) * 1000.0;
            // A missing frame would leave two frame durations; a seam may add less.
            assert!(
                hole_ms < 2.0 * frame_ms - 5.0,
                "{}: {hole_ms:.1} ms between frames at {:.3} s (a lost frame at a loop seam?)",
                path.display(),
                w[0]
            );
        }
        recorded_frames.extend(frame_hashes(&path));
        let span_ms = video_span(&path) * 1000.0;
        assert!(
            (span_ms - d).abs() <= frame_ms + 1.0,
            "{}: index says {d} ms, ffprobe {span_ms:.1} ms",
            path.display()
        );
    }
    for (k, h) in recorded_frames.iter().enumerate() {
        let want = &clip_frames[k % clip_frames.len()];
        assert_eq!(
            h,
            want,
            "recorded frame {k} is not clip frame {} (loop {}): a frame was lost or repeated",
            k % clip_frames.len(),
            k / clip_frames.len()
        );
    }
    for w in rows.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        if !wall_timeline {
            continue;
        }
        let gap = (w[1].start_ms - w[0].end_ms) as f64;
        assert!(
            gap.abs() <= frame_ms + SLACK_MS,
            "seq {} -> {}: {gap} ms gap/overlap",
            w[0].seq,
            w[1].seq
        );
    }
    Checked {
        rows: rows.len(),
        frames: recorded_frames.len(),
        clip_frames: clip_frames.len(),
    }
}

/// What [`check_recording`] saw: segments, pictures decoded from them, pictures in the clip.
struct Checked {
    rows: usize,
    frames: usize,
    clip_frames: usize,
}

impl Checked {
    fn assert_crossed_a_loop(&self) {
        assert!(
            self.frames > self.clip_frames,
            "recording did not cross a loop: {} frames, clip {}",
            self.frames,
            self.clip_frames
        );
    }
}
