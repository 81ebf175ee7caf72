//! End to end: the limits on segments and fragments, with real streams.
//!
//! - A camera that sends one key frame and then never another (x264 with a GOP longer than
//!   the clip) must not grow one segment forever: segments are cut at `2 × interval`, every
//!   one is readable by ffprobe, and together they hold the whole stream.
//! - Inside a segment, a `moof` comes about every `fragment` (a plain box walk reads each
//!   fragment's decode time), and ffmpeg decodes the file.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// The stream ended by itself (a file source without `loop`) and its segment is closed.
fn wait_stream_stopped(daemon: &Daemon) -> bool {
    wait_until(Duration::from_secs(60), || {
        daemon.log().contains("source ended; stream stopped")
    })
}

#[test]
fn a_stream_without_key_frames_after_the_first_is_cut_at_twice_the_interval() {
    // 9 s of H.264 + AAC with a single key frame: the GOP is longer than the clip.
    let spec = ClipSpec {
        gop: 100_000,
        ..ClipSpec::h264(9, 1)
    };
    let clip = clip(&spec);
    let keys = video_packets(&clip).iter().filter(|p| p.key).count();
    assert_eq!(keys, 1, "the test clip must have exactly one key frame");
    let dir = workdir("keyless");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "1s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("nokey", &format!("file:{}?realtime=false", clip.display()))
    .write(&dir.path().join("edgerec.toml"));

    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_stream_stopped(&daemon),
        "the clip was not recorded to its end; log:\n{}",
        daemon.log()
    );
    let log = strip_ansi(&stop_clean(&mut daemon));

    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let rows = closed_of(&rows, "nokey");
    // 9 s at one cut per 2 s: 0–2, 2–4, 4–6, 6–8, 8–9.
    assert_eq!(rows.len(), 5, "{rows:?}\nlog:\n{log}");
    let frame_ms = spec.frame_ms();
    let mut probed = 0.0;
    for (i, row) in rows.iter().enumerate() {
        let path = root.join(&row.files[0].path);
        let p = probe(&path);
        let v = p
            .stream("video")
            .unwrap_or_else(|| panic!("{row:?}: no video"));
        assert_eq!(v.codec_name, "h264");
        assert!(p.stream("audio").is_some(), "{row:?}: no audio");
        let last = i + 1 == rows.len();
        assert!(
            (row.duration_ms as f64) <= 2000.0 + frame_ms,
            "a segment longer than the cap: {row:?}"
        );
        assert!(
            last || (row.duration_ms as f64) >= 2000.0 - frame_ms,
            "{row:?}"
        );
        // The first starts on the key frame; the others on whatever frame came at the cap.
        let packets = video_packets(&path);
        assert_eq!(
            packets[0].key,
            i == 0,
            "{}: {:?}",
            path.display(),
            packets[0]
        );
        assert!(
            (video_span(&path) * 1000.0 - row.duration_ms as f64).abs() <= frame_ms + 1.0,
            "{row:?}: ffprobe says {} s",
            video_span(&path)
        );
        probed += video_span(&path);
    }
    // No frame lost or doubled at the cuts: the pieces add up to the clip.
    let total_ms: i64 = rows.iter().map(|r| r.duration_ms).sum();
    let clip_s = video_span(&clip);
    assert!(
        (total_ms as f64 - clip_s * 1000.0).abs() <= frame_ms + 1.0,
        "{total_ms} ms recorded of a {clip_s} s clip"
    );
    assert!(
        (probed - clip_s).abs() <= 2.0 * frame_ms / 1000.0,
        "{probed} s of {clip_s} s"
    );
    for w in rows.windows(2) {
        assert!(
            (w[1].start_ms - w[0].end_ms).abs() <= frame_ms as i64,
            "{w:?}"
        );
    }
    // One warning for the whole run of cuts, naming the stream.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no key frame for"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}\nlog:\n{log}");
    assert!(warnings[0].contains("nokey"), "{}", warnings[0]);
}

/// The decode time (`tfdt`, in timescale units) of the first track of each `moof`, and the
/// file's video timescale (`mdhd`), by a plain walk of the boxes.
fn fragment_times(path: &Path) -> (Vec<u64>, u32) {
    let data = std::fs::read(path).unwrap();
    let find =
        |hay: &[u8], kind: &[u8; 4]| -> Option<usize> { hay.windows(4).position(|w| w == kind) };
    // mdhd: size, type, version/flags, then (v0) creation, modification, timescale.
    let mdhd = find(&data, b"mdhd").expect("mdhd");
    let version = data[mdhd + 4];
    let ts_at = mdhd + 8 + if version == 1 { 16 } else { 8 };
    let timescale = u32::from_be_bytes(data[ts_at..ts_at + 4].try_into().unwrap());
    let mut times = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if size < 8 || pos + size > data.len() {
            break;
        }
        if &data[pos + 4..pos + 8] == b"moof" {
            let moof = &data[pos..pos + size];
            let t = find(moof, b"tfdt").expect("tfdt in moof");
            let v = moof[t + 4];
            let at = t + 8;
            times.push(if v == 1 {
                u64::from_be_bytes(moof[at..at + 8].try_into().unwrap())
            } else {
                u32::from_be_bytes(moof[at..at + 4].try_into().unwrap()) as u64
            });
        }
        pos += size;
    }
    (times, timescale)
}

#[test]
fn a_recorded_segment_has_a_fragment_about_every_fragment_duration() {
    let spec = ClipSpec::h264(12, 1);
    let clip = clip(&spec);
    let dir = workdir("cadence");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "10s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cad", &format!("file:{}?realtime=false", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_stream_stopped(&daemon),
        "the clip was not recorded; log:\n{}",
        daemon.log()
    );
    stop_clean(&mut daemon);

    let rows = segments(&cfg);
    let first = root.join(&closed_of(&rows, "cad")[0].files[0].path);
    assert_decodes(&first);
    assert!(probe(&first).stream("audio").is_some());
    let (times, timescale) = fragment_times(&first);
    let secs: Vec<f64> = times.iter().map(|&t| t as f64 / timescale as f64).collect();
    // 10 s in 0.5 s fragments.
    assert!((19..=21).contains(&secs.len()), "{secs:?}");
    let frame_s = spec.frame_ms() / 1000.0;
    for (i, w) in secs.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(
            (0.5 - frame_s - 0.001..=0.5 + frame_s + 0.001).contains(&gap),
            "fragment {i} lasts {gap} s: {secs:?}"
        );
    }
    // On a grid: fragment k starts within a frame of k × 0.5 s.
    for (k, s) in secs.iter().enumerate() {
        assert!((s - k as f64 * 0.5).abs() <= frame_s + 0.001, "{secs:?}");
    }
}
