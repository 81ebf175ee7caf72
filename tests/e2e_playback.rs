//! End to end: playback of what was recorded, without HTTP (`edgerec export`, and the
//! library's planners the HTTP API calls). A ~25 s recording in 3 s `.mp4` segments; an
//! exported MP4 cut on key frames decodes clean in ffmpeg and lasts the asked duration
//! within a GOP; a `Range` read of the virtual file is the same bytes as the exported
//! file; an exported VOD playlist of byte ranges is read clean by ffmpeg and plays in
//! hls.js (Chromium) past 10 s, across file boundaries.

mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::{play, StaticServer};
use common::*;
use edgerec::storage::playback::{self, read, resolve_range, RangeReply};
use edgerec::storage::store::Store;

fn export(cfg: &Path, args: &[&str]) -> CliOutput {
    let mut all = vec![
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--stream",
        "cam",
    ];
    all.extend_from_slice(args);
    let out = cli(&all, cfg.parent().unwrap());
    assert_eq!(out.code, 0, "edgerec {all:?}: {}", out.stderr);
    out
}

#[test]
fn recorded_segments_export_as_one_mp4_and_as_a_vod_playlist_that_plays() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("playback");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "3s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let enough = wait_closed(&cfg, &root, "cam", 8, Duration::from_secs(60));
    let log = stop_clean(&mut daemon);
    assert!(enough, "{:#?}\nlog:\n{log}", segments(&cfg));
    let rows = segments(&cfg);
    let closed = closed_of(&rows, "cam");
    let gop_s = spec.gop_ms() / 1000.0;

    // One MP4 from mid-GOP in the second segment, 10 s: past two file boundaries.
    let start = closed[1].start_ms + 1300;
    let out = dir.path().join("clip.mp4");
    let out_s = out.to_str().unwrap().to_owned();
    let said = export(
        &cfg,
        &[
            "--start",
            &start.to_string(),
            "--duration",
            "10s",
            "-o",
            &out_s,
        ],
    );
    assert_decodes(&out);
    let p = probe(&out);
    let v = p.stream("video").expect("a video stream");
    assert!(
        (v.duration - 10.0).abs() <= gop_s,
        "asked 10 s, got {} s: {}\n{p:?}",
        v.duration,
        said.stdout
    );
    assert!(p.stream("audio").is_some(), "{p:?}");
    // Its pictures are the recording's, in one run from a key frame: none lost or doubled
    // at the file boundaries (the clip's pattern changes every frame). Timestamps are not
    // compared: the looped source itself leaves a gap of an audio frame at each loop.
    assert!(video_packets(&out)[0].key);
    let recorded: Vec<String> = closed
        .iter()
        .flat_map(|r| frame_hashes(&root.join(&r.files[0].path)))
        .collect();
    let cut_frames = frame_hashes(&out);
    assert!(
        recorded
            .windows(cut_frames.len())
            .any(|w| w == cut_frames.as_slice()),
        "the cut's {} frames are not a run of the recording's {}",
        cut_frames.len(),
        recorded.len()
    );

    // The planners the HTTP API calls: the same cut, and Range reads of it.
    let whole = std::fs::read(&out).unwrap();
    let store = Store::open(&root).unwrap();
    let index_rows = store.segments().unwrap();
    drop(store);
    let files = read::load(&root, &index_rows, "cam", start, start + 10_000).unwrap();
    let cut = playback::mp4_cut(&files, start, 10_000).unwrap();
    assert_eq!(cut.len(), whole.len() as u64);
    assert!(said.stdout.contains(cut.etag()), "{}", said.stdout);
    let len = cut.len();
    for header in [
        "bytes=1000-50000",
        "bytes=-4096",
        &format!("bytes={}-", len / 2),
    ] {
        let RangeReply::Partial(r) = resolve_range(Some(header), len) else {
            panic!("{header}: not a partial answer");
        };
        let bytes = read::read_pieces(&cut.read_range(r.clone())).unwrap();
        assert!(
            bytes == whole[r.start as usize..r.end as usize],
            "{header}: {} bytes differ",
            bytes.len()
        );
    }
    assert_eq!(
        resolve_range(Some(&format!("bytes={len}-")), len),
        RangeReply::Unsatisfiable
    );

    // Bad input: a clear error naming what is wrong, and no output file.
    let cfg_s = cfg.to_str().unwrap();
    let nothing = dir.path().join("nothing.mp4");
    let future = (closed[0].start_ms + 3_600_000).to_string();
    for (args, needle) in [
        (
            vec!["--start", future.as_str(), "--duration", "5s"],
            "nothing recorded",
        ),
        (vec!["--start", "yesterday", "--duration", "5s"], "--start"),
        (
            vec!["--start", future.as_str(), "--duration", "5 parsecs"],
            "--duration",
        ),
    ] {
        let mut all = vec!["export", "--config", cfg_s, "--stream", "cam", "-o"];
        all.push(nothing.to_str().unwrap());
        all.extend(args);
        let out = cli(&all, dir.path());
        assert_ne!(out.code, 0, "{all:?}: {}", out.stdout);
        assert!(out.stderr.contains(needle), "{all:?}: {}", out.stderr);
        assert!(!nothing.exists() && !dir.path().join("nothing.mp4.tmp").exists());
    }

    // A VOD playlist of 20 s, beside the recordings (URIs relative to it).
    let from = closed[0].start_ms + 500;
    let pl_path = root.join("cam-vod.m3u8");
    export(
        &cfg,
        &[
            "--start",
            &from.to_string(),
            "--end",
            &(from + 20_000).to_string(),
            "--m3u8",
            pl_path.to_str().unwrap(),
        ],
    );
    let pl = Playlist::read(&pl_path);
    let t = &pl.text;
    assert!(pl.ended, "{t}");
    assert!(t.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{t}");
    assert!(pl.entries.len() >= 7, "{t}");
    assert_eq!(
        t.matches("#EXT-X-DISCONTINUITY\n").count(),
        pl.entries.len() - 1,
        "each .mp4 restarts its timeline: {t}"
    );
    for e in &pl.entries {
        assert!(e.has_program_date_time, "{t}");
        assert!(e.extinf_s.ceil() as u64 <= pl.target_s, "{t}");
        assert!(root.join(pl.file_of(e, &root)).is_file(), "{e:?}");
    }
    assert!((pl.duration_s() - 20.0).abs() <= 2.0 * gop_s, "{t}");
    assert_decodes(&pl_path);

    // hls.js in Chromium plays it past 10 s, across at least three file boundaries.
    let server = StaticServer::start(&root);
    let r = play(&server.url("cam-vod.m3u8"), "hls", 10.5);
    assert_eq!(r["ok"], true, "hls.js: {r:#}\n{t}");
}
