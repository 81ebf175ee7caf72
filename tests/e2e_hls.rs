//! End to end: HLS beside fMP4, from one segmenter. A recording is one playlist (RFC 8216
//! version 7, EVENT while recording, ENDLIST once finished) naming `.m4s` media segments;
//! ffmpeg reads it clean with a continuous timeline, hls.js plays it in Chromium, and a
//! `kill -9` mid-recording leaves, after the restart, playlists whose every entry has its
//! file and whose every file is in a playlist, and retention deletes whole recordings, so
//! no playlist left names a deleted file.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::browser::{play, StaticServer};
use common::*;

/// The files of the closed `.m4s` rows of `stream`, in recording order.
fn m4s_files(rows: &[SegmentRow], stream: &str) -> Vec<String> {
    let mut rows: Vec<&SegmentRow> = closed_of(rows, stream)
        .into_iter()
        .filter(|r| r.files[0].format == "hls")
        .collect();
    rows.sort_by_key(|r| r.seq);
    rows.iter().map(|r| r.files[0].path.clone()).collect()
}

#[test]
fn an_hls_recording_lists_every_segment_plays_in_ffmpeg_and_in_hls_js() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("hls-record");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: vec!["fmp4".into(), "hls".into()],
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    // Four segments (8 s of media): an fMP4 and an .m4s row each.
    let enough = wait_closed(&cfg, &root, "cam", 8, Duration::from_secs(40));
    // While recording: an EVENT playlist, not finished, listing only closed segments.
    let live = playlists(&root);
    let log = stop_clean(&mut daemon);
    assert!(enough, "{:#?}\nlog:\n{log}", segments(&cfg));
    assert_eq!(live.len(), 1, "{live:#?}");
    assert!(!live[0].ended, "ENDLIST while recording:\n{}", live[0].text);
    live[0].check(&root);

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let pls = playlists(&root);
    assert_eq!(pls.len(), 1, "one recording: {pls:#?}");
    let pl = &pls[0];
    assert!(pl.ended, "no ENDLIST after the stop:\n{}", pl.text);
    pl.check(&root);
    assert_eq!(pl.target_s, 5, "2 × 2 s interval, rounded up, + 1");
    // Exactly the closed .m4s files, in order; each EXTINF is its row's duration.
    let listed: Vec<String> = pl.entries.iter().map(|e| pl.file_of(e, &root)).collect();
    assert_eq!(listed, m4s_files(&rows, "cam"), "{}", pl.text);
    assert!(listed.len() >= 4, "{}", pl.text);
    for (e, path) in pl.entries.iter().zip(&listed) {
        let row = rows.iter().find(|r| r.files[0].path == *path).unwrap();
        assert!(
            (e.extinf_s * 1000.0 - row.duration_ms as f64).abs() < 1.0,
            "{e:?} {row:?}"
        );
        // Each .m4s is also a whole fMP4 any player opens.
        assert_decodes(&root.join(path));
    }
    // Every other file format of the template is there too (one segmenter for both).
    let fmp4: BTreeSet<i64> = closed_of(&rows, "cam")
        .iter()
        .filter(|r| r.files[0].format == "fmp4")
        .map(|r| r.start_ms)
        .collect();
    let hls: BTreeSet<i64> = closed_of(&rows, "cam")
        .iter()
        .filter(|r| r.files[0].format == "hls")
        .map(|r| r.start_ms)
        .collect();
    assert_eq!(fmp4, hls);
    assert_playlist_plays(pl, spec.gop_ms() / 1000.0);

    // hls.js in Chromium, from a static HTTP server.
    let server = StaticServer::start(&root);
    let rel = pl.path.strip_prefix(&root).unwrap().to_str().unwrap();
    let r = play(&server.url(rel), "hls", 5.0);
    assert_eq!(r["ok"], true, "hls.js: {r:#}\n{}", pl.text);
}

#[test]
fn kill_9_mid_recording_then_restart_leaves_playlists_with_every_file_and_no_other() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("hls-kill");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: vec!["hls".into()],
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    // Two segments listed, and the third being written.
    let listed_and_writing = wait_until(Duration::from_secs(30), || {
        playlists(&root)
            .first()
            .is_some_and(|p| p.entries.len() >= 2)
            && part_files(&root).iter().any(|p| {
                p.ends_with(".m4s.part")
                    && std::fs::metadata(root.join(p)).is_ok_and(|m| m.len() > 20_000)
            })
    });
    assert!(listed_and_writing, "log:\n{}", daemon.log());
    daemon.kill9();
    let torn = playlists(&root);
    assert_eq!(torn.len(), 1, "{torn:#?}");
    assert!(!torn[0].ended, "{}", torn[0].text);
    // Only durable segments are listed: every entry's file is there, closed, and decodes.
    torn[0].check(&root);
    for e in &torn[0].entries {
        assert_decodes(&root.join(torn[0].file_of(e, &root)));
    }

    let mut daemon = Daemon::start(&cfg);
    let recovered = wait_until(Duration::from_secs(20), || {
        root.join("control.sock").exists() && segments(&cfg).iter().any(|r| r.recovered)
    });
    // The new run's own recording gets a segment or two.
    let n = segments(&cfg).len();
    let more = wait_closed(&cfg, &root, "cam", n + 1, Duration::from_secs(20));
    let log = stop_clean(&mut daemon);
    assert!(recovered && more, "{:#?}\nlog:\n{log}", segments(&cfg));
    assert!(part_files(&root).is_empty(), "{:?}", part_files(&root));
    assert!(
        !files_under(&root).iter().any(|p| p.ends_with(".tmp")),
        "{:?}",
        files_under(&root)
    );

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let pls = playlists(&root);
    assert_eq!(
        pls.len(),
        2,
        "the killed recording and the restarted one: {pls:#?}"
    );
    let mut listed = Vec::new();
    for pl in &pls {
        assert!(pl.ended, "{}", pl.text);
        pl.check(&root);
        assert_playlist_plays(pl, spec.gop_ms() / 1000.0);
        listed.extend(pl.entries.iter().map(|e| pl.file_of(e, &root)));
    }
    // The killed recording kept its listed entries and gained the recovered segment.
    let first = &pls[0];
    assert!(
        first.entries.len() > torn[0].entries.len(),
        "{}",
        first.text
    );
    for (a, b) in torn[0].entries.iter().zip(&first.entries) {
        assert_eq!(a.uri, b.uri);
    }
    // No file outside a playlist, none listed twice.
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "{listed:?}");
    let mut all = m4s_files(&rows, "cam");
    all.sort();
    assert_eq!(sorted, all);
}

#[test]
fn a_recording_rolls_over_to_a_new_playlist_at_playlist_max_length() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("hls-rollover");
    let root = dir.path().join("data");
    let toml = TestConfig {
        formats: vec!["hls".into()],
        interval: "1s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .to_toml()
    .replacen(
        "\n[[rules]]",
        "playlist_max_length = \"2s\"\n\n[[rules]]",
        1,
    );
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut daemon = Daemon::start(&cfg);
    let two = wait_until(Duration::from_secs(30), || {
        playlists(&root).iter().filter(|p| p.ended).count() >= 2
    });
    let log = stop_clean(&mut daemon);
    assert!(two, "{:#?}\nlog:\n{log}", playlists(&root));
    let rows = segments(&cfg);
    let pls = playlists(&root);
    let mut listed = Vec::new();
    for pl in &pls {
        assert!(pl.ended, "{}", pl.text);
        pl.check(&root);
        assert_eq!(pl.target_s, 3, "{}", pl.text);
        // Finished at the first close that reached 2 s (the last one by the stop).
        let before_last = pl.duration_s() - pl.entries.last().map_or(0.0, |e| e.extinf_s);
        assert!(before_last < 2.0, "{}", pl.text);
        assert_playlist_plays(pl, spec.gop_ms() / 1000.0);
        listed.extend(pl.entries.iter().map(|e| pl.file_of(e, &root)));
    }
    let full = pls.iter().filter(|p| p.duration_s() >= 2.0).count();
    assert!(full >= 2, "{pls:#?}");
    listed.sort();
    let mut all = m4s_files(&rows, "cam");
    all.sort();
    assert_eq!(listed, all, "every .m4s in exactly one playlist");
}

#[test]
fn retention_deletes_whole_recordings_so_every_playlist_left_names_only_existing_files() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("hls-retention");
    let root = dir.path().join("data");
    // 1 s segments of about 100 KB, recordings of 2 s: 600 KiB holds a few recordings.
    let toml = TestConfig {
        formats: vec!["hls".into()],
        interval: "1s".into(),
        fragment: "500ms".into(),
        max_bytes: "600KiB".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .to_toml()
    .replacen(
        "\n[[rules]]",
        "playlist_max_length = \"2s\"\n\n[[rules]]",
        1,
    );
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut daemon = Daemon::start(&cfg);
    // Recording until the first recording was deleted (its first segment, seq 0, is gone).
    let evicted = wait_until(Duration::from_secs(40), || {
        if !root.join("control.sock").exists() {
            return false;
        }
        let rows = segments(&cfg);
        rows.iter().any(|r| r.seq >= 10) && !rows.iter().any(|r| r.seq == 0)
    });
    let log = stop_clean(&mut daemon);
    assert!(evicted, "{:#?}\nlog:\n{log}", segments(&cfg));
    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let pls = playlists(&root);
    assert!(!pls.is_empty());
    let mut listed = Vec::new();
    for pl in &pls {
        // Every entry's file exists, and ffmpeg reads the playlist clean.
        pl.check(&root);
        assert!(pl.ended, "{}", pl.text);
        assert_decodes(&pl.path);
        listed.extend(pl.entries.iter().map(|e| pl.file_of(e, &root)));
    }
    // Whole recordings went: every .m4s left is in a playlist, and no init is orphaned.
    listed.sort();
    let mut all = m4s_files(&rows, "cam");
    all.sort();
    assert_eq!(listed, all);
    let inits = files_under(&root)
        .into_iter()
        .filter(|f| f.ends_with(".init.mp4"))
        .count();
    assert_eq!(inits, pls.len(), "{:?}", files_under(&root));
}
