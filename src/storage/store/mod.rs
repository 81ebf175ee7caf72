//! The store: segment files on disk, the redb index that lists them, and the durability
//! protocol that keeps the two in agreement across crashes and power cuts.
//!
//! All of it is synchronous, blocking code; the async recorder calls it through
//! `spawn_blocking`. One [`Store`] per storage root, shared as `Arc<Store>`; one
//! [`SegmentWriter`] per segment being written, owned by its stream's task.
//!
//! # Files
//!
//! Everything lives under the root: `index.redb` (the index), `edgerec.lock` (held with
//! `flock` by the process using the root), and the segments, named by the naming template
//! relative to the root. A segment is written through one working file per *container*
//! ([`Container`](crate::media::format::Container)) its formats need, each with its own
//! row: MP4 (`fmp4`, `mp4`), FLV (`flv`), ADTS (`aac`). The rows of one segment share its
//! identity (stream, seq, start) and normally its `base` (the expanded template, made
//! unique with `-1`, `-2`, ... per container when taken):
//!
//! | file | what |
//! | --- | --- |
//! | `base.mp4.part` | the fMP4 *working file* while it is written |
//! | `base.mp4` | the closed fMP4 (formats `fmp4`, or `fmp4` + `mp4`) |
//! | `base.progressive.mp4` | the progressive copy when both `fmp4` and `mp4` are asked |
//! | `base.mp4` | the progressive MP4 when only `mp4` is asked |
//! | `base.progressive.mp4.part` | the progressive MP4 while it is produced |
//! | `base.flv.part`, `base.flv` | the FLV working file, and the closed FLV (`flv`) |
//! | `base.aac.part`, `base.aac` | the ADTS working file, and the closed `.aac` (`aac`) |
//! | `base.m4s.part`, `base.m4s` | the HLS media segment's working file, and the closed one (`hls`) |
//! | `first.m3u8`, `first.init.mp4` | an HLS recording's playlist and init section, named after its first segment's base (no row: see **Playlist**; an entry in the `recordings` table) |
//! | `first-N.init.mp4` | the init section of a session spliced into the recording with new codec parameters (see **Splice**) |
//!
//! Beside them, `clock-corrections.json` records, per boot, the wall − boot clock offset a
//! correction put that boot's unsynchronized segments on (see `restamp.rs` and
//! `docs/time.md`), so that recovery and an index rebuild can re-stamp again what the files
//! hold as recorded.
//!
//! Every file carries the segment's identity
//! ([`SegmentMeta`](crate::media::segment::event::SegmentMeta)) at its start (an MP4's
//! `uuid` box, the FLV's onMetaData, the ADTS file's ID3 tag), so the index can be rebuilt
//! from the files alone ([`Store::rebuild_index`]).
//!
//! # Durability protocol
//!
//! The rule: **a row says `Closed` only once its files are complete and durable under their
//! final names.** The index may know less than the disk (recovery then adopts or finishes),
//! never more. Each step below is ordered so that a crash between any two steps leaves a
//! state recovery recognizes.
//!
//! Commits come in two kinds. A *durable* commit is a redb transaction with
//! `Durability::Immediate`; concurrent callers share one (group commit, see `index.rs`). A
//! *volatile* commit (`Durability::None`) is visible at once but reaches the disk only with
//! the next durable commit: [`Store::flush`], run every [`FLUSH_INTERVAL`], after recovery
//! and at shutdown. Steps that recovery can redo from the files alone are volatile — that
//! spares the flash a copy-on-write rewrite of the index (about a dozen page writes) per
//! segment start and close. Per-fragment work never touches the index. A delete is the one
//! step recovery could not tell from damage, so its mark is durable (one commit per batch).
//!
//! Why a lost volatile commit is safe: the files are durable *before* the commit is made,
//! so a crash can only leave the durable index *behind* the disk, never ahead of it:
//! a lost `Writing` row → recovery finds the `.part` (step 2); a lost `Closed` → the row is
//! still `Writing` with its fMP4 at the final name (step 3) or missing (step 5, adopted);
//! a lost drop of deleted rows → rows still `Deleting` (step 1).
//! The event log's consumer cursors ([`AuxOp::advance`]) move in volatile commits too: a lost
//! move leaves the cursor *behind* what its peer acknowledged, so the events after it are
//! delivered again (same ids), never skipped; the entries the move would have removed are
//! still there, because removal is part of the same commit.
//!
//! **Open** ([`Store::open`]): create the root if missing, fsyncing the parent of each
//! directory created; open or create `index.redb`, then fsync the root. A durable commit is
//! only as durable as the index file's name: without that fsync, a power cut soon after the
//! first start could take the whole index (upload queue and outbox too) with it.
//!
//! **Create** ([`Store::begin`]):
//! 1. commit a `Writing` row (with the chosen `base` and formats) *without waiting for the
//!    disk* (redb `Durability::None`): it reaches the disk with the next durable commit,
//!    sparing one flash write per segment. If a crash loses it, recovery step 2 still finds
//!    the working file by its name and takes identity and formats from the file itself;
//! 2. create missing directories and the working file `base.mp4.part` (`.flv.part`,
//!    `.aac.part`; `O_EXCL`), under the directory lock (so a delete cannot remove a
//!    directory in between), then, outside it, fsync the parent of each directory created
//!    (a stalled disk must not hold the lock);
//! 3. write its head (the fMP4 init section; the FLV header, its onMetaData at the size it
//!    keeps and the sequence headers; the ADTS file's ID3 tag), fdatasync (not FLV and
//!    ADTS: their head shares its page with the first fragment, whose fdatasync writes it
//!    once; a crash before that leaves a file without a complete tag or frame, removed by
//!    recovery);
//! 4. fsync the directory holding it (once per segment): until then a power cut can lose
//!    the file's name, and with it the whole open segment, however many fragments were
//!    fdatasynced into it.
//!
//! **Append** ([`SegmentWriter::append`]), per fragment: one `write` of the whole moof+mdat
//! (the FLV tags, the ADTS frames), then fdatasync. A power cut loses at most the fragment
//! being written; its torn bytes sit after the last complete fragment, where recovery cuts
//! them off. An FLV or ADTS writer writes only up to the last page boundary its bytes
//! reach and holds the rest (less than a page) for the next fragment, so no page is
//! written twice (an fMP4 pads with a `free` box instead); there a power cut also loses
//! that held tail, and the file on disk may end inside a tag or frame, where recovery cuts.
//! A failed write or fdatasync cuts the file back to the last good fragment and ends the
//! segment there: no further append is accepted, and the failed fdatasync is never retried
//! (Linux may have dropped the pages and report the next fsync clean).
//!
//! **Playlist** (HLS, [`Store::open_playlist`], [`PlaylistWriter`]). A recording's playlist is
//! an append-only file; it never names a file that is not durable under its final name:
//! 1. open, before the recording's first segment is created: write `first.init.mp4`
//!    (`O_EXCL`) and fsync it; create `first.m3u8` (`O_EXCL`) with its head (the `EXT-X-MAP`
//!    naming the init, and a `#EDGEREC:` comment line saying whose recording it is: app,
//!    stream, first sequence number), fdatasync it; fsync the directory; then commit its
//!    entry in the `recordings` table (playlist, stream, first sequence number, current init,
//!    no deadline; volatile: a lost entry means a playlist without one, which recovery
//!    finishes as before);
//! 2. per segment, after its **Close** step 2 (the `.m4s` fsynced, renamed, directory fsynced):
//!    append its entry (`EXT-X-PROGRAM-DATE-TIME`, `EXTINF`, `EXT-X-BYTERANGE`, URI) with one
//!    `write`, then fdatasync. A crash before it leaves a durable segment the playlist does
//!    not name yet; recovery adds it;
//! 3. finish (shutdown, a timestamp discontinuity, new codec parameters,
//!    `playlist_max_length` reached, the source ended without a `resume_window`, or a
//!    window that passed): append `EXT-X-ENDLIST`, fdatasync, then mark the entry finished
//!    (volatile: a playlist ending with ENDLIST is finished whatever the entry says, and
//!    recovery marks it so).
//!
//! **Splice** (`resume_window`, [`Store::resume_recording`], [`Store::finish_expired`]):
//! 1. suspend, when the source ends or is lost: a **durable** commit of the entry's deadline
//!    (now + window, wall clock). The playlist stays without ENDLIST. Durable, because a
//!    restart within the window must find it: a lost deadline would finish the recording;
//! 2. resume, when the stream's next session (in this process or after a restart) opens its
//!    first segment before the deadline: if its init section differs from the recording's
//!    current one, write `first-N.init.mp4` (`O_EXCL`), fsync it and the directory; then a
//!    **durable** commit of the splice (its first sequence number, the new init if any) and
//!    the cleared deadline; then the first entry after it is appended (Playlist step 2)
//!    preceded by `EXT-X-DISCONTINUITY` (and `EXT-X-MAP` naming the new init) in the same
//!    `write`. A crash before that append leaves the splice in the index, and a recovery
//!    rewrite puts the lines before the first segment at or after the splice's;
//! 3. expire: a stream that comes back after the deadline, the daemon's timer (every second)
//!    or recovery finishes the recording (Playlist step 3). All changes to the table go
//!    under one lock, so a recording is never both resumed and finished.
//!
//! Only recovery rewrites a playlist, and always whole: write `first.m3u8.tmp`, fsync, rename
//! over `first.m3u8`, fsync the directory. Bytes written per segment: its entry (about 150
//! bytes, in a page the next append writes again: one page per segment) and nothing else.
//!
//! **Unfinished closes** ([`Store::close_unfinished`]): a segment whose close failed (a
//! read-only disk refuses the rename) or whose writer was given up on after a stall stays
//! `Writing` with its working file. Once its stream writes again, recovery's steps 2–3 are
//! run for it alone; otherwise the next startup recovery does it.
//!
//! **Close** ([`SegmentWriter::finish`]):
//! 0. FLV and ADTS: write the held tail; FLV: write the final onMetaData (duration, size,
//!    frame rate, key frame index) over the one written at create, in place and at the
//!    same size ([`SegmentWriter::patch`]); nothing is durable yet, and a crash here
//!    leaves a working file recovery repairs the same way;
//! 1. fsync the working file (data and size);
//! 2. if `fmp4` is asked: rename `base.mp4.part` → `base.mp4`, fsync the directory (FLV:
//!    `base.flv.part` → `base.flv`; ADTS: `base.aac.part` → `base.aac`);
//! 3. if `mp4` is asked: write the progressive MP4 to `base.progressive.mp4.part`, fsync it,
//!    rename it to its final name, fsync the directory;
//! 4. commit the row as `Closed` with end, duration, files and sizes (volatile when step 2
//!    renamed the working file, durable when only `mp4` is asked, because step 5 removes
//!    the only fMP4);
//! 5. if only `mp4` was asked: remove `base.mp4.part`, fsync the directory. (After the
//!    commit, so that a crash never leaves a `Writing` row with no fMP4 to recover from.)
//!
//! A segment without any fragment is abandoned instead: remove the working file, fsync the
//! directory, then drop the row. No empty files are left behind.
//!
//! **Delete** ([`Store::delete`], batched):
//! 1. commit all rows as `Deleting`, with what the `deleted` hooks add (the
//!    `segment.evicted` events), in one **durable** commit for the whole batch;
//! 2. unlink their files;
//! 3. fsync each touched directory once;
//! 4. commit dropping the rows (volatile: if it is lost, recovery step 1 drops them);
//! 5. remove directories left empty (fsyncing their parents).
//!
//! `Writing` rows are refused. Because of step 1, no file is unlinked while the durable
//! index still calls it `Closed`: a `Closed` row whose file is missing is damage, never an
//! interrupted delete.
//!
//! **Re-stamp** (a correction of the clock, see [`Store::restamp`]):
//! 1. write `clock-corrections.json.tmp`, fsync it, rename it to `clock-corrections.json`,
//!    fsync the root;
//! 2. in one durable transaction, read each closed row and move those recorded
//!    unsynchronized in that boot onto the new offset (`corrected`), with the
//!    `clock.corrected` event. Rows being written are left to their writer, which closes
//!    them with the corrected start.
//!
//! A crash between 1 and 2 leaves rows on the old offset, which the daemon's start
//! re-stamps from the record (after recovery), as [`Store::rebuild_index`] does.
//!
//! **Recovery** ([`Store::recover`], once at startup, before recording). In this order:
//! 1. rows in `Deleting`: unlink leftover files, fsync dirs, drop the rows (delete steps 2–5
//!    again; the hooks already ran with the mark);
//! 2. every working file (`*.mp4.part`, `*.flv.part`, `*.aac.part`, `*.m4s.part`) under the root (the
//!    tree is walked; the index and lock files are skipped):
//!    - if its row is `Closed` and the row's files exist: a leftover of close step 5, remove;
//!    - else scan it: with at least one complete fragment (FLV: audio or video tag; ADTS:
//!      frame), truncate to the end of the last one, write the repair (FLV: the onMetaData
//!      of what is left, as close step 0 writes it), fsync, and run close steps 2–5 with
//!      the duration from the file and `recovered = true` (meta from the row, or from the
//!      file when the row is missing). An FLV's complete tags are found by following the
//!      tags from the header, each checked against the PreviousTagSize after it; an ADTS
//!      file's by following the frame lengths, a frame counting only when a header like
//!      its own (or the end of the file) follows it;
//!    - without a complete fragment (a torn init, a progressive temporary): remove it, fsync
//!      the directory. Progressive MP4s are re-made from the fMP4 by close step 3;
//! 3. rows in `Writing` whose working file is gone: if the renamed file (`base.mp4`,
//!    `base.flv`, `base.aac`) exists the close got past its rename, or its volatile `Closed`
//!    commit was lost — finish it (steps 3–4; reported as adopted with `recovered = false`:
//!    its media was complete); otherwise drop the row (a crash between create steps 1 and
//!    3, or during an abandon);
//! 4. `Closed` rows: forget files that are gone (a warning: files removed by hand or lost to
//!    damage, as no delete unlinks before its durable mark), drop rows left with none,
//!    record sizes that changed;
//! 5. `*.mp4`, `*.flv` and `*.aac` files under the root that no row names: scan; files
//!    carrying our metadata are adopted as `Closed` rows (an fMP4 and its progressive copy
//!    share one row, an FLV or ADTS file has its own); others are left alone ("not ours").
//!
//! 6. HLS playlists without `EXT-X-ENDLIST` (a crash, or a segment left open by an error):
//!    rewritten (as **Playlist** says) from the index: the `Closed` `.m4s` rows of its stream
//!    from its first sequence number up to the next recording's, each with its entry from
//!    the row and its file (scanned for where its fragments begin), the splices' lines from
//!    its `recordings` entry before the first segment of each, then `EXT-X-ENDLIST` — unless
//!    its entry has a deadline not passed yet (it waits for its stream, **Splice**): then it
//!    is rewritten the same way without ENDLIST. So no entry is left without its file and no
//!    segment of the recording outside it (a recording left without any segment is removed
//!    with its init sections and entry). Entries whose playlist is gone are dropped; entries
//!    of finished playlists are marked finished. Leftover `.m3u8.tmp` files, and init
//!    sections whose playlist was never created (`first-N.init.mp4` belongs to
//!    `first.m3u8`), are removed;
//! 7. a durable flush, so what recovery did is on disk before recording starts.
//!
//! Every step only moves a segment forward (to `Closed` or gone), so recovery that is itself
//! interrupted is simply run again. Afterwards every `Closed` row's files exist with the
//! recorded sizes, and every segment file under the root has a row.
//!
//! A writer dropped without `finish`/`abandon` (a panicking task) leaves its working file
//! and `Writing` row; the next recovery closes it.
//!
//! # Hooks and auxiliary tables
//!
//! The upload queue, the event outbox, record tasks and HLS recordings (`recordings.rs`)
//! keep their state in auxiliary tables of the same database ([`AuxTable`]). An [`IndexHook`] adds changes to the very commit that
//! closes a segment (close step 4, recovery steps 2, 3 and 5) or marks it deleted, so a
//! closed segment and its queue entry or event are in the index together or not at all; a
//! lost volatile close is redone by recovery, which runs the hooks again (at-least-once).
//!
//! **Upload** ([`crate::sync::upload`]), on top of the steps above:
//! 1. the `closing` hook sets the row's upload state to `Pending` in the close commit (so
//!    a volatile close lost in a crash is queued again when recovery redoes it);
//! 2. a multipart upload's id, then each part's ETag once the service acknowledged the
//!    part, go into `UploadParts` (durable commit each) before the next part is sent; a
//!    crash re-sends at most the part in flight;
//! 3. after the object's size is verified, one durable commit sets the row `Uploaded`, drops
//!    its `UploadParts` entry and adds the `segment.uploaded` event;
//! 4. `UploadParts` entries whose row is gone or no longer pending are multipart uploads
//!    left behind: the uploader aborts them at start and drops the entries.
//!
//! A segment being uploaded is never evicted by retention; `delete_after_upload` deletes by
//! the **Delete** protocol only after step 3.
//!
//! The event outbox ([`crate::sync::events`], published by [`crate::control::mqtt`]) follows from this:
//! an event is written in the commit of the fact it reports (segment events by the MQTT
//! hook; upload and task events in their own commits) and removed, in a volatile commit,
//! only after the broker's PUBACK. A crash can lose the newest volatile commits: a lost
//! close comes back through recovery with its event (segment events have ids derived from
//! the segment, so the replay carries the same id), and a lost removal means the event is
//! delivered again. So an event is never lost while its fact survives, and never removed
//! before the broker has it: delivery is at least once.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::storage::retention::Disk;
use crate::util::clock::{SharedClock, SystemClock};

mod check;
mod consumers;
mod delete;
mod error;
mod fsutil;
mod index;
mod media;
mod playlist;
mod queue;
mod rebuild;
mod recordings;
mod recovery;
mod restamp;
mod row;
mod splice;
mod tables;
mod writer;

pub use check::CheckReport;
pub use error::StoreError;
pub(crate) use fsutil::create_dirs;
pub use playlist::{PlaylistWriter, INIT_SUFFIX, PLAYLIST_SUFFIX};
pub use rebuild::RebuildReport;
pub use recordings::{RecordingEntry, Splice};
pub use recovery::RecoveryReport;
pub use restamp::{restamps, BootCorrection, Corrections, Restamped, CORRECTIONS_FILE};
pub use row::{SegmentFile, SegmentId, SegmentRow, SegmentState, UploadState};
pub use tables::{AuxMode, AuxOp, AuxTable, ConsumerMeta, IndexHook, QueueMeta};
pub use writer::SegmentWriter;

/// How often the recorder makes volatile index changes durable ([`Store::flush`]).
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The segment store of one storage root. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    shared: Arc<Shared>,
}

/// State shared by the store and its writers.
pub(crate) struct Shared {
    root: PathBuf,
    index: index::Index,
    clock: SharedClock,
    /// Bases of live writers, so two writers never pick the same name.
    active: Mutex<HashSet<PathBuf>>,
    /// Serializes directory creation (begin) with directory removal (delete).
    dirs: Mutex<()>,
    /// Serializes changes to the recordings table (a stream resuming a recording with the
    /// timer finishing it).
    recordings: Mutex<()>,
    /// The earliest resume deadline of a waiting recording (wall ms; `i64::MAX`: none), so
    /// that the timer's [`Store::finish_expired`] reads the table only when one may be due.
    /// May be early (a recording resumed since), never late.
    next_deadline: std::sync::atomic::AtomicI64,
    /// Called inside the commits that close and delete segments (see `tables.rs`).
    hooks: RwLock<Vec<Arc<dyn IndexHook>>>,
    /// Held for the store's lifetime; dropped last.
    _lock: File,
}

impl Shared {
    fn active_names(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dirs_lock(&self) -> MutexGuard<'_, ()> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hooks(&self) -> Vec<Arc<dyn IndexHook>> {
        self.hooks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run the `closing` hooks on `row`; returns the ops to commit with it.
    pub(crate) fn closing(&self, row: &mut SegmentRow) -> Vec<index::Op> {
        let mut ops = Vec::new();
        for h in self.hooks() {
            h.closing(row, &mut ops);
        }
        ops.into_iter().map(index::Op::Aux).collect()
    }

    /// Tell the hooks that the commit carrying their changes for `ids` landed.
    pub(crate) fn committed(&self, ids: &[SegmentId]) {
        for h in self.hooks() {
            h.committed(ids);
        }
    }

    /// Run the `deleted` hooks on `rows`; returns the ops to commit with their removal.
    pub(crate) fn deleted(&self, rows: &[SegmentRow]) -> Vec<index::Op> {
        let mut ops = Vec::new();
        for h in self.hooks() {
            h.deleted(rows, &mut ops);
        }
        ops.into_iter().map(index::Op::Aux).collect()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.shared.root)
            .finish()
    }
}

impl Store {
    /// Open the store at `root` with the system clock. See [`Store::open_with_clock`].
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with_clock(root, Arc::new(SystemClock))
    }

    /// Create `root` if missing, check it is a writable directory, take its lock file (so two
    /// daemons never share a root) and open or create `<root>/index.redb`. `clock` stamps
    /// `closed_at_ms` of closed rows.
    pub fn open_with_clock(root: &Path, clock: SharedClock) -> Result<Store, StoreError> {
        let lock = fsutil::prepare_root(root)?;
        let index = index::Index::open(&root.join(fsutil::INDEX_FILE))?;
        Ok(Store {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                index,
                clock,
                active: Mutex::new(HashSet::new()),
                dirs: Mutex::new(()),
                recordings: Mutex::new(()),
                next_deadline: std::sync::atomic::AtomicI64::new(i64::MAX),
                hooks: RwLock::new(Vec::new()),
                _lock: lock,
            }),
        })
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// All rows (any state), oldest first in recording order: by id, which segments get as
    /// they begin (never by wall-clock time, which a clock step can reorder; after an
    /// `index rebuild` ids follow stream and sequence number).
    pub fn segments(&self) -> Result<Vec<SegmentRow>, StoreError> {
        self.shared.index.all()
    }

    /// One row.
    pub fn segment(&self, id: SegmentId) -> Result<Option<SegmentRow>, StoreError> {
        self.shared.index.get(id)
    }

    /// The sequence number for `stream`'s next segment: one more than the highest ever
    /// recorded for it (kept even after its rows are deleted), 0 if none.
    pub fn next_seq(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self
            .shared
            .index
            .max_seq(stream)?
            .map_or(0, |s| s.saturating_add(1)))
    }

    /// Size and unprivileged free space of the filesystem holding the root.
    pub fn disk(&self) -> Result<Disk, StoreError> {
        let (total, free) = fsutil::statvfs(&self.shared.root)?;
        Ok(Disk { total, free })
    }

    /// Make the index changes so far durable. The recorder calls it every
    /// [`FLUSH_INTERVAL`] and at shutdown; closes and deletes are volatile until then (see
    /// the durability protocol above).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.index.flush()
    }

    /// Add a hook called inside every commit that closes or deletes segments. Add hooks
    /// before [`Store::recover`], so segments recovery closes or adopts reach them too.
    pub fn add_hook(&self, hook: Arc<dyn IndexHook>) {
        self.shared
            .hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// One value of an auxiliary table.
    pub fn aux_get(&self, table: AuxTable, key: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.index.aux_get(table, key)
    }

    /// Up to `limit` entries of an auxiliary table with keys `>= from`, in key order.
    pub fn aux_scan(
        &self,
        table: AuxTable,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.shared.index.aux_scan(table, from, limit)
    }

    /// How many entries an auxiliary table holds, and its last key.
    pub fn aux_stats(&self, table: AuxTable) -> Result<(u64, Option<u64>), StoreError> {
        self.shared.index.aux_stats(table)
    }

    /// The queue bookkeeping of an auxiliary table: the next key an append gets, and the
    /// entries bounded appends dropped (see [`AuxOp::append`]).
    pub fn aux_queue(&self, table: AuxTable) -> Result<QueueMeta, StoreError> {
        self.shared.index.aux_queue(table)
    }

    /// The consumers of a queue table with their cursors and drop counts (see
    /// [`AuxOp::consumers`]).
    pub fn aux_consumers(&self, table: AuxTable) -> Result<Vec<ConsumerMeta>, StoreError> {
        self.shared.index.aux_consumers(table)
    }

    /// Apply auxiliary-table changes in one transaction, with a segment row update if given
    /// (e.g. its upload state). `durable` waits for the disk (group commit); otherwise the
    /// change is volatile until the next [`Store::flush`] (see the durability protocol).
    pub fn aux_commit(
        &self,
        ops: Vec<AuxOp>,
        row: Option<SegmentRow>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut all: Vec<index::Op> = row.into_iter().map(index::Op::put).collect();
        all.extend(ops.into_iter().map(index::Op::Aux));
        if durable {
            self.shared.index.commit(all)
        } else {
            self.shared.index.commit_volatile(all)
        }
    }

    /// Durable index transactions committed since open (group commits count once).
    pub fn index_commits(&self) -> u64 {
        self.shared.index.commits()
    }
}

#[cfg(all(test, feature = "process-tests"))]
mod check_tests;
#[cfg(all(test, feature = "process-tests"))]
mod container_tests;
#[cfg(all(test, feature = "process-tests"))]
mod crash_tests;
#[cfg(all(test, feature = "process-tests"))]
pub(crate) mod fixture;
#[cfg(all(test, feature = "process-tests"))]
mod hook_tests;
#[cfg(all(test, feature = "process-tests"))]
mod progressive_tests;
#[cfg(test)]
mod recordings_tests;
#[cfg(all(test, feature = "process-tests"))]
mod syscall_tests;
#[cfg(all(test, feature = "process-tests"))]
mod tests;
