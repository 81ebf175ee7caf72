//! End to end: `pipe:` sources recorded by `edgerec run`. ffmpeg stands in for a board's
//! camera encoder (`rpicam-vid --inline -o -`, a GStreamer pipeline into `fdsink`): it
//! writes Annex-B H.264 or H.265 to stdout, in real time (`-re`), and, for audio, ADTS AAC
//! from a second command. Every segment is checked by ffprobe and decoded by ffmpeg.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn video_cmd(codec: &str, extra: &str) -> String {
    let enc = match codec {
        "h264" => "-c:v libx264 -g 25 -f h264",
        _ => "-c:v libx265 -x265-params log-level=error -g 25 -f hevc",
    };
    format!(
        "ffmpeg -v error -nostdin -re -f lavfi -i testsrc2=size=320x240:rate=25 {extra} {enc} -"
    )
}

/// A config with pipe streams: `(name, source, extra stream keys)`.
fn config(dir: &Path, streams: &[(&str, String, &str)]) -> std::path::PathBuf {
    let mut toml = TestConfig {
        interval: "2s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&dir.join("data"))
    }
    .to_toml();
    for (name, source, extra) in streams {
        let q = serde_json::to_string(source).unwrap();
        toml += &format!("\n[[streams]]\nname = \"{name}\"\nsource = {q}\n{extra}\n");
    }
    let path = dir.join("edgerec.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn closed_files(cfg: &Path, root: &Path, stream: &str) -> Vec<std::path::PathBuf> {
    closed_of(&segments(cfg), stream)
        .iter()
        .map(|r| root.join(&r.files[0].path))
        .collect()
}

/// ffprobe sees `codec` at 320x240, ffmpeg decodes it cleanly, and presentation times are
/// one frame apart in presentation order (B-frames reordered from POC), never before the
/// decode time.
fn check_video(path: &Path, codec: &str, min_packets: usize) {
    let p = probe(path);
    let v = p.stream("video").expect("a video stream");
    assert_eq!(v.codec_name, codec, "{}", path.display());
    assert_eq!(v.width, Some(320));
    assert_decodes(path);
    let pk = video_packets(path);
    assert!(
        pk.len() >= min_packets,
        "{} packets in {}",
        pk.len(),
        path.display()
    );
    assert!(pk[0].key);
    for w in pk.windows(2) {
        assert!(w[1].dts > w[0].dts, "decode times increase: {pk:?}");
    }
    assert!(
        pk.iter().all(|p| p.pts + 1e-6 >= p.dts),
        "pts before dts: {pk:?}"
    );
    let mut pts: Vec<f64> = pk.iter().map(|p| p.pts).collect();
    pts.sort_by(f64::total_cmp);
    for w in pts.windows(2) {
        let step = w[1] - w[0];
        // 25 fps from arrival times: 40 ms, smoothed; never two pictures at one time.
        assert!(
            (0.025..=0.060).contains(&step),
            "presentation step {step} in {}: {pts:?}",
            path.display()
        );
    }
}

#[test]
fn h264_and_h265_from_commands_are_recorded_and_decode() {
    let dir = workdir("pipe_video");
    let root = dir.path().join("data");
    // libx264 and libx265 use B-frames by default: decode order is not display order.
    let cfg = config(
        dir.path(),
        &[
            (
                "p264",
                format!("pipe:{}", video_cmd("h264", "")),
                "fps = 25",
            ),
            ("p265", format!("pipe:{}", video_cmd("h265", "")), ""),
        ],
    );
    let mut daemon = Daemon::start(&cfg);
    for s in ["p264", "p265"] {
        assert!(
            wait_closed(&cfg, &root, s, 2, Duration::from_secs(40)),
            "{s}: no 2 closed segments; log:\n{}",
            daemon.log()
        );
    }
    stop_clean(&mut daemon);
    for (s, codec) in [("p264", "h264"), ("p265", "hevc")] {
        let files = closed_files(&cfg, &root, s);
        assert!(files.len() >= 2);
        // The last segment was closed by the shutdown: it may be short.
        for (i, f) in files.iter().enumerate() {
            check_video(f, codec, if i + 1 < files.len() { 25 } else { 1 });
        }
    }
}

#[test]
fn audio_from_a_second_command_is_recorded_beside_the_video() {
    let dir = workdir("pipe_audio");
    let root = dir.path().join("data");
    let audio = "ffmpeg -v error -nostdin -re -f lavfi -i sine=frequency=440:sample_rate=48000 \
                 -c:a aac -ac 1 -f adts -";
    let cfg = config(
        dir.path(),
        &[(
            "av",
            format!("pipe:{}", video_cmd("h264", "-bf 0")),
            &format!(
                "fps = 25\naudio_pipe = {}",
                serde_json::to_string(audio).unwrap()
            ),
        )],
    );
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "av", 2, Duration::from_secs(40)),
        "no 2 closed segments; log:\n{}",
        daemon.log()
    );
    stop_clean(&mut daemon);
    for f in closed_files(&cfg, &root, "av") {
        let p = probe(&f);
        let a = p.stream("audio").expect("an audio stream");
        assert_eq!(a.codec_name, "aac");
        assert_eq!(a.sample_rate, Some(48000));
        let v = p.stream("video").expect("a video stream");
        assert!(
            (a.duration - v.duration).abs() < 0.5,
            "audio {} s vs video {} s in {}",
            a.duration,
            v.duration,
            f.display()
        );
        assert_decodes(&f);
    }
}

/// Processes whose command line contains `token`.
fn processes_with(token: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(token) && !cmd.contains("edgerec.toml") {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn a_command_that_exits_is_restarted_its_stderr_is_logged_and_shutdown_kills_it() {
    let dir = workdir("pipe_restart");
    let root = dir.path().join("data");
    let token = format!("edgerec-pipe-test-{}", std::process::id());
    // Says something on stderr, records 3 s, exits; a child of the shell keeps the token
    // in its command line so we can look for leftovers.
    let cmd = format!(
        "echo 'camera says {token}' >&2; {}",
        // zerolatency: no encoder look-ahead, so the exit does not flush a burst of frames.
        video_cmd(
            "h264",
            &format!("-tune zerolatency -t 3 -metadata comment={token}")
        )
    );
    let cfg = config(dir.path(), &[("cam", format!("pipe:{cmd}"), "")]);
    let mut daemon = Daemon::start(&cfg);
    // The command lives 3 s: two runs give at least two closed segments and a restart.
    let restarted = wait_until(Duration::from_secs(40), || {
        daemon.log().matches("pipe: first key frame").count() >= 2
    });
    assert!(
        restarted,
        "the command was not restarted; log:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains(&format!("camera says {token}")),
        "stderr not logged; log:\n{log}"
    );
    assert!(
        log.contains("the command exited"),
        "exit not reported; log:\n{log}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !processes_with(&token)
            .is_empty()),
        "the restarted command is not running"
    );
    stop_clean(&mut daemon);
    assert!(
        wait_until(Duration::from_secs(5), || processes_with(&token).is_empty()),
        "commands left running after shutdown: {:?}",
        processes_with(&token)
    );
    let files = closed_files(&cfg, &root, "cam");
    assert!(files.len() >= 2, "{files:?}");
    // Each run of the command ends with a short segment (the command exited).
    for f in files {
        check_video(&f, "h264", 1);
    }
}
