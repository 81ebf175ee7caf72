//! Upload sync against a real S3-compatible server (moto, started and stopped by each test):
//! closed segments arrive byte-identical under their keys with correct SHA-256 checksum
//! headers, and a multipart upload killed with SIGKILL resumes at the next part after a
//! restart, in the same multipart upload.

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

/// Every request that carried a body (an object or a part) sent the SHA-256 checksum of
/// exactly the bytes the server received.
fn assert_checksums(s3: &S3Peer) {
    let with_body: Vec<serde_json::Value> = s3
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "PUT" && r["bytes"].as_u64() > Some(0))
        // (A body cut by a kill never arrived whole; the server stored nothing.)
        .filter(|r| r["complete"] == true)
        .collect();
    assert!(!with_body.is_empty());
    for r in &with_body {
        assert_eq!(
            r["checksums"]["x-amz-checksum-sha256"], r["body_sha256"],
            "checksum header missing or wrong: {r}"
        );
    }
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
    assert_checksums(&s3);
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
    let upload = "part_size = \"5MiB\"\nbandwidth = \"8MiB/s\"\n";
    // With a SHA-256 checksum per part for the service to verify.
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}") + "checksum = true\n";
    let (recording, upload_only) =
        big_segment_configs(&dir.path().join("data"), &src, upload, &target);
    let cfg = write(dir.path(), &recording);
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
    let cfg = write(dir.path(), &upload_only);
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
    // The restart sent the rest of the parts in the same upload...
    assert!(
        !after.is_empty(),
        "no part of upload {id} was sent after the restart: before {before:?}, all {all:?}"
    );
    // ...starting at the next part: at most the last part acknowledged before the kill goes
    // again (acknowledged by the server but not yet recorded); no earlier one is re-sent.
    assert!(
        after.iter().all(|p| *p >= done_before),
        "re-sent done parts: before {before:?}, after {after:?}"
    );
    assert!(
        (after.len() as u64) <= n_parts - done_before + 1,
        "too many parts after restart: before {before:?}, after {after:?}"
    );
    let mut every: Vec<u64> = all.clone();
    every.sort();
    every.dedup();
    assert_eq!(every, (1..=n_parts).collect::<Vec<_>>(), "parts missing");
    let local = dir.path().join("data").join(&seg.files[0].path);
    let name = local.file_name().unwrap().to_str().unwrap().to_string();
    let remote = s3
        .object("vod", &format!("rec/big/{name}"))
        .expect("object");
    assert_eq!(md5(&remote), md5_file(&local));
    assert_decodes(&local);
    // One CreateMultipartUpload for the object, and it was completed under the old id.
    let path = format!("/vod/rec/big/{name}");
    let reqs = s3.requests();
    let on_path = |method: &str| -> Vec<String> {
        reqs.iter()
            .filter(|r| r["method"] == method && r["path"] == path.as_str() && r["status"] == 200)
            .map(|r| r["query"].as_str().unwrap().to_string())
            .collect()
    };
    let creates: Vec<String> = on_path("POST")
        .into_iter()
        .filter(|q| q.starts_with("uploads"))
        .collect();
    assert_eq!(
        creates.len(),
        1,
        "a new multipart upload was started: {creates:?}"
    );
    let completes: Vec<String> = on_path("POST")
        .into_iter()
        .filter(|q| q.contains("uploadId="))
        .collect();
    assert_eq!(completes, vec![format!("uploadId={id}")]);
    assert_checksums(&s3);
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
    let upload = "part_size = \"5MiB\"\nbandwidth = \"4MiB/s\"\n";
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let (recording, upload_only) =
        big_segment_configs(&dir.path().join("data"), &src, upload, &target);
    let cfg = write(dir.path(), &recording);
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
    let cfg = write(dir.path(), &upload_only);
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

/// Files under `dir` (recursively), relative.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_file_target_copy_killed_midway_leaves_no_staging_file_after_the_restart() {
    let dir = workdir("upload-file-killed");
    let src = noise_clip_sized(dir.path(), 60, "320x240");
    let out = dir.path().join("uploads");
    let mut base = TestConfig::new(&dir.path().join("data"));
    base.interval = "60s".into();
    let recording = base
        .clone()
        .stream("cam", &format!("file:{}?realtime=false", src.display()));
    // Relative, like the demo's: under the recorder's working directory (the config's).
    let target = "url = \"file:uploads\"\n";
    let upload = "part_size = \"5MiB\"\nbandwidth = \"1MiB/s\"\n";
    let cfg = write(
        dir.path(),
        &config_with_upload(&recording, upload, target, None),
    );
    let mut d = Daemon::start(&cfg);
    let staging = || files_in(&out).into_iter().find(|f| f.contains(".mp4#"));
    assert!(
        wait_until(Duration::from_secs(40), || staging().is_some()),
        "no copy under way; log:\n{}",
        d.log()
    );
    d.kill9();
    assert!(staging().is_some());
    let cfg = write(dir.path(), &config_with_upload(&base, upload, target, None));
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(60), all_uploaded);
    d.terminate(Duration::from_secs(20));
    assert!(d.log().contains("removed staging files"), "{}", d.log());
    assert_eq!(staging(), None, "{:?}", files_in(&out));
    for r in closed(&rows(&cfg)) {
        let local = dir.path().join("data").join(&r.files[0].path);
        let name = local.file_name().unwrap().to_str().unwrap().to_string();
        let copy = files_in(&out)
            .into_iter()
            .find(|f| f.ends_with(&name))
            .expect("copy");
        assert_eq!(md5_file(&out.join(&copy)), md5_file(&local));
        assert_decodes(&out.join(copy));
    }
}

#[test]
fn the_demo_config_records_and_uploads_into_its_uploads_directory() {
    let dir = workdir("upload-demo");
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    for f in ["demo.toml", "sample.mp4"] {
        std::fs::copy(
            common::repo().join("assets").join(f),
            dir.path().join("assets").join(f),
        )
        .unwrap();
    }
    let cfg = dir.path().join("assets/demo.toml");
    // Run as `make run` does: from the directory that holds assets/.
    let log = std::fs::File::create(dir.path().join("edgerec.log")).unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["run", "--config", "assets/demo.toml"])
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let uploads = dir.path().join("uploads/edge-demo/demo");
    let ok = wait_until(Duration::from_secs(60), || {
        files_in(&uploads).iter().any(|f| f.ends_with(".mp4"))
    });
    common::signal(child.id(), libc::SIGTERM);
    let st = common::wait_timeout(&mut child, Duration::from_secs(20));
    let log = std::fs::read_to_string(dir.path().join("edgerec.log")).unwrap();
    assert!(ok, "nothing uploaded; log:\n{log}");
    assert!(st.is_some_and(|s| s.success()), "{log}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("url = \"file:uploads\""));
    for f in files_in(&uploads).iter().filter(|f| f.ends_with(".mp4")) {
        let name = std::path::Path::new(f).file_name().unwrap();
        let local = files_in(&dir.path().join("data/demo"))
            .into_iter()
            .find(|l| l.ends_with(name.to_str().unwrap()))
            .expect("the recorded segment");
        assert_eq!(
            md5_file(&uploads.join(f)),
            md5_file(&dir.path().join("data/demo").join(local))
        );
        assert_decodes(&uploads.join(f));
    }
}
