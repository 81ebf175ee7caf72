//! The recordings table: one entry per HLS recording (playlist), so that what a playlist's
//! file cannot say survives a restart: whether it waits for its stream to come back (the
//! resume window's deadline), where it was spliced (`EXT-X-DISCONTINUITY`, a new
//! `EXT-X-MAP`), and whether it is finished. The order of writes is in the store's
//! durability protocol (module docs, **Playlist** and **Splice**). Resuming and deleting
//! recordings, which also touch their playlists' files, are in `splice.rs`.
//!
//! Keys are increasing in the order recordings open (one more than the table's last key,
//! chosen under the store's recordings lock), so a scan lists the oldest recording first.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::media::format::hls;

use super::error::StoreError;
use super::index::Op;
use super::tables::{AuxOp, AuxTable};
use super::{Shared, Store};

/// One recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingEntry {
    /// The playlist, relative to the root.
    pub playlist: PathBuf,
    pub app: String,
    pub stream: String,
    /// Its first segment's sequence number.
    pub first_seq: u64,
    /// The init section its newest `EXT-X-MAP` names (a file name beside the playlist).
    pub map: String,
    /// Where sessions after the first begin, in order.
    pub splices: Vec<Splice>,
    /// Set while its stream is gone: the wall-clock time (ms since the Unix epoch) until
    /// which it waits for the stream to come back.
    pub deadline_ms: Option<i64>,
    /// `EXT-X-ENDLIST` is written.
    pub finished: bool,
}

/// A session spliced into a recording: its segments from `seq` on follow an
/// `EXT-X-DISCONTINUITY`, and a new `EXT-X-MAP` when `map` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splice {
    pub seq: u64,
    pub map: Option<String>,
}

impl RecordingEntry {
    /// The lines that go before the entry of segment `seq` (a splice begins there).
    pub fn lines_before(&self, seq: u64, prev_seq: Option<u64>) -> String {
        let mut out = String::new();
        for s in &self.splices {
            // The first listed segment at or after the splice (its own segment may be gone).
            if seq >= s.seq && prev_seq.is_some_and(|p| p < s.seq) {
                out += &splice_lines(s.map.as_deref());
            }
        }
        out
    }
}

/// The lines that begin a spliced session.
pub(super) fn splice_lines(map: Option<&str>) -> String {
    let mut out = String::from("#EXT-X-DISCONTINUITY\n");
    if let Some(m) = map {
        out += &hls::map_line(m);
    }
    out
}

impl Shared {
    /// A recording waits until `deadline_ms` (see `next_deadline`).
    pub(super) fn note_deadline(&self, deadline_ms: i64) {
        self.next_deadline.fetch_min(deadline_ms, Ordering::SeqCst);
    }

    pub(super) fn recordings_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.recordings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every recording, oldest first.
    pub(super) fn recordings(&self) -> Result<Vec<(u64, RecordingEntry)>, StoreError> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let page = self.index.aux_scan(AuxTable::Recordings, from, 256)?;
            let Some(last) = page.last().map(|(k, _)| *k) else {
                break;
            };
            for (k, v) in page {
                match postcard::from_bytes(&v) {
                    Ok(e) => out.push((k, e)),
                    Err(e) => tracing::warn!(key = k, error = %e, "unreadable recordings entry"),
                }
            }
            from = last + 1;
        }
        Ok(out)
    }

    /// Put (or with `None` drop) a recording's entry.
    pub(super) fn put_recording(
        &self,
        key: u64,
        e: Option<&RecordingEntry>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let op = match e {
            Some(e) => AuxOp::put(
                AuxTable::Recordings,
                key,
                postcard::to_allocvec(e).expect("entry encodes"),
            ),
            None => AuxOp::remove(AuxTable::Recordings, key),
        };
        if durable {
            self.index.commit(vec![Op::Aux(op)])
        } else {
            self.index.commit_volatile(vec![Op::Aux(op)])
        }
    }

    pub(super) fn recording(&self, key: u64) -> Result<Option<RecordingEntry>, StoreError> {
        Ok(self
            .index
            .aux_get(AuxTable::Recordings, key)?
            .and_then(|v| postcard::from_bytes(&v).ok()))
    }

    /// Append `EXT-X-ENDLIST` to the playlist of `key` (after a line end, should its last
    /// line be torn) and mark it finished.
    pub(super) fn finish_recording(
        &self,
        key: u64,
        mut e: RecordingEntry,
    ) -> Result<(), StoreError> {
        let path = self.root.join(&e.playlist);
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|err| StoreError::io("open", &path, err))?;
        let mut text = String::new();
        f.read_to_string(&mut text)
            .map_err(|err| StoreError::io("read", &path, err))?;
        if !hls::parse(&text).finished {
            let sep = if text.ends_with('\n') { "" } else { "\n" };
            f.write_all(format!("{sep}{}", hls::ENDLIST).as_bytes())
                .and_then(|()| f.sync_data())
                .map_err(|err| StoreError::io("append", &path, err))?;
        }
        e.finished = true;
        e.deadline_ms = None;
        self.put_recording(key, Some(&e), false)?;
        tracing::info!(path = %e.playlist.display(), "recording finished");
        Ok(())
    }
}

impl Store {
    /// Register a recording that just opened (volatile: if a crash loses it, recovery finds
    /// the playlist without an entry, which it finishes as it always did).
    pub(super) fn add_recording(&self, e: &RecordingEntry) -> Result<u64, StoreError> {
        let _g = self.shared.recordings_lock();
        let (_, last) = self.shared.index.aux_stats(AuxTable::Recordings)?;
        let key = last.map_or(0, |k| k + 1);
        self.shared.put_recording(key, Some(e), false)?;
        Ok(key)
    }

    /// Every recording, oldest first.
    pub fn recordings(&self) -> Result<Vec<(u64, RecordingEntry)>, StoreError> {
        self.shared.recordings()
    }

    /// Whether a suspended recording's resume window may have passed: a cheap look (no
    /// index read), so the daemon's timer calls [`Store::finish_expired`], which reads the
    /// index off the runtime, only then (a blocking call's completion wakes the runtime).
    pub fn may_have_expired(&self) -> bool {
        self.shared.clock.wall_ms() >= self.shared.next_deadline.load(Ordering::SeqCst)
    }

    /// Finish every recording whose resume window passed without its stream coming back
    /// (the daemon's timer, and recovery at startup). Returns their playlists.
    pub fn finish_expired(&self) -> Result<Vec<PathBuf>, StoreError> {
        let shared = &self.shared;
        let now = shared.clock.wall_ms();
        if now < shared.next_deadline.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let _g = shared.recordings_lock();
        let mut done = Vec::new();
        let mut next = i64::MAX;
        for (key, e) in shared.recordings()? {
            match e.deadline_ms.filter(|_| !e.finished) {
                Some(d) if d <= now => {
                    done.push(e.playlist.clone());
                    shared.finish_recording(key, e)?;
                }
                Some(d) => next = next.min(d),
                None => {}
            }
        }
        shared.next_deadline.store(next, Ordering::SeqCst);
        Ok(done)
    }
}
