//! The I/O around the planners: which files of the index to play, their layouts, and the
//! bytes of a [`Piece`] list. Blocking (`std::fs`): call it off the async runtime.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Piece, PlaybackError, Recorded};
use crate::media::format::layout::read_layout;
use crate::media::format::Format;
use crate::storage::store::{SegmentRow, SegmentState};

/// The recorded fMP4 files of `stream` that overlap `[start_ms, end_ms)`, in recording
/// order (row id), with their layouts: the `fmp4` files when the stream has any there,
/// else its `hls` `.m4s` files. Only closed rows (a file being written is not played).
pub fn load(
    root: &Path,
    rows: &[SegmentRow],
    stream: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Recorded>, PlaybackError> {
    let mut rows: Vec<&SegmentRow> = rows
        .iter()
        .filter(|r| r.stream == stream && r.state == SegmentState::Closed)
        .filter(|r| r.start_ms < end_ms && r.end_ms > start_ms)
        .collect();
    rows.sort_by_key(|r| r.id);
    let pick = |format| -> Vec<(&SegmentRow, PathBuf)> {
        rows.iter()
            .filter_map(|r| {
                let f = r.files.iter().find(|f| f.format == format)?;
                Some((*r, f.path.clone()))
            })
            .collect()
    };
    let mut chosen = pick(Format::Fmp4);
    if chosen.is_empty() {
        chosen = pick(Format::Hls);
    }
    chosen
        .into_iter()
        .map(|(row, rel)| {
            let path = root.join(&rel);
            let file = File::open(&path).map_err(|source| PlaybackError::Io {
                path: path.clone(),
                source,
            })?;
            let layout = read_layout(std::io::BufReader::new(file)).map_err(|source| {
                PlaybackError::Format {
                    path: path.clone(),
                    source,
                }
            })?;
            Ok(Recorded {
                id: row.id,
                path,
                rel,
                start_ms: row.start_ms,
                bytes: row.bytes,
                layout,
            })
        })
        .collect()
}

/// Writes the bytes of `pieces` to `out`, reading the files with positional reads in
/// chunks; returns how many bytes were written.
pub fn write_pieces<W: Write>(pieces: &[Piece], out: &mut W) -> Result<u64, PlaybackError> {
    const CHUNK: u64 = 256 * 1024;
    let mut open: Option<(PathBuf, File)> = None;
    let mut buf = Vec::new();
    let mut written = 0;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PlaybackError::Io { path, source }
    };
    for piece in pieces {
        match piece {
            Piece::Owned(b) => {
                out.write_all(b).map_err(PlaybackError::Write)?;
                written += b.len() as u64;
            }
            Piece::File { path, offset, len } => {
                if open.as_ref().is_none_or(|(p, _)| p != path) {
                    open = Some((path.clone(), File::open(path).map_err(io(path))?));
                }
                let Some((_, file)) = &open else {
                    continue;
                };
                let mut at = *offset;
                let end = offset + len;
                while at < end {
                    let n = (end - at).min(CHUNK) as usize;
                    buf.resize(n, 0);
                    file.read_exact_at(&mut buf, at).map_err(io(path))?;
                    out.write_all(&buf).map_err(PlaybackError::Write)?;
                    at += n as u64;
                }
                written += len;
            }
        }
    }
    Ok(written)
}

/// The bytes of `pieces` in memory (tests, small ranges).
pub fn read_pieces(pieces: &[Piece]) -> Result<Vec<u8>, PlaybackError> {
    let mut out = Vec::new();
    write_pieces(pieces, &mut out)?;
    Ok(out)
}
