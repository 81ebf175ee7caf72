//! Queue order and concurrency against moto: with `concurrency = 2` two transfers run at
//! once (their bodies overlap in time at the server); with `order = "newest_first"` the
//! backlog goes newest first, then the older ones.
//!
//! Both record a backlog with uploads paused, take the clip away (the stream task would
//! replay it), then resume.

mod common;
#[path = "e2e_upload/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use common::{assert_decodes, clip, md5_file, wait_until, workdir, ClipSpec, Daemon, TestConfig};
use support::*;

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

fn cli(args: &[&str], cfg: &Path) -> common::CliOutput {
    let mut a = args.to_vec();
    a.extend(["--config", cfg.to_str().unwrap()]);
    common::cli(&a, cfg.parent().unwrap())
}

/// Record a backlog of at least `n` segments of the stream's clip with uploads paused, and
/// wait until the stream has ended (a file without `loop` plays once). Returns the running
/// recorder.
fn paused_backlog(dir: &Path, cfg: &Path, n: usize) -> Daemon {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let out = cli(&["upload", "--pause"], cfg);
    assert_eq!(out.code, 0, "{out:?}");
    let d = Daemon::start(cfg);
    wait_rows(cfg, Duration::from_secs(30), |rows| closed(rows).len() >= n);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = common::cli(
                &["status", "--config", cfg.to_str().unwrap(), "--json"],
                dir,
            );
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
            v["streams"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|s| s["state"] != "recording" && s["state"] != "connecting")
            })
        }),
        "the stream kept recording; log:\n{}",
        d.log()
    );
    d
}

/// Every closed segment is on the server, identical.
fn assert_all_stored(dir: &Path, cfg: &Path, s3: &S3Peer, stream: &str) {
    let rows = rows(cfg);
    for r in closed(&rows) {
        assert!(url_of(r).is_some(), "{r:?}");
        let local = dir.join("data").join(&r.files[0].path);
        let name = local.file_name().unwrap().to_str().unwrap().to_string();
        let remote = s3
            .object("vod", &format!("rec/{stream}/{name}"))
            .expect("object");
        assert_eq!(md5(&remote), md5_file(&local));
        assert_decodes(&local);
    }
}

#[test]
fn with_concurrency_two_two_transfers_run_at_once() {
    let dir = workdir("upload-concurrency");
    let s3 = S3Peer::start(&["vod"]);
    // 2.4 s of 320x240 noise: two segments of about 3 MB.
    let src = noise_clip_sized(dir.path(), 60, "320x240");
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "1s".into();
    base = base.stream("noise", &format!("file:{}?realtime=false", src.display()));
    // The cap makes each transfer take a while (1.5 s or more).
    let upload = "concurrency = 2\nbandwidth = \"2MiB/s\"\n";
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let cfg = write(
        dir.path(),
        &config_with_upload(&base, upload, &target, None),
    );
    let mut d = paused_backlog(dir.path(), &cfg, 2);
    let backlog = closed(&rows(&cfg)).len();
    assert!(closed(&rows(&cfg)).iter().all(|r| r.bytes > 2_000_000));
    let out = cli(&["upload", "--resume"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    wait_rows(&cfg, Duration::from_secs(60), all_uploaded);
    d.terminate(Duration::from_secs(20));
    let puts: Vec<(f64, f64)> = s3
        .requests()
        .iter()
        .filter(|r| r["method"] == "PUT" && r["status"] == 200)
        .map(|r| (r["t_start"].as_f64().unwrap(), r["t_end"].as_f64().unwrap()))
        .collect();
    assert_eq!(puts.len(), backlog, "one PUT per segment");
    // Two bodies were arriving at the same time.
    let overlap = puts
        .iter()
        .enumerate()
        .any(|(i, a)| puts.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlap, "transfers ran one after the other: {puts:?}");
    assert_all_stored(dir.path(), &cfg, &s3, "noise");
}

#[test]
fn newest_first_uploads_the_newest_segment_then_backfills_the_older_ones() {
    let dir = workdir("upload-newest-first");
    let s3 = S3Peer::start(&["vod"]);
    let src = dir.path().join("clip.mp4");
    std::fs::copy(clip(&ClipSpec::h264(8, 1)), &src).unwrap();
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let upload = "order = \"newest_first\"\n";
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let cfg = write(
        dir.path(),
        &config_with_upload(&base, upload, &target, None),
    );
    let mut d = paused_backlog(dir.path(), &cfg, 4);
    let out = cli(&["upload", "--resume"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    wait_rows(&cfg, Duration::from_secs(60), all_uploaded);
    d.terminate(Duration::from_secs(20));
    let rows = rows(&cfg);
    // The order the server stored them in, as the segments' start times.
    let start_of = |path: &str| {
        closed(&rows)
            .iter()
            .find(|r| path.ends_with(r.files[0].path.file_name().unwrap().to_str().unwrap()))
            .map(|r| r.start_ms)
            .unwrap_or_else(|| panic!("{path} is no segment"))
    };
    let order: Vec<i64> = s3
        .requests()
        .iter()
        .filter(|r| r["method"] == "PUT" && r["status"] == 200)
        .map(|r| start_of(r["path"].as_str().unwrap()))
        .collect();
    assert!(order.len() >= 4, "{order:?}");
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "not newest first, then older: {order:?}"
    );
    assert_all_stored(dir.path(), &cfg, &s3, "cam");
}
