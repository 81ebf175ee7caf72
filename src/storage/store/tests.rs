//! Protocol tests with real fMP4 segments (see `fixture.rs`), every produced file checked by
//! ffmpeg/ffprobe.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fixture::{self, Clip};
use super::index::Op;
use super::*;
use crate::media::format::Format;
use crate::util::clock::ManualClock;

pub(super) const NOW: i64 = 1_800_000_000_000;

/// Open the store at `root`. A test that drops a store and opens it again can find the lock
/// still held for a moment: another test thread spawning ffmpeg forks with a copy of every
/// descriptor, the lock's included, until its child execs (the descriptors are close-on-exec).
/// So a held lock is retried for up to 2 s.
pub(super) fn open(root: &Path) -> Store {
    let mut tries = 0;
    loop {
        match Store::open_with_clock(root, ManualClock::new(NOW)) {
            Err(StoreError::Locked { .. }) if tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r.unwrap(),
        }
    }
}

/// Begin a segment of `clip` under `meta`, append `n` fragments, and return the writer.
pub(super) fn write(
    store: &Store,
    clip: &Clip,
    base: &str,
    formats: &[Format],
    n: usize,
) -> SegmentWriter {
    let mut w = store
        .begin(&clip.start.meta, Path::new(base), formats, &clip.init)
        .unwrap();
    for f in &clip.fragments[..n] {
        w.append(f).unwrap();
    }
    w
}

pub(super) fn record(
    store: &Store,
    clip: &Clip,
    base: &str,
    formats: &[Format],
    n: usize,
) -> SegmentRow {
    let w = write(store, clip, base, formats, n);
    w.finish(&clip.close_after(n)).unwrap().unwrap()
}

/// Every file under the root except the index and lock, relative.
pub(super) fn files(root: &Path) -> Vec<PathBuf> {
    fsutil::walk(root).unwrap()
}

/// Asserts the index and the disk agree: each Closed row's files exist with their recorded
/// sizes, and every file under the root belongs to a row.
pub(super) fn assert_consistent(store: &Store) {
    let rows = store.segments().unwrap();
    let mut named = Vec::new();
    for row in &rows {
        assert_eq!(row.state, SegmentState::Closed, "{row:?}");
        for f in &row.files {
            let len = fs::metadata(store.root().join(&f.path)).unwrap().len();
            assert_eq!(len, f.bytes, "{}", f.path.display());
            named.push(f.path.clone());
        }
        assert_eq!(row.bytes, row.files.iter().map(|f| f.bytes).sum::<u64>());
    }
    named.sort();
    assert_eq!(files(store.root()), named);
}

pub(super) fn assert_decodes(path: &Path, frames: u64) {
    assert_eq!(fixture::decode_errors(path), "", "{}", path.display());
    assert_eq!(fixture::decoded_frames(path), frames, "{}", path.display());
}

#[test]
fn finished_segment_is_closed_renamed_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    let store = open(&root);
    let w = write(&store, &clip, "cam/2024-01-01/00-00-00", &[Format::Fmp4], 3);
    assert_eq!(w.fragments(), 3);
    let expected_bytes = clip.init.len() + clip.fragments.iter().map(Vec::len).sum::<usize>();
    // Each fragment is preceded by a `free` box that ends it on a page boundary (in the
    // store's tests every fragment is aligned, see `writer::page_padding`).
    assert_eq!(w.bytes() % 4096, 0, "{}", w.bytes());
    assert!(
        w.bytes() > expected_bytes as u64 && w.bytes() <= expected_bytes as u64 + 3 * 4104,
        "{} for {expected_bytes} bytes of init and fragments",
        w.bytes()
    );
    assert!(root.join("cam/2024-01-01/00-00-00.mp4.part").exists());
    let id = w.id();
    let written = w.bytes();
    assert_eq!(store.segments().unwrap()[0].state, SegmentState::Writing);

    let row = w.finish(&clip.close_after(3)).unwrap().unwrap();
    assert_eq!(row.id, id);
    assert_eq!(row.state, SegmentState::Closed);
    assert_eq!(row.duration_ms, 3000);
    assert_eq!(row.end_ms, clip.start.meta.start_ms + 3000);
    assert_eq!(row.closed_at_ms, NOW);
    assert!(!row.recovered);
    assert_eq!(
        row.files,
        vec![SegmentFile {
            format: Format::Fmp4,
            path: PathBuf::from("cam/2024-01-01/00-00-00.mp4"),
            bytes: written,
        }]
    );
    assert_eq!(store.segments().unwrap(), vec![row.clone()]);
    assert_consistent(&store);
    assert_decodes(&root.join(&row.files[0].path), 75);
}

#[test]
fn segment_without_fragments_leaves_no_file_and_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let store = open(&dir.path().join("root"));
    let w = write(&store, &clip, "cam/day/x", &[Format::Fmp4], 0);
    assert_eq!(w.finish(&clip.close_after(0)).unwrap(), None);
    assert!(store.segments().unwrap().is_empty());
    assert!(files(store.root()).is_empty());
    assert!(
        !store.root().join("cam").exists(),
        "empty directories go too"
    );
}

#[test]
fn taken_names_get_a_numeric_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let store = open(&dir.path().join("root"));
    let first = record(&store, &clip, "cam/x", &[Format::Fmp4], 1);
    let live = write(&store, &clip, "cam/x", &[Format::Fmp4], 1);
    let third = write(&store, &clip, "cam/x", &[Format::Fmp4], 1);
    assert_eq!(first.base, PathBuf::from("cam/x"));
    assert_eq!(live.row().base, PathBuf::from("cam/x-1"));
    assert_eq!(third.row().base, PathBuf::from("cam/x-2"));
}

#[test]
fn names_escaping_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("root"));
    let meta = fixture::meta("cam", 0);
    for bad in ["../x", "/abs/x", ""] {
        let err = store
            .begin(&meta, Path::new(bad), &[Format::Fmp4], b"")
            .unwrap_err();
        assert!(matches!(err, StoreError::BadName { .. }), "{bad}: {err}");
    }
}

#[test]
fn torn_working_file_is_cut_to_its_last_complete_fragment_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    let good_len = {
        let store = open(&root);
        let w = write(&store, &clip, "cam/a", &[Format::Fmp4], 2);
        let good = w.bytes();
        // Power cut in the middle of the third fragment's write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(root.join("cam/a.mp4.part"))
            .unwrap();
        f.write_all(&clip.fragments[2][..clip.fragments[2].len() / 2])
            .unwrap();
        drop(w); // the task dies without finish
        good
    };
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    let row = &report.recovered[0];
    assert!(row.recovered);
    assert_eq!(row.state, SegmentState::Closed);
    assert_eq!(row.duration_ms, 2000);
    assert_eq!(row.files[0].path, PathBuf::from("cam/a.mp4"));
    assert_eq!(row.files[0].bytes, good_len);
    assert_eq!(row.meta(), clip.start.meta);
    assert_consistent(&store);
    assert_decodes(&root.join("cam/a.mp4"), 50);
}

#[test]
fn recovery_run_twice_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        record(&store, &clip, "cam/closed", &[Format::Fmp4], 2);
        drop(write(&store, &clip, "cam/open", &[Format::Fmp4], 1));
    }
    let store = open(&root);
    let first = store.recover(NOW).unwrap();
    assert_eq!(first.recovered.len(), 1);
    let rows = store.segments().unwrap();
    drop(store);
    let store = open(&root);
    let second = store.recover(NOW).unwrap();
    assert!(
        second.recovered.is_empty() && second.adopted.is_empty(),
        "{second:?}"
    );
    assert!(
        second.removed.is_empty() && second.dropped_rows == 0,
        "{second:?}"
    );
    assert_eq!(store.segments().unwrap(), rows);
    assert_consistent(&store);
}

#[test]
fn working_file_torn_inside_its_init_is_removed_with_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(&store, &clip, "cam/torn", &[Format::Fmp4], 0));
        let part = root.join("cam/torn.mp4.part");
        let f = OpenOptions::new().write(true).open(&part).unwrap();
        f.set_len(clip.init.len() as u64 / 2).unwrap();
    }
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.removed, vec![PathBuf::from("cam/torn.mp4.part")]);
    assert_eq!(report.dropped_rows, 1);
    assert!(store.segments().unwrap().is_empty());
    assert_consistent(&store);
}

#[test]
fn close_interrupted_after_its_rename_is_completed_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(&store, &clip, "cam/r", &[Format::Fmp4], 2));
        // finish got as far as the rename, then the power went.
        fs::rename(root.join("cam/r.mp4.part"), root.join("cam/r.mp4")).unwrap();
    }
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    // The fMP4 was complete (renamed only after its fsync): finished, not torn.
    assert!(report.recovered.is_empty(), "{report:?}");
    assert_eq!(report.adopted.len(), 1, "{report:?}");
    assert_eq!(report.adopted[0].duration_ms, 2000);
    assert!(!report.adopted[0].recovered);
    assert_consistent(&store);
    assert_decodes(&root.join("cam/r.mp4"), 50);
}

#[test]
fn writing_row_whose_file_never_appeared_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(&store, &clip, "cam/gone", &[Format::Fmp4], 1));
        fs::remove_file(root.join("cam/gone.mp4.part")).unwrap();
    }
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.dropped_rows, 1);
    assert!(store.segments().unwrap().is_empty());
}

#[test]
fn closed_row_whose_file_vanished_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    let store = open(&root);
    let row = record(&store, &clip, "cam/v", &[Format::Fmp4], 1);
    fs::remove_file(root.join(&row.files[0].path)).unwrap();
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.dropped_rows, 1);
    assert!(store.segments().unwrap().is_empty());
}

#[test]
fn delete_removes_files_rows_and_empty_directories_but_not_writing_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    let store = open(&root);
    let a = record(&store, &clip, "cam/2024-01-01/a", &[Format::Fmp4], 1);
    let b = record(&store, &clip, "cam/2024-01-02/b", &[Format::Fmp4], 1);
    let live = write(&store, &clip, "cam/2024-01-03/c", &[Format::Fmp4], 1);
    let freed = store.delete(&[a.id, b.id, live.id(), 999]).unwrap();
    assert_eq!(freed, a.bytes + b.bytes);
    let rows = store.segments().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, live.id());
    assert!(!root.join("cam/2024-01-01").exists());
    assert!(!root.join("cam/2024-01-02").exists());
    assert!(root.join("cam/2024-01-03/c.mp4.part").exists());
    let row = live.finish(&clip.close_after(1)).unwrap().unwrap();
    assert_eq!(store.delete(&[row.id]).unwrap(), row.bytes);
    assert!(files(&root).is_empty());
    assert!(!root.join("cam").exists());
}

#[test]
fn delete_interrupted_after_marking_is_finished_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    let keep = {
        let store = open(&root);
        let mut gone = record(&store, &clip, "cam/gone", &[Format::Fmp4], 1);
        let keep = record(&store, &clip, "cam/keep", &[Format::Fmp4], 1);
        // Power cut right after the Deleting commit.
        gone.state = SegmentState::Deleting;
        store.shared.index.commit(vec![Op::put(gone)]).unwrap();
        keep
    };
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.dropped_rows, 1);
    assert!(
        report.adopted.is_empty(),
        "the deleted file must not come back"
    );
    assert_eq!(store.segments().unwrap(), vec![keep]);
    assert_consistent(&store);
}

/// The fields a row gets from its files (not ids, close times or upload state).
pub(super) fn from_files(r: &SegmentRow) -> impl PartialEq + std::fmt::Debug {
    (
        r.meta(),
        r.end_ms,
        r.duration_ms,
        r.bytes,
        r.files.clone(),
        r.state,
        r.formats.clone(),
    )
}

#[test]
fn index_rebuilt_from_the_files_equals_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    let store = open(&root);
    for (i, (stream, n)) in [("cam", 3), ("cam", 1), ("door", 2)].iter().enumerate() {
        let c = clip.with_meta(fixture::meta(stream, i as u64));
        record(&store, &c, &format!("{stream}/{i}"), &[Format::Fmp4], *n);
    }
    let before = store.segments().unwrap();
    let report = store.rebuild_index().unwrap();
    assert_eq!(report.dropped_rows, 3);
    assert_eq!(report.adopted.len(), 3);
    let after = store.segments().unwrap();
    assert_eq!(
        after.iter().map(from_files).collect::<Vec<_>>(),
        before.iter().map(from_files).collect::<Vec<_>>()
    );
    let max_before = before.iter().map(|r| r.id).max().unwrap();
    assert!(
        after.iter().all(|r| r.id > max_before),
        "ids are not reused"
    );
    assert_consistent(&store);
}

#[test]
fn our_files_without_rows_are_adopted_and_foreign_files_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    let store = open(&root);
    fs::create_dir_all(root.join("copied")).unwrap();
    let mut ours = clip.init.clone();
    ours.extend(clip.fragments.concat());
    fs::write(root.join("copied/ours.mp4"), &ours).unwrap();
    fs::copy(
        dir.path().join("fixture-source.mp4"),
        root.join("foreign.mp4"),
    )
    .unwrap();
    fs::write(root.join("notes.txt"), b"hello").unwrap();
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.adopted.len(), 1, "{report:?}");
    let row = &report.adopted[0];
    assert_eq!(row.meta(), clip.start.meta);
    assert_eq!(row.duration_ms, 2000);
    assert_eq!(row.files[0].path, PathBuf::from("copied/ours.mp4"));
    assert!(root.join("foreign.mp4").exists() && root.join("notes.txt").exists());
    assert_eq!(store.segments().unwrap().len(), 1);
}

#[test]
fn an_adopted_file_keeps_its_time_quality_and_boot_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta = fixture::meta("cam", 3);
    meta.time_quality = Some(crate::util::clockwatch::TimeQuality::Unsynced);
    meta.boot = Some(crate::util::clockwatch::BootTime {
        id: "b1".into(),
        ms: 5_000,
        offset_ms: meta.start_ms - 5_000,
    });
    let clip = fixture::clip(dir.path(), 1).with_meta(meta.clone());
    let root = dir.path().join("root");
    let store = open(&root);
    let mut bytes = clip.init.clone();
    bytes.extend(clip.fragments.concat());
    fs::write(root.join("lost.mp4"), &bytes).unwrap();
    let report = store.recover(NOW).unwrap();
    let row = &report.adopted[0];
    assert_eq!(Some(row.time_quality), meta.time_quality);
    assert_eq!(row.boot, meta.boot);
}

#[test]
fn next_seq_follows_the_highest_seq_even_after_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let store = open(&dir.path().join("root"));
    assert_eq!(store.next_seq("cam").unwrap(), 0);
    let mut ids = Vec::new();
    for seq in [4, 5] {
        let c = clip.with_meta(fixture::meta("cam", seq));
        ids.push(record(&store, &c, &format!("cam/{seq}"), &[Format::Fmp4], 1).id);
    }
    assert_eq!(store.next_seq("cam").unwrap(), 6);
    assert_eq!(store.next_seq("door").unwrap(), 0);
    store.delete(&ids).unwrap();
    assert_eq!(store.next_seq("cam").unwrap(), 6);
}

#[test]
fn unwritable_root_gives_an_error_naming_the_path_and_the_fix() {
    // sysfs refuses new files even to root, so this holds whoever runs the tests.
    let root = Path::new("/sys/kernel");
    if root.is_dir() {
        let err = Store::open(root).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::RootNotWritable { .. }), "{text}");
        assert!(
            text.contains("/sys/kernel") && text.contains("storage.root"),
            "{text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let err = Store::open(&file.join("root")).unwrap_err();
    assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
}

#[test]
fn second_store_on_the_same_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn streams_closing_at_once_from_threads_all_land_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let clip = Arc::new(fixture::clip(dir.path(), 2));
    let root = dir.path().join("root");
    let store = Arc::new(open(&root));
    let commits_before = store.index_commits();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (store, clip) = (store.clone(), clip.clone());
            std::thread::spawn(move || {
                let mut rows = Vec::new();
                for seq in 0..3 {
                    let c = clip.with_meta(fixture::meta(&format!("s{t}"), seq));
                    rows.push(record(
                        &store,
                        &c,
                        &format!("s{t}/{seq}"),
                        &[Format::Fmp4],
                        2,
                    ));
                }
                rows
            })
        })
        .collect();
    let mut rows: Vec<SegmentRow> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // Listed in recording order: by id, as segments began.
    rows.sort_by_key(|r| r.id);
    assert_eq!(store.segments().unwrap(), rows);
    assert_eq!(rows.len(), 12);
    // One begin and one close commit per segment at most; grouping may only lower it.
    assert!(store.index_commits() - commits_before <= 24);
    assert_consistent(&store);
    for r in &rows {
        assert_eq!(fixture::decode_errors(&root.join(&r.files[0].path)), "");
    }
}

#[test]
fn store_is_shared_across_threads_and_writers_move_to_tasks() {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shared::<Store>();
    movable::<SegmentWriter>();
}
