//! Deleting closed segments, batched: one durable commit marks every row `Deleting` (with
//! what the `deleted` hooks add, such as the `segment.evicted` events), then all files are
//! unlinked, each touched directory is fsynced once, one volatile commit drops the rows, and
//! directories left empty are removed.
//!
//! The mark is durable so that no file is ever unlinked while the disk's index still says
//! `Closed`: after a power cut, a `Closed` row whose files are gone is damage (a warning),
//! and a `Deleting` row is a delete to finish. The drop may be lost: recovery finishes the
//! `Deleting` rows it finds.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::error::StoreError;
use super::fsutil::{self, fsync_dir, parent};
use super::index::Op;
use super::row::{SegmentId, SegmentRow, SegmentState};
use super::{Shared, Store};

impl Store {
    /// Delete closed segments by the delete protocol. Rows in `Writing` state and unknown ids
    /// are skipped. Returns the bytes freed (the rows' recorded sizes).
    pub fn delete(&self, ids: &[SegmentId]) -> Result<u64, StoreError> {
        let mut rows = Vec::new();
        for id in ids {
            match self.shared.index.get(*id)? {
                Some(row) if row.state == SegmentState::Writing => {
                    tracing::warn!(id, base = %row.base.display(), "not deleting a segment being written");
                }
                Some(row) => rows.push(row),
                None => {}
            }
        }
        delete_rows(&self.shared, rows)
    }
}

/// The delete protocol for `rows` (none of them `Writing`). Shared with recovery, which
/// finishes rows left in `Deleting`.
pub(crate) fn delete_rows(shared: &Shared, rows: Vec<SegmentRow>) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    // Rows already `Deleting` (recovery finishing a delete) were marked, and their hooks
    // run, by the commit that marked them.
    let fresh: Vec<SegmentRow> = rows
        .iter()
        .filter(|r| r.state != SegmentState::Deleting)
        .cloned()
        .collect();
    if !fresh.is_empty() {
        let mut marks: Vec<Op> = fresh
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.state = SegmentState::Deleting;
                Op::put(r)
            })
            .collect();
        marks.extend(shared.deleted(&fresh));
        // Durable, before anything is unlinked (group commit: one fsync for the batch).
        shared.index.commit(marks)?;
        shared.committed(&fresh.iter().map(|r| r.id).collect::<Vec<_>>());
    }
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut freed = 0;
    {
        let _dirs = shared.dirs_lock();
        for row in &rows {
            for file in &row.files {
                let path = shared.root.join(&file.path);
                fsutil::remove_file(&path)?;
                dirs.insert(parent(&path).to_path_buf());
            }
            freed += row.bytes;
        }
        for dir in &dirs {
            // Gone only when recovery finishes a delete that had already removed it (and
            // fsynced its parent): nothing left to make durable there.
            if dir.is_dir() {
                fsync_dir(dir)?;
            }
        }
    }
    // Volatile: if a crash loses it, recovery finds the rows `Deleting` and finishes.
    let ops: Vec<Op> = rows.iter().map(|r| Op::Remove(r.id)).collect();
    shared.index.commit_volatile(ops)?;
    // Deepest first, so a date directory goes before its parent is looked at.
    let _dirs = shared.dirs_lock();
    for dir in dirs.iter().rev() {
        fsutil::remove_empty_dirs(&shared.root, dir)?;
    }
    Ok(freed)
}
