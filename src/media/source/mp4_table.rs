//! Walking one track's sample tables in order, in O(1) per sample.
//!
//! The `mp4` crate parses `stts`/`ctts`/`stss`/`stsc`/`stsz`/`stco`/`co64` for us, but its
//! `read_sample` rescans the tables from the start for every sample (quadratic over a long
//! file) and panics on some inconsistent tables. [`SampleTable`] owns the parsed tables and
//! [`Cursor`] steps through them once, checking every index, so a damaged table is an
//! error, never a panic. Pure: no I/O.

use mp4::MoovBox;

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
    pub cts: i32,
    pub sync: bool,
}

/// One track's sample tables.
#[derive(Debug)]
pub struct SampleTable {
    count: u32,
    fixed_size: u32,
    sizes: Vec<u32>,
    stts: Vec<(u32, u32)>,
    ctts: Vec<(u32, i32)>,
    stss: Option<Vec<u32>>,
    /// `(first_chunk, samples_per_chunk)`, 1-based chunk numbers.
    stsc: Vec<(u32, u32)>,
    chunk_offsets: Vec<u64>,
}

/// Position in a [`SampleTable`]. `Default` is the first sample.
#[derive(Clone, Debug, Default)]
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
    /// Takes the tables of track `track_id` out of a parsed `moov` (`None`: no such track).
    pub fn take(moov: &mut MoovBox, track_id: u32) -> Option<SampleTable> {
        let trak = moov
            .traks
            .iter_mut()
            .find(|t| t.tkhd.track_id == track_id)?;
        let stbl = &mut trak.mdia.minf.stbl;
        let stsz = &mut stbl.stsz;
        let chunk_offsets = match (&mut stbl.stco, &mut stbl.co64) {
            (_, Some(co64)) => std::mem::take(&mut co64.entries),
            (Some(stco), None) => stco.entries.iter().map(|&o| u64::from(o)).collect(),
            (None, None) => Vec::new(),
        };
        Some(SampleTable {
            count: stsz.sample_count,
            fixed_size: stsz.sample_size,
            sizes: std::mem::take(&mut stsz.sample_sizes),
            stts: stbl
                .stts
                .entries
                .iter()
                .map(|e| (e.sample_count, e.sample_delta))
                .collect(),
            ctts: stbl
                .ctts
                .as_ref()
                .map(|c| {
                    c.entries
                        .iter()
                        .map(|e| (e.sample_count, e.sample_offset))
                        .collect()
                })
                .unwrap_or_default(),
            stss: stbl.stss.as_mut().map(|s| std::mem::take(&mut s.entries)),
            stsc: stbl
                .stsc
                .entries
                .iter()
                .map(|e| (e.first_chunk, e.samples_per_chunk))
                .collect(),
            chunk_offsets,
        })
    }

    /// Builds a table from plain values (for tests and synthetic tracks).
    #[cfg(test)]
    pub fn from_parts(
        sizes: Vec<u32>,
        stts: Vec<(u32, u32)>,
        ctts: Vec<(u32, i32)>,
        stss: Option<Vec<u32>>,
        stsc: Vec<(u32, u32)>,
        chunk_offsets: Vec<u64>,
    ) -> SampleTable {
        SampleTable {
            count: sizes.len() as u32,
            fixed_size: 0,
            sizes,
            stts,
            ctts,
            stss,
            stsc,
            chunk_offsets,
        }
    }

    /// True when the track has no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Decode time just after the last sample (the track's media duration), if `stts`
    /// covers every sample.
    pub fn end_time(&self) -> Result<u64, String> {
        let mut left = u64::from(self.count);
        let mut t = 0u64;
        for &(n, delta) in &self.stts {
            let n = u64::from(n).min(left);
            t += n * u64::from(delta);
            left -= n;
        }
        if left > 0 {
            return Err(format!("stts covers fewer than the {} samples", self.count));
        }
        Ok(t)
    }

    /// The next sample, or `None` after the last one.
    pub fn next(&self, c: &mut Cursor) -> Result<Option<SampleInfo>, String> {
        if c.index >= self.count {
            return Ok(None);
        }
        let n = c.index + 1; // 1-based sample number, as the tables count
        let size = if self.fixed_size != 0 {
            self.fixed_size
        } else {
            *self
                .sizes
                .get(c.index as usize)
                .ok_or_else(|| format!("stsz has no size for sample {n}"))?
        };

        // Chunk and offset.
        if c.left_in_chunk == 0 {
            c.chunk += 1;
            while self.stsc.get(c.stsc_i + 1).is_some_and(|e| e.0 <= c.chunk) {
                c.stsc_i += 1;
            }
            let &(first, per_chunk) = self
                .stsc
                .get(c.stsc_i)
                .ok_or_else(|| "stsc is empty".to_string())?;
            if first > c.chunk || per_chunk == 0 {
                return Err(format!("stsc is inconsistent at chunk {}", c.chunk));
            }
            c.left_in_chunk = per_chunk;
            c.next_offset = *self
                .chunk_offsets
                .get(c.chunk as usize - 1)
                .ok_or_else(|| format!("no chunk offset for chunk {} (sample {n})", c.chunk))?;
        }
        let offset = c.next_offset;
        c.next_offset = offset
            .checked_add(u64::from(size))
            .ok_or("sample offset overflows")?;
        c.left_in_chunk -= 1;

        // Decode time and duration.
        while self.stts.get(c.stts_i).is_some_and(|e| c.stts_used >= e.0) {
            c.stts_i += 1;
            c.stts_used = 0;
        }
        let &(_, duration) = self
            .stts
            .get(c.stts_i)
            .ok_or_else(|| format!("stts has no time for sample {n}"))?;
        let dts = c.dts;
        c.dts += u64::from(duration);
        c.stts_used += 1;

        // Composition offset (absent table: 0; short table: the rest are 0).
        while self.ctts.get(c.ctts_i).is_some_and(|e| c.ctts_used >= e.0) {
            c.ctts_i += 1;
            c.ctts_used = 0;
        }
        let cts = match self.ctts.get(c.ctts_i) {
            Some(&(_, off)) => {
                c.ctts_used += 1;
                off
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
mod tests {
    use super::*;

    fn all(t: &SampleTable) -> Result<Vec<SampleInfo>, String> {
        let mut c = Cursor::default();
        let mut v = Vec::new();
        while let Some(s) = t.next(&mut c)? {
            v.push(s);
        }
        Ok(v)
    }

    #[test]
    fn walks_chunks_times_offsets_and_sync_flags() {
        // 5 samples: chunks of 2, 2, 1 at offsets 100, 500, 900.
        let t = SampleTable::from_parts(
            vec![10, 20, 30, 40, 50],
            vec![(3, 512), (2, 1024)],
            vec![(1, 1024), (1, 0), (3, 512)],
            Some(vec![1, 4]),
            vec![(1, 2), (3, 1)],
            vec![100, 500, 900],
        );
        let s = all(&t).unwrap();
        let offsets: Vec<u64> = s.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, [100, 110, 500, 530, 900]);
        let dts: Vec<u64> = s.iter().map(|s| s.dts).collect();
        assert_eq!(dts, [0, 512, 1024, 1536, 2560]);
        let cts: Vec<i32> = s.iter().map(|s| s.cts).collect();
        assert_eq!(cts, [1024, 0, 512, 512, 512]);
        let sync: Vec<bool> = s.iter().map(|s| s.sync).collect();
        assert_eq!(sync, [true, false, false, true, false]);
        assert_eq!(t.end_time().unwrap(), 3584);
    }

    #[test]
    fn missing_chunk_offset_is_an_error_not_a_panic() {
        let t = SampleTable::from_parts(
            vec![10, 10, 10],
            vec![(3, 1)],
            vec![],
            None,
            vec![(1, 1)],
            vec![0, 10],
        );
        let e = all(&t).unwrap_err();
        assert!(e.contains("chunk 3"), "{e}");
    }

    #[test]
    fn short_stts_is_an_error_and_end_time_says_so() {
        let t = SampleTable::from_parts(
            vec![1, 1],
            vec![(1, 1)],
            vec![],
            None,
            vec![(1, 2)],
            vec![0],
        );
        assert!(all(&t).unwrap_err().contains("stts"));
        assert!(t.end_time().is_err());
    }

    #[test]
    fn zero_samples_per_chunk_or_empty_stsc_is_an_error() {
        let t = SampleTable::from_parts(vec![1], vec![(1, 1)], vec![], None, vec![(1, 0)], vec![0]);
        assert!(all(&t).is_err());
        let t = SampleTable::from_parts(vec![1], vec![(1, 1)], vec![], None, vec![], vec![0]);
        assert!(all(&t).is_err());
    }

    #[test]
    fn cursor_restarts_from_default() {
        let t = SampleTable::from_parts(
            vec![4, 4],
            vec![(2, 10)],
            vec![],
            None,
            vec![(1, 2)],
            vec![8],
        );
        let first = all(&t).unwrap();
        let again = all(&t).unwrap();
        assert_eq!(first, again);
        assert_eq!(first.len(), 2);
    }
}
