//! Startup recovery and index rebuild: make the index and the files agree again after a
//! crash, in the five steps of the protocol (see the [`crate::storage::store`] module docs). Every
//! step only moves things forward, so recovery interrupted by another crash is just run again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::media::format::{Container, Format};
use crate::media::segment::event::SegmentMeta;

use super::delete::delete_rows;
use super::error::StoreError;
use super::fsutil::{self, fsync_dir, parent};
use super::index::Op;
use super::media::{self, Scanned};
use super::row::UploadState;
use super::row::{strip_suffix, with_suffix, SegmentFile, SegmentRow, SegmentState};
use super::writer::close_files;
use super::{Shared, Store};

/// What [`Store::recover`] did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Segments whose working file was cut back to its last complete fragment, tag or
    /// frame (or whose interrupted close was completed) and closed.
    pub recovered: Vec<SegmentRow>,
    /// Files of ours that had no row and now have one.
    pub adopted: Vec<SegmentRow>,
    /// Files removed (working files without a complete fragment, leftover temporaries),
    /// relative to the root.
    pub removed: Vec<PathBuf>,
    /// Rows dropped (deletes finished, writes that never produced a file, files gone).
    pub dropped_rows: u64,
}

impl Store {
    /// Run recovery: call once at startup, before recording. `now_ms` stamps the rows it
    /// closes. Safe to run again after it was itself interrupted.
    pub fn recover(&self, now_ms: i64) -> Result<RecoveryReport, StoreError> {
        let shared = &*self.shared;
        let mut report = RecoveryReport::default();

        // 1. Finish deletes.
        let deleting: Vec<SegmentRow> = shared
            .index
            .all()?
            .into_iter()
            .filter(|r| r.state == SegmentState::Deleting)
            .collect();
        report.dropped_rows += deleting.len() as u64;
        delete_rows(shared, deleting)?;

        // 2. Working files.
        recover_parts(shared, now_ms, &mut report)?;

        // 3. Writing rows without a working file.
        for row in shared.index.all()? {
            if row.state != SegmentState::Writing
                || fsutil::file_len(&shared.root.join(row.working_path()))?.is_some()
            {
                continue;
            }
            finish_or_drop(shared, row, now_ms, &mut report)?;
        }

        // 4. Closed rows whose files are gone or changed.
        check_closed(shared, &mut report)?;

        // 5. Our files without a row.
        adopt(shared, now_ms, &mut report.adopted)?;

        // Everything above, volatile parts included, is on disk before recording starts.
        shared.index.flush()?;
        Ok(report)
    }
}

/// Step 3 for one `Writing` row whose working file is gone: if its file is at its final
/// name, the close got past its rename (or its volatile `Closed` commit was lost): finish
/// it. Otherwise drop the row.
fn finish_or_drop(
    shared: &Shared,
    row: SegmentRow,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let fin = row
        .renamed_format()
        .map(|f| shared.root.join(row.final_path(f)));
    if let Some(fin) = fin.filter(|f| f.is_file()) {
        match media::scan(row.container(), &fin) {
            Ok(scan) => {
                // Its file was complete (renamed only after its fsync): the close
                // itself, or its volatile commit, was cut short. Not torn media.
                let mut row = recovered_row(row, &scan, now_ms);
                row.recovered = false;
                report.adopted.push(close_files(shared, row, false)?);
                return Ok(());
            }
            Err(StoreError::Media { path, reason }) => {
                tracing::warn!(path = %path.display(), %reason, "unreadable segment file left alone");
            }
            Err(e) => return Err(e),
        }
    }
    shared.index.commit(vec![Op::Remove(row.id)])?;
    report.dropped_rows += 1;
    Ok(())
}

impl Store {
    /// Close the segments of `stream` that a storage fault left unfinished while the
    /// recorder runs: `Writing` rows that no live writer holds (a close that failed, a
    /// writer given up on after a stall). Each is closed as recovery would close it at the
    /// next start: cut back to its last complete fragment, closed with `recovered = true`
    /// (or, when its close got past the rename, finished), or dropped when nothing of it is
    /// left. Blocking. Call it once the stream's storage works again.
    pub fn close_unfinished(
        &self,
        stream: &str,
        now_ms: i64,
    ) -> Result<RecoveryReport, StoreError> {
        let shared = &*self.shared;
        let mut report = RecoveryReport::default();
        let live = shared.active_names().clone();
        for row in shared.index.all()? {
            if row.state != SegmentState::Writing
                || row.stream != stream
                || live.contains(&row.base)
            {
                continue;
            }
            let rel = row.working_path();
            if fsutil::file_len(&shared.root.join(&rel))?.is_some() {
                recover_part(
                    shared,
                    &rel,
                    row.container(),
                    Some(row),
                    now_ms,
                    &mut report,
                )?;
            } else {
                finish_or_drop(shared, row, now_ms, &mut report)?;
            }
        }
        Ok(report)
    }
}

/// Step 2: every working file (`*.mp4.part`, `*.flv.part`, `*.aac.part`) under the root.
pub(super) fn recover_parts(
    shared: &Shared,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let by_working: HashMap<PathBuf, SegmentRow> = shared
        .index
        .all()?
        .into_iter()
        .map(|r| (r.working_path(), r))
        .collect();
    for rel in fsutil::walk(&shared.root)? {
        let Some(container) = rel.to_str().and_then(Container::of_working).map(|c| c.0) else {
            if rel.extension().is_some_and(|e| e == "part") {
                tracing::info!(path = %rel.display(), "not ours (not a .mp4.part, .flv.part or .aac.part); left alone");
            }
            continue;
        };
        recover_part(
            shared,
            &rel,
            container,
            by_working.get(&rel).cloned(),
            now_ms,
            report,
        )?;
    }
    Ok(())
}

/// Step 2 for one working file `rel`, with its row if the index has one.
fn recover_part(
    shared: &Shared,
    rel: &Path,
    container: Container,
    mut row: Option<SegmentRow>,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let abs = shared.root.join(rel);
    if let Some(r) = &row {
        if r.state == SegmentState::Closed && closed_files_present(shared, r)? {
            // An mp4-only close committed but did not get to remove its working file.
            return remove(shared, rel, report);
        }
    }
    let scan = match media::scan(container, &abs) {
        Ok(s) => Some(s),
        Err(StoreError::Media { reason, .. }) => {
            tracing::info!(path = %rel.display(), %reason, "working file unreadable");
            None
        }
        Err(e) => return Err(e),
    };
    let Some(scan) = scan.filter(|s| s.fragments > 0) else {
        remove(shared, rel, report)?;
        if let Some(r) = row.filter(|r| r.state == SegmentState::Writing) {
            // Nothing of it is left: its row goes too (at startup, step 3 would drop it).
            shared.index.commit(vec![Op::Remove(r.id)])?;
            report.dropped_rows += 1;
        }
        return Ok(());
    };
    if row.is_none() {
        let Some(meta) = scan.meta.clone() else {
            tracing::warn!(path = %rel.display(), "working file without our metadata; left alone");
            return Ok(());
        };
        row = match new_row_for_part(shared, rel, container, meta)? {
            Some(r) => Some(r),
            None => {
                // Its final file is already there with the same identity.
                return remove(shared, rel, report);
            }
        };
    }
    let Some(mut row) = row else { return Ok(()) };
    row.state = SegmentState::Writing;
    // Truncate, patch the file's own metadata (FLV), fsync; then the close's steps.
    media::cut_back(&abs, &scan)?;
    let row = recovered_row(row, &scan, now_ms);
    tracing::info!(path = %rel.display(), kept = scan.complete_end, "recovered a torn segment");
    report.recovered.push(close_files(shared, row, true)?);
    Ok(())
}

/// A row for a working file the index does not know; `None` if the file is a leftover
/// duplicate of a final file with the same identity.
fn new_row_for_part(
    shared: &Shared,
    rel: &Path,
    container: Container,
    meta: SegmentMeta,
) -> Result<Option<SegmentRow>, StoreError> {
    let stem = strip_suffix(rel, container.working_suffix()).unwrap_or_else(|| rel.to_path_buf());
    let ext = format!(".{}", container.extension());
    let mut base = stem.clone();
    for n in 1.. {
        let fin = shared.root.join(with_suffix(&base, &ext));
        if fsutil::file_len(&fin)?.is_none() {
            break;
        }
        if n == 1 {
            if let Ok(s) = media::scan(container, &fin) {
                if s.meta.as_ref() == Some(&meta) {
                    return Ok(None);
                }
            }
        }
        base = with_suffix(&stem, &format!("-{n}"));
    }
    // The file says which formats its template asked for (older files: fMP4 only); only
    // this container's are made from this file.
    let mut formats: Vec<Format> = meta
        .formats
        .iter()
        .copied()
        .filter(|f| f.container() == container)
        .collect();
    if formats.is_empty() {
        formats.push(match container {
            Container::Mp4 => Format::Fmp4,
            Container::Flv => Format::Flv,
            Container::Adts => Format::Aac,
        });
    }
    let row = SegmentRow::writing(shared.index.alloc_id(), &meta, base, formats);
    if row.working_path() != rel {
        // Its final name is taken by another file: move it to a free name first.
        let to = shared.root.join(row.working_path());
        fsutil::rename(&shared.root.join(rel), &to)?;
        fsync_dir(parent(&to))?;
    }
    Ok(Some(row))
}

/// `row` as recovery closes it: duration from the file.
fn recovered_row(mut row: SegmentRow, scan: &Scanned, now_ms: i64) -> SegmentRow {
    row.duration_ms = scan.duration_ms;
    row.end_ms = row.start_ms + scan.duration_ms as i64;
    row.closed_at_ms = now_ms;
    row.recovered = true;
    row
}

fn closed_files_present(shared: &Shared, row: &SegmentRow) -> Result<bool, StoreError> {
    for f in &row.files {
        if fsutil::file_len(&shared.root.join(&f.path))?.is_none() {
            return Ok(false);
        }
    }
    Ok(!row.files.is_empty())
}

/// Remove a file of ours, make that durable, and report it.
fn remove(shared: &Shared, rel: &Path, report: &mut RecoveryReport) -> Result<(), StoreError> {
    let abs = shared.root.join(rel);
    fsutil::remove_file(&abs)?;
    fsync_dir(parent(&abs))?;
    tracing::info!(path = %rel.display(), "removed a working file without a complete fragment");
    report.removed.push(rel.to_path_buf());
    Ok(())
}

/// Step 4: drop files that are gone from Closed rows (and rows left without files), and
/// record sizes that changed.
fn check_closed(shared: &Shared, report: &mut RecoveryReport) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for mut row in shared.index.all()? {
        if row.state != SegmentState::Closed {
            continue;
        }
        let mut files = Vec::new();
        for f in &row.files {
            match fsutil::file_len(&shared.root.join(&f.path))? {
                Some(bytes) => {
                    if bytes != f.bytes {
                        tracing::warn!(path = %f.path.display(), was = f.bytes, now = bytes, "segment file changed size");
                    }
                    files.push(SegmentFile { bytes, ..f.clone() });
                }
                None => {
                    tracing::warn!(path = %f.path.display(), id = row.id, "segment file is gone (removed by hand, or damage); forgetting it")
                }
            }
        }
        if files.is_empty() {
            ops.push(Op::Remove(row.id));
            report.dropped_rows += 1;
        } else if files != row.files {
            row.bytes = files.iter().map(|f| f.bytes).sum();
            row.files = files;
            ops.push(Op::put(row));
        }
    }
    if !ops.is_empty() {
        shared.index.commit(ops)?;
    }
    Ok(())
}

/// Step 5: final files under the root that no row names. Files with our metadata become
/// `Closed` rows (an fMP4 and a progressive copy of the same segment share one row; an FLV
/// or ADTS file has a row of its own, as when it was written).
pub(super) fn adopt(
    shared: &Shared,
    now_ms: i64,
    adopted: &mut Vec<SegmentRow>,
) -> Result<(), StoreError> {
    let rows = shared.index.all()?;
    let known: HashSet<PathBuf> = rows
        .iter()
        .flat_map(|r| r.files.iter().map(|f| f.path.clone()))
        .collect();
    type Key = (String, String, String, u64, i64, u8);
    let mut groups: BTreeMap<Key, Vec<(PathBuf, Format, Scanned, u64)>> = BTreeMap::new();
    for rel in fsutil::walk(&shared.root)? {
        if known.contains(&rel) {
            continue;
        }
        let Some((rank, container)) = Container::ALL
            .into_iter()
            .enumerate()
            .find(|(_, c)| rel.extension().is_some_and(|e| e == c.extension()))
        else {
            continue;
        };
        let abs = shared.root.join(&rel);
        let scan = match media::scan(container, &abs) {
            Ok(s) => s,
            Err(StoreError::Media { reason, .. }) => {
                tracing::info!(path = %rel.display(), %reason, "unreadable file; not ours, left alone");
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(meta) = scan.meta.clone() else {
            tracing::info!(path = %rel.display(), "a file without our metadata; not ours, left alone");
            continue;
        };
        let bytes = fsutil::file_len(&abs)?.unwrap_or(0);
        let format = match container {
            Container::Mp4 if scan.fragments > 0 => Format::Fmp4,
            Container::Mp4 => Format::Mp4,
            Container::Flv => Format::Flv,
            Container::Adts => Format::Aac,
        };
        let key = (
            meta.device,
            meta.app,
            meta.stream,
            meta.seq,
            meta.start_ms,
            rank as u8,
        );
        groups
            .entry(key)
            .or_default()
            .push((rel, format, scan, bytes));
    }
    let mut ops = Vec::new();
    for ((device, app, stream, seq, start_ms, _), mut files) in groups {
        // The clock fields are not identity, but the row needs them (time quality, boot
        // time: what re-stamping and retention's age go by).
        let clock = files.iter().find_map(|f| f.2.meta.clone());
        let meta = SegmentMeta {
            device,
            app,
            stream,
            seq,
            start_ms,
            formats: vec![],
            time_quality: clock.as_ref().and_then(|m| m.time_quality),
            boot: clock.and_then(|m| m.boot),
        };
        while !files.is_empty() {
            let mut row = adopted_row(shared, &meta, now_ms, &mut files);
            let extra = shared.closing(&mut row);
            ops.push(Op::put(row.clone()));
            ops.extend(extra);
            adopted.push(row);
        }
    }
    if !ops.is_empty() {
        shared.index.commit(ops)?;
    }
    Ok(())
}

/// One row from a group of same-identity files: takes at most one file of each format.
fn adopted_row(
    shared: &Shared,
    meta: &SegmentMeta,
    now_ms: i64,
    files: &mut Vec<(PathBuf, Format, Scanned, u64)>,
) -> SegmentRow {
    let mut taken: Vec<(PathBuf, Format, Scanned, u64)> = Vec::new();
    for format in [Format::Fmp4, Format::Mp4, Format::Flv, Format::Aac] {
        if let Some(i) = files.iter().position(|f| f.1 == format) {
            taken.push(files.remove(i));
        }
    }
    let (first_path, first_format, first_scan, _) = &taken[0];
    let formats: Vec<Format> = taken.iter().map(|t| t.1).collect();
    let suffix = first_format.suffix(formats.contains(&Format::Fmp4));
    let base = strip_suffix(first_path, suffix).unwrap_or_else(|| first_path.clone());
    let mut row = SegmentRow::writing(shared.index.alloc_id(), meta, base, formats);
    row.duration_ms = first_scan.duration_ms;
    row.end_ms = row.start_ms + first_scan.duration_ms as i64;
    row.files = taken
        .iter()
        .map(|(path, format, _, bytes)| SegmentFile {
            format: *format,
            path: path.clone(),
            bytes: *bytes,
        })
        .collect();
    row.bytes = row.files.iter().map(|f| f.bytes).sum();
    row.state = SegmentState::Closed;
    row.upload = UploadState::NotQueued;
    row.closed_at_ms = now_ms;
    row
}
