//! The compressed-time soak (`make soak`, not `cargo test`: it needs the `soak` feature):
//! a week of media through the real binary in well under an hour, watching the recorder's
//! resources over time.
//!
//! Two looping file cameras replay a small H.264 + AAC clip as fast as they can
//! (`realtime=false`; 160x120, 5 fps) into 10-minute segments of 10 s fragments, fMP4 and progressive MP4,
//! under a 200 MiB quota, so retention evicts all the time; events go to mosquitto. Every
//! [`SAMPLE`] the test records the recorder's RSS (and high-water mark), open file
//! descriptors, threads, the index's size, the bytes under the root and the rows in the
//! index, until each stream has recorded `EDGEREC_SOAK_MEDIA_HOURS` (default 168) hours of
//! media. Then it stops cleanly and checks:
//!
//! - nothing grows without bound: RSS, fds and threads in the last quarter of the run stay
//!   within a margin of the first quarter's peaks, and the index stops growing once
//!   retention holds the row count (its size at the end within 2x of the first quarter's
//!   peak, plus 1 MiB);
//! - the quota holds at every sample (one segment per stream of slack for the open ones);
//! - every segment recorded has its `segment.closed` event at the broker, every evicted one
//!   its `segment.evicted`, the outbox dropped nothing;
//! - the index and the files agree, and ffmpeg decodes the newest segments without a
//!   message.
//!
//! The samples go to `target/soak/time.csv` and a summary to `target/soak/time.md` (the
//! figures in docs/reliability.md come from there).

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mosquitto::{Broker, Sub};

/// How often the recorder's resources are sampled.
const SAMPLE: Duration = Duration::from_secs(5);
/// Segment length (media time); the media clock is the segment count times this.
const INTERVAL_S: u64 = 600;
const QUOTA: u64 = 200 << 20;
const STREAMS: [&str; 2] = ["cam1", "cam2"];
/// The whole run must end within this (wall time).
const DEADLINE: Duration = Duration::from_secs(3 * 3600);

#[derive(Clone, Debug, Default)]
struct Sample {
    t_s: f64,
    media_h: f64,
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
    threads: u64,
    index_bytes: u64,
    root_bytes: u64,
    rows: usize,
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}"))
}

fn dir_bytes(root: &Path) -> u64 {
    files_under(root)
        .iter()
        .filter_map(|p| std::fs::metadata(root.join(p)).ok())
        .map(|m| m.len())
        .sum()
}

fn peak(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> u64 {
    samples.iter().map(f).max().unwrap_or(0)
}

#[test]
fn a_week_of_media_in_compressed_time_keeps_resources_flat_and_loses_nothing() {
    let hours: f64 = std::env::var("EDGEREC_SOAK_MEDIA_HOURS")
        .ok()
        .map(|s| s.parse().expect("EDGEREC_SOAK_MEDIA_HOURS is a number"))
        .unwrap_or(168.0);
    let dir = workdir("soak-time");
    let root = dir.path().join("data");
    let broker = Broker::start(dir.path());
    let sub = Sub::start(&broker.client_args(), "edgerec/e2e/#", Some("soak-time"));
    // Small pictures, 5 fps: the point is the segment and event count, not the bitrate (the
    // clip is still ~150 kbit/s: a week of two streams writes ~40 GB, fMP4 and MP4).
    let cam = clip(&ClipSpec {
        width: 160,
        height: 120,
        fps: 5,
        gop: 10,
        ..ClipSpec::h264(60, 2)
    });
    let mut cfg = TestConfig {
        max_bytes: format!("{}MiB", QUOTA >> 20),
        min_free: "0".into(),
        retention_interval: "2s".into(),
        formats: vec!["fmp4".into(), "mp4".into()],
        interval: format!("{INTERVAL_S}s"),
        fragment: "10s".into(),
        naming: "{stream}/{YYYY}/{MM}/{DD}/{stream}-{seq}".into(),
        ..TestConfig::new(&root)
    };
    for s in STREAMS {
        cfg = cfg.stream(
            s,
            &format!("file:{}?loop=true&realtime=false", cam.display()),
        );
    }
    let toml = cfg.to_toml()
        + &format!(
            "\n[mqtt]\nurl = \"{}\"\ntelemetry_interval = \"5s\"\n",
            broker.url()
        );
    let cfg_path = dir.path().join("edgerec.toml");
    std::fs::write(&cfg_path, toml).unwrap();

    let mut daemon = Daemon::start(&cfg_path);
    let pid = daemon.pid();
    let began = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut max_seq: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        std::thread::sleep(SAMPLE);
        assert!(
            daemon.running(),
            "edgerec exited during the soak:\n{}",
            daemon.log()
        );
        let rows = segments(&cfg_path);
        for r in rows.iter().filter(|r| r.files.len() == 2) {
            let m = max_seq.entry(r.stream.clone()).or_default();
            *m = (*m).max(r.seq);
        }
        let media_s = STREAMS
            .iter()
            .map(|s| max_seq.get(*s).copied().unwrap_or(0))
            .min()
            .unwrap()
            * INTERVAL_S;
        let s = Sample {
            t_s: began.elapsed().as_secs_f64(),
            media_h: media_s as f64 / 3600.0,
            rss_kib: proc_status(pid, "VmRSS:"),
            hwm_kib: proc_status(pid, "VmHWM:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .count(),
            threads: proc_status(pid, "Threads:"),
            index_bytes: std::fs::metadata(root.join("index.redb"))
                .map(|m| m.len())
                .unwrap_or(0),
            root_bytes: dir_bytes(&root),
            rows: rows.len(),
        };
        eprintln!("soak_time: {s:?}");
        assert!(
            s.root_bytes <= QUOTA + 2 * STREAMS.len() as u64 * (16 << 20),
            "the root holds {} bytes, over the {QUOTA}-byte quota (plus the open segments)",
            s.root_bytes
        );
        let done = s.media_h >= hours;
        samples.push(s);
        if done {
            break;
        }
        assert!(
            began.elapsed() < DEADLINE,
            "only {:.1} h of media after {DEADLINE:?}",
            samples.last().unwrap().media_h
        );
    }
    let wall = began.elapsed();
    stop_clean(&mut daemon);

    // Nothing grows without bound.
    let q = samples.len() / 4;
    assert!(q >= 2, "too few samples ({}) to compare", samples.len());
    let (first, last) = (&samples[..q], &samples[samples.len() - q..]);
    let rss = (peak(first, |s| s.rss_kib), peak(last, |s| s.rss_kib));
    assert!(
        rss.1 <= rss.0 + rss.0 / 4 + 2048,
        "RSS grew: first quarter peak {} KiB, last quarter peak {} KiB",
        rss.0,
        rss.1
    );
    let fds = (peak(first, |s| s.fds as u64), peak(last, |s| s.fds as u64));
    assert!(
        fds.1 <= fds.0 + 2,
        "open fds grew: {} then {}",
        fds.0,
        fds.1
    );
    let threads = (peak(first, |s| s.threads), peak(last, |s| s.threads));
    assert!(
        threads.1 <= threads.0 + 2,
        "threads grew: {} then {}",
        threads.0,
        threads.1
    );
    let index = (
        peak(first, |s| s.index_bytes),
        samples.last().unwrap().index_bytes,
    );
    assert!(
        index.1 <= 2 * index.0 + (1 << 20),
        "the index grew: {} bytes in the first quarter, {} at the end",
        index.0,
        index.1
    );

    // Every segment's events reached the broker; the index and the files agree.
    let rows = segments(&cfg_path);
    assert_index_matches_disk(&root, &rows);
    let ids: HashSet<String> = sub
        .messages()
        .iter()
        .filter(|(t, _)| t.starts_with("edgerec/e2e/events/"))
        .filter_map(|(_, p)| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    let present: HashSet<(String, u64)> = rows.iter().map(|r| (r.stream.clone(), r.seq)).collect();
    let mut missing = Vec::new();
    let mut evicted = 0;
    for s in STREAMS {
        let last = rows
            .iter()
            .filter(|r| r.stream == s)
            .map(|r| r.seq)
            .max()
            .unwrap_or(0);
        for seq in 0..=last {
            let id = |fact: &str| format!("e2e-seg-{s}-{seq}-{fact}");
            if !ids.contains(&id("closed")) && !ids.contains(&id("recovered")) {
                missing.push(id("closed"));
            }
            if !present.contains(&(s.to_string(), seq)) {
                evicted += 1;
                if !ids.contains(&id("evicted")) {
                    missing.push(id("evicted"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} event(s) never reached the broker, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let drops = sub.outbox_drops("edgerec/e2e/telemetry");
    assert!(drops.is_empty(), "the outbox dropped events: {drops:?}");
    let newest: Vec<PathBuf> = STREAMS
        .iter()
        .flat_map(|s| closed_of(&rows, s).into_iter().rev().take(3))
        .flat_map(|r| r.files.iter().map(|f| root.join(&f.path)))
        .collect();
    assert_all_decode(&newest);

    write_report(&samples, wall, hours, evicted, rows.len(), ids.len());
}

fn write_report(
    samples: &[Sample],
    wall: Duration,
    hours: f64,
    evicted: usize,
    rows: usize,
    events: usize,
) {
    let out = repo().join("target/soak");
    std::fs::create_dir_all(&out).unwrap();
    let mut csv =
        String::from("t_s,media_h,rss_kib,hwm_kib,fds,threads,index_bytes,root_bytes,rows\n");
    for s in samples {
        writeln!(
            csv,
            "{:.0},{:.2},{},{},{},{},{},{},{}",
            s.t_s,
            s.media_h,
            s.rss_kib,
            s.hwm_kib,
            s.fds,
            s.threads,
            s.index_bytes,
            s.root_bytes,
            s.rows
        )
        .unwrap();
    }
    std::fs::write(out.join("time.csv"), csv).unwrap();
    let at = |frac: f64| &samples[((samples.len() - 1) as f64 * frac) as usize];
    let mut md = format!(
        "Compressed-time soak: {hours:.0} h of media on each of {} streams in {:.0} min \
         ({:.0}x real time); {} segments evicted by the quota, {rows} in the index at the end, \
         {events} distinct events at the broker, none missing.\n\n\
         | media time | RSS (KiB) | peak RSS (KiB) | fds | threads | index (bytes) | root (bytes) | rows |\n\
         |---|---|---|---|---|---|---|---|\n",
        STREAMS.len(),
        wall.as_secs_f64() / 60.0,
        hours * 3600.0 / wall.as_secs_f64(),
        evicted,
    );
    for frac in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let s = at(frac);
        writeln!(
            md,
            "| {:.0} h | {} | {} | {} | {} | {} | {} | {} |",
            s.media_h, s.rss_kib, s.hwm_kib, s.fds, s.threads, s.index_bytes, s.root_bytes, s.rows
        )
        .unwrap();
    }
    std::fs::write(out.join("time.md"), &md).unwrap();
    eprintln!("soak_time: SUMMARY\n{md}");
}
