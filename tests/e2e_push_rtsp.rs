//! End to end: ffmpeg pushes over RTSP (ANNOUNCE/RECORD, TCP interleaved) to `edgerec run`,
//! which records the push like a camera. Every file is checked by ffprobe and ffmpeg.
//! `publishers`: GStreamer's rtspclientsink, MP4A-LATM, and tracks that are not recorded.

mod common;
#[path = "e2e_push_rtsp/publishers.rs"]
mod publishers;

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
    push_over(clip, url, "tcp")
}

/// [`push`] with `-rtsp_transport TRANSPORT` (`tcp` or `udp`).
fn push_over(clip: &Path, url: &str, transport: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(clip)
        .args([
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            transport,
            url,
        ])
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

#[test]
fn an_h265_push_records_h265() {
    let spec = ClipSpec {
        codec: "h265",
        bframes: 2,
        ..ClipSpec::h264(4, 1)
    };
    let clip = clip(&spec);
    let (dir, cfg, port) = setup("push-rtsp-hevc");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let url = format!("rtsp://127.0.0.1:{port}/live/cam5?record_interval=2");
    let out = push(&clip, &url).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_closed(&cfg, &root, "cam5", 2, Duration::from_secs(15)),
        "{}",
        daemon.log()
    );
    let mut total = 0.0;
    let mut frames = 0;
    for f in closed_files(&root, &cfg, "cam5") {
        assert_decodes(&f);
        let p = probe(&f);
        let v = p.stream("video").expect("a video track");
        assert_eq!((v.codec_name.as_str(), v.width), ("hevc", Some(320)));
        assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
        frames += video_packets(&f).len();
        total += p.duration;
    }
    assert!(total >= 3.5, "recorded {total} s of 4");
    assert_eq!(frames, 100, "4 s at 25 fps: every frame recorded once");
    stop_clean(&mut daemon);
}

/// `edgerec status --json`'s entry for `stream`, if it is listed.
fn status_entry(cfg: &Path, stream: &str) -> Option<serde_json::Value> {
    let out = cli(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        cfg.parent().unwrap(),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"));
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == stream)
        .cloned()
}

#[test]
fn a_killed_publisher_leaves_a_closed_playable_segment_and_a_reconnect_starts_a_new_one() {
    let long = clip(&ClipSpec::h264(30, 1));
    let (dir, cfg, port) = setup("push-rtsp-kill");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let url = format!("rtsp://127.0.0.1:{port}/live/cam6?record_interval=2");
    let mut ffmpeg = push(&long, &url);
    // The push is listed by `edgerec status` while it records.
    let mut entry = None;
    let listed = wait_until(Duration::from_secs(15), || {
        entry = status_entry(&cfg, "cam6");
        entry
            .as_ref()
            .is_some_and(|e| e["state"] == "recording" && e["frames"].as_u64() > Some(25))
    });
    assert!(listed, "status: {entry:?}\nlog:\n{}", daemon.log());
    let source = entry.unwrap()["source"].as_str().unwrap().to_owned();
    assert!(source.starts_with("rtsp push from 127.0.0.1:"), "{source}");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ffmpeg.try_wait().unwrap().is_none(), "ffmpeg ended early");
    signal(ffmpeg.id(), libc::SIGKILL);
    let _ = ffmpeg.wait();
    // The connection drops with the process: the push ends, every segment is closed.
    let settled = wait_until(Duration::from_secs(20), || {
        let rows = segments(&cfg);
        let mine: Vec<_> = rows.iter().filter(|r| r.stream == "cam6").collect();
        !mine.is_empty() && mine.iter().all(|r| r.state == "closed")
    });
    assert!(settled, "{:?}\n{}", segments(&cfg), daemon.log());
    let first = closed_files(&root, &cfg, "cam6");
    for f in &first {
        assert_decodes(f);
        assert!(probe(f).duration > 0.5, "{}", f.display());
    }
    let last_seq = segments(&cfg)
        .iter()
        .filter(|r| r.stream == "cam6")
        .map(|r| r.seq)
        .max()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || status_entry(&cfg, "cam6")
            .is_none()),
        "the ended push is still listed by status"
    );

    let short = clip(&ClipSpec::h264(3, 1));
    let out = push(&short, &url).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reconnect: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    assert!(
        wait_until(Duration::from_secs(15), || segments(&cfg).iter().any(|r| r
            .stream
            == "cam6"
            && r.seq > last_seq
            && r.state == "closed")),
        "{:?}\n{}",
        segments(&cfg),
        daemon.log()
    );
    for f in closed_files(&root, &cfg, "cam6") {
        assert_decodes(&f);
    }
    stop_clean(&mut daemon);
}

/// Connects, sends `bytes`, and returns everything the server answers before it closes.
fn answer_to(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may close before taking everything; what it answered is still readable.
    let _ = sock.write_all(bytes);
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn garbage_on_the_port_during_a_push_gets_a_protocol_error_while_the_push_keeps_recording() {
    let clip = clip(&ClipSpec::h264(8, 1));
    let (dir, cfg, port) = setup("push-rtsp-garbage");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let url = format!("rtsp://127.0.0.1:{port}/live/cam4?record_interval=3");
    let pusher = push(&clip, &url);
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .log()
            .contains("recording")),
        "{}",
        daemon.log()
    );
    // Garbage: a TLS hello and random bytes are not RTSP.
    let a = answer_to(
        port,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not rtsp\r\n\r\n",
    );
    assert!(a.starts_with("RTSP/1.0 400"), "answer to garbage: {a:?}");
    // A request whose body never fits the limit.
    let mut huge = b"ANNOUNCE rtsp://127.0.0.1/live/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999999\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'v', 70_000));
    let a = answer_to(port, &huge);
    assert!(
        a.starts_with("RTSP/1.0 413"),
        "answer to a huge request: {a:?}"
    );
    // Interleaved data on a connection that set nothing up, then garbage.
    let mut data = vec![b'$', 0, 0, 4, 1, 2, 3, 4];
    data.extend_from_slice(b"\x00\x01GARBAGE\r\n\r\n");
    let a = answer_to(port, &data);
    assert!(a.starts_with("RTSP/1.0 400"), "answer to stray data: {a:?}");

    let out = pusher.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the push was disturbed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_closed(&cfg, &root, "cam4", 2, Duration::from_secs(15)),
        "{}",
        daemon.log()
    );
    let mut total = 0.0;
    for f in closed_files(&root, &cfg, "cam4") {
        assert_decodes(&f);
        total += probe(&f).duration;
    }
    assert!(total >= 7.0, "recorded {total} s of 8");
    let log = stop_clean(&mut daemon);
    assert!(log.contains("malformed RTSP request"), "{log}");
    assert!(log.contains("max_request_bytes"), "{log}");
}

#[test]
fn a_push_over_udp_is_recorded() {
    let clip = clip(&ClipSpec::h264(4, 1));
    let (dir, cfg, port) = setup("push-rtsp-udp");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let url = format!("rtsp://127.0.0.1:{port}/live/cam3?record_interval=2");
    let out = push_over(&clip, &url, "udp").wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    assert!(
        wait_closed(&cfg, &root, "cam3", 2, Duration::from_secs(15)),
        "{}",
        daemon.log()
    );
    let mut total = 0.0;
    for f in closed_files(&root, &cfg, "cam3") {
        assert_decodes(&f);
        let p = probe(&f);
        assert_eq!(p.stream("video").unwrap().codec_name, "h264");
        assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
        total += p.duration;
    }
    assert!(total >= 3.5, "recorded {total} s of 4");
    let log = stop_clean(&mut daemon);
    assert!(!log.contains("bad RTP"), "{log}");
}

/// An ANNOUNCE of `sdp` for `path_query`, and the server's answer.
fn announce(port: u16, path_query: &str, sdp: &str) -> String {
    let req = format!(
        "ANNOUNCE rtsp://127.0.0.1:{port}/{path_query} RTSP/1.0\r\nCSeq: 1\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    answer_to(port, req.as_bytes())
}

#[test]
fn formats_that_cannot_hold_the_announced_codecs_are_refused_with_the_reason() {
    let (dir, cfg, port) = setup("push-rtsp-formats");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let head = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n";
    let h265 =
        format!("{head}m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=control:trackID=0\r\n");
    let a = announce(port, "live/cam2?record=flv", &h265);
    assert!(a.starts_with("RTSP/1.0 415"), "{a}");
    assert!(
        a.contains("record= \"flv\"") && a.contains("Enhanced FLV"),
        "{a}"
    );
    // The same stream asked for fMP4 is fine.
    let a = announce(port, "live/cam2?record=fmp4", &h265);
    assert!(a.starts_with("RTSP/1.0 200"), "{a}");

    let opus = format!(
        "{head}m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:trackID=0\r\n"
    );
    let a = announce(port, "live/mic?record_type=audio&record=aac", &opus);
    assert!(a.starts_with("RTSP/1.0 415"), "{a}");
    assert!(a.contains("\"aac\"") && a.contains("Opus"), "{a}");
    let log = stop_clean(&mut daemon);
    assert!(log.contains("publisher refused"), "{log}");
    assert!(files_under(&dir.path().join("data"))
        .iter()
        .all(|f| !f.ends_with(".aac") && !f.ends_with(".flv")));
}
