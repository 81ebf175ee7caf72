//! Playback of what is recorded, without copying it: an HLS VOD playlist of byte ranges into
//! the recorded fMP4 files ([`vod_m3u8`]), and one MP4 cut on key frames made of byte ranges
//! of those files and a few rewritten `moof` boxes ([`mp4_cut`], a [`VirtualFile`] that
//! answers HTTP `Range` requests). `docs/playback.md` describes what they produce and why.
//!
//! The planners are pure: they take [`Recorded`] files (an index row's id, path, wall-clock
//! start and size, with the file's [`FileLayout`]) and return text or a list of [`Piece`]s.
//! The thin I/O around them is in [`read`]: [`read::load`] picks a stream's rows from the
//! index and reads each file's layout (box headers and `moof`s only), and
//! [`read::write_pieces`] turns pieces into bytes with positional reads. The HTTP server and
//! `edgerec export` call the same three steps.
//!
//! Why in `storage`: playback reads the store's rows and files and nothing else; it needs no
//! command, task or connection, so it sits at the lowest layer that has the rows and any
//! layer above (the HTTP API in `control`, the CLI in `app`) can call it.
//!
//! Which files: the `.mp4` of `fmp4` (preferred) or, when a stream records only `hls`, the
//! `.m4s`. Both are whole fMP4s (init, then `moof`+`mdat` fragments). Progressive `mp4`, FLV
//! and AAC files are not played.

use std::ops::Range;
use std::path::PathBuf;

use crate::media::format::layout::FileLayout;
use crate::media::format::FormatError;
use crate::storage::store::SegmentId;

mod cut;
mod range;
pub mod read;
mod vod;

pub use cut::{mp4_cut, Piece, VirtualFile};
pub use range::{resolve_range, RangeReply};
pub use vod::vod_m3u8;

/// One recorded fMP4 file, as the planners need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Its index row.
    pub id: SegmentId,
    /// Where to read it (the store root joined with the row's file path).
    pub path: PathBuf,
    /// The path relative to the store root (what a playlist beside the root names).
    pub rel: PathBuf,
    /// Wall-clock time of its first frame, ms since the Unix epoch (the row's `start_ms`).
    pub start_ms: i64,
    /// Its size in bytes (part of the ETag: a rewritten file changes it).
    pub bytes: u64,
    pub layout: FileLayout,
}

/// Errors of playback: nothing to play, or a file that cannot be read or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum PlaybackError {
    /// No fragment of any recorded file lies in the range.
    #[error("nothing recorded between {start_ms} and {end_ms} (ms since the Unix epoch); `edgerec segments` lists what is recorded")]
    Empty { start_ms: i64, end_ms: i64 },
    /// The range is empty or reversed.
    #[error("the end ({end_ms}) must be after the start ({start_ms})")]
    BadRange { start_ms: i64, end_ms: i64 },
    /// A recorded file is not a readable fMP4.
    #[error("{}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// Reading a recorded file failed (deleted by retention meanwhile, a disk error).
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed (the client went away, the disk is full).
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
    /// A fragment cannot be moved to its place in the cut (a 32-bit `tfdt` overflows, or
    /// the `moof` lacks a box it must have).
    #[error("{}: the fragment at offset {offset} cannot be rewritten: {reason}", path.display())]
    Rewrite {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// A run of consecutive fragments of one file that the range asks for.
#[derive(Clone, Debug)]
pub(crate) struct Span<'a> {
    pub file: &'a Recorded,
    pub frags: Range<usize>,
}

impl Span<'_> {
    /// Decode time (timeline track ticks) where the span starts and ends.
    pub fn decode_range(&self) -> (u64, u64) {
        let l = &self.file.layout;
        let times = decode_times(l);
        (times[self.frags.start].0, times[self.frags.end - 1].1)
    }

    /// Wall-clock start of the span, ms since the epoch.
    pub fn start_ms(&self) -> i64 {
        self.file.start_ms + self.file.layout.ms_since_first(self.decode_range().0)
    }

    /// Its duration in seconds.
    pub fn seconds(&self) -> f64 {
        let (a, b) = self.decode_range();
        (b - a) as f64 / f64::from(self.file.layout.timescale.max(1))
    }

    /// Byte range of its fragments in the file.
    pub fn bytes(&self) -> Range<u64> {
        let f = &self.file.layout.fragments;
        f[self.frags.start].offset..f[self.frags.end - 1].end
    }
}

/// Per fragment: its start and end on the timeline track, in ticks. A fragment without a
/// sample of that track (audio only) spans no time, at the previous one's end.
fn decode_times(l: &FileLayout) -> Vec<(u64, u64)> {
    let mut at = l.first_decode_time();
    l.fragments
        .iter()
        .map(|f| match f.traf(l.timeline_track) {
            Some(t) => {
                at = t.decode_time + t.duration;
                (t.decode_time, at)
            }
            None => (at, at),
        })
        .collect()
}

/// The fragments of `files` (in recording order) that overlap `[start_ms, end_ms)`, each
/// file's run widened back to the key frame at or before its start (forward to the first
/// key frame when the file has none before it), so every span decodes on its own.
pub(crate) fn spans(
    files: &[Recorded],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Span<'_>>, PlaybackError> {
    if end_ms <= start_ms {
        return Err(PlaybackError::BadRange { start_ms, end_ms });
    }
    let mut out = Vec::new();
    for file in files {
        let l = &file.layout;
        let wall = |ticks| file.start_ms + l.ms_since_first(ticks);
        let times = decode_times(l);
        let overlapping: Vec<usize> = (0..times.len())
            .filter(|&i| wall(times[i].0) < end_ms && wall(times[i].1) > start_ms)
            .collect();
        let (Some(&first), Some(&last)) = (overlapping.first(), overlapping.last()) else {
            continue;
        };
        let key = (0..=first)
            .rev()
            .find(|&i| l.fragments[i].keyframe)
            .or_else(|| (first..=last).find(|&i| l.fragments[i].keyframe));
        if let Some(key) = key {
            out.push(Span {
                file,
                frags: key..last + 1,
            });
        }
    }
    if out.is_empty() {
        return Err(PlaybackError::Empty { start_ms, end_ms });
    }
    Ok(out)
}

/// Whether `next` cannot follow `prev` on one timeline behind one init section: other codec
/// parameters, or decode times that do not continue (every `.mp4` starts at 0; the `.m4s`
/// of one HLS recording continue each other; a gap between sessions restarts them).
pub(crate) fn discontinuous(prev: &Span<'_>, next: &Span<'_>) -> bool {
    prev.file.layout.init_key != next.file.layout.init_key
        || prev.decode_range().1 != next.decode_range().0
}

#[cfg(test)]
mod tests;
