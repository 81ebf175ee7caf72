//! Deleting closed segments, batched: one commit marks every row `Deleting`, then all files
//! are unlinked, each touched directory is fsynced once, one commit drops the rows, and
//! directories left empty are removed.

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
    let marks: Vec<Op> = rows
        .iter()
        .filter(|r| r.state != SegmentState::Deleting)
        .map(|r| {
            let mut r = r.clone();
            r.state = SegmentState::Deleting;
            Op::put(r)
        })
        .collect();
    // Both commits are volatile (see the module docs of `store`): a crash that loses them
    // leaves `Closed` rows whose files are gone, which recovery drops.
    if !marks.is_empty() {
        shared.index.commit_volatile(marks)?;
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
            fsync_dir(dir)?;
        }
    }
    let mut ops: Vec<Op> = rows.iter().map(|r| Op::Remove(r.id)).collect();
    ops.extend(shared.deleted(&rows));
    shared.index.commit_volatile(ops)?;
    // Deepest first, so a date directory goes before its parent is looked at.
    let _dirs = shared.dirs_lock();
    for dir in dirs.iter().rev() {
        fsutil::remove_empty_dirs(&shared.root, dir)?;
    }
    Ok(freed)
}
