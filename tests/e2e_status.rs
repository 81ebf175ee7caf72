//! End to end: `edgerec status` and the systemd notify protocol. A unix datagram socket
//! stands in for systemd's `$NOTIFY_SOCKET` (the protocol is one datagram per message, so
//! this is the real peer's side of it).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

fn count(got: &Arc<Mutex<Vec<String>>>, prefix: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with(prefix))
        .count()
}

fn status_json(cfg: &Path) -> (i32, serde_json::Value) {
    let out = cli(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        cfg.parent().unwrap(),
    );
    let v = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"));
    (out.code, v)
}

fn stream<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stream {name} in {v}"))
}

#[test]
fn ready_after_recovery_watchdog_while_alive_status_and_stopping() {
    let dir = workdir("status_notify");
    let root = dir.path().join("data");
    let clip = clip(&ClipSpec::h264(4, 1));
    let dead = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .stream("dead", &dead)
    .write(&dir.path().join("edgerec.toml"));

    // A first run killed mid-segment leaves a torn segment for recovery.
    let mut first = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "cam", 1, Duration::from_secs(30)),
        "first run recorded nothing; log:\n{}",
        first.log()
    );
    std::thread::sleep(Duration::from_millis(1200));
    first.kill9();

    // The second run under a fake systemd.
    let sock = dir.path().join("notify.sock");
    let got = notify_listen(&sock);
    let log_path = dir.path().join("notify-run.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "1000000")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || fs::read_to_string(&log_path).unwrap_or_default();
    let ready = wait_until(Duration::from_secs(20), || count(&got, "READY=1") > 0);
    // Read the log right away: what it says now happened before READY.
    let at_ready = read_log();
    assert!(ready, "no READY=1; log:\n{}", read_log());
    assert!(
        at_ready.contains("recovered a segment torn"),
        "READY before recovery; log at READY:\n{at_ready}"
    );
    assert_eq!(count(&got, "READY=1"), 1);

    // The dead camera is retrying, which is alive: the watchdog is fed (every 0.5 s).
    assert!(
        wait_until(Duration::from_secs(5), || count(&got, "WATCHDOG=1") >= 3),
        "watchdog not fed: {:?}",
        got.lock().unwrap()
    );

    // status, while recording.
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        let (code, v) = status_json(&cfg);
        let good = code == 0
            && stream(&v, "cam")["state"] == "recording"
            && !stream(&v, "cam")["segment"].is_null()
            && stream(&v, "dead")["state"] == "retrying"
            && stream(&v, "dead")["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("127.0.0.1"));
        last = v;
        good
    });
    assert!(ok, "unexpected status: {last:#}");
    assert_eq!(last["running"], true);
    assert_eq!(last["device_id"], "e2e");
    assert_eq!(last["uploads"]["configured"], false);
    assert_eq!(last["uploads"]["backlog_segments"], 0);
    assert!(last["disk"]["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(last["disk"]["quota_bytes"], 1u64 << 30);
    let cam_counts = last["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stream"] == "cam")
        .expect("segment counts for cam");
    assert!(cam_counts["closed"].as_u64().unwrap() >= 1, "{last:#}");
    let text = cli(&["status", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(text.code, 0, "{text:?}");
    for want in [
        "cam",
        "recording",
        "dead",
        "retrying",
        "uploads: not configured",
    ] {
        assert!(
            text.stdout.contains(want),
            "{want} missing:\n{}",
            text.stdout
        );
    }

    // SIGTERM: STOPPING=1, then a clean exit.
    signal(child.id(), libc::SIGTERM);
    let st = wait_timeout(&mut child, Duration::from_secs(20)).expect("exit after SIGTERM");
    assert!(st.success(), "exit {st}; log:\n{}", read_log());
    assert!(
        wait_until(Duration::from_secs(2), || count(&got, "STOPPING=1") == 1),
        "no STOPPING=1: {:?}",
        got.lock().unwrap()
    );

    // No recorder: status says so and reports the index.
    let out = cli(&["status", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stdout.contains("no recorder is running"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("cam"), "{}", out.stdout);
    let (code, v) = status_json(&cfg);
    assert_eq!(code, 3);
    assert_eq!(v["running"], false);
    assert!(v["streams"].as_array().unwrap().is_empty());
    for r in closed_of(&segments(&cfg), "cam") {
        assert_decodes(&root.join(&r.files[0].path));
    }
}
