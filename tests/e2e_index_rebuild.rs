//! End to end: `edgerec index rebuild` through the binary. A recording is made, the
//! recorder stopped, and the index removed or damaged; the rebuild must list the same
//! segments from the files alone (`segments --json`), keep a damaged index aside instead of
//! failing, and say what it did in words. Every file is probed and decoded by ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Stream, seq, start, end, duration, and (format, path, bytes) of each file.
type Identity = (String, u64, i64, i64, i64, Vec<(String, String, u64)>);

/// What a rebuilt row must have in common with the row the recorder wrote.
fn identity(r: &SegmentRow) -> Identity {
    let files = r
        .files
        .iter()
        .map(|f| (f.format.clone(), f.path.clone(), f.bytes))
        .collect();
    (
        r.stream.clone(),
        r.seq,
        r.start_ms,
        r.end_ms,
        r.duration_ms,
        files,
    )
}

/// Records a 6 s clip into 2 s segments (fMP4 and a progressive copy), stops cleanly, and
/// returns the config and the rows the recorder wrote.
fn recording(name: &str) -> (tempfile::TempDir, PathBuf, Vec<SegmentRow>) {
    let dir = workdir(name);
    let clip = clip(&ClipSpec::h264(6, 1));
    let cfg = TestConfig {
        interval: "2s".into(),
        formats: vec!["fmp4".into(), "mp4".into()],
        ..TestConfig::new(&dir.path().join("data"))
    }
    .stream("cam", &format!("file:{}?realtime=false", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let ended = wait_until(Duration::from_secs(60), || {
        daemon.log().contains("source ended")
    });
    assert!(ended, "log:\n{}", daemon.log());
    stop_clean(&mut daemon);
    let rows = segments(&cfg);
    assert_eq!(closed_of(&rows, "cam").len(), 3, "{rows:?}");
    (dir, cfg, rows)
}

fn rebuild(cfg: &Path) -> CliOutput {
    let out = cli(
        &["index", "rebuild", "--config", cfg.to_str().unwrap()],
        cfg.parent().unwrap(),
    );
    assert_eq!(out.code, 0, "rebuild failed: {out:?}");
    assert!(
        out.stdout
            .contains("index rebuilt from the files: 3 segment(s) of 1 stream(s)"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('{'),
        "a summary, not a dump: {}",
        out.stdout
    );
    out
}

/// The rebuilt index lists what the recorder wrote, and every file is whole.
fn check_rebuilt(cfg: &Path, root: &Path, before: &[SegmentRow]) {
    let after = segments(cfg);
    assert_index_matches_disk(root, &after);
    let ids = |rows: &[SegmentRow]| rows.iter().map(identity).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(before));
    assert!(after.iter().all(|r| r.state == "closed"));
    for row in &after {
        for f in &row.files {
            let path = root.join(&f.path);
            let p = probe(&path);
            assert!(
                p.stream("video").is_some() && p.stream("audio").is_some(),
                "{p:?}"
            );
            assert_decodes(&path);
        }
    }
}

#[test]
fn a_removed_index_is_rebuilt_from_the_files_with_the_same_segments() {
    let (dir, cfg, before) = recording("rebuild_removed");
    let root = dir.path().join("data");
    std::fs::remove_file(root.join("index.redb")).unwrap();
    let out = rebuild(&cfg);
    assert!(
        out.stdout.contains("the old index had 0 row(s)"),
        "{}",
        out.stdout
    );
    check_rebuilt(&cfg, &root, &before);
}

#[test]
fn a_damaged_index_is_moved_aside_and_rebuilt_instead_of_failing() {
    let (dir, cfg, before) = recording("rebuild_damaged");
    let root = dir.path().join("data");
    // Garbage over the whole file, header included: redb cannot open it.
    let index = root.join("index.redb");
    let garbage: Vec<u8> = (0..std::fs::metadata(&index).unwrap().len())
        .map(|i| (i * 7 + 13) as u8)
        .collect();
    std::fs::write(&index, &garbage).unwrap();
    let refused = cli(&["segments", "--config", cfg.to_str().unwrap()], dir.path());
    assert_ne!(
        refused.code, 0,
        "a damaged index cannot be read: {refused:?}"
    );
    assert!(
        refused.stderr.contains("edgerec index rebuild"),
        "{}",
        refused.stderr
    );

    let out = rebuild(&cfg);
    let aside: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("index.redb.damaged-")
        })
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "{:?}",
        std::fs::read_dir(&root).unwrap().collect::<Vec<_>>()
    );
    let suffix = aside[0]
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        suffix.parse::<u64>().is_ok(),
        "unix seconds: {}",
        aside[0].display()
    );
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    assert!(
        out.stdout
            .contains(&format!("moved to {}", aside[0].display())),
        "{}",
        out.stdout
    );
    check_rebuilt(&cfg, &root, &before);
    // The moved-aside index is no segment: a normal start leaves it alone.
    let mut daemon = Daemon::start(&cfg);
    assert!(wait_until(Duration::from_secs(30), || root
        .join("control.sock")
        .exists()));
    stop_clean(&mut daemon);
    assert!(aside[0].exists());
}
