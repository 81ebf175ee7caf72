//! End to end: the storage guard. With `storage.require_marker = true` (the default),
//! `edgerec run` refuses a data directory that `edgerec init` did not mark — the state of an
//! SD card or SSD that failed to mount — and writes nothing there. It does not exit (under
//! systemd that would be a restart every few seconds): it raises an alarm (the log, the
//! systemd status, and on a real mosquitto broker a `storage.alarm` and the `online` status
//! saying it does not record), waits, and records by itself once the directory is marked.
//! SIGTERM while waiting exits cleanly.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_mqtt/support.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use mosquitto::{Broker, Sub};
use serde_json::Value;
use support::{last_status, wait_state, S};

fn guarded_config(dir: &Path, root: &Path, mqtt: Option<&str>) -> std::path::PathBuf {
    let clip = clip(&ClipSpec::h264(4, 1));
    let path = TestConfig {
        interval: "2s".into(),
        require_marker: true,
        ..TestConfig::new(root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.join("edgerec.toml"));
    if let Some(url) = mqtt {
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += &format!("\n[mqtt]\nurl = \"{url}\"\n");
        std::fs::write(&path, text).unwrap();
    }
    path
}

/// A child killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alarms(all: &Sub) -> Vec<Value> {
    all.json_on("edgerec/e2e/events/storage.alarm")
}

fn assert_untouched(root: &Path) {
    let left: Vec<_> = std::fs::read_dir(root).unwrap().collect();
    assert!(
        left.is_empty(),
        "edgerec wrote into the unmarked dir: {left:?}"
    );
}

#[test]
fn run_waits_on_an_unmounted_data_dir_with_an_alarm_and_records_once_init_marks_it() {
    let dir = workdir("guard");
    let broker = Broker::start(dir.path());
    let all = Sub::start(&broker.client_args(), "edgerec/e2e/#", None);
    // A mount point whose disk is missing: first the directory does not even exist.
    let root = dir.path().join("mnt/sd/edgerec");
    let cfg = guarded_config(dir.path(), &root, Some(&broker.url()));
    let c = cfg.to_str().unwrap();
    // systemd's notification socket, to see READY and the status line.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let log_path = dir.path().join("edgerec.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Killed(
        Command::new(bin())
            .args(["run", "--config", c])
            .current_dir(dir.path())
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let mut buf = [0u8; 4096];
    let n = notify
        .recv(&mut buf)
        .expect("sd_notify READY while refused");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        msg.starts_with("READY=1\nSTATUS=refused: ") && msg.contains(root.to_str().unwrap()),
        "{msg}"
    );
    assert!(
        all.wait(S(20), |_| !alarms(&all).is_empty()),
        "no storage.alarm; log:\n{}",
        log()
    );
    let a = alarms(&all)[0].clone();
    assert_eq!(a["alarm"], "missing_root", "{a}");
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(a["path"], root.to_str().unwrap(), "{a}");
    let e = a["error"].as_str().unwrap();
    assert!(
        e.contains("does not exist") && e.contains("edgerec init"),
        "{a}"
    );
    let st = last_status(&all).expect("a status");
    assert_eq!(
        (st["state"].as_str(), st["recording"].as_bool()),
        (Some("online"), Some(false)),
        "{st}"
    );
    assert!(st["refused"].as_str().unwrap().contains("does not exist"));
    assert!(log().contains("not recording; waiting for the data directory"));
    assert!(log().contains(root.to_str().unwrap()), "{}", log());
    assert!(!root.exists(), "run created the data directory");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "run exited: {}",
        log()
    );

    // …then an empty directory (an unmounted mount point): still refused, untouched.
    std::fs::create_dir_all(&root).unwrap();
    std::thread::sleep(Duration::from_secs(6)); // past one recheck
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "run exited: {}",
        log()
    );
    // Read-only commands leave the mount point alone too.
    for cmd in ["segments", "status"] {
        let out = cli(&[cmd, "--config", c], dir.path());
        assert_ne!(out.code, 0, "{cmd} on an unmarked dir: {out:?}");
        assert!(out.stderr.contains("edgerec init"), "{cmd}: {}", out.stderr);
    }
    assert_untouched(&root);

    // `edgerec init` marks it (twice is harmless); the waiting recorder starts by itself.
    let out = cli(&["init", "--config", c], dir.path());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("initialised"), "{}", out.stdout);
    let marker = std::fs::read_to_string(root.join(".edgerec-root")).unwrap();
    let m: Value = serde_json::from_str(&marker).unwrap();
    assert_eq!(m["device_id"], "e2e");
    assert_eq!(m["id"].as_str().map(str::len), Some(32));
    let again = cli(&["init", "--config", c], dir.path());
    assert!(again.stdout.contains("already initialised"), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(root.join(".edgerec-root")).unwrap(),
        marker
    );
    assert!(
        wait_closed(&cfg, &root, "cam", 1, Duration::from_secs(40)),
        "nothing recorded after init; log:\n{}",
        log()
    );
    assert!(
        all.wait(S(10), |_| alarms(&all).iter().any(|a| a["active"] == false)),
        "the alarm was not cleared: {:?}",
        alarms(&all)
    );
    let st = last_status(&all).unwrap();
    assert!(
        st.get("refused").is_none(),
        "the recorder's own status: {st}"
    );
    assert!(log().contains("passes the storage guard now; starting"));

    signal(child.0.id(), libc::SIGTERM);
    let status = wait_timeout(&mut child.0, Duration::from_secs(20)).expect("exit on SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", log());
    for r in closed_of(&segments(&cfg), "cam") {
        assert_decodes(&root.join(&r.files[0].path));
    }
}

#[test]
fn sigterm_while_refused_exits_cleanly_and_says_offline() {
    let dir = workdir("guard-sigterm");
    let broker = Broker::start(dir.path());
    let all = Sub::start(&broker.client_args(), "edgerec/e2e/#", None);
    let root = dir.path().join("sd");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = guarded_config(dir.path(), &root, Some(&broker.url()));
    let mut daemon = Daemon::start(&cfg);
    assert!(
        all.wait(S(20), |_| !alarms(&all).is_empty()),
        "no storage.alarm; log:\n{}",
        daemon.log()
    );
    let a = &alarms(&all)[0];
    assert_eq!(a["alarm"], "unmarked_root", "{a}");
    assert!(
        a["error"].as_str().unwrap().contains(".edgerec-root"),
        "{a}"
    );
    let log = stop_clean(&mut daemon);
    assert!(
        log.contains("stopped while waiting for the data directory"),
        "{log}"
    );
    assert!(wait_state(&all, "offline", S(10)), "{:?}", all.messages());
    assert_eq!(last_status(&all).unwrap()["reason"], "shutdown");
    assert_untouched(&root);
}

#[test]
fn without_mqtt_a_refused_run_waits_with_the_error_in_the_log() {
    let dir = workdir("guard-no-mqtt");
    let root = dir.path().join("sd");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = guarded_config(dir.path(), &root, None);
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_until(S(20), || daemon
            .log()
            .contains("not recording; waiting for the data directory")),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("ERROR"), "{log}");
    assert!(
        log.contains(".edgerec-root") && log.contains("edgerec init"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(6)); // past one recheck: still waiting
    assert!(daemon.running(), "{}", daemon.log());
    stop_clean(&mut daemon);
    assert_untouched(&root);
}
