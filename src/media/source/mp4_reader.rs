//! Reading an MP4 file's samples as [`Frame`]s, in decode-time order across tracks.
//!
//! Blocking I/O: [`super::file`] runs this on its own thread. mp4-atom decodes each `trak`
//! of the `moov` box; [`super::mp4_entry`] turns its sample entry into track parameters and
//! [`super::mp4_table`] walks its sample tables; samples are read one at a time with
//! `pread`, so memory holds one sample plus the tables as stored (one cursor per track),
//! whatever the file size. When looping, each pass adds the file's duration (the longest
//! track, converted to each track's timescale) to the timestamps, so they keep increasing
//! and audio stays in step with video.
//!
//! The top-level boxes are walked here by their headers alone: mp4-atom's readers would load
//! each box's body (a whole `mdat`) and keep sizes as `usize`, which on 32-bit ARM cannot
//! describe an `mdat` over 4 GiB. So `moov` may come first (faststart) or last, and a box
//! running past the end of the file is reported as truncation. Inside `moov` only `trak`
//! boxes are decoded (and `mvex` noted): metadata edgerec does not use cannot make a
//! playable file unreadable.
//!
//! Edit lists are ignored: timestamps are the sample tables' decode times, as most players do
//! for a file's first pass.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use mp4_atom::{Atom, DecodeAtom, DecodeMaybe, Header, Mvex, Trak};

use super::mp4_entry::{describe, TrackKind};
use super::mp4_error::Mp4Error;
use super::mp4_table::{Cursor, SampleInfo, SampleTable};
use super::SourceError;
use crate::media::frame::{Frame, StreamParams, TrackParams};

/// Largest `moov` box read into memory (a 24 h file at 30 fps has a few MB of tables).
const MAX_MOOV: u64 = 64 << 20;
/// Largest single sample accepted; bigger means a damaged size table.
const MAX_SAMPLE: u32 = 64 << 20;

struct Track {
    table: SampleTable,
    cursor: Cursor,
    pending: Option<SampleInfo>,
    done: bool,
    timescale: u32,
    is_video: bool,
    /// Added to timestamps once per completed pass.
    loop_len: i64,
}

/// An open MP4 file handing out frames in decode order.
pub struct Mp4FileReader {
    path: PathBuf,
    file: File,
    file_len: u64,
    params: Arc<StreamParams>,
    tracks: Vec<Track>,
    looping: bool,
    passes: i64,
}

impl Mp4FileReader {
    /// Opens and checks `path`: a clear error for a missing, damaged, fragmented or
    /// unsupported file. Track 0 is the video track if there is one, then the audio track.
    pub fn open(path: &Path, looping: bool) -> Result<Mp4FileReader, SourceError> {
        Self::open_file(path, looping).map_err(|e| e.into_source(path))
    }

    fn open_file(path: &Path, looping: bool) -> Result<Mp4FileReader, Mp4Error> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let top = read_top_level(&file, file_len)?;
        let (traks, mvex) = decode_moov(&top.moov)?;
        drop(top.moov);
        if top.moof || mvex {
            return Err(Mp4Error::Fragmented);
        }

        let mut chosen: Vec<(TrackParams, SampleTable)> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        let (mut have_video, mut have_audio) = (false, false);
        for mut trak in traks {
            let (track_id, kind) = describe(&trak)?;
            let (p, nal_length) = match kind {
                TrackKind::Usable { params, nal_length } => (params, nal_length),
                TrackKind::Other(what) => {
                    skipped.push(what);
                    continue;
                }
            };
            let slot = if p.is_video() {
                &mut have_video
            } else {
                &mut have_audio
            };
            if *slot {
                skipped.push(format!(
                    "another {}",
                    if p.is_video() { "video" } else { "audio" }
                ));
                continue;
            }
            let table = SampleTable::take(&mut trak.mdia.minf.stbl);
            if table.is_empty() {
                skipped.push(format!("empty track {track_id}"));
                continue;
            }
            // Frames carry 4-byte NAL lengths; files with shorter length fields are refused.
            match nal_length {
                Some(4) | None => {}
                Some(n) => return Err(Mp4Error::NalLengthSize(n)),
            }
            *slot = true;
            chosen.push((p, table));
        }
        if chosen.is_empty() {
            return Err(Mp4Error::NoTrack {
                offered: if skipped.is_empty() {
                    "the file has no tracks".into()
                } else {
                    format!("the file has {}", skipped.join(", "))
                },
            });
        }
        if !skipped.is_empty() {
            tracing::warn!(path = %path.display(), skipped = %skipped.join(", "), "ignoring tracks edgerec does not record");
        }
        chosen.sort_by_key(|(p, _)| !p.is_video());

        // Loop length: the longest track's end, in every track's timescale (rounded up).
        let mut ends = Vec::with_capacity(chosen.len());
        for (p, t) in &chosen {
            ends.push((t.end_time()?, p.timescale()));
        }
        let (max_end, max_ts) = ends
            .iter()
            .copied()
            .max_by(|a, b| {
                (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
            })
            .unwrap_or((0, 1));
        if looping && max_end == 0 {
            return Err(Mp4Error::ZeroDuration);
        }
        let mut params = StreamParams::default();
        let mut tracks = Vec::with_capacity(chosen.len());
        for (p, table) in chosen {
            let ts = p.timescale();
            let loop_len =
                (u128::from(max_end) * u128::from(ts)).div_ceil(u128::from(max_ts)) as i64;
            tracks.push(Track {
                table,
                cursor: Cursor::default(),
                pending: None,
                done: false,
                timescale: ts,
                is_video: p.is_video(),
                loop_len,
            });
            params.tracks.push(p);
        }
        Ok(Mp4FileReader {
            path: path.to_path_buf(),
            file,
            file_len,
            params: Arc::new(params),
            tracks,
            looping,
            passes: 0,
        })
    }

    /// Heap bytes of every track's sample tables.
    #[cfg(test)]
    pub fn table_bytes(&self) -> usize {
        self.tracks.iter().map(|t| t.table.heap_bytes()).sum()
    }

    /// The next frame in decode order; `None` at the end of a non-looping file.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        self.read_frame().map_err(|e| e.into_source(&self.path))
    }

    fn read_frame(&mut self) -> Result<Option<Frame>, Mp4Error> {
        let Some((i, s)) = self.next_sample()? else {
            return Ok(None);
        };
        let t = &self.tracks[i];
        let end = s.offset.checked_add(u64::from(s.size));
        if s.size > MAX_SAMPLE || end.is_none_or(|e| e > self.file_len) {
            return Err(Mp4Error::SampleBeyondEnd {
                size: s.size,
                offset: s.offset,
                file_len: self.file_len,
            });
        }
        let mut buf = vec![0u8; s.size as usize];
        self.file.read_exact_at(&mut buf, s.offset)?;
        let dts = s.dts as i64 + self.passes * t.loop_len;
        Ok(Some(Frame {
            params: self.params.clone(),
            track: i,
            dts,
            pts: dts + s.cts,
            keyframe: !t.is_video || s.sync,
            data: Bytes::from(buf),
        }))
    }

    /// The sample that decodes first among the tracks (and its track index), filling
    /// pending samples and starting a new pass when every track is done (if looping).
    fn next_sample(&mut self) -> Result<Option<(usize, SampleInfo)>, Mp4Error> {
        for _pass in 0..2 {
            let mut best: Option<usize> = None;
            for i in 0..self.tracks.len() {
                let t = &mut self.tracks[i];
                if t.pending.is_none() && !t.done {
                    t.pending = t.table.next(&mut t.cursor).map_err(|e| Mp4Error::Track {
                        track: i,
                        source: Box::new(e),
                    })?;
                    t.done = t.pending.is_none();
                }
                let Some(s) = t.pending else { continue };
                // Compare output times (with the loop offset), as tracks' offsets differ
                // slightly after rounding to each timescale.
                let time = |t: &Track, dts: u64| (dts as i64 + self.passes * t.loop_len) as i128;
                let earlier = match best {
                    None => true,
                    Some(b) => {
                        let (bt, it) = (&self.tracks[b], &self.tracks[i]);
                        let bs = bt.pending.map_or(0, |p| p.dts);
                        time(it, s.dts) * i128::from(bt.timescale)
                            < time(bt, bs) * i128::from(it.timescale)
                    }
                };
                if earlier {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                return Ok(self.tracks[b].pending.take().map(|s| (b, s)));
            }
            if !self.looping {
                return Ok(None);
            }
            self.passes += 1;
            for t in &mut self.tracks {
                t.cursor = Cursor::default();
                t.done = false;
            }
        }
        Ok(None)
    }
}

/// What the walk over the top-level boxes found.
struct TopLevel {
    /// The `moov` payload.
    moov: Vec<u8>,
    /// A `moof` box: the file is fragmented.
    moof: bool,
}

/// Walks the top-level boxes (headers only), checks none runs past the end of the file,
/// and returns the `moov` payload.
fn read_top_level(file: &File, file_len: u64) -> Result<TopLevel, Mp4Error> {
    let mut pos = 0u64;
    let mut moov = None;
    let mut moof = false;
    while file_len - pos >= 8 {
        let mut h = [0u8; 16];
        let n = if file_len - pos >= 16 { 16 } else { 8 };
        file.read_exact_at(&mut h[..n], pos)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let kind = [h[4], h[5], h[6], h[7]];
        let (header, size) = match size32 {
            0 => (8, file_len - pos),
            1 if n == 16 => (
                16,
                u64::from_be_bytes(h[8..16].try_into().unwrap_or_default()),
            ),
            1 => return Err(Mp4Error::TruncatedHeader),
            s => (8, u64::from(s)),
        };
        if size < header {
            return Err(Mp4Error::BadBoxSize { offset: pos, size });
        }
        if size > file_len - pos {
            return Err(Mp4Error::Truncated {
                kind: String::from_utf8_lossy(&kind).into_owned(),
                offset: pos,
                size,
                left: file_len - pos,
            });
        }
        match &kind {
            b"moov" => {
                if moov.is_some() {
                    return Err(Mp4Error::TwoMoov);
                }
                let len = size - header;
                if len > MAX_MOOV {
                    return Err(Mp4Error::MoovTooLarge { size });
                }
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, pos + header)?;
                moov = Some(buf);
            }
            b"moof" => moof = true,
            _ => {}
        }
        pos += size;
    }
    Ok(TopLevel {
        moov: moov.ok_or(Mp4Error::NoMoov)?,
        moof,
    })
}

/// Decodes the `trak` boxes of a `moov` payload, and says whether it has an `mvex`
/// (a fragmented file's).
fn decode_moov(moov: &[u8]) -> Result<(Vec<Trak>, bool), Mp4Error> {
    let decode = |what: String| move |source| Mp4Error::Decode { what, source };
    let mut rest = moov;
    let mut traks = Vec::new();
    let mut mvex = false;
    loop {
        let before = rest.len();
        let Some(h) = Header::decode_maybe(&mut rest).map_err(decode("moov".into()))? else {
            break;
        };
        let size = h.size.unwrap_or(rest.len());
        if size > rest.len() {
            let header = before - rest.len();
            return Err(Mp4Error::Overrun {
                kind: h.kind.to_string(),
                size: size.saturating_add(header) as u64,
                left: before as u64,
            });
        }
        if h.kind == Trak::KIND {
            let what = format!("trak {}", traks.len() + 1);
            traks.push(Trak::decode_atom(&h, &mut rest).map_err(decode(what))?);
        } else {
            mvex |= h.kind == Mvex::KIND;
            rest = &rest[size..];
        }
    }
    Ok((traks, mvex))
}

#[cfg(test)]
#[path = "mp4_reader_tests.rs"]
mod tests;
