//! Progressive MP4: rewrites one of our fMP4 segments as a moov-first file.
//!
//! Output layout: `ftyp`, the metadata `uuid` box (copied), `moov` with full sample tables
//! (`stts`, `ctts`, `stss`, `stsz`, `stsc`, `stco` or `co64`), then one `mdat`. Each track
//! run of each fragment becomes one chunk, in file order, so the media is copied in the order
//! it was recorded.
//!
//! Media is streamed from input to output chunk by chunk; only the sample tables are held in
//! memory (about 16 bytes per sample). The `moov` size is computed before anything is written
//! so chunk offsets are final when the `moov` goes out. A torn input is converted up to its
//! last complete fragment.

use std::io::{self, Read, Seek, SeekFrom, Write};

use mp4_atom::{
    Co64, Ctts, CttsEntry, Edts, Elst, ElstEntry, Moov, Stco, Stsc, StscEntry, Stss, Stsz,
    StszSamples, Stts, SttsEntry, Trex,
};

use super::boxes::{
    encode_atom, header_len, io_at, is_sync, put_header, read_atom, read_body, read_fragment,
    read_header, Found, TrackFragment,
};
use super::fmp4::{ftyp, META_UUID};
use super::FormatError;

/// Largest `moov` or `uuid` read from the input.
const MAX_HEADER_BOX_BYTES: u64 = 16 * 1024 * 1024;

/// Reads one of our fMP4 files from `fmp4` and writes it to `out` as a progressive MP4 with
/// `moov` before `mdat`. Returns the number of bytes written.
///
/// The input must have an init section (`moov` with `mvex`); fragments after the last
/// complete one are ignored. `out` receives many small writes: give it a buffered writer.
pub fn write_progressive<R: Read + Seek, W: Write>(
    mut fmp4: R,
    out: W,
) -> Result<u64, FormatError> {
    let input = read_input(&mut fmp4)?;
    let head = {
        let mut head = Vec::new();
        encode_atom(&ftyp(), "ftyp", &mut head)?;
        if let Some(body) = &input.meta_body {
            put_header(&mut head, b"uuid", body.len() as u64);
            head.extend_from_slice(body);
        }
        head
    };
    let media_len: u64 = input.chunks.iter().map(|c| c.len).sum();

    // Chunk offsets depend on the moov size, which depends only on whether they need 64 bits.
    let moov_len = |co64| -> Result<u64, FormatError> {
        Ok(encode_moov(&input, &vec![0; input.chunks.len()], co64)?.len() as u64)
    };
    let offsets = |moov_len: u64| {
        let mut at = head.len() as u64 + moov_len + header_len(media_len);
        input
            .chunks
            .iter()
            .map(|c| {
                let this = at;
                at += c.len;
                this
            })
            .collect::<Vec<u64>>()
    };
    let mut co64 = false;
    let mut chunk_offsets = offsets(moov_len(false)?);
    if chunk_offsets
        .last()
        .is_some_and(|&o| o > u64::from(u32::MAX))
    {
        co64 = true;
        chunk_offsets = offsets(moov_len(true)?);
    }
    let moov = encode_moov(&input, &chunk_offsets, co64)?;

    let mut w = Counting { inner: out, n: 0 };
    let wr = |n: u64| io_at(n);
    w.write_all(&head).map_err(wr(0))?;
    w.write_all(&moov).map_err(wr(w.n))?;
    let mut mdat_header = Vec::new();
    put_header(&mut mdat_header, b"mdat", media_len);
    w.write_all(&mdat_header).map_err(wr(w.n))?;
    for (chunk, &dest) in input.chunks.iter().zip(&chunk_offsets) {
        debug_assert_eq!(dest, w.n);
        fmp4.seek(SeekFrom::Start(chunk.src))
            .map_err(io_at(chunk.src))?;
        let copied =
            io::copy(&mut (&mut fmp4).take(chunk.len), &mut w).map_err(io_at(chunk.src))?;
        if copied != chunk.len {
            return Err(FormatError::Malformed {
                offset: chunk.src + copied,
                reason: "input ended inside a sample (was it truncated while converting?)"
                    .to_string(),
            });
        }
    }
    w.flush().map_err(wr(w.n))?;
    Ok(w.n)
}

/// A writer that counts bytes.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A contiguous span of one track's samples in the input.
struct Chunk {
    src: u64,
    len: u64,
}

/// What the output needs from the input: the meta box, the init moov, sample tables per
/// `moov.trak`, and the chunks in output order.
struct Input {
    meta_body: Option<Vec<u8>>,
    moov: Moov,
    tables: Vec<Table>,
    chunks: Vec<Chunk>,
}

fn read_input<R: Read + Seek>(r: &mut R) -> Result<Input, FormatError> {
    let file_len = r.seek(SeekFrom::End(0)).map_err(io_at(0))?;
    let mut meta_body = None;
    let mut init: Option<(Moov, Vec<Trex>)> = None;
    let mut tables: Vec<Table> = Vec::new();
    let mut chunks = Vec::new();
    let mut at = 0;
    while let Found::Box(h) = read_header(r, at, file_len)? {
        match (&h.kind, &init) {
            (b"uuid", _) if meta_body.is_none() => {
                meta_body = read_body(r, &h, MAX_HEADER_BOX_BYTES)?
                    .filter(|b| b.len() >= 16 && b[..16] == META_UUID);
            }
            (b"moov", None) => {
                let moov: Moov = read_atom(r, &h, MAX_HEADER_BOX_BYTES)?.ok_or_else(|| {
                    FormatError::Malformed {
                        offset: h.start,
                        reason: "moov does not decode".to_string(),
                    }
                })?;
                let Some(mvex) = &moov.mvex else {
                    return Err(FormatError::Malformed {
                        offset: h.start,
                        reason: "not a fragmented MP4 (moov has no mvex)".to_string(),
                    });
                };
                let trex = mvex.trex.clone();
                tables = moov.trak.iter().map(|_| Table::default()).collect();
                init = Some((moov, trex));
            }
            (b"moof", Some((moov, trex))) => {
                let Some(frag) = read_fragment(r, &h, file_len, trex)? else {
                    break;
                };
                for tf in &frag.tracks {
                    let Some(i) = moov
                        .trak
                        .iter()
                        .position(|t| t.tkhd.track_id == tf.track_id)
                    else {
                        continue;
                    };
                    tables[i].add(tf, &mut chunks);
                }
                at = frag.end;
                continue;
            }
            (b"moof", None) => break,
            _ => {}
        }
        at = h.end();
    }
    let Some((moov, _)) = init else {
        return Err(FormatError::Malformed {
            offset: at,
            reason: "no complete moov: not one of our fMP4 segments".to_string(),
        });
    };
    Ok(Input {
        meta_body,
        moov,
        tables,
        chunks,
    })
}

/// One track's sample tables, built fragment by fragment.
#[derive(Default)]
struct Table {
    stts: Vec<SttsEntry>,
    ctts: Vec<CttsEntry>,
    sync: Vec<u32>,
    sizes: Vec<u32>,
    /// Samples per chunk, and the chunk's index in `Input::chunks`.
    chunks: Vec<(u32, usize)>,
    /// Decode time of the first sample (`tfdt` of the first fragment).
    start: Option<u64>,
    /// Sum of sample durations.
    duration: u64,
}

impl Table {
    fn add(&mut self, tf: &TrackFragment, chunks: &mut Vec<Chunk>) {
        let start = *self.start.get_or_insert(tf.base_decode_time.unwrap_or(0));
        // A gap in decode time (tfdt past the previous end) lengthens the previous sample,
        // the only way a sample table can say "nothing here".
        if let Some(tfdt) = tf.base_decode_time {
            let gap = tfdt.saturating_sub(start.saturating_add(self.duration));
            if gap > 0 && !self.sizes.is_empty() {
                self.extend_last(u32::try_from(gap).unwrap_or(u32::MAX));
            }
        }
        let mut end_of_chunk = None;
        for s in &tf.samples {
            if end_of_chunk != Some(s.offset) {
                chunks.push(Chunk {
                    src: s.offset,
                    len: 0,
                });
                self.chunks.push((0, chunks.len() - 1));
            }
            let (count, idx) = self.chunks.last_mut().expect("a chunk was just pushed");
            *count += 1;
            chunks[*idx].len += u64::from(s.size);
            end_of_chunk = Some(s.offset + u64::from(s.size));

            self.sizes.push(s.size);
            if is_sync(s.flags) {
                self.sync.push(self.sizes.len() as u32);
            }
            push_run(&mut self.stts, s.duration);
            self.duration += u64::from(s.duration);
            match self.ctts.last_mut() {
                Some(e) if e.sample_offset == s.cts => e.sample_count += 1,
                _ => self.ctts.push(CttsEntry {
                    sample_count: 1,
                    sample_offset: s.cts,
                }),
            }
        }
    }

    fn extend_last(&mut self, extra: u32) {
        let Some(last) = self.stts.last_mut() else {
            return;
        };
        let delta = last.sample_delta.saturating_add(extra);
        last.sample_count -= 1;
        if last.sample_count == 0 {
            self.stts.pop();
        }
        push_run(&mut self.stts, delta);
        self.duration += u64::from(extra);
    }
}

fn push_run(stts: &mut Vec<SttsEntry>, delta: u32) {
    match stts.last_mut() {
        Some(e) if e.sample_delta == delta => e.sample_count += 1,
        _ => stts.push(SttsEntry {
            sample_count: 1,
            sample_delta: delta,
        }),
    }
}

/// Converts `ticks` of `from` ticks per second to `to` ticks per second.
fn rescale(ticks: u64, from: u32, to: u32) -> u64 {
    if from == 0 {
        return 0;
    }
    u64::try_from(u128::from(ticks) * u128::from(to) / u128::from(from)).unwrap_or(u64::MAX)
}

/// The output `moov`: the init's tracks with full sample tables and durations, no `mvex`.
fn encode_moov(input: &Input, chunk_offsets: &[u64], co64: bool) -> Result<Vec<u8>, FormatError> {
    let mut moov = input.moov.clone();
    moov.mvex = None;
    let movie_ts = moov.mvhd.timescale;
    let mut movie_duration = 0;
    for (trak, table) in moov.trak.iter_mut().zip(&input.tables) {
        let timescale = trak.mdia.mdhd.timescale;
        let start = table.start.unwrap_or(0);
        let lead = rescale(start, timescale, movie_ts);
        let media = rescale(table.duration, timescale, movie_ts);
        movie_duration = movie_duration.max(lead.saturating_add(media));
        trak.tkhd.duration = lead.saturating_add(media);
        trak.mdia.mdhd.duration = table.duration;
        // A track that starts late (audio after video) keeps its place with an empty edit.
        trak.edts = (start > 0).then(|| Edts {
            elst: Some(Elst {
                entries: vec![
                    ElstEntry {
                        segment_duration: lead,
                        media_time: None,
                        media_rate: 1i16.into(),
                    },
                    ElstEntry {
                        segment_duration: media,
                        media_time: Some(0),
                        media_rate: 1i16.into(),
                    },
                ],
            }),
        });

        let stbl = &mut trak.mdia.minf.stbl;
        stbl.stts = Stts {
            entries: table.stts.clone(),
        };
        stbl.ctts = table
            .ctts
            .iter()
            .any(|e| e.sample_offset != 0)
            .then(|| Ctts {
                entries: table.ctts.clone(),
            });
        stbl.stss = (table.sync.len() != table.sizes.len()).then(|| Stss {
            entries: table.sync.clone(),
        });
        stbl.stsz = Stsz {
            samples: StszSamples::Different {
                sizes: table.sizes.clone(),
            },
        };
        stbl.stsc = Stsc {
            entries: stsc_entries(&table.chunks),
        };
        let offsets = table.chunks.iter().map(|&(_, i)| chunk_offsets[i]);
        if co64 {
            stbl.co64 = Some(Co64 {
                entries: offsets.collect(),
            });
            stbl.stco = None;
        } else {
            stbl.stco = Some(Stco {
                entries: offsets.map(|o| o as u32).collect(),
            });
            stbl.co64 = None;
        }
    }
    moov.mvhd.duration = movie_duration;
    let mut out = Vec::new();
    encode_atom(&moov, "moov", &mut out)?;
    Ok(out)
}

/// `stsc` entries: one per change in samples per chunk.
fn stsc_entries(chunks: &[(u32, usize)]) -> Vec<StscEntry> {
    let mut entries: Vec<StscEntry> = Vec::new();
    for (i, &(count, _)) in chunks.iter().enumerate() {
        if entries.last().is_none_or(|e| e.samples_per_chunk != count) {
            entries.push(StscEntry {
                first_chunk: i as u32 + 1,
                samples_per_chunk: count,
                sample_description_index: 1,
            });
        }
    }
    entries
}

#[cfg(all(test, feature = "process-tests"))]
#[path = "progressive_tests.rs"]
mod tests;
