//! The local HTTP API (`[http]`) end to end, against a running recorder on a looping file
//! camera, called with curl as a live777 client would: start, status and stop a recording
//! (the reply names the HLS playlist), status, segments with a cursor, the event log's
//! replay, `/metrics` accepted by `promtool check metrics`; tokens and scopes; every bad
//! input's status; and a slowloris client, disconnected after the header timeout while the
//! recording goes on and other clients are answered. Every recorded file is decoded by
//! ffmpeg, the playlist checked by the shared HLS reader.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hls::Playlist;
use common::http::{curl, start};
use common::*;
use serde_json::Value;

const VIEW: &str = "view-token-6b1f0c2e9a";
const CONTROL: &str = "control-token-58d2a7e4c1";

/// A recorder with `cam` (recorded only when asked), `rec` (a rule records it), fMP4 and HLS
/// in 2 s segments, a webhook endpoint nobody answers (so the event log keeps events), and
/// `[http]` on a free loopback port, with `http_extra` appended to the section.
fn setup(name: &str, http_extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf, u16) {
    let dir = workdir(name);
    let root = dir.path().join("data");
    let src = format!("file:{}?loop=true", clip(&ClipSpec::h264(10, 1)).display());
    let port = free_port();
    let dead = free_port();
    let mut toml = TestConfig {
        formats: vec!["fmp4".into(), "hls".into()],
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &src)
    .stream("rec", &src)
    .to_toml()
    .replace("stream = \"*\"", "stream = \"rec\"");
    toml += &format!(
        "\n[[callbacks]]\nname = \"down\"\nurl = \"http://127.0.0.1:{dead}/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
         \n[http]\nlisten = \"127.0.0.1:{port}\"\n{http_extra}"
    );
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    (dir, cfg, root, port)
}

#[test]
fn live777_calls_start_report_and_stop_a_recording_named_by_its_playlist() {
    let (_dir, cfg, root, port) = setup("http-live777", "");
    let mut daemon = start(&cfg, port);
    // Loopback without tokens: everything is allowed. Nothing records `cam` yet.
    let before = curl(port, "GET", "/api/record/cam", None, None);
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(before.json()["recording"], false, "{before:?}");
    assert_eq!(before.json()["playlist"], Value::Null, "{before:?}");

    let started = curl(
        port,
        "POST",
        "/api/record/cam",
        None,
        Some(r#"{"duration": 120}"#),
    );
    assert_eq!(started.status, 200, "{started:?}");
    let s = started.json();
    assert_eq!(s["stream"], "cam");
    assert_eq!(s["task"]["kind"], "real_time", "{s}");
    let task_id = s["task"]["task_id"].as_u64().expect("a task id");

    // The recording runs, and its reply names the playlist once the first segment began.
    let mut last = Value::Null;
    let named = wait_until(Duration::from_secs(30), || {
        last = curl(port, "GET", "/api/record/cam", None, None).json();
        last["recording"] == true && last["playlist"].is_string()
    });
    assert!(named, "{last}\nlog:\n{}", daemon.log());
    assert_eq!(last["task"]["task_id"], task_id, "{last}");
    let playlist = last["playlist"].as_str().unwrap().to_string();
    assert!(
        playlist.starts_with("cam/") && playlist.ends_with(".m3u8"),
        "{playlist}"
    );
    assert!(wait_closed(&cfg, &root, "cam", 4, Duration::from_secs(30)));

    // Status: the same report as `edgerec status --json`.
    let status = curl(port, "GET", "/api/status", None, None);
    assert_eq!(status.status, 200);
    assert_eq!(status.header("content-type"), Some("application/json"));
    let st = status.json();
    let cli_out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&cli_out.stdout).expect("status --json");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&st), keys(&cli), "{st}\n{cli}");
    assert_eq!(st["device_id"], "e2e");
    assert_eq!(st["pid"], cli["pid"]);
    let names: Vec<&str> = st["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"cam") && names.contains(&"rec"), "{st}");

    // Segments, a page of one at a time through the cursor.
    let first = curl(port, "GET", "/api/streams/cam/segments?limit=1", None, None).json();
    assert_eq!(first["segments"].as_array().unwrap().len(), 1, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_string();
    let second = curl(
        port,
        "GET",
        &format!("/api/streams/cam/segments?limit=1&cursor={cursor}"),
        None,
        None,
    )
    .json();
    let (a, b) = (&first["segments"][0], &second["segments"][0]);
    assert!(b["id"].as_u64() > a["id"].as_u64(), "{first}\n{second}");
    assert!(a["files"][0]["path"].as_str().unwrap().starts_with("cam/"));
    let since = a["end_ms"].as_i64().unwrap() / 1000 + 1;
    let later = curl(
        port,
        "GET",
        &format!("/api/streams/cam/segments?start={since}&limit=1000"),
        None,
        None,
    )
    .json();
    assert!(
        later["segments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["end_ms"].as_i64().unwrap() >= since * 1000),
        "{later}"
    );
    assert_eq!(later["next_cursor"], Value::Null);

    // The event log, replayed from the start and then after the first event.
    let events = curl(port, "GET", "/api/events?limit=5", None, None).json();
    let list = events["events"].as_array().unwrap();
    assert!(!list.is_empty(), "{events}");
    assert!(
        list.iter()
            .all(|e| e["device"] == "e2e" && e["id"].is_string()),
        "{events}"
    );
    let seq0 = list[0]["event_seq"].as_u64().unwrap();
    let after = curl(
        port,
        "GET",
        &format!("/api/events?after_seq={seq0}&limit=5"),
        None,
        None,
    )
    .json();
    assert!(
        after["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event_seq"].as_u64().unwrap() > seq0),
        "{after}"
    );

    // Metrics: promtool accepts them; the webhook nobody answers lags.
    let metrics = curl(port, "GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, scripts/test-deps.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("edgerec_stream_state{stream=\"cam\",state=\"recording\"} 1"),
        "{}",
        metrics.body
    );
    let written = metrics
        .body
        .lines()
        .find(|l| l.starts_with("edgerec_segments_written_total{stream=\"cam\"}"))
        .expect("cam's segments written");
    assert!(
        written.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 4,
        "{written}"
    );
    let lag = metrics
        .body
        .lines()
        .find(|l| l.starts_with("edgerec_event_log_lag_events{consumer=\"callback:down\"}"))
        .expect("the webhook's lag");
    assert!(
        lag.rsplit(' ').next().unwrap().parse::<u64>().unwrap() > 0,
        "{lag}"
    );
    assert!(
        metrics.body.contains("\nedgerec_disk_free_bytes "),
        "{}",
        metrics.body
    );

    // Stop: the task ends, `cam` no longer records.
    let stopped = curl(port, "DELETE", "/api/record/cam", None, None);
    assert_eq!(stopped.status, 200, "{stopped:?}");
    assert_eq!(stopped.json()["task"]["task_id"], task_id);
    assert_eq!(stopped.json()["playlist"], playlist.as_str());
    let off = wait_until(Duration::from_secs(20), || {
        curl(port, "GET", "/api/record/cam", None, None).json()["recording"] == false
    });
    assert!(off, "{}", daemon.log());
    let log = stop_clean(&mut daemon);
    // Independent readers: the playlist the API named, and every file recorded.
    let pl = Playlist::read(&root.join(&playlist));
    pl.check(&root);
    assert!(pl.ended, "{}\n{log}", pl.text);
    let rows = segments(&cfg);
    let files: Vec<PathBuf> = closed_of(&rows, "cam")
        .iter()
        .map(|r| root.join(&r.files[0].path))
        .collect();
    assert!(files.len() >= 4, "{rows:#?}");
    assert_all_decode(&files);
}

#[test]
fn tokens_scopes_bad_input_and_a_slowloris_client() {
    let extra = format!(
        "[[http.tokens]]\ntoken = \"{VIEW}\"\nscope = \"view\"\n[[http.tokens]]\ntoken = \"{CONTROL}\"\nscope = \"control\"\n"
    );
    let (_dir, cfg, root, port) = setup("http-auth", &extra);
    let mut daemon = start(&cfg, port);
    // A slowloris client: the headers never end.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .unwrap();
    let slow_since = Instant::now();

    // Auth: 401 without or with an unknown token, 403 for view on control, else 200.
    let none = curl(port, "GET", "/api/status", None, None);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert!(none.json()["error"].is_string());
    assert_eq!(
        curl(
            port,
            "GET",
            "/api/status",
            Some("not-a-known-token-xx"),
            None
        )
        .status,
        401
    );
    assert_eq!(
        curl(port, "GET", "/nowhere", None, None).status,
        401,
        "paths stay hidden without a token"
    );
    assert_eq!(
        curl(port, "GET", "/api/status", Some(VIEW), None).status,
        200
    );
    assert_eq!(curl(port, "GET", "/metrics", Some(VIEW), None).status, 200);
    let forbidden = curl(port, "POST", "/api/record/cam", Some(VIEW), None);
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(
        curl(port, "DELETE", "/api/record/cam", Some(VIEW), None).status,
        403
    );
    assert_eq!(
        curl(port, "GET", "/api/record/cam", Some(VIEW), None).status,
        200
    );

    // Bad input: 400 naming the parameter or field, 404, 405, 413.
    let t = Some(CONTROL);
    for (path, param) in [
        ("/api/streams/rec/segments?limit=5000", "limit"),
        ("/api/streams/rec/segments?start=yesterday", "start"),
        ("/api/streams/rec/segments?cursor=abc", "cursor"),
        ("/api/events?after_seq=-1", "after_seq"),
        ("/api/events?bogus=1", "bogus"),
        ("/api/status?x=1", "x"),
    ] {
        let a = curl(port, "GET", path, t, None);
        assert_eq!(a.status, 400, "{path}: {a:?}");
        assert_eq!(a.json()["parameter"], param, "{path}: {a:?}");
        assert!(a.json()["error"].as_str().unwrap().contains(param), "{a:?}");
    }
    for path in [
        "/api/record/..",
        "/api/record/a%2Fb",
        "/api/record/a/b",
        "/api/record/%2e%2e",
        "/api/streams/..%2F..%2Fetc/segments",
    ] {
        let a = curl(port, "GET", path, t, None);
        assert_eq!(a.status, 400, "{path}: {a:?}");
        assert!(
            a.json()["error"].as_str().unwrap().contains("stream"),
            "{path}: {a:?}"
        );
    }
    let bad_body = curl(
        port,
        "POST",
        "/api/record/cam",
        t,
        Some("{\"duration\": \"soon\"}"),
    );
    assert_eq!(bad_body.status, 400, "{bad_body:?}");
    assert!(
        bad_body.json()["error"]
            .as_str()
            .unwrap()
            .contains("duration"),
        "{bad_body:?}"
    );
    let not_json = curl(port, "POST", "/api/record/cam", t, Some("{nope"));
    assert_eq!(not_json.status, 400, "{not_json:?}");
    let unknown_field = curl(port, "POST", "/api/record/cam", t, Some("{\"length\": 3}"));
    assert_eq!(unknown_field.status, 400, "{unknown_field:?}");
    assert!(unknown_field.json()["error"]
        .as_str()
        .unwrap()
        .contains("length"));
    assert_eq!(curl(port, "POST", "/api/record/nocam", t, None).status, 404);
    assert_eq!(curl(port, "GET", "/api/record/nocam", t, None).status, 404);
    assert_eq!(
        curl(port, "GET", "/api/streams/nocam/segments", t, None).status,
        404
    );
    assert_eq!(curl(port, "GET", "/api/nothing", t, None).status, 404);
    // Players send no Authorization header: playback takes the token in the query.
    let q_token = format!("/api/playback/rec.m3u8?token={VIEW}");
    let playback = curl(port, "GET", &q_token, None, None);
    assert_eq!(playback.status, 400, "{playback:?}");
    assert_eq!(playback.json()["parameter"], "start", "{playback:?}");
    let wrong = "/api/playback/rec.m3u8?token=wrong-token-0123456&start=1&end=2";
    assert_eq!(curl(port, "GET", wrong, None, None).status, 401);
    // ... and only playback does.
    let status_q = format!("/api/status?token={VIEW}");
    assert_eq!(curl(port, "GET", &status_q, None, None).status, 401);
    let put = curl(port, "PUT", "/api/record/cam", t, None);
    assert_eq!(put.status, 405, "{put:?}");
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST, DELETE"));
    assert_eq!(curl(port, "POST", "/metrics", t, None).status, 405);
    let big = format!(
        "{{\"duration\": 1, \"pad\": \"{}\"}}",
        "x".repeat(100 << 10)
    );
    let too_large = curl(port, "POST", "/api/record/cam", t, Some(&big));
    assert_eq!(too_large.status, 413, "{:?}", too_large.status);
    // A control token may start and stop.
    let started = curl(port, "POST", "/api/record/cam?duration=60", t, None);
    assert_eq!(started.status, 200, "{started:?}");
    assert!(
        started.json()["task"]["end_time"].is_string(),
        "{started:?}"
    );
    assert_eq!(curl(port, "DELETE", "/api/record/cam", t, None).status, 200);

    // The slowloris client is cut off after the header timeout (10 s), never answered with
    // the report; meanwhile `rec` kept recording and others were answered (above).
    let closed_before = closed_of(&segments(&cfg), "rec").len();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let read = slow.read_to_end(&mut got);
    let waited = slow_since.elapsed();
    assert!(read.is_ok(), "the connection was not closed: {read:?}");
    assert!(
        !String::from_utf8_lossy(&got).contains("device_id"),
        "{got:?}"
    );
    assert!(
        waited >= Duration::from_secs(9),
        "closed too early: {waited:?}"
    );
    assert_eq!(
        curl(port, "GET", "/api/status", Some(VIEW), None).status,
        200
    );
    assert!(wait_closed(
        &cfg,
        &root,
        "rec",
        closed_before + 1,
        Duration::from_secs(20)
    ));
    // A shutdown does not wait for a client that never finishes its headers.
    let mut hanging = TcpStream::connect(("127.0.0.1", port)).unwrap();
    hanging.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let log = stop_clean(&mut daemon);
    drop(hanging);
    let rows = segments(&cfg);
    let files: Vec<PathBuf> = closed_of(&rows, "rec")
        .iter()
        .map(|r| root.join(&r.files[0].path))
        .collect();
    assert!(files.len() >= 4, "{rows:#?}\n{log}");
    assert_all_decode(&files);
}

#[test]
fn a_network_address_without_tokens_or_allow_insecure_does_not_start() {
    let (dir, cfg, _root, _port) = setup("http-refused", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&cfg, &text).unwrap();
    let out = cli(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("http.tokens"), "{out:?}");
    let with_token = text + &format!("[[http.tokens]]\ntoken = \"{VIEW}\"\nscope = \"view\"\n");
    std::fs::write(&cfg, with_token).unwrap();
    let out = cli(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("http.allow_insecure") && out.stderr.contains("TLS"),
        "{out:?}"
    );
}
