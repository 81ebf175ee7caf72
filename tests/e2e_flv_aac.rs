//! End to end: FLV and ADTS AAC beside fMP4, from one segmenter. `formats = ["fmp4", "flv",
//! "aac"]` gives three files per segment under one base, each with its own row and upload;
//! the FLV's onMetaData agrees with ffprobe and with the tests' own FLV walk (duration,
//! size, key frame index), and the `.aac` is audio only. A `kill -9` in the middle of an FLV
//! leaves a file that, after the restart, plays to its last complete tag with patched
//! metadata. A codec a format cannot hold is refused with the reason.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `edgerec segments --json` as plain JSON (the upload state is not in [`SegmentRow`]).
fn raw_rows(cfg: &Path) -> Vec<serde_json::Value> {
    let out = cli(
        &["segments", "--config", cfg.to_str().unwrap(), "--json"],
        cfg.parent().unwrap(),
    );
    serde_json::from_str(&out.stdout).unwrap_or_default()
}

/// The format of a row (its first file's).
fn format(r: &SegmentRow) -> &str {
    r.files[0].format.as_str()
}

#[test]
fn fmp4_flv_and_aac_come_from_one_segmenter_each_with_its_row_and_upload() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("formats-flv-aac");
    let root = dir.path().join("data");
    let uploads = dir.path().join("uploads");
    let base = TestConfig {
        formats: vec!["fmp4".into(), "flv".into(), "aac".into()],
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()));
    let toml = base
        .to_toml()
        .replacen("\n[[rules]]", "upload = \"vod\"\n\n[[rules]]", 1)
        + &format!(
            "\n[upload]\n[[upload.targets]]\nname = \"vod\"\nurl = \"file://{}\"\nkey = \"{{stream}}/{{file}}\"\n",
            uploads.display()
        );
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut daemon = Daemon::start(&cfg);
    // Three segments: three rows each.
    let enough = wait_closed(&cfg, &root, "cam", 9, Duration::from_secs(40));
    let uploaded = wait_until(Duration::from_secs(20), || {
        let rows = raw_rows(&cfg);
        let closed: Vec<_> = rows.iter().filter(|r| r["state"] == "closed").collect();
        closed.len() >= 9 && closed.iter().all(|r| r["upload"].get("uploaded").is_some())
    });
    let log = stop_clean(&mut daemon);
    assert!(enough && uploaded, "{:#?}\nlog:\n{log}", raw_rows(&cfg));

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let urls: BTreeMap<String, String> = raw_rows(&cfg)
        .iter()
        .filter_map(|r| {
            Some((
                r["files"][0]["path"].as_str()?.to_owned(),
                r["upload"]["uploaded"]["url"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let mut uploads_checked: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_seq: BTreeMap<u64, Vec<&SegmentRow>> = BTreeMap::new();
    for r in closed_of(&rows, "cam") {
        by_seq.entry(r.seq).or_default().push(r);
    }
    assert!(by_seq.len() >= 3, "{rows:#?}");
    for (seq, rs) in &by_seq {
        let mut formats: Vec<&str> = rs.iter().map(|r| format(r)).collect();
        formats.sort();
        assert_eq!(formats, ["aac", "flv", "fmp4"], "segment {seq}: {rs:?}");
        assert!(rs.iter().all(|r| r.files.len() == 1), "{rs:?}");
        let bases: Vec<&str> = rs
            .iter()
            .map(|r| r.files[0].path.rsplit_once('.').unwrap().0)
            .collect();
        assert!(bases.iter().all(|b| *b == bases[0]), "one base: {bases:?}");
        let starts: Vec<i64> = rs.iter().map(|r| r.start_ms).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{rs:?}");
        let fmp4 = rs.iter().find(|r| format(r) == "fmp4").unwrap();
        for r in rs {
            let path = root.join(&r.files[0].path);
            assert_decodes(&path);
            let p = probe(&path);
            match format(r) {
                "flv" => {
                    assert_eq!(p.format_name, "flv");
                    assert_eq!(p.stream("video").unwrap().codec_name, "h264");
                    assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
                    let keys = check_flv_metadata(&path, spec.frame_ms() / 1000.0);
                    // 1 s GOPs: two key frames in a 2 s segment (one in a short last).
                    let want = if r.duration_ms >= 1900 { 2 } else { 1 };
                    assert!(keys >= want, "{}: {keys} key frames", r.files[0].path);
                    // The same video as the fMP4 of the segment.
                    let (a, b) = (
                        video_span(&path),
                        video_span(&root.join(&fmp4.files[0].path)),
                    );
                    assert!((a - b).abs() < 0.001, "FLV {a} s, fMP4 {b} s");
                }
                "aac" => {
                    assert_eq!(p.format_name, "aac");
                    assert!(p.stream("video").is_none(), "{p:?}");
                    assert_eq!(p.streams.len(), 1, "{p:?}");
                    let a = p.stream("audio").unwrap();
                    assert_eq!(
                        (a.codec_name.as_str(), a.sample_rate),
                        ("aac", Some(48_000))
                    );
                    let span = audio_span(&path);
                    assert!(
                        (span * 1000.0 - fmp4.duration_ms as f64).abs() <= 100.0,
                        "{}: {span} s of audio in a {} ms segment",
                        r.files[0].path,
                        fmp4.duration_ms
                    );
                }
                _ => {}
            }
            // Its upload: an identical copy under its own key (the segments closed by the
            // stop may not have gone yet).
            if let Some(url) = urls.get(&r.files[0].path) {
                let copy = Path::new(url.strip_prefix("file://").unwrap());
                assert!(copy.starts_with(&uploads), "{url}");
                assert_eq!(md5_file(copy), md5_file(&path), "{}", copy.display());
                *uploads_checked.entry(format(r).to_owned()).or_default() += 1;
            }
        }
    }
    assert!(
        uploads_checked.len() == 3 && uploads_checked.values().all(|n| *n >= 3),
        "{uploads_checked:?}"
    );
}

#[test]
fn kill_9_mid_flv_then_restart_gives_a_file_that_plays_to_its_last_complete_tag() {
    let spec = ClipSpec::h264(30, 1);
    let clip = clip(&spec);
    let dir = workdir("formats-flv-kill");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: vec!["flv".into()],
        interval: "20s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    // Well into the first segment: several fragments written, the FLV still a `.part`.
    let growing = wait_until(Duration::from_secs(20), || {
        part_files(&root).iter().any(|p| {
            p.ends_with(".flv.part")
                && std::fs::metadata(root.join(p)).is_ok_and(|m| m.len() > 150_000)
        })
    });
    assert!(growing, "no growing FLV; log:\n{}", daemon.log());
    let part = part_files(&root)
        .into_iter()
        .find(|p| p.ends_with(".flv.part"))
        .unwrap();
    daemon.kill9();
    let torn_len = std::fs::metadata(root.join(&part)).unwrap().len();
    // Written in whole pages: the file on disk ends inside a tag.
    assert_eq!(torn_len % 4096, 0, "{torn_len}");
    // Where an independent reading of the torn file says its complete tags end (most
    // often inside the last page; exactly at its end when a tag happens to end there).
    let complete = complete_tags_end(&std::fs::read(root.join(&part)).unwrap());

    let mut daemon = Daemon::start(&cfg);
    let fin = part.strip_suffix(".part").unwrap().to_owned();
    let recovered = wait_until(Duration::from_secs(20), || {
        root.join("control.sock").exists()
            && segments(&cfg)
                .iter()
                .any(|r| r.recovered && r.files.iter().any(|f| f.path == fin))
    });
    let log = stop_clean(&mut daemon);
    assert!(recovered, "{:#?}\nlog:\n{log}", segments(&cfg));
    let path = root.join(&fin);
    assert!(!root.join(&part).exists());
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, complete, "cut from {torn_len} bytes");
    assert!(
        complete + 200_000 > torn_len,
        "{complete} of {torn_len} bytes"
    );
    // Plays to the end, every tag chains up to the last byte, and the metadata describes
    // what is left.
    assert_decodes(&path);
    let flv = read_flv(&path);
    assert_eq!(flv.len, len);
    check_flv_metadata(&path, spec.frame_ms() / 1000.0);
    let span = video_span(&path);
    assert!(span > 1.0, "{span} s");
    let row = segments(&cfg)
        .into_iter()
        .find(|r| r.files.iter().any(|f| f.path == fin))
        .unwrap();
    assert!(
        (row.duration_ms as f64 - span * 1000.0).abs() <= 41.0,
        "{row:?}"
    );
}

/// An Opus-only MP4 of `secs` seconds.
fn opus_clip(dir: &Path, secs: u32) -> std::path::PathBuf {
    let path = dir.join("opus.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=f=440:r=48000:duration={secs}"))
        .args(["-c:a", "libopus"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// Runs `source` with `formats` until the log says why it is refused; returns the log.
fn refused(name: &str, formats: &[&str], source: &str) -> String {
    let dir = workdir(name);
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: formats.iter().map(|f| f.to_string()).collect(),
        ..TestConfig::new(&root)
    }
    .stream("cam", source)
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let said = wait_until(Duration::from_secs(20), || {
        daemon.log().contains("cannot record this stream")
    });
    let log = strip_ansi(&stop_clean(&mut daemon));
    assert!(said, "{log}");
    assert!(
        segment_files(&root).is_empty() && part_files(&root).is_empty(),
        "nothing recorded: {:?}",
        files_under(&root)
    );
    log
}

#[test]
fn h265_in_flv_and_opus_in_aac_are_refused_naming_the_template_field_and_the_reason() {
    let h265 = clip(&ClipSpec {
        codec: "h265",
        ..ClipSpec::h264(4, 1)
    });
    let log = refused(
        "formats-refuse-h265",
        &["fmp4", "flv"],
        &format!("file:{}?loop=true", h265.display()),
    );
    assert!(
        log.contains("template \"t\" formats: \"flv\" cannot record this stream")
            && log.contains("H.265")
            && log.contains("Enhanced FLV"),
        "{log}"
    );

    let dir = workdir("formats-opus-clip");
    let opus = opus_clip(dir.path(), 4);
    let log = refused(
        "formats-refuse-opus",
        &["aac"],
        &format!("file:{}?loop=true", opus.display()),
    );
    assert!(
        log.contains("template \"t\" formats: \"aac\" cannot record this stream")
            && log.contains("Opus"),
        "{log}"
    );
}

#[test]
fn a_recorded_flv_plays_in_mpegts_js_in_chromium() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("formats-flv-browser");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        formats: vec!["flv".into()],
        interval: "6s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    let closed = wait_closed(&cfg, &root, "cam", 1, Duration::from_secs(40));
    let log = stop_clean(&mut daemon);
    assert!(closed, "log:\n{log}");
    let row = segments(&cfg)
        .into_iter()
        .find(|r| r.state == "closed" && format(r) == "flv")
        .unwrap();
    let path = root.join(&row.files[0].path);
    assert_decodes(&path);
    // mpegts.js (flv.js's maintained successor) demuxes the FLV into MSE in Chromium.
    let server = common::browser::StaticServer::start(&root);
    let r = common::browser::play(&server.url(&row.files[0].path), "mpegts", 4.0);
    assert_eq!(r["ok"], true, "mpegts.js: {r:#}");
}
