//! RTMP push, end to end: `edgerec run` with `[ingest] rtmp = ...` and ffmpeg as the
//! publisher (`-re -c copy -f flv rtmp://.../live/cam?record_interval=2`). Every recorded
//! file is decoded by ffmpeg and probed by ffprobe. `unsupported_audio`: audio edgerec
//! does not record is dropped and the video kept. `formats`: `record=mp4|flv`,
//! `record=mp4|hls` (with its events from a mosquitto broker), `record_type=audio&record=aac`,
//! and formats that cannot hold the publisher's codecs.

mod common;
#[path = "e2e_push_rtmp/formats.rs"]
mod formats;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_push_rtmp/unsupported_audio.rs"]
mod unsupported_audio;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A recorder with the RTMP server on a free port, recording every stream with 4 s
/// segments unless the push URL says otherwise.
struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cfg: PathBuf,
    port: u16,
    daemon: Daemon,
}

impl Setup {
    fn start(name: &str) -> Setup {
        Setup::start_with(name, "")
    }

    /// With `extra` TOML appended to the `[ingest]` table.
    fn start_with(name: &str, extra: &str) -> Setup {
        let dir = workdir(name);
        let root = dir.path().join("data");
        let port = free_port();
        let toml = TestConfig::new(&root).to_toml()
            + &format!("\n[ingest]\nrtmp = \"127.0.0.1:{port}\"\n{extra}");
        let cfg = dir.path().join("edgerec.toml");
        std::fs::write(&cfg, toml).unwrap();
        let daemon = Daemon::start(&cfg);
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "RTMP server never listened; log:\n{}", daemon.log());
        Setup {
            _dir: dir,
            root,
            cfg,
            port,
            daemon,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    /// `ffmpeg -re -i clip -c copy -f flv URL`.
    fn push(&self, clip: &Path, path: &str) -> Child {
        rtmp_push(clip, &self.url(path))
    }

    fn closed(&self, stream: &str) -> Vec<SegmentRow> {
        closed_of(&segments(&self.cfg), stream)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Every file of every closed segment of `stream` decodes cleanly and has H.264 video.
    fn check_files(&self, rows: &[SegmentRow]) {
        for row in rows {
            for f in &row.files {
                let path = self.root.join(&f.path);
                assert_decodes(&path);
                let p = probe(&path);
                let v = p.stream("video").expect("a video track");
                assert_eq!(v.codec_name, "h264");
                assert_eq!(v.width, Some(320));
                assert!(p.stream("audio").is_some(), "no audio in {}", f.path);
            }
        }
    }
}

fn finish(mut child: Child, timeout: Duration) -> (bool, String) {
    let status = wait_timeout(&mut child, timeout);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = e.read_to_string(&mut err);
    }
    (status.is_some_and(|s| s.success()), err)
}

#[test]
fn ffmpeg_push_records_segments_that_follow_the_url_interval() {
    let mut s = Setup::start("rtmp-interval");
    let clip = clip(&ClipSpec::h264(9, 1));
    let ffmpeg = s.push(&clip, "live/cam8?record_interval=2");
    let (ok, err) = finish(ffmpeg, Duration::from_secs(40));
    assert!(ok, "ffmpeg push failed: {err}\nlog:\n{}", s.daemon.log());
    assert!(
        wait_closed(&s.cfg, &s.root, "cam8", 4, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let rows = s.closed("cam8");
    // 9 s in 2 s segments (the template says 4 s): 2,2,2,2,1.
    for r in &rows[..rows.len() - 1] {
        assert!(
            (1500..=2600).contains(&r.duration_ms),
            "segment {} lasts {} ms, the URL asked for 2 s: {rows:?}",
            r.seq,
            r.duration_ms
        );
    }
    let total: i64 = rows.iter().map(|r| r.duration_ms).sum();
    assert!((8000..=9600).contains(&total), "recorded {total} ms of 9 s");
    s.check_files(&rows);
    let log = stop_clean(&mut s.daemon);
    assert!(log.contains("publisher accepted"), "{log}");
}

#[test]
fn killed_publisher_leaves_a_closed_segment_and_a_new_push_starts_a_new_one() {
    let mut s = Setup::start("rtmp-kill");
    let long = clip(&ClipSpec::h264(30, 1));
    let mut ffmpeg = s.push(&long, "live/cam9?record_interval=2");
    std::thread::sleep(Duration::from_millis(3500));
    assert!(ffmpeg.try_wait().unwrap().is_none(), "ffmpeg ended early");
    signal(ffmpeg.id(), libc::SIGKILL);
    let _ = ffmpeg.wait();
    // The push ends with the TCP connection: every segment gets closed, none is left open.
    let settled = wait_until(Duration::from_secs(20), || {
        let rows = segments(&s.cfg);
        let mine: Vec<_> = rows.iter().filter(|r| r.stream == "cam9").collect();
        !mine.is_empty() && mine.iter().all(|r| r.state == "closed")
    });
    assert!(
        settled,
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let first = s.closed("cam9");
    s.check_files(&first);
    let last_seq = first.iter().map(|r| r.seq).max().unwrap();

    let short = clip(&ClipSpec::h264(3, 1));
    let (ok, err) = finish(s.push(&short, "live/cam9"), Duration::from_secs(30));
    assert!(ok, "second push failed: {err}\nlog:\n{}", s.daemon.log());
    assert!(wait_until(Duration::from_secs(20), || {
        s.closed("cam9").iter().any(|r| r.seq > last_seq)
    }));
    let rows = s.closed("cam9");
    s.check_files(&rows);
    stop_clean(&mut s.daemon);
}

#[test]
fn second_publisher_and_garbage_are_refused_while_the_first_keeps_recording() {
    let mut s = Setup::start("rtmp-refuse");
    let long = clip(&ClipSpec::h264(30, 1));
    let mut first = s.push(&long, "live/cam7?record_interval=2");
    let started = wait_until(Duration::from_secs(15), || {
        segments(&s.cfg).iter().any(|r| r.stream == "cam7")
            || s.daemon.log().contains("publisher accepted")
    });
    assert!(started, "first push not accepted; log:\n{}", s.daemon.log());

    let (ok, err) = finish(s.push(&long, "live/cam7"), Duration::from_secs(20));
    assert!(!ok, "a second publisher of a live stream was accepted");
    assert!(
        err.contains("already being published"),
        "ffmpeg said: {err}"
    );

    // Garbage gets the connection closed, quickly and without a reply.
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server answered garbage");

    // A huge chunk size after a valid handshake is a protocol error, not an allocation.
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[7u8; 1536]);
    sock.write_all(&hello).unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    sock.read_exact(&mut s0s1s2).unwrap();
    assert_eq!(s0s1s2[0], 3);
    sock.write_all(&[7u8; 1536]).unwrap();
    let set_chunk = [2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
    sock.write_all(&set_chunk).unwrap();
    assert_eq!(
        sock.read(&mut buf).unwrap_or(0),
        0,
        "huge chunk size accepted"
    );

    std::thread::sleep(Duration::from_secs(5));
    assert!(first.try_wait().unwrap().is_none(), "the first push died");
    signal(first.id(), libc::SIGTERM);
    let _ = first.wait();
    assert!(
        wait_closed(&s.cfg, &s.root, "cam7", 3, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let rows = s.closed("cam7");
    s.check_files(&rows);
    let log = stop_clean(&mut s.daemon);
    assert!(log.contains("not an RTMP client"), "{log}");
    assert!(log.contains("chunk size"), "{log}");
    assert!(log.contains("already being published"), "{log}");
}

#[test]
fn with_ingest_users_a_publish_needs_credentials_in_its_query() {
    let users = "[[ingest.users]]\nuser = \"enc\"\npassword = \"s3cret\"\n";
    let mut s = Setup::start_with("rtmp-auth", users);
    let short = clip(&ClipSpec::h264(3, 1));
    let (ok, err) = finish(s.push(&short, "live/cam6"), Duration::from_secs(20));
    assert!(!ok, "a publish without credentials was accepted");
    assert!(err.contains("credentials required"), "ffmpeg said: {err}");
    let (ok, err) = finish(
        s.push(&short, "live/cam6?user=enc&pass=wrong"),
        Duration::from_secs(20),
    );
    assert!(
        !ok && err.contains("wrong user or password"),
        "ffmpeg said: {err}"
    );
    let (ok, err) = finish(
        s.push(&short, "live/cam6?user=enc&pass=s3cret&record_interval=1"),
        Duration::from_secs(30),
    );
    assert!(
        ok,
        "push with credentials failed: {err}\nlog:\n{}",
        s.daemon.log()
    );
    assert!(
        wait_closed(&s.cfg, &s.root, "cam6", 2, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    s.check_files(&s.closed("cam6"));
    let log = stop_clean(&mut s.daemon);
    assert!(!log.contains("s3cret"), "the password was logged:\n{log}");
}

/// Bytes of an ffprobe `-show_data` hex dump (`00000000: 0000 1399 2801 ...  ascii`).
fn unhex_dump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines() {
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let hex: String = rest
            .chars()
            .take(39)
            .filter(|c| c.is_ascii_hexdigit())
            .collect();
        for i in (0..hex.len() / 2 * 2).step_by(2) {
            out.push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        }
    }
    out
}

fn ffprobe_json(args: &[&str], file: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_data"])
        .args(args)
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Publishes the H.265 track of `clip` as Enhanced RTMP (`hvc1` FourCC), the way OBS 29+
/// and ffmpeg 6.1+ do. Debian 12's ffmpeg 5.1 cannot, so this test is its own minimal
/// publisher; the samples and the hvcC come straight from ffprobe, and the result is
/// checked by ffprobe and ffmpeg. Returns what the server sent after `Publish.Start`
/// until it closed the connection (or 10 s passed).
fn publish_hevc(port: u16, path: &str, clip: &Path) -> String {
    use edgerec::media::ingest::rtmp::amf::{encode_all, Amf};
    use edgerec::media::ingest::rtmp::chunk::write_message;

    let streams = ffprobe_json(&["-show_streams", "-select_streams", "v"], clip);
    let hvcc = unhex_dump(streams["streams"][0]["extradata"].as_str().unwrap());
    let packets = ffprobe_json(&["-show_packets", "-select_streams", "v"], clip);
    let (app, name) = path.split_once('/').unwrap();

    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[0u8; 1536]);
    sock.write_all(&hello).unwrap();
    let mut reply = vec![0u8; 1 + 2 * 1536];
    sock.read_exact(&mut reply).unwrap();
    sock.write_all(&reply[1..1537]).unwrap(); // C2 = S1

    let mut out = bytes::BytesMut::new();
    let chunk = 4096;
    write_message(&mut out, 128, 2, 1, 0, 0, &(chunk as u32).to_be_bytes());
    let cmd = |out: &mut bytes::BytesMut, stream: u32, v: &[Amf]| {
        write_message(out, chunk, 3, 20, stream, 0, &encode_all(v));
    };
    cmd(
        &mut out,
        0,
        &[
            Amf::string("connect"),
            Amf::Number(1.0),
            Amf::object([("app", Amf::string(app))]),
        ],
    );
    cmd(
        &mut out,
        0,
        &[Amf::string("createStream"), Amf::Number(2.0), Amf::Null],
    );
    cmd(
        &mut out,
        1,
        &[
            Amf::string("publish"),
            Amf::Number(3.0),
            Amf::Null,
            Amf::string(name),
            Amf::string("live"),
        ],
    );
    sock.write_all(&out).unwrap();
    out.clear();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("NetStream.Publish.Start") {
        let n = sock.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before Publish.Start: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }

    let mut seq = vec![0x90];
    seq.extend_from_slice(b"hvc1");
    seq.extend_from_slice(&hvcc);
    write_message(&mut out, chunk, 6, 9, 1, 0, &seq);
    let ms = |v: &serde_json::Value| -> i64 {
        (v.as_str().unwrap().parse::<f64>().unwrap() * 1000.0).round() as i64
    };
    for p in packets["packets"].as_array().unwrap() {
        let (dts, pts) = (ms(&p["dts_time"]) + 200, ms(&p["pts_time"]) + 200);
        let key = p["flags"].as_str().unwrap().starts_with('K');
        let mut tag = vec![0x80 | if key { 0x10 } else { 0x20 } | 1];
        tag.extend_from_slice(b"hvc1");
        tag.extend_from_slice(&((pts - dts) as i32).to_be_bytes()[1..]);
        tag.extend(unhex_dump(p["data"].as_str().unwrap()));
        write_message(&mut out, chunk, 6, 9, 1, dts as u32, &tag);
    }
    cmd(
        &mut out,
        1,
        &[Amf::string("FCUnpublish"), Amf::Number(4.0), Amf::Null],
    );
    // A refused publisher may find the connection closed before it is done.
    let _ = sock.write_all(&out);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut after = Vec::new();
    let _ = sock.read_to_end(&mut after);
    String::from_utf8_lossy(&after).into_owned()
}

#[test]
fn enhanced_rtmp_h265_push_records_h265() {
    let mut s = Setup::start("rtmp-hevc");
    let spec = ClipSpec {
        codec: "h265",
        audio: false,
        bframes: 2,
        ..ClipSpec::h264(4, 1)
    };
    publish_hevc(s.port, "live/cam5?record_interval=2", &clip(&spec));
    assert!(
        wait_closed(&s.cfg, &s.root, "cam5", 2, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let rows = s.closed("cam5");
    let mut frames = 0;
    for row in &rows {
        let path = s.root.join(&row.files[0].path);
        assert_decodes(&path);
        let v = probe(&path);
        let v = v.stream("video").expect("a video track");
        assert_eq!((v.codec_name.as_str(), v.width), ("hevc", Some(320)));
        frames += video_packets(&path).len();
    }
    assert_eq!(frames, 100, "4 s at 25 fps: every frame recorded once");
    stop_clean(&mut s.daemon);
}

#[test]
fn shutdown_during_a_push_closes_its_segment_and_exits_cleanly() {
    let mut s = Setup::start("rtmp-shutdown");
    let long = clip(&ClipSpec::h264(30, 1));
    let mut ffmpeg = s.push(&long, "live/cam4?record_interval=2");
    assert!(
        wait_closed(&s.cfg, &s.root, "cam4", 1, Duration::from_secs(20)),
        "log:\n{}",
        s.daemon.log()
    );
    std::thread::sleep(Duration::from_millis(700)); // into the next segment
    stop_clean(&mut s.daemon);
    let _ = ffmpeg.kill(); // it may have exited already, refused by the stopping server
    let _ = ffmpeg.wait();
    let rows: Vec<_> = segments(&s.cfg)
        .into_iter()
        .filter(|r| r.stream == "cam4")
        .collect();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.state == "closed"), "{rows:?}");
    s.check_files(&rows);
}
