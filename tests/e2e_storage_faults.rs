//! End to end: the storage fault matrix on the power-loss filesystem
//! (`tests/peers/powerloss_fs.py`), with and without MQTT.
//!
//! Two looping file cameras record onto the FUSE mount, `cam1` and `cam2`, each under its
//! own directory. Each case injects one fault under `cam1`'s directory only (the peer's
//! path-scoped faults), holds it, then clears it, and checks:
//! - the condition is reported: `edgerec status` lists the storage alarm for `cam1` (with
//!   its errno), the log says so, systemd's `STATUS=` names it (a datagram socket stands in
//!   for `$NOTIFY_SOCKET`), and with MQTT a `storage.alarm` is raised and later cleared;
//! - `cam2`, on healthy storage, closes segments all through the fault;
//! - the segment `cam1` was writing when the fault hit ends up closed, at its last good
//!   fragment, and recording resumes by itself once the fault is cleared (the alarm clears
//!   and `cam1` closes new segments);
//! - no closed segment is lost: every segment closed before a fault still exists with the
//!   same size at the end; nothing is left `writing` or as a working file after a clean
//!   stop; `edgerec index check` finds index and files agreeing; every file decodes
//!   (`ffmpeg -v error -f null -`) and ffprobe finds its video.
//!
//! The restart policy: a fault held past `storage.fault_restart` stops the `WATCHDOG=1`
//! datagrams (systemd would restart the recorder), and they come back once it clears;
//! shorter faults never stop them.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::powerloss::*;
use common::*;
use mosquitto::{Broker, Sub};
use serde_json::Value;

const S: fn(u64) -> Duration = Duration::from_secs;
const PREFIX: &str = "/data/cam1";
const ALARMS: &str = "edgerec/e2e/events/storage.alarm";

/// One fault of the matrix.
struct Case {
    name: &'static str,
    /// The peer command, without the prefix.
    inject: &'static str,
    /// The alarm and errno expected.
    alarm: &'static str,
    errno: Option<&'static str>,
    /// How long the fault is held, from its injection (at least until the alarm is seen).
    hold: Duration,
}

const WRITE_EIO: Case = Case {
    name: "EIO on write",
    inject: "fail write EIO",
    alarm: "write_error",
    errno: Some("EIO"),
    hold: Duration::from_secs(3),
};
const FSYNC_EIO: Case = Case {
    name: "EIO on fsync",
    inject: "fail fsync EIO",
    alarm: "write_error",
    errno: Some("EIO"),
    hold: Duration::from_secs(3),
};
const ENOSPC: Case = Case {
    name: "ENOSPC from a foreign writer",
    inject: "fail write ENOSPC",
    alarm: "write_error",
    errno: Some("ENOSPC"),
    hold: Duration::from_secs(3),
};
const READ_ONLY: Case = Case {
    name: "read-only (EROFS)",
    inject: "readonly",
    alarm: "write_error",
    errno: Some("EROFS"),
    hold: Duration::from_secs(3),
};
/// The one long case: fsyncs under cam1 stall for 30 s (then the fault is cleared, which
/// also releases the fsync in flight).
const STALL: Case = Case {
    name: "fsync stalled for 30 s",
    inject: "stall fsync 30",
    alarm: "stalled",
    errno: None,
    hold: Duration::from_secs(30),
};

struct Rig {
    /// The storage alarms on the broker (with MQTT).
    sub: Option<Sub>,
    _broker: Option<Broker>,
    fs: PowerlossFs,
    root: PathBuf,
    cfg: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    notify: Arc<Mutex<Vec<String>>>,
    /// Closed segments seen so far: (stream, seq) → file sizes.
    closed: BTreeMap<(String, u64), Vec<(String, u64)>>,
}

impl Rig {
    /// The recorder on a fresh mount; with `mqtt`, a broker and a subscriber to the
    /// storage alarms too.
    fn start(test: &str, mqtt: bool) -> Option<Rig> {
        let fs = PowerlossFs::start(test)?;
        let dir = fs.mount.parent().unwrap().to_path_buf();
        let broker = mqtt.then(|| Broker::start(&dir));
        let sub = broker
            .as_ref()
            .map(|b| Sub::start(&b.client_args(), ALARMS, None));
        let extra = broker.as_ref().map_or(String::new(), |b| {
            format!(
                "\n[mqtt]\nurl = \"{}\"\ntelemetry_interval = \"1s\"\n",
                b.url()
            )
        });
        let root = fs.path("data");
        std::fs::create_dir(&root).unwrap();
        sync_dir(&fs.mount).unwrap();
        // Small pictures: every byte passes through the peer, which is Python.
        let small = ClipSpec {
            width: 160,
            height: 120,
            ..ClipSpec::h264(10, 1)
        };
        let src = format!("file:{}?loop=true", clip(&small).display());
        let t = TestConfig {
            // No eviction for free space (the mount's statfs is the build disk's).
            min_free: "0".into(),
            formats: vec!["fmp4".into(), "mp4".into()],
            interval: "2s".into(),
            fragment: "500ms".into(),
            ..TestConfig::new(&root)
        }
        .stream("cam1", &src)
        .stream("cam2", &src);
        let toml = t.to_toml().replacen(
            "require_marker = false\n",
            "require_marker = false\nstall_timeout = \"3s\"\nfault_restart = \"15s\"\n",
            1,
        ) + &extra;
        let cfg = dir.join("edgerec.toml");
        std::fs::write(&cfg, toml).unwrap();
        let sock = dir.join("notify.sock");
        let notify = notify_listen(&sock);
        let log = dir.join("edgerec.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .current_dir(&dir)
            .env("NOTIFY_SOCKET", &sock)
            .env("WATCHDOG_USEC", "1000000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let rig = Rig {
            sub,
            _broker: broker,
            fs,
            root,
            cfg,
            dir,
            log,
            child: Some(child),
            notify,
            closed: BTreeMap::new(),
        };
        for cam in ["cam1", "cam2"] {
            assert!(
                wait_closed(&rig.cfg, &rig.root, cam, 1, S(40)),
                "{cam} recorded nothing; log:\n{}",
                rig.log()
            );
        }
        Some(rig)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self) -> Value {
        let out = cli(
            &["status", "--config", self.cfg.to_str().unwrap(), "--json"],
            &self.dir,
        );
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"))
    }

    /// The storage alarms `edgerec status` lists.
    fn alarms(&self) -> Vec<Value> {
        self.status()["storage"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Closed rows now, remembered for the final check.
    fn closed_now(&mut self) -> Vec<SegmentRow> {
        let rows = segments(&self.cfg);
        for r in rows.iter().filter(|r| r.state == "closed") {
            let files = r.files.iter().map(|f| (f.path.clone(), f.bytes)).collect();
            self.closed.insert((r.stream.clone(), r.seq), files);
        }
        rows
    }

    fn count_closed(&mut self, stream: &str) -> usize {
        closed_of(&self.closed_now(), stream).len()
    }

    fn notified(&self, prefix: &str) -> Vec<String> {
        self.notify
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The open segment of `cam1` once it has at least one complete fragment (its start is
    /// 0.7–1.5 s ago: segments are 2 s of 500 ms fragments).
    fn cam1_mid_segment(&self) -> u64 {
        let mut seq = None;
        let ok = wait_until(S(20), || {
            let v = self.status();
            let cam = v["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "cam1")
                .cloned()
                .unwrap();
            let Some(start) = cam["segment"]["start_ms"].as_i64() else {
                return false;
            };
            let age = now_ms() - start;
            seq = cam["segment"]["seq"].as_u64();
            (700..1500).contains(&age)
        });
        assert!(ok, "cam1 is not writing a segment; log:\n{}", self.log());
        seq.unwrap()
    }

    /// Runs one case; returns the seq of the segment the fault hit.
    fn case(&mut self, c: &Case) -> u64 {
        let at = Instant::now();
        let hit = self.cam1_mid_segment();
        let cam2_before = self.count_closed("cam2");
        let injected = Instant::now();
        self.fs
            .command(&format!("{} {PREFIX}", c.inject))
            .unwrap_or_else(|e| panic!("{}: the peer refused: {e}", c.name));
        // Reported in `edgerec status`, with what failed.
        let mut alarm = None;
        let seen = wait_until(S(30), || {
            alarm = self
                .alarms()
                .into_iter()
                .find(|a| a["stream"] == "cam1" && a["alarm"] == c.alarm);
            alarm.is_some()
        });
        assert!(
            seen,
            "{}: no {} alarm in edgerec status; log:\n{}",
            c.name,
            c.alarm,
            self.log()
        );
        let alarm = alarm.unwrap();
        if let Some(errno) = c.errno {
            assert_eq!(alarm["errno"], errno, "{}: {alarm}", c.name);
        }
        assert!(
            self.alarms().iter().all(|a| a["stream"] != "cam2"),
            "{}: the healthy stream is not faulted: {:?}",
            c.name,
            self.alarms()
        );
        // systemd's status line names it.
        assert!(
            wait_until(S(5), || self
                .notified("STATUS=")
                .iter()
                .any(|m| m.contains("storage fault: cam1"))),
            "{}: no STATUS= line: {:?}",
            c.name,
            self.notified("STATUS=")
        );
        // The other stream records on, even through a 30 s stall, and the control plane
        // answers (every check above and below asks the running recorder).
        let cam2_through = wait_until(S(40), || self.count_closed("cam2") >= cam2_before + 2);
        assert!(
            cam2_through,
            "{}: cam2 stopped closing segments during the fault; log:\n{}",
            c.name,
            self.log()
        );
        std::thread::sleep(c.hold.saturating_sub(injected.elapsed()));
        let cam1_before = self.count_closed("cam1");
        self.fs.clear();
        let cleared = wait_until(S(60), || self.alarms().is_empty());
        assert!(
            cleared,
            "{}: the alarm never cleared: {:?}; log:\n{}",
            c.name,
            self.alarms(),
            self.log()
        );
        // Recording resumes by itself.
        assert!(
            wait_until(S(30), || self.count_closed("cam1") > cam1_before),
            "{}: cam1 did not record again; log:\n{}",
            c.name,
            self.log()
        );
        // The segment the fault hit is closed (at its last good fragment).
        let rows = self.closed_now();
        let row = rows
            .iter()
            .find(|r| r.stream == "cam1" && r.seq == hit)
            .unwrap_or_else(|| panic!("{}: segment {hit} of cam1 is gone: {rows:?}", c.name));
        assert_eq!(row.state, "closed", "{}: {row:?}", c.name);
        assert!(row.duration_ms > 0, "{}: {row:?}", c.name);
        eprintln!(
            "{}: segment {hit} closed ({} ms, recovered {}), resumed; {:.1} s",
            c.name,
            row.duration_ms,
            row.recovered,
            at.elapsed().as_secs_f64()
        );
        hit
    }

    /// The restart policy: a fault held past `fault_restart` (15 s) stops the watchdog.
    fn persistent_fault_stops_the_watchdog(&mut self) {
        self.cam1_mid_segment();
        self.fs.readonly(Some(PREFIX));
        assert!(
            wait_until(S(10), || !self.alarms().is_empty()),
            "no alarm; log:\n{}",
            self.log()
        );
        let fed = |r: &Rig| r.notified("WATCHDOG=1").len();
        // Fed while the fault is young...
        let before = fed(self);
        std::thread::sleep(S(3));
        assert!(fed(self) > before, "watchdog starved too early");
        // ...not once it has lasted fault_restart.
        let starved = wait_until(S(30), || {
            let n = fed(self);
            std::thread::sleep(S(2));
            fed(self) == n
        });
        assert!(starved, "the watchdog is still fed; log:\n{}", self.log());
        assert!(
            self.notified("STATUS=")
                .iter()
                .any(|m| m.contains("restart due")),
            "{:?}",
            self.notified("STATUS=")
        );
        assert!(self
            .log()
            .contains("no longer feeding the systemd watchdog"));
        self.fs.clear();
        let n = fed(self);
        assert!(
            wait_until(S(30), || fed(self) > n + 2),
            "the watchdog is not fed again after the fault cleared; log:\n{}",
            self.log()
        );
    }

    /// Clean stop, then the checks on everything recorded.
    fn finish(mut self) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), libc::SIGTERM);
        let status = wait_timeout(&mut child, S(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "no clean exit: {status:?}; log:\n{}",
            self.log()
        );
        let rows = segments(&self.cfg);
        assert!(
            rows.iter().all(|r| r.state == "closed"),
            "left open: {rows:?}"
        );
        assert!(
            part_files(&self.root).is_empty(),
            "{:?}",
            part_files(&self.root)
        );
        // No closed segment lost: every one seen closed is still there, same sizes.
        for ((stream, seq), files) in &self.closed {
            let r = rows
                .iter()
                .find(|r| &r.stream == stream && r.seq == *seq)
                .unwrap_or_else(|| panic!("closed segment {stream} {seq} lost"));
            let now: Vec<(String, u64)> =
                r.files.iter().map(|f| (f.path.clone(), f.bytes)).collect();
            assert_eq!(&now, files, "{stream} {seq} changed");
        }
        let check = cli(
            &["index", "check", "--config", self.cfg.to_str().unwrap()],
            &self.dir,
        );
        assert_eq!(check.code, 0, "index check: {check:?}");
        assert_index_matches_disk(&self.root, &rows);
        let paths: Vec<PathBuf> = rows
            .iter()
            .flat_map(|r| r.files.iter().map(|f| self.root.join(&f.path)))
            .collect();
        for (p, streams) in paths.iter().zip(assert_all_decode(&paths)) {
            assert!(streams.iter().any(|s| s == "video"), "{}", p.display());
        }
        for r in rows.iter().filter(|r| r.recovered) {
            let p = self.root.join(&r.files[0].path);
            assert!(probe(&p).stream("video").is_some(), "{}", p.display());
        }
        assert!(!self.log().contains("panicked"), "{}", self.log());
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn storage_faults_without_mqtt_are_reported_and_recording_resumes() {
    let Some(mut rig) = Rig::start("storage-faults", false) else {
        return;
    };
    for c in [&WRITE_EIO, &FSYNC_EIO, &ENOSPC, &READ_ONLY] {
        rig.case(c);
    }
    let log = rig.log();
    assert!(log.contains("storage alarm raised"), "{log}");
    assert!(log.contains("storage alarm cleared"), "{log}");
    rig.persistent_fault_stops_the_watchdog();
    rig.finish();
}

#[test]
fn storage_faults_with_mqtt_raise_and_clear_storage_alarms() {
    let Some(mut rig) = Rig::start("storage-faults-mqtt", true) else {
        return;
    };
    for c in [&WRITE_EIO, &FSYNC_EIO, &ENOSPC, &READ_ONLY, &STALL] {
        let sub = rig.sub.as_ref().unwrap();
        let before = sub.json_on(ALARMS).len();
        rig.case(c);
        let sub = rig.sub.as_ref().unwrap();
        let got = || sub.json_on(ALARMS)[before..].to_vec();
        assert!(
            sub.wait(S(10), |_| got().iter().any(|a| a["active"] == false)),
            "{}: no cleared storage.alarm: {:?}",
            c.name,
            got()
        );
        let got = got();
        let raised: Vec<&Value> = got.iter().filter(|a| a["active"] == true).collect();
        assert_eq!(raised.len(), 1, "{}: raised once: {got:?}", c.name);
        let a = raised[0];
        assert_eq!(a["alarm"], c.alarm, "{}: {a}", c.name);
        assert_eq!(a["stream"], "cam1", "{}: {a}", c.name);
        assert_eq!(a["kind"], "storage.alarm", "{a}");
        if let Some(errno) = c.errno {
            assert_eq!(a["errno"], errno, "{}: {a}", c.name);
            assert!(a["path"].as_str().unwrap().contains("cam1"), "{a}");
            assert!(a["op"].is_string(), "{a}");
        }
        assert!(a["since_ms"].is_i64(), "{a}");
        let cleared = got.iter().find(|a| a["active"] == false).unwrap();
        assert_eq!(cleared["stream"], "cam1", "{cleared}");
        assert!(cleared["lasted_ms"].as_u64().unwrap() > 0, "{cleared}");
    }
    rig.finish();
}
