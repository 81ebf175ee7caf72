//! Resuming a suspended recording (the **Splice** steps of the store's durability protocol)
//! and deleting whole recordings (retention): the recordings table together with its
//! playlists' files. Also the store's side of the HLS sink's [`Playlists`] and
//! [`PlaylistFile`].

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::media::format::hls::{self, Recording};
use crate::media::sink::{PlaylistFile, Playlists, Resumed, SinkError};

use super::error::StoreError;
use super::fsutil::{fsync_dir, parent};
use super::playlist::{create_new, PlaylistWriter, INIT_SUFFIX, PLAYLIST_SUFFIX};
use super::recordings::{splice_lines, Splice};
use super::row::with_suffix;
use super::Store;

impl Store {
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
        self.shared.note_deadline(deadline);
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

impl Playlists for Store {
    fn open_playlist(
        &self,
        rel_base: &Path,
        init: &[u8],
        head: &dyn Fn(&str) -> String,
        rec: &Recording,
    ) -> Result<Box<dyn PlaylistFile>, SinkError> {
        Ok(Box::new(Store::open_playlist(
            self, rel_base, init, head, rec,
        )?))
    }

    fn resume_playlist(
        &self,
        app: &str,
        stream: &str,
        seq: u64,
        init: &[u8],
    ) -> Result<Option<Resumed>, SinkError> {
        Ok(self.resume_recording(app, stream, seq, init)?.map(resumed))
    }
}
