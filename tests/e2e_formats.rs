//! End to end: what edgerec writes for each output format, codec, transport and naming
//! template. `formats = ["fmp4", "mp4"]` and `["mp4"]` (box order checked by a plain walk),
//! H.265 + AAC and RTP over UDP from the RTSP peer, a camera that comes back with another
//! resolution, and the `{app}` / `{seq}` naming variables. Every file is decoded by ffmpeg
//! and probed by ffprobe.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Index of the first top-level box `kind`, if any.
fn box_at(boxes: &[String], kind: &str) -> Option<usize> {
    boxes.iter().position(|b| b == kind)
}

/// Asserts a progressive MP4: `ftyp`, then `moov` before `mdat`, and no fragment.
fn assert_progressive(path: &Path) {
    let boxes = top_level_boxes(path);
    let (moov, mdat) = (box_at(&boxes, "moov"), box_at(&boxes, "mdat"));
    assert_eq!(boxes.first().map(String::as_str), Some("ftyp"), "{boxes:?}");
    assert!(
        moov.is_some() && mdat.is_some() && moov < mdat,
        "{}: moov must come before mdat: {boxes:?}",
        path.display()
    );
    assert!(
        box_at(&boxes, "moof").is_none(),
        "{}: a progressive MP4 has no fragments: {boxes:?}",
        path.display()
    );
}

/// Asserts a fragmented MP4: `ftyp`, `moov`, then `moof`+`mdat` pairs only.
fn assert_fragmented(path: &Path) {
    let boxes = top_level_boxes(path);
    assert_eq!(boxes.first().map(String::as_str), Some("ftyp"), "{boxes:?}");
    let moov = box_at(&boxes, "moov").expect("moov");
    let moof = box_at(&boxes, "moof").unwrap_or_else(|| {
        panic!(
            "{}: an fMP4 segment has fragments: {boxes:?}",
            path.display()
        )
    });
    assert!(
        moov < moof,
        "{}: init after a fragment: {boxes:?}",
        path.display()
    );
    let (frags, end) = complete_fragments(path);
    assert!(frags >= 1, "{}: no complete fragment", path.display());
    assert_eq!(
        end,
        std::fs::metadata(path).unwrap().len(),
        "{}: bytes after the last complete fragment",
        path.display()
    );
}

/// Decodes `path` cleanly, probes it: `video` codec of `width` with AAC audio, first packet
/// a key frame. Returns the video span in seconds.
fn assert_media(path: &Path, video: &str, width: u64) -> f64 {
    assert_decodes(path);
    let p = probe(path);
    let v = p
        .stream("video")
        .unwrap_or_else(|| panic!("{}: no video: {p:?}", path.display()));
    assert_eq!(v.codec_name, video, "{}: {p:?}", path.display());
    assert_eq!(v.width, Some(width), "{}: {p:?}", path.display());
    let a = p
        .stream("audio")
        .unwrap_or_else(|| panic!("{}: no audio: {p:?}", path.display()));
    assert_eq!(a.codec_name, "aac", "{}: {p:?}", path.display());
    assert_eq!(a.sample_rate, Some(48000), "{}: {p:?}", path.display());
    assert!(
        video_packets(path).first().is_some_and(|p| p.key),
        "{}: does not start on a key frame",
        path.display()
    );
    video_span(path)
}

/// The end of a clean run: every row closed, the files under the root are exactly the
/// indexed ones (no working file, no progressive temporary, nothing else).
fn check_store(root: &Path, cfg: &Path) -> Vec<SegmentRow> {
    let rows = segments(cfg);
    assert_index_matches_disk(root, &rows);
    assert!(
        rows.iter().all(|r| r.state == "closed"),
        "rows not closed after a clean stop: {rows:?}"
    );
    let indexed: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.files.iter().map(|f| f.path.clone()))
        .collect();
    let on_disk: BTreeSet<String> = files_under(root).into_iter().collect();
    assert_eq!(
        on_disk, indexed,
        "files under the root besides the segments"
    );
    rows
}

/// A config with 2 s segments and 500 ms fragments.
fn short(root: &Path) -> TestConfig {
    TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(root)
    }
}

/// Records `cfg` until `stream` has `n` closed segments (at most 30 s), then stops cleanly
/// and returns the log.
fn record(cfg: &Path, root: &Path, stream: &str, n: usize) -> String {
    let mut daemon = Daemon::start(cfg);
    let enough = wait_closed(cfg, root, stream, n, Duration::from_secs(30));
    let log = stop_clean(&mut daemon);
    assert!(enough, "fewer than {n} segments of {stream}; log:\n{log}");
    log
}

#[test]
fn fmp4_and_mp4_give_an_fmp4_and_a_moov_first_copy_of_every_segment() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("formats_both");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: vec!["fmp4".into(), "mp4".into()],
        ..short(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    record(&cfg, &root, "cam", 3);

    let rows = check_store(&root, &cfg);
    assert!(rows.len() >= 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r.files.len(), 2, "one file per format: {r:?}");
        let frag = r.files.iter().find(|f| f.format == "fmp4").expect("fmp4");
        let prog = r.files.iter().find(|f| f.format == "mp4").expect("mp4");
        assert!(
            frag.path.ends_with(".mp4") && !frag.path.ends_with(".progressive.mp4"),
            "{r:?}"
        );
        let base = frag.path.strip_suffix(".mp4").unwrap();
        assert_eq!(prog.path, format!("{base}.progressive.mp4"), "{r:?}");

        let (frag_path, prog_path) = (root.join(&frag.path), root.join(&prog.path));
        assert_fragmented(&frag_path);
        assert_progressive(&prog_path);
        let frag_span = assert_media(&frag_path, "h264", 320);
        let prog_span = assert_media(&prog_path, "h264", 320);
        assert!(
            (frag_span - prog_span).abs() * 1000.0 <= spec.frame_ms() + 1.0,
            "{base}: fMP4 lasts {frag_span:.3} s, progressive {prog_span:.3} s"
        );
        // The same pictures, not only the same length.
        assert_eq!(
            frame_hashes(&frag_path),
            frame_hashes(&prog_path),
            "{base}: the two files decode to different pictures"
        );
    }
}

#[test]
fn mp4_alone_gives_only_moov_first_files_named_mp4() {
    let clip = clip(&ClipSpec::h264(10, 1));
    let dir = workdir("formats_mp4");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: vec!["mp4".into()],
        ..short(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    record(&cfg, &root, "cam", 3);

    let rows = check_store(&root, &cfg);
    assert!(rows.len() >= 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r.files.len(), 1, "only the progressive file: {r:?}");
        let f = &r.files[0];
        assert_eq!(f.format, "mp4", "{r:?}");
        assert!(
            f.path.ends_with(".mp4") && !f.path.ends_with(".progressive.mp4"),
            "mp4 alone is named .mp4: {r:?}"
        );
        let path = root.join(&f.path);
        assert_progressive(&path);
        let span = assert_media(&path, "h264", 320);
        assert!(
            (span * 1000.0 - r.duration_ms as f64).abs() <= 41.0,
            "{}: index says {} ms, ffprobe {span:.3} s",
            f.path,
            r.duration_ms
        );
    }
}

#[test]
fn h265_and_aac_over_rtsp_record_as_hevc_and_aac_cut_at_every_key_frame() {
    // libx265 (open GOP by default) makes the first key frame an IDR and the later ones,
    // once a second here, CRA pictures; without B-frames a CRA has no leading pictures, so
    // decoding can start there exactly as at an IDR, and ffmpeg marks both as key frames.
    let spec = ClipSpec {
        codec: "h265",
        ..ClipSpec::h264(10, 1)
    };
    let clip = clip(&spec);
    assert_eq!(probe(&clip).stream("video").unwrap().codec_name, "hevc");
    let keys = video_packets(&clip).iter().filter(|p| p.key).count();
    assert_eq!(keys, 10, "one key frame a second in the clip");
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let dir = workdir("formats_h265");
    let root = dir.path().join("data");
    let cfg = short(&root)
        .stream("cam", &peer.url("/cam"))
        .write(&dir.path().join("edgerec.toml"));
    record(&cfg, &root, "cam", 2);

    let rows = check_store(&root, &cfg);
    assert!(rows.len() >= 3, "{rows:?}");
    let mut spans = Vec::new();
    for r in &rows {
        let path = root.join(&r.files[0].path);
        assert_fragmented(&path);
        let span = assert_media(&path, "hevc", 320);
        assert!(
            (span * 1000.0 - r.duration_ms as f64).abs() <= spec.frame_ms() + 1.0,
            "{}: index says {} ms, ffprobe {span:.3} s",
            r.files[0].path,
            r.duration_ms
        );
        spans.push((r.files[0].path.clone(), span));
    }
    // Cut on the first key frame after the 2 s interval, as for H.264: at most one GOP
    // (1 s) later. The last segment was closed by the shutdown.
    let limit = 2.0 + spec.gop_ms() / 1000.0 + spec.frame_ms() / 1000.0;
    for (path, span) in &spans[..spans.len() - 1] {
        assert!(
            *span <= limit,
            "{path}: {span:.3} s long; segments must be cut at the first key frame \
             (IDR or CRA) after the 2 s interval: {spans:?}"
        );
    }
}

#[test]
fn rtsp_over_udp_records_valid_segments() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let dir = workdir("formats_udp");
    let root = dir.path().join("data");
    let cfg = short(&root)
        .stream("cam", &format!("{}?transport=udp", peer.url("/cam")))
        .write(&dir.path().join("edgerec.toml"));
    let log = strip_ansi(&record(&cfg, &root, "cam", 3));
    assert!(
        log.lines()
            .any(|l| l.contains("RTSP session playing") && l.contains("transport=Udp")),
        "the session should have been set up over UDP; log:\n{log}"
    );

    let rows = check_store(&root, &cfg);
    assert!(rows.len() >= 3, "{rows:?}");
    for (i, r) in rows.iter().enumerate() {
        let path = root.join(&r.files[0].path);
        assert_fragmented(&path);
        let span = assert_media(&path, "h264", 320);
        if i + 1 < rows.len() {
            assert!(
                span * 1000.0 >= 2000.0 - spec.frame_ms(),
                "{}: {span:.3} s is shorter than the 2 s interval (frames lost?)",
                r.files[0].path
            );
        }
    }
}

#[test]
fn a_camera_back_with_another_resolution_gets_new_segments_of_the_new_size() {
    let small = clip(&ClipSpec::h264(20, 1));
    let large = clip(&ClipSpec {
        width: 640,
        height: 480,
        ..ClipSpec::h264(10, 1)
    });
    let peer = RtspPeer::start(&[("/cam", &small)]);
    let port = peer.port;
    let dir = workdir("formats_resize");
    let root = dir.path().join("data");
    let cfg = short(&root)
        .stream("cam", &peer.url("/cam"))
        .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "cam", 2, Duration::from_secs(25)),
        "nothing recorded; log:\n{}",
        daemon.log()
    );
    drop(peer);
    std::thread::sleep(Duration::from_secs(1));
    let back_ms = now_ms();
    let _peer = RtspPeer::start_on(port, &[("/cam", &large)], None);
    let resized = wait_until(Duration::from_secs(40), || {
        closed_of(&segments(&cfg), "cam")
            .iter()
            .filter(|r| r.start_ms >= back_ms)
            .count()
            >= 2
    });
    let log = stop_clean(&mut daemon);
    assert!(
        resized,
        "no segments after the camera came back; log:\n{log}"
    );

    let rows = check_store(&root, &cfg);
    let (mut old, mut new) = (0, 0);
    for r in &rows {
        let path = root.join(&r.files[0].path);
        assert_fragmented(&path);
        let (w, size) = if r.start_ms < back_ms {
            old += 1;
            (320, "320x240")
        } else {
            new += 1;
            (640, "640x480")
        };
        assert_media(&path, "h264", w);
        assert_eq!(
            frame_sizes(&path),
            BTreeSet::from([size.to_owned()]),
            "{}: every frame of a segment has the size of its init",
            r.files[0].path
        );
    }
    assert!(old >= 2 && new >= 2, "{rows:#?}");
}

#[test]
fn app_and_seq_naming_variables_give_the_expected_paths() {
    let clip = clip(&ClipSpec::h264(10, 1));
    let dir = workdir("formats_naming");
    let root = dir.path().join("data");
    let source = format!("file:{}?loop=true", clip.display());
    let cfg = TestConfig {
        naming: "rec/{app}/{stream}/{stream}-{seq}".into(),
        ..short(&root)
    }
    .stream("lobbycam", &source)
    .stream("plaincam", &source);
    // TestConfig has no `app`; give the first stream one.
    let toml = cfg.to_toml().replace(
        "name = \"lobbycam\"\n",
        "name = \"lobbycam\"\napp = \"lobby\"\n",
    );
    assert!(toml.contains("app = \"lobby\""), "{toml}");
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();

    let mut daemon = Daemon::start(&cfg);
    let enough = wait_closed(&cfg, &root, "lobbycam", 2, Duration::from_secs(25))
        && wait_closed(&cfg, &root, "plaincam", 2, Duration::from_secs(10));
    let log = stop_clean(&mut daemon);
    assert!(enough, "too few segments; log:\n{log}");

    let rows = check_store(&root, &cfg);
    let mut expected = BTreeSet::new();
    for (stream, dir) in [
        ("lobbycam", "rec/lobby/lobbycam"),
        ("plaincam", "rec/plaincam"),
    ] {
        let mine = closed_of(&rows, stream);
        assert!(mine.len() >= 2, "{rows:?}");
        let seqs: Vec<u64> = mine.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (0..mine.len() as u64).collect::<Vec<_>>(),
            "a fresh root numbers {stream}'s segments from 0"
        );
        for r in mine {
            let want = format!("{dir}/{stream}-{}.mp4", r.seq);
            assert_eq!(r.files.len(), 1, "{r:?}");
            assert_eq!(r.files[0].path, want, "{r:?}");
            assert_media(&root.join(&want), "h264", 320);
            expected.insert(want);
        }
    }
    let on_disk: BTreeSet<String> = files_under(&root).into_iter().collect();
    assert_eq!(on_disk, expected);
}
