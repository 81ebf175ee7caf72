//! Record tasks and fleet commands end to end, through the control socket's `command`
//! request (the same `Commands::handle` MQTT runs): real-time and scheduled tasks on a
//! looping file camera, sharing with a rule, surviving a restart, failing on a dead camera,
//! `config.set` applied live and persisted, and every bad input's error code. Every
//! recorded file is checked with ffprobe and decoded by ffmpeg.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

/// Sends `command NAME JSON` to the recorder on `root` and returns the reply.
fn cmd(root: &Path, name: &str, payload: &str) -> Value {
    let mut s = UnixStream::connect(root.join("control.sock")).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    writeln!(s, "command {name} {payload}").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {out}"))
}

fn ok(root: &Path, name: &str, payload: Value) -> Value {
    let r = cmd(root, name, &payload.to_string());
    assert_eq!(r["ok"], true, "{name} {payload} failed: {r}");
    r["data"].clone()
}

fn error_code(root: &Path, name: &str, payload: &str) -> String {
    let r = cmd(root, name, payload);
    assert_eq!(r["ok"], false, "{name} {payload} should fail: {r}");
    assert!(
        r["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error carries a message: {r}"
    );
    r["code"].as_str().unwrap().to_string()
}

fn ms(rfc3339: &Value) -> i64 {
    let t = humantime::parse_rfc3339_weak(rfc3339.as_str().expect("a time")).unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A recorder with `cam` (no rule records it), `rec` (a rule does) and `dead` (a camera
/// that refuses connections, no rule).
fn setup(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = workdir(name);
    let root = dir.path().join("data");
    let clip = clip(&ClipSpec::h264(10, 1));
    let src = format!("file:{}?loop=true", clip.display());
    let dead = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let toml = TestConfig::new(&root)
        .stream("cam", &src)
        .stream("rec", &src)
        .stream("dead", &dead)
        .to_toml()
        .replace("stream = \"*\"", "stream = \"rec\"");
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    (dir, cfg, root)
}

fn start(cfg: &Path, root: &Path) -> Daemon {
    let d = Daemon::start(cfg);
    assert!(
        wait_until(Duration::from_secs(20), || root
            .join("control.sock")
            .exists()),
        "no control socket; log:\n{}",
        d.log()
    );
    d
}

fn task(root: &Path, id: u64) -> Value {
    let list = ok(root, "task.list", json!({}));
    list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn wait_status(root: &Path, id: u64, status: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let reached = wait_until(timeout, || {
        last = task(root, id);
        last["status"] == status
    });
    assert!(reached, "task {id} never became {status}: {last}");
    last
}

fn closed_segments(root: &Path, stream: &str) -> Vec<Value> {
    let d = ok(
        root,
        "segments.list",
        json!({"stream": stream, "limit": 1000}),
    );
    d["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "closed")
        .cloned()
        .collect()
}

fn check_files(root: &Path, segs: &[Value]) {
    for s in segs {
        for f in s["files"].as_array().unwrap() {
            let p = root.join(f["path"].as_str().unwrap());
            let pr = probe(&p);
            assert!(pr.stream("video").is_some(), "{} has no video", p.display());
            assert_decodes(&p);
        }
    }
}

#[test]
fn a_scheduled_task_records_its_window_and_nothing_else() {
    let (_dir, cfg, root) = setup("tasks_scheduled");
    let mut d = start(&cfg, &root);
    let rec = ok(&root, "status", json!({}))["recording"].clone();
    assert_eq!(rec, json!({"rec": "t"}), "only the rule's stream records");

    let start_ms = now_ms() + 3_000;
    let end_ms = start_ms + 6_000;
    let t = ok(
        &root,
        "task.create",
        json!({"stream": "cam", "start_time": start_ms, "end_time": humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(end_ms as u64)).to_string()}),
    );
    let id = t["task_id"].as_u64().unwrap();
    assert_eq!(t["status"], "pending");
    assert_eq!(ms(&t["start_time"]), start_ms);
    assert_eq!(ms(&t["end_time"]), end_ms);

    let t = wait_status(&root, id, "in_progress", Duration::from_secs(10));
    assert!(
        (ms(&t["started_at"]) - start_ms).abs() <= 1_000,
        "started on time: {t}"
    );
    // The task is stored as started before its recorder starts (see the scheduler), so a
    // status read in between may not list it yet.
    let mut rec = Value::Null;
    wait_until(Duration::from_secs(3), || {
        rec = ok(&root, "status", json!({}))["recording"].clone();
        rec["cam"] == "t"
    });
    assert_eq!(rec["cam"], "t", "cam records while its task runs: {rec}");

    let t = wait_status(&root, id, "completed", Duration::from_secs(15));
    assert!(
        (ms(&t["ended_at"]) - end_ms).abs() <= 1_000,
        "ended on time: {t}"
    );
    // The recorder stops with the task: cam's last segment is closed right after.
    assert!(wait_until(Duration::from_secs(5), || {
        ok(&root, "status", json!({}))["recording"]
            .get("cam")
            .is_none()
    }));
    let segs = closed_segments(&root, "cam");
    assert!(!segs.is_empty(), "the task recorded something");
    for s in &segs {
        let (a, b) = (
            s["start_ms"].as_i64().unwrap(),
            s["end_ms"].as_i64().unwrap(),
        );
        assert!(
            a >= start_ms - 1_000 && b <= end_ms + 1_000,
            "segment {s} is outside the window {start_ms}..{end_ms}"
        );
    }
    let first = segs[0]["start_ms"].as_i64().unwrap();
    let last = segs.last().unwrap()["end_ms"].as_i64().unwrap();
    assert!(
        (first - start_ms).abs() <= 1_000,
        "first file starts on time: {first} vs {start_ms}"
    );
    assert!(
        (last - end_ms).abs() <= 1_000,
        "last file ends on time: {last} vs {end_ms}"
    );
    check_files(&root, &segs);
    let t = task(&root, id);
    let files: usize = segs
        .iter()
        .map(|s| s["files"].as_array().unwrap().len())
        .sum();
    let bytes: u64 = segs.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(t["files"], files as u64, "{t}");
    assert_eq!(t["bytes"], bytes, "{t}");
    stop_clean(&mut d);
}

#[test]
fn real_time_tasks_record_until_stopped_and_share_a_recording() {
    let (_dir, cfg, root) = setup("tasks_realtime");
    let mut d = start(&cfg, &root);
    // On a stream no rule records: it starts now and stops when stopped.
    let t = ok(&root, "record.start", json!({"stream": "cam"}));
    let id = t["task_id"].as_u64().unwrap();
    assert_eq!(t["status"], "in_progress", "{t}");
    assert!(t["end_time"].is_null());
    // Two more on the rule's stream: one shared recording, nothing restarted.
    let a = ok(
        &root,
        "record.start",
        json!({"stream": "rec", "duration": "30s"}),
    );
    let b = ok(
        &root,
        "record.start",
        json!({"stream": "rec", "template": "t"}),
    );
    assert_eq!(
        ok(&root, "status", json!({}))["recording"],
        json!({"cam": "t", "rec": "t"})
    );
    assert!(wait_until(Duration::from_secs(20), || closed_segments(
        &root, "cam"
    )
    .len()
        >= 2));

    let stopped = ok(&root, "record.stop", json!({"task_id": id}));
    assert_eq!(stopped["tasks"][0]["status"], "completed");
    assert!(wait_until(Duration::from_secs(5), || {
        ok(&root, "status", json!({}))["recording"]
            .get("cam")
            .is_none()
    }));
    let t = task(&root, id);
    assert!(t["files"].as_u64().unwrap() >= 2, "{t}");
    check_files(&root, &closed_segments(&root, "cam"));

    let stopped = ok(&root, "record.stop", json!({"stream": "rec"}));
    assert_eq!(stopped["tasks"].as_array().unwrap().len(), 2, "{stopped}");
    assert_eq!(
        ok(&root, "status", json!({}))["recording"],
        json!({"rec": "t"}),
        "the rule still records rec"
    );
    // One recording: rec's segments follow each other without overlapping.
    let segs = closed_segments(&root, "rec");
    for w in segs.windows(2) {
        assert!(
            w[1]["start_ms"].as_i64() >= w[0]["end_ms"].as_i64().map(|e| e - 100),
            "overlapping segments: {w:?}"
        );
        assert_eq!(
            w[1]["seq"].as_u64().unwrap(),
            w[0]["seq"].as_u64().unwrap() + 1
        );
    }
    for x in [&a, &b] {
        let id = x["task_id"].as_u64().unwrap();
        let t = task(&root, id);
        assert_eq!(t["status"], "completed");
        let _ = ok(&root, "task.delete", json!({"task_id": id}));
        assert!(task(&root, id).is_null(), "deleted");
    }
    stop_clean(&mut d);
}

#[test]
fn tasks_survive_a_restart() {
    let (_dir, cfg, root) = setup("tasks_restart");
    let mut d = start(&cfg, &root);
    let running = ok(&root, "record.start", json!({"stream": "cam"}))["task_id"].clone();
    let later = now_ms() + 3_600_000;
    let pending = ok(
        &root,
        "task.create",
        json!({"stream": "cam", "start_time": later, "end_time": later + 60_000}),
    )["task_id"]
        .clone();
    stop_clean(&mut d);

    let mut d = start(&cfg, &root);
    assert_eq!(
        task(&root, running.as_u64().unwrap())["status"],
        "in_progress"
    );
    assert_eq!(task(&root, pending.as_u64().unwrap())["status"], "pending");
    assert_eq!(ok(&root, "status", json!({}))["recording"]["cam"], "t");
    // A new task gets a new id.
    let again = ok(&root, "record.start", json!({"stream": "rec"}))["task_id"].clone();
    assert!(again.as_u64() > pending.as_u64());
    stop_clean(&mut d);
}

#[test]
fn a_camera_that_fails_three_attempts_puts_its_task_in_error() {
    let (_dir, cfg, root) = setup("tasks_dead");
    let mut d = start(&cfg, &root);
    let id = ok(&root, "record.start", json!({"stream": "dead"}))["task_id"]
        .as_u64()
        .unwrap();
    let t = wait_status(&root, id, "error", Duration::from_secs(30));
    assert!(t["error"].as_str().unwrap().contains("3 attempts"), "{t}");
    assert!(wait_until(Duration::from_secs(5), || {
        ok(&root, "status", json!({}))["recording"]
            .get("dead")
            .is_none()
    }));
    stop_clean(&mut d);
}

#[test]
fn config_set_applies_live_and_persists() {
    let (_dir, cfg, root) = setup("tasks_config");
    let mut d = start(&cfg, &root);
    let r = ok(
        &root,
        "config.set",
        json!({"patch": {
            "rules": [{"template": "t", "stream": "rec"}, {"template": "t", "stream": "cam"}],
            "retention": {"max_bytes": "900MiB"},
        }}),
    );
    assert_eq!(r["streams"]["started"], json!(["cam"]), "{r}");
    assert_eq!(r["applied_live"], json!(["rules", "retention"]), "{r}");
    assert_eq!(
        ok(&root, "status", json!({}))["recording"],
        json!({"cam": "t", "rec": "t"})
    );
    let got = ok(&root, "config.get", json!({}));
    assert_eq!(got["config"]["storage"]["max_bytes"], "900MiB");
    // Persisted: the file on disk is valid and holds the new rule.
    let check = cli(
        &["check", "--config", cfg.to_str().unwrap()],
        cfg.parent().unwrap(),
    );
    assert_eq!(check.code, 0, "{check:?}");
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("\"cam\""));
    // A bad patch changes nothing.
    let e = cmd(
        &root,
        "config.set",
        &json!({"patch": {"templates": [{"name": "t", "formats": ["fmp4"], "interval": "3h"}]}})
            .to_string(),
    );
    assert_eq!(e["code"], "bad_field", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("templates[0].interval"),
        "{e}"
    );
    assert!(wait_until(Duration::from_secs(20), || !closed_segments(
        &root, "cam"
    )
    .is_empty()));
    check_files(&root, &closed_segments(&root, "cam"));
    stop_clean(&mut d);
}

#[test]
fn every_bad_input_gets_its_error_code() {
    let (_dir, cfg, root) = setup("tasks_bad_input");
    let mut d = start(&cfg, &root);
    let cases: &[(&str, &str, &str)] = &[
        ("status", "{not json", "bad_json"),
        ("status", "[1,2]", "bad_json"),
        ("record.begin", "{}", "unknown_command"),
        ("record.start", r#"{"stream": 5}"#, "bad_field"),
        ("record.start", r#"{}"#, "bad_field"),
        (
            "record.start",
            r#"{"stream": "cam", "colour": 1}"#,
            "bad_field",
        ),
        (
            "record.start",
            r#"{"stream": "cam", "end_time": "tomorrow"}"#,
            "bad_field",
        ),
        ("record.start", r#"{"stream": "nope"}"#, "no_such_stream"),
        (
            "record.start",
            r#"{"stream": "cam", "template": "nope"}"#,
            "no_such_template",
        ),
        ("record.start", r#"{"stream": "../x"}"#, "bad_name"),
        ("record.start", r#"{"stream": "/"}"#, "bad_name"),
        ("record.start", r#"{"stream": "a\\b"}"#, "bad_name"),
        ("record.start", r#"{"stream": "a\u0000b"}"#, "bad_name"),
        (
            "task.create",
            r#"{"stream": "cam", "start_time": 2000000000000, "end_time": 1999999999000}"#,
            "bad_time_range",
        ),
        (
            "task.create",
            r#"{"stream": "cam", "start_time": 1000, "end_time": 2000}"#,
            "bad_time_range",
        ),
        ("record.stop", r#"{"task_id": 999}"#, "no_such_task"),
        ("record.stop", r#"{"task_id": "x"}"#, "bad_field"),
        ("task.delete", r#"{"task_id": 999}"#, "no_such_task"),
        ("segments.list", r#"{"limit": 0}"#, "bad_field"),
        (
            "segments.list",
            r#"{"from": 2000, "to": 1000}"#,
            "bad_time_range",
        ),
        (
            "config.set",
            r#"{"patch": {"streams": [{"name": "../evil", "source": "file:x.mp4"}]}}"#,
            "bad_name",
        ),
        (
            "config.set",
            r#"{"patch": {"storage": {"root": "/"}}}"#,
            "bad_field",
        ),
        ("config.set", r#"{"patch": 3}"#, "bad_field"),
        ("upload.pause", "{}", "unavailable"),
    ];
    for (name, payload, want) in cases {
        assert_eq!(&error_code(&root, name, payload), want, "{name} {payload}");
    }
    // The same through `edgerec command`: the reply is printed, an error exits 1.
    let dir = cfg.parent().unwrap();
    let c = cfg.to_str().unwrap();
    let out = cli(
        &[
            "command",
            "--config",
            c,
            "record.start",
            r#"{"stream":"nope"}"#,
        ],
        dir,
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("no_such_stream"), "{out:?}");
    let out = cli(&["command", "--config", c, "task.list"], dir);
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(d.running(), "still running after every bad input");
    assert_eq!(ok(&root, "task.list", json!({}))["tasks"], json!([]));
    stop_clean(&mut d);
}
