//! Link manners and retention, against moto: the bandwidth cap holds on the wire, nothing
//! is uploaded outside the time windows (until `upload --now`), and on a small quota
//! retention either deletes un-uploaded segments (`delete_oldest`, with an
//! `evicted_unsynced` record) or stops recording new ones (`deny_new`).

mod common;
#[path = "e2e_upload/support.rs"]
mod support;

use std::time::Duration;

use common::{assert_decodes, clip, md5_file, wait_until, workdir, ClipSpec, Daemon, TestConfig};
use edgerec::store::UploadState;
use support::*;

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

#[test]
fn the_measured_rate_stays_within_ten_percent_of_the_cap() {
    let dir = workdir("upload-bandwidth");
    let s3 = S3Peer::start(&["vod"]);
    let src = noise_clip(dir.path(), 6);
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "60s".into();
    base = base.stream("big", &format!("file:{}?realtime=false", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "bandwidth = \"1MiB/s\"\npart_size = \"5MiB\"\n",
            &s3_target(&s3.endpoint(), "vod", "{stream}/{file}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    let rows = wait_rows(&cfg, Duration::from_secs(40), |rows| {
        closed(rows).first().is_some_and(|r| url_of(r).is_some())
    });
    d.terminate(Duration::from_secs(20));
    let seg = closed(&rows)[0];
    let name = seg.files[0].path.file_name().unwrap().to_str().unwrap();
    let path = format!("/vod/rec/big/{name}");
    let puts: Vec<serde_json::Value> = s3
        .requests()
        .into_iter()
        .filter(|r| {
            r["method"] == "PUT" && r["path"] == path.as_str() && r["bytes"].as_u64() > Some(0)
        })
        .collect();
    let bytes: u64 = puts.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert_eq!(bytes, seg.bytes, "{puts:?}");
    let local = dir.path().join("data").join(&seg.files[0].path);
    assert_decodes(&local);
    let remote = s3
        .object("vod", &format!("rec/big/{name}"))
        .expect("object");
    assert_eq!(md5(&remote), md5_file(&local));
    assert!(
        bytes > 6 << 20,
        "only {bytes} bytes: the test needs a longer transfer"
    );
    let t0 = puts
        .iter()
        .map(|r| r["t_start"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    let t1 = puts
        .iter()
        .map(|r| r["t_end"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let rate = bytes as f64 / (t1 - t0);
    let cap = (1 << 20) as f64;
    assert!(
        (rate - cap).abs() <= cap * 0.10,
        "measured {rate:.0} B/s against a cap of {cap} B/s ({bytes} bytes in {:.2}s)",
        t1 - t0
    );
}

#[test]
fn outside_the_window_nothing_is_uploaded_until_upload_now() {
    let dir = workdir("upload-window");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(4, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let upload = format!("windows = [\"{}\"]\n", window_not_now());
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            &upload,
            &s3_target(&s3.endpoint(), "vod", "{stream}/{file}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(30), |rows| {
        closed(rows).len() >= 2
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        s3.requests().iter().all(|r| r["method"] != "PUT"),
        "uploaded outside the window: {:?}",
        s3.requests()
    );
    let rows = support::rows(&cfg);
    assert!(closed(&rows)
        .iter()
        .all(|r| matches!(r.upload, UploadState::Pending { .. })));
    // `edgerec uploads` shows the backlog.
    let out = common::cli(&["uploads", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("segment(s)") && out.stdout.contains("state: running"),
        "{}",
        out.stdout
    );
    let out = common::cli(
        &["uploads", "--config", cfg.to_str().unwrap(), "--json"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["backlog"]["count"].as_u64().unwrap() >= 2, "{v}");
    // `upload --now` ignores the window and drains the backlog.
    let out = upload_now(&cfg, "40s");
    assert_eq!(out.code, 0, "upload --now: {}\n{}", out.stderr, d.log());
    let before_stop = support::rows(&cfg);
    d.terminate(Duration::from_secs(20));
    let rows = support::rows(&cfg);
    for r in closed(&before_stop) {
        let now = rows.iter().find(|x| x.id == r.id).unwrap();
        assert!(
            url_of(now).is_some()
                || matches!(r.upload, UploadState::Pending { .. }) && r.closed_at_ms > 0
        );
    }
    assert!(closed(&rows).iter().filter(|r| url_of(r).is_some()).count() >= 2);
    for r in closed(&rows).iter().filter(|r| url_of(r).is_some()) {
        let local = dir.path().join("data").join(&r.files[0].path);
        assert_decodes(&local);
        let name = local.file_name().unwrap().to_str().unwrap().to_string();
        let remote = s3
            .object("vod", &format!("rec/cam/{name}"))
            .expect("object");
        assert_eq!(md5(&remote), md5_file(&local));
    }
    // Offline, `edgerec uploads` reads the index.
    let out = common::cli(&["uploads", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("recorder not running"),
        "{}",
        out.stdout
    );
}

fn small_quota(name: &str, policy: &str) -> (tempfile::TempDir, S3Peer, std::path::PathBuf) {
    let dir = workdir(name);
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(8, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base.max_bytes = "600KB".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let upload = format!("windows = [\"{}\"]\n", window_not_now());
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            &upload,
            &s3_target(&s3.endpoint(), "vod", "{stream}/{file}"),
            Some(policy),
        ),
    );
    (dir, s3, cfg)
}

#[test]
fn delete_oldest_evicts_unsynced_segments_and_records_it() {
    let (_dir, _s3, cfg) = small_quota("upload-evict", "delete_oldest");
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("evicted_unsynced")),
        "no evicted_unsynced record:\n{}",
        d.log()
    );
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("evicted_unsynced"))
        .unwrap();
    for field in ["stream=cam", "start_ms=", "end_ms=", "bytes="] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let rows = support::rows(&cfg);
    let total: u64 = closed(&rows).iter().map(|r| r.bytes).sum();
    for r in closed(&rows) {
        assert_decodes(&_dir.path().join("data").join(&r.files[0].path));
    }
    assert!(total <= 600_000, "quota not kept: {total}");
    d.terminate(Duration::from_secs(20));
}

#[test]
fn deny_new_keeps_unsynced_segments_and_stops_recording_until_uploads_free_space() {
    let (_dir, _s3, cfg) = small_quota("upload-deny", "deny_new");
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("not recording: storage is full")),
        "recording was not denied:\n{}",
        d.log()
    );
    let log = d.log();
    assert!(log.contains("alarm=\"storage_full_unsynced\""), "{log}");
    assert!(
        !log.contains("evicted_unsynced"),
        "an unsynced segment was deleted:\n{log}"
    );
    let rows = support::rows(&cfg);
    let seqs: Vec<u64> = closed(&rows).iter().map(|r| r.seq).collect();
    assert!(
        seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
        "segments went missing: {seqs:?}"
    );
    for r in closed(&rows) {
        assert_decodes(&_dir.path().join("data").join(&r.files[0].path));
    }
    // Uploading frees space: uploaded segments are evicted and recording resumes.
    let last = *seqs.last().unwrap();
    let out = upload_now(&cfg, "40s");
    assert_eq!(out.code, 0, "upload --now: {}\n{}", out.stderr, d.log());
    assert!(
        wait_until(Duration::from_secs(20), || d
            .log()
            .contains("storage has room again")),
        "the deny flag was not lifted:\n{}",
        d.log()
    );
    wait_rows(&cfg, Duration::from_secs(20), |rows| {
        closed(rows).iter().any(|r| r.seq > last)
    });
    d.terminate(Duration::from_secs(20));
}
