//! Upload control against moto: `edgerec upload --pause` stops a multipart upload at a part
//! boundary and `--resume` continues it at the next part, in the same upload; `status` and
//! `uploads` report the backlog and the pause, running or not; at start, multipart uploads
//! the service lists under this device's prefix that no progress names are aborted; SIGTERM
//! lets the part being sent finish, so the next start sends no part twice.

mod common;
#[path = "e2e_upload/support.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::{assert_decodes, md5_file, wait_until, workdir, Daemon, TestConfig};
use support::*;

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

fn json_of(args: &[&str], cfg: &std::path::Path) -> (i32, serde_json::Value) {
    let mut a = args.to_vec();
    a.extend(["--config", cfg.to_str().unwrap(), "--json"]);
    let out = common::cli(&a, cfg.parent().unwrap());
    let v = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} --json ({e}): {} {}", out.stdout, out.stderr));
    (out.code, v)
}

fn run(args: &[&str], cfg: &std::path::Path) -> common::CliOutput {
    let mut a = args.to_vec();
    a.extend(["--config", cfg.to_str().unwrap()]);
    common::cli(&a, cfg.parent().unwrap())
}

#[test]
fn pause_stops_a_multipart_upload_at_a_part_boundary_and_resume_continues_it() {
    let dir = workdir("upload-pause");
    let s3 = S3Peer::start(&["vod"]);
    let src = noise_clip(dir.path(), 24);
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "60s".into();
    base = base.stream("big", &format!("file:{}?realtime=false", src.display()));
    let upload = "part_size = \"5MiB\"\nbandwidth = \"8MiB/s\"\n";
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let cfg = write(
        dir.path(),
        &config_with_upload(&base, upload, &target, None),
    );
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(30), |rows| {
        !closed(rows).is_empty()
    });
    assert!(
        wait_until(Duration::from_secs(40), || s3.parts_acked().len() >= 2),
        "no parts arrived; log:\n{}",
        d.log()
    );
    let out = run(&["upload", "--pause"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("uploads paused"), "{}", out.stdout);
    // The part being sent completes; then the transfer stops.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (_, v) = json_of(&["uploads"], &cfg);
            v["paused"] == true && v["current"].is_null()
        }),
        "the transfer did not stop; log:\n{}",
        d.log()
    );
    assert!(d.log().contains("transfer stopped at a part boundary"));
    let at_pause = s3.requests().len();
    let parts_at_pause = s3.parts_acked();
    // The segment being uploaded: the one whose object the parts went to.
    let id = parts_at_pause[0].0.clone();
    let path = s3
        .requests()
        .iter()
        .find(|r| r["query"].as_str().unwrap().contains(&id))
        .map(|r| r["path"].as_str().unwrap().to_string())
        .unwrap();
    let rows = rows(&cfg);
    let seg = closed(&rows)
        .into_iter()
        .find(|r| path.ends_with(r.files[0].path.file_name().unwrap().to_str().unwrap()))
        .unwrap()
        .clone();
    let n_parts = seg.bytes.div_ceil(5 << 20) as usize;
    assert!(
        parts_at_pause.len() < n_parts,
        "the upload finished before the pause took effect"
    );
    // `status` (running) reports the backlog and the pause.
    let (code, v) = json_of(&["status"], &cfg);
    assert_eq!(code, 0);
    assert_eq!(v["uploads"]["configured"], true, "{v}");
    assert_eq!(v["uploads"]["paused"], true, "{v}");
    let backlog: u64 = closed(&rows).iter().map(|r| r.bytes).sum();
    assert_eq!(
        v["uploads"]["backlog_segments"].as_u64(),
        Some(closed(&rows).len() as u64),
        "{v}"
    );
    assert_eq!(v["uploads"]["backlog_bytes"], backlog, "{v}");
    assert!(v["uploads"]["oldest_age_s"].as_u64().is_some(), "{v}");
    let text = run(&["status"], &cfg);
    assert!(
        text.stdout
            .contains(&format!("uploads: {} segment(s)", closed(&rows).len()))
            && text.stdout.contains("; paused"),
        "{}",
        text.stdout
    );
    // Nothing goes to the server while paused.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s3.requests().len(),
        at_pause,
        "requests while paused: {:?}",
        &s3.requests()[at_pause..]
    );
    // No part was cut off mid-body: the pause waited for the part boundary.
    assert!(
        s3.requests().iter().all(|r| r["complete"] == true),
        "a request was cut off: {:?}",
        s3.requests()
    );

    let out = run(&["upload", "--resume"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    wait_rows(&cfg, Duration::from_secs(60), all_uploaded);
    d.terminate(Duration::from_secs(20));

    let mut parts: Vec<u64> = s3
        .parts_acked()
        .into_iter()
        .filter(|(u, _)| *u == id)
        .map(|(_, p)| p)
        .collect();
    let count = parts.len();
    parts.sort();
    parts.dedup();
    assert_eq!(count, parts.len(), "a part was sent twice");
    assert_eq!(parts, (1..=n_parts as u64).collect::<Vec<_>>());
    assert!(
        s3.requests()[at_pause..]
            .iter()
            .any(|r| r["query"].as_str().unwrap().contains(&id) && r["status"] == 200),
        "upload {id} was not continued after resume"
    );
    // Its object was created once, and completed under the same upload id.
    let creates = s3
        .requests()
        .iter()
        .filter(|r| {
            r["path"] == path.as_str() && r["query"].as_str().unwrap().starts_with("uploads")
        })
        .count();
    assert_eq!(
        creates, 1,
        "a second multipart upload was started for {path}"
    );
    let local = dir.path().join("data").join(&seg.files[0].path);
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let remote = s3.object("vod", &format!("rec/big/{name}")).unwrap();
    assert_eq!(md5(&remote), md5_file(&local));
    assert_decodes(&local);

    // No recorder: the pause goes into the index, and status/uploads read it there.
    let out = run(&["upload", "--pause"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("next start"), "{}", out.stdout);
    let (code, v) = json_of(&["status"], &cfg);
    assert_eq!(code, 3);
    assert_eq!(v["running"], false);
    assert_eq!(v["uploads"]["configured"], true, "{v}");
    assert_eq!(v["uploads"]["paused"], true, "{v}");
    assert_eq!(v["uploads"]["backlog_segments"], 0, "{v}");
    let (_, v) = json_of(&["uploads"], &cfg);
    assert_eq!(v["paused"], true, "{v}");
    let out = run(&["upload", "--resume"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    let (_, v) = json_of(&["uploads"], &cfg);
    assert_eq!(v["paused"], false, "{v}");
}

#[test]
fn a_paused_recorder_keeps_a_backlog_that_status_reports_from_the_index() {
    let dir = workdir("upload-status-offline");
    let s3 = S3Peer::start(&["vod"]);
    let src = common::clip(&common::ClipSpec::h264(6, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let cfg = write(dir.path(), &config_with_upload(&base, "", &target, None));
    // Paused before the first start: nothing is uploaded.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let out = run(&["upload", "--pause"], &cfg);
    assert_eq!(out.code, 0, "{out:?}");
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(30), |rows| {
        closed(rows).len() >= 2
    });
    d.terminate(Duration::from_secs(20));
    assert!(s3.requests().iter().all(|r| r["method"] != "PUT"));
    let rows = support::rows(&cfg);
    let bytes: u64 = closed(&rows).iter().map(|r| r.bytes).sum();
    let (code, v) = json_of(&["status"], &cfg);
    assert_eq!(code, 3);
    assert_eq!(v["uploads"]["configured"], true, "{v}");
    assert_eq!(v["uploads"]["paused"], true, "{v}");
    assert_eq!(
        v["uploads"]["backlog_segments"].as_u64(),
        Some(closed(&rows).len() as u64),
        "{v}"
    );
    assert_eq!(v["uploads"]["backlog_bytes"], bytes, "{v}");
    let oldest = closed(&rows).iter().map(|r| r.start_ms).min().unwrap();
    assert_eq!(v["uploads"]["oldest_ms"], oldest, "{v}");
    let text = run(&["status"], &cfg);
    assert!(
        text.stdout
            .contains(&format!("uploads: {} segment(s)", closed(&rows).len())),
        "{}",
        text.stdout
    );
    for r in closed(&rows) {
        assert_decodes(&dir.path().join("data").join(&r.files[0].path));
    }
}

#[test]
fn multipart_uploads_no_progress_names_are_aborted_at_start_but_not_another_devices() {
    let dir = workdir("upload-orphan-list");
    let s3 = S3Peer::start(&["vod"]);
    // A recorder killed between CreateMultipartUpload and saving the id left this one
    // (device "e2e", the default key template's device prefix)...
    let lost = s3.create_multipart("vod", "rec/e2e/cam/2024/01/01/lost.mp4");
    // ...and another device, sharing the bucket, has one under way.
    let other = s3.create_multipart("vod", "rec/edge-9/cam/2024/01/01/busy.mp4");
    let base = TestConfig::new(&dir.path().join("data"));
    let target = s3_target(
        &s3.endpoint(),
        "vod",
        "{device}/{stream}/{YYYY}/{MM}/{DD}/{file}",
    );
    let cfg = write(dir.path(), &config_with_upload(&base, "", &target, None));
    let mut d = Daemon::start(&cfg);
    let left = || -> HashMap<String, String> {
        s3.open_multipart_uploads("vod")
            .iter()
            .map(|u| {
                (
                    u[1].as_str().unwrap().to_string(),
                    u[0].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !left().contains_key(&lost)),
        "the orphan was not aborted; log:\n{}",
        d.log()
    );
    assert!(d.log().contains("aborted an orphaned multipart upload"));
    d.terminate(Duration::from_secs(20));
    assert!(
        left().contains_key(&other),
        "another device's upload was aborted"
    );
    // It listed only this device's prefix.
    let lists: Vec<String> = s3
        .requests()
        .iter()
        .filter(|r| r["method"] == "GET" && r["query"].as_str().unwrap().contains("uploads"))
        .map(|r| r["query"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !lists.is_empty() && lists.iter().all(|q| q.contains("prefix=rec%2Fe2e%2F")),
        "{lists:?}"
    );
}

#[test]
fn sigterm_lets_the_part_being_sent_finish_and_the_restart_sends_no_part_twice() {
    let dir = workdir("upload-sigterm");
    let s3 = S3Peer::start(&["vod"]);
    let src = noise_clip(dir.path(), 24);
    // 5 MiB parts at 8 MiB/s: a part takes about 0.7 s, well inside the 5 s shutdown grace.
    let upload = "part_size = \"5MiB\"\nbandwidth = \"8MiB/s\"\n";
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let (recording, upload_only) =
        big_segment_configs(&dir.path().join("data"), &src, upload, &target);
    let cfg = write(dir.path(), &recording);
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(40), || s3.parts_acked().len() >= 2),
        "no parts arrived; log:\n{}",
        d.log()
    );
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit {status}; log:\n{}", d.log());
    let log = d.log();
    assert!(
        log.contains("transfer stopped at a part boundary"),
        "the transfer did not stop at a part boundary; log:\n{log}"
    );
    assert!(!log.contains("abandoning uploads"), "log:\n{log}");
    // Every part request that reached the server was whole: none was cut by the stop.
    assert!(
        s3.requests().iter().all(|r| r["complete"] == true),
        "a request was cut off: {:?}",
        s3.requests()
    );
    let before = s3.parts_acked();
    let id = before[0].0.clone();
    let rows = rows(&cfg);
    let seg = closed(&rows)[0].clone();
    let n_parts = seg.bytes.div_ceil(5 << 20);
    assert!(
        (before.len() as u64) < n_parts,
        "the upload finished before the stop"
    );

    // Restart without the stream: the upload continues at the part after the last one
    // acknowledged before the stop, since that one was recorded.
    let cfg = write(dir.path(), &upload_only);
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(60), all_uploaded);
    d.terminate(Duration::from_secs(20));
    let all: Vec<u64> = s3
        .parts_acked()
        .into_iter()
        .filter(|(u, _)| *u == id)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        all,
        (1..=n_parts).collect::<Vec<_>>(),
        "parts of upload {id} in the order acknowledged (a repeat means one was sent twice)"
    );
    let local = dir.path().join("data").join(&seg.files[0].path);
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let remote = s3.object("vod", &format!("rec/big/{name}")).unwrap();
    assert_eq!(md5(&remote), md5_file(&local));
    assert_decodes(&local);
}
