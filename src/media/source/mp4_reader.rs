//! Reading an MP4 file's samples as [`Frame`]s, in decode-time order across tracks.
//!
//! Blocking I/O: [`super::file`] runs this on its own thread. The `mp4` crate parses the
//! header (sample tables); [`super::mp4_entry`] reads the sample entries; samples are read
//! one at a time with `pread`, so memory holds one sample (plus one table position per track)
//! whatever the file size. When looping, each pass adds the file's duration (the longest
//! track, converted to each track's timescale) to the timestamps, so they keep increasing
//! and audio stays in step with video.
//!
//! Edit lists are ignored: timestamps are the sample tables' decode times, as most players do
//! for a file's first pass.

use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::mp4_entry::{check_tree, parse_moov, TrakInfo};
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
    /// unsupported file. Track 0 is the video track if there is one, then AAC audio.
    pub fn open(path: &Path, looping: bool) -> Result<Mp4FileReader, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |reason: String| SourceError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let moov = read_moov(&file, file_len).map_err(|e| match e {
            MoovError::Io(e) => io(e),
            MoovError::Bad(r) => corrupt(r),
        })?;
        check_tree(&moov).map_err(corrupt)?;
        let mut header = mp4::Mp4Reader::read_header(BufReader::new(&file), file_len)
            .map_err(|e| corrupt(e.to_string()))?;
        if !header.moofs.is_empty() || header.moov.mvex.is_some() {
            return Err(SourceError::UnsupportedFile {
                path: path.to_path_buf(),
                reason: "fragmented MP4 is not supported by the file source; remux it first \
                         (ffmpeg -i IN -c copy -movflags +faststart OUT.mp4)"
                    .into(),
            });
        }
        let traks = parse_moov(&moov).map_err(corrupt)?;

        let mut chosen: Vec<(TrackParams, SampleTable)> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        let (mut have_video, mut have_audio) = (false, false);
        for TrakInfo { track_id, params } in traks {
            let p = match params {
                Ok(p) => p,
                Err(what) => {
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
            let table = SampleTable::take(&mut header.moov, track_id)
                .ok_or_else(|| corrupt(format!("track {track_id} has no sample tables")))?;
            if table.is_empty() {
                skipped.push(format!("empty track {track_id}"));
                continue;
            }
            check_nal_length_size(&p).map_err(|reason| SourceError::UnsupportedFile {
                path: path.to_path_buf(),
                reason,
            })?;
            *slot = true;
            chosen.push((p, table));
        }
        drop(header);
        if chosen.is_empty() {
            return Err(SourceError::UnsupportedCodec {
                source_name: path.display().to_string(),
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
            ends.push((t.end_time().map_err(corrupt)?, p.timescale()));
        }
        let (max_end, max_ts) = ends
            .iter()
            .copied()
            .max_by(|a, b| {
                (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
            })
            .unwrap_or((0, 1));
        if looping && max_end == 0 {
            return Err(corrupt("the file has zero duration and cannot loop".into()));
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

    /// The next frame in decode order; `None` at the end of a non-looping file.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some((i, s)) = self.next_sample()? else {
            return Ok(None);
        };
        let t = &self.tracks[i];
        let end = s.offset.checked_add(u64::from(s.size));
        if s.size > MAX_SAMPLE || end.is_none_or(|e| e > self.file_len) {
            return Err(SourceError::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "a sample of {} bytes at offset {} lies beyond the end of the {}-byte file \
                     (truncated?)",
                    s.size, s.offset, self.file_len
                ),
            });
        }
        let mut buf = vec![0u8; s.size as usize];
        self.file
            .read_exact_at(&mut buf, s.offset)
            .map_err(|source| SourceError::Io {
                path: self.path.clone(),
                source,
            })?;
        let dts = s.dts as i64 + self.passes * t.loop_len;
        Ok(Some(Frame {
            params: self.params.clone(),
            track: i,
            dts,
            pts: dts + i64::from(s.cts),
            keyframe: !t.is_video || s.sync,
            data: Bytes::from(buf),
        }))
    }

    /// The sample that decodes first among the tracks (and its track index), filling
    /// pending samples and starting a new pass when every track is done (if looping).
    fn next_sample(&mut self) -> Result<Option<(usize, SampleInfo)>, SourceError> {
        for _pass in 0..2 {
            let mut best: Option<usize> = None;
            for i in 0..self.tracks.len() {
                let t = &mut self.tracks[i];
                if t.pending.is_none() && !t.done {
                    t.pending =
                        t.table
                            .next(&mut t.cursor)
                            .map_err(|reason| SourceError::Corrupt {
                                path: self.path.clone(),
                                reason: format!("track {i}: {reason}"),
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

/// Frames carry 4-byte NAL lengths; files with shorter length fields are refused.
fn check_nal_length_size(p: &TrackParams) -> Result<(), String> {
    let TrackParams::Video(v) = p else {
        return Ok(());
    };
    let at = match v.codec {
        crate::media::frame::VideoCodec::H264 => 4,
        crate::media::frame::VideoCodec::H265 => 21,
    };
    match v.config.get(at).map(|b| (b & 3) + 1) {
        Some(4) => Ok(()),
        Some(n) => Err(format!(
            "the video uses {n}-byte NAL lengths; only 4-byte is supported (remux with ffmpeg)"
        )),
        None => Err("the video decoder configuration is truncated".into()),
    }
}

enum MoovError {
    Io(std::io::Error),
    Bad(String),
}

/// Walks the top-level boxes (headers only), checks none runs past the end of the file,
/// and returns the `moov` payload.
fn read_moov(file: &File, file_len: u64) -> Result<Vec<u8>, MoovError> {
    let mut pos = 0u64;
    let mut moov = None;
    while pos + 8 <= file_len {
        let mut h = [0u8; 16];
        let n = if pos + 16 <= file_len { 16 } else { 8 };
        file.read_exact_at(&mut h[..n], pos)
            .map_err(MoovError::Io)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (header, size) = match size32 {
            0 => (8, file_len - pos),
            1 if n == 16 => (
                16,
                u64::from_be_bytes(h[8..16].try_into().unwrap_or_default()),
            ),
            1 => return Err(MoovError::Bad("truncated box header".into())),
            s => (8, u64::from(s)),
        };
        if size < header {
            return Err(MoovError::Bad(format!(
                "box at offset {pos} has size {size}"
            )));
        }
        if pos + size > file_len {
            return Err(MoovError::Bad(format!(
                "the file is truncated: box \"{}\" at offset {pos} needs {size} bytes but the \
                 file ends {} bytes later",
                String::from_utf8_lossy(&h[4..8]),
                file_len - pos
            )));
        }
        if &h[4..8] == b"moov" {
            if moov.is_some() {
                return Err(MoovError::Bad("the file has two moov boxes".into()));
            }
            let len = size - header;
            if len > MAX_MOOV {
                return Err(MoovError::Bad(format!(
                    "moov box of {size} bytes is too large"
                )));
            }
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, pos + header)
                .map_err(MoovError::Io)?;
            moov = Some(buf);
        }
        pos = pos.saturating_add(size);
    }
    moov.ok_or_else(|| MoovError::Bad("moov box not found".into()))
}
