//! Link manners and retention, against moto: the bandwidth cap holds on the wire, nothing
//! is uploaded outside the time windows (until `upload --now`), and on a small quota
//! retention evicts uploaded segments first, then either deletes un-uploaded segments
//! (`delete_oldest`, with an `evicted_unsynced` record) or stops recording new ones
//! (`deny_new`).

mod common;
#[path = "e2e_upload/support.rs"]
mod support;

use std::time::Duration;

use common::{assert_decodes, clip, md5_file, wait_until, workdir, ClipSpec, Daemon, TestConfig};
use edgerec::storage::store::UploadState;
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
    // Looping in real time: the quota fills after about three segments, and the source goes
    // on, so a denied start and the resumption after uploads both happen.
    base = base.stream("cam", &format!("file:{}?loop=true", src.display()));
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

#[test]
fn a_newer_uploaded_segment_is_evicted_before_an_older_one_waiting_for_upload() {
    let dir = workdir("upload-evict-uploaded-first");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(6, 1));
    let root = dir.path().join("data");
    // Stream "old" uploads to a bucket that does not exist (its segments stay pending),
    // stream "new" to one that does. Run 1 records "old", run 2 records "new".
    let config = |stream: &str, source: &str| {
        let target = |name: &str, bucket: &str| {
            format!(
                "[[upload.targets]]\nname = \"{name}\"\n{}",
                s3_target(&s3.endpoint(), bucket, "{stream}/{file}")
            )
        };
        let template = |name: &str| {
            format!(
                "[[templates]]\nname = \"{name}\"\nformats = [\"fmp4\"]\ninterval = \"2s\"\nfragment = \"500ms\"\nnaming = \"{{stream}}/{{stream}}-{{seq}}\"\nupload = \"{name}\"\n\n[[rules]]\ntemplate = \"{name}\"\nstream = \"{name}\"\n\n"
            )
        };
        format!(
            "device_id = \"e2e\"\n\n[storage]\nroot = {root:?}\nmax_bytes = \"1300KB\"\nmin_free = \"1MiB\"\nretention_interval = \"1s\"\nrequire_marker = false\npolicy = \"delete_oldest\"\n\n{}{}[[streams]]\nname = \"{stream}\"\nsource = \"{source}\"\n\n[upload]\n{}\n{}",
            template("old"),
            template("new"),
            target("old", "missing"),
            target("new", "vod"),
        )
    };
    let cfg = write(
        dir.path(),
        &config("old", &format!("file:{}", src.display())),
    );
    let mut d = Daemon::start(&cfg);
    // The 6 s clip, played once in real time: three 2 s segments, none uploadable.
    let rows = wait_rows(&cfg, Duration::from_secs(40), |rows| {
        closed(rows).len() >= 3 && d.log().contains("alarm=\"upload\"")
    });
    d.terminate(Duration::from_secs(20));
    let old: Vec<u64> = closed(&support::rows(&cfg)).iter().map(|r| r.id).collect();
    assert!(old.len() >= 3, "{rows:?}");
    let old_bytes: u64 = closed(&support::rows(&cfg)).iter().map(|r| r.bytes).sum();
    assert!(
        old_bytes < 800_000,
        "old segments too big for the quota: {old_bytes}"
    );

    // Run 2: "new" records on and uploads; the quota fills with uploaded "new" segments,
    // which must go before the older "old" ones that wait for upload.
    let cfg = write(
        dir.path(),
        &config("new", &format!("file:{}?loop=true", src.display())),
    );
    let mut d = Daemon::start(&cfg);
    let mut seen_new: std::collections::HashMap<u64, String> = Default::default();
    let mut evicted_new: Vec<u64> = Vec::new();
    let ok = wait_until(Duration::from_secs(60), || {
        let Ok(rows) = try_rows(&cfg) else {
            return false;
        };
        for id in &old {
            assert!(
                rows.iter().any(|r| r.id == *id),
                "segment {id} (older, waiting for upload) was evicted before uploaded ones; log:\n{}",
                d.log()
            );
        }
        for r in closed(&rows).iter().filter(|r| r.stream == "new") {
            let name = r.files[0].path.file_name().unwrap().to_str().unwrap();
            seen_new.insert(r.id, name.to_string());
        }
        for (id, _) in seen_new.iter() {
            if !rows.iter().any(|r| r.id == *id) && !evicted_new.contains(id) {
                evicted_new.push(*id);
            }
        }
        evicted_new.len() >= 2
    });
    assert!(ok, "no new segment was evicted; log:\n{}", d.log());
    d.terminate(Duration::from_secs(20));
    let log = d.log();
    assert!(!log.contains("evicted_unsynced"), "{log}");
    // Every evicted "new" segment had been uploaded, byte for byte playable.
    for id in &evicted_new {
        let key = format!("rec/new/{}", seen_new[id]);
        let obj = s3
            .object("vod", &key)
            .unwrap_or_else(|| panic!("evicted segment {id} was never uploaded ({key})"));
        let copy = dir.path().join(format!("evicted-{id}.mp4"));
        std::fs::write(&copy, obj).unwrap();
        assert_decodes(&copy);
    }
    let rows = support::rows(&cfg);
    for id in &old {
        let r = rows.iter().find(|r| r.id == *id).unwrap();
        assert!(matches!(r.upload, UploadState::Pending { .. }), "{r:?}");
        assert_decodes(&root.join(&r.files[0].path));
    }
}
