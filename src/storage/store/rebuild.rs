//! `edgerec index rebuild`: the index made again from the segment files alone, which
//! describe themselves (see the [`crate::storage::store`] module docs, "Files"). Also the way out of
//! a damaged index: [`Store::open_for_rebuild`] moves an index that cannot be opened aside
//! instead of failing, and starts a new one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::util::clock::SharedClock;

use super::error::StoreError;
use super::fsutil::{self, fsync_dir};
use super::recovery::{adopt, recover_parts};
use super::row::SegmentRow;
use super::{index, RecoveryReport, Shared, Store};

/// What [`Store::rebuild_index`] did.
#[derive(Clone, Debug, Default)]
pub struct RebuildReport {
    /// Rows in the index before it was dropped.
    pub dropped_rows: u64,
    /// Working files closed while rebuilding.
    pub recovered: Vec<SegmentRow>,
    /// Rows made from final files.
    pub adopted: Vec<SegmentRow>,
    /// Files removed (working files without a complete fragment), relative to the root.
    pub removed: Vec<PathBuf>,
    /// Where a damaged index was moved by [`Store::open_for_rebuild`], if it was.
    pub damaged_index: Option<PathBuf>,
    /// Segments queued for upload again by the upload hook; `None` when none was
    /// registered (no `[upload]`, or the caller chose not to queue).
    pub queued: Option<u64>,
    /// Segments given back the times a clock correction gave them
    /// (`<root>/clock-corrections.json`, see `docs/time.md`).
    pub restamped: u64,
}

impl fmt::Display for RebuildReport {
    /// A summary for people, one fact per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.damaged_index {
            writeln!(
                f,
                "the index could not be opened; it was moved to {} and a new one made",
                p.display()
            )?;
        }
        let segments = self.adopted.len() + self.recovered.len();
        let mut streams: Vec<&str> = self
            .adopted
            .iter()
            .chain(&self.recovered)
            .map(|r| r.stream.as_str())
            .collect();
        streams.sort_unstable();
        streams.dedup();
        let bytes: u64 = self
            .adopted
            .iter()
            .chain(&self.recovered)
            .map(|r| r.bytes)
            .sum();
        writeln!(
            f,
            "index rebuilt from the files: {segments} segment(s) of {} stream(s), {bytes} bytes",
            streams.len()
        )?;
        if !self.recovered.is_empty() {
            writeln!(
                f,
                "  {} torn segment(s) cut back to their last complete fragment and closed",
                self.recovered.len()
            )?;
        }
        for p in &self.removed {
            writeln!(f, "  removed {} (no complete fragment)", p.display())?;
        }
        if self.restamped > 0 {
            writeln!(
                f,
                "  {} segment(s) re-stamped with the corrected clock (clock-corrections.json)",
                self.restamped
            )?;
        }
        write!(f, "the old index had {} row(s)", self.dropped_rows)?;
        match self.queued {
            Some(n) => write!(
                f,
                "; upload states start over: {n} segment(s) queued for upload (an object already stored under its key with the same size is not sent again)"
            ),
            None => write!(f, "; no segment is queued for upload"),
        }
    }
}

impl Store {
    /// Open the store at `root` to rebuild its index. An index that exists but cannot be
    /// opened (damaged) is renamed to `index.redb.damaged-<unix seconds>` (kept for a
    /// post-mortem) and a new, empty one is created; the rename is made durable first.
    /// Returns where the damaged index went, if anywhere. Other errors (the root, its lock)
    /// are returned as [`Store::open_with_clock`] returns them.
    pub fn open_for_rebuild(
        root: &Path,
        clock: SharedClock,
    ) -> Result<(Store, Option<PathBuf>), StoreError> {
        let lock = fsutil::prepare_root(root)?;
        let path = root.join(fsutil::INDEX_FILE);
        let (index, damaged) = match index::Index::open(&path) {
            Ok(index) => (index, None),
            Err(e @ StoreError::Index { .. }) if fsutil::file_len(&path)?.is_some() => {
                let aside = root.join(format!(
                    "{}.damaged-{}",
                    fsutil::INDEX_FILE,
                    clock.wall_ms().div_euclid(1000)
                ));
                tracing::warn!(error = %e, aside = %aside.display(), "the index is damaged; moving it aside");
                fsutil::rename(&path, &aside)?;
                fsync_dir(root)?;
                (index::Index::open(&path)?, Some(aside))
            }
            Err(e) => return Err(e),
        };
        let store = Store {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                index,
                clock,
                active: Mutex::new(Default::default()),
                dirs: Mutex::new(()),
                recordings: Mutex::new(()),
                next_deadline: std::sync::atomic::AtomicI64::new(i64::MAX),
                hooks: RwLock::new(Vec::new()),
                _lock: lock,
            }),
        };
        Ok((store, damaged))
    }

    /// Drop every row and rebuild the index from the files alone (`edgerec index rebuild`):
    /// working files are recovered as at startup, and every file of ours gets a `Closed`
    /// row. Upload states are lost: hooks registered on the store (the upload queue's) see
    /// every row close, so the upload queue starts over. Ids and per-stream sequence numbers
    /// stay reserved. Ends with a durable commit, so the rebuilt index is on disk when this
    /// returns.
    pub fn rebuild_index(&self) -> Result<RebuildReport, StoreError> {
        let shared = &*self.shared;
        let now_ms = shared.clock.wall_ms();
        let dropped_rows = shared.index.clear_segments()?;
        let mut report = RecoveryReport::default();
        recover_parts(shared, now_ms, &mut report)?;
        adopt(shared, now_ms, &mut report.adopted)?;
        // The files hold times as recorded: put back the corrections made since.
        let restamped = self.apply_corrections()?;
        // Recovered closes are volatile commits (see the protocol): make all of it durable.
        shared.index.flush()?;
        let queued = self
            .segments()?
            .iter()
            .filter(|r| matches!(r.upload, super::row::UploadState::Pending { .. }))
            .count() as u64;
        Ok(RebuildReport {
            dropped_rows,
            recovered: report.recovered,
            adopted: report.adopted,
            removed: report.removed,
            damaged_index: None,
            queued: Some(queued),
            restamped: restamped.len() as u64,
        })
    }
}
