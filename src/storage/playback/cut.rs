//! One MP4 cut on key frames: the first file's init section, then the fragments of
//! consecutive files, each `moof` rewritten so the decode times run on.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;

use super::{spans, PlaybackError, Recorded};
use crate::media::format::layout::FragmentInfo;

/// A piece of a [`VirtualFile`]: a byte range of a recorded file, or bytes made for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    Owned(Bytes),
}

impl Piece {
    pub fn len(&self) -> u64 {
        match self {
            Piece::File { len, .. } => *len,
            Piece::Owned(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part `[from, to)` of this piece (offsets within it).
    fn sub(&self, from: u64, to: u64) -> Piece {
        match self {
            Piece::File { path, offset, .. } => Piece::File {
                path: path.clone(),
                offset: offset + from,
                len: to - from,
            },
            Piece::Owned(b) => Piece::Owned(b.slice(from as usize..to as usize)),
        }
    }
}

/// A file that exists as a list of pieces: what [`mp4_cut`] plans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualFile {
    pieces: Vec<Piece>,
    len: u64,
    etag: String,
    /// Wall-clock span the cut covers, ms since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
}

impl VirtualFile {
    /// Total length in bytes (`Content-Length` of a whole answer).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A strong `ETag` (quoted): the same for the same files (row ids and sizes) and the
    /// same cut, different when a file was rewritten or the cut moved.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The pieces that make the bytes `range` of the file (clamped to its length).
    pub fn read_range(&self, range: Range<u64>) -> Vec<Piece> {
        let (from, to) = (range.start, range.end.min(self.len));
        let mut out = Vec::new();
        let mut at = 0;
        for p in &self.pieces {
            let (a, b) = (at, at + p.len());
            at = b;
            if b <= from || a >= to {
                continue;
            }
            out.push(p.sub(from.max(a) - a, to.min(b) - a));
        }
        out
    }
}

/// One fragmented MP4 of `files` (one stream's, in recording order) from the key frame at
/// or before `start_ms` to the end of the fragment that covers `start_ms + duration_ms`.
///
/// It stops before the first file whose codec parameters differ from the first file's
/// (one init section cannot describe both). A gap between sessions is closed up: the
/// decode times run on without it. Each `.mp4` starts its own timeline at 0, so every
/// `moof` is copied with its `tfdt`s moved to continue the previous fragment's track (and
/// its `mfhd` sequence number renumbered); the `mdat`s are byte ranges of the files.
pub fn mp4_cut(
    files: &[Recorded],
    start_ms: i64,
    duration_ms: u64,
) -> Result<VirtualFile, PlaybackError> {
    let end_ms = start_ms.saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX));
    let mut spans = spans(files, start_ms, end_ms)?;
    let key = spans[0].file.layout.init_key;
    if let Some(n) = spans.iter().position(|s| s.file.layout.init_key != key) {
        spans.truncate(n);
    }
    let first = spans[0].file;
    let mut pieces = vec![Piece::File {
        path: first.path.clone(),
        offset: 0,
        len: first.layout.init_len,
    }];
    let mut tag = ring::digest::Context::new(&ring::digest::SHA256);
    let mut next_out: HashMap<u32, u64> = HashMap::new();
    let mut sequence = 0u32;
    for span in &spans {
        let file = span.file;
        tag.update(format!("{}:{}:{:?};", file.id, file.bytes, span.frags).as_bytes());
        let mut shift: HashMap<u32, i128> = HashMap::new();
        for frag in &file.layout.fragments[span.frags.clone()] {
            sequence += 1;
            let moof = moved_moof(file, frag, sequence, &mut shift, &mut next_out)?;
            let moof_len = moof.len() as u64;
            pieces.push(Piece::Owned(moof));
            pieces.push(Piece::File {
                path: file.path.clone(),
                offset: frag.offset + moof_len,
                len: frag.end - frag.offset - moof_len,
            });
        }
    }
    let last = spans.last().unwrap_or(&spans[0]);
    let digest = tag.finish();
    Ok(VirtualFile {
        len: pieces.iter().map(Piece::len).sum(),
        pieces,
        etag: format!("\"{}\"", hex(&digest.as_ref()[..16])),
        start_ms: spans[0].start_ms(),
        end_ms: last.start_ms() + (last.seconds() * 1000.0).round() as i64,
    })
}

/// `frag`'s `moof` with sequence number `sequence` and every track's `tfdt` moved by the
/// file's shift for that track (fixed at the track's first fragment in the file, so that
/// it starts where the track ended in the cut so far).
fn moved_moof(
    file: &Recorded,
    frag: &FragmentInfo,
    sequence: u32,
    shift: &mut HashMap<u32, i128>,
    next_out: &mut HashMap<u32, u64>,
) -> Result<Bytes, PlaybackError> {
    let fail = |reason: &str| PlaybackError::Rewrite {
        path: file.path.clone(),
        offset: frag.offset,
        reason: reason.to_string(),
    };
    let mut moof = frag.moof.to_vec();
    // moof header (8), mfhd header (8), version and flags (4), then the sequence number.
    if moof.get(12..16) != Some(b"mfhd".as_slice()) || moof.len() < 24 {
        return Err(fail("no mfhd at the start of the moof"));
    }
    moof[20..24].copy_from_slice(&sequence.to_be_bytes());
    for t in &frag.trafs {
        let base = i128::from(*next_out.get(&t.track_id).unwrap_or(&0));
        let s = *shift
            .entry(t.track_id)
            .or_insert(base - i128::from(t.decode_time));
        let out = u64::try_from(i128::from(t.decode_time) + s)
            .map_err(|_| fail("a decode time before the cut's start"))?;
        let at = t.tfdt_at;
        match moof.get(at) {
            Some(1) if moof.len() >= at + 12 => {
                moof[at + 4..at + 12].copy_from_slice(&out.to_be_bytes());
            }
            Some(0) if moof.len() >= at + 8 => {
                let v = u32::try_from(out).map_err(|_| fail("a 32-bit tfdt overflows"))?;
                moof[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
            }
            _ => return Err(fail("a tfdt of unknown version")),
        }
        next_out.insert(t.track_id, out + t.duration);
    }
    Ok(Bytes::from(moof))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
