//! The HLS playlist a stream's recording is in, for the record endpoints' `playlist`.
//!
//! A playlist has no index row (see the store's **Playlist** protocol): it is
//! `<first base>.m3u8`, named after the first segment of its recording, and its `#EDGEREC:`
//! line says whose recording it is and from which sequence number. So the stream's newest
//! HLS segment in the index is taken, and the playlists beside it (and beside its
//! predecessors, for a recording that crossed into a new directory) are read for the one
//! holding it. Blocking file reads: call off the async runtime.

use std::path::{Path, PathBuf};

use crate::config::format::Format;
use crate::media::format::hls;
use crate::storage::store::{SegmentState, Store, PLAYLIST_SUFFIX};

/// Directories looked in, newest segment's first.
const MAX_DIRS: usize = 3;

/// The playlist (relative to the storage root) holding `stream`'s newest HLS segment, or
/// `None` when the stream has no HLS segment in the index.
pub fn latest(store: &Store, stream: &str) -> Option<PathBuf> {
    let mut rows: Vec<_> = store
        .segments()
        .ok()?
        .into_iter()
        .filter(|r| r.stream == stream && r.state != SegmentState::Deleting)
        .filter(|r| r.formats.contains(&Format::Hls))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.seq));
    let newest = rows.first()?.seq;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for r in &rows {
        let dir = r.base.parent().map(Path::to_path_buf).unwrap_or_default();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
        if dirs.len() == MAX_DIRS {
            break;
        }
    }
    dirs.iter()
        .filter_map(|d| holding(store.root(), d, stream, newest))
        .max_by_key(|(first, _)| *first)
        .map(|(_, p)| p)
}

/// The playlist in `dir` (relative to `root`) of `stream` whose recording starts last at or
/// before `seq`: its first sequence number and path.
fn holding(root: &Path, dir: &Path, stream: &str, seq: u64) -> Option<(u64, PathBuf)> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(root.join(dir)).ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(PLAYLIST_SUFFIX) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(rec) = hls::parse(&text).recording else {
            continue;
        };
        if rec.stream == stream
            && rec.first_seq <= seq
            && best.as_ref().is_none_or(|(f, _)| rec.first_seq > *f)
        {
            best = Some((rec.first_seq, dir.join(&name)));
        }
    }
    best
}
