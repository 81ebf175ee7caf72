//! End to end: bad input on one stream. In every case the daemon logs a clear error for the
//! bad stream, keeps recording the other stream into valid segments, and loses nothing it
//! had already written: wrong RTSP credentials (never shown in the log), damaged MP4 files,
//! codecs edgerec does not record (from a file and over RTSP), and a camera that dies and
//! comes back on the same address.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The daemon's log lines (colours stripped) that belong to stream `name`: its span prints
/// `name=NAME`.
fn stream_lines(log: &str, name: &str) -> Vec<String> {
    let span = format!("name={name}");
    strip_ansi(log)
        .lines()
        .filter(|l| {
            l.split(|c: char| c.is_whitespace() || c == '{' || c == '}' || c == ':')
                .any(|w| w == span)
        })
        .map(str::to_owned)
        .collect()
}

/// The lines of stream `name` at WARN or ERROR level.
fn stream_problems(log: &str, name: &str) -> Vec<String> {
    stream_lines(log, name)
        .into_iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect()
}

/// Closed segment files (path relative to the root → md5) the running daemon lists now.
fn snapshot(cfg: &Path, root: &Path) -> BTreeMap<String, String> {
    segments(cfg)
        .iter()
        .filter(|r| r.state == "closed")
        .flat_map(|r| r.files.iter())
        .map(|f| (f.path.clone(), md5_file(&root.join(&f.path))))
        .collect()
}

/// Nothing in `before` was lost or changed: every file is still indexed and has its bytes.
fn assert_kept(before: &BTreeMap<String, String>, root: &Path, rows: &[SegmentRow]) {
    assert!(!before.is_empty(), "the snapshot holds no segment");
    for (path, md5) in before {
        assert!(
            rows.iter()
                .any(|r| r.state == "closed" && r.files.iter().any(|f| &f.path == path)),
            "{path} was closed during the run but is no longer indexed"
        );
        assert_eq!(
            &md5_file(&root.join(path)),
            md5,
            "{path} changed after it was closed"
        );
    }
}

/// Every file of every closed row decodes cleanly and has H.264 video of `width` + AAC.
fn assert_valid_h264_aac(root: &Path, rows: &[&SegmentRow], width: u64) {
    for r in rows {
        for f in &r.files {
            let path = root.join(&f.path);
            assert_decodes(&path);
            let p = probe(&path);
            let v = p
                .stream("video")
                .unwrap_or_else(|| panic!("{}: no video", f.path));
            assert_eq!(v.codec_name, "h264", "{}: {p:?}", f.path);
            assert_eq!(v.width, Some(width), "{}: {p:?}", f.path);
            let a = p
                .stream("audio")
                .unwrap_or_else(|| panic!("{}: no audio", f.path));
            assert_eq!(a.codec_name, "aac", "{}: {p:?}", f.path);
            assert!(
                video_packets(&path).first().is_some_and(|p| p.key),
                "{}: does not start on a key frame",
                f.path
            );
        }
    }
}

/// A file-source stream replaying `clip` in real time, looping.
fn file_source(clip: &Path) -> String {
    format!("file:{}?loop=true", clip.display())
}

/// The end of a run: no working file left, index and disk agree.
fn check_store(root: &Path, cfg: &Path) -> Vec<SegmentRow> {
    assert_eq!(
        part_files(root),
        Vec::<String>::new(),
        "working files left after a clean stop"
    );
    let rows = segments(cfg);
    assert_index_matches_disk(root, &rows);
    assert!(
        rows.iter().all(|r| r.state == "closed"),
        "rows not closed after a clean stop: {rows:?}"
    );
    rows
}

#[test]
fn wrong_rtsp_password_is_reported_redacted_and_the_good_camera_keeps_recording() {
    const RIGHT: &str = "Right-Pass-7c1e";
    const WRONG: &str = "Wrong-Pass-93af";
    let clip = clip(&ClipSpec::h264(10, 1));
    let peer = RtspPeer::start_with(&[("/cam", &clip)], Some(("viewer", RIGHT)));
    let dir = workdir("bad_auth");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("badauth", &peer.url_auth("/cam", "viewer", WRONG))
    .stream("goodcam", &peer.url_auth("/cam", "viewer", RIGHT))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "goodcam", 1, Duration::from_secs(25)),
        "the camera with the right password recorded nothing; log:\n{}",
        daemon.log()
    );
    let before = snapshot(&cfg, &root);
    assert!(
        wait_closed(&cfg, &root, "goodcam", 3, Duration::from_secs(25)),
        "the good camera stopped recording; log:\n{}",
        daemon.log()
    );
    let log = stop_clean(&mut daemon);

    for secret in [WRONG, RIGHT] {
        assert!(
            !log.contains(secret),
            "the log shows the password {secret:?}:\n{log}"
        );
        for f in files_under(&root) {
            let bytes = std::fs::read(root.join(&f)).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{f} holds the password {secret:?}"
            );
        }
    }
    let problems = stream_problems(&log, "badauth");
    assert!(
        problems.iter().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("401") && (l.contains("credentials") || l.contains("password"))
        }),
        "no clear authentication error for the bad stream; its lines: {problems:#?}\nlog:\n{log}"
    );
    assert!(
        problems.iter().any(|l| l.contains("***@127.0.0.1")),
        "the failing camera's URL should be shown, redacted: {problems:#?}"
    );

    let rows = check_store(&root, &cfg);
    assert!(
        closed_of(&rows, "badauth").is_empty(),
        "segments from a refused camera: {rows:?}"
    );
    let good = closed_of(&rows, "goodcam");
    assert!(good.len() >= 3, "{rows:?}");
    assert_valid_h264_aac(&root, &good, 320);
    assert_kept(&before, &root, &rows);
}

/// `len` pseudo-random bytes (xorshift, fixed seed): not an MP4 at all.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The first `fraction` of `src`'s bytes, written to `dst`.
fn truncated_copy(src: &Path, dst: &Path, fraction: f64) -> PathBuf {
    let data = std::fs::read(src).unwrap();
    std::fs::write(dst, &data[..(data.len() as f64 * fraction) as usize]).unwrap();
    dst.to_owned()
}

/// Runs ffmpeg with `args` (quiet), panicking with its stderr on failure.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn damaged_mp4_files_are_named_in_the_log_and_the_good_file_keeps_recording() {
    let spec = ClipSpec::h264(10, 1);
    let good_clip = clip(&spec);
    let dir = workdir("bad_mp4");
    let d = dir.path();
    let root = d.join("data");

    // Random bytes with an .mp4 name.
    let noise = d.join("noise.mp4");
    std::fs::write(&noise, random_bytes(200_000)).unwrap();
    // ffmpeg writes `moov` last: the first half of the clip has media but no `moov`.
    assert_eq!(
        top_level_boxes(&good_clip).last().map(String::as_str),
        Some("moov")
    );
    let no_moov = truncated_copy(&good_clip, &d.join("no-moov.mp4"), 0.5);
    // With `moov` first, a cut file has a complete header whose samples run past its end.
    let faststart = d.join("faststart.mp4");
    ffmpeg(&[
        "-i",
        good_clip.to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        faststart.to_str().unwrap(),
    ]);
    assert_eq!(
        top_level_boxes(&faststart).get(1).map(String::as_str),
        Some("moov")
    );
    let cut = truncated_copy(&faststart, &d.join("cut.mp4"), 0.6);

    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("noise", &file_source(&noise))
    .stream("nomoov", &file_source(&no_moov))
    .stream("cut", &file_source(&cut))
    .stream("good", &file_source(&good_clip))
    .write(&d.join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "good", 1, Duration::from_secs(25)),
        "the good file recorded nothing; log:\n{}",
        daemon.log()
    );
    let before = snapshot(&cfg, &root);
    assert!(
        wait_closed(&cfg, &root, "good", 4, Duration::from_secs(25)),
        "the good file stopped recording; log:\n{}",
        daemon.log()
    );
    let log = stop_clean(&mut daemon);

    for (stream, path) in [("noise", &noise), ("nomoov", &no_moov), ("cut", &cut)] {
        let problems = stream_problems(&log, stream);
        let shown = path.to_str().unwrap();
        assert!(
            problems.iter().any(|l| {
                let low = l.to_ascii_lowercase();
                l.contains(shown)
                    && (low.contains("not a usable mp4")
                        || low.contains("corrupt")
                        || low.contains("damaged")
                        || low.contains("truncated"))
            }),
            "no clear error naming {shown} for stream {stream}: {problems:#?}\nlog:\n{log}"
        );
    }

    let rows = check_store(&root, &cfg);
    for stream in ["noise", "nomoov"] {
        assert!(
            closed_of(&rows, stream).is_empty(),
            "segments from an unreadable file ({stream}): {rows:?}"
        );
    }
    // The cut file may be refused at open (its `mdat` runs past the end) or replayed up to
    // the cut; whatever it did record must be valid.
    assert_valid_h264_aac(&root, &closed_of(&rows, "cut"), 320);
    let good = closed_of(&rows, "good");
    assert!(good.len() >= 4, "{rows:?}");
    assert_valid_h264_aac(&root, &good, 320);
    assert_kept(&before, &root, &rows);
}

/// True when `line` says the input's codec is one edgerec does not record.
fn says_unsupported_codec(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("no supported track") || l.contains("unsupported codec")
}

#[test]
fn unsupported_codecs_from_a_file_and_over_rtsp_are_refused_clearly() {
    let good_clip = clip(&ClipSpec::h264(10, 1));
    let dir = workdir("bad_codec");
    let d = dir.path();
    let root = d.join("data");
    // MPEG-4 Part 2 video + MP3 audio in MP4: a valid file, but no track edgerec records.
    let old = d.join("mpeg4-mp3.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=4",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=4",
        "-c:v",
        "mpeg4",
        "-c:a",
        "libmp3lame",
        old.to_str().unwrap(),
    ]);
    let p = probe(&old);
    assert_eq!(p.stream("video").unwrap().codec_name, "mpeg4");
    assert_eq!(p.stream("audio").unwrap().codec_name, "mp3");
    // The same codecs from a live RTSP camera (MP4V-ES and MPA payloads): the file-based
    // RTSP peer only serves H.264/H.265, so a gst-launch description is served instead.
    let camera = LaunchRtspPeer::start(
        "( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! avenc_mpeg4 ! rtpmp4vpay name=pay0 pt=96 \
         audiotestsrc is-live=true ! audio/x-raw,rate=44100,channels=1 ! lamemp3enc \
         ! rtpmpapay name=pay1 pt=97 )",
    );

    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("oldfile", &file_source(&old))
    .stream("oldcam", &camera.url())
    .stream("good", &file_source(&good_clip))
    .write(&d.join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "good", 1, Duration::from_secs(25)),
        "the good file recorded nothing; log:\n{}",
        daemon.log()
    );
    let before = snapshot(&cfg, &root);
    let refused = wait_until(Duration::from_secs(25), || {
        let log = daemon.log();
        ["oldfile", "oldcam"].iter().all(|s| {
            stream_problems(&log, s)
                .iter()
                .any(|l| says_unsupported_codec(l))
        })
    });
    assert!(
        wait_closed(&cfg, &root, "good", 3, Duration::from_secs(25)),
        "the good file stopped recording; log:\n{}",
        daemon.log()
    );
    let log = stop_clean(&mut daemon);
    assert!(
        refused,
        "both bad streams should say their codec is unsupported; log:\n{log}"
    );
    let file_err = stream_problems(&log, "oldfile");
    assert!(
        file_err
            .iter()
            .any(|l| says_unsupported_codec(l) && l.contains(old.to_str().unwrap())),
        "the file's error should name the file: {file_err:#?}"
    );
    let cam_err = stream_problems(&log, "oldcam");
    assert!(
        cam_err.iter().any(|l| says_unsupported_codec(l)
            && l.contains(&format!("127.0.0.1:{}", camera.port))
            && l.to_ascii_lowercase().contains("mp4v")),
        "the camera's error should name the camera and what it offers: {cam_err:#?}"
    );

    let rows = check_store(&root, &cfg);
    for stream in ["oldfile", "oldcam"] {
        assert!(
            closed_of(&rows, stream).is_empty(),
            "segments from an unsupported input ({stream}): {rows:?}"
        );
    }
    let good = closed_of(&rows, "good");
    assert!(good.len() >= 3, "{rows:?}");
    assert_valid_h264_aac(&root, &good, 320);
    assert_kept(&before, &root, &rows);
}

/// The `retry_in=…` delay of a log line, in milliseconds (`891ms`, `1.836s`).
fn retry_ms(line: &str) -> Option<f64> {
    let v = line.split("retry_in=").nth(1)?.split_whitespace().next()?;
    if let Some(ms) = v.strip_suffix("ms") {
        ms.parse().ok()
    } else {
        v.strip_suffix('s')?.parse::<f64>().ok().map(|s| s * 1000.0)
    }
}

#[test]
fn a_camera_that_dies_gets_its_open_segment_closed_and_is_reconnected_when_it_returns() {
    let clip = clip(&ClipSpec::h264(20, 1));
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let port = peer.port;
    let dir = workdir("camera_dies");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &peer.url("/cam"))
    .stream("steady", &file_source(&clip))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "cam", 2, Duration::from_secs(25)),
        "the camera recorded nothing; log:\n{}",
        daemon.log()
    );
    let before = snapshot(&cfg, &root);
    // Mid-segment: 2 s segments, so wait half of one past the last close.
    std::thread::sleep(Duration::from_millis(1000));
    let killed_ms = now_ms();
    drop(peer); // SIGKILL: the camera vanishes without a TEARDOWN
    std::thread::sleep(Duration::from_secs(3));
    let back_ms = now_ms();
    let _peer = RtspPeer::start_on(port, &[("/cam", &clip)], None);
    let recovered = wait_until(Duration::from_secs(40), || {
        closed_of(&segments(&cfg), "cam")
            .iter()
            .filter(|r| r.start_ms >= back_ms)
            .count()
            >= 2
    });
    let log = stop_clean(&mut daemon);
    assert!(
        recovered,
        "no new segments after the camera came back; log:\n{log}"
    );

    let cam_log = stream_lines(&log, "cam");
    let problems = stream_problems(&log, "cam");
    assert!(
        problems
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{port}")) && l.contains("retry_in")),
        "the loss should be logged with the camera and the retry delay: {problems:#?}\nlog:\n{log}"
    );
    // Capped exponential backoff: while the camera is gone, each retry waits longer (the
    // ±20 % jitter cannot undo a doubling).
    let delays: Vec<f64> = problems.iter().filter_map(|l| retry_ms(l)).collect();
    assert!(
        delays.len() >= 2 && delays.windows(2).all(|w| w[1] > w[0]),
        "retry delays should grow while the camera is away: {delays:?}\n{problems:#?}"
    );
    let connects = cam_log
        .iter()
        .filter(|l| l.contains("source connected"))
        .count();
    assert!(
        connects >= 2,
        "the camera should have been connected twice, was {connects} times: {cam_log:#?}"
    );

    let rows = check_store(&root, &cfg);
    let cam = closed_of(&rows, "cam");
    for w in cam.windows(2) {
        assert!(w[1].seq > w[0].seq, "seq must increase: {cam:?}");
        assert!(
            w[1].start_ms >= w[0].end_ms - 50,
            "segments overlap: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    // The segment open at the loss is the last one started before it; it was closed with
    // the last frames that arrived, so it ends near the kill.
    let open_at_loss = cam
        .iter()
        .rfind(|r| r.start_ms < killed_ms)
        .expect("segments before the loss");
    assert!(
        (open_at_loss.end_ms - killed_ms).abs() <= 1000,
        "the segment open at the loss (killed at {killed_ms}) should end near it: \
         {open_at_loss:?}"
    );
    let after: Vec<&&SegmentRow> = cam.iter().filter(|r| r.start_ms >= back_ms).collect();
    assert!(
        cam.iter()
            .all(|r| r.end_ms <= killed_ms + 1500 || r.start_ms >= back_ms),
        "a segment spans the time the camera was gone ({killed_ms}..{back_ms}): {cam:#?}"
    );
    assert!(after.len() >= 2, "{cam:#?}");
    assert_valid_h264_aac(&root, &cam, 320);

    let steady = closed_of(&rows, "steady");
    assert!(
        steady.len() >= 5,
        "the file stream should have recorded throughout: {rows:?}"
    );
    assert_valid_h264_aac(&root, &steady, 320);
    assert_kept(&before, &root, &rows);
}
