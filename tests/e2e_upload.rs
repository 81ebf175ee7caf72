//! Upload sync against a real S3-compatible server (moto, started and stopped by each test):
//! closed segments arrive byte-identical under their keys, and a multipart upload killed
//! with SIGKILL resumes at the next part after a restart.

mod common;
#[path = "e2e_upload/support.rs"]
mod support;

use std::time::Duration;

use common::{assert_decodes, clip, md5_file, wait_until, workdir, ClipSpec, Daemon, TestConfig};
use support::*;

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

#[test]
fn closed_segments_arrive_byte_identical_under_their_keys() {
    let dir = workdir("upload-identical");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(8, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "",
            &(s3_target(&s3.endpoint(), "vod", "{device}/{stream}/{seq}-{file}")
                + "checksum = true\n"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(45), |rows| {
        closed(rows).len() >= 3 && all_uploaded(&rows[..3])
    });
    d.terminate(Duration::from_secs(20));
    let rows = rows(&cfg);
    let mut uploaded = 0;
    for r in closed(&rows) {
        let Some(url) = url_of(r) else { continue };
        uploaded += 1;
        let file = &r.files[0].path;
        let local = dir.path().join("data").join(file);
        assert_decodes(&local);
        let name = file.file_name().unwrap().to_str().unwrap();
        let key = format!("rec/e2e/cam/{}-{name}", r.seq);
        let remote = s3
            .object("vod", &key)
            .unwrap_or_else(|| panic!("{key} missing; keys: {:?}", s3.keys("vod")));
        assert_eq!(
            md5(&remote),
            md5_file(&local),
            "{key} differs from {}",
            local.display()
        );
        assert_eq!(url, format!("{}/vod/{key}", s3.endpoint()));
    }
    assert!(uploaded >= 3, "{uploaded} uploaded");
    // Only uploaded segments are in the bucket, each written once; no secret in the log.
    assert_eq!(s3.keys("vod").len(), uploaded, "{:?}", s3.keys("vod"));
    assert!(
        s3.puts_per_path().values().all(|n| *n == 1),
        "{:?}",
        s3.puts_per_path()
    );
    let log = d.log();
    assert!(
        !log.contains("testing-secret-never-logged"),
        "secret in log"
    );
}

#[test]
fn kill_9_during_a_multipart_upload_resumes_at_the_next_part() {
    let dir = workdir("upload-resume");
    let s3 = S3Peer::start(&["vod"]);
    let src = noise_clip(dir.path(), 34);
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "60s".into();
    let recording = base
        .clone()
        .stream("big", &format!("file:{}?realtime=false", src.display()));
    let upload = "part_size = \"5MiB\"\nbandwidth = \"8MiB/s\"\n";
    // With a SHA-256 checksum per part for the service to verify.
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}") + "checksum = true\n";
    let cfg = write(
        dir.path(),
        &config_with_upload(&recording, upload, &target, None),
    );
    let mut d = Daemon::start(&cfg);
    // Wait until a few parts are in, then kill the recorder mid-upload.
    assert!(
        common::wait_until(Duration::from_secs(40), || s3.parts_acked().len() >= 3),
        "no parts arrived; log:\n{}",
        d.log()
    );
    d.kill9();
    let before = s3.parts_acked();
    let rows = rows(&cfg);
    let seg = closed(&rows)[0].clone();
    assert!(seg.bytes >= 40 << 20, "segment only {} bytes", seg.bytes);
    let n_parts = seg.bytes.div_ceil(5 << 20);
    assert!(
        (before.len() as u64) < n_parts,
        "upload finished before the kill"
    );

    // Restart without the stream: only the upload continues.
    let cfg = write(
        dir.path(),
        &config_with_upload(&base, upload, &target, None),
    );
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(40), all_uploaded);
    d.terminate(Duration::from_secs(20));

    // The killed segment's multipart upload: the only one under way at the kill.
    let id = before[0].0.clone();
    assert!(before.iter().all(|(u, _)| *u == id), "{before:?}");
    let before: Vec<u64> = before.iter().map(|(_, p)| *p).collect();
    let all: Vec<u64> = s3
        .parts_acked()
        .into_iter()
        .filter(|(u, _)| *u == id)
        .map(|(_, p)| p)
        .collect();
    let after = &all[before.len()..];
    let done_before = *before.iter().max().unwrap();
    // At most the last part acknowledged before the kill may go again (acknowledged by
    // the server but not yet recorded); every earlier one is not re-sent.
    assert!(
        after.iter().all(|p| *p >= done_before),
        "re-sent done parts: before {before:?}, after {after:?}"
    );
    assert!(
        (after.len() as u64) <= n_parts - done_before + 1,
        "too many parts after restart: before {before:?}, after {after:?}"
    );
    let local = dir.path().join("data").join(&seg.files[0].path);
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let remote = s3
        .object("vod", &format!("rec/big/{name}"))
        .expect("object");
    assert_eq!(md5(&remote), md5_file(&local));
    assert_decodes(&local);
    assert!(
        s3.open_multipart_uploads("vod").is_empty(),
        "incomplete multipart uploads left: {:?}",
        s3.open_multipart_uploads("vod")
    );
}

#[test]
fn a_file_target_receives_identical_copies_under_its_keys() {
    let dir = workdir("upload-file-target");
    let src = clip(&ClipSpec::h264(6, 1));
    let out = dir.path().join("uploads");
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let target = format!(
        "url = \"file://{}\"\nkey = \"{{device}}/{{stream}}/{{file}}\"\n",
        out.display()
    );
    let cfg = write(dir.path(), &config_with_upload(&base, "", &target, None));
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(30), |rows| {
        closed(rows).len() >= 2 && all_uploaded(&rows[..2])
    });
    d.terminate(Duration::from_secs(20));
    let rows = rows(&cfg);
    let mut n = 0;
    for r in closed(&rows) {
        let Some(url) = url_of(r) else { continue };
        let local = dir.path().join("data").join(&r.files[0].path);
        let name = local.file_name().unwrap().to_str().unwrap().to_string();
        let copy = out.join("e2e/cam").join(&name);
        assert_eq!(url, format!("file://{}", copy.display()));
        assert_eq!(md5_file(&copy), md5_file(&local));
        assert_decodes(&copy);
        n += 1;
    }
    assert!(n >= 2);
}

#[test]
fn a_multipart_upload_whose_segment_is_gone_is_aborted_at_the_next_start() {
    let dir = workdir("upload-orphan");
    let s3 = S3Peer::start(&["vod"]);
    let src = noise_clip(dir.path(), 20);
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "60s".into();
    let recording = base
        .clone()
        .stream("big", &format!("file:{}?realtime=false", src.display()));
    let upload = "part_size = \"5MiB\"\nbandwidth = \"4MiB/s\"\n";
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let cfg = write(
        dir.path(),
        &config_with_upload(&recording, upload, &target, None),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(40), || !s3.parts_acked().is_empty()),
        "no part arrived; log:\n{}",
        d.log()
    );
    d.kill9();
    assert_eq!(s3.open_multipart_uploads("vod").len(), 1);
    // The segment's files go away while the recorder is down: recovery drops its row.
    let rows = rows(&cfg);
    for r in closed(&rows) {
        for f in &r.files {
            std::fs::remove_file(dir.path().join("data").join(&f.path)).unwrap();
        }
    }
    let cfg = write(
        dir.path(),
        &config_with_upload(&base, upload, &target, None),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(20), || s3
            .open_multipart_uploads("vod")
            .is_empty()),
        "the orphaned multipart upload was not aborted; log:\n{}",
        d.log()
    );
    assert!(d.log().contains("aborted an orphaned multipart upload"));
    d.terminate(Duration::from_secs(20));
}

#[test]
fn delete_after_upload_removes_the_local_files_once_verified() {
    let dir = workdir("upload-delete-after");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(6, 1));
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "2s".into();
    base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &base,
            "delete_after_upload = true\n",
            &s3_target(&s3.endpoint(), "vod", "{stream}/{seq}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(30), || s3.keys("vod").len() >= 2),
        "nothing uploaded; log:\n{}",
        d.log()
    );
    d.terminate(Duration::from_secs(20));
    // A stop between an upload and its deletion: the next start deletes it.
    let cfg = write(
        dir.path(),
        &config_with_upload(
            &TestConfig::new(&dir.path().join("data")),
            "delete_after_upload = true\n",
            &s3_target(&s3.endpoint(), "vod", "{stream}/{seq}"),
            None,
        ),
    );
    let mut d = Daemon::start(&cfg);
    assert!(
        wait_until(Duration::from_secs(20), || try_rows(&cfg)
            .is_ok_and(|rows| rows.iter().all(|r| url_of(r).is_none()))),
        "uploaded segments kept; log:\n{}",
        d.log()
    );
    d.terminate(Duration::from_secs(20));
    let rows = rows(&cfg);
    // Every uploaded segment is gone from the index and the disk; its object is playable.
    for key in s3.keys("vod") {
        let seq: u64 = key.rsplit('/').next().unwrap().parse().unwrap();
        assert!(
            rows.iter().all(|r| r.seq != seq),
            "segment {seq} was uploaded but kept"
        );
        let copy = dir.path().join(format!("{seq}.mp4"));
        std::fs::write(&copy, s3.object("vod", &key).unwrap()).unwrap();
        assert_decodes(&copy);
    }
    for r in closed(&rows) {
        assert!(url_of(r).is_none(), "{r:?}");
        assert!(dir.path().join("data").join(&r.files[0].path).exists());
    }
}
