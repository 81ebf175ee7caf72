//! `Store::check` against real segments: what it calls damage and what pending, that it
//! refuses a root in use, and that it changes nothing, not even an index left by a crash.

use std::fs;
use std::path::Path;

use super::fixture;
use super::tests::{open, record, write, NOW};
use super::*;
use crate::media::format::Format;

const BOTH: &[Format] = &[Format::Fmp4, Format::Mp4];

/// Every file under `dir` with its bytes, sorted.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Copies the tree `from` to `to` (a crash image when a store is open on `from`).
fn copy_tree(from: &Path, to: &Path) {
    for (p, bytes) in snapshot(from) {
        let dest = to.join(p.strip_prefix(from).unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(dest, bytes).unwrap();
    }
}

#[test]
fn closed_segments_after_a_clean_stop_agree() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    let store = open(&root);
    record(&store, &clip, "cam/a", BOTH, 2);
    record(
        &store,
        &clip.with_meta(fixture::meta("cam", 1)),
        "cam/b",
        BOTH,
        1,
    );
    drop(store);
    let report = Store::check(&root).unwrap();
    assert!(report.agrees(), "{report}");
    assert_eq!((report.rows, report.closed, report.files), (2, 2, 4));
    assert!(
        report.to_string().contains("index and files agree"),
        "{report}"
    );
}

#[test]
fn what_a_crash_leaves_is_pending_not_damage_and_recovery_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    let store = open(&root);
    record(&store, &clip, "cam/a", BOTH, 2);
    // A writer dropped mid-segment: its working file and `Writing` row stay.
    drop(write(
        &store,
        &clip.with_meta(fixture::meta("cam", 1)),
        "cam/b",
        BOTH,
        1,
    ));
    // A final file no row names (its close commit was lost).
    let c = clip.with_meta(fixture::meta("cam", 2));
    let row = record(&store, &c, "cam/c", &[Format::Fmp4], 1);
    store
        .shared
        .index
        .commit(vec![index::Op::Remove(row.id)])
        .unwrap();
    drop(store);

    let report = Store::check(&root).unwrap();
    assert!(report.damage.is_empty(), "{report}");
    assert_eq!(report.pending.len(), 2, "{report}");
    let text = report.to_string();
    for what in [
        "row 2 (cam #1) is being written: cam/b.mp4.part",
        "cam/c.mp4: a segment file no closed row names",
    ] {
        assert!(text.contains(what), "{what:?} not in:\n{text}");
    }

    let store = open(&root);
    store.recover(NOW).unwrap();
    drop(store);
    let report = Store::check(&root).unwrap();
    assert!(report.agrees(), "{report}");
    assert_eq!(report.closed, 3);
}

#[test]
fn a_closed_file_missing_or_resized_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    let store = open(&root);
    let a = record(&store, &clip, "cam/a", BOTH, 2);
    let b = record(
        &store,
        &clip.with_meta(fixture::meta("cam", 1)),
        "cam/b",
        BOTH,
        2,
    );
    drop(store);
    fs::remove_file(root.join(&a.files[1].path)).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(root.join(&b.files[0].path))
        .unwrap();
    f.set_len(b.files[0].bytes - 1).unwrap();
    drop(f);

    let report = Store::check(&root).unwrap();
    assert_eq!(report.damage.len(), 2, "{report}");
    assert!(
        report.damage[0].contains("cam/a.progressive.mp4 is missing"),
        "{report}"
    );
    assert!(
        report.damage[1].contains(&format!(
            "cam/b.mp4 has {} bytes, it has {}",
            b.files[0].bytes,
            b.files[0].bytes - 1
        )),
        "{report}"
    );
    assert!(!report.agrees());
}

#[test]
fn segment_files_without_an_index_are_damage_and_an_empty_root_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    fs::create_dir_all(&root).unwrap();
    assert!(Store::check(&root).unwrap().agrees());
    let store = open(&root);
    record(&store, &clip, "cam/a", BOTH, 1);
    drop(store);
    fs::remove_file(root.join("index.redb")).unwrap();
    let report = Store::check(&root).unwrap();
    assert_eq!(report.damage.len(), 1, "{report}");
    assert!(
        report.damage[0].contains("index.redb is missing beside 2 segment file(s)"),
        "{report}"
    );
}

#[test]
fn a_root_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = open(&root);
    let err = Store::check(&root).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(store);
    assert!(Store::check(&root).unwrap().agrees());
}

#[test]
fn checking_an_index_left_by_a_crash_changes_no_byte_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let live = dir.path().join("live");
    let store = open(&live);
    record(&store, &clip, "cam/a", BOTH, 2);
    store.flush().unwrap();
    // Volatile, so lost in the crash: its working file has no row.
    drop(write(
        &store,
        &clip.with_meta(fixture::meta("cam", 1)),
        "cam/b",
        BOTH,
        1,
    ));
    // The store is still open: the copy is what a crash would leave, an index redb must
    // repair before use.
    let crashed = dir.path().join("crashed");
    copy_tree(&live, &crashed);
    drop(store);
    let before = snapshot(&crashed);
    let report = Store::check(&crashed).unwrap();
    assert!(report.damage.is_empty(), "{report}");
    assert_eq!((report.rows, report.closed), (1, 1), "{report}");
    assert_eq!(
        report.pending,
        vec!["cam/b.mp4.part: a working file no row is writing".to_string()]
    );
    assert_eq!(snapshot(&crashed), before, "the check changed the root");
}
