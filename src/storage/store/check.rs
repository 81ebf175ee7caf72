//! `edgerec index check`: whether the index and the files agree, without changing anything.
//!
//! The protocol's rule (see the [`crate::storage::store`] module docs) is that the index may
//! know *less* than the disk, never *more*. The check sorts every disagreement into one of
//! two kinds:
//!
//! - **damage**: the index knows more than the disk. A `Closed` row whose file is missing
//!   or has another size than the row says, a file two rows name, or no index at all beside
//!   segment files. The protocol never leaves this behind, not even after a power cut:
//!   it means a missing fsync, a disk that lost data, or files changed by hand. Recovery
//!   would forget such files (or, without an index, adopt the files while the upload queue
//!   and the event outbox are gone).
//! - **pending**: the index knows less than the disk, which is what a crash or power cut
//!   leaves and the next start's recovery finishes: rows being deleted, segments being
//!   written (a working file, a `Writing` row), segment files no row names.
//!
//! After a clean stop there is neither. The check reads a copy of the index made outside the
//! root, because opening an index after a crash makes redb repair it, which writes; and it
//! holds the root's lock shared meanwhile, so it refuses to run beside a recorder (whose
//! index and files move under it) and a recorder cannot start during it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::fsutil::{self, INDEX_FILE, LOCK_FILE};
use super::index::Index;
use super::row::SegmentState;
use super::Store;
use crate::media::format::Container;

/// What [`Store::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Rows in the index, in any state.
    pub rows: usize,
    /// `Closed` rows.
    pub closed: usize,
    /// Segment files under the root (final `*.mp4`, `*.flv`, `*.aac` and working `*.part`).
    pub files: usize,
    /// The index knows more than the disk (see the module docs): one line each.
    pub damage: Vec<String>,
    /// The index knows less than the disk; the next recovery's work: one line each.
    pub pending: Vec<String>,
}

impl CheckReport {
    /// Index and files agree exactly: no damage and nothing for recovery to do.
    pub fn agrees(&self) -> bool {
        self.damage.is_empty() && self.pending.is_empty()
    }
}

impl fmt::Display for CheckReport {
    /// A summary for people: the counts, then one line per finding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} row(s), {} closed; {} segment file(s): ",
            self.rows, self.closed, self.files
        )?;
        if self.agrees() {
            return writeln!(f, "index and files agree");
        }
        writeln!(
            f,
            "{} damaged, {} for recovery to finish",
            self.damage.len(),
            self.pending.len()
        )?;
        for d in &self.damage {
            writeln!(f, "damage: {d}")?;
        }
        for p in &self.pending {
            writeln!(f, "pending: {p}")?;
        }
        Ok(())
    }
}

impl Store {
    /// Compare the index of the stopped recorder at `root` with the files under it, changing
    /// nothing (see the module docs). Fails with [`StoreError::Locked`] while a recorder
    /// uses the root.
    pub fn check(root: &Path) -> Result<CheckReport, StoreError> {
        let _lock = lock_shared(root)?;
        let files = fsutil::walk(root)?;
        let segment_files: Vec<&PathBuf> = files
            .iter()
            .filter(|p| {
                p.extension().is_some_and(|e| {
                    Container::ALL.iter().any(|c| e == c.extension())
                        || (e == "part" && is_ours_part(p))
                })
            })
            // An HLS recording's init section belongs to its playlist, not to a row.
            .filter(|p| !p.to_string_lossy().ends_with(super::INIT_SUFFIX))
            .collect();
        let mut report = CheckReport {
            files: segment_files.len(),
            ..CheckReport::default()
        };
        let index_path = root.join(INDEX_FILE);
        if fsutil::file_len(&index_path)?.is_none() {
            if !segment_files.is_empty() {
                report.damage.push(format!(
                    "{INDEX_FILE} is missing beside {} segment file(s): recovery would adopt \
                     them, but the upload queue, the event outbox and record tasks are gone",
                    segment_files.len()
                ));
            }
            return Ok(report);
        }
        let copy = IndexCopy::make(&index_path)?;
        // Errors name the index, not its copy.
        let rows = Index::open(&copy.0)
            .and_then(|i| i.all())
            .map_err(|e| match e {
                StoreError::Index {
                    context, source, ..
                } => StoreError::Index {
                    path: index_path.clone(),
                    context,
                    source,
                },
                e => e,
            })?;
        report.rows = rows.len();

        let mut named: HashMap<&Path, u64> = HashMap::new();
        let mut working: HashSet<PathBuf> = HashSet::new();
        for row in &rows {
            match row.state {
                SegmentState::Deleting => report.pending.push(format!(
                    "row {} ({} #{}) is being deleted",
                    row.id, row.stream, row.seq
                )),
                SegmentState::Writing => {
                    working.insert(row.working_path());
                    report.pending.push(format!(
                        "row {} ({} #{}) is being written: {}",
                        row.id,
                        row.stream,
                        row.seq,
                        row.working_path().display()
                    ));
                }
                SegmentState::Closed => {
                    report.closed += 1;
                    for f in &row.files {
                        if let Some(other) = named.insert(&f.path, row.id) {
                            report.damage.push(format!(
                                "{} is named by rows {other} and {}",
                                f.path.display(),
                                row.id
                            ));
                        }
                        match fsutil::file_len(&root.join(&f.path))? {
                            None => report.damage.push(format!(
                                "row {} ({} #{}) is closed, but its file {} is missing",
                                row.id,
                                row.stream,
                                row.seq,
                                f.path.display()
                            )),
                            Some(len) if len != f.bytes => report.damage.push(format!(
                                "row {} ({} #{}) says {} has {} bytes, it has {len}",
                                row.id,
                                row.stream,
                                row.seq,
                                f.path.display(),
                                f.bytes
                            )),
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        for p in segment_files {
            if named.contains_key(p.as_path()) || working.contains(p) {
                continue;
            }
            let what = if p.extension().is_some_and(|e| e == "part") {
                "a working file no row is writing"
            } else {
                "a segment file no closed row names"
            };
            report.pending.push(format!("{}: {what}", p.display()));
        }
        Ok(report)
    }
}

/// A working file (`*.mp4.part`, `*.flv.part`, `*.aac.part`) or a progressive temporary
/// (`*.progressive.mp4.part`); other `.part` files are not ours and recovery leaves them
/// alone.
fn is_ours_part(p: &Path) -> bool {
    p.to_str().and_then(Container::of_working).is_some()
}

/// The root's lock file opened read-only and locked shared (`None` if there is no lock
/// file: no recorder ever ran there, or it is gone with the rest of a lost root).
fn lock_shared(root: &Path) -> Result<Option<File>, StoreError> {
    let path = root.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("open lock file", path, e)),
    };
    // SAFETY: flock on a valid, open descriptor has no memory-safety requirements.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            StoreError::Locked {
                root: root.to_path_buf(),
                lock: path,
            }
        } else {
            StoreError::io("lock", path, e)
        });
    }
    Ok(Some(file))
}

/// A copy of the index in the temporary directory, removed on drop.
struct IndexCopy(PathBuf);

impl IndexCopy {
    fn make(index: &Path) -> Result<IndexCopy, StoreError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "edgerec-check-{}-{}.redb",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let copy = IndexCopy(std::env::temp_dir().join(name));
        fs::copy(index, &copy.0)
            .map_err(|e| StoreError::io("copy the index to", copy.0.clone(), e))?;
        Ok(copy)
    }
}

impl Drop for IndexCopy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
