//! kill -9 test: a child process (this test binary, re-executed) records, closes and deletes
//! segments in a loop; the parent kills it with SIGKILL at arbitrary moments, recovers, and
//! checks that the index and the files agree and that every file decodes cleanly.
//!
//! SIGKILL keeps the page cache, so this proves the ordering of the protocol against process
//! death, not against power loss.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture;
use super::*;
use crate::media::format::Format;
use crate::util::clock::ManualClock;

const CHILD_ENV: &str = "EDGEREC_STORE_CRASH_CHILD";

/// Not a test on its own: the body of the child process, run only when re-executed with
/// `EDGEREC_STORE_CRASH_CHILD=<root>`.
#[test]
fn crash_child_records_until_killed() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let clip = fixture::clip(root.parent().unwrap(), 4);
    let store = Store::open_with_clock(root, ManualClock::new(1)).unwrap();
    store.recover(1).unwrap();
    let formats: [&[Format]; 3] = [
        &[Format::Fmp4],
        &[Format::Fmp4, Format::Mp4],
        &[Format::Mp4],
    ];
    loop {
        let seq = store.next_seq("cam").unwrap();
        let c = clip.with_meta(fixture::meta("cam", seq));
        let base = format!("cam/{}/{seq}", seq / 4);
        let mut w = store
            .begin(
                &c.start.meta,
                Path::new(&base),
                formats[seq as usize % 3],
                &c.init,
            )
            .unwrap();
        for f in &c.fragments {
            w.append(f).unwrap();
        }
        w.finish(&c.close_after(c.fragments.len())).unwrap();
        let rows = store.segments().unwrap();
        if rows.len() > 5 {
            store.delete(&[rows[0].id, rows[1].id]).unwrap();
        }
    }
}

fn spawn_child(root: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &super::fixture::libtest_name(module_path!(), "crash_child_records_until_killed"),
        ])
        .args(["--test-threads", "1", "--nocapture"])
        .env(CHILD_ENV, root)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn segment_files(root: &Path) -> usize {
    fsutil::walk(root).map(|f| f.len()).unwrap_or(0)
}

#[test]
fn store_killed_at_arbitrary_moments_recovers_to_a_consistent_decodable_state() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for round in 0..4u64 {
        let mut child = spawn_child(&root);
        // Let it get some work done, then kill it wherever it happens to be.
        let wait_until = Instant::now() + Duration::from_secs(30);
        while segment_files(&root) < 2 && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150 + 130 * round));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child ends only by being killed");

        let store = Store::open_with_clock(&root, ManualClock::new(2)).unwrap();
        let report = store.recover(2).unwrap();
        let rows = store.segments().unwrap();
        assert!(
            !rows.is_empty(),
            "round {round}: nothing recorded? {report:?}"
        );
        let mut named = Vec::new();
        for row in &rows {
            assert_eq!(row.state, SegmentState::Closed, "round {round}: {row:?}");
            for f in &row.files {
                let path = root.join(&f.path);
                assert_eq!(std::fs::metadata(&path).unwrap().len(), f.bytes);
                assert_eq!(fixture::decode_errors(&path), "", "{}", path.display());
                named.push(f.path.clone());
            }
        }
        named.sort();
        assert_eq!(
            fsutil::walk(&root).unwrap(),
            named,
            "round {round}: {report:?}"
        );
        let again = store.recover(2).unwrap();
        assert!(
            again.recovered.is_empty()
                && again.adopted.is_empty()
                && again.removed.is_empty()
                && again.dropped_rows == 0,
            "round {round}: recovery is idempotent: {again:?}"
        );
    }
}

const DELETE_CHILD_ENV: &str = "EDGEREC_STORE_DELETE_CHILD";

/// Writes what the `deleted` hook saw into the Settings table, in the hook's own commit.
struct Evicted;

impl IndexHook for Evicted {
    fn deleted(&self, rows: &[SegmentRow], ops: &mut Vec<AuxOp>) {
        for r in rows {
            ops.push(AuxOp::put(AuxTable::Settings, r.id, b"evicted".to_vec()));
        }
    }
}

/// Not a test on its own: records two segments, makes them durable, deletes one, and dies
/// at once (no flush, no clean close of the index), as a power cut right after the delete
/// returns would leave it. Run only with `EDGEREC_STORE_DELETE_CHILD=<root>`.
#[test]
fn delete_child_dies_right_after_a_delete() {
    let Some(root) = std::env::var_os(DELETE_CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let clip = fixture::clip(root.parent().unwrap(), 2);
    let store = Store::open_with_clock(root, ManualClock::new(1)).unwrap();
    store.add_hook(std::sync::Arc::new(Evicted));
    let mut ids = Vec::new();
    for seq in 0..2 {
        let c = clip.with_meta(fixture::meta("cam", seq));
        let mut w = store
            .begin(
                &c.start.meta,
                Path::new(&format!("cam/{seq}")),
                &[Format::Fmp4],
                &c.init,
            )
            .unwrap();
        for f in &c.fragments {
            w.append(f).unwrap();
        }
        ids.push(
            w.finish(&c.close_after(c.fragments.len()))
                .unwrap()
                .unwrap()
                .id,
        );
    }
    store.flush().unwrap();
    store.delete(&ids[..1]).unwrap();
    std::process::abort();
}

#[test]
fn a_delete_cut_short_after_its_unlinks_is_finished_by_recovery_not_mistaken_for_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &super::fixture::libtest_name(module_path!(), "delete_child_dies_right_after_a_delete"),
        ])
        .args(["--test-threads", "1", "--nocapture"])
        .env(DELETE_CHILD_ENV, &root)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child ends by aborting");

    let store = Store::open_with_clock(&root, ManualClock::new(2)).unwrap();
    let rows = store.segments().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (gone, kept) = (&rows[0], &rows[1]);
    // The volatile drop died with the process; the durable mark and its hook ops did not.
    assert_eq!(gone.state, SegmentState::Deleting, "{gone:?}");
    assert_eq!(kept.state, SegmentState::Closed, "{kept:?}");
    assert!(!root.join(&gone.files[0].path).exists());
    let hooked = store.aux_scan(AuxTable::Settings, 0, 10).unwrap();
    assert_eq!(hooked, vec![(gone.id, b"evicted".to_vec())]);

    store.add_hook(std::sync::Arc::new(Evicted));
    let report = store.recover(2).unwrap();
    assert_eq!(report.dropped_rows, 1, "{report:?}");
    assert_eq!(store.segments().unwrap(), vec![kept.clone()]);
    assert_eq!(
        store.aux_scan(AuxTable::Settings, 0, 10).unwrap(),
        hooked,
        "finishing the delete does not run the hook again"
    );
    assert_eq!(fixture::decode_errors(&root.join(&kept.files[0].path)), "");
}

#[test]
fn a_delete_cut_short_after_removing_its_directories_is_finished_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    {
        let store = Store::open_with_clock(&root, ManualClock::new(1)).unwrap();
        let c = clip.with_meta(fixture::meta("cam", 0));
        let mut w = store
            .begin(
                &c.start.meta,
                Path::new("cam/8/0"),
                &[Format::Fmp4],
                &c.init,
            )
            .unwrap();
        w.append(&c.fragments[0]).unwrap();
        let mut row = w.finish(&c.close_after(1)).unwrap().unwrap();
        // The durable mark, the unlink and the removal of the emptied directory happened;
        // the volatile drop of the row was lost.
        row.state = SegmentState::Deleting;
        store
            .shared
            .index
            .commit(vec![index::Op::put(row)])
            .unwrap();
        std::fs::remove_dir_all(root.join("cam/8")).unwrap();
    }
    let store = Store::open_with_clock(&root, ManualClock::new(2)).unwrap();
    let report = store.recover(2).unwrap();
    assert_eq!(report.dropped_rows, 1, "{report:?}");
    assert!(store.segments().unwrap().is_empty());
}
