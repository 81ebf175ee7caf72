//! Writing one segment: [`Store::begin`], [`SegmentWriter::append`] per fragment, then
//! [`SegmentWriter::finish`] or [`SegmentWriter::abandon`]. The order of writes, fsyncs,
//! renames and index commits is the protocol in the [`crate::storage::store`] module docs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::media::format::{Container, Format, Patch};
use crate::media::segment::event::{SegmentClose, SegmentMeta};

use super::error::StoreError;
use super::fsutil::{self, fsync_dir, parent};
use super::index::Op;
use super::row::PROGRESSIVE_TMP_SUFFIX;
use super::row::{final_path, with_suffix, SegmentFile, SegmentId, SegmentRow, SegmentState};
use super::{media, Shared, Store};

/// How many `-N` suffixes [`Store::begin`] tries before giving up on a name.
const MAX_NAME_TRIES: u32 = 10_000;

/// Writes one segment's working file (the fMP4, FLV or ADTS one of its row's container).
/// Owned by one stream's writer thread; `Send`.
///
/// Dropping it without [`finish`](Self::finish) or [`abandon`](Self::abandon) leaves the
/// working file and its `Writing` row for the next [`Store::recover`] to close.
pub struct SegmentWriter {
    shared: Arc<Shared>,
    file: File,
    row: SegmentRow,
    /// Bytes in the file.
    bytes: u64,
    /// FLV and ADTS: the bytes after the file's last whole page, held until the page fills
    /// (see [`SegmentWriter::append`]).
    held: Vec<u8>,
    fragments: u32,
    /// A write failed and could not be undone: the file's tail is unknown.
    broken: bool,
    /// An append failed: the segment ends at its last good fragment, nothing more is
    /// appended (a later fragment after a gap would make a file with a hole in time).
    failed: bool,
    _name: NameGuard,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("id", &self.row.id)
            .field("base", &self.row.base)
            .field("bytes", &self.bytes)
            .field("held", &self.held.len())
            .field("fragments", &self.fragments)
            .finish()
    }
}

/// Reserves a base name for one container among live writers until dropped (the writers of
/// a segment's other containers use the same base: their files have other suffixes).
struct NameGuard {
    shared: Arc<Shared>,
    /// The working file's name, relative to the root.
    working: PathBuf,
    base: PathBuf,
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        self.shared.active_names().remove(&self.working);
    }
}

impl Store {
    /// Start a segment: `rel_base` is the expanded naming template (relative, no extension);
    /// `formats` the formats of one container, e.g. `[Fmp4]`, `[Fmp4, Mp4]`, `[Mp4]`,
    /// `[Flv]` or `[Aac]`; `init` the bytes that begin the working file (the fMP4 init
    /// section, the FLV header and metadata, the ADTS file's ID3 tag).
    ///
    /// Commits a `Writing` row, creates the parent directories and the working file
    /// `<root>/<rel_base>.mp4.part` (`.flv.part`, `.aac.part`), writes `init`, fdatasyncs it
    /// and fsyncs its directory. If a file of that name exists, `-1`, `-2`, ... is appended
    /// to the last component.
    pub fn begin(
        &self,
        meta: &SegmentMeta,
        rel_base: &Path,
        formats: &[Format],
        init: &[u8],
    ) -> Result<SegmentWriter, StoreError> {
        let shared = &self.shared;
        check_rel_base(rel_base)?;
        let mut wanted: Vec<Format> = Vec::new();
        for f in formats {
            if !wanted.contains(f) {
                wanted.push(*f);
            }
        }
        if wanted.is_empty() {
            return Err(StoreError::BadName {
                path: rel_base.to_path_buf(),
                reason: "no output format given".into(),
            });
        }
        let container = wanted[0].container();
        if wanted.iter().any(|f| f.container() != container) {
            return Err(StoreError::BadName {
                path: rel_base.to_path_buf(),
                reason: format!(
                    "formats {wanted:?} are written through different files; one writer each"
                ),
            });
        }
        let name = self.reserve_name(rel_base, &wanted)?;
        let row = SegmentRow::writing(shared.index.alloc_id(), meta, name.base.clone(), wanted);
        // Not durable on its own: it reaches the disk with the next durable commit. A crash
        // that loses it leaves a working file that recovery identifies from its contents.
        shared.index.commit_volatile(vec![Op::put(row.clone())])?;
        let working = shared.root.join(row.working_path());
        let sync_head = container.is_fmp4();
        match create_working(shared, &working, init, sync_head) {
            Ok(file) => Ok(SegmentWriter {
                shared: shared.clone(),
                file,
                bytes: init.len() as u64,
                held: Vec::new(),
                fragments: 0,
                broken: false,
                failed: false,
                row,
                _name: name,
            }),
            Err(e) => {
                // Undo: the file (if any) first, then the row, as abandon does.
                let _ = fsutil::remove_file(&working);
                let _ = shared.index.commit(vec![Op::Remove(row.id)]);
                Err(e)
            }
        }
    }

    /// Pick the first `base`, `base-1`, ... whose files of this container are all free, and
    /// reserve it among live writers. Each container checks only its own names, so the
    /// writers of one segment's containers normally share a base; one whose name is taken
    /// (a file left from an earlier run) gets the next free one on its own.
    fn reserve_name(&self, rel_base: &Path, formats: &[Format]) -> Result<NameGuard, StoreError> {
        let root = &self.shared.root;
        let container = formats[0].container();
        let mut active = self.shared.active_names();
        for n in 0..MAX_NAME_TRIES {
            let base = if n == 0 {
                rel_base.to_path_buf()
            } else {
                with_suffix(rel_base, &format!("-{n}"))
            };
            let working = with_suffix(&base, container.working_suffix());
            if active.contains(&working) {
                continue;
            }
            let mut names = vec![working.clone()];
            if container == Container::Mp4 {
                names.push(with_suffix(&base, PROGRESSIVE_TMP_SUFFIX));
            }
            names.extend(formats.iter().map(|f| final_path(&base, *f, formats)));
            let taken = names
                .iter()
                .any(|p| fs::symlink_metadata(root.join(p)).is_ok());
            if !taken {
                active.insert(working.clone());
                return Ok(NameGuard {
                    shared: self.shared.clone(),
                    working,
                    base,
                });
            }
        }
        Err(StoreError::BadName {
            path: rel_base.to_path_buf(),
            reason: format!(
                "{MAX_NAME_TRIES} files of that name already exist; \
                 add the time to the naming template"
            ),
        })
    }
}

/// A base must be a plain relative path without `..`.
fn check_rel_base(rel_base: &Path) -> Result<(), StoreError> {
    let plain = rel_base
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if rel_base.as_os_str().is_empty() || !plain {
        return Err(StoreError::BadName {
            path: rel_base.to_path_buf(),
            reason: "the name must be a relative path without `..`".into(),
        });
    }
    Ok(())
}

/// Create missing directories of `path`'s parent (each made durable in its own parent),
/// then the working file itself; write `init`, fdatasync (with `sync_head`), and fsync the
/// directory, so the file's name survives a power cut as well as its bytes (without it,
/// the whole open segment could vanish). Once per segment.
///
/// The directory lock is held only while the directories and the file are created, so a
/// concurrent delete cannot remove a directory between the steps (once the file is in it,
/// it is not empty). The fsyncs come after it is released: a disk that stalls under one
/// stream's directory must not hold the lock every other stream's `begin` needs. They all
/// happen before `begin` returns, and nothing is durable-relied-upon until then.
///
/// FLV and ADTS files skip the fdatasync: their head shares its page with the first
/// fragment, whose fdatasync writes it, so the page reaches the disk once instead of twice.
/// A power cut before that leaves a file without a complete tag or frame, which recovery
/// removes, as it removes a torn fMP4 init.
fn create_working(
    shared: &Shared,
    path: &Path,
    init: &[u8],
    sync_head: bool,
) -> Result<File, StoreError> {
    let dir = parent(path);
    let (made, mut file) = {
        let _dirs = shared.dirs_lock();
        let made =
            fsutil::make_dirs(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| StoreError::io("create", path, e))?;
        (made, file)
    };
    for d in &made {
        fsync_dir(d)?;
    }
    file.write_all(init)
        .map_err(|e| StoreError::io("write", path, e))?;
    if sync_head {
        file.sync_data()
            .map_err(|e| StoreError::io("fdatasync", path, e))?;
    }
    fsync_dir(parent(path))?;
    Ok(file)
}

impl SegmentWriter {
    /// Append one encoded fragment with one write, then fdatasync, so a power cut loses at
    /// most the fragment being written. On failure the file is cut back to the previous
    /// fragment where possible, every later append is refused, and the writer may still be
    /// finished: the segment closes at its last good fragment. (A failed fdatasync is never
    /// retried: after one, Linux may have dropped the dirty pages and report the next fsync
    /// clean, so the fragment it covered is cut off instead.)
    ///
    /// An fMP4 fragment (moof+mdat) of at least [`ALIGN_FROM`] bytes is preceded by a `free`
    /// box that ends it on a page boundary ([`page_padding`]). FLV and ADTS have no such
    /// box, so their writer holds back the bytes past the last whole page instead and
    /// writes them with the next fragment (or at close): each page reaches the disk once,
    /// and a power cut loses at most the fragment being written and that tail of less than
    /// a page (recovery cuts the file back to its last complete tag or frame).
    pub fn append(&mut self, fragment: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(self.error("an earlier write failed; finish or abandon this segment"));
        }
        if !self.row.container().is_fmp4() {
            return self.append_whole_pages(fragment);
        }
        let pad = page_padding(self.bytes, fragment.len());
        let result = write_padded(&mut self.file, pad, fragment)
            .map_err(|e| ("write", e))
            .and_then(|()| self.file.sync_data().map_err(|e| ("fdatasync", e)));
        match result {
            Ok(()) => {
                self.bytes += (pad + fragment.len()) as u64;
                self.fragments += 1;
                Ok(())
            }
            Err((op, e)) => {
                self.failed = true;
                if self.file.set_len(self.bytes).is_err() {
                    self.broken = true;
                }
                Err(StoreError::io(op, self.working_abs(), e))
            }
        }
    }

    /// [`SegmentWriter::append`] for FLV and ADTS: write the held tail and `fragment` up to
    /// the last page boundary they reach, hold the rest.
    fn append_whole_pages(&mut self, fragment: &[u8]) -> Result<(), StoreError> {
        let end = self.bytes + (self.held.len() + fragment.len()) as u64;
        let cut = end - end % PAGE;
        if cut <= self.bytes {
            self.held.extend_from_slice(fragment);
            self.fragments += 1;
            return Ok(());
        }
        let from_fragment = (cut - self.bytes) as usize - self.held.len();
        let result = write_all_vectored(&mut self.file, &[&self.held, &fragment[..from_fragment]])
            .map_err(|e| ("write", e))
            .and_then(|()| self.file.sync_data().map_err(|e| ("fdatasync", e)));
        match result {
            Ok(()) => {
                self.bytes = cut;
                self.held.clear();
                self.held.extend_from_slice(&fragment[from_fragment..]);
                self.fragments += 1;
                Ok(())
            }
            Err((op, e)) => {
                // The held tail belongs to fragments already counted: finish still writes it.
                self.failed = true;
                if self.file.set_len(self.bytes).is_err() {
                    self.broken = true;
                }
                Err(StoreError::io(op, self.working_abs(), e))
            }
        }
    }

    /// Write `patch` over the working file's own bytes (FLV's onMetaData at close). Call
    /// just before [`finish`](Self::finish), whose fsync makes it durable: if a crash comes
    /// first, recovery makes the same patch from the file.
    pub fn patch(&mut self, patch: &Patch) -> Result<(), StoreError> {
        let end = patch.offset + patch.bytes.len() as u64;
        if end > self.bytes {
            return Err(self.error("a patch past the bytes written"));
        }
        let path = self.working_abs();
        // The writer's own descriptor appends (O_APPEND moves every write to the end).
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        file.write_all_at(&patch.bytes, patch.offset)
            .map_err(|e| StoreError::io("write", &path, e))
    }

    /// Bytes in the working file (init section and fragments), not counting a held tail.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fragments appended.
    pub fn fragments(&self) -> u32 {
        self.fragments
    }

    /// The row id.
    pub fn id(&self) -> SegmentId {
        self.row.id
    }

    /// The `Writing` row as committed by `begin` (its `base` is the name actually used).
    pub fn row(&self) -> &SegmentRow {
        &self.row
    }

    /// Close the segment. With no fragment written this is [`abandon`](Self::abandon) and
    /// returns `None`. Otherwise: fsync the file, rename `.part` to its final name, fsync the
    /// directory, make the progressive MP4 if asked, then commit the row as `Closed` (group
    /// commit). If this fails, the row stays `Writing` and the next recovery closes it.
    pub fn finish(mut self, close: &SegmentClose) -> Result<Option<SegmentRow>, StoreError> {
        if self.fragments == 0 {
            self.abandon()?;
            return Ok(None);
        }
        let working = self.working_abs();
        if self.broken {
            self.file
                .set_len(self.bytes)
                .map_err(|e| StoreError::io("truncate", &working, e))?;
        }
        if !self.held.is_empty() {
            // It completes the last tag or frame on disk. If it cannot be written, the row
            // stays `Writing` and recovery cuts the file back to its last complete one.
            self.file
                .write_all(&self.held)
                .map_err(|e| StoreError::io("write", &working, e))?;
            self.bytes += self.held.len() as u64;
            self.held = Vec::new();
        }
        self.file
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &working, e))?;
        let mut row = self.row.clone();
        // A clock correction while it was open moved its start (see `docs/time.md`).
        let moved = close.start_ms - row.start_ms;
        if moved != 0 {
            row.start_ms = close.start_ms;
            if let Some(b) = &mut row.boot {
                b.offset_ms += moved;
                row.time_quality = crate::util::clockwatch::TimeQuality::Corrected;
            }
        }
        row.end_ms = close.end_ms;
        row.duration_ms = close.duration_ms;
        row.closed_at_ms = self.shared.clock.wall_ms();
        drop(self.file);
        close_files(&self.shared, row, true).map(Some)
    }

    /// Remove the working file, then the row (e.g. the segment produced nothing).
    pub fn abandon(self) -> Result<(), StoreError> {
        let working = self.working_abs();
        drop(self.file);
        // Removing a file needs no lock (a directory holding it is not empty); only
        // removing emptied directories does. The fsync stays outside it (see create_working).
        fsutil::remove_file(&working)?;
        fsync_dir(parent(&working))?;
        {
            let _dirs = self.shared.dirs_lock();
            fsutil::remove_empty_dirs(&self.shared.root, parent(&working))?;
        }
        self.shared.index.commit(vec![Op::Remove(self.row.id)])
    }

    fn working_abs(&self) -> PathBuf {
        self.shared.root.join(self.row.working_path())
    }

    fn error(&self, reason: &str) -> StoreError {
        StoreError::Writer {
            id: self.row.id,
            path: self.working_abs(),
            reason: reason.to_string(),
        }
    }
}

/// The page size fragments are aligned to (see [`page_padding`]).
const PAGE: u64 = 4096;
/// Fragments at least this large are aligned; smaller ones (low-rate streams) are not,
/// where the padding would cost more space than the rewrite it saves. The store's own
/// tests align every fragment, so recovery, progressive copies and crash tests all meet
/// padded files.
const ALIGN_FROM: usize = if cfg!(test) { 1 } else { 64 * 1024 };

/// Size of the `free` box written before a fragment of `len` bytes at file offset `at`, so
/// that the file then ends on a page boundary (0: none). Each fragment is fdatasynced, and
/// the kernel writes whole pages: without alignment, the file's partly filled last page is
/// written again with the next fragment — about a page of extra flash writes per fragment.
/// The padding costs half a page of space on average instead, and only for fragments of
/// at least [`ALIGN_FROM`] bytes. Readers skip `free` boxes; recovery and the scanner treat
/// them as the gap they are.
pub(crate) fn page_padding(at: u64, len: usize) -> usize {
    if len < ALIGN_FROM {
        return 0;
    }
    let end = at + 8 + len as u64;
    (8 + (PAGE - end % PAGE) % PAGE) as usize
}

/// Write a `free` box of `pad` bytes (none if 0) and then `fragment`, with as few write
/// calls as the kernel allows (normally one).
fn write_padded(file: &mut File, pad: usize, fragment: &[u8]) -> std::io::Result<()> {
    const ZEROS: [u8; PAGE as usize + 8] = [0; PAGE as usize + 8];
    if pad == 0 {
        return file.write_all(fragment);
    }
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(pad as u32).to_be_bytes());
    head[4..].copy_from_slice(b"free");
    write_all_vectored(file, &[&head, &ZEROS[..pad - 8], fragment])
}

/// Write `parts` one after the other, with as few write calls as the kernel allows
/// (normally one).
fn write_all_vectored(file: &mut File, parts: &[&[u8]]) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        // Skip what is written, then hand the rest over in one vectored write.
        let mut skip = done;
        let mut bufs = Vec::with_capacity(parts.len());
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
            } else {
                bufs.push(std::io::IoSlice::new(&p[skip..]));
                skip = 0;
            }
        }
        match file.write_vectored(&bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The close of a segment whose working file is complete and fsynced, shared by
/// [`SegmentWriter::finish`] and recovery. `row` carries end, duration and close time.
///
/// With `from_working`, the file is still the working file (renamed here, unless only `mp4`
/// is asked); otherwise it is already at its final name. Order: rename, fsync dir;
/// progressive to its temporary name, fsync, rename, fsync dir; commit `Closed`; and only
/// then, if only `mp4` was asked, remove the working file (a crash before that leaves a
/// `.part` whose row is `Closed`, which recovery just removes).
pub(crate) fn close_files(
    shared: &Shared,
    mut row: SegmentRow,
    from_working: bool,
) -> Result<SegmentRow, StoreError> {
    let root = &shared.root;
    let working = root.join(row.working_path());
    let mut files = Vec::new();
    let renamed = row.renamed_format();
    let source = if let Some(format) = renamed {
        let rel = row.final_path(format);
        let fin = root.join(&rel);
        if from_working {
            fsutil::rename(&working, &fin)?;
            fsync_dir(parent(&fin))?;
        }
        let bytes = fsutil::file_len(&fin)?.unwrap_or(0);
        files.push(SegmentFile {
            format,
            path: rel,
            bytes,
        });
        fin
    } else {
        working.clone()
    };
    if row.has(Format::Mp4) {
        let tmp = root.join(row.progressive_tmp_path());
        let rel = row.final_path(Format::Mp4);
        let fin = root.join(&rel);
        let bytes = media::write_progressive(&source, &tmp)?;
        fsutil::rename(&tmp, &fin)?;
        fsync_dir(parent(&fin))?;
        files.push(SegmentFile {
            format: Format::Mp4,
            path: rel,
            bytes,
        });
    }
    row.bytes = files.iter().map(|f| f.bytes).sum();
    row.files = files;
    row.state = SegmentState::Closed;
    // The hooks' changes (upload queue, outbox) land in the same commit as the row.
    let extra = shared.closing(&mut row);
    let mut ops = vec![Op::put(row.clone())];
    ops.extend(extra);
    if renamed.is_some() {
        // Volatile: if a crash loses it, the file is already complete under its final name
        // and recovery finishes or adopts it. Saves a flash write per segment.
        shared.index.commit_volatile(ops)?;
        shared.committed(&[row.id]);
    } else {
        // Durable, because the working file (the only fMP4) is removed next.
        shared.index.commit(ops)?;
        shared.committed(&[row.id]);
        let removed = fsutil::remove_file(&working).and_then(|_| fsync_dir(parent(&working)));
        if let Err(e) = removed {
            tracing::warn!(error = %e, "segment closed, but its working file stays until the next recovery");
        }
    }
    Ok(row)
}

#[cfg(test)]
mod padding_tests {
    use super::*;

    #[test]
    fn padding_ends_the_fragment_on_a_page_boundary() {
        for at in [0u64, 1, 700, 4095, 4096, 123_457] {
            for len in [ALIGN_FROM, 5000, 65_536, 500_001] {
                let pad = page_padding(at, len);
                assert!((8..=PAGE as usize + 8).contains(&pad), "{at} {len}: {pad}");
                assert_eq!((at + (pad + len) as u64) % PAGE, 0, "{at} {len}: {pad}");
            }
        }
    }

    #[test]
    fn a_padded_write_is_a_free_box_then_the_fragment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        let frag = vec![7u8; 10_000];
        let pad = page_padding(100, frag.len());
        write_padded(&mut f, pad, &frag).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), pad + frag.len());
        assert_eq!(
            u32::from_be_bytes(data[..4].try_into().unwrap()) as usize,
            pad
        );
        assert_eq!(&data[4..8], b"free");
        assert!(data[8..pad].iter().all(|&b| b == 0));
        assert_eq!(&data[pad..], &frag[..]);
    }
}
