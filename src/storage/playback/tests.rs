use std::path::PathBuf;

use bytes::Bytes;

use super::*;
use crate::media::format::layout::{tfdt_offsets, FileLayout, FragmentInfo, TrafInfo};

const TS: u32 = 90_000;
const INIT: u64 = 1000;
const MDAT: u64 = 5000;

/// A `moof` with an `mfhd` and one `traf` (track 1): `tfhd` and a version 1 `tfdt`.
fn moof(seq: u32, dts: u64) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&(8u32 + 16 + 8 + 16 + 20).to_be_bytes());
    b.extend_from_slice(b"moof");
    b.extend_from_slice(&16u32.to_be_bytes());
    b.extend_from_slice(b"mfhd");
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&(8u32 + 16 + 20).to_be_bytes());
    b.extend_from_slice(b"traf");
    b.extend_from_slice(&16u32.to_be_bytes());
    b.extend_from_slice(b"tfhd");
    b.extend_from_slice(&[0, 2, 0, 0]);
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&20u32.to_be_bytes());
    b.extend_from_slice(b"tfdt");
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&dts.to_be_bytes());
    Bytes::from(b)
}

/// The `tfdt` and `mfhd` sequence number of a moof made by [`moof`] (or rewritten).
fn moof_times(m: &[u8]) -> (u32, u64) {
    let at = tfdt_offsets(m, 8)[0].1;
    let seq = u32::from_be_bytes(m[20..24].try_into().unwrap());
    (
        seq,
        u64::from_be_bytes(m[at + 4..at + 12].try_into().unwrap()),
    )
}

/// A recorded file of one-second fragments (decode times from `first_dts`), a key frame
/// every `gop` fragments; `key` stands for its codec parameters.
fn file(id: u64, start_ms: i64, first_dts: u64, n: usize, gop: usize, key: u8) -> Recorded {
    let mut offset = INIT;
    let fragments = (0..n)
        .map(|i| {
            let dts = first_dts + i as u64 * u64::from(TS);
            let m = moof(i as u32 + 1, dts);
            let f = FragmentInfo {
                offset,
                end: offset + m.len() as u64 + MDAT,
                keyframe: i % gop == 0,
                trafs: vec![TrafInfo {
                    track_id: 1,
                    decode_time: dts,
                    duration: u64::from(TS),
                    tfdt_at: tfdt_offsets(&m, 8)[0].1,
                }],
                moof: m,
            };
            offset = f.end;
            f
        })
        .collect();
    Recorded {
        id,
        path: PathBuf::from(format!("/rec/cam-{id}.mp4")),
        rel: PathBuf::from(format!("cam-{id}.mp4")),
        start_ms,
        bytes: offset,
        layout: FileLayout {
            init_len: INIT,
            init_key: [key; 32],
            timeline_track: 1,
            timescale: TS,
            fragments,
        },
    }
}

const T0: i64 = 1_800_000_000_000;

/// Three 4 s `.mp4` files back to back, each starting at decode time 0, key frames every
/// 2 s.
fn three_mp4() -> Vec<Recorded> {
    (0..3)
        .map(|i| file(i + 1, T0 + i as i64 * 4000, 0, 4, 2, 7))
        .collect()
}

fn uri(r: &Recorded) -> String {
    r.rel.display().to_string()
}

fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn vod_playlist_is_a_finished_version_7_playlist_of_byte_ranges_with_their_init() {
    let files = three_mp4();
    let text = vod_m3u8(&files, T0, T0 + 12_000, uri).unwrap();
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n"), "{text}");
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert_eq!(
        lines(&text, "#EXT-X-MAP"),
        vec![
            "#EXT-X-MAP:URI=\"cam-1.mp4\",BYTERANGE=\"1000@0\"",
            "#EXT-X-MAP:URI=\"cam-2.mp4\",BYTERANGE=\"1000@0\"",
            "#EXT-X-MAP:URI=\"cam-3.mp4\",BYTERANGE=\"1000@0\"",
        ]
    );
    let whole = files[0].layout.fragments[3].end - INIT;
    assert_eq!(
        lines(&text, "#EXT-X-BYTERANGE"),
        vec![format!("#EXT-X-BYTERANGE:{whole}@1000"); 3]
    );
    assert_eq!(lines(&text, "#EXTINF"), vec!["#EXTINF:4.000,"; 3]);
    assert_eq!(
        lines(&text, "#EXT-X-PROGRAM-DATE-TIME")[1],
        "#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:04.000Z"
    );
    assert!(text.contains("#EXT-X-TARGETDURATION:4\n"), "{text}");
}

#[test]
fn target_duration_is_at_least_every_extinf_rounded_up() {
    let mut files = three_mp4();
    files[1].layout.fragments[3].trafs[0].duration = u64::from(TS) / 2 * 3; // 4.5 s
    let text = vod_m3u8(&files, T0, T0 + 12_000, uri).unwrap();
    assert!(text.contains("#EXTINF:4.500,"), "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:5\n"), "{text}");
}

#[test]
fn every_boundary_between_mp4_files_is_a_discontinuity_as_their_timelines_restart() {
    let text = vod_m3u8(&three_mp4(), T0, T0 + 12_000, uri).unwrap();
    assert_eq!(lines(&text, "#EXT-X-DISCONTINUITY").len(), 2, "{text}");
    // Each discontinuity comes right before a new file's map.
    let all: Vec<&str> = text.lines().collect();
    for (i, l) in all.iter().enumerate() {
        if *l == "#EXT-X-DISCONTINUITY" {
            assert!(all[i + 1].starts_with("#EXT-X-MAP"), "{text}");
        }
    }
}

#[test]
fn files_that_continue_one_timeline_with_one_init_need_no_discontinuity() {
    // The .m4s of one HLS recording: decode times run on from file to file.
    let files: Vec<Recorded> = (0..3)
        .map(|i| file(i + 1, T0 + i as i64 * 4000, i * 4 * u64::from(TS), 4, 2, 7))
        .collect();
    let text = vod_m3u8(&files, T0, T0 + 12_000, uri).unwrap();
    assert!(!text.contains("DISCONTINUITY"), "{text}");
    // Other codec parameters in the middle one: discontinuities around it.
    let mut files = files;
    files[1].layout.init_key = [8; 32];
    let text = vod_m3u8(&files, T0, T0 + 12_000, uri).unwrap();
    assert_eq!(lines(&text, "#EXT-X-DISCONTINUITY").len(), 2, "{text}");
}

#[test]
fn a_range_inside_files_starts_at_the_key_frame_before_it_and_ends_with_its_last_fragment() {
    let files = three_mp4();
    // From 3.5 s (fragment 3 of file 1, key frame at fragment 2) to 5.5 s (fragment 1 of
    // file 2).
    let text = vod_m3u8(&files, T0 + 3500, T0 + 5500, uri).unwrap();
    let f = &files[0].layout.fragments;
    let g = &files[1].layout.fragments;
    assert_eq!(
        lines(&text, "#EXT-X-BYTERANGE"),
        vec![
            format!(
                "#EXT-X-BYTERANGE:{}@{}",
                f[3].end - f[2].offset,
                f[2].offset
            ),
            format!("#EXT-X-BYTERANGE:{}@{}", g[1].end - INIT, INIT),
        ]
    );
    assert_eq!(lines(&text, "#EXTINF"), vec!["#EXTINF:2.000,"; 2]);
    assert_eq!(
        lines(&text, "#EXT-X-PROGRAM-DATE-TIME")[0],
        "#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:02.000Z"
    );
}

#[test]
fn nothing_in_the_range_and_a_reversed_range_are_errors() {
    let files = three_mp4();
    assert!(matches!(
        vod_m3u8(&files, T0 + 60_000, T0 + 70_000, uri),
        Err(PlaybackError::Empty { .. })
    ));
    assert!(matches!(
        vod_m3u8(&files, T0 + 5000, T0 + 5000, uri),
        Err(PlaybackError::BadRange { .. })
    ));
    assert!(matches!(
        mp4_cut(&[], T0, 1000),
        Err(PlaybackError::Empty { .. })
    ));
}

/// The moofs of a cut, in order.
fn cut_moofs(v: &VirtualFile) -> Vec<(u32, u64)> {
    v.pieces()
        .iter()
        .filter_map(|p| match p {
            Piece::Owned(b) => Some(moof_times(b)),
            Piece::File { .. } => None,
        })
        .collect()
}

#[test]
fn a_cut_starts_with_the_first_files_init_on_a_key_frame_and_runs_its_decode_times_on() {
    let files = three_mp4();
    // 3.5 s .. 9.5 s: file 1 from its key frame at 2 s, file 2 whole, file 3 up to 9.5 s.
    let v = mp4_cut(&files, T0 + 3500, 6000).unwrap();
    assert_eq!(
        v.pieces()[0],
        Piece::File {
            path: files[0].path.clone(),
            offset: 0,
            len: INIT
        }
    );
    let s = u64::from(TS);
    let expected: Vec<(u32, u64)> = (0..8).map(|i| (i as u32 + 1, i * s)).collect();
    assert_eq!(cut_moofs(&v), expected);
    // Every mdat is the file's own bytes right after its moof.
    let f = &files[0].layout.fragments[2];
    assert_eq!(
        v.pieces()[2],
        Piece::File {
            path: files[0].path.clone(),
            offset: f.offset + f.moof.len() as u64,
            len: MDAT
        }
    );
    assert_eq!(v.len(), v.pieces().iter().map(Piece::len).sum::<u64>());
    assert_eq!((v.start_ms, v.end_ms), (T0 + 2000, T0 + 10_000));
}

#[test]
fn a_cut_stops_at_a_change_of_codec_parameters() {
    let mut files = three_mp4();
    files[2].layout.init_key = [9; 32];
    let v = mp4_cut(&files, T0, 12_000).unwrap();
    assert_eq!(cut_moofs(&v).len(), 8, "files 1 and 2 only");
    assert!(v.pieces().iter().all(|p| match p {
        Piece::File { path, .. } => *path != files[2].path,
        Piece::Owned(_) => true,
    }));
}

#[test]
fn the_etag_is_stable_for_the_same_cut_and_changes_with_the_files_or_the_cut() {
    let files = three_mp4();
    let a = mp4_cut(&files, T0 + 3500, 6000).unwrap();
    assert_eq!(a.etag(), mp4_cut(&files, T0 + 3500, 6000).unwrap().etag());
    // A start inside the same key-frame fragment gives the same bytes, and the same tag.
    assert_eq!(a.etag(), mp4_cut(&files, T0 + 3000, 6500).unwrap().etag());
    assert!(a.etag().starts_with('"') && a.etag().ends_with('"'));
    assert_ne!(a.etag(), mp4_cut(&files, T0 + 1500, 6000).unwrap().etag());
    let mut grown = files.clone();
    grown[1].bytes += 1;
    assert_ne!(a.etag(), mp4_cut(&grown, T0 + 3500, 6000).unwrap().etag());
}

#[test]
fn a_range_of_the_virtual_file_is_the_same_slice_of_its_pieces() {
    let files = three_mp4();
    let v = mp4_cut(&files, T0, 3000).unwrap();
    let moof_len = files[0].layout.fragments[0].moof.len() as u64;
    // From inside the init into the first mdat.
    let r = v.read_range(INIT - 10..INIT + moof_len + 5);
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0],
        Piece::File {
            path: files[0].path.clone(),
            offset: INIT - 10,
            len: 10
        }
    );
    assert_eq!(r[1].len(), moof_len);
    assert_eq!(
        r[2],
        Piece::File {
            path: files[0].path.clone(),
            offset: INIT + moof_len,
            len: 5
        }
    );
    // Inside one owned moof: its own bytes.
    let r = v.read_range(INIT + 20..INIT + 24);
    assert_eq!(
        r,
        vec![Piece::Owned(Bytes::copy_from_slice(&1u32.to_be_bytes()))]
    );
    // Past the end: clamped.
    let r = v.read_range(v.len() - 3..v.len() + 100);
    assert_eq!(r.iter().map(Piece::len).sum::<u64>(), 3);
}

#[test]
fn range_headers_resolve_as_rfc_9110_says() {
    use RangeReply::*;
    assert_eq!(resolve_range(None, 100), Whole);
    assert_eq!(resolve_range(Some("bytes=0-9"), 100), Partial(0..10));
    assert_eq!(resolve_range(Some("bytes=90-"), 100), Partial(90..100));
    assert_eq!(resolve_range(Some("bytes=-10"), 100), Partial(90..100));
    assert_eq!(resolve_range(Some("bytes=-500"), 100), Partial(0..100));
    assert_eq!(resolve_range(Some("bytes=50-500"), 100), Partial(50..100));
    assert_eq!(resolve_range(Some("bytes=100-"), 100), Unsatisfiable);
    assert_eq!(resolve_range(Some("bytes=100-200"), 100), Unsatisfiable);
    assert_eq!(resolve_range(Some("bytes=-0"), 100), Unsatisfiable);
    // Ignored (answered whole): several ranges, another unit, nonsense, a reversed range.
    assert_eq!(resolve_range(Some("bytes=0-1,5-6"), 100), Whole);
    assert_eq!(resolve_range(Some("items=0-1"), 100), Whole);
    assert_eq!(resolve_range(Some("bytes=x-"), 100), Whole);
    assert_eq!(resolve_range(Some("bytes=9-1"), 100), Whole);
    assert_eq!(
        Partial(0..10).content_range(100).as_deref(),
        Some("bytes 0-9/100")
    );
    assert_eq!(
        Unsatisfiable.content_range(100).as_deref(),
        Some("bytes */100")
    );
}
