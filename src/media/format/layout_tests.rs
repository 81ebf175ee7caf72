use std::io::Cursor;

use super::*;
use crate::media::format::fmp4::{encode_fragment, encode_init};
use crate::media::format::testutil::synthetic_start;
use crate::media::segment::event::{Fragment, Sample, TrackRun};

/// A fragment of `n` video samples of 3000 ticks from `dts`, the first a key frame when
/// `key`, and one audio sample.
fn frag(seq: u32, dts: u64, n: usize, key: bool) -> Fragment {
    let sample = |k| Sample {
        duration: 3000,
        cts_offset: 0,
        keyframe: k,
        data: bytes::Bytes::from_static(&[1, 2, 3, 4]),
    };
    Fragment {
        sequence: seq,
        runs: vec![
            TrackRun {
                track: 0,
                base_decode_time: dts,
                samples: (0..n).map(|i| sample(key && i == 0)).collect(),
            },
            TrackRun {
                track: 1,
                base_decode_time: dts / 90 * 16,
                samples: vec![Sample {
                    duration: 1024,
                    ..sample(true)
                }],
            },
        ],
    }
}

#[test]
fn layout_lists_each_fragment_with_its_offsets_decode_times_and_key_frame() {
    let start = synthetic_start();
    let mut file = encode_init(&start).unwrap();
    let init_len = file.len() as u64;
    let frags = [frag(1, 0, 3, true), frag(2, 9000, 3, false)];
    let mut offsets = Vec::new();
    for f in &frags {
        offsets.push(file.len() as u64);
        file.extend_from_slice(&encode_fragment(&start, f));
    }
    let file_len = file.len() as u64;
    // A torn tail is not a fragment.
    file.extend_from_slice(&encode_fragment(&start, &frag(3, 18000, 3, true))[..40]);

    let l = read_layout(Cursor::new(&file)).unwrap();
    assert_eq!(l.init_len, init_len);
    assert_eq!((l.timeline_track, l.timescale), (1, 90_000));
    assert_eq!(l.fragments.len(), 2);
    assert_eq!(l.fragments[0].offset, offsets[0]);
    assert_eq!(l.fragments[1].offset, offsets[1]);
    assert_eq!(l.fragments[1].end, file_len);
    assert!(l.fragments[0].keyframe && !l.fragments[1].keyframe);
    let v = l.fragments[1].traf(1).unwrap();
    assert_eq!((v.decode_time, v.duration), (9000, 9000));
    // tfdt_at points at the version byte of a version 1 tfdt holding the decode time.
    let m = &l.fragments[1].moof;
    assert_eq!(m[v.tfdt_at], 1);
    assert_eq!(m[v.tfdt_at + 4..v.tfdt_at + 12], 9000u64.to_be_bytes());
    assert_eq!(l.fragments[1].traf(2).unwrap().decode_time, 1600);
    assert_eq!(l.ms_since_first(90_000), 1000);
}

#[test]
fn same_codec_parameters_give_the_same_init_key_and_others_a_different_one() {
    let start = synthetic_start();
    let a = read_layout(Cursor::new(encode_init(&start).unwrap())).unwrap();
    let mut other = synthetic_start();
    other.meta.seq += 1; // the metadata differs per file: not part of the key
    let b = read_layout(Cursor::new(encode_init(&other).unwrap())).unwrap();
    assert_eq!(a.init_key, b.init_key);
    let mut wider = synthetic_start();
    let params = std::sync::Arc::make_mut(&mut wider.params);
    if let crate::media::frame::TrackParams::Video(v) = &mut params.tracks[0] {
        v.width = 1280;
    }
    let c = read_layout(Cursor::new(encode_init(&wider).unwrap())).unwrap();
    assert_ne!(a.init_key, c.init_key);
}

#[test]
fn a_file_that_is_not_an_fmp4_is_an_error() {
    assert!(read_layout(Cursor::new(vec![0u8; 64])).is_err());
}
