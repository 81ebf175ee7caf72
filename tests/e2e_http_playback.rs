//! The playback endpoints of the local HTTP API end to end: a recorder on a looping file
//! camera (~25 s in 3 s `.mp4` segments) with `[http]` on loopback, called with curl, ffmpeg
//! and hls.js in Chromium. The `.mp4` cut decodes clean in ffmpeg; `Range` answers are 206
//! with exactly those bytes of the whole answer, 416 past the end, and `If-None-Match` with
//! its `ETag` is 304. The `.m3u8` URL is read clean by ffmpeg and plays in hls.js past 10 s
//! across segment boundaries, its URIs pointing at the server's media URLs (which answer
//! ranges and serve only files of the index). The web page shows the stream's state and
//! its recorded span on the timeline, plays a clicked point, and is screenshot into
//! `docs/web-page.png`. Bad input is a 400 naming the parameter.

mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::{open_page, play};
use common::http::{curl, curl_args, start};
use common::*;

#[test]
fn recordings_play_over_http_with_ranges_etags_and_in_hls_js() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("http-playback");
    let root = dir.path().join("data");
    let port = free_port();
    let mut toml = TestConfig {
        interval: "3s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .to_toml();
    toml += &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut daemon = start(&cfg, port);
    let enough = wait_closed(&cfg, &root, "cam", 8, Duration::from_secs(60));
    assert!(enough, "{:#?}\nlog:\n{}", segments(&cfg), daemon.log());
    let rows = segments(&cfg);
    let closed = closed_of(&rows, "cam");
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let gop_s = spec.gop_ms() / 1000.0;

    // One MP4 of 10 s from mid-GOP in the second segment: past file boundaries.
    let from = closed[1].start_ms + 1300;
    let mp4 = format!("/api/playback/cam.mp4?start={}&duration=10", secs(from));
    let whole = curl(port, "GET", &mp4, None, None);
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let len = whole.bytes.len() as u64;
    assert_eq!(
        whole.header("content-length"),
        Some(len.to_string().as_str())
    );
    let etag = whole.header("etag").expect("an ETag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &whole.bytes).unwrap();
    assert_decodes(&cut);
    let v = probe(&cut)
        .stream("video")
        .expect("a video stream")
        .duration;
    assert!((v - 10.0).abs() <= gop_s, "asked 10 s, got {v} s");

    for (range, want) in [
        ("bytes=1000-50000".to_string(), 1000..50_001),
        ("bytes=-4096".to_string(), len - 4096..len),
        (format!("bytes={}-", len / 2), len / 2..len),
    ] {
        let a = curl_args(port, "GET", &mp4, &["-H", &format!("Range: {range}")]);
        assert_eq!(a.status, 206, "{range}: {}", a.body);
        let cr = format!("bytes {}-{}/{len}", want.start, want.end - 1);
        assert_eq!(a.header("content-range"), Some(cr.as_str()), "{range}");
        assert!(
            a.bytes == whole.bytes[want.start as usize..want.end as usize],
            "{range}: {} bytes, not those of the whole answer",
            a.bytes.len()
        );
    }
    let past = curl_args(port, "GET", &mp4, &["-H", &format!("Range: bytes={len}-")]);
    assert_eq!(past.status, 416, "{}", past.body);
    let star = format!("bytes */{len}");
    assert_eq!(past.header("content-range"), Some(star.as_str()));
    let same = curl_args(
        port,
        "GET",
        &mp4,
        &["-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(same.status, 304, "{}", same.body);
    assert!(same.bytes.is_empty());

    // A VOD playlist of 20 s from the first segment, its URIs the server's media URLs.
    let from = closed[0].start_ms + 500;
    let m3u8 = format!(
        "/api/playback/cam.m3u8?start={}&end={}",
        secs(from),
        secs(from + 20_000)
    );
    let pl = curl(port, "GET", &m3u8, None, None);
    assert_eq!(pl.status, 200, "{}", pl.body);
    assert_eq!(
        pl.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let text = &pl.body;
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(uris.len() >= 6, "{text}");
    for uri in &uris {
        let Some(id) = uri
            .strip_prefix("/api/media/cam/")
            .and_then(|r| r.strip_suffix(".mp4"))
        else {
            panic!("{uri} is not a media URL of this server:\n{text}");
        };
        let id: u64 = id.parse().unwrap();
        let row = closed.iter().find(|r| r.id == id).expect("a closed row");
        let a = curl_args(port, "GET", uri, &["-H", "Range: bytes=4-7"]);
        assert_eq!(a.status, 206, "{uri}: {}", a.body);
        assert_eq!(a.bytes, b"ftyp", "{uri}");
        let size = std::fs::metadata(root.join(&row.files[0].path))
            .unwrap()
            .len();
        let cr = format!("bytes 4-7/{size}");
        assert_eq!(a.header("content-range"), Some(cr.as_str()), "{uri}");
    }
    let url = format!("http://127.0.0.1:{port}{m3u8}");
    assert_decodes(Path::new(&url));
    let r = play(&url, "hls", 10.5);
    assert_eq!(r["ok"], true, "hls.js: {r:#}\n{text}");

    // The web page (its last 10 minutes): the state, the timeline shows the recorded span,
    // a click on it plays. The screenshot is the README's: `EDGEREC_UPDATE_DOCS=1` writes it
    // to docs/web-page.png, otherwise it goes to the work dir (a test run leaves the tree
    // as it was).
    let shot = if std::env::var_os("EDGEREC_UPDATE_DOCS").is_some() {
        repo().join("docs/web-page.png")
    } else {
        dir.path().join("web-page.png")
    };
    let page = open_page(&format!("http://127.0.0.1:{port}/?window=600"), &shot, 3.0);
    assert_eq!(page["ok"], true, "the page: {page:#}");
    assert_eq!(page["states"][0], "recording", "{page:#}");
    let spans = page["timelines"]["cam"]
        .as_array()
        .expect("a timeline of cam");
    let first = spans.iter().filter_map(|s| s["start_ms"].as_i64()).min();
    let last = spans.iter().filter_map(|s| s["end_ms"].as_i64()).max();
    assert_eq!(first, Some(closed[0].start_ms), "{page:#}");
    assert!(last >= Some(closed[closed.len() - 1].end_ms), "{page:#}");
    assert!(spans.iter().all(|s| s["uploaded"] == false), "{page:#}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Bad input: 400 naming the parameter, 404 for nothing recorded or not in the index.
    let end = secs(from + 5000);
    for (path, param) in [
        (format!("/api/playback/cam.m3u8?end={end}"), "start"),
        (
            format!("/api/playback/cam.m3u8?start={end}&end={}", secs(from)),
            "end",
        ),
        (format!("/api/playback/cam.mp4?start={end}"), "duration"),
        (
            format!("/api/playback/cam.mp4?start={end}&duration=1&x=1"),
            "x",
        ),
    ] {
        let a = curl(port, "GET", &path, None, None);
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        assert_eq!(a.json()["parameter"], param, "{path}: {}", a.body);
    }
    for path in [
        "/api/playback/..%2Fdata.m3u8?start=1&end=2",
        "/api/media/..%2F../1.mp4",
    ] {
        let a = curl(port, "GET", path, None, None);
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        assert!(
            a.json()["error"].as_str().unwrap().contains("stream"),
            "{path}"
        );
    }
    let id = closed[0].id.as_u64().expect("a numeric id");
    let later = secs(closed[0].start_ms + 3_600_000);
    for path in [
        format!("/api/playback/cam.mp4?start={later}&duration=5"),
        format!("/api/media/other/{id}.mp4"),
        format!("/api/media/cam/{id}.m4s"),
        "/api/media/cam/999999.mp4".to_string(),
    ] {
        let a = curl(port, "GET", &path, None, None);
        assert_eq!(a.status, 404, "{path}: {}", a.body);
    }
    stop_clean(&mut daemon);
}
