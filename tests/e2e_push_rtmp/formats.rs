//! Formats asked for in the push URL, as Tencent LVB push URLs do: `record=mp4|flv` gives
//! both files of every segment from one segmenter, `record_type=audio&record=aac` an
//! audio-only ADTS file, and a format that cannot hold the publisher's codecs gets the
//! publish refused with the reason in the RTMP onStatus error.

use super::*;

/// The closed rows of `stream`, by sequence number.
fn by_seq(rows: &[SegmentRow]) -> std::collections::BTreeMap<u64, Vec<&SegmentRow>> {
    let mut out: std::collections::BTreeMap<u64, Vec<&SegmentRow>> = Default::default();
    for r in rows {
        out.entry(r.seq).or_default().push(r);
    }
    out
}

#[test]
fn record_mp4_and_flv_gives_both_files_of_every_segment() {
    let mut s = Setup::start("rtmp-mp4-flv");
    let spec = ClipSpec::h264(7, 1);
    let clip = clip(&spec);
    let ffmpeg = s.push(&clip, "live/cam3?record=mp4%7Cflv&record_interval=2");
    let (ok, err) = finish(ffmpeg, Duration::from_secs(40));
    assert!(ok, "ffmpeg push failed: {err}\nlog:\n{}", s.daemon.log());
    // 7 s in 2 s segments: four segments, two rows each.
    assert!(
        wait_closed(&s.cfg, &s.root, "cam3", 8, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let rows = s.closed("cam3");
    let segs = by_seq(&rows);
    assert_eq!(segs.len(), 4, "{rows:#?}");
    for (seq, rs) in segs {
        let mut formats: Vec<&str> = rs.iter().map(|r| r.files[0].format.as_str()).collect();
        formats.sort();
        assert_eq!(formats, ["flv", "mp4"], "segment {seq}: {rs:?}");
        for r in rs {
            let path = s.root.join(&r.files[0].path);
            if r.files[0].format == "flv" {
                assert!(r.files[0].path.ends_with(".flv"), "{r:?}");
                check_flv_metadata(&path, spec.frame_ms() / 1000.0);
            } else {
                assert!(r.files[0].path.ends_with(".mp4"), "{r:?}");
                let boxes = top_level_boxes(&path);
                assert!(!boxes.iter().any(|b| b == "moof"), "progressive: {boxes:?}");
            }
        }
    }
    s.check_files(&rows);
    stop_clean(&mut s.daemon);
}

#[test]
fn record_mp4_hls_and_flv_gives_all_three_a_finished_playlist_and_one_event_per_file() {
    use crate::mosquitto::{Broker, Sub};
    let dir = workdir("rtmp-mp4-hls-broker");
    let broker = Broker::start(dir.path());
    let events = Sub::start(&broker.client_args(), "edgerec/e2e/events/#", None);
    let mut s = Setup::start_with(
        "rtmp-mp4-hls",
        &format!("\n[mqtt]\nurl = \"{}\"\n", broker.url()),
    );
    let spec = ClipSpec::h264(7, 1);
    let clip = clip(&spec);
    // The seed's own URL form: `|` unescaped.
    let ffmpeg = s.push(&clip, "live/cam5?record=mp4|hls|flv&record_interval=2");
    let (ok, err) = finish(ffmpeg, Duration::from_secs(40));
    assert!(ok, "ffmpeg push failed: {err}\nlog:\n{}", s.daemon.log());
    // 7 s in 2 s segments: four segments, an .mp4, an .m4s and an .flv each.
    assert!(
        wait_closed(&s.cfg, &s.root, "cam5", 12, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let rows = s.closed("cam5");
    let segs = by_seq(&rows);
    assert_eq!(segs.len(), 4, "{rows:#?}");
    for (seq, rs) in &segs {
        let mut formats: Vec<&str> = rs.iter().map(|r| r.files[0].format.as_str()).collect();
        formats.sort();
        assert_eq!(formats, ["flv", "hls", "mp4"], "segment {seq}: {rs:?}");
    }
    s.check_files(&rows);
    // The publisher left: the recording is finished, and lists every .m4s.
    let pls = playlists(&s.root);
    assert_eq!(pls.len(), 1, "{pls:#?}");
    assert!(pls[0].ended, "{}", pls[0].text);
    pls[0].check(&s.root);
    assert_eq!(pls[0].entries.len(), 4, "{}", pls[0].text);
    assert_playlist_plays(&pls[0], spec.gop_ms() / 1000.0);
    // One segment.closed event per file, each with its file_format.
    let closed = "edgerec/e2e/events/segment.closed";
    let got = events.wait(Duration::from_secs(20), |_| {
        events.json_on(closed).len() >= rows.len()
    });
    let evs = events.json_on(closed);
    assert!(got, "{evs:#?}\nlog:\n{}", s.daemon.log());
    let mut per_file: Vec<(String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["files"][0]["path"].as_str().unwrap().to_owned(),
                e["file_format"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    per_file.sort();
    per_file.dedup();
    let mut want: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let f = match r.files[0].format.as_str() {
                "hls" => "hls",
                "flv" => "flv",
                _ => "mp4",
            };
            (r.files[0].path.clone(), f.to_owned())
        })
        .collect();
    want.sort();
    assert_eq!(per_file, want);
    stop_clean(&mut s.daemon);
}

#[test]
fn record_type_audio_and_record_aac_give_an_audio_only_adts_file() {
    let mut s = Setup::start("rtmp-aac");
    let clip = clip(&ClipSpec::h264(6, 1));
    let ffmpeg = s.push(
        &clip,
        "live/mic?record_type=audio&record=aac&record_interval=2",
    );
    let (ok, err) = finish(ffmpeg, Duration::from_secs(40));
    assert!(ok, "ffmpeg push failed: {err}\nlog:\n{}", s.daemon.log());
    assert!(
        wait_closed(&s.cfg, &s.root, "mic", 3, Duration::from_secs(20)),
        "segments: {:?}\nlog:\n{}",
        segments(&s.cfg),
        s.daemon.log()
    );
    let mut total = 0.0;
    for r in s.closed("mic") {
        assert_eq!(r.files.len(), 1, "{r:?}");
        assert_eq!(r.files[0].format, "aac", "{r:?}");
        assert!(r.files[0].path.ends_with(".aac"), "{r:?}");
        let path = s.root.join(&r.files[0].path);
        assert_decodes(&path);
        let p = probe(&path);
        assert_eq!(p.format_name, "aac");
        assert!(p.stream("video").is_none(), "no video track: {p:?}");
        assert_eq!(p.streams.len(), 1, "{p:?}");
        assert_eq!(p.stream("audio").unwrap().codec_name, "aac");
        total += audio_span(&path);
    }
    assert!(total >= 5.0, "recorded {total} s of 6");
    stop_clean(&mut s.daemon);
}

#[test]
fn a_format_that_cannot_hold_the_codecs_refuses_the_publish_with_the_reason() {
    let mut s = Setup::start("rtmp-refuse-format");
    // Video only, asked for `.aac`.
    let clip = clip(&ClipSpec::h264(4, 1));
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
        .args(["-c", "copy", "-an", "-f", "flv"])
        .arg(s.url("live/silent?record=aac"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let (ok, err) = finish(ffmpeg, Duration::from_secs(30));
    assert!(!ok, "a video-only push asked for .aac was recorded");
    assert!(err.contains("no audio track"), "ffmpeg said: {err}");

    // H.265 (Enhanced RTMP), asked for FLV.
    let hevc = clip_h265_no_audio();
    let said = publish_hevc(s.port, "live/hevc?record=flv", &hevc);
    assert!(
        said.contains("NetStream.Publish.Rejected") && said.contains("Enhanced FLV"),
        "the server said: {said}"
    );
    let log = strip_ansi(&stop_clean(&mut s.daemon));
    assert_eq!(log.matches("publish refused").count(), 2, "{log}");
    assert!(
        segments(&s.cfg).is_empty(),
        "nothing recorded: {:?}",
        segments(&s.cfg)
    );
}

fn clip_h265_no_audio() -> PathBuf {
    clip(&ClipSpec {
        codec: "h265",
        audio: false,
        bframes: 2,
        ..ClipSpec::h264(4, 1)
    })
}
