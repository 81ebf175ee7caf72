//! Upload sync under faults, against moto: the server stopped and restarted while recording
//! goes on, resets in the middle of a part (through a TCP proxy), a missing bucket, an
//! endpoint that answers HTML, and a segment file that cannot be read. None crashes the recorder, and no
//! job is lost: each segment ends up uploaded exactly once once the fault is gone.

mod common;
#[path = "e2e_upload/proxy.rs"]
mod proxy;
#[path = "e2e_upload/support.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{assert_decodes, clip, md5_file, wait_until, workdir, ClipSpec, Daemon, TestConfig};
use edgerec::storage::store::UploadState;
use proxy::Proxy;
use support::*;

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

fn pending(r: &edgerec::storage::store::SegmentRow) -> bool {
    matches!(r.upload, UploadState::Pending { .. })
}

#[test]
fn after_a_server_outage_the_backlog_drains_by_itself_with_nothing_missing_or_duplicated() {
    let dir = workdir("upload-outage");
    let journal_path = dir.path().join("stored.jsonl");
    let opts = PeerOptions {
        buckets: vec!["vod".into()],
        journal: Some(journal_path.clone()),
        ..PeerOptions::default()
    };
    let mut s3 = S3Peer::start_with(&opts);
    let src = clip(&ClipSpec::h264(12, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?loop=true", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "",
            &s3_target(&s3.endpoint(), "vod", "{stream}/{file}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(30), |rows| {
        closed(rows).iter().any(|r| url_of(r).is_some())
    });
    // The server goes away (moto keeps its data in memory: it is gone too, but the
    // journal keeps what was stored). Recording goes on and segments queue up.
    s3.stop();
    let during = wait_rows(&cfg, Duration::from_secs(30), |rows| {
        closed(rows).iter().filter(|r| pending(r)).count() >= 2
    });
    assert!(d.running(), "recorder died during the outage");
    let queued: HashSet<u64> = closed(&during)
        .iter()
        .filter(|r| pending(r))
        .map(|r| r.id)
        .collect();
    // Back on the same port. No `upload --now`: the backlog drains by itself.
    let s3 = S3Peer::start_with(&PeerOptions {
        port: Some(s3.port),
        ..opts
    });
    wait_rows(&cfg, Duration::from_secs(120), |rows| {
        queued
            .iter()
            .all(|id| rows.iter().any(|r| r.id == *id && url_of(r).is_some()))
    });
    d.terminate(Duration::from_secs(20));
    let log = d.log();
    assert!(
        log.contains("upload failed; will retry") && log.contains("transient=true"),
        "{log}"
    );
    let rows = support::rows(&cfg);
    let stored = journal(&journal_path);
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    for (bucket, key, md5) in &stored {
        assert_eq!(bucket, "vod");
        per_key.entry(key.clone()).or_default().push(md5.clone());
    }
    // Nothing duplicated: every object was stored once, across both server runs.
    assert!(
        per_key.values().all(|v| v.len() == 1),
        "stored twice: {per_key:?}"
    );
    // Nothing missing: every uploaded segment is there, byte for byte, and nothing else.
    let mut uploaded = 0;
    for r in closed(&rows).iter().filter(|r| url_of(r).is_some()) {
        let local = dir.path().join("data").join(&r.files[0].path);
        let name = local.file_name().unwrap().to_str().unwrap().to_string();
        let md5s = per_key
            .get(&format!("rec/cam/{name}"))
            .unwrap_or_else(|| panic!("segment {} uploaded but not stored", r.id));
        assert_eq!(md5s[0], md5_file(&local));
        assert_decodes(&local);
        uploaded += 1;
    }
    assert_eq!(
        uploaded,
        per_key.len(),
        "objects without a segment: {per_key:?}"
    );
    // The objects stored after the outage are on the restarted server.
    for r in closed(&rows).iter().filter(|r| queued.contains(&r.id)) {
        let name = r.files[0].path.file_name().unwrap().to_str().unwrap();
        let remote = s3
            .object("vod", &format!("rec/cam/{name}"))
            .expect("object");
        assert_eq!(
            md5(&remote),
            md5_file(&dir.path().join("data").join(&r.files[0].path))
        );
    }
}

#[test]
fn a_reset_in_the_middle_of_a_part_is_retried_to_an_identical_object() {
    let dir = workdir("upload-reset");
    let s3 = S3Peer::start(&["vod"]);
    let proxy = Proxy::start(s3.port);
    proxy.cut_next(2);
    let src = noise_clip(dir.path(), 9);
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "60s".into();
    base = base.stream("big", &format!("file:{}?realtime=false", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "part_size = \"5MiB\"\n",
            &s3_target(&proxy.endpoint(), "vod", "{stream}/{file}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    let rows = wait_rows(&cfg, Duration::from_secs(40), |rows| {
        closed(rows).first().is_some_and(|r| url_of(r).is_some())
    });
    d.terminate(Duration::from_secs(20));
    let r = closed(&rows)[0];
    assert!(r.bytes > 10 << 20, "segment only {} bytes", r.bytes);
    let local = dir.path().join("data").join(&r.files[0].path);
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        md5(&s3
            .object("vod", &format!("rec/big/{name}"))
            .expect("object")),
        md5_file(&local)
    );
    assert!(
        d.log().contains("upload failed; will retry"),
        "no retry logged:\n{}",
        d.log()
    );
    // (A later recording of the clip may be mid-upload at the stop: only this key counts.)
    let key = format!("rec/big/{name}");
    let open = s3.open_multipart_uploads("vod");
    assert!(
        open.iter().all(|u| u[0] != key.as_str()),
        "incomplete upload left for {key}: {open:?}"
    );
}

#[test]
fn a_missing_bucket_raises_an_alarm_and_the_job_waits_for_it() {
    let dir = workdir("upload-nobucket");
    let s3 = S3Peer::start(&[]);
    let src = clip(&ClipSpec::h264(4, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "",
            &s3_target(&s3.endpoint(), "late", "{stream}/{file}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("alarm=\"upload\"")),
        "no alarm:\n{}",
        d.log()
    );
    assert!(d.running());
    let rows = support::rows(&cfg);
    assert!(closed(&rows).iter().all(|r| pending(r)), "{rows:?}");
    s3.create_bucket("late");
    let out = upload_now(&cfg, "40s");
    assert_eq!(out.code, 0, "upload --now: {}\n{}", out.stderr, d.log());
    d.terminate(Duration::from_secs(20));
    let rows = support::rows(&cfg);
    assert!(closed(&rows).iter().any(|r| url_of(r).is_some()));
    for r in closed(&rows).iter().filter(|r| url_of(r).is_some()) {
        let name = r.files[0]
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let local = dir.path().join("data").join(&r.files[0].path);
        let remote = s3
            .object("late", &format!("rec/cam/{name}"))
            .expect("object");
        assert_eq!(md5(&remote), md5_file(&local));
        assert_decodes(&local);
    }
}

#[test]
fn an_endpoint_answering_html_fails_verification_and_keeps_the_job() {
    let dir = workdir("upload-html");
    let html = S3Peer::html();
    let src = clip(&ClipSpec::h264(4, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "",
            &s3_target(&html.endpoint(), "vod", "{stream}/{file}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("alarm=\"upload\"")),
        "no alarm:\n{}",
        d.log()
    );
    assert!(d.running(), "recorder died");
    let rows = support::rows(&cfg);
    assert!(!closed(&rows).is_empty());
    assert!(closed(&rows).iter().all(|r| pending(r)), "{rows:?}");
    for r in closed(&rows) {
        assert_decodes(&dir.path().join("data").join(&r.files[0].path));
    }
    d.terminate(Duration::from_secs(20));
}

#[test]
fn an_unreadable_segment_raises_an_alarm_and_uploads_once_readable_again() {
    let dir = workdir("upload-unreadable");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(4, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    // A window that is closed now: segments queue up without being uploaded.
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
    let rows = wait_rows(&cfg, Duration::from_secs(30), |rows| {
        !closed(rows).is_empty()
    });
    let victim = closed(&rows)[0].clone();
    let path = dir.path().join("data").join(&victim.files[0].path);
    let aside = dir.path().join("aside.mp4");
    std::fs::rename(&path, &aside).unwrap();
    let out = upload_now(&cfg, "8s");
    assert_ne!(out.code, 0, "drained without the file?");
    assert!(d.log().contains("cannot read segment file"), "{}", d.log());
    assert!(d.running(), "recorder died");
    let row = support::rows(&cfg)
        .into_iter()
        .find(|r| r.id == victim.id)
        .unwrap();
    assert!(pending(&row), "the job was dropped: {row:?}");
    std::fs::rename(&aside, &path).unwrap();
    let out = upload_now(&cfg, "60s");
    assert_eq!(out.code, 0, "upload --now: {}\n{}", out.stderr, d.log());
    d.terminate(Duration::from_secs(20));
    let row = support::rows(&cfg)
        .into_iter()
        .find(|r| r.id == victim.id)
        .unwrap();
    assert!(url_of(&row).is_some(), "{row:?}");
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        md5(&s3.object("vod", &format!("rec/cam/{name}")).unwrap()),
        md5_file(&path)
    );
    assert_decodes(&path);
}

#[test]
fn wrong_credentials_raise_an_alarm_and_lose_nothing_until_they_are_fixed() {
    let dir = workdir("upload-credentials");
    // moto checks every signature against the one IAM user it created.
    let s3 = S3Peer::start_with(&PeerOptions {
        buckets: vec!["vod".into()],
        auth: true,
        ..PeerOptions::default()
    });
    let (key_id, secret) = s3.credentials.clone().expect("credentials");
    let src = clip(&ClipSpec::h264(4, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let target = |id: &str, secret: &str| {
        s3_target(&s3.endpoint(), "vod", "{stream}/{file}")
            .replace(
                "access_key_id = \"testing\"",
                &format!("access_key_id = \"{id}\""),
            )
            .replace(
                "secret_access_key = \"testing-secret-never-logged\"",
                &format!("secret_access_key = \"{secret}\""),
            )
    };
    let wrong = "wrong-secret-never-logged";
    let cfg = write(
        dir.path(),
        &config_with_upload(&base, "", &target(&key_id, wrong), None),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("alarm=\"upload\"")),
        "no alarm:\n{}",
        d.log()
    );
    let log = d.log();
    let alarm = log
        .lines()
        .find(|l| l.contains("alarm=\"upload\""))
        .unwrap();
    assert!(alarm.contains("transient=false"), "{alarm}");
    assert!(alarm.contains("403"), "{alarm}");
    let rows = wait_rows(&cfg, Duration::from_secs(20), |rows| {
        !closed(rows).is_empty()
    });
    assert!(closed(&rows).iter().all(|r| pending(r)), "{rows:?}");
    // `edgerec uploads` shows the failing job with its attempts and error.
    let out = common::cli(
        &["uploads", "--config", cfg.to_str().unwrap(), "--json"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let failing = v["failing"].as_array().unwrap();
    assert!(!failing.is_empty(), "{v}");
    assert!(failing[0]["attempts"].as_u64() >= Some(1), "{v}");
    assert_eq!(failing[0]["transient"], false, "{v}");
    d.terminate(Duration::from_secs(20));
    assert!(!d.log().contains(wrong), "secret in log");
    // The attempts survive the restart (saved with the job), in the row too.
    let rows = support::rows(&cfg);
    assert!(
        closed(&rows).iter().any(|r| matches!(
            r.upload,
            UploadState::Pending { attempts, .. } if attempts >= 1
        )),
        "{rows:?}"
    );
    assert!(s3.keys("vod").is_empty());

    // Fixed: every segment goes up, nothing was lost meanwhile.
    let recorded = closed(&rows).len();
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &TestConfig::new(&dir.path().join("data")),
            "",
            &target(&key_id, &secret),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    // (The saved backoff would make them wait: retry now, once the recorder listens.)
    let sock = dir.path().join("data/control.sock");
    assert!(wait_until(Duration::from_secs(20), || sock.exists()));
    let out = upload_now(&cfg, "60s");
    assert_eq!(out.code, 0, "upload --now: {}\n{}", out.stderr, d.log());
    d.terminate(Duration::from_secs(20));
    let rows = support::rows(&cfg);
    assert_eq!(closed(&rows).len(), recorded);
    for r in closed(&rows) {
        assert!(url_of(r).is_some(), "{r:?}");
        let local = dir.path().join("data").join(&r.files[0].path);
        let name = local.file_name().unwrap().to_str().unwrap().to_string();
        let remote = s3
            .object("vod", &format!("rec/cam/{name}"))
            .expect("object");
        assert_eq!(md5(&remote), md5_file(&local));
        assert_decodes(&local);
    }
}
