//! End to end: what happens inside one RTSP session, against the real gst RTSP peer.
//!
//! - New SPS/PPS mid-session (a camera that changes resolution without dropping the
//!   connection): the peer serves, in one session, an Annex-B concatenation of two encodes
//!   of different sizes (in MPEG-TS, for its timestamps); a new segment must start at the
//!   change, with the new size, and the source must not reconnect.
//! - Transport: the peer can offer only TCP or only UDP. Without `?transport` edgerec must
//!   record from a TCP-only server (and fail against a UDP-only one); with
//!   `?transport=udp` the reverse.
//! - A camera sending AAC as MP4A-LATM, which retina cannot depacketize: its video is
//!   recorded, the audio is named once per stream (not at every reconnect) and in status.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// `secs` seconds of 25 fps H.264 at `size` (`WxH`), Annex-B, a key frame every second and
/// no B-frames (the peer's parser stamps frames in decode order).
fn annexb(dir: &Path, size: &str, secs: u32) -> PathBuf {
    let path = dir.join(format!("{size}.h264"));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration={secs}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-bf",
            "0",
        ])
        .args(["-pix_fmt", "yuv420p", "-f", "h264"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn new_parameter_sets_mid_session_start_a_segment_of_the_new_size_without_a_reconnect() {
    let dir = workdir("rtsp_params");
    let small = annexb(dir.path(), "320x240", 5);
    let large = annexb(dir.path(), "640x480", 5);
    let raw = dir.path().join("change.h264");
    let mut bytes = std::fs::read(&small).unwrap();
    bytes.extend(std::fs::read(&large).unwrap());
    std::fs::write(&raw, bytes).unwrap();
    // The same bytes, stamped at 25 fps into MPEG-TS (stream copy: the SPS change stays).
    let ts = dir.path().join("change.ts");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "25", "-i"])
        .arg(&raw)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&ts)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer = RtspPeer::start_args(&[], &["--ts", &format!("/change={}", ts.display())]);
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &peer.url("/change"))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    // 0–2, 2–4, 4–5 (cut at the change), then 640x480 from 5 s: 5–7, 7–9.
    let large_closed = |rows: &[SegmentRow]| {
        closed_of(rows, "cam")
            .iter()
            .filter(|r| {
                let path = root.join(&r.files[0].path);
                probe(&path).stream("video").and_then(|v| v.width) == Some(640)
            })
            .count()
    };
    let recorded = wait_until(Duration::from_secs(60), || {
        root.join("control.sock").exists() && large_closed(&segments(&cfg)) >= 1
    });
    let log = strip_ansi(&stop_clean(&mut daemon));
    assert!(recorded, "no 640x480 segment; log:\n{log}");

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let cam = closed_of(&rows, "cam");
    let sizes: Vec<Vec<String>> = cam
        .iter()
        .map(|r| {
            frame_sizes(&root.join(&r.files[0].path))
                .into_iter()
                .collect()
        })
        .collect();
    for (r, s) in cam.iter().zip(&sizes) {
        let path = root.join(&r.files[0].path);
        assert_decodes(&path);
        assert_eq!(
            s.len(),
            1,
            "{}: one size per segment: {s:?}",
            r.files[0].path
        );
    }
    let change = sizes
        .iter()
        .position(|s| s[0] == "640x480")
        .unwrap_or_else(|| panic!("{sizes:?}"));
    assert!(
        change >= 1 && sizes[..change].iter().all(|s| s[0] == "320x240"),
        "{sizes:?}"
    );
    let (before, after) = (cam[change - 1], cam[change]);
    // Cut at the change, not at the interval: the last small segment is short (the change
    // comes 5 s in, segments are 2 s), and the large one starts where it ended.
    assert!(before.duration_ms < 1900, "{before:?}");
    assert_eq!(after.seq, before.seq + 1);
    assert!(
        (after.start_ms - before.end_ms).abs() <= 40,
        "{before:?}\n{after:?}"
    );
    assert_eq!(
        probe(&root.join(&after.files[0].path))
            .stream("video")
            .unwrap()
            .width,
        Some(640)
    );
    // One session: the source connected once before the large segment was closed.
    let closed_at = log
        .lines()
        .position(|l| l.contains("segment closed") && l.contains(&format!("seq={}", after.seq)))
        .unwrap_or_else(|| panic!("log:\n{log}"));
    let connects = log
        .lines()
        .take(closed_at)
        .filter(|l| l.contains("source connected"))
        .count();
    assert_eq!(connects, 1, "log:\n{log}");
}

/// Whether the log has a line of stream `name`'s span saying its attempt failed because
/// the server refused the transport (RTSP 461), with the hint to try the other one.
fn failed_attempt(log: &str, name: &str) -> bool {
    log.lines().any(|l| {
        l.contains(&format!("stream{{name={name}}}"))
            && (l.contains("stream interrupted") || l.contains("stream failed"))
            && l.contains("461")
            && l.contains("try the other one")
    })
}

#[test]
fn tcp_is_the_default_transport_and_udp_is_used_only_when_asked() {
    let clip = clip(&ClipSpec::h264(10, 1));
    let tcp_only = RtspPeer::start_args(&[("/cam", &clip)], &["--protocols", "tcp"]);
    let udp_only = RtspPeer::start_args(&[("/cam", &clip)], &["--protocols", "udp"]);
    let dir = workdir("rtsp_transport");
    let root = dir.path().join("data");
    let udp = |url: String| format!("{url}?transport=udp");
    let cfg = TestConfig {
        interval: "2s".into(),
        ..TestConfig::new(&root)
    }
    .stream("deftcp", &tcp_only.url("/cam"))
    .stream("askudp", &udp(udp_only.url("/cam")))
    // The other way round each must fail: proof that the peers really offer one transport.
    .stream("defonudp", &udp_only.url("/cam"))
    .stream("udpontcp", &udp(tcp_only.url("/cam")))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    let done = wait_until(Duration::from_secs(60), || {
        let log = strip_ansi(&daemon.log());
        root.join("control.sock").exists()
            && failed_attempt(&log, "defonudp")
            && failed_attempt(&log, "udpontcp")
            && ["deftcp", "askudp"]
                .iter()
                .all(|s| closed_of(&segments(&cfg), s).len() >= 2)
    });
    let log = strip_ansi(&stop_clean(&mut daemon));
    assert!(done, "log:\n{log}");

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    for s in ["deftcp", "askudp"] {
        for r in closed_of(&rows, s) {
            let path = root.join(&r.files[0].path);
            let p = probe(&path);
            assert!(
                p.stream("video").is_some() && p.stream("audio").is_some(),
                "{p:?}"
            );
            assert_decodes(&path);
        }
    }
    for s in ["defonudp", "udpontcp"] {
        assert!(rows.iter().all(|r| r.stream != s), "{s} recorded: {rows:?}");
    }
}

/// `edgerec status --json`'s entry for `stream`, if listed.
fn status_entry(cfg: &Path, stream: &str) -> Option<serde_json::Value> {
    let out = cli(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        cfg.parent().unwrap(),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == stream)
        .cloned()
}

#[test]
fn a_cameras_latm_audio_is_named_once_per_stream_and_its_video_recorded() {
    let clip = clip(&ClipSpec::h264(10, 1));
    let peer = RtspPeer::start_args(&[("/cam", &clip)], &["--latm"]);
    let port = peer.port;
    let dir = workdir("rtsp_latm");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "2s".into(),
        ..TestConfig::new(&root)
    }
    .stream("latmcam", &peer.url("/cam"))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let mut entry = None;
    let recording = wait_until(Duration::from_secs(30), || {
        entry = status_entry(&cfg, "latmcam");
        entry
            .as_ref()
            .is_some_and(|e| e["state"] == "recording" && e["frames"].as_u64() > Some(50))
            && closed_of(&segments(&cfg), "latmcam").len() >= 2
    });
    assert!(recording, "status: {entry:?}\nlog:\n{}", daemon.log());
    let skipped = entry.unwrap()["skipped"].clone();
    assert!(
        skipped[0]
            .as_str()
            .is_some_and(|s| s.starts_with("audio/mp4a-latm (") && s.contains("retina")),
        "{skipped:?}"
    );
    // The camera restarts: the session fails, the recorder reconnects.
    drop(peer);
    let _peer = RtspPeer::start_on_args(port, &[("/cam", &clip)], &["--latm"]);
    let reconnected = wait_until(Duration::from_secs(30), || {
        strip_ansi(&daemon.log())
            .lines()
            .filter(|l| l.contains("stream{name=latmcam}") && l.contains("source connected"))
            .count()
            >= 2
    });
    assert!(reconnected, "log:\n{}", daemon.log());
    let before = closed_of(&segments(&cfg), "latmcam").len();
    // 45 s: a loaded machine's GStreamer peer can accept a session and send nothing; the
    // recorder gives up on it after 10 s without media and connects again.
    assert!(
        wait_until(Duration::from_secs(45), || closed_of(
            &segments(&cfg),
            "latmcam"
        )
        .len()
            > before),
        "nothing recorded after the reconnect; log:\n{}",
        daemon.log()
    );
    let log = strip_ansi(&stop_clean(&mut daemon));
    let named: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("mp4a-latm"))
        .collect();
    assert_eq!(named.len(), 1, "{named:#?}\n{log}");
    assert!(named[0].contains("not recording these tracks"), "{named:?}");
    assert!(!log.contains("stream failed"), "{log}");
    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    for r in closed_of(&rows, "latmcam") {
        let path = root.join(&r.files[0].path);
        assert_decodes(&path);
        let p = probe(&path);
        assert_eq!(p.stream("video").unwrap().codec_name, "h264");
        assert!(p.stream("audio").is_none(), "{p:?}");
    }
}
