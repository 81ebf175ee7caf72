//! End to end: real clock steps under a running recorder. libfaketime (Debian `faketime`)
//! is preloaded into `edgerec run` with an offset read from a file on every clock read
//! (`FAKETIME_NO_CACHE=1`); the test rewrites the file to step the wall clock while the
//! monotonic and boot clocks stay real (`DONT_FAKE_MONOTONIC=1`). The truth is the test's
//! own, unfaked wall clock: a segment's true start is its boot-clock start plus the real
//! wall − boot offset.
//!
//! - a recorder that boots at 1970 and is then stepped to now keeps everything with
//!   `max_age = "7d"` and retention every 2 s, re-stamps it to within 2 s of the truth
//!   (names stay), reports the step in `edgerec status`, and `index rebuild` restores the
//!   corrected times;
//! - +1 h then −1 h mid-recording: no overlap, nothing deleted, sequence and events in
//!   order, both `clock.step` events on mosquitto;
//! - kill -9 at 1970, step, restart: the recovered segment and the ones before it get the
//!   true times and stay.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mosquitto::{Broker, Sub};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// How far a re-stamped start may be from the truth.
const TOLERANCE_MS: i64 = 2_000;
const HOUR_MS: i64 = 3_600_000;

/// The wall clock of processes started with [`FakeTime::env`].
struct FakeTime {
    file: PathBuf,
}

impl FakeTime {
    /// Offset `offset_s` seconds from the real time.
    fn new(dir: &Path, offset_s: i64) -> FakeTime {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: install faketime (scripts/test-deps.sh does)"
        );
        let t = FakeTime {
            file: dir.join("faketime"),
        };
        t.set(offset_s);
        t
    }

    /// Step the clock: the preloaded library reads the file at every clock read. Written
    /// aside and renamed, so no read sees half a line.
    fn set(&self, offset_s: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_s:+}s\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            ("DONT_FAKE_MONOTONIC", "1".into()),
        ]
    }

    fn start(&self, cfg: &Path) -> Daemon {
        let env = self.env();
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Daemon::start_env(cfg, &refs)
    }
}

/// The real wall − boot clock offset (this process is not faked).
fn real_offset_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    now_ms() - (ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000)
}

/// A segment's true start: where it began on the boot clock, on the real wall clock.
fn truth(r: &SegmentRow) -> i64 {
    r.boot.as_ref().expect("a boot time on every new row").ms + real_offset_ms()
}

/// A config recording a looping clip in 2 s segments, `max_age = "7d"`, retention every 2 s.
fn config(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let root = dir.join("data");
    let src = clip(&ClipSpec::h264(6, 1));
    let mut t = TestConfig::new(&root);
    t.interval = "2s".into();
    t.fragment = "500ms".into();
    t.max_age = Some("7d".into());
    t.retention_interval = "2s".into();
    let toml = t
        .stream("cam", &format!("file:{}?loop=true", src.display()))
        .to_toml();
    let cfg = dir.join("edgerec.toml");
    std::fs::write(&cfg, format!("{toml}{extra}")).unwrap();
    (cfg, root)
}

fn closed(cfg: &Path) -> Vec<SegmentRow> {
    closed_of(&segments(cfg), "cam")
        .into_iter()
        .cloned()
        .collect()
}

/// Waits for `n` more closed segments than `have`.
fn wait_more(cfg: &Path, root: &Path, have: usize, n: usize, d: &mut Daemon) {
    assert!(
        wait_closed(cfg, root, "cam", have + n, Duration::from_secs(40)),
        "no {n} more segments; log:\n{}",
        d.log()
    );
}

/// Sorted by seq: each segment starts at or after the end of the one before.
fn assert_no_overlap(rows: &[SegmentRow]) {
    for w in rows.windows(2) {
        assert!(w[1].seq > w[0].seq, "seq out of order: {rows:#?}");
        assert!(
            w[1].start_ms >= w[0].end_ms,
            "#{} [{}, {}] overlaps #{} starting at {}",
            w[0].seq,
            w[0].start_ms,
            w[0].end_ms,
            w[1].seq,
            w[1].start_ms
        );
    }
}

fn assert_near_truth(r: &SegmentRow) {
    let t = truth(r);
    assert!(
        (r.start_ms - t).abs() <= TOLERANCE_MS,
        "#{} starts at {} ({}), true start {t}: {r:#?}",
        r.seq,
        r.start_ms,
        r.time_quality
    );
}

fn assert_files_decode(root: &Path, rows: &[SegmentRow]) {
    for r in rows {
        for f in &r.files {
            assert_decodes(&root.join(&f.path));
        }
    }
}

fn status_json(cfg: &Path) -> serde_json::Value {
    let out = cli(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        cfg.parent().unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn a_recorder_booted_at_1970_keeps_and_re_stamps_everything_when_the_clock_is_set() {
    let dir = workdir("clock-1970");
    let (cfg, root) = config(dir.path(), "");
    let ft = FakeTime::new(dir.path(), -now_ms() / 1000);
    let mut d = ft.start(&cfg);
    wait_more(&cfg, &root, 0, 3, &mut d);
    let before = closed(&cfg);
    for r in &before {
        assert!(r.start_ms < 86_400_000, "faked to 1970: {r:#?}");
        assert_eq!(r.time_quality, "unsynced");
    }
    ft.set(0);
    // Two segments on the new clock; retention runs every 2 s meanwhile, and once more.
    wait_more(&cfg, &root, before.len(), 2, &mut d);
    std::thread::sleep(Duration::from_secs(3));
    let st = status_json(&cfg);
    assert_eq!(st["clock"]["state"], "unsynced", "{st}");
    assert!(st["clock"]["steps"].as_u64() >= Some(1), "{st}");
    assert!(st["clock"]["corrections"].as_u64() >= Some(1), "{st}");
    let log = stop_clean(&mut d);
    assert!(log.contains("the wall clock was stepped"), "{log}");
    assert!(!log.contains("retention evicted"), "{log}");

    let rows = closed(&cfg);
    for b in &before {
        let r = rows
            .iter()
            .find(|r| r.seq == b.seq)
            .unwrap_or_else(|| panic!("#{} was deleted; log:\n{log}", b.seq));
        assert_eq!(r.time_quality, "corrected");
        assert_eq!(r.files[0].path, b.files[0].path, "names stay");
        assert!(r.files[0].path.contains("/1970/"), "{}", r.files[0].path);
    }
    for r in &rows {
        assert_near_truth(r);
    }
    assert_no_overlap(&rows);
    assert_index_matches_disk(&root, &segments(&cfg));
    assert_files_decode(&root, &rows);

    // The files hold the times as recorded; a rebuild puts the corrections back.
    let out = cli(
        &["index", "rebuild", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("re-stamped"), "{}", out.stdout);
    let rebuilt = closed(&cfg);
    for b in &before {
        let was = rows.iter().find(|r| r.seq == b.seq).unwrap();
        let now = rebuilt.iter().find(|r| r.seq == b.seq).unwrap();
        assert_eq!((now.start_ms, now.end_ms), (was.start_ms, was.end_ms));
        assert_eq!(now.time_quality, "corrected");
    }
}

#[test]
fn steps_of_an_hour_forward_and_back_mid_recording_keep_order_and_reach_the_broker() {
    let dir = workdir("clock-hour");
    let broker = Broker::start(dir.path());
    let sub = Sub::start(&broker.client_args(), "edgerec/e2e/events/#", None);
    let mqtt = format!("\n[mqtt]\nurl = \"{}\"\n", broker.url());
    let (cfg, root) = config(dir.path(), &mqtt);
    let ft = FakeTime::new(dir.path(), 0);
    let mut d = ft.start(&cfg);
    let mut seen = std::collections::BTreeSet::new();
    let mut record = |have: usize, d: &mut Daemon| {
        wait_more(&cfg, &root, have, 2, d);
        seen.extend(segment_files(&root));
        closed(&cfg).len()
    };
    let n = record(0, &mut d);
    ft.set(3_600);
    let n = record(n, &mut d);
    ft.set(0);
    record(n, &mut d);
    let steps = |m: &[(String, String)]| {
        m.iter()
            .filter(|(t, _)| t == "edgerec/e2e/events/clock.step")
            .count()
    };
    assert!(
        sub.wait(Duration::from_secs(20), |m| steps(m) >= 2),
        "clock.step events: {:?}; log:\n{}",
        sub.messages(),
        d.log()
    );
    let log = stop_clean(&mut d);

    let rows = closed(&cfg);
    assert_no_overlap(&rows);
    let left: std::collections::BTreeSet<String> = segment_files(&root).into_iter().collect();
    let gone: Vec<&String> = seen.iter().filter(|p| !left.contains(*p)).collect();
    assert!(gone.is_empty(), "deleted: {gone:?}; log:\n{log}");
    assert!(
        rows.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "a sequence number is missing: {rows:#?}"
    );
    assert_files_decode(&root, &rows);

    let events = sub.json_on("edgerec/e2e/events/clock.step");
    let deltas: Vec<i64> = events
        .iter()
        .filter_map(|e| e["delta_ms"].as_i64())
        .collect();
    assert_eq!(deltas.len(), 2, "{events:?}");
    assert!((deltas[0] - HOUR_MS).abs() <= TOLERANCE_MS, "{deltas:?}");
    assert!((deltas[1] + HOUR_MS).abs() <= TOLERANCE_MS, "{deltas:?}");
    // Every event, in the order received, in the order stored.
    let seqs: Vec<u64> = sub
        .messages()
        .iter()
        .filter(|(t, _)| t.starts_with("edgerec/e2e/events/"))
        .filter_map(|(_, p)| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|e| e["event_seq"].as_u64())
        .collect();
    assert!(seqs.len() > 4, "{seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
}

#[test]
fn a_recorder_killed_at_1970_and_restarted_after_the_step_keeps_true_times() {
    let dir = workdir("clock-kill");
    let (cfg, root) = config(dir.path(), "");
    let ft = FakeTime::new(dir.path(), -now_ms() / 1000);
    let mut d = ft.start(&cfg);
    wait_more(&cfg, &root, 0, 2, &mut d);
    // Into the next segment, then a crash.
    std::thread::sleep(Duration::from_millis(1_200));
    d.kill9();
    let before = closed(&cfg).len();
    ft.set(0);
    let mut d = ft.start(&cfg);
    wait_more(&cfg, &root, before + 1, 1, &mut d);
    let log = stop_clean(&mut d);
    assert!(!log.contains("retention evicted"), "{log}");

    let rows = closed(&cfg);
    let recovered: Vec<&SegmentRow> = rows.iter().filter(|r| r.recovered).collect();
    assert_eq!(recovered.len(), 1, "{rows:#?}");
    let first_new = recovered[0].seq;
    assert!(rows.iter().filter(|r| r.seq <= first_new).count() > before);
    for r in &rows {
        assert_near_truth(r);
        if r.seq <= first_new {
            assert_eq!(r.time_quality, "corrected", "{r:#?}");
        }
    }
    assert_no_overlap(&rows);
    assert_files_decode(&root, &rows);
}
