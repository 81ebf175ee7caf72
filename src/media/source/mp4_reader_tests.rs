//! The reader against MP4 files built here with mp4-atom: layouts ffmpeg does not make on
//! demand (offsets past 4 GiB, a day of samples), and every byte of a `moov` damaged in turn.

use std::io::Write;

use mp4_atom::{
    Audio, Avc1, Avcc, Co64, Codec, Ctts, CttsEntry, Encode, Esds, FixedPoint, FourCC, Ftyp, Hdlr,
    Mdhd, Mdia, Minf, Moov, Mp4a, Mvex, Stbl, Stco, Stsc, StscEntry, Stsd, Stss, Stsz, StszSamples,
    Stts, SttsEntry, Tkhd, Trex, Visual,
};

use super::*;
use crate::media::codec::testdata::{PPS_BASELINE, SPS_BASELINE};

const GIB: u64 = 1 << 30;

fn avc1(length_size: u8) -> Codec {
    Avc1 {
        visual: Visual {
            width: 320,
            height: 240,
            ..Default::default()
        },
        avcc: Avcc {
            configuration_version: 1,
            avc_profile_indication: 0x42,
            profile_compatibility: 0xc0,
            avc_level_indication: 0x0d,
            length_size,
            // Real parameter sets: the codec toolkit reads the SPS to rebuild the record.
            sequence_parameter_sets: vec![SPS_BASELINE.to_vec()],
            picture_parameter_sets: vec![PPS_BASELINE.to_vec()],
            ext: None,
        },
        ..Default::default()
    }
    .into()
}

/// AAC-LC, 48 kHz, stereo.
fn mp4a() -> Codec {
    // ES_Descriptor { DecoderConfig(0x40) { DSI(11 90) } SLConfig(02) } after version/flags.
    let esds = [
        0, 0, 0, 0, 0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x05, 0x02, 0x11, 0x90, 0x06, 0x01, 0x02,
    ];
    Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: 2,
            sample_size: 16,
            sample_rate: FixedPoint::new(48_000, 0),
        },
        esds: Esds::decode_body(&mut &esds[..]).unwrap(),
        btrt: None,
        taic: None,
    }
    .into()
}

fn trak(id: u32, handler: &[u8; 4], timescale: u32, entry: Codec, stbl: Stbl) -> Trak {
    Trak {
        tkhd: Tkhd {
            track_id: id,
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: String::new(),
            },
            minf: Minf {
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![entry],
                    },
                    ..stbl
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn stts(count: u32, delta: u32) -> Stts {
    Stts {
        entries: vec![SttsEntry {
            sample_count: count,
            sample_delta: delta,
        }],
    }
}

fn stsc(per_chunk: u32) -> Stsc {
    Stsc {
        entries: vec![StscEntry {
            first_chunk: 1,
            samples_per_chunk: per_chunk,
            sample_description_index: 1,
        }],
    }
}

fn sizes(sizes: &[u32]) -> Stsz {
    Stsz {
        samples: StszSamples::Different {
            sizes: sizes.to_vec(),
        },
    }
}

/// Samples of the two-track clip: (offset in the `mdat` body, size, content byte).
const AUDIO: [(u64, u32, u8); 4] = [(0, 8, 0xa0), (8, 8, 0xa1), (16, 8, 0xa2), (24, 8, 0xa3)];
const VIDEO: [(u64, u32, u8); 6] = [
    (100, 10, 0x10),
    (110, 20, 0x11),
    (130, 30, 0x12),
    (5 * GIB, 40, 0x13),
    (5 * GIB + 40, 50, 0x14),
    (5 * GIB + 90, 60, 0x15),
];

/// The tracks of the two-track clip whose `mdat` body starts at `base`: H.264 video in two
/// chunks, the second past 5 GiB (`co64`), and AAC audio in one chunk (`stco`).
fn two_tracks(base: u64) -> Vec<Trak> {
    let video = Stbl {
        stts: stts(6, 3000),
        ctts: Some(Ctts {
            entries: vec![
                CttsEntry {
                    sample_count: 1,
                    sample_offset: 6000,
                },
                CttsEntry {
                    sample_count: 5,
                    sample_offset: 3000,
                },
            ],
        }),
        stss: Some(Stss {
            entries: vec![1, 4],
        }),
        stsc: stsc(3),
        stsz: sizes(&VIDEO.map(|s| s.1)),
        co64: Some(Co64 {
            entries: vec![base + VIDEO[0].0, base + VIDEO[3].0],
        }),
        ..Default::default()
    };
    let audio = Stbl {
        stts: stts(4, 1024),
        stsc: stsc(4),
        stsz: sizes(&AUDIO.map(|s| s.1)),
        stco: Some(Stco {
            entries: vec![u32::try_from(base + AUDIO[0].0).unwrap()],
        }),
        ..Default::default()
    };
    vec![
        trak(2, b"soun", 48_000, mp4a(), audio),
        trak(1, b"vide", 90_000, avc1(4), video),
    ]
}

fn encode<T: Encode>(atom: &T) -> Vec<u8> {
    let mut out = Vec::new();
    atom.encode(&mut out).unwrap();
    out
}

fn moov(traks: Vec<Trak>) -> Vec<u8> {
    encode(&Moov {
        trak: traks,
        ..Default::default()
    })
}

/// Writes `ftyp`, then `moov` (if `faststart`), a 64-bit-size `mdat` holding `samples` at
/// their offsets (a sparse file), then `moov` (if not). `traks` makes the tracks for an
/// `mdat` body starting at the given file offset.
fn write_clip(
    path: &Path,
    faststart: bool,
    samples: &[(u64, u32, u8)],
    traks: impl Fn(u64) -> Vec<Trak>,
) -> Vec<u8> {
    let ftyp = encode(&Ftyp {
        major_brand: FourCC::new(b"isom"),
        minor_version: 512,
        compatible_brands: vec![FourCC::new(b"isom"), FourCC::new(b"avc1")],
    });
    let moov_len = moov(traks(0)).len() as u64;
    let lead = ftyp.len() as u64 + if faststart { moov_len } else { 0 };
    let base = lead + 16;
    let moov = moov(traks(base));
    let body_len = samples.iter().map(|s| s.0 + u64::from(s.1)).max().unwrap();

    let mut f = File::create(path).unwrap();
    f.write_all(&ftyp).unwrap();
    if faststart {
        f.write_all(&moov).unwrap();
    }
    f.write_all(&1u32.to_be_bytes()).unwrap();
    f.write_all(b"mdat").unwrap();
    f.write_all(&(body_len + 16).to_be_bytes()).unwrap();
    for &(at, size, byte) in samples {
        f.write_all_at(&vec![byte; size as usize], base + at)
            .unwrap();
    }
    f.set_len(base + body_len).unwrap();
    if !faststart {
        f.write_all_at(&moov, base + body_len).unwrap();
    }
    moov
}

fn all_samples() -> Vec<(u64, u32, u8)> {
    AUDIO.iter().chain(&VIDEO).copied().collect()
}

fn read_all(r: &mut Mp4FileReader) -> Vec<Frame> {
    std::iter::from_fn(|| r.next_frame().unwrap()).collect()
}

#[test]
fn moov_at_the_end_with_co64_offsets_past_4_gib_gives_every_sample_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mp4");
    write_clip(&path, false, &all_samples(), two_tracks);
    let mut r = Mp4FileReader::open(&path, false).unwrap();
    assert!(r.file_len > 5 * GIB);
    assert!(r.params.tracks[0].is_video(), "video comes first");
    let frames = read_all(&mut r);
    let got: Vec<(usize, u8, usize, i64, i64, bool)> = frames
        .iter()
        .map(|f| (f.track, f.data[0], f.data.len(), f.dts, f.pts, f.keyframe))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0x10, 10, 0, 6000, true),
            (1, 0xa0, 8, 0, 0, true),
            (1, 0xa1, 8, 1024, 1024, true),
            (0, 0x11, 20, 3000, 6000, false),
            (1, 0xa2, 8, 2048, 2048, true),
            (1, 0xa3, 8, 3072, 3072, true),
            (0, 0x12, 30, 6000, 9000, false),
            (0, 0x13, 40, 9000, 12000, true),
            (0, 0x14, 50, 12000, 15000, false),
            (0, 0x15, 60, 15000, 18000, false),
        ]
    );
    assert!(frames
        .iter()
        .all(|f| f.data.iter().all(|&b| b == f.data[0])));
}

#[test]
fn faststart_and_moov_at_the_end_give_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let small: Vec<_> = all_samples().into_iter().filter(|s| s.0 < GIB).collect();
    let traks = |base| {
        let mut t = two_tracks(base);
        // Only the first video chunk, and stco everywhere.
        let stbl = &mut t[1].mdia.minf.stbl;
        stbl.co64 = None;
        stbl.stco = Some(Stco {
            entries: vec![u32::try_from(base + VIDEO[0].0).unwrap()],
        });
        stbl.stts = stts(3, 3000);
        stbl.stsz = sizes(&[10, 20, 30]);
        t
    };
    let mut frames = Vec::new();
    for faststart in [true, false] {
        let path = dir.path().join(format!("{faststart}.mp4"));
        write_clip(&path, faststart, &small, traks);
        let all = read_all(&mut Mp4FileReader::open(&path, false).unwrap());
        frames.push(all);
    }
    assert_eq!(frames[0].len(), 7);
    let key = |f: &Frame| (f.track, f.dts, f.pts, f.keyframe, f.data.clone());
    assert!(frames[0].iter().map(key).eq(frames[1].iter().map(key)));
}

#[test]
fn a_day_of_samples_costs_the_tables_not_the_sample_count() {
    // 24 h of 30 fps video, 2 bytes a sample, in one chunk: a few table entries describe
    // 2.6 million samples, and the reader holds no more than those.
    let count = 24 * 3600 * 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("day.mp4");
    let traks = |base: u64| {
        let stbl = Stbl {
            stts: stts(count, 3000),
            stsc: stsc(count),
            stsz: Stsz {
                samples: StszSamples::Identical { count, size: 2 },
            },
            stco: Some(Stco {
                entries: vec![u32::try_from(base).unwrap()],
            }),
            ..Default::default()
        };
        vec![trak(1, b"vide", 90_000, avc1(4), stbl)]
    };
    write_clip(&path, false, &[(0, count * 2, 7)], traks);
    let mut r = Mp4FileReader::open(&path, true).unwrap();
    assert!(r.table_bytes() < 1024, "{} bytes", r.table_bytes());
    for n in 0..3 {
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.dts, &f.data[..]), (n * 3000, &[7, 7][..]));
    }
}

#[test]
fn shorter_nal_length_fields_are_refused_with_a_remux_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nal2.mp4");
    write_clip(&path, true, &[(0, 4, 1)], |base| {
        let stbl = Stbl {
            stts: stts(1, 3000),
            stsc: stsc(1),
            stsz: sizes(&[4]),
            stco: Some(Stco {
                entries: vec![u32::try_from(base).unwrap()],
            }),
            ..Default::default()
        };
        vec![trak(1, b"vide", 90_000, avc1(2), stbl)]
    });
    let e = Mp4FileReader::open(&path, false).err().unwrap();
    assert!(matches!(e, SourceError::UnsupportedFile { .. }), "{e:?}");
    assert!(e.to_string().contains("2-byte NAL lengths"), "{e}");
}

#[test]
fn a_moov_with_mvex_is_fragmented() {
    let mut traks = two_tracks(0);
    traks.truncate(1);
    let mut bytes = moov(traks);
    let mvex = encode(&Mvex {
        trex: vec![Trex {
            track_id: 2,
            ..Default::default()
        }],
        ..Default::default()
    });
    bytes.extend_from_slice(&mvex);
    let (_, mvex) = decode_moov(&bytes[8..]).unwrap();
    assert!(mvex);
}

#[test]
fn box_larger_than_its_parent_is_reported_not_followed() {
    let mut data = encode(&two_tracks(0).remove(0));
    data[0..4].copy_from_slice(&200u32.to_be_bytes());
    data.truncate(150);
    let e = decode_moov(&data).unwrap_err().to_string();
    assert!(e.contains("claims 200 bytes but 150 remain"), "{e}");
}

#[test]
fn nested_box_of_size_zero_runs_to_its_parents_end_and_below_its_header_is_an_error() {
    let trak = encode(&two_tracks(0).remove(0));
    // mdia is the trak's last child: size 0 ("to the end") describes it as well.
    let mdia = trak.windows(4).position(|w| w == b"mdia").unwrap() - 4;
    let mut zero = trak.clone();
    zero[mdia..mdia + 4].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(decode_moov(&zero).unwrap().0, decode_moov(&trak).unwrap().0);
    for size in [1u32, 4, 7] {
        let mut bad = trak.clone();
        bad[mdia..mdia + 4].copy_from_slice(&size.to_be_bytes());
        assert!(decode_moov(&bad).is_err(), "mdia of size {size}");
    }
}

#[test]
fn track_without_media_box_is_an_error() {
    let mut trak = encode(&two_tracks(0).remove(0));
    let mdia = trak.windows(4).position(|w| w == b"mdia").unwrap();
    trak[mdia..mdia + 4].copy_from_slice(b"xdia");
    let e = decode_moov(&trak).unwrap_err().to_string();
    assert!(e.contains("trak 1") && e.contains("mdia"), "{e}");
}

#[test]
fn every_damaged_moov_byte_gives_frames_or_an_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let small: Vec<_> = all_samples().into_iter().filter(|s| s.0 < GIB).collect();
    let traks = |base| {
        let mut t = two_tracks(base);
        let stbl = &mut t[1].mdia.minf.stbl;
        stbl.co64 = Some(Co64 {
            entries: vec![base + VIDEO[0].0, base + VIDEO[0].0 + 60],
        });
        t
    };
    let moov = write_clip(&path, false, &small, traks);
    let good = std::fs::read(&path).unwrap();
    let at = good.len() - moov.len();
    let bad = dir.path().join("bad.mp4");
    let mut outcomes = (0, 0);
    for (n, i) in (at..good.len()).enumerate() {
        for flip in [0xff, 0x80, 0x01] {
            let mut d = good.clone();
            d[i] ^= flip;
            std::fs::write(&bad, &d).unwrap();
            let read = Mp4FileReader::open(&bad, n % 2 == 0).and_then(|mut r| {
                for _ in 0..40 {
                    if r.next_frame()?.is_none() {
                        break;
                    }
                }
                Ok(())
            });
            match read {
                Ok(()) => outcomes.0 += 1,
                Err(_) => outcomes.1 += 1,
            }
        }
    }
    assert!(outcomes.1 > 0, "some damage is detected: {outcomes:?}");
    // Cut anywhere inside the moov: never a panic, always an error.
    for len in at..good.len() {
        std::fs::write(&bad, &good[..len]).unwrap();
        assert!(Mp4FileReader::open(&bad, false).is_err(), "cut at {len}");
    }
}
