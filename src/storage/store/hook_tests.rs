//! The auxiliary tables and index hooks: their changes land in the commits that close and
//! delete segments, including closes made by recovery.

use std::fs;
use std::sync::{Arc, Mutex};

use super::fixture;
use super::tests::{open, record, write};
use super::*;
use crate::media::format::Format;

/// Queues every closed segment (as the upload queue does) and logs deletions.
#[derive(Default)]
struct Queue {
    deleted: Mutex<Vec<SegmentId>>,
}

impl IndexHook for Queue {
    fn closing(&self, row: &mut SegmentRow, ops: &mut Vec<AuxOp>) {
        row.upload = UploadState::Pending {
            queued_at_ms: row.closed_at_ms,
            attempts: 0,
        };
        ops.push(AuxOp::put(AuxTable::Outbox, row.id, b"closed".to_vec()));
    }

    fn deleted(&self, rows: &[SegmentRow], ops: &mut Vec<AuxOp>) {
        for r in rows {
            self.deleted.lock().unwrap().push(r.id);
            ops.push(AuxOp::remove(AuxTable::Outbox, r.id));
        }
    }
}

#[test]
fn a_closing_hook_changes_the_row_and_adds_to_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    let store = open(&root);
    let hook = Arc::new(Queue::default());
    store.add_hook(hook.clone());
    let row = record(&store, &clip, "a/seg", &[Format::Fmp4], 2);
    assert!(matches!(row.upload, UploadState::Pending { .. }), "{row:?}");
    let stored = store.segment(row.id).unwrap().unwrap();
    assert_eq!(stored.upload, row.upload);
    assert_eq!(
        store.aux_get(AuxTable::Outbox, row.id).unwrap(),
        Some(b"closed".to_vec())
    );
    assert_eq!(
        store.aux_stats(AuxTable::Outbox).unwrap(),
        (1, Some(row.id))
    );

    store.delete(&[row.id]).unwrap();
    assert_eq!(*hook.deleted.lock().unwrap(), vec![row.id]);
    assert_eq!(store.aux_get(AuxTable::Outbox, row.id).unwrap(), None);
}

#[test]
fn recovery_runs_the_closing_hook_on_torn_and_adopted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        // A torn segment: the writer never finishes.
        drop(write(&store, &clip, "a/torn", &[Format::Fmp4], 2));
        // A closed one whose row the index loses below.
        let other = clip.with_meta(fixture::meta("cam2", 0));
        record(&store, &other, "b/lost", &[Format::Fmp4], 2);
        store.flush().unwrap();
    }
    // Lose the index entirely: the closed segment can only be adopted from its file.
    fs::remove_file(root.join("index.redb")).unwrap();
    let store = open(&root);
    store.add_hook(Arc::new(Queue::default()));
    let report = store.recover(super::tests::NOW).unwrap();
    let rows = store.segments().unwrap();
    assert_eq!(rows.len(), 2, "{report:?}");
    for row in &rows {
        assert!(matches!(row.upload, UploadState::Pending { .. }), "{row:?}");
        assert!(store.aux_get(AuxTable::Outbox, row.id).unwrap().is_some());
    }
}

/// Records, when told a commit landed, how each of its rows then reads from the index.
#[derive(Default)]
struct Landed {
    store: std::sync::OnceLock<std::sync::Weak<Store>>,
    seen: Mutex<Vec<(SegmentId, Option<SegmentState>)>>,
}

impl IndexHook for Landed {
    fn committed(&self, ids: &[SegmentId]) {
        let store = self.store.get().and_then(std::sync::Weak::upgrade).unwrap();
        for id in ids {
            let state = store.segment(*id).unwrap().map(|r| r.state);
            self.seen.lock().unwrap().push((*id, state));
        }
    }
}

#[test]
fn hooks_hear_of_a_commit_once_readers_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(&store, &clip, "a/torn", &[Format::Fmp4], 2));
    }
    let store = Arc::new(open(&root));
    let hook = Arc::new(Landed::default());
    hook.store.set(Arc::downgrade(&store)).unwrap();
    store.add_hook(hook.clone());
    // Closed by recovery, by a writer (a volatile commit), then deleted.
    store.recover(super::tests::NOW).unwrap();
    let row = record(&store, &clip, "a/closed", &[Format::Fmp4], 2);
    let torn = store.segments().unwrap()[0].id;
    store.delete(&[torn]).unwrap();
    assert_eq!(
        *hook.seen.lock().unwrap(),
        [
            (torn, Some(SegmentState::Closed)),
            (row.id, Some(SegmentState::Closed)),
            (torn, Some(SegmentState::Deleting)),
        ]
    );
}

#[test]
fn aux_scan_returns_entries_in_key_order_from_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("root"));
    let ops = [5u64, 1, 300, 2]
        .iter()
        .map(|k| AuxOp::put(AuxTable::Tasks, *k, k.to_be_bytes().to_vec()))
        .collect();
    store.aux_commit(ops, None, true).unwrap();
    let keys: Vec<u64> = store
        .aux_scan(AuxTable::Tasks, 2, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![2, 5, 300]);
    assert_eq!(store.aux_scan(AuxTable::Tasks, 0, 2).unwrap().len(), 2);
    // Tables are separate.
    assert_eq!(store.aux_stats(AuxTable::Outbox).unwrap(), (0, None));
}

fn queue_values(store: &Store) -> Vec<(u64, Vec<u8>)> {
    store.aux_scan(AuxTable::Outbox, 0, 100).unwrap()
}

#[test]
fn appended_keys_follow_commit_order_and_never_repeat_even_after_the_queue_empties() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = open(&root);
    // Volatile and durable commits share one key sequence: keys follow commit order.
    store
        .aux_commit(
            vec![AuxOp::append(AuxTable::Outbox, b"a".to_vec(), 10)],
            None,
            false,
        )
        .unwrap();
    store
        .aux_commit(
            vec![AuxOp::append(AuxTable::Outbox, b"b".to_vec(), 10)],
            None,
            true,
        )
        .unwrap();
    let got = queue_values(&store);
    assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
    // Emptied, then appended to again: the key keeps growing.
    store
        .aux_commit(
            vec![
                AuxOp::remove(AuxTable::Outbox, 1),
                AuxOp::remove(AuxTable::Outbox, 2),
            ],
            None,
            true,
        )
        .unwrap();
    assert_eq!(store.aux_queue(AuxTable::Outbox).unwrap().next_key, 3);
    drop(store);
    let store = open(&root);
    store
        .aux_commit(
            vec![AuxOp::append(AuxTable::Outbox, b"c".to_vec(), 10)],
            None,
            true,
        )
        .unwrap();
    assert_eq!(queue_values(&store), vec![(3, b"c".to_vec())]);
}

#[test]
fn concurrent_appends_get_distinct_keys_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("root")));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25u8 {
                    let op = AuxOp::append(AuxTable::Outbox, vec![t, i], 1000);
                    store.aux_commit(vec![op], None, i % 2 == 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = queue_values(&store);
    assert_eq!(got.len(), 100);
    // Each producer's entries appear in the order it committed them.
    for t in 0..4u8 {
        let mine: Vec<u8> = got
            .iter()
            .filter(|(_, v)| v[0] == t)
            .map(|(_, v)| v[1])
            .collect();
        assert_eq!(mine, (0..25).collect::<Vec<u8>>(), "producer {t}");
    }
}

#[test]
fn a_bounded_append_drops_the_oldest_and_counts_durably_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = open(&root);
    for i in 0..5u8 {
        store
            .aux_commit(
                vec![AuxOp::append(AuxTable::Outbox, vec![i], 2)],
                None,
                true,
            )
            .unwrap();
    }
    let kept: Vec<u8> = queue_values(&store).iter().map(|(_, v)| v[0]).collect();
    assert_eq!(kept, vec![3, 4], "the newest stay");
    drop(store);
    let store = open(&root);
    assert_eq!(store.aux_queue(AuxTable::Outbox).unwrap().dropped, 3);
    store
        .aux_commit(vec![AuxOp::forget_dropped(AuxTable::Outbox, 2)], None, true)
        .unwrap();
    assert_eq!(store.aux_queue(AuxTable::Outbox).unwrap().dropped, 1);
    store
        .aux_commit(vec![AuxOp::forget_dropped(AuxTable::Outbox, 5)], None, true)
        .unwrap();
    assert_eq!(store.aux_queue(AuxTable::Outbox).unwrap().dropped, 0);
}

#[test]
fn a_new_run_hands_out_keys_above_any_a_crash_took_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = open(&root);
    store
        .aux_commit(
            vec![AuxOp::append(AuxTable::Outbox, b"a".to_vec(), 10)],
            None,
            true,
        )
        .unwrap();
    // A volatile append that a crash would take back, its key maybe seen outside.
    store
        .aux_commit(
            vec![AuxOp::append(AuxTable::Outbox, b"b".to_vec(), 10)],
            None,
            false,
        )
        .unwrap();
    store
        .aux_commit(vec![AuxOp::new_run(AuxTable::Outbox)], None, true)
        .unwrap();
    store
        .aux_commit(
            vec![AuxOp::append(AuxTable::Outbox, b"c".to_vec(), 10)],
            None,
            true,
        )
        .unwrap();
    let keys: Vec<u64> = queue_values(&store).iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![1, 2, tables::RUN_KEY_STRIDE]);
}
