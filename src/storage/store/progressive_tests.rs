//! Tests of the progressive outputs (`mp4` alone or beside `fmp4`): closes, crash
//! leftovers and rebuild, every file checked by ffmpeg.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::fixture;
use super::tests::{
    assert_consistent, assert_decodes, files, from_files, open, record, write, NOW,
};
use crate::media::format::Format;

#[test]
fn fmp4_and_mp4_make_two_decodable_files_in_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    let store = open(&root);
    let row = record(&store, &clip, "cam/both", &[Format::Fmp4, Format::Mp4], 3);
    let paths: Vec<_> = row
        .files
        .iter()
        .map(|f| (f.format, f.path.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![
            (Format::Fmp4, PathBuf::from("cam/both.mp4")),
            (Format::Mp4, PathBuf::from("cam/both.progressive.mp4")),
        ]
    );
    assert_consistent(&store);
    assert_decodes(&root.join("cam/both.mp4"), 75);
    assert_decodes(&root.join("cam/both.progressive.mp4"), 75);

    let before = store.segments().unwrap();
    store.rebuild_index().unwrap();
    let after = store.segments().unwrap();
    assert_eq!(
        after.iter().map(from_files).collect::<Vec<_>>(),
        before.iter().map(from_files).collect::<Vec<_>>(),
        "both files are adopted into one row"
    );
}

#[test]
fn mp4_only_leaves_just_the_progressive_file() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    let store = open(&root);
    let row = record(&store, &clip, "cam/p", &[Format::Mp4], 2);
    assert_eq!(row.files.len(), 1);
    assert_eq!(row.files[0].path, PathBuf::from("cam/p.mp4"));
    assert_eq!(files(&root), vec![PathBuf::from("cam/p.mp4")]);
    assert_decodes(&root.join("cam/p.mp4"), 50);

    let before = store.segments().unwrap();
    store.rebuild_index().unwrap();
    assert_eq!(
        store
            .segments()
            .unwrap()
            .iter()
            .map(from_files)
            .collect::<Vec<_>>(),
        before.iter().map(from_files).collect::<Vec<_>>()
    );
}

#[test]
fn mp4_only_working_file_left_after_the_close_commit_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 1);
    let root = dir.path().join("root");
    let row = {
        let store = open(&root);
        let row = record(&store, &clip, "cam/p", &[Format::Mp4], 1);
        // The crash came between the Closed commit and the removal of the working file.
        let mut fmp4 = clip.init.clone();
        fmp4.extend_from_slice(&clip.fragments[0]);
        fs::write(root.join("cam/p.mp4.part"), fmp4).unwrap();
        row
    };
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.removed, vec![PathBuf::from("cam/p.mp4.part")]);
    assert!(report.recovered.is_empty() && report.adopted.is_empty());
    assert_eq!(store.segments().unwrap(), vec![row]);
    assert_consistent(&store);
}

#[test]
fn torn_segment_asking_for_mp4_gets_its_progressive_copy_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 3);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(
            &store,
            &clip,
            "cam/t",
            &[Format::Fmp4, Format::Mp4],
            2,
        ));
        let mut f = OpenOptions::new()
            .append(true)
            .open(root.join("cam/t.mp4.part"))
            .unwrap();
        f.write_all(&clip.fragments[2][..100]).unwrap();
    }
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.recovered.len(), 1);
    assert_eq!(report.recovered[0].files.len(), 2);
    assert_consistent(&store);
    assert_decodes(&root.join("cam/t.mp4"), 50);
    assert_decodes(&root.join("cam/t.progressive.mp4"), 50);
}

#[test]
fn progressive_temporary_left_by_a_crash_is_removed_and_remade() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture::clip(dir.path(), 2);
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(
            &store,
            &clip,
            "cam/m",
            &[Format::Fmp4, Format::Mp4],
            2,
        ));
        // Close got past the fMP4 rename and died while writing the progressive copy.
        fs::rename(root.join("cam/m.mp4.part"), root.join("cam/m.mp4")).unwrap();
        fs::write(root.join("cam/m.progressive.mp4.part"), &clip.init[..40]).unwrap();
    }
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(
        report.removed,
        vec![PathBuf::from("cam/m.progressive.mp4.part")]
    );
    assert_eq!(report.adopted.len(), 1, "{report:?}");
    assert_eq!(report.adopted[0].files.len(), 2);
    assert_consistent(&store);
    assert_decodes(&root.join("cam/m.progressive.mp4"), 50);
}

#[test]
fn torn_mp4_only_segment_whose_row_was_lost_is_finished_as_its_file_asks() {
    let dir = tempfile::tempdir().unwrap();
    let mut clip = fixture::clip(dir.path(), 3);
    // The init records the formats, as the recorder's store sink writes it.
    clip.start.meta.formats = vec![Format::Mp4];
    clip.init = crate::media::format::fmp4::encode_init(&clip.start).unwrap();
    let root = dir.path().join("root");
    {
        let store = open(&root);
        drop(write(&store, &clip, "cam/lost", &[Format::Mp4], 2));
    }
    // The Writing row is committed without waiting for the disk; a power cut can lose it.
    // Losing the whole index is the harshest form of that.
    fs::remove_file(root.join("index.redb")).unwrap();
    let store = open(&root);
    let report = store.recover(NOW).unwrap();
    assert_eq!(report.recovered.len(), 1);
    let row = &report.recovered[0];
    assert_eq!(row.formats, vec![Format::Mp4]);
    assert_eq!(
        files(&root),
        vec![PathBuf::from("cam/lost.mp4")],
        "only the progressive file is left"
    );
    assert_consistent(&store);
    assert_decodes(&root.join("cam/lost.mp4"), 50);
    // Walk the top-level boxes: moov must come before mdat.
    let bytes = fs::read(root.join("cam/lost.mp4")).unwrap();
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    let pos = |t: &str| boxes.iter().position(|b| b == t);
    assert!(pos("moov").unwrap() < pos("mdat").unwrap(), "{boxes:?}");
}
