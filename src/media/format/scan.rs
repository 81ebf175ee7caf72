//! The scanner: what is in one of our MP4 files, and where its last complete fragment ends.
//!
//! Crash recovery uses [`scan`] to truncate a torn fMP4 back to its last complete
//! `moof`+`mdat` pair; index rebuild uses it to read a file's [`SegmentMeta`] and duration
//! without any index. It reads box headers and the small `moov`/`moof` boxes only, never the
//! media, and trusts nothing: a file truncated anywhere, zero-filled, or full of random bytes
//! gives a result (or an error), never a panic.

use std::io::{Read, Seek, SeekFrom};

use mp4_atom::{Moov, Trex};

use super::boxes::{io_at, read_atom, read_body, read_fragment, read_header, BoxHeader, Found};
use super::fmp4::META_UUID;
use super::FormatError;
use crate::media::segment::event::SegmentMeta;

/// Largest metadata payload read from the `uuid` box.
const MAX_META_BYTES: u64 = 64 * 1024;
/// Largest `moov` read into memory (a 2 h progressive file's moov is a few MB).
const MAX_MOOV_BYTES: u64 = 256 * 1024 * 1024;

/// What [`scan`] found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileScan {
    /// The segment metadata from our `uuid` box, if present and readable.
    pub meta: Option<SegmentMeta>,
    /// End offset of the `moov` box (0 if the file has no complete `moov`).
    pub init_end: u64,
    /// End offset of the last complete `moof`+`mdat` pair; the init end for an fMP4 without
    /// complete fragments; the `mdat` end for a progressive file. Everything after it is torn
    /// or foreign and can be cut off.
    pub complete_end: u64,
    /// Number of complete fragments.
    pub fragments: u32,
    /// Media duration up to `complete_end`, from the first video track (else the first
    /// track), in milliseconds.
    pub duration_ms: u64,
    /// Length of the file.
    pub file_len: u64,
}

/// The track whose timeline gives the duration.
struct Timeline {
    track_id: u32,
    timescale: u32,
    /// Decode-time end so far, in `timescale` ticks.
    end: u64,
    /// Decode time of the first fragment (an HLS segment's starts where the previous one
    /// of its recording ended; an fMP4's at 0).
    start: Option<u64>,
}

/// Scans one of our MP4 files (fragmented or progressive).
///
/// Errors only when reading fails or when the file is not an MP4 at all (it does not start
/// with `ftyp`); an empty or torn file is a normal result with `complete_end` at the last
/// usable byte.
pub fn scan<R: Read + Seek>(mut r: R) -> Result<FileScan, FormatError> {
    let file_len = r.seek(SeekFrom::End(0)).map_err(io_at(0))?;
    let mut out = FileScan {
        meta: None,
        init_end: 0,
        complete_end: 0,
        fragments: 0,
        duration_ms: 0,
        file_len,
    };
    check_starts_with_ftyp(&mut r, file_len)?;

    let mut timeline: Option<Timeline> = None;
    let mut trex: Vec<Trex> = Vec::new();
    let mut fragmented = false;
    let mut at = 0;
    while let Found::Box(h) = read_header(&mut r, at, file_len)? {
        match &h.kind {
            b"uuid" if out.meta.is_none() => out.meta = read_meta(&mut r, &h)?,
            b"moov" => {
                let Some(moov) = read_atom::<Moov, _>(&mut r, &h, MAX_MOOV_BYTES)? else {
                    break;
                };
                out.init_end = h.end();
                out.complete_end = out.complete_end.max(h.end());
                fragmented = moov.mvex.is_some();
                trex = moov
                    .mvex
                    .as_ref()
                    .map(|m| m.trex.clone())
                    .unwrap_or_default();
                timeline = pick_timeline(&moov);
            }
            b"moof" => {
                let Some(tl) = timeline.as_mut().filter(|_| fragmented) else {
                    break; // a fragment without an init: nothing after it is usable
                };
                let Some(mdat_end) = complete_fragment(&mut r, &h, file_len, &trex, tl)? else {
                    break;
                };
                out.fragments += 1;
                out.complete_end = mdat_end;
                at = mdat_end;
                continue;
            }
            b"mdat" => {
                if fragmented || timeline.is_none() {
                    break; // media without a moof (or before any moov) is not ours
                }
                out.complete_end = h.end();
            }
            _ => {}
        }
        at = h.end();
    }

    if let Some(tl) = timeline.filter(|t| t.timescale > 0) {
        let len = tl.end.saturating_sub(tl.start.unwrap_or(0));
        out.duration_ms = (u128::from(len) * 1000 / u128::from(tl.timescale)) as u64;
    }
    Ok(out)
}

/// Refuses a file whose first box is not `ftyp` (a file shorter than a header is fine: it
/// is an empty or torn file).
fn check_starts_with_ftyp<R: Read + Seek>(r: &mut R, file_len: u64) -> Result<(), FormatError> {
    if file_len < 8 {
        return Ok(());
    }
    let mut head = [0u8; 8];
    r.seek(SeekFrom::Start(0)).map_err(io_at(0))?;
    r.read_exact(&mut head).map_err(io_at(0))?;
    if &head[4..] != b"ftyp" {
        return Err(FormatError::Malformed {
            offset: 0,
            reason: format!(
                "first box is {:?}, not ftyp",
                String::from_utf8_lossy(&head[4..])
            ),
        });
    }
    Ok(())
}

/// The metadata in a `uuid` box, if it is ours and parses.
fn read_meta<R: Read + Seek>(r: &mut R, h: &BoxHeader) -> Result<Option<SegmentMeta>, FormatError> {
    if h.body_len() < 16 {
        return Ok(None);
    }
    let Some(body) = read_body(r, h, MAX_META_BYTES)? else {
        return Ok(None);
    };
    if body[..16] != META_UUID {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&body[16..]).ok())
}

/// The first video track (else the first track), with its duration from `mdhd` (which is 0
/// in an fMP4 init and the whole duration in a progressive file).
fn pick_timeline(moov: &Moov) -> Option<Timeline> {
    let trak = moov
        .trak
        .iter()
        .find(|t| t.mdia.hdlr.handler == b"vide".into())
        .or(moov.trak.first())?;
    Some(Timeline {
        track_id: trak.tkhd.track_id,
        timescale: trak.mdia.mdhd.timescale,
        end: trak.mdia.mdhd.duration,
        start: None,
    })
}

/// Advances the timeline over the complete fragment whose `moof` is `h`; returns the
/// `mdat` end, or `None` if the fragment is torn.
fn complete_fragment<R: Read + Seek>(
    r: &mut R,
    h: &BoxHeader,
    file_len: u64,
    trex: &[Trex],
    tl: &mut Timeline,
) -> Result<Option<u64>, FormatError> {
    let Some(frag) = read_fragment(r, h, file_len, trex)? else {
        return Ok(None);
    };
    for t in frag.tracks.iter().filter(|t| t.track_id == tl.track_id) {
        let start = t.base_decode_time.unwrap_or(tl.end);
        tl.start.get_or_insert(start);
        tl.end = tl.end.max(start.saturating_add(t.duration()));
    }
    Ok(Some(frag.end))
}

#[cfg(all(test, feature = "process-tests"))]
#[path = "scan_tests.rs"]
mod tests;
