//! The recordings table: suspend, resume within the window, finish once it passed.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Store;
use crate::media::format::hls::{self, Recording};
use crate::media::sink::PlaylistFile;
use crate::util::clock::ManualClock;

fn rec() -> Recording {
    Recording {
        app: "live".into(),
        stream: "cam".into(),
        first_seq: 3,
    }
}

fn setup() -> (tempfile::TempDir, Arc<ManualClock>, Store) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_800_000_000_000);
    let store = Store::open_with_clock(dir.path(), clock.clone()).unwrap();
    (dir, clock, store)
}

fn open(store: &Store) -> super::PlaylistWriter {
    let head = |map: &str| hls::head(5, map, &rec());
    store
        .open_playlist(Path::new("cam/a"), b"init", &head, &rec())
        .unwrap()
}

#[test]
fn a_stream_back_within_its_window_continues_the_same_playlist_after_a_discontinuity() {
    let (dir, clock, store) = setup();
    let mut w = open(&store);
    w.append("#EXTINF:2.000,\nseg0.m4s\n").unwrap();
    w.suspend(Duration::from_secs(10)).unwrap();
    drop(w);
    clock.advance(Duration::from_secs(9));
    // Another stream has nothing to resume.
    assert!(store
        .resume_recording("live", "other", 9, b"init")
        .unwrap()
        .is_none());
    let (mut w, lines, listed) = store
        .resume_recording("live", "cam", 9, b"init")
        .unwrap()
        .expect("resumed");
    assert_eq!(w.rel(), Path::new("cam/a.m3u8"));
    assert_eq!(lines, "#EXT-X-DISCONTINUITY\n", "same init: no new map");
    assert_eq!(listed, 2_000);
    w.append(&(lines + "#EXTINF:2.000,\nseg9.m4s\n")).unwrap();
    // The timer finds nothing to finish: the recording has its stream again.
    clock.advance(Duration::from_secs(60));
    assert!(store.finish_expired().unwrap().is_empty());
    w.finish().unwrap();
    let text = fs::read_to_string(dir.path().join("cam/a.m3u8")).unwrap();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1, "{text}");
    assert!(hls::parse(&text).finished, "{text}");
    let (_, e) = store.recordings().unwrap().pop().unwrap();
    assert!(e.finished && e.deadline_ms.is_none(), "{e:?}");
    assert_eq!(e.splices.len(), 1);
    assert_eq!(e.splices[0].seq, 9);
    assert_eq!(e.lines_before(9, Some(0)), "#EXT-X-DISCONTINUITY\n");
    assert_eq!(e.lines_before(10, Some(9)), "");
}

#[test]
fn new_codec_parameters_after_the_gap_get_a_new_init_section_and_map() {
    let (dir, _clock, store) = setup();
    let mut w = open(&store);
    w.suspend(Duration::from_secs(10)).unwrap();
    drop(w);
    let (_, lines, _) = store
        .resume_recording("live", "cam", 4, b"other init")
        .unwrap()
        .expect("resumed");
    assert_eq!(
        lines,
        "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"a-1.init.mp4\"\n"
    );
    assert_eq!(
        fs::read(dir.path().join("cam/a-1.init.mp4")).unwrap(),
        b"other init"
    );
    let (_, e) = store.recordings().unwrap().pop().unwrap();
    assert_eq!(e.map, "a-1.init.mp4");
}

#[test]
fn a_window_that_passes_finishes_the_recording_once_and_nothing_resumes_it() {
    let (dir, clock, store) = setup();
    let mut w = open(&store);
    w.suspend(Duration::from_secs(10)).unwrap();
    drop(w);
    clock.advance(Duration::from_secs(5));
    assert!(store.finish_expired().unwrap().is_empty());
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        store.finish_expired().unwrap(),
        vec![Path::new("cam/a.m3u8").to_path_buf()]
    );
    assert!(store.finish_expired().unwrap().is_empty(), "finished once");
    let text = fs::read_to_string(dir.path().join("cam/a.m3u8")).unwrap();
    assert_eq!(text.matches(hls::ENDLIST).count(), 1, "{text}");
    assert!(store
        .resume_recording("live", "cam", 4, b"init")
        .unwrap()
        .is_none());
}

#[test]
fn a_late_return_finishes_the_waiting_recording_and_opens_none() {
    let (dir, clock, store) = setup();
    let mut w = open(&store);
    w.suspend(Duration::from_secs(10)).unwrap();
    drop(w);
    clock.advance(Duration::from_secs(11));
    // The timer has not run yet: the stream's return finishes it.
    assert!(store
        .resume_recording("live", "cam", 4, b"init")
        .unwrap()
        .is_none());
    let text = fs::read_to_string(dir.path().join("cam/a.m3u8")).unwrap();
    assert!(hls::parse(&text).finished, "{text}");
}

#[test]
fn recovery_drops_an_empty_spliced_recording_with_all_its_init_sections_and_its_entry() {
    let (dir, clock, store) = setup();
    let mut w = open(&store);
    w.suspend(Duration::from_secs(10)).unwrap();
    drop(w);
    store
        .resume_recording("live", "cam", 4, b"other init")
        .unwrap()
        .expect("resumed");
    clock.advance(Duration::from_secs(60));
    assert_eq!(store.recover(0).unwrap().playlists_repaired, 1);
    let left: Vec<_> = fs::read_dir(dir.path().join("cam"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.recordings().unwrap().is_empty());
}

#[test]
fn retention_deletes_a_finished_recording_with_its_playlist_and_every_init_but_no_open_one() {
    let (dir, _clock, store) = setup();
    let mut w = open(&store);
    w.suspend(Duration::from_secs(10)).unwrap();
    drop(w);
    let (mut w, _, _) = store
        .resume_recording("live", "cam", 4, b"other init")
        .unwrap()
        .expect("resumed");
    // Not finished yet: left alone.
    let key = store.recordings().unwrap()[0].0;
    store.delete_recordings(&[key], &[]).unwrap();
    assert!(dir.path().join("cam/a.m3u8").exists());
    w.finish().unwrap();
    // A file that only looks alike stays.
    fs::write(dir.path().join("cam/a-b.init.mp4"), "x").unwrap();
    let freed = store.delete_recordings(&[key], &[]).unwrap();
    assert!(freed > 0);
    let mut left: Vec<_> = fs::read_dir(dir.path().join("cam"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["a-b.init.mp4"]);
    assert!(store.recordings().unwrap().is_empty());
}
