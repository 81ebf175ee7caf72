//! Walking one track's sample tables in order, in O(1) per sample and O(1) extra memory.
//!
//! mp4-atom decodes `stts`/`ctts`/`stss`/`stsc`/`stsz`/`stco`/`co64`; [`SampleTable`] keeps
//! them as they are stored (a constant `stsz` stays two numbers, `stco` stays 32-bit) and
//! [`Cursor`] steps through them once, checking every index, so a damaged table is an error,
//! never a panic. Nothing is expanded per sample: memory is the tables' own size, whatever
//! the number of samples they describe. Pure: no I/O.

use mp4_atom::{CttsEntry, Stbl, StscEntry, StszSamples, SttsEntry};

use super::mp4_error::Mp4Error;

/// Where one sample is and when it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleInfo {
    /// Byte offset in the file.
    pub offset: u64,
    pub size: u32,
    /// Decode time, in the track's timescale, from the start of the track.
    pub dts: u64,
    pub duration: u32,
    /// pts − dts.
    pub cts: i64,
    pub sync: bool,
}

/// Chunk offsets as stored: 32-bit (`stco`) or 64-bit (`co64`).
#[derive(Debug)]
enum ChunkOffsets {
    Stco(Vec<u32>),
    Co64(Vec<u64>),
}

impl ChunkOffsets {
    /// Offset of 1-based chunk `n`.
    fn get(&self, n: u32) -> Option<u64> {
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        match self {
            ChunkOffsets::Stco(v) => v.get(i).map(|&o| u64::from(o)),
            ChunkOffsets::Co64(v) => v.get(i).copied(),
        }
    }
}

/// One track's sample tables.
#[derive(Debug)]
pub struct SampleTable {
    sizes: StszSamples,
    stts: Vec<SttsEntry>,
    ctts: Vec<CttsEntry>,
    /// `None`: every sample is a sync sample.
    stss: Option<Vec<u32>>,
    stsc: Vec<StscEntry>,
    offsets: ChunkOffsets,
}

/// Position in a [`SampleTable`]. `Default` is the first sample. Its size does not depend
/// on the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cursor {
    /// 0-based index of the next sample.
    index: u32,
    stts_i: usize,
    stts_used: u32,
    dts: u64,
    ctts_i: usize,
    ctts_used: u32,
    stss_i: usize,
    stsc_i: usize,
    /// 1-based number of the current chunk; 0 before the first.
    chunk: u32,
    left_in_chunk: u32,
    next_offset: u64,
}

impl SampleTable {
    /// Takes the sample tables out of a decoded `stbl` (leaving empty ones behind), trimmed
    /// to their length.
    pub fn take(stbl: &mut Stbl) -> SampleTable {
        fn trim<T>(mut v: Vec<T>) -> Vec<T> {
            v.shrink_to_fit();
            v
        }
        let sizes = match std::mem::take(&mut stbl.stsz.samples) {
            StszSamples::Different { sizes } => StszSamples::Different { sizes: trim(sizes) },
            same => same,
        };
        let offsets = match (stbl.co64.take(), stbl.stco.take()) {
            (Some(co64), _) => ChunkOffsets::Co64(trim(co64.entries)),
            (None, Some(stco)) => ChunkOffsets::Stco(trim(stco.entries)),
            (None, None) => ChunkOffsets::Stco(Vec::new()),
        };
        SampleTable {
            sizes,
            stts: trim(std::mem::take(&mut stbl.stts.entries)),
            ctts: trim(stbl.ctts.take().map(|c| c.entries).unwrap_or_default()),
            stss: stbl.stss.take().map(|s| trim(s.entries)),
            stsc: trim(std::mem::take(&mut stbl.stsc.entries)),
            offsets,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> u32 {
        match &self.sizes {
            StszSamples::Identical { count, .. } => *count,
            StszSamples::Different { sizes } => u32::try_from(sizes.len()).unwrap_or(u32::MAX),
        }
    }

    /// True when the track has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the tables hold: what the track costs in memory while it plays.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        let sizes = match &self.sizes {
            StszSamples::Different { sizes } => bytes(sizes),
            StszSamples::Identical { .. } => 0,
        };
        let offsets = match &self.offsets {
            ChunkOffsets::Stco(v) => bytes(v),
            ChunkOffsets::Co64(v) => bytes(v),
        };
        sizes
            + offsets
            + bytes(&self.stts)
            + bytes(&self.ctts)
            + self.stss.as_ref().map_or(0, bytes)
            + bytes(&self.stsc)
    }

    /// Decode time just after the last sample (the track's media duration), if `stts`
    /// covers every sample.
    pub fn end_time(&self) -> Result<u64, Mp4Error> {
        let count = self.len();
        let mut left = u64::from(count);
        let mut t = 0u64;
        for e in &self.stts {
            let n = u64::from(e.sample_count).min(left);
            t += n * u64::from(e.sample_delta);
            left -= n;
        }
        if left > 0 {
            return Err(Mp4Error::ShortStts(count));
        }
        Ok(t)
    }

    /// The next sample, or `None` after the last one.
    pub fn next(&self, c: &mut Cursor) -> Result<Option<SampleInfo>, Mp4Error> {
        if c.index >= self.len() {
            return Ok(None);
        }
        let n = c.index + 1; // 1-based sample number, as the tables count
        let size = match &self.sizes {
            StszSamples::Identical { size, .. } => *size,
            StszSamples::Different { sizes } => {
                *sizes.get(c.index as usize).ok_or(Mp4Error::NoSize(n))?
            }
        };

        // Chunk and offset.
        if c.left_in_chunk == 0 {
            c.chunk += 1;
            while self
                .stsc
                .get(c.stsc_i + 1)
                .is_some_and(|e| e.first_chunk <= c.chunk)
            {
                c.stsc_i += 1;
            }
            let e = self.stsc.get(c.stsc_i).ok_or(Mp4Error::EmptyStsc)?;
            if e.first_chunk > c.chunk || e.samples_per_chunk == 0 {
                return Err(Mp4Error::BadStsc(c.chunk));
            }
            c.left_in_chunk = e.samples_per_chunk;
            c.next_offset = self.offsets.get(c.chunk).ok_or(Mp4Error::NoChunkOffset {
                chunk: c.chunk,
                sample: n,
            })?;
        }
        let offset = c.next_offset;
        c.next_offset = offset
            .checked_add(u64::from(size))
            .ok_or(Mp4Error::OffsetOverflow)?;
        c.left_in_chunk -= 1;

        // Decode time and duration.
        while self
            .stts
            .get(c.stts_i)
            .is_some_and(|e| c.stts_used >= e.sample_count)
        {
            c.stts_i += 1;
            c.stts_used = 0;
        }
        let duration = self
            .stts
            .get(c.stts_i)
            .ok_or(Mp4Error::NoTime(n))?
            .sample_delta;
        let dts = c.dts;
        c.dts += u64::from(duration);
        c.stts_used += 1;

        // Composition offset (absent table: 0; short table: the rest are 0).
        while self
            .ctts
            .get(c.ctts_i)
            .is_some_and(|e| c.ctts_used >= e.sample_count)
        {
            c.ctts_i += 1;
            c.ctts_used = 0;
        }
        let cts = match self.ctts.get(c.ctts_i) {
            Some(e) => {
                c.ctts_used += 1;
                e.sample_offset
            }
            None => 0,
        };

        // Sync samples (no table: every sample is a sync sample).
        let sync = match &self.stss {
            None => true,
            Some(list) => {
                while list.get(c.stss_i).is_some_and(|&s| s < n) {
                    c.stss_i += 1;
                }
                list.get(c.stss_i) == Some(&n)
            }
        };

        c.index += 1;
        Ok(Some(SampleInfo {
            offset,
            size,
            dts,
            duration,
            cts,
            sync,
        }))
    }
}

#[cfg(test)]
#[path = "mp4_table_tests.rs"]
mod tests;
