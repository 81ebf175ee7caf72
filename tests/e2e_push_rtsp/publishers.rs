//! Publishers as users run them: GStreamer's `rtspclientsink` (whose AAC payloader is
//! MP4A-LATM) and ffmpeg with `-rtpflags latm`, over TCP and UDP; and pushes with a track
//! edgerec does not record (G.711 µ-law), which must still record their video.

use super::*;

/// What `gst_push` sends as audio.
#[derive(Clone, Copy)]
enum GstAudio {
    /// The MP4's AAC as it is (`aacparse`): rtspclientsink payloads it as MP4A-LATM.
    Aac,
    /// Decoded and encoded to G.711 µ-law (`PCMU`).
    Pcmu,
}

/// `gst-launch-1.0` pushing the clip's H.264 and audio with `rtspclientsink`, restricted to
/// `protocols` (`tcp` or `udp`).
fn gst_push(clip: &Path, url: &str, protocols: &str, audio: GstAudio) -> Child {
    let audio = match audio {
        GstAudio::Aac => "aacparse".to_owned(),
        GstAudio::Pcmu => "avdec_aac ! audioconvert ! audioresample ! \
                           audio/x-raw,rate=8000,channels=1 ! mulawenc"
            .to_owned(),
    };
    let pipeline = format!(
        "filesrc location=\"{}\" ! qtdemux name=d d.video_0 ! queue ! h264parse ! s.sink_0 \
         d.audio_0 ! queue ! {audio} ! s.sink_1 \
         rtspclientsink name=s protocols={protocols} location=\"{url}\"",
        clip.display()
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gst-launch-1.0 (make test-deps)")
}

/// ffmpeg re-encoding the clip's audio to AAC sent as MP4A-LATM.
fn ffmpeg_latm(clip: &Path, url: &str, transport: &str) -> Child {
    ffmpeg_audio(
        clip,
        url,
        transport,
        &["-c:a", "aac", "-b:a", "64k", "-rtpflags", "latm"],
    )
}

/// ffmpeg copying the clip's video and encoding its audio with `audio` arguments.
fn ffmpeg_audio(clip: &Path, url: &str, transport: &str, audio: &[&str]) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c:v", "copy"])
        .args(audio)
        .args(["-f", "rtsp", "-rtsp_transport", transport, url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg")
}

/// Waits for a publisher to finish and asserts it succeeded.
fn finished(mut child: Child, what: &str, daemon: &Daemon) {
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    assert_success(child, status, what, daemon);
}

/// Like [`finished`], for `rtspclientsink`: GStreamer 1.22 sometimes never reaches EOS
/// after the file has been sent (seen in about one push in three on a loaded machine,
/// against a plain Python RTSP server too), and keeps the session alive with keep-alives.
/// Once `edgerec status` shows the push idle for 3 s, everything was sent: the publisher
/// is stopped.
fn gst_finished(mut child: Child, what: &str, daemon: &Daemon, cfg: &Path, stream: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        let idle = status_entry(cfg, stream)
            .is_some_and(|e| e["frames"].as_u64() > Some(0) && e["idle_s"].as_u64() >= Some(3));
        if idle {
            eprintln!("{what}: rtspclientsink sent everything but did not end; stopping it");
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_success(child, status, what, daemon);
}

fn assert_success(
    mut child: Child,
    status: Option<std::process::ExitStatus>,
    what: &str,
    daemon: &Daemon,
) {
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: {status:?} {err}\nlog:\n{}",
        daemon.log()
    );
}

/// Every closed segment of `stream` has H.264 and AAC, decodes cleanly, and its audio
/// lasts as long as its video (within 100 ms); returns the recorded seconds.
fn check_h264_aac(root: &Path, cfg: &Path, stream: &str) -> f64 {
    let files = closed_files(root, cfg, stream);
    assert!(!files.is_empty(), "nothing recorded for {stream}");
    let mut total = 0.0;
    for f in &files {
        assert_decodes(f);
        let p = probe(f);
        assert_eq!(p.stream("video").unwrap().codec_name, "h264");
        let a = p.stream("audio").expect("an audio track");
        assert_eq!(
            (a.codec_name.as_str(), a.sample_rate),
            ("aac", Some(48_000))
        );
        let (video, audio) = (video_span(f), audio_span(f));
        assert!(
            (audio - video).abs() <= 0.1,
            "{}: audio {audio:.3} s, video {video:.3} s",
            f.display()
        );
        total += video;
    }
    total
}

#[test]
fn gstreamer_rtspclientsink_pushes_h264_and_latm_aac_over_tcp_and_udp() {
    let clip = clip(&ClipSpec::h264(4, 1));
    let (dir, cfg, port) = setup("push-rtsp-gst");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    for (stream, protocols) in [("gsttcp", "tcp"), ("gstudp", "udp")] {
        let url = format!("rtsp://127.0.0.1:{port}/live/{stream}?record_interval=2");
        let gst = gst_push(&clip, &url, protocols, GstAudio::Aac);
        gst_finished(gst, stream, &daemon, &cfg, stream);
        assert!(
            wait_closed(&cfg, &root, stream, 2, Duration::from_secs(15)),
            "{}",
            daemon.log()
        );
        let total = check_h264_aac(&root, &cfg, stream);
        assert!(total >= 3.5, "{stream}: recorded {total} s of 4");
    }
    let log = stop_clean(&mut daemon);
    assert!(!log.contains("not recorded"), "{log}");
    assert!(!log.contains("bad RTP"), "{log}");
}

#[test]
fn ffmpeg_pushes_latm_aac_over_tcp_and_udp() {
    let clip = clip(&ClipSpec::h264(4, 1));
    let (dir, cfg, port) = setup("push-rtsp-latm");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    for (stream, transport) in [("latmtcp", "tcp"), ("latmudp", "udp")] {
        let url = format!("rtsp://127.0.0.1:{port}/live/{stream}?record_interval=2");
        finished(ffmpeg_latm(&clip, &url, transport), stream, &daemon);
        assert!(
            wait_closed(&cfg, &root, stream, 2, Duration::from_secs(15)),
            "{}",
            daemon.log()
        );
        let total = check_h264_aac(&root, &cfg, stream);
        assert!(total >= 3.5, "{stream}: recorded {total} s of 4");
    }
    let log = stop_clean(&mut daemon);
    assert!(!log.contains("not recorded"), "{log}");
    assert!(!log.contains("bad RTP"), "{log}");
}

#[test]
fn a_pcmu_track_is_named_once_and_the_video_beside_it_is_recorded() {
    let clip = clip(&ClipSpec::h264(6, 1));
    let (dir, cfg, port) = setup("push-rtsp-pcmu");
    let root = dir.path().join("data");
    let mut daemon = Daemon::start(&cfg);
    wait_ready(port);
    let pcmu = ["-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1"];
    let url = format!("rtsp://127.0.0.1:{port}/live/mulaw?record_interval=2");
    let ffmpeg = ffmpeg_audio(&clip, &url, "tcp", &pcmu);
    // While it records, `edgerec status` says which track is not recorded.
    let mut entry = None;
    let listed = wait_until(Duration::from_secs(15), || {
        entry = status_entry(&cfg, "mulaw");
        entry
            .as_ref()
            .is_some_and(|e| e["frames"].as_u64() > Some(0))
    });
    assert!(listed, "status: {entry:?}\nlog:\n{}", daemon.log());
    let skipped = entry.unwrap()["skipped"].clone();
    assert!(
        skipped[0]
            .as_str()
            .is_some_and(|s| s.starts_with("audio PCMU/8000")),
        "{skipped:?}"
    );
    finished(ffmpeg, "ffmpeg PCMU", &daemon);
    // GStreamer over UDP: the same.
    let url = format!("rtsp://127.0.0.1:{port}/live/gstmulaw?record_interval=2");
    let gst = gst_push(&clip, &url, "udp", GstAudio::Pcmu);
    gst_finished(gst, "gst PCMU", &daemon, &cfg, "gstmulaw");
    for stream in ["mulaw", "gstmulaw"] {
        assert!(
            wait_closed(&cfg, &root, stream, 2, Duration::from_secs(15)),
            "{}",
            daemon.log()
        );
        let mut total = 0.0;
        for f in closed_files(&root, &cfg, stream) {
            assert_decodes(&f);
            let p = probe(&f);
            assert_eq!(p.stream("video").unwrap().codec_name, "h264");
            assert!(p.stream("audio").is_none(), "{}: audio", f.display());
            total += video_span(&f);
        }
        assert!(total >= 5.0, "{stream}: recorded {total} s of 6");
    }
    let log = strip_ansi(&stop_clean(&mut daemon));
    for stream in ["mulaw", "gstmulaw"] {
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("PCMU"))
            .filter(|l| l.contains(&format!("stream={stream} ")))
            .collect();
        assert_eq!(warnings.len(), 1, "{stream}: {warnings:#?}\n{log}");
        assert!(warnings[0].contains("track not recorded"), "{warnings:?}");
    }
    assert!(!log.contains("bad RTP"), "{log}");
}
