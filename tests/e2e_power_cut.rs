//! End to end: the power goes, over and over, while edgerec records onto the power-loss
//! filesystem (`tests/peers/powerloss_fs.py`), which keeps only what was fsynced.
//!
//! The real binary records a looping file camera (`cam`, real time) and an RTMP push from
//! ffmpeg (`live/push`) into 2 s segments of 500 ms fragments, as fMP4 and progressive MP4,
//! on the FUSE mount; it uploads to a `file://` directory outside the mount and publishes
//! its events to mosquitto, where `mosquitto_sub` records every one. `EDGEREC_POWER_CUTS`
//! times (default 50), after a recording moment drawn from a seed, on a slow disk every
//! other run (each fsync takes 100 ms): the recorder is frozen (SIGSTOP; the pusher is
//! killed), the power is cut (one cut in four tears the last pending write at a 4 KiB
//! boundary), the recorder is killed, and both start again on the same mount. Checked at
//! every cut (the definitions are in docs/reliability.md, "Power-cut test"):
//!
//! - a segment the broker was told about (`segment.closed`/`segment.recovered`; its files
//!   are hashed as the event arrives) still has every file, same size, same md5, and after
//!   the restart a closed row listing them;
//! - of each segment not yet confirmed when the power went, the cut loses at most one
//!   complete fragment (the one whose fdatasync had not returned), and recovery keeps every
//!   complete fragment the cut left, closing a working file as `recovered`;
//! - `edgerec index check` finds no damage in what the cut left (the index never knows
//!   more than the disk);
//! - ffmpeg decodes every file of every confirmed segment without a message and finds video
//!   and audio in it; ffprobe reads every recovered fMP4.
//!
//! At the end, after a clean stop and a run without streams that drains uploads and events:
//! every segment in the index has its `segment.closed` or `segment.recovered` event and its
//! `segment.uploaded` event at the broker, the outbox is empty, no (stream, seq) is
//! recorded twice, the index and files agree exactly, and the upload directory holds each
//! file of each segment once, with the same bytes.
//!
//! `EDGEREC_POWER_CUT_SEED=N` draws the same moments, tears and slow runs again (what the
//! recorder is doing at each moment still varies with timing); the seed is printed at the
//! start and in every failure, with the cut's number. Skipped, with a message, where
//! `/dev/fuse` or pyfuse3 is missing, unless `CI` is set.

mod common;
#[path = "e2e_power_cut/ledger.rs"]
mod ledger;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_power_cut/rig.rs"]
mod rig;

use std::collections::{BTreeMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgerec::storage::store::{SegmentRow, SegmentState, UploadState};

use common::powerloss::*;
use common::*;
use ledger::Ledger;
use mosquitto::{Broker, Sub};
use rig::{tail, Rig};

/// Power cuts in `make test`; `EDGEREC_POWER_CUTS` overrides it (`make soak`: 1000, with
/// `EDGEREC_SOAK_REPORT` naming a file, relative to the repository, for the summary).
const DEFAULT_CUTS: usize = 50;
/// How long every fsync takes on a slow disk (every other run, at random): an SD card's
/// fsync takes that long, and it widens the windows between a write and its fsync, where a
/// missing fsync shows.
const SLOW_FSYNC: f64 = 0.1;
/// Recording time between a start and the next cut, seconds (uniform).
const MOMENT: (f64, f64) = (1.0, 5.0);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number"))
    })
}

/// Runs `f`; a panic in it is raised again with `ctx` (the cut and the seed) in front and
/// the ends of the logs after it.
fn within<T>(ctx: &str, dir: &Path, fs: &PowerlossFs, f: impl FnOnce() -> T) -> T {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let log = |name: &str| {
                tail(
                    &std::fs::read_to_string(dir.join(name)).unwrap_or_default(),
                    60,
                )
            };
            panic!(
                "{ctx}: {msg}\n--- edgerec log (end) ---\n{}\n--- pusher log (end) ---\n{}\n--- power-loss peer log (end) ---\n{}",
                log("edgerec.log"),
                log("push.log"),
                tail(&fs.log(), 30)
            );
        }
    }
}

/// Reads the events arriving until `until` (a moment of recording).
fn record_for(ledger: &mut Ledger, sub: &Sub, root: &Path, until: Instant) {
    loop {
        ledger.take_events(sub, root);
        if Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn power_cuts_at_random_moments_lose_no_confirmed_segment_no_event_and_at_most_the_fragment_being_written(
) {
    let Some(fs) = PowerlossFs::start("power_cut") else {
        return;
    };
    let seed = env_u64("EDGEREC_POWER_CUT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let n = env_u64("EDGEREC_POWER_CUTS").map_or(DEFAULT_CUTS, |n| n as usize);
    eprintln!("power_cut: EDGEREC_POWER_CUT_SEED={seed} EDGEREC_POWER_CUTS={n}");
    let mut rng = Rng::new(seed);
    let began = Instant::now();

    // The root's own entry is made durable here; what edgerec creates in it is its business.
    let root = fs.path("data");
    std::fs::create_dir(&root).unwrap();
    sync_dir(&fs.mount).unwrap();
    let dir = workdir("power-cut");
    let broker = Broker::start(dir.path());
    let sub = Sub::start(&broker.client_args(), "edgerec/e2e/#", Some("power-cut"));
    let mut rig = Rig::new(dir.path(), &root, &broker.url());
    let mut ledger = Ledger::default();

    for cut in 1..=n {
        let ctx = format!("cut {cut} of {n} (EDGEREC_POWER_CUT_SEED={seed})");
        let moment = rng.range_f64(MOMENT.0, MOMENT.1);
        let tear = rng.next_u64() % 4 == 0;
        let slow = rng.next_u64() % 2 == 0;
        within(&ctx, dir.path(), &fs, || {
            fs.clear();
            if slow {
                fs.stall_fsync(SLOW_FSYNC, None);
            }
            rig.start().unwrap_or_else(|e| panic!("{e}"));
            let until = Instant::now() + Duration::from_secs_f64(moment);
            if cut > 1 {
                let rows = rig.segments().unwrap_or_else(|e| panic!("{e}"));
                ledger.after_recovery(&rows, &root);
            }
            record_for(&mut ledger, &sub, &root, until);
            assert!(rig.running(), "the recorder exited on its own");
            rig.freeze();
            let at_kill = ledger.unconfirmed_at_kill(&root);
            let report = if tear { fs.cut_tear(None) } else { fs.cut() };
            rig.kill();
            ledger.fig.cuts += 1;
            ledger.fig.tears += usize::from(tear);
            ledger.fig.slow += usize::from(slow);
            ledger.fig.dropped_bytes += report.dropped_bytes;
            ledger.fig.cuts_dropping += usize::from(report.dropped_bytes > 0);
            // Deliveries in flight at the cut: these files are hashed after it (and checked
            // against the sizes their event names).
            std::thread::sleep(Duration::from_millis(300));
            ledger.take_events(&sub, &root);

            let check = rig.index_check().unwrap_or_else(|e| panic!("{e}"));
            ledger.fig.damage += check.damage.len();
            ledger.fig.pending += check.pending.len();
            assert!(
                check.damage.is_empty(),
                "after the cut, edgerec index check finds damage (the index knows more than the disk):\n{}",
                check.damage.join("\n")
            );
            let lost_before = ledger.fig.fragments_lost;
            ledger.after_cut(&root, at_kill);
            // While the recorder is down, so that checking does not lengthen the recording.
            ledger.check_confirmed(&root);
            eprintln!(
                "power_cut: [{:.0} s] cut {cut}/{n} after {moment:.1} s{}{}: {} bytes dropped, {} fragment(s) lost, {} item(s) for recovery, {} segments confirmed",
                began.elapsed().as_secs_f64(),
                if slow { " on a slow disk" } else { "" },
                if tear { " (tear)" } else { "" },
                report.dropped_bytes,
                ledger.fig.fragments_lost - lost_before,
                check.pending.len(),
                ledger.confirmed.len()
            );
        });
    }

    let ctx = format!("after the last of {n} cuts (EDGEREC_POWER_CUT_SEED={seed})");
    let rows = within(&ctx, dir.path(), &fs, || {
        fs.clear();
        finish(&mut rig, &mut ledger, &sub, &root)
    });
    let f = &ledger.fig;
    let distinct = ledger.ids.len();
    let objects = files_under(&rig.uploads).len();
    let summary = format!(
        "power_cut: SUMMARY seed {seed}: {} cuts ({} torn, {} on a slow disk, {} dropping unsynced data) in {:.0} s; \
         {} unconfirmed segments at a cut: {} fragment(s) lost ({} at most per segment, {} bytes), {} emptied, \
         {} working files recovered (no complete fragment lost by recovery); {} unsynced bytes dropped; \
         index check after the cuts: {} damage, {} items left for recovery; \
         {} segments in the index, each with its events, {} files decoded ({} recovered fMP4s also read by ffprobe); \
         events: {} delivered, {} distinct ids, {} duplicates, 0 lost; uploads: {} objects, each file once",
        f.cuts,
        f.tears,
        f.slow,
        f.cuts_dropping,
        began.elapsed().as_secs_f64(),
        f.unconfirmed,
        f.fragments_lost,
        f.max_fragments_lost,
        f.bytes_lost,
        f.emptied,
        f.recovered,
        f.dropped_bytes,
        f.damage,
        f.pending,
        rows.len(),
        ledger.decoded.len(),
        ledger.probed,
        ledger.messages,
        distinct,
        ledger.duplicates(),
        objects
    );
    eprintln!("{summary}");
    // `make soak` keeps the figures (docs/reliability.md quotes them).
    if let Some(report) = std::env::var_os("EDGEREC_SOAK_REPORT") {
        let path = repo().join(report);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{summary}\n")).unwrap();
    }
    drop(rig);
    drop(sub);
    drop(broker);
    fs.unmount();
}

/// After the last cut: start again and check recovery, record a little, stop cleanly, then
/// drain uploads and events with a run without streams, and check what is left against the
/// index, the broker and the upload directory. Returns the final rows.
fn finish(rig: &mut Rig, ledger: &mut Ledger, sub: &Sub, root: &Path) -> Vec<SegmentRow> {
    rig.start().unwrap_or_else(|e| panic!("{e}"));
    let until = Instant::now() + Duration::from_secs(3);
    let rows = rig.segments().unwrap_or_else(|e| panic!("{e}"));
    ledger.after_recovery(&rows, root);
    record_for(ledger, sub, root, until);
    rig.stop().unwrap_or_else(|e| panic!("clean stop: {e}"));

    let drain = rig.drain_cfg.clone();
    rig.start_recorder(&drain)
        .unwrap_or_else(|e| panic!("drain run: {e}"));
    let from = sub.messages().len();
    rig.upload_now(&drain).unwrap_or_else(|e| panic!("{e}"));
    let rows = rig.segments().unwrap_or_else(|e| panic!("{e}"));
    let closed: Vec<&SegmentRow> = rows
        .iter()
        .filter(|r| r.state == SegmentState::Closed)
        .collect();
    assert_eq!(
        closed.len(),
        rows.len(),
        "rows not closed after a clean stop: {:?}",
        rows.iter()
            .filter(|r| r.state != SegmentState::Closed)
            .collect::<Vec<_>>()
    );
    let missing = |ledger: &Ledger| -> Vec<String> {
        let mut out = Vec::new();
        for r in &closed {
            let id = |fact: &str| format!("e2e-seg-{}-{}-{fact}", r.stream, r.seq);
            if !ledger.ids.contains_key(&id("closed")) && !ledger.ids.contains_key(&id("recovered"))
            {
                out.push(id("closed|recovered"));
            }
            if !ledger.ids.contains_key(&id("uploaded")) {
                out.push(id("uploaded"));
            }
        }
        out
    };
    let outbox_empty = |sub: &Sub| {
        sub.messages()[from..]
            .iter()
            .filter(|(t, _)| t == "edgerec/e2e/telemetry")
            .filter_map(|(_, p)| serde_json::from_str::<serde_json::Value>(p).ok())
            .any(|v| v["outbox"]["pending"] == 0 && v["outbox"]["dropped"] == 0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(missing(ledger).is_empty() && outbox_empty(sub)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        ledger.take_events(sub, root);
    }
    ledger.take_events(sub, root);
    let lost = missing(ledger);
    assert!(
        lost.is_empty(),
        "{} event(s) of segments in the index never reached the broker: {lost:?}",
        lost.len()
    );
    assert!(
        outbox_empty(sub),
        "no telemetry of the drain run reports an empty outbox without drops"
    );
    let drops = sub.outbox_drops("edgerec/e2e/telemetry");
    assert!(drops.is_empty(), "the outbox dropped events: {drops:?}");
    rig.stop().unwrap_or_else(|e| panic!("drain run: {e}"));

    let check = rig.index_check().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        check.agrees(),
        "after a clean stop, the index and the files disagree:\n{check}"
    );
    let mut seen = HashSet::new();
    for r in &rows {
        assert!(
            seen.insert((r.stream.clone(), r.seq)),
            "{} #{} is recorded twice",
            r.stream,
            r.seq
        );
    }
    ledger.confirmed_intact(root);
    ledger.decode_rows(&rows, root);
    uploaded_once(&rows, root, &rig.uploads);
    rows
}

/// The upload directory holds exactly the files of the segments, each once, under the key
/// its row's upload URL names, with the same bytes.
fn uploaded_once(rows: &[SegmentRow], root: &Path, uploads: &Path) {
    let mut expected: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for r in rows {
        let UploadState::Uploaded { url, .. } = &r.upload else {
            panic!("{} #{} is not uploaded: {:?}", r.stream, r.seq, r.upload);
        };
        let first = Path::new(
            url.strip_prefix("file://")
                .unwrap_or_else(|| panic!("upload URL {url}")),
        );
        for f in &r.files {
            let key = first.with_file_name(f.path.file_name().unwrap());
            assert!(
                expected.insert(key.clone(), root.join(&f.path)).is_none(),
                "two files upload to {}",
                key.display()
            );
        }
    }
    let stored: HashSet<PathBuf> = files_under(uploads)
        .into_iter()
        .map(|p| uploads.join(p))
        .collect();
    let mut missing: Vec<&PathBuf> = expected.keys().filter(|k| !stored.contains(*k)).collect();
    let mut extra: Vec<&PathBuf> = stored
        .iter()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    missing.sort();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the upload directory does not hold each segment file once: missing {missing:?}, extra {extra:?}"
    );
    let copies: Vec<PathBuf> = expected.keys().cloned().collect();
    let locals: Vec<PathBuf> = expected.values().cloned().collect();
    for ((copy, a), b) in copies
        .iter()
        .zip(md5_files(&copies))
        .zip(md5_files(&locals))
    {
        assert_eq!(a, b, "{} differs from the segment file", copy.display());
    }
}

/// The storage root `edgerec init` makes, and the index the first command that opens the
/// store creates, survive a power cut right after: their directory entries are fsynced
/// (each in its parent), not only their contents.
#[test]
fn a_root_made_by_init_and_its_index_survive_a_power_cut_right_after() {
    let Some(fs) = PowerlossFs::start("power_cut_root") else {
        return;
    };
    let dir = workdir("power-cut-root");
    // Under a directory the test made durable: edgerec creates `root` and `root/data`.
    sync_dir(&fs.mount).unwrap();
    let root = fs.path("srv/data");
    let cfg = dir.path().join("edgerec.toml");
    let toml = TestConfig {
        require_marker: true,
        ..TestConfig::new(&root)
    }
    .to_toml()
        + &format!(
            "\n[upload]\n[[upload.targets]]\nname = \"vod\"\nurl = \"file://{}\"\n",
            dir.path().join("uploads").display()
        );
    std::fs::write(&cfg, toml).unwrap();
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--config", cfg.to_str().unwrap()]);
        let out = cli(&a, dir.path());
        assert_eq!(
            out.code, 0,
            "edgerec {args:?}: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    };

    run(&["init"]);
    fs.cut();
    assert!(
        root.join(".edgerec-root").exists(),
        "the root `edgerec init` made, and its marker, are gone after a power cut: {:?}",
        fs.durable()
    );

    // No recorder runs: the pause is written to the index, in a durable commit.
    run(&["upload", "--pause"]);
    fs.cut();
    assert!(
        root.join("index.redb").exists(),
        "the index is gone after a power cut: {:?}",
        fs.durable()
    );
    let report: serde_json::Value = serde_json::from_str(&run(&["uploads", "--json"])).unwrap();
    assert_eq!(report["paused"], true, "the pause was lost: {report}");
    fs.unmount();
}
