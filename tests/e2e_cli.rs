//! End to end: the `edgerec` command line. `check` accepts the README example and the
//! printed default, refuses bad configs naming the field; `run` fails clearly on an
//! unusable data dir, and a dead or refused camera does not stop the other streams.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// The example config from README.md (the README is kept in sync with this copy).
const README_EXAMPLE: &str = r#"device_id = "edge-001"
[storage]
root = "./data"
max_bytes = "2GiB"
min_free = "10%"        # or "500MiB"
max_age = "7d"          # optional
retention_interval = "60s"
[[templates]]
name = "continuous"
formats = ["fmp4"]      # or ["mp4"], ["fmp4","mp4"]
interval = "60s"        # cut on the first key frame after this
fragment = "1s"
naming = "{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}"   # vars: stream app YYYY MM DD hh mm ss start seq
[[rules]]
template = "continuous"
stream = "*"
[[streams]]
name = "cam1"
source = "rtsp://user:pass@127.0.0.1:8554/cam?transport=udp"   # tcp default
[[streams]]
name = "demo"
source = "file:assets/sample.mp4?loop=true"        # ?realtime=false replays as fast as possible
"#;

/// A temp dir holding `assets/sample.mp4`, so relative sources in examples resolve.
fn dir_with_sample(name: &str) -> tempfile::TempDir {
    let dir = workdir(name);
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::copy(
        repo().join("assets/sample.mp4"),
        dir.path().join("assets/sample.mp4"),
    )
    .unwrap();
    dir
}

fn check(dir: &Path, toml: &str) -> CliOutput {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    cli(&["check", "--config", path.to_str().unwrap()], dir)
}

/// `check` must refuse `toml` with exit 1 and a message containing every `needles`.
fn assert_refused(dir: &Path, toml: &str, needles: &[&str]) {
    let out = check(dir, toml);
    assert_eq!(
        out.code, 1,
        "check should refuse (exit 1), got {}:\n{toml}\nstderr: {}",
        out.code, out.stderr
    );
    let msg = format!("{}{}", out.stderr, out.stdout);
    for n in needles {
        assert!(msg.contains(n), "error should name {n:?}, said: {msg}");
    }
    // The file is named once: `error: /x/edgerec.toml: field: ...`, not twice.
    let file = dir.join("config.toml").display().to_string();
    assert_eq!(
        msg.matches(&file).count(),
        1,
        "the error should name {file} exactly once, said: {msg}"
    );
}

#[test]
fn check_accepts_the_readme_example() {
    let dir = dir_with_sample("cli_readme");
    let out = check(dir.path(), README_EXAMPLE);
    assert_eq!(out.code, 0, "README example refused: {}", out.stderr);
}

#[test]
fn printed_default_config_passes_check() {
    let dir = dir_with_sample("cli_default");
    let out = cli(&["config", "default"], dir.path());
    assert_eq!(out.code, 0, "config default failed: {}", out.stderr);
    assert!(
        out.stdout.contains("[storage]"),
        "not a config: {}",
        out.stdout
    );
    assert!(
        out.stdout.lines().any(|l| l.trim_start().starts_with('#')),
        "the default config should be commented"
    );
    let checked = check(dir.path(), &out.stdout);
    assert_eq!(
        checked.code, 0,
        "default config refused: {}",
        checked.stderr
    );
}

#[test]
fn config_errors_name_the_field() {
    let dir = dir_with_sample("cli_errors");
    let d = dir.path();
    assert_refused(
        d,
        &README_EXAMPLE.replace("max_bytes", "max_bites"),
        &["max_bites"],
    );
    assert_refused(
        d,
        &README_EXAMPLE.replace("interval = \"60s\"", "interval = \"sixty\""),
        &["interval"],
    );
    assert_refused(
        d,
        &README_EXAMPLE.replace("interval = \"60s\"", "interval = \"3h\""),
        &["templates[0].interval"],
    );
    assert_refused(
        d,
        &README_EXAMPLE.replace("max_bytes = \"2GiB\"", "max_bytes = \"lots\""),
        &["max_bytes"],
    );
}

#[test]
fn naming_templates_that_escape_the_root_are_refused() {
    let dir = dir_with_sample("cli_naming");
    let default_naming = "naming = \"{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}\"";
    assert!(README_EXAMPLE.contains(default_naming));
    for bad in [
        "../{stream}-{start}",
        "{stream}/../../x-{seq}",
        "/tmp/{stream}-{start}",
    ] {
        let toml = README_EXAMPLE.replace(default_naming, &format!("naming = \"{bad}\""));
        assert_refused(dir.path(), &toml, &["templates[0].naming"]);
    }
}

#[test]
fn unwritable_data_dir_is_a_clear_error() {
    let dir = workdir("cli_unwritable");
    let clip = clip(&ClipSpec::h264(4, 1));
    // A path below a regular file cannot be created, not even by root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let root = blocker.join("data");
    let cfg = TestConfig::new(&root)
        .stream("cam", &format!("file:{}?loop=true", clip.display()))
        .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let exited = wait_until(Duration::from_secs(20), || !daemon.running());
    let log = daemon.log();
    assert!(
        exited,
        "edgerec kept running with an unusable data dir; log:\n{log}"
    );
    assert!(
        log.contains(root.to_str().unwrap()) || log.contains(blocker.to_str().unwrap()),
        "the error should name the data dir; log:\n{log}"
    );
    let out = cli(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    assert_ne!(out.code, 0, "run must fail: {}", out.stderr);
}

#[test]
fn an_unreachable_or_refused_camera_does_not_stop_the_other_stream() {
    let dir = workdir("cli_dead_camera");
    let root = dir.path().join("data");
    let clip_path: PathBuf = clip(&ClipSpec::h264(6, 1));
    let peer = RtspPeer::start_with(&[("/cam", &clip_path)], Some(("viewer", "s3cret")));
    let dead = format!("rtsp://127.0.0.1:{}/nothing-here", free_port());
    let refused = peer.url_auth("/cam", "viewer", "wrong-pass-123");
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("dead", &dead)
    .stream("refused", &refused)
    .stream("alive", &format!("file:{}?loop=true", clip_path.display()))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_secs(7));
    assert!(daemon.running(), "edgerec gave up; log:\n{}", daemon.log());
    let status = daemon.terminate(Duration::from_secs(20));
    let log = daemon.log();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(
        !log.contains("wrong-pass-123"),
        "the log shows a camera password:\n{log}"
    );
    assert!(
        log.contains("dead"),
        "the log should say which stream fails:\n{log}"
    );
    assert!(
        log.contains("refused"),
        "the log should say which stream fails:\n{log}"
    );

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let alive: Vec<&SegmentRow> = rows.iter().filter(|r| r.stream == "alive").collect();
    assert!(
        alive.len() >= 2,
        "the file stream should have kept recording: {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.stream == "alive"),
        "segments from a camera that never answered: {rows:?}"
    );
    for r in alive {
        assert_decodes(&root.join(&r.files[0].path));
    }
}

#[test]
fn segments_json_has_the_documented_fields() {
    let dir = workdir("cli_segments_json");
    let root = dir.path().join("data");
    let clip = clip(&ClipSpec::h264(4, 1));
    let cfg = TestConfig {
        interval: "1s".into(),
        ..TestConfig::new(&root)
    }
    .stream(
        "s",
        &format!("file:{}?loop=true&realtime=false", clip.display()),
    )
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let some = wait_until(Duration::from_secs(20), || segment_files(&root).len() >= 2);
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(some && status.success(), "log:\n{}", daemon.log());

    let out = cli(
        &["segments", "--config", cfg.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = v.as_array().expect("a JSON array");
    assert!(rows.len() >= 2, "{rows:?}");
    for r in rows {
        for key in [
            "id",
            "stream",
            "seq",
            "start_ms",
            "end_ms",
            "duration_ms",
            "bytes",
            "time_quality",
            "boot",
        ] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert!(
            ["synced", "unsynced"].contains(&r["time_quality"].as_str().unwrap_or("")),
            "{r}"
        );
        assert_eq!(r["state"], "closed", "state is \"closed\"/\"writing\": {r}");
        assert_eq!(r["recovered"], false, "{r}");
        let files = r["files"].as_array().expect("files array");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0]["format"], "fmp4");
        let path = files[0]["path"].as_str().expect("relative path");
        assert!(
            !path.starts_with('/'),
            "path is relative to storage.root: {path}"
        );
        assert!(root.join(path).is_file(), "{path} not under the root");
        assert!(files[0]["bytes"].as_u64().is_some_and(|b| b > 0), "{r}");
    }
}
