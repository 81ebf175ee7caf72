//! The protocol with FLV and ADTS working files beside the fMP4 one: one row per
//! container under one base, whole pages written while the file grows, the close's
//! metadata patch, a torn file cut back to its last complete tag or frame (and the FLV's
//! metadata patched) by recovery, and the index rebuilt from FLV and ADTS files. Every
//! file is checked by ffmpeg.

use std::fs::{self, OpenOptions};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use super::tests::{assert_consistent, open, NOW};
use super::*;
use crate::media::format::adts::{self, AdtsEncoder};
use crate::media::format::flv::{self, FlvEncoder, Metadata};
use crate::media::format::testutil::{self, Audio, Video};
use crate::media::format::{fmp4, Format};
use crate::media::segment::event::{CloseReason, Fragment, SegmentClose, SegmentStart};

/// A real 4 s H.264 + AAC clip as segment events, under the store's test identity.
fn events(dir: &Path) -> (SegmentStart, Vec<Fragment>) {
    let src = testutil::make_clip(dir, Video::H264, Some(Audio::Aac), 4);
    let (mut start, frags) = testutil::load_clip(&src);
    start.meta = super::fixture::meta("cam", 0);
    (start, frags)
}

fn close(start: &SegmentStart, ms: u64) -> SegmentClose {
    SegmentClose {
        reason: CloseReason::Interval,
        start_ms: start.meta.start_ms,
        duration_ms: ms,
        end_ms: start.meta.start_ms + ms as i64,
    }
}

/// The start as a sink of `format` hands it to its encoder.
fn start_for(start: &SegmentStart, format: Format) -> SegmentStart {
    let mut s = start.clone();
    s.meta.formats = vec![format];
    s
}

fn flv_writer(
    store: &Store,
    start: &SegmentStart,
    frags: &[Fragment],
    base: &str,
) -> (SegmentWriter, FlvEncoder) {
    let st = start_for(start, Format::Flv);
    let mut enc = FlvEncoder::new(std::time::Duration::from_secs(60));
    let init = enc.init(&st).unwrap();
    let mut w = store
        .begin(&st.meta, Path::new(base), &[Format::Flv], &init)
        .unwrap();
    for f in frags {
        w.append(&enc.fragment(f).unwrap()).unwrap();
    }
    (w, enc)
}

fn adts_writer(
    store: &Store,
    start: &SegmentStart,
    frags: &[Fragment],
    base: &str,
) -> SegmentWriter {
    let st = start_for(start, Format::Aac);
    let mut enc = AdtsEncoder::new();
    let init = enc.init(&st).unwrap();
    let mut w = store
        .begin(&st.meta, Path::new(base), &[Format::Aac], &init)
        .unwrap();
    for f in frags {
        w.append(&enc.fragment(f).unwrap()).unwrap();
    }
    w
}

fn decodes(path: &Path) {
    assert_eq!(
        testutil::ffmpeg_decode_errors(path),
        "",
        "{}",
        path.display()
    );
}

fn metadata(path: &Path) -> Metadata {
    let s = flv::scan(Cursor::new(fs::read(path).unwrap())).unwrap();
    Metadata::decode(&s.metadata.unwrap().1).unwrap()
}

#[test]
fn fmp4_flv_and_aac_of_one_segment_share_a_base_and_have_a_row_each() {
    let dir = tempfile::tempdir().unwrap();
    let (start, frags) = events(dir.path());
    let root = dir.path().join("root");
    let store = open(&root);
    let base = "cam/2024/cam-1";

    let st = start_for(&start, Format::Fmp4);
    let mut mp4 = store
        .begin(
            &st.meta,
            Path::new(base),
            &[Format::Fmp4],
            &fmp4::encode_init(&st).unwrap(),
        )
        .unwrap();
    for f in &frags {
        mp4.append(&fmp4::encode_fragment(&st, f)).unwrap();
    }
    let (mut flv_w, mut flv_enc) = flv_writer(&store, &start, &frags, base);
    let aac_w = adts_writer(&store, &start, &frags, base);
    // While they grow, FLV and ADTS files end on a page: the tail waits in memory.
    for w in [&flv_w, &aac_w] {
        assert_eq!(w.bytes() % 4096, 0, "{w:?}");
        assert_eq!(
            fs::metadata(root.join(w.row().working_path()))
                .unwrap()
                .len(),
            w.bytes()
        );
    }
    let patch = flv_enc.finish().unwrap();
    flv_w.patch(&patch).unwrap();
    let rows: Vec<SegmentRow> = [mp4, flv_w, aac_w]
        .into_iter()
        .map(|w| w.finish(&close(&start, 4000)).unwrap().unwrap())
        .collect();
    let paths: Vec<PathBuf> = rows.iter().map(|r| r.files[0].path.clone()).collect();
    assert_eq!(
        paths,
        [
            "cam/2024/cam-1.mp4",
            "cam/2024/cam-1.flv",
            "cam/2024/cam-1.aac"
        ]
        .map(PathBuf::from)
    );
    let formats: Vec<Vec<Format>> = rows.iter().map(|r| r.formats.clone()).collect();
    assert_eq!(
        formats,
        [vec![Format::Fmp4], vec![Format::Flv], vec![Format::Aac]]
    );
    assert!(rows
        .iter()
        .all(|r| r.seq == 0 && r.state == SegmentState::Closed));
    assert_consistent(&store);
    for p in &paths {
        decodes(&root.join(p));
    }
    let m = metadata(&root.join(&paths[1]));
    assert_eq!(m.filesize, rows[1].bytes as f64);
    assert!((m.duration - 4.0).abs() < 0.05, "{}", m.duration);
    assert_eq!(store.next_seq("cam").unwrap(), 1);
}

#[test]
fn torn_flv_and_aac_are_cut_to_their_last_tag_and_frame_and_the_flv_patched() {
    let dir = tempfile::tempdir().unwrap();
    let (start, frags) = events(dir.path());
    let root = dir.path().join("root");
    {
        let store = open(&root);
        let (flv_w, _) = flv_writer(&store, &start, &frags[..3], "cam/f");
        let aac_w = adts_writer(&store, &start, &frags[..3], "cam/a");
        // A power cut in the middle of the next write of each.
        for (w, junk) in [(&flv_w, 777), (&aac_w, 333)] {
            let mut f = OpenOptions::new()
                .append(true)
                .open(root.join(w.row().working_path()))
                .unwrap();
            f.write_all(&vec![0x42; junk]).unwrap();
        }
        drop((flv_w, aac_w)); // the task dies without finish
    }
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.recovered.len(), 2, "{report:?}");
    assert_consistent(&store);
    let flv_path = root.join("cam/f.flv");
    let aac_path = root.join("cam/a.aac");
    decodes(&flv_path);
    decodes(&aac_path);
    let bytes = fs::read(&flv_path).unwrap();
    let s = flv::scan(Cursor::new(&bytes)).unwrap();
    assert_eq!(s.complete_end, bytes.len() as u64, "cut at a tag's end");
    let m = metadata(&flv_path);
    assert_eq!(m.filesize, bytes.len() as f64);
    assert!(m.duration > 1.5 && m.duration <= 3.1, "{}", m.duration);
    assert_eq!(m.keyframes.unwrap().len(), s.keyframes.len());
    let aac = fs::read(&aac_path).unwrap();
    let a = adts::scan(Cursor::new(&aac)).unwrap();
    assert_eq!(a.complete_end, aac.len() as u64, "cut at a frame's end");
    for r in &report.recovered {
        assert!(r.recovered);
        assert_eq!(r.meta(), super::fixture::meta("cam", 0));
    }
}

#[test]
fn flv_and_aac_files_alone_rebuild_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (start, frags) = events(dir.path());
    let root = dir.path().join("root");
    let before = {
        let store = open(&root);
        let (mut w, mut enc) = flv_writer(&store, &start, &frags, "cam/x");
        w.patch(&enc.finish().unwrap()).unwrap();
        w.finish(&close(&start, 4000)).unwrap();
        let w = adts_writer(&store, &start, &frags, "cam/x");
        w.finish(&close(&start, 4000)).unwrap();
        // An FLV whose row was lost with a volatile commit, still being written.
        let (w, _) = flv_writer(&store, &start, &frags[..2], "cam/y");
        let part = root.join(w.row().working_path());
        drop(w);
        part
    };
    assert!(before.exists());
    let store = open(&root);
    let report = store.rebuild_index().unwrap();
    assert_eq!(report.adopted.len(), 2, "{report:?}");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    let mut formats: Vec<Format> = store
        .segments()
        .unwrap()
        .iter()
        .map(|r| r.formats[0])
        .collect();
    formats.sort_by_key(|f| f.name());
    assert_eq!(formats, [Format::Aac, Format::Flv, Format::Flv]);
    assert_consistent(&store);
    decodes(&root.join("cam/y.flv"));
}

#[test]
fn closing_a_streams_unfinished_segments_leaves_its_live_writers_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (start, frags) = events(dir.path());
    let store = open(&dir.path().join("root"));
    // Given up on (a stalled writer is dropped, not finished): its row stays `Writing`.
    drop(flv_writer(&store, &start, &frags[..2], "cam/old"));
    // Still recording, in two containers under one base.
    let (mut live, mut enc) = flv_writer(&store, &start, &frags[..2], "cam/new");
    let aac = adts_writer(&store, &start, &frags[..2], "cam/new");

    let report = store.close_unfinished("cam", NOW).unwrap();
    let closed: Vec<&Path> = report.recovered.iter().map(|r| r.base.as_path()).collect();
    assert_eq!(closed, [Path::new("cam/old")], "{report:?}");
    let root = dir.path().join("root");
    assert!(root.join("cam/old.flv").is_file());
    assert!(root.join("cam/new.flv.part").is_file() && root.join("cam/new.aac.part").is_file());

    // The live ones go on and close as usual.
    for f in &frags[2..] {
        live.append(&enc.fragment(f).unwrap()).unwrap();
    }
    live.patch(&enc.finish().unwrap()).unwrap();
    live.finish(&close(&start, 4000)).unwrap().unwrap();
    aac.finish(&close(&start, 4000)).unwrap().unwrap();
    decodes(&root.join("cam/new.flv"));
    decodes(&root.join("cam/new.aac"));
    decodes(&root.join("cam/old.flv"));
    assert_consistent(&store);
}
