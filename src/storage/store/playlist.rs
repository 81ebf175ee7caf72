//! HLS playlists: an append-only text file per recording beside its media segments (see
//! [`crate::media::format::hls`] for what is in it). The order of writes is in the store's
//! durability protocol (module docs, **Playlist**).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::media::format::hls::{self, Recording};
use crate::media::format::{scan, Format};
use crate::media::sink::playlist_entry;

use super::error::StoreError;
use super::fsutil::{self, fsync_dir, parent};
use super::recordings::RecordingEntry;
use super::row::{with_suffix, SegmentRow, SegmentState};
use super::{Shared, Store};

/// Extension of playlists.
pub const PLAYLIST_SUFFIX: &str = ".m3u8";
/// Suffix of a recording's init section.
pub const INIT_SUFFIX: &str = ".init.mp4";
/// Suffix of a playlist's rewrite before its rename.
const TMP_SUFFIX: &str = ".m3u8.tmp";

/// An open playlist: entries are appended as segments close, ENDLIST when it finishes
/// ([`PlaylistFile`](crate::media::sink::PlaylistFile), implemented in `splice.rs` with the
/// recording's table entry).
pub struct PlaylistWriter {
    pub(super) file: File,
    /// Absolute path.
    pub(super) path: PathBuf,
    /// Relative to the root.
    pub(super) rel: PathBuf,
    /// Its entry in the recordings table.
    pub(super) key: u64,
    pub(super) shared: Arc<Shared>,
}

impl PlaylistWriter {
    pub(super) fn new(
        file: File,
        path: PathBuf,
        rel: PathBuf,
        key: u64,
        shared: Arc<Shared>,
    ) -> Self {
        PlaylistWriter {
            file,
            path,
            rel,
            key,
            shared,
        }
    }
}

impl std::fmt::Debug for PlaylistWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaylistWriter")
            .field("rel", &self.rel)
            .field("key", &self.key)
            .finish()
    }
}

impl Store {
    /// Open a new recording's playlist at `<rel_base>.m3u8` (or `-1`, `-2`, ... when taken),
    /// with its init section at `<same>.init.mp4`: init written and fsynced, then the
    /// playlist created with its head and fdatasynced, then the directory fsynced (see the
    /// protocol), then its entry in the recordings table committed (volatile). `head`
    /// renders the head from the init file's name.
    pub fn open_playlist(
        &self,
        rel_base: &Path,
        init: &[u8],
        head: &dyn Fn(&str) -> String,
        rec: &Recording,
    ) -> Result<PlaylistWriter, StoreError> {
        let shared = &self.shared;
        for n in 0..1000u32 {
            let base = if n == 0 {
                rel_base.to_path_buf()
            } else {
                with_suffix(rel_base, &format!("-{n}"))
            };
            let rel = with_suffix(&base, PLAYLIST_SUFFIX);
            let rel_init = with_suffix(&base, INIT_SUFFIX);
            let (path, init_path) = (shared.root.join(&rel), shared.root.join(&rel_init));
            if path.exists() || init_path.exists() {
                continue;
            }
            fsutil::create_dirs(parent(&path))
                .map_err(|e| StoreError::io("create directory", parent(&path), e))?;
            let mut f = create_new(&init_path)?;
            f.write_all(init)
                .and_then(|()| f.sync_all())
                .map_err(|e| StoreError::io("write", &init_path, e))?;
            let mut file = create_new(&path)?;
            let name = file_name(&rel_init);
            file.write_all(head(&name).as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| StoreError::io("write", &path, e))?;
            fsync_dir(parent(&path))?;
            let key = self.add_recording(&RecordingEntry {
                playlist: rel.clone(),
                app: rec.app.clone(),
                stream: rec.stream.clone(),
                first_seq: rec.first_seq,
                map: name,
                splices: Vec::new(),
                deadline_ms: None,
                finished: false,
            })?;
            return Ok(PlaylistWriter::new(
                file,
                path,
                rel,
                key,
                self.shared.clone(),
            ));
        }
        Err(StoreError::BadName {
            path: rel_base.to_path_buf(),
            reason: "1000 playlists of that name already exist".into(),
        })
    }
}

pub(super) fn create_new(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))
}

fn file_name(rel: &Path) -> String {
    rel.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Recovery step 6: every playlist without `EXT-X-ENDLIST` is rewritten from the index
/// (its recording's closed `.m4s` rows, each file scanned for where its fragments begin,
/// with its splices from the recordings table) and finished, unless it waits for its
/// stream (a deadline not passed yet), which is rewritten the same way but left open;
/// leftover rewrites (`.m3u8.tmp`) and init sections without their playlist are removed,
/// and so are table entries whose playlist is gone. Returns the playlists repaired.
pub(super) fn recover_playlists(shared: &Shared) -> Result<u64, StoreError> {
    let files = fsutil::walk(&shared.root)?;
    let mut playlists = Vec::new();
    for rel in &files {
        let name = rel.to_string_lossy();
        if name.ends_with(TMP_SUFFIX) {
            fsutil::remove_file(&shared.root.join(rel))?;
            fsync_dir(parent(&shared.root.join(rel)))?;
        } else if let Some(base) = name.strip_suffix(INIT_SUFFIX) {
            // A splice's init (`<first>-N.init.mp4`) belongs to `<first>.m3u8`.
            let first = base
                .rsplit_once('-')
                .filter(|(_, n)| n.parse::<u32>().is_ok())
                .map(|(b, _)| b);
            let has = |b: &str| shared.root.join(format!("{b}{PLAYLIST_SUFFIX}")).exists();
            if first.is_some_and(has) {
                continue;
            }
            let pl = shared.root.join(format!("{base}{PLAYLIST_SUFFIX}"));
            if !pl.exists() {
                // A crash between the init's write and the playlist's creation.
                fsutil::remove_file(&shared.root.join(rel))?;
                fsync_dir(parent(&pl))?;
            }
        } else if name.ends_with(PLAYLIST_SUFFIX) {
            let path = shared.root.join(rel);
            let text = fs::read_to_string(&path).map_err(|e| StoreError::io("read", &path, e))?;
            playlists.push((rel.clone(), hls::parse(&text)));
        }
    }
    // Each stream's recordings in order, so a recording ends where the next begins.
    let mut firsts: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for (_, p) in &playlists {
        if let Some(r) = &p.recording {
            firsts
                .entry((r.app.clone(), r.stream.clone()))
                .or_default()
                .push(r.first_seq);
        }
    }
    let rows: Vec<SegmentRow> = shared
        .index
        .all()?
        .into_iter()
        .filter(|r| r.state == SegmentState::Closed && r.formats.contains(&Format::Hls))
        .collect();
    let now = shared.clock.wall_ms();
    let mut entries: HashMap<PathBuf, (u64, RecordingEntry)> = HashMap::new();
    for (key, e) in shared.recordings()? {
        if shared.root.join(&e.playlist).exists() {
            entries.insert(e.playlist.clone(), (key, e));
        } else {
            shared.put_recording(key, None, false)?;
        }
    }
    let mut repaired = 0;
    for (rel, p) in &playlists {
        let entry = entries.get(rel);
        if p.finished {
            if let Some((key, e)) = entry.filter(|(_, e)| !e.finished) {
                // Its finish's volatile commit was lost.
                let e = RecordingEntry {
                    finished: true,
                    deadline_ms: None,
                    ..e.clone()
                };
                shared.put_recording(*key, Some(&e), false)?;
            }
            continue;
        }
        let Some(rec) = &p.recording else {
            tracing::warn!(path = %rel.display(), "playlist without edgerec's recording line; left alone");
            continue;
        };
        let next = firsts[&(rec.app.clone(), rec.stream.clone())]
            .iter()
            .copied()
            .filter(|s| *s > rec.first_seq)
            .min()
            .unwrap_or(u64::MAX);
        let deadline = entry.and_then(|(_, e)| e.deadline_ms).filter(|d| *d > now);
        let waits = deadline.is_some();
        if let Some(d) = deadline {
            shared.note_deadline(d);
        }
        let kept = rewrite(shared, rel, p, rec, next, &rows, entry, !waits)?;
        if let Some((key, e)) = entry {
            let e = RecordingEntry {
                finished: !waits,
                deadline_ms: e.deadline_ms.filter(|_| waits),
                ..e.clone()
            };
            shared.put_recording(*key, kept.then_some(&e), false)?;
        }
        repaired += 1;
    }
    Ok(repaired)
}

/// Rewrite the playlist `rel` with the rows of its recording (seq in `first_seq..next`,
/// an `EXT-X-DISCONTINUITY` and maybe `EXT-X-MAP` where `entry` says a splice began),
/// finished if `finish`: tmp, fsync, rename, fsync the directory. A recording without any
/// segment is removed with its init sections instead (returns false).
#[allow(clippy::too_many_arguments)]
fn rewrite(
    shared: &Shared,
    rel: &Path,
    p: &hls::Parsed,
    rec: &Recording,
    next: u64,
    rows: &[SegmentRow],
    entry: Option<&(u64, RecordingEntry)>,
    finish: bool,
) -> Result<bool, StoreError> {
    let mut mine: Vec<&SegmentRow> = rows
        .iter()
        .filter(|r| r.app == rec.app && r.stream == rec.stream)
        .filter(|r| r.seq >= rec.first_seq && r.seq < next)
        .collect();
    mine.sort_by_key(|r| r.seq);
    let map = p.map_uri.clone().unwrap_or_default();
    let mut text = hls::head(p.target_s.unwrap_or(1), &map, rec);
    let mut entries = 0;
    let mut prev = None;
    for row in mine {
        let Some(f) = row.files.iter().find(|f| f.format == Format::Hls) else {
            continue;
        };
        let path = shared.root.join(&f.path);
        let scanned = File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|file| scan::scan(std::io::BufReader::new(file)).map_err(|e| e.to_string()));
        let head_len = match scanned {
            Ok(s) => s.init_end,
            Err(reason) => {
                // Left out rather than listed unreadable; the row and file stay.
                tracing::warn!(path = %f.path.display(), %reason, "segment unreadable; left out of its playlist");
                continue;
            }
        };
        if let Some(e) = playlist_entry(rel, row, head_len) {
            if let Some((_, rec_entry)) = entry {
                text += &rec_entry.lines_before(row.seq, prev);
            }
            text += &hls::entry(&e);
            entries += 1;
            prev = Some(row.seq);
        }
    }
    let path = shared.root.join(rel);
    if entries == 0 {
        // Nothing was recorded into it (a crash before its first segment had a complete
        // fragment): an empty playlist plays nowhere, so it goes with its init section.
        fsutil::remove_file(&path)?;
        // Only an init section of ours beside it (the name is read from the file).
        let ours = |m: &&String| !m.contains('/') && m.ends_with(INIT_SUFFIX);
        let spliced = entry.into_iter().flat_map(|(_, e)| &e.splices);
        let maps = p
            .map_uri
            .iter()
            .chain(spliced.filter_map(|s| s.map.as_ref()));
        for m in maps.filter(ours) {
            fsutil::remove_file(&parent(&path).join(m))?;
        }
        fsync_dir(parent(&path))?;
        tracing::info!(path = %rel.display(), "unfinished playlist without any segment removed");
        return Ok(false);
    }
    if finish {
        text += hls::ENDLIST;
    }
    let tmp = with_suffix(&path, ".tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io("create", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    fsutil::rename(&tmp, &path)?;
    fsync_dir(parent(&path))?;
    if finish {
        tracing::info!(path = %rel.display(), "unfinished playlist rewritten from the index and finished");
    } else {
        tracing::info!(path = %rel.display(), "playlist rewritten from the index; it waits for its stream");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sink::PlaylistFile;

    fn rec() -> Recording {
        Recording {
            app: String::new(),
            stream: "cam".into(),
            first_seq: 0,
        }
    }

    #[test]
    fn recovery_removes_an_unfinished_recording_without_segments_and_its_init() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let head = |map: &str| hls::head(5, map, &rec());
        let w = store
            .open_playlist(Path::new("cam/a"), b"init", &head, &rec())
            .unwrap();
        assert_eq!(w.rel(), Path::new("cam/a.m3u8"));
        // The name is taken now: the next recording of that name gets `-1`.
        let w2 = store
            .open_playlist(Path::new("cam/a"), b"init", &head, &rec())
            .unwrap();
        assert_eq!(w2.rel(), Path::new("cam/a-1.m3u8"));
        drop((w, w2));
        // A leftover rewrite and an init whose playlist was never created go too.
        fs::write(dir.path().join("cam/b.m3u8.tmp"), "x").unwrap();
        fs::write(dir.path().join("cam/c.init.mp4"), "x").unwrap();
        let report = store.recover(0).unwrap();
        assert_eq!(report.playlists_repaired, 2);
        let left: Vec<_> = fs::read_dir(dir.path().join("cam"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_finished_playlist_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let head = |map: &str| hls::head(5, map, &rec());
        let mut w = store
            .open_playlist(Path::new("a"), b"init", &head, &rec())
            .unwrap();
        w.append(hls::ENDLIST).unwrap();
        let before = fs::read(dir.path().join("a.m3u8")).unwrap();
        assert_eq!(store.recover(0).unwrap().playlists_repaired, 0);
        assert_eq!(fs::read(dir.path().join("a.m3u8")).unwrap(), before);
        assert!(dir.path().join("a.init.mp4").exists());
    }
}
