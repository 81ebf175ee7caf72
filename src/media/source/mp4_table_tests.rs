use super::*;

/// A table from plain values: `(count, delta)`, `(count, offset)`, `(first chunk, per chunk)`.
fn from_parts(
    sizes: Vec<u32>,
    stts: Vec<(u32, u32)>,
    ctts: Vec<(u32, i32)>,
    stss: Option<Vec<u32>>,
    stsc: Vec<(u32, u32)>,
    chunk_offsets: Vec<u64>,
) -> SampleTable {
    SampleTable {
        sizes: StszSamples::Different { sizes },
        stts: stts
            .into_iter()
            .map(|(sample_count, sample_delta)| SttsEntry {
                sample_count,
                sample_delta,
            })
            .collect(),
        ctts: ctts
            .into_iter()
            .map(|(sample_count, off)| CttsEntry {
                sample_count,
                sample_offset: i64::from(off),
            })
            .collect(),
        stss,
        stsc: stsc
            .into_iter()
            .map(|(first_chunk, samples_per_chunk)| StscEntry {
                first_chunk,
                samples_per_chunk,
                sample_description_index: 1,
            })
            .collect(),
        offsets: ChunkOffsets::Co64(chunk_offsets),
    }
}

fn all(t: &SampleTable) -> Result<Vec<SampleInfo>, Mp4Error> {
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
    let t = from_parts(
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
    let cts: Vec<i64> = s.iter().map(|s| s.cts).collect();
    assert_eq!(cts, [1024, 0, 512, 512, 512]);
    let sync: Vec<bool> = s.iter().map(|s| s.sync).collect();
    assert_eq!(sync, [true, false, false, true, false]);
    assert_eq!(t.end_time().unwrap(), 3584);
}

#[test]
fn missing_chunk_offset_is_an_error_not_a_panic() {
    let t = from_parts(
        vec![10, 10, 10],
        vec![(3, 1)],
        vec![],
        None,
        vec![(1, 1)],
        vec![0, 10],
    );
    let e = all(&t).unwrap_err().to_string();
    assert!(e.contains("chunk 3"), "{e}");
}

#[test]
fn short_stts_is_an_error_and_end_time_says_so() {
    let t = from_parts(
        vec![1, 1],
        vec![(1, 1)],
        vec![],
        None,
        vec![(1, 2)],
        vec![0],
    );
    assert!(all(&t).unwrap_err().to_string().contains("stts"));
    assert!(t.end_time().is_err());
}

#[test]
fn zero_samples_per_chunk_or_empty_stsc_is_an_error() {
    let t = from_parts(vec![1], vec![(1, 1)], vec![], None, vec![(1, 0)], vec![0]);
    assert!(all(&t).is_err());
    let t = from_parts(vec![1], vec![(1, 1)], vec![], None, vec![], vec![0]);
    assert!(all(&t).is_err());
}

#[test]
fn cursor_restarts_from_default() {
    let t = from_parts(
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

/// An `stbl` as mp4-atom decodes it.
fn stbl(stsz: StszSamples, stts: Vec<(u32, u32)>, stsc: Vec<(u32, u32)>) -> Stbl {
    Stbl {
        stts: mp4_atom::Stts {
            entries: stts
                .into_iter()
                .map(|(sample_count, sample_delta)| SttsEntry {
                    sample_count,
                    sample_delta,
                })
                .collect(),
        },
        stsc: mp4_atom::Stsc {
            entries: stsc
                .into_iter()
                .map(|(first_chunk, samples_per_chunk)| StscEntry {
                    first_chunk,
                    samples_per_chunk,
                    sample_description_index: 1,
                })
                .collect(),
        },
        stsz: mp4_atom::Stsz { samples: stsz },
        ..Default::default()
    }
}

#[test]
fn a_day_long_track_costs_its_tables_not_its_sample_count() {
    // 24 h at 30 fps, every sample 1000 bytes, 30 per chunk: the tables are a handful of
    // entries plus one offset per chunk, and walking them allocates nothing more.
    let count = 24 * 3600 * 30;
    let chunks = count / 30;
    let mut s = stbl(
        StszSamples::Identical { count, size: 1000 },
        vec![(count, 3000)],
        vec![(1, 30)],
    );
    s.co64 = Some(mp4_atom::Co64 {
        entries: (0..u64::from(chunks))
            .map(|c| (5 << 32) + c * 40_000)
            .collect(),
    });
    let t = SampleTable::take(&mut s);
    assert_eq!(t.len(), count);
    let per_chunk = std::mem::size_of::<u64>();
    assert!(
        t.heap_bytes() <= chunks as usize * per_chunk + 1024,
        "{} bytes for {count} samples",
        t.heap_bytes()
    );
    assert_eq!(t.end_time().unwrap(), u64::from(count) * 3000);
    let mut c = Cursor::default();
    let mut last = None;
    for _ in 0..100_000 {
        last = t.next(&mut c).unwrap();
    }
    let last = last.unwrap();
    // Sample 99 999 is the 10th of chunk 3334 (0-based 3333), past 4 GiB: co64 is used.
    assert_eq!(last.offset, (5 << 32) + 3333 * 40_000 + 9 * 1000);
    assert_eq!(last.dts, 99_999 * 3000);
    assert!(last.sync, "no stss: every sample is a sync sample");
}

#[test]
fn stco_offsets_stay_32_bit_and_co64_wins_when_both_are_present() {
    let mk = || {
        stbl(
            StszSamples::Different {
                sizes: vec![10, 20, 30],
            },
            vec![(3, 1)],
            vec![(1, 1)],
        )
    };
    let mut s = mk();
    s.stco = Some(mp4_atom::Stco {
        entries: vec![100, 200, u32::MAX],
    });
    let t = SampleTable::take(&mut s);
    assert!(matches!(t.offsets, ChunkOffsets::Stco(_)));
    let offsets: Vec<u64> = all(&t).unwrap().iter().map(|s| s.offset).collect();
    assert_eq!(offsets, [100, 200, u64::from(u32::MAX)]);

    let mut s = mk();
    s.stco = Some(mp4_atom::Stco {
        entries: vec![1, 2, 3],
    });
    s.co64 = Some(mp4_atom::Co64 {
        entries: vec![1 << 33, (1 << 33) + 10, (1 << 33) + 30],
    });
    let t = SampleTable::take(&mut s);
    let sizes: Vec<(u64, u32)> = all(&t)
        .unwrap()
        .iter()
        .map(|s| (s.offset, s.size))
        .collect();
    assert_eq!(
        sizes,
        [(1 << 33, 10), ((1 << 33) + 10, 20), ((1 << 33) + 30, 30)]
    );
}

#[test]
fn negative_composition_offsets_of_a_version_1_ctts_are_kept() {
    let t = from_parts(
        vec![1, 1],
        vec![(2, 10)],
        vec![(1, 20), (1, -10)],
        None,
        vec![(1, 2)],
        vec![0],
    );
    let cts: Vec<i64> = all(&t).unwrap().iter().map(|s| s.cts).collect();
    assert_eq!(cts, [20, -10]);
}
