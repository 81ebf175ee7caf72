//! Uploads after `edgerec index rebuild`, against moto: the rebuilt rows are queued for
//! upload again; segments uploaded before the rebuild are found in the bucket (same key,
//! same size) and not sent again, and those never uploaded are sent, each once; with keys
//! made from segment ids, which a rebuild renumbers, nothing is queued.

mod common;
#[path = "e2e_upload/support.rs"]
mod support;

use std::time::Duration;

use common::{assert_decodes, cli, clip, md5_file, workdir, ClipSpec, Daemon, TestConfig};
use edgerec::storage::store::UploadState;
use support::*;

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

#[test]
fn a_rebuilt_index_queues_uploads_again_and_stored_objects_are_not_sent_twice() {
    let dir = workdir("upload-rebuild");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(6, 1));
    let root = dir.path().join("data");
    let mut base = TestConfig::new(&root);
    base.interval = "2s".into();
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{file}");
    let with_stream = |name: &str| {
        let t = base
            .clone()
            .stream(name, &format!("file:{}?realtime=false", src.display()));
        write(dir.path(), &config_with_upload(&t, "", &target, None))
    };

    // First run: "up" is recorded and uploaded.
    let cfg = with_stream("up");
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(40), |rows| {
        closed(rows).len() >= 3 && all_uploaded(rows)
    });
    d.terminate(Duration::from_secs(20));
    let uploaded_before = closed(&rows(&cfg)).len();
    assert_eq!(s3.keys("vod").len(), uploaded_before);

    // Second run, uploads paused: "held" is recorded, never uploaded.
    let cfg = with_stream("held");
    let out = cli(
        &["upload", "--pause", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(40), |rows| {
        closed(rows).iter().filter(|r| r.stream == "held").count() >= 3
    });
    d.terminate(Duration::from_secs(20));
    let total = closed(&rows(&cfg)).len();
    assert_eq!(
        s3.keys("vod").len(),
        uploaded_before,
        "uploaded while paused"
    );

    // The index is lost (and with it the pause and every upload state); rebuilt.
    std::fs::remove_file(root.join("index.redb")).unwrap();
    let out = cli(
        &["index", "rebuild", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("{total} segment(s) queued for upload")),
        "{}",
        out.stdout
    );

    // Third run, no stream: the queue drains by itself.
    let cfg = write(dir.path(), &config_with_upload(&base, "", &target, None));
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(60), all_uploaded);
    d.terminate(Duration::from_secs(20));
    let log = d.log();
    assert_eq!(
        log.matches("already stored; not sent again").count(),
        uploaded_before,
        "log:\n{log}"
    );
    let rows = rows(&cfg);
    assert_eq!(closed(&rows).len(), total);
    for r in closed(&rows) {
        let local = root.join(&r.files[0].path);
        let name = local.file_name().unwrap().to_str().unwrap();
        let remote = s3
            .object("vod", &format!("rec/{}/{name}", r.stream))
            .unwrap_or_else(|| panic!("{name} missing: {:?}", s3.keys("vod")));
        assert_eq!(md5(&remote), md5_file(&local));
        assert_decodes(&local);
    }
    // Every object was sent exactly once over the three runs.
    let puts = s3.puts_per_path();
    assert_eq!(puts.len(), total, "{puts:?}");
    assert!(puts.values().all(|n| *n == 1), "{puts:?}");
}

#[test]
fn a_rebuild_queues_nothing_when_keys_use_the_ids_it_renumbers() {
    let dir = workdir("upload-rebuild-id");
    let s3 = S3Peer::start(&["vod"]);
    let src = clip(&ClipSpec::h264(4, 1));
    let root = dir.path().join("data");
    let mut base = TestConfig::new(&root);
    base.interval = "2s".into();
    let base = base.stream("cam", &format!("file:{}?realtime=false", src.display()));
    let target = s3_target(&s3.endpoint(), "vod", "{stream}/{id}.mp4");
    let cfg = write(dir.path(), &config_with_upload(&base, "", &target, None));
    let mut d = Daemon::start(&cfg);
    wait_rows(&cfg, Duration::from_secs(40), |rows| {
        closed(rows).len() >= 2 && all_uploaded(rows)
    });
    d.terminate(Duration::from_secs(20));
    let before = s3.keys("vod");

    std::fs::remove_file(root.join("index.redb")).unwrap();
    let out = cli(
        &["index", "rebuild", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("use {id}, which a rebuild renumbers"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("no segment is queued for upload"),
        "{}",
        out.stdout
    );
    let rows = rows(&cfg);
    assert!(
        closed(&rows)
            .iter()
            .all(|r| matches!(r.upload, UploadState::NotQueued)),
        "{rows:?}"
    );
    assert_eq!(s3.keys("vod"), before);
}
