//! End to end: the storage guard. With `storage.require_marker = true` (the default),
//! `edgerec run` refuses a data directory that `edgerec init` did not mark — the state of an
//! SD card or SSD that failed to mount — and writes nothing there; after `init` it records.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn guarded_config(dir: &Path, root: &Path) -> std::path::PathBuf {
    let clip = clip(&ClipSpec::h264(4, 1));
    TestConfig {
        interval: "2s".into(),
        require_marker: true,
        ..TestConfig::new(root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.join("edgerec.toml"))
}

#[test]
fn run_refuses_an_unmounted_data_dir_until_init_marks_it() {
    let dir = workdir("guard");
    // A mount point whose disk is missing: first the directory does not even exist…
    let root = dir.path().join("mnt/sd/edgerec");
    let cfg = guarded_config(dir.path(), &root);
    let c = cfg.to_str().unwrap();
    let out = cli(&["run", "--config", c], dir.path());
    assert_eq!(out.code, 1, "run must refuse: {out:?}");
    assert!(
        out.stderr.contains(root.to_str().unwrap()) && out.stderr.contains("does not exist"),
        "the error names the path: {}",
        out.stderr
    );
    assert!(out.stderr.contains("edgerec init"), "{}", out.stderr);
    assert!(!root.exists(), "run created the data directory");

    // …then an empty directory (an unmounted mount point).
    std::fs::create_dir_all(&root).unwrap();
    let out = cli(&["run", "--config", c], dir.path());
    assert_eq!(out.code, 1, "run must refuse: {out:?}");
    assert!(out.stderr.contains(".edgerec-root"), "{}", out.stderr);
    assert!(
        out.stderr.contains("not recording") || out.stderr.contains("refusing"),
        "{}",
        out.stderr
    );
    // Read-only commands leave the mount point alone too.
    for cmd in ["segments", "status"] {
        let out = cli(&[cmd, "--config", c], dir.path());
        assert_ne!(out.code, 0, "{cmd} on an unmarked dir: {out:?}");
        assert!(out.stderr.contains("edgerec init"), "{cmd}: {}", out.stderr);
    }
    let left: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert!(
        left.is_empty(),
        "edgerec wrote into the unmarked dir: {left:?}"
    );

    // `edgerec init` marks it (twice is harmless), then run records.
    let out = cli(&["init", "--config", c], dir.path());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("initialised"), "{}", out.stdout);
    let marker = std::fs::read_to_string(root.join(".edgerec-root")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&marker).unwrap();
    assert_eq!(m["device_id"], "e2e");
    assert_eq!(m["id"].as_str().map(str::len), Some(32));
    let again = cli(&["init", "--config", c], dir.path());
    assert!(again.stdout.contains("already initialised"), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(root.join(".edgerec-root")).unwrap(),
        marker
    );

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "cam", 1, Duration::from_secs(30)),
        "nothing recorded after init; log:\n{}",
        daemon.log()
    );
    stop_clean(&mut daemon);
    for r in closed_of(&segments(&cfg), "cam") {
        assert_decodes(&root.join(&r.files[0].path));
    }
}
