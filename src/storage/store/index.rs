//! The redb index and its group commit.
//!
//! Every change goes through [`Index::commit`], which is durable (redb `Durability::Immediate`)
//! and *grouped*: callers append their operations to a shared pending list; the first caller
//! that finds no commit in flight becomes the committer, takes everything pending and commits
//! it in one transaction, while later callers wait. Callers arriving during a commit form the
//! next group. So N streams closing segments at once cost one or two index fsyncs, not N.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::error::StoreError;
use super::row::{SegmentId, SegmentRow};
use super::tables::{AuxOp, AuxTable};

/// Segment rows: id -> version byte + postcard.
const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// Counters: "next_id".
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Highest sequence number ever seen per stream (survives deletion of the rows).
const SEQS: TableDefinition<&str, u64> = TableDefinition::new("stream_seqs");

const NEXT_ID: &str = "next_id";

/// How many failed group results are remembered for waiters that wake late.
const FAILURES_KEPT: usize = 64;

/// One change to the index.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Insert or replace a row.
    Put(Box<SegmentRow>),
    /// Drop a row (no error if absent).
    Remove(SegmentId),
    /// A change to an auxiliary table.
    Aux(AuxOp),
}

impl Op {
    /// [`Op::Put`] of `row`.
    pub(crate) fn put(row: SegmentRow) -> Op {
        Op::Put(Box::new(row))
    }
}

#[derive(Default)]
struct Group {
    pending: Vec<Op>,
    /// Id of the group now accumulating in `pending`.
    open: u64,
    /// Id of the last group whose commit finished.
    done: u64,
    committing: bool,
    /// Errors of recent failed groups, by group id.
    failures: VecDeque<(u64, String)>,
}

/// The index database.
pub(crate) struct Index {
    pub(super) db: Database,
    path: PathBuf,
    group: Mutex<Group>,
    cond: Condvar,
    next_id: AtomicU64,
    commits: AtomicU64,
}

impl Index {
    /// Open or create the database at `path` and its tables. The directory holding it is
    /// fsynced, so that a new index's name is as durable as its first commit: without it, a
    /// power cut could take the whole index (upload queue and event outbox included) with it.
    pub(crate) fn open(path: &Path) -> Result<Index, StoreError> {
        let db = Database::create(path).map_err(|e| {
            StoreError::index(
                path,
                "open (if it is damaged, `edgerec index rebuild` rebuilds it from the files)",
                e,
            )
        })?;
        super::fsutil::fsync_dir(super::fsutil::parent(path))?;
        fn err<'a, E: Into<redb::Error>>(
            path: &'a Path,
            context: &'static str,
        ) -> impl Fn(E) -> StoreError + 'a {
            move |e| StoreError::index(path, context, e)
        }
        let txn = db.begin_write().map_err(err(path, "begin"))?;
        let next_id = {
            let segs = txn.open_table(SEGMENTS).map_err(err(path, "open table"))?;
            let counters = txn.open_table(COUNTERS).map_err(err(path, "open table"))?;
            txn.open_table(SEQS).map_err(err(path, "open table"))?;
            for t in AuxTable::ALL {
                txn.open_table(t.definition())
                    .map_err(err(path, "open table"))?;
            }
            let stored = counters
                .get(NEXT_ID)
                .map_err(err(path, "read"))?
                .map(|g| g.value())
                .unwrap_or(1);
            let after_last = segs
                .last()
                .map_err(err(path, "read"))?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            stored.max(after_last)
        };
        txn.commit().map_err(err(path, "commit"))?;
        Ok(Index {
            db,
            path: path.to_path_buf(),
            group: Mutex::new(Group {
                open: 1,
                ..Group::default()
            }),
            cond: Condvar::new(),
            next_id: AtomicU64::new(next_id),
            commits: AtomicU64::new(0),
        })
    }

    pub(super) fn err<E: Into<redb::Error>>(
        &self,
        context: &'static str,
    ) -> impl Fn(E) -> StoreError + '_ {
        move |e| StoreError::index(&self.path, context, e)
    }

    /// A new, never used id. It becomes durable with the commit that first stores it.
    pub(crate) fn alloc_id(&self) -> SegmentId {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Number of durable transactions committed through [`Index::commit`] so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// All rows, by id.
    pub(crate) fn all(&self) -> Result<Vec<SegmentRow>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let table = txn.open_table(SEGMENTS).map_err(self.err("open table"))?;
        let mut rows = Vec::new();
        for item in table.iter().map_err(self.err("read"))? {
            let (k, v) = item.map_err(self.err("read"))?;
            rows.push(SegmentRow::decode(k.value(), v.value())?);
        }
        Ok(rows)
    }

    /// One row.
    pub(crate) fn get(&self, id: SegmentId) -> Result<Option<SegmentRow>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let table = txn.open_table(SEGMENTS).map_err(self.err("open table"))?;
        let got = table.get(id).map_err(self.err("read"))?;
        got.map(|v| SegmentRow::decode(id, v.value())).transpose()
    }

    /// One value of an auxiliary table.
    pub(crate) fn aux_get(&self, table: AuxTable, key: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let t = txn
            .open_table(table.definition())
            .map_err(self.err("open table"))?;
        let got = t.get(key).map_err(self.err("read"))?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    /// Up to `limit` entries of an auxiliary table with keys `>= from`, in key order.
    pub(crate) fn aux_scan(
        &self,
        table: AuxTable,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let t = txn
            .open_table(table.definition())
            .map_err(self.err("open table"))?;
        let mut out = Vec::new();
        for item in t.range(from..).map_err(self.err("read"))?.take(limit) {
            let (k, v) = item.map_err(self.err("read"))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The number of entries and the last key of an auxiliary table.
    pub(crate) fn aux_stats(&self, table: AuxTable) -> Result<(u64, Option<u64>), StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let t = txn
            .open_table(table.definition())
            .map_err(self.err("open table"))?;
        let n = t.len().map_err(self.err("read"))?;
        let last = t.last().map_err(self.err("read"))?.map(|(k, _)| k.value());
        Ok((n, last))
    }

    /// Highest sequence number recorded for `stream`.
    pub(crate) fn max_seq(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let table = txn.open_table(SEQS).map_err(self.err("open table"))?;
        let got = table.get(stream).map_err(self.err("read"))?;
        Ok(got.map(|g| g.value()))
    }

    /// Apply `ops` durably, sharing the transaction with concurrent callers (see module docs).
    /// Returns once a commit containing `ops` is durable.
    pub(crate) fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut g = self.lock_group();
        g.pending.extend(ops);
        let mine = g.open;
        loop {
            if g.done >= mine {
                return match g.failures.iter().find(|(id, _)| *id == mine) {
                    Some((_, e)) => Err(StoreError::CommitFailed(e.clone())),
                    None => Ok(()),
                };
            }
            if !g.committing {
                // Our group is still open (it is only taken by a committer, which keeps
                // `committing` set until `done` covers it): we commit it.
                g.committing = true;
                let ops = std::mem::take(&mut g.pending);
                g.open += 1;
                drop(g);
                let result = self.write(ops);
                let mut g = self.lock_group();
                g.committing = false;
                g.done = mine;
                if let Err(e) = &result {
                    g.failures.push_back((mine, e.to_string()));
                    if g.failures.len() > FAILURES_KEPT {
                        g.failures.pop_front();
                    }
                }
                self.cond.notify_all();
                return result;
            }
            g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock_group(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply `ops` at once in memory; they reach the disk with the next durable commit
    /// (redb `Durability::None`). For rows that recovery can rebuild from the files when a
    /// crash loses them, such as the `Writing` row of a segment just begun: it spares one
    /// flash write per segment.
    pub(crate) fn commit_volatile(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.write_with(ops, Durability::None)
    }

    /// Make every volatile commit so far durable (an empty durable commit).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.commit(Vec::new())
    }

    /// One durable transaction applying `ops` in order.
    fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.write_with(ops, Durability::Immediate)
    }

    fn write_with(&self, ops: Vec<Op>, durability: Durability) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(self.err("begin"))?;
        txn.set_durability(durability)
            .map_err(self.err("set durability"))?;
        {
            let mut segs = txn.open_table(SEGMENTS).map_err(self.err("open table"))?;
            let mut seqs = txn.open_table(SEQS).map_err(self.err("open table"))?;
            let mut max_id = 0;
            for op in &ops {
                match op {
                    Op::Put(row) => {
                        segs.insert(row.id, row.encode().as_slice())
                            .map_err(self.err("write row"))?;
                        max_id = max_id.max(row.id);
                        let seen = seqs
                            .get(row.stream.as_str())
                            .map_err(self.err("read"))?
                            .map(|g| g.value());
                        if seen.is_none_or(|s| s < row.seq) {
                            seqs.insert(row.stream.as_str(), row.seq)
                                .map_err(self.err("write seq"))?;
                        }
                    }
                    Op::Remove(id) => {
                        segs.remove(*id).map_err(self.err("remove row"))?;
                    }
                    Op::Aux(op) => self.write_aux(&txn, op)?,
                }
            }
            if max_id > 0 {
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let stored = counters
                    .get(NEXT_ID)
                    .map_err(self.err("read"))?
                    .map(|g| g.value())
                    .unwrap_or(1);
                if stored <= max_id {
                    counters
                        .insert(NEXT_ID, max_id + 1)
                        .map_err(self.err("write counter"))?;
                }
            }
        }
        txn.commit().map_err(self.err("commit"))?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Change rows in place, in one durable transaction serialized with group commits:
    /// `change` sees each row (decoded inside the transaction, so a concurrent close is
    /// never undone) and returns `Some` for each row it changed; `extra` turns the list
    /// into more ops for the same transaction. Returns the list.
    pub(crate) fn update_rows<T>(
        &self,
        mut change: impl FnMut(&mut SegmentRow) -> Option<T>,
        extra: impl FnOnce(&[T]) -> Vec<Op>,
    ) -> Result<Vec<T>, StoreError> {
        let _hold = self.hold();
        let txn = self.db.begin_write().map_err(self.err("begin"))?;
        let mut changed = Vec::new();
        {
            let mut segs = txn.open_table(SEGMENTS).map_err(self.err("open table"))?;
            let mut rows = Vec::new();
            for item in segs.iter().map_err(self.err("read"))? {
                let (k, v) = item.map_err(self.err("read"))?;
                let mut row = SegmentRow::decode(k.value(), v.value())?;
                if let Some(t) = change(&mut row) {
                    changed.push(t);
                    rows.push(row);
                }
            }
            for row in &rows {
                segs.insert(row.id, row.encode().as_slice())
                    .map_err(self.err("write row"))?;
            }
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        for op in extra(&changed) {
            match op {
                Op::Aux(op) => self.write_aux(&txn, &op)?,
                other => {
                    return Err(StoreError::CommitFailed(format!(
                        "update_rows takes auxiliary ops only, not {other:?}"
                    )))
                }
            }
        }
        txn.commit().map_err(self.err("commit"))?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(changed)
    }

    /// Drop every segment row (one durable commit); ids and sequence numbers stay reserved.
    /// Returns how many rows were dropped.
    pub(crate) fn clear_segments(&self) -> Result<u64, StoreError> {
        // Serialize with group commits: hold the group as if committing.
        let _hold = self.hold();
        let txn = self.db.begin_write().map_err(self.err("begin"))?;
        let n = {
            let mut segs = txn.open_table(SEGMENTS).map_err(self.err("open table"))?;
            let n = segs.len().map_err(self.err("read"))?;
            segs.retain(|_, _| false).map_err(self.err("clear"))?;
            n
        };
        txn.commit().map_err(self.err("commit"))?;
        Ok(n)
    }

    /// Mark a commit as in flight until the returned guard drops: callers of
    /// [`Index::commit`] meanwhile queue up into one group.
    pub(crate) fn hold(&self) -> Hold<'_> {
        let mut g = self.lock_group();
        while g.committing {
            g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.committing = true;
        Hold { index: self }
    }

    /// Number of operations waiting for the next group commit.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.lock_group().pending.len()
    }
}

/// See [`Index::hold`].
pub(crate) struct Hold<'a> {
    index: &'a Index,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut g = self.index.lock_group();
        g.committing = false;
        self.index.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::media::format::Format;
    use crate::media::segment::event::SegmentMeta;

    fn row(index: &Index, stream: &str, seq: u64) -> SegmentRow {
        let meta = SegmentMeta {
            device: "d".into(),
            app: String::new(),
            stream: stream.into(),
            seq,
            start_ms: 1000 * seq as i64,
            formats: vec![],
            time_quality: None,
            boot: None,
        };
        SegmentRow::writing(
            index.alloc_id(),
            &meta,
            PathBuf::from(format!("{stream}/{seq}")),
            vec![Format::Fmp4],
        )
    }

    #[test]
    fn rows_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (a, b) = {
            let index = Index::open(&path).unwrap();
            let a = row(&index, "s", 1);
            let b = row(&index, "s", 2);
            index
                .commit(vec![Op::put(a.clone()), Op::put(b.clone())])
                .unwrap();
            index.commit(vec![Op::Remove(a.id)]).unwrap();
            (a, b)
        };
        let index = Index::open(&path).unwrap();
        assert_eq!(index.all().unwrap(), vec![b.clone()]);
        assert_eq!(index.get(a.id).unwrap(), None);
        assert!(index.alloc_id() > b.id, "ids are never reused");
        assert_eq!(index.max_seq("s").unwrap(), Some(2));
    }

    #[test]
    fn an_index_written_with_version_1_rows_opens_and_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let r = {
            let index = Index::open(&path).unwrap();
            let r = row(&index, "s", 4);
            let txn = index.db.begin_write().unwrap();
            {
                let mut t = txn.open_table(SEGMENTS).unwrap();
                let v1 = super::super::row::tests::encode_v1(&r);
                t.insert(r.id, v1.as_slice()).unwrap();
            }
            txn.commit().unwrap();
            r
        };
        let index = Index::open(&path).unwrap();
        assert_eq!(index.all().unwrap(), vec![r.clone()]);
        assert_eq!(index.get(r.id).unwrap(), Some(r));
    }

    #[test]
    fn max_seq_is_kept_after_the_rows_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        let r = row(&index, "cam", 41);
        index.commit(vec![Op::put(r.clone())]).unwrap();
        index.commit(vec![Op::Remove(r.id)]).unwrap();
        assert_eq!(index.max_seq("cam").unwrap(), Some(41));
        assert_eq!(index.max_seq("other").unwrap(), None);
    }

    #[test]
    fn concurrent_commits_during_a_commit_share_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(&dir.path().join("i.redb")).unwrap());
        let rows: Vec<SegmentRow> = (0..6).map(|i| row(&index, "s", i)).collect();
        let before = index.commits();
        let hold = index.hold(); // a commit "in flight"
        let threads: Vec<_> = rows
            .iter()
            .cloned()
            .map(|r| {
                let index = index.clone();
                std::thread::spawn(move || index.commit(vec![Op::put(r)]))
            })
            .collect();
        while index.pending() < rows.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(hold);
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(index.commits() - before, 1, "one group, one transaction");
        assert_eq!(index.all().unwrap(), rows);
    }

    #[test]
    fn clear_segments_drops_rows_but_not_the_id_counter() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        let r = row(&index, "s", 0);
        index.commit(vec![Op::put(r.clone())]).unwrap();
        assert_eq!(index.clear_segments().unwrap(), 1);
        assert!(index.all().unwrap().is_empty());
        assert!(index.alloc_id() > r.id);
    }
}
