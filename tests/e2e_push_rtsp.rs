//! End to end: ffmpeg pushes over RTSP (ANNOUNCE/RECORD, TCP interleaved) to `edgerec run`,
//! which records the push like a camera. Every file is checked by ffprobe and ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A config recording every stream, with the RTSP push server on a free port.
fn setup(name: &str) -> (tempfile::TempDir, PathBuf, u16) {
    let dir = workdir(name);
    let port = free_port();
    let mut toml = TestConfig::new(&dir.path().join("data")).to_toml();
    toml += &format!("\n[ingest]\nrtsp = \"127.0.0.1:{port}\"\nsession_timeout = \"5s\"\n");
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    (dir, cfg, port)
}

/// `ffmpeg -re -i CLIP -c copy -f rtsp -rtsp_transport tcp URL`, stderr captured.
fn push(clip: &Path, url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg")
}

fn wait_ready(port: u16) {
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the RTSP push server never listened"
    );
}

fn closed_files(root: &Path, cfg: &Path, stream: &str) -> Vec<PathBuf> {
    segments(cfg)
        .into_iter()
        .filter(|r| r.stream == stream && r.state == "closed")
        .flat_map(|r| r.files.into_iter().map(|f| root.join(f.path)))
        .collect()
}

#[test]
fn an_ffmpeg_push_is_recorded_in_segments_of_the_url_interval_and_a_second_publisher_is_refused() {
    let clip = clip(&ClipSpec::h264(9, 1));
    let (dir, cfg, port) = setup("push-rtsp");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let url = format!("rtsp://127.0.0.1:{port}/live/cam9?record_interval=3");
    let mut first = push(&clip, &url);
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .log()
            .contains("publisher accepted")),
        "{}",
        daemon.log()
    );
    let second = push(&clip, &url).wait_with_output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("409"), "second publisher: {err}");
    assert!(first.wait().unwrap().success());
    assert!(
        wait_closed(&cfg, &root, "cam9", 3, Duration::from_secs(15)),
        "{}",
        daemon.log()
    );
    let files = closed_files(&root, &cfg, "cam9");
    let mut total = 0.0;
    for f in &files {
        assert_decodes(f);
        let p = probe(f);
        assert_eq!(p.stream("video").unwrap().codec_name, "h264");
        assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
        assert!(p.duration <= 3.5, "{}: {} s", f.display(), p.duration);
        total += p.duration;
    }
    assert!(total >= 8.0, "recorded {total} s of 9");
    stop_clean(&mut daemon);
}

#[test]
fn record_type_audio_gives_an_audio_only_file() {
    let clip = clip(&ClipSpec::h264(4, 1));
    let (dir, cfg, port) = setup("push-rtsp-audio");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let url = format!("rtsp://127.0.0.1:{port}/cam7?record_type=audio");
    assert!(push(&clip, &url).wait().unwrap().success());
    assert!(
        wait_closed(&cfg, &root, "cam7", 1, Duration::from_secs(15)),
        "{}",
        daemon.log()
    );
    for f in closed_files(&root, &cfg, "cam7") {
        assert_decodes(&f);
        let p = probe(&f);
        assert!(p.stream("video").is_none(), "{}: has video", f.display());
        assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
        assert!(p.duration > 2.0, "{} s", p.duration);
    }
    stop_clean(&mut daemon);
}
