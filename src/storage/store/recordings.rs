//! The recordings table: one entry per HLS recording (playlist), so that what a playlist's
//! file cannot say survives a restart: whether it waits for its stream to come back (the
//! resume window's deadline), where it was spliced (`EXT-X-DISCONTINUITY`, a new
//! `EXT-X-MAP`), and whether it is finished. The order of writes is in the store's
//! durability protocol (module docs, **Playlist** and **Splice**).
//!
//! Keys are increasing in the order recordings open (one more than the table's last key,
//! chosen under the store's recordings lock), so a scan lists the oldest recording first.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::media::format::hls;
use crate::media::sink::{PlaylistFile, Resumed, SinkError};

use super::error::StoreError;
use super::fsutil::{fsync_dir, parent};
use super::index::Op;
use super::playlist::{create_new, PlaylistWriter, INIT_SUFFIX, PLAYLIST_SUFFIX};
use super::row::with_suffix;
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
fn splice_lines(map: Option<&str>) -> String {
    let mut out = String::from("#EXT-X-DISCONTINUITY\n");
    if let Some(m) = map {
        out += &hls::map_line(m);
    }
    out
}

impl Shared {
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

    fn recording(&self, key: u64) -> Result<Option<RecordingEntry>, StoreError> {
        Ok(self
            .index
            .aux_get(AuxTable::Recordings, key)?
            .and_then(|v| postcard::from_bytes(&v).ok()))
    }

    /// Append `EXT-X-ENDLIST` to the playlist of `key` (after a line end, should its last
    /// line be torn) and mark it finished.
    fn finish_recording(&self, key: u64, mut e: RecordingEntry) -> Result<(), StoreError> {
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

    /// Continue the recording of `app`/`stream` that waits for it (its deadline not passed),
    /// from segment `seq` on, whose init section is `init`: a new init section
    /// (`<first>-N.init.mp4`) is written and fsynced when it differs from the current one,
    /// then the splice and the cleared deadline are committed durably. A waiting recording
    /// whose deadline passed is finished instead, and `None` returned.
    pub fn resume_recording(
        &self,
        app: &str,
        stream: &str,
        seq: u64,
        init: &[u8],
    ) -> Result<Option<(PlaylistWriter, String, u64)>, StoreError> {
        let shared = &self.shared;
        let _g = shared.recordings_lock();
        let now = shared.clock.wall_ms();
        let waiting = shared.recordings()?.into_iter().find(|(_, e)| {
            !e.finished && e.deadline_ms.is_some() && e.app == app && e.stream == stream
        });
        let Some((key, mut e)) = waiting else {
            return Ok(None);
        };
        if e.deadline_ms.is_some_and(|d| d <= now) {
            shared.finish_recording(key, e)?;
            return Ok(None);
        }
        let path = shared.root.join(&e.playlist);
        let dir = parent(&path).to_path_buf();
        let text = fs::read_to_string(&path).map_err(|err| StoreError::io("read", &path, err))?;
        let listed_ms = hls::parse(&text).duration_ms;
        let same = fs::read(dir.join(&e.map)).is_ok_and(|cur| cur == init);
        let map = if same {
            None
        } else {
            Some(new_init(&dir, &e.playlist, init)?)
        };
        let lines = splice_lines(map.as_deref());
        if let Some(m) = &map {
            e.map = m.clone();
        }
        e.splices.push(Splice { seq, map });
        e.deadline_ms = None;
        shared.put_recording(key, Some(&e), true)?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|err| StoreError::io("open", &path, err))?;
        if !text.ends_with('\n') {
            // Recovery rewrote it whole before recording began; an append torn since (a
            // failed write) ends its line before the splice.
            file.write_all(b"\n")
                .map_err(|err| StoreError::io("append", &path, err))?;
        }
        tracing::info!(path = %e.playlist.display(), seq, new_map = !same, "stream back within its resume window: recording continues");
        let w = PlaylistWriter::new(file, path, e.playlist.clone(), key, self.shared.clone());
        Ok(Some((w, lines, listed_ms)))
    }

    /// Finish every recording whose resume window passed without its stream coming back
    /// (the daemon's timer, and recovery at startup). Returns their playlists.
    pub fn finish_expired(&self) -> Result<Vec<PathBuf>, StoreError> {
        let shared = &self.shared;
        let _g = shared.recordings_lock();
        let now = shared.clock.wall_ms();
        let mut done = Vec::new();
        for (key, e) in shared.recordings()? {
            if !e.finished && e.deadline_ms.is_some_and(|d| d <= now) {
                done.push(e.playlist.clone());
                shared.finish_recording(key, e)?;
            }
        }
        Ok(done)
    }
}

impl Store {
    /// Delete finished recordings whole (retention): for each of `keys`, unlink its playlist
    /// and fsync its directory — from then on nothing names its segments —, then its init
    /// sections; then the segment rows `ids` (its `.m4s` rows, and whatever else retention
    /// chose) by the **Delete** protocol; then drop the entries. A crash in between leaves
    /// segments no playlist names (recovery drops entries whose playlist is gone, and the
    /// next pass deletes the rows singly), never a playlist naming a deleted file. A
    /// recording not finished is left alone. Returns the bytes freed.
    pub fn delete_recordings(
        &self,
        keys: &[u64],
        ids: &[super::SegmentId],
    ) -> Result<u64, StoreError> {
        let shared = &self.shared;
        let mut freed = 0;
        let mut gone = Vec::new();
        {
            let _g = shared.recordings_lock();
            for &key in keys {
                let Some(e) = shared.recording(key)?.filter(|e| e.finished) else {
                    continue;
                };
                let path = shared.root.join(&e.playlist);
                let dir = parent(&path).to_path_buf();
                freed += fs::metadata(&path).map_or(0, |m| m.len());
                super::fsutil::remove_file(&path)?;
                fsync_dir(&dir)?;
                let head = fs::read_dir(&dir).ok();
                let stem = e
                    .playlist
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                let stem = stem
                    .as_deref()
                    .and_then(|n| n.strip_suffix(PLAYLIST_SUFFIX));
                // Its init sections: `<first>.init.mp4` and the splices' `<first>-N.init.mp4`.
                let inits = head.into_iter().flatten().flatten().filter(|d| {
                    let n = d.file_name().to_string_lossy().into_owned();
                    stem.is_some_and(|s| is_init_of(&n, s))
                });
                for d in inits {
                    freed += d.metadata().map_or(0, |m| m.len());
                    super::fsutil::remove_file(&d.path())?;
                }
                fsync_dir(&dir)?;
                gone.push(key);
            }
        }
        freed += self.delete(ids)?;
        for key in gone {
            shared.put_recording(key, None, false)?;
        }
        Ok(freed)
    }
}

/// Whether the file `name` is an init section of the recording whose playlist is
/// `<stem>.m3u8`.
fn is_init_of(name: &str, stem: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_suffix(INIT_SUFFIX))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Write `init` beside the playlist `rel` as `<first>-N.init.mp4` (the first free `N`),
/// fsync it and its directory; returns its file name.
fn new_init(dir: &Path, rel: &Path, init: &[u8]) -> Result<String, StoreError> {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(PLAYLIST_SUFFIX).unwrap_or(&name);
    for n in 1..1000u32 {
        let file = format!("{stem}-{n}{INIT_SUFFIX}");
        let path = dir.join(&file);
        if path.exists() {
            continue;
        }
        let mut f = create_new(&path)?;
        f.write_all(init)
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("write", &path, e))?;
        fsync_dir(dir)?;
        return Ok(file);
    }
    Err(StoreError::BadName {
        path: with_suffix(rel, ""),
        reason: "1000 init sections of that recording already exist".into(),
    })
}

impl PlaylistFile for PlaylistWriter {
    fn rel(&self) -> &Path {
        &self.rel
    }

    /// One `write`, then fdatasync. Entries only once their segment is durable.
    fn append(&mut self, text: &str) -> Result<(), SinkError> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| StoreError::io("append", &self.path, e).into())
    }

    /// `EXT-X-ENDLIST`, fdatasync, then the entry marked finished (volatile: a playlist
    /// that ends with ENDLIST is finished whatever the index says).
    fn finish(&mut self) -> Result<(), SinkError> {
        self.append(hls::ENDLIST)?;
        let _g = self.shared.recordings_lock();
        if let Some(mut e) = self.shared.recording(self.key)? {
            e.finished = true;
            e.deadline_ms = None;
            self.shared.put_recording(self.key, Some(&e), false)?;
        }
        Ok(())
    }

    /// The stream is gone: the recording waits `window` for it, the deadline committed
    /// durably (a restart within it continues the recording).
    fn suspend(&mut self, window: Duration) -> Result<(), SinkError> {
        let _g = self.shared.recordings_lock();
        let deadline = self.shared.clock.wall_ms() + window.as_millis() as i64;
        let Some(mut e) = self.shared.recording(self.key)? else {
            drop(_g);
            // Not registered (cannot happen short of a damaged index): finish it now.
            return self.finish();
        };
        e.deadline_ms = Some(deadline);
        self.shared.put_recording(self.key, Some(&e), true)?;
        tracing::info!(path = %e.playlist.display(), window = %humantime::format_duration(window), "stream gone: recording waits for it");
        Ok(())
    }
}

/// `Resumed` for the sink.
pub(super) fn resumed(r: (PlaylistWriter, String, u64)) -> Resumed {
    Resumed {
        playlist: Box::new(r.0),
        lines: r.1,
        listed_ms: r.2,
    }
}
