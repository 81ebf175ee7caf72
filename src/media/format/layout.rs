//! Where the pieces of one of our fMP4 files are: the init section, and each complete
//! `moof`+`mdat` fragment with its decode times, whether it starts on a key frame, and where
//! its `tfdt` values sit inside the `moof` (so a copy can move the fragment in time by
//! rewriting a few bytes, without touching the media).
//!
//! Playback ([`crate::storage::playback`]) plans byte ranges from this and never reads the
//! media. Like [`super::scan`], it reads box headers and the small `moov`/`moof` boxes only,
//! and trusts nothing: a torn tail ends the list of fragments.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use mp4_atom::{Moov, Trex};

use super::boxes::{io_at, is_sync, read_atom, read_fragment, read_header, BoxHeader, Found};
use super::FormatError;

/// Largest `moov` read (an fMP4 init is a few KB).
const MAX_MOOV_BYTES: u64 = 16 * 1024 * 1024;

/// One track's part of a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafInfo {
    pub track_id: u32,
    /// `tfdt` (base media decode time), in the track's timescale.
    pub decode_time: u64,
    /// Sum of its sample durations, in the track's timescale.
    pub duration: u64,
    /// Offset of the `tfdt` box's body (its version byte) from the start of the `moof`.
    pub tfdt_at: usize,
}

/// One complete `moof`+`mdat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentInfo {
    /// File offset of the `moof`.
    pub offset: u64,
    /// The `moof` box, header included (a few hundred bytes to a few KB).
    pub moof: Bytes,
    /// File offset just past the `mdat`.
    pub end: u64,
    /// Whether the first sample of the timeline track is a sync sample (a key frame).
    pub keyframe: bool,
    pub trafs: Vec<TrafInfo>,
}

impl FragmentInfo {
    /// The traf of `track_id`, if the fragment has samples of it.
    pub fn traf(&self, track_id: u32) -> Option<&TrafInfo> {
        self.trafs.iter().find(|t| t.track_id == track_id)
    }
}

/// The layout of one fMP4 file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLayout {
    /// Bytes of the init section (`ftyp`, our metadata `uuid`, `moov`): `[0, init_len)`.
    pub init_len: u64,
    /// Identifies the codec parameters: equal for two files whose fragments can follow
    /// each other behind one init section (a digest of every track's id, timescale and
    /// sample description).
    pub init_key: [u8; 32],
    /// The track that gives times (the first video track, else the first track).
    pub timeline_track: u32,
    /// Its timescale (ticks per second).
    pub timescale: u32,
    /// Complete fragments, in file order.
    pub fragments: Vec<FragmentInfo>,
}

impl FileLayout {
    /// Decode time of the first fragment on the timeline track (0 if none).
    pub fn first_decode_time(&self) -> u64 {
        self.fragments
            .iter()
            .find_map(|f| f.traf(self.timeline_track))
            .map_or(0, |t| t.decode_time)
    }

    /// Milliseconds from the first fragment's start to `ticks` on the timeline track.
    pub fn ms_since_first(&self, ticks: u64) -> i64 {
        let d = i128::from(ticks) - i128::from(self.first_decode_time());
        (d * 1000 / i128::from(self.timescale.max(1))) as i64
    }
}

/// Reads the layout of a fragmented MP4 (ours: `.mp4` of `fmp4`, `.m4s` of `hls`).
pub fn read_layout<R: Read + Seek>(mut r: R) -> Result<FileLayout, FormatError> {
    let file_len = r.seek(SeekFrom::End(0)).map_err(io_at(0))?;
    let mut init: Option<(Vec<Trex>, u32, u32, [u8; 32])> = None;
    let mut init_len = 0;
    let mut fragments = Vec::new();
    let mut at = 0;
    while let Found::Box(h) = read_header(&mut r, at, file_len)? {
        match &h.kind {
            b"moov" => {
                let moov = read_atom::<Moov, _>(&mut r, &h, MAX_MOOV_BYTES)?
                    .ok_or_else(|| malformed(h.start, "the moov box does not decode"))?;
                let trex = moov.mvex.as_ref().map(|m| m.trex.clone());
                let trex = trex.ok_or_else(|| malformed(h.start, "not fragmented (no mvex)"))?;
                let (track, timescale) =
                    timeline(&moov).ok_or_else(|| malformed(h.start, "the moov has no track"))?;
                init = Some((trex, track, timescale, init_key(&moov)?));
                init_len = h.end();
            }
            b"moof" => {
                let Some((trex, track, _, _)) = &init else {
                    return Err(malformed(h.start, "a fragment before the moov"));
                };
                let Some(frag) = fragment(&mut r, &h, file_len, trex, *track)? else {
                    break; // torn: nothing after it is usable
                };
                at = frag.end;
                fragments.push(frag);
                continue;
            }
            b"mdat" if init.is_some() => break, // media without a moof is not ours
            _ => {}
        }
        at = h.end();
    }
    let (_, timeline_track, timescale, init_key) =
        init.ok_or_else(|| malformed(0, "no complete moov (not an fMP4 init section)"))?;
    Ok(FileLayout {
        init_len,
        init_key,
        timeline_track,
        timescale,
        fragments,
    })
}

fn malformed(offset: u64, reason: &str) -> FormatError {
    FormatError::Malformed {
        offset,
        reason: reason.to_string(),
    }
}

/// The first video track (else the first track): its id and timescale.
fn timeline(moov: &Moov) -> Option<(u32, u32)> {
    let trak = moov
        .trak
        .iter()
        .find(|t| t.mdia.hdlr.handler == b"vide".into())
        .or(moov.trak.first())?;
    Some((trak.tkhd.track_id, trak.mdia.mdhd.timescale))
}

/// A digest of what a decoder is configured with: per track, its id, timescale and `stsd`.
fn init_key(moov: &Moov) -> Result<[u8; 32], FormatError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for trak in &moov.trak {
        ctx.update(&trak.tkhd.track_id.to_be_bytes());
        ctx.update(&trak.mdia.mdhd.timescale.to_be_bytes());
        let mut stsd = Vec::new();
        super::boxes::encode_atom(&trak.mdia.minf.stbl.stsd, "stsd", &mut stsd)?;
        ctx.update(&stsd);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    Ok(key)
}

/// The complete fragment whose `moof` is `h`, or `None` if it is torn.
fn fragment<R: Read + Seek>(
    r: &mut R,
    h: &BoxHeader,
    file_len: u64,
    trex: &[Trex],
    track: u32,
) -> Result<Option<FragmentInfo>, FormatError> {
    let Some(frag) = read_fragment(r, h, file_len, trex)? else {
        return Ok(None);
    };
    let mut moof = vec![0u8; h.size as usize];
    r.seek(SeekFrom::Start(h.start)).map_err(io_at(h.start))?;
    r.read_exact(&mut moof).map_err(io_at(h.start))?;
    let tfdts = tfdt_offsets(&moof, h.header_len as usize);
    let mut trafs = Vec::new();
    for t in &frag.tracks {
        let (Some(decode_time), Some(&(_, tfdt_at))) = (
            t.base_decode_time,
            tfdts.iter().find(|(id, _)| *id == t.track_id),
        ) else {
            return Err(malformed(h.start, "a traf without tfdt"));
        };
        trafs.push(TrafInfo {
            track_id: t.track_id,
            decode_time,
            duration: t.duration(),
            tfdt_at,
        });
    }
    let keyframe = frag
        .tracks
        .iter()
        .find(|t| t.track_id == track)
        .and_then(|t| t.samples.first())
        .is_some_and(|s| is_sync(s.flags));
    Ok(Some(FragmentInfo {
        offset: h.start,
        moof: Bytes::from(moof),
        end: frag.end,
        keyframe,
        trafs,
    }))
}

/// Children of the box body `body` (a byte slice): `(kind, body start, end)`, relative to
/// `base`; stops at the first child that does not fit.
fn children(buf: &[u8], from: usize, to: usize) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = from;
    while at + 8 <= to {
        let size = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let kind = [buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]];
        if size < 8 || at + size > to {
            break; // 64-bit sizes never occur inside a moof of ours
        }
        out.push((kind, at + 8, at + size));
        at += size;
    }
    out
}

/// Per `traf` of the moof bytes: its track id (from `tfhd`) and where its `tfdt` body is.
pub(crate) fn tfdt_offsets(moof: &[u8], header_len: usize) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    for (kind, start, end) in children(moof, header_len, moof.len()) {
        if &kind != b"traf" {
            continue;
        }
        let mut track = None;
        let mut tfdt = None;
        for (kind, body, end) in children(moof, start, end) {
            match &kind {
                b"tfhd" if end >= body + 8 => {
                    let b = &moof[body + 4..body + 8];
                    track = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
                b"tfdt" if end >= body + 8 => tfdt = Some(body),
                _ => {}
            }
        }
        if let (Some(track), Some(tfdt)) = (track, tfdt) {
            out.push((track, tfdt));
        }
    }
    out
}

// Built with the synthetic stream of `testutil`, which is compiled with `process-tests`.
#[cfg(all(test, feature = "process-tests"))]
#[path = "layout_tests.rs"]
mod tests;
