//! Tests of the scanner on real fMP4 files we wrote, torn and corrupted ones.

use std::io::Cursor;

use super::*;
use crate::media::format::fmp4::{encode_fragment, encode_init};
use crate::media::format::testutil::{self, Audio, Video};
use crate::media::segment::event::{Fragment, SegmentStart};

/// A real 3 s H.264 + AAC segment, with the end offset of the init and of every fragment.
struct Segment {
    start: SegmentStart,
    frags: Vec<Fragment>,
    bytes: Vec<u8>,
    /// `ends[0]` is the init end, `ends[k]` the end of fragment k.
    ends: Vec<u64>,
}

fn segment() -> Segment {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, Some(Audio::Aac), 3);
    let (start, frags) = testutil::load_clip(&src);
    let mut bytes = encode_init(&start).unwrap();
    let mut ends = vec![bytes.len() as u64];
    for f in &frags {
        bytes.extend_from_slice(&encode_fragment(&start, f));
        ends.push(bytes.len() as u64);
    }
    // The file we scan is also one real players accept.
    let path = dir.path().join("segment.mp4");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(testutil::ffmpeg_decode_errors(&path), "");
    Segment {
        start,
        frags,
        bytes,
        ends,
    }
}

/// Video duration (ms) of the first `n` fragments, from the fragments themselves.
fn video_ms(seg: &Segment, n: usize) -> u64 {
    let video = seg.start.params.video_track().unwrap();
    let timescale = u64::from(seg.start.params.tracks[video].timescale());
    let end = seg.frags[..n]
        .iter()
        .flat_map(|f| f.runs.iter().filter(|r| r.track == video))
        .map(|r| r.base_decode_time + r.samples.iter().map(|s| u64::from(s.duration)).sum::<u64>())
        .max()
        .unwrap_or(0);
    end * 1000 / timescale
}

fn scan_bytes(bytes: &[u8]) -> Result<FileScan, FormatError> {
    scan(Cursor::new(bytes))
}

#[test]
fn complete_segment_reports_meta_every_fragment_and_the_video_duration() {
    let seg = segment();
    let s = scan_bytes(&seg.bytes).unwrap();
    assert_eq!(s.meta.as_ref(), Some(&seg.start.meta));
    assert_eq!(s.init_end, seg.ends[0]);
    assert_eq!(s.complete_end, seg.bytes.len() as u64);
    assert_eq!(s.file_len, seg.bytes.len() as u64);
    assert_eq!(s.fragments as usize, seg.frags.len());
    assert_eq!(s.duration_ms, video_ms(&seg, seg.frags.len()));
    assert_eq!(s.duration_ms, 3000, "75 frames at 25 fps");
}

#[test]
fn truncation_anywhere_ends_at_the_last_complete_fragment() {
    let seg = segment();
    let len = seg.bytes.len() as u64;
    // Every offset through the init and first fragment and around each boundary, a stride
    // elsewhere.
    let mut cuts: Vec<u64> = (0..seg.ends[1] + 64).collect();
    for &e in &seg.ends {
        cuts.extend(e.saturating_sub(64)..(e + 64).min(len + 1));
    }
    cuts.extend((0..len).step_by(257));
    for cut in cuts {
        let s =
            scan_bytes(&seg.bytes[..cut as usize]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let complete = seg.ends.iter().rposition(|&e| e <= cut);
        match complete {
            None => {
                assert_eq!(
                    (s.init_end, s.complete_end, s.fragments),
                    (0, 0, 0),
                    "cut {cut}"
                );
            }
            Some(k) => {
                assert_eq!(s.init_end, seg.ends[0], "cut {cut}");
                assert_eq!(s.complete_end, seg.ends[k], "cut {cut}");
                assert_eq!(s.fragments as usize, k, "cut {cut}");
                assert_eq!(s.duration_ms, video_ms(&seg, k), "cut {cut}");
            }
        }
        assert_eq!(s.file_len, cut);
        if cut >= seg.ends[0] {
            assert!(s.meta.is_some(), "cut {cut}");
        }
    }
}

#[test]
fn a_zero_filled_tail_is_not_part_of_the_file() {
    let seg = segment();
    let mut bytes = seg.bytes.clone();
    bytes.extend_from_slice(&[0u8; 65536]);
    let s = scan_bytes(&bytes).unwrap();
    assert_eq!(s.complete_end, seg.bytes.len() as u64);
    assert_eq!(s.fragments as usize, seg.frags.len());
    assert_eq!(s.file_len, bytes.len() as u64);
}

#[test]
fn a_moof_whose_mdat_is_cut_short_is_torn() {
    let seg = segment();
    let last = seg.ends.len() - 1;
    // Keep the whole last moof and 9 bytes of its mdat.
    let moof_len = u32::from_be_bytes(
        seg.bytes[seg.ends[last - 1] as usize..][..4]
            .try_into()
            .unwrap(),
    ) as u64;
    let cut = seg.ends[last - 1] + moof_len + 9;
    let s = scan_bytes(&seg.bytes[..cut as usize]).unwrap();
    assert_eq!(s.complete_end, seg.ends[last - 1]);
    assert_eq!(s.fragments as usize, last - 1);
}

#[test]
fn an_empty_file_has_nothing_complete() {
    let s = scan_bytes(&[]).unwrap();
    assert_eq!(
        s,
        FileScan {
            meta: None,
            init_end: 0,
            complete_end: 0,
            fragments: 0,
            duration_ms: 0,
            file_len: 0
        }
    );
}

#[test]
fn a_file_that_is_not_mp4_is_refused() {
    let err = scan_bytes(b"hello, this is not a video file at all").unwrap_err();
    assert!(
        matches!(err, FormatError::Malformed { offset: 0, .. }),
        "{err}"
    );
}

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_and_corrupted_files_never_panic() {
    let seg = segment();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        let bytes: Vec<u8> = match round % 4 {
            // Pure noise.
            0 => (0..rng.below(4096)).map(|_| rng.next() as u8).collect(),
            // A plausible ftyp, then noise.
            1 => {
                let mut b = seg.bytes[..seg.ends[0] as usize].to_vec();
                b.extend((0..rng.below(4096)).map(|_| rng.next() as u8));
                b
            }
            // A real file with bytes flipped anywhere.
            _ => {
                let mut b = seg.bytes.clone();
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                let keep = rng.below(b.len() + 1);
                b.truncate(keep);
                b
            }
        };
        if let Ok(s) = scan_bytes(&bytes) {
            assert!(s.complete_end <= s.file_len, "round {round}");
            assert!(
                s.init_end <= s.complete_end || s.complete_end == 0,
                "round {round}"
            );
        }
    }
}
