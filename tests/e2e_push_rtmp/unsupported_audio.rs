//! A publisher's audio in a codec edgerec does not record (G.711 µ-law in FLV) is dropped:
//! the push goes on, its video is recorded, and the audio is named once, in the log and in
//! `edgerec status`.

use super::*;

#[test]
fn audio_edgerec_does_not_record_is_dropped_once_and_the_video_recorded() {
    let mut s = Setup::start("rtmp-mulaw");
    let clip = clip(&ClipSpec::h264(6, 1));
    let ffmpeg = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(&clip)
        .args([
            "-c:v",
            "copy",
            "-c:a",
            "pcm_mulaw",
            "-ar",
            "8000",
            "-ac",
            "1",
        ])
        .args(["-f", "flv"])
        .arg(s.url("live/mulaw?record_interval=2"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let mut entry = None;
    let listed = wait_until(Duration::from_secs(15), || {
        let out = cli(
            &["status", "--config", s.cfg.to_str().unwrap(), "--json"],
            s.cfg.parent().unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        entry = v["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == "mulaw").cloned());
        entry.as_ref().is_some_and(|e| e["skipped"][0].is_string())
    });
    assert!(listed, "status: {entry:?}\nlog:\n{}", s.daemon.log());
    let skipped = entry.unwrap()["skipped"][0].as_str().unwrap().to_owned();
    assert!(skipped.starts_with("audio not recorded"), "{skipped}");
    let (ok, err) = finish(ffmpeg, Duration::from_secs(40));
    assert!(ok, "ffmpeg push failed: {err}\nlog:\n{}", s.daemon.log());
    assert!(
        wait_closed(&s.cfg, &s.root, "mulaw", 3, Duration::from_secs(20)),
        "{}",
        s.daemon.log()
    );
    let rows = s.closed("mulaw");
    let mut total = 0.0;
    for r in &rows {
        let path = s.root.join(&r.files[0].path);
        assert_decodes(&path);
        let p = probe(&path);
        assert_eq!(p.stream("video").unwrap().codec_name, "h264");
        assert!(p.stream("audio").is_none(), "{p:?}");
        total += video_span(&path);
    }
    assert!(total >= 5.0, "recorded {total} s of 6");
    let log = strip_ansi(&stop_clean(&mut s.daemon));
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("audio not recorded"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}\n{log}");
    assert!(warnings[0].contains("stream=mulaw"), "{warnings:?}");
}
