//! The file "camera" against clips made by ffmpeg at test time. The frames it hands out are
//! checked by ffmpeg too: the video track is rewritten as an Annex B elementary stream (with
//! the parameter sets from the avcC/hvcC record) and the audio as ADTS, and both must decode
//! without error to the number of frames ffprobe counts in the source clip.

mod source_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use edgerec::media::frame::{AudioCodec, Frame, TrackParams, VideoCodec};
use edgerec::media::source::{Source, SourceError, SourceSpec};
use edgerec::util::clock::{SharedClock, SystemClock};
use source_common::{assert_time_order, count, decoded_frames, dump};

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// Makes a clip with ffmpeg; `video` are the video codec arguments.
fn clip(dir: &Path, name: &str, secs: &str, video: &[&str], audio: bool) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=25");
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=f=440:r=48000", "-c:a", "aac"]);
    }
    cmd.args(["-t", secs]).args(video).arg(&out);
    let st = cmd.status().expect("ffmpeg runs");
    assert!(st.success(), "ffmpeg failed making {name}");
    out
}

fn h264() -> Vec<&'static str> {
    vec!["-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p"]
}

fn h265() -> Vec<&'static str> {
    vec![
        "-c:v",
        "libx265",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-x265-params",
        "log-level=error",
    ]
}

/// Packets per stream type as ffprobe counts them.
fn probe_packets(path: &Path, stream: &str) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a packet count")
}

/// One second of a stereo 440 Hz tone at `rate` Hz encoded with `codec` into `out` (an MP4
/// made by ffmpeg), replayed by the file source as fast as it reads.
async fn replay_sine(out: &Path, rate: u32, codec: &str) -> Vec<Frame> {
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=f=440:r={rate}"))
        .args(["-ac", "2", "-t", "1", "-c:a", codec])
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg could not make the {codec} clip");
    read_all(
        &format!("file:{}?realtime=false", out.display()),
        usize::MAX,
    )
    .await
    .unwrap()
}

async fn read_all(spec: &str, limit: usize) -> Result<Vec<Frame>, SourceError> {
    let spec = SourceSpec::parse(spec).unwrap();
    let mut src = Source::open(&spec, clock()).await?;
    let mut frames = Vec::new();
    while frames.len() < limit {
        match src.next().await? {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    Ok(frames)
}

#[tokio::test]
async fn h264_aac_clip_replays_every_sample_in_dts_order_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "a.mp4", "3", &h264(), true);
    let frames = read_all(
        &format!("file:{}?realtime=false", path.display()),
        usize::MAX,
    )
    .await
    .unwrap();

    let params = frames[0].params.clone();
    assert_eq!(params.tracks.len(), 2);
    match &params.tracks[0] {
        TrackParams::Video(v) => {
            assert_eq!(v.codec, VideoCodec::H264);
            assert_eq!((v.width, v.height), (320, 240));
            assert!(v.rfc6381.starts_with("avc1."), "{}", v.rfc6381);
            assert_eq!(v.config[0], 1, "avcC version");
        }
        other => panic!("track 0 is {other:?}"),
    }
    match &params.tracks[1] {
        TrackParams::Audio(a) => {
            assert_eq!(a.codec, AudioCodec::Aac);
            assert_eq!(a.sample_rate, 48000);
            assert_eq!(a.channels, 1);
            assert_eq!(a.frame_samples, 1024);
            assert_eq!(a.timescale, 48000);
        }
        other => panic!("track 1 is {other:?}"),
    }
    assert!(
        frames.iter().all(|f| Arc::ptr_eq(&f.params, &params)),
        "one params Arc for an unchanged stream"
    );
    assert_eq!(count(&frames, 0), probe_packets(&path, "v:0"));
    assert_eq!(count(&frames, 1), probe_packets(&path, "a:0"));
    assert_eq!(count(&frames, 0), 75);
    assert!(frames[0].keyframe && frames[0].track == 0);
    let keys: Vec<usize> = frames
        .iter()
        .filter(|f| f.track == 0)
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys, [0, 25, 50]);
    assert_time_order(&frames);
    assert!(
        frames
            .iter()
            .filter(|f| f.track == 0)
            .any(|f| f.pts != f.dts),
        "libx264's B-frames show as pts != dts"
    );

    let (video, audio) = dump(&frames, &dir.path().join("out"));
    assert_eq!(decoded_frames(&video.unwrap(), "h264"), 75);
    assert_eq!(
        decoded_frames(&audio.unwrap(), "aac"),
        probe_packets(&path, "a:0")
    );
}

#[tokio::test]
async fn h265_clips_in_hev1_and_hvc1_sample_entries_replay_and_decode() {
    let dir = tempfile::tempdir().unwrap();
    for tag in ["hev1", "hvc1"] {
        let mut args = h265();
        args.extend(["-tag:v", tag]);
        let path = clip(dir.path(), &format!("{tag}.mp4"), "2", &args, false);
        let frames = read_all(
            &format!("file:{}?realtime=false", path.display()),
            usize::MAX,
        )
        .await
        .unwrap();
        assert_eq!(frames[0].params.tracks.len(), 1, "video only");
        match frames[0].track_params() {
            TrackParams::Video(v) => {
                assert_eq!(v.codec, VideoCodec::H265);
                assert_eq!((v.width, v.height), (320, 240));
                assert!(v.rfc6381.starts_with("hvc1.1."), "{}", v.rfc6381);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(frames.len(), 50);
        assert!(frames[0].keyframe);
        assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
        assert_time_order(&frames);
        let (video, _) = dump(&frames, &dir.path().join(tag));
        assert_eq!(decoded_frames(&video.unwrap(), "hevc"), 50);
    }
}

#[tokio::test]
async fn looping_keeps_timestamps_increasing_by_the_file_duration() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "loop.mp4", "1", &h264(), true);
    let one = read_all(
        &format!("file:{}?realtime=false", path.display()),
        usize::MAX,
    )
    .await
    .unwrap();
    let per_pass = count(&one, 0);
    assert_eq!(per_pass, 25);
    let frames = read_all(
        &format!("file:{}?loop=true&realtime=false", path.display()),
        one.len() * 3 + 5,
    )
    .await
    .unwrap();
    assert_eq!(
        frames.len(),
        one.len() * 3 + 5,
        "a looping file does not end"
    );
    assert_time_order(&frames);

    let video: Vec<&Frame> = frames.iter().filter(|f| f.track == 0).collect();
    let ts = i64::from(video[0].track_params().timescale());
    // The longest track (audio: 1.024 s at 48 kHz... or video: 1 s) sets the loop length.
    let loop_len = video[per_pass].dts - video[0].dts;
    assert!(loop_len >= ts, "a pass lasts at least the video's 1 s");
    assert!(loop_len < ts * 11 / 10, "and not much more");
    assert_eq!(video[2 * per_pass].dts - video[per_pass].dts, loop_len);
    assert!(video[per_pass].keyframe && video[2 * per_pass].keyframe);
    for (a, b) in video[..per_pass].iter().zip(&video[per_pass..2 * per_pass]) {
        assert_eq!(b.dts - a.dts, loop_len);
        assert_eq!(b.pts - b.dts, a.pts - a.dts);
        assert_eq!(a.data, b.data, "the same samples again");
    }
}

#[tokio::test]
async fn realtime_replay_is_paced_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "rt.mp4", "1", &h264(), false);
    let start = Instant::now();
    let frames = read_all(&format!("file:{}", path.display()), 25)
        .await
        .unwrap();
    let span = frames[24].dts - frames[0].dts;
    let span = std::time::Duration::from_secs_f64(
        span as f64 / f64::from(frames[0].track_params().timescale()),
    );
    // Sleeping never ends early, so this lower bound cannot flake.
    assert!(
        start.elapsed() >= span,
        "{:?} of media took only {:?}",
        span,
        start.elapsed()
    );
}

#[tokio::test]
async fn audio_only_file_is_a_source_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("audio.mp4");
    let frames = replay_sine(&out, 44100, "aac").await;
    match frames[0].track_params() {
        TrackParams::Audio(a) => {
            assert_eq!((a.sample_rate, a.channels), (44100, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(frames.len(), probe_packets(&out, "a:0"));
    assert!(frames.iter().all(|f| f.keyframe));
}

#[tokio::test]
async fn opus_audio_replays_byte_for_byte_as_ffmpeg_demuxes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("opus.mp4");
    let frames = replay_sine(&out, 48000, "libopus").await;
    let TrackParams::Audio(a) = frames[0].track_params() else {
        panic!("{:?}", frames[0].track_params());
    };
    assert_eq!(
        (a.codec, a.sample_rate, a.channels),
        (AudioCodec::Opus, 48000, 2)
    );
    // ffmpeg's extradata is the whole OpusHead; the config is the same without the magic.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=extradata",
            "-show_data",
        ])
        .args(["-of", "default=nw=1:nk=1"])
        .arg(&out)
        .output()
        .unwrap();
    // A hex dump: "00000000: 4f70 7573 ... 0000  OpusHead..", the hex in 39 columns.
    let hex: String = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .flat_map(|(_, rest)| rest.get(..39).unwrap_or(rest).chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let extradata: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(&extradata[..8], b"OpusHead");
    assert_eq!(a.config[..], extradata[8..]);
    assert_eq!(frames.len(), probe_packets(&out, "a:0"));
    let demuxed = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-map", "0:a", "-c", "copy", "-f", "data", "-"])
        .output()
        .unwrap();
    assert!(demuxed.status.success());
    let ours: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
    assert_eq!(ours, demuxed.stdout, "the same packets as ffmpeg's demuxer");
    assert_time_order(&frames);
}

#[tokio::test]
async fn unsupported_codecs_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "mpeg4.mp4", "1", &["-c:v", "mpeg4"], false);
    let err = read_all(&format!("file:{}", path.display()), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::UnsupportedCodec { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("video/mp4v"), "{err}");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn fragmented_mp4_is_refused_with_a_remux_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = h264();
    args.extend(["-movflags", "frag_keyframe+empty_moov"]);
    let path = clip(dir.path(), "frag.mp4", "1", &args, false);
    let err = read_all(&format!("file:{}", path.display()), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::UnsupportedFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("remux"), "{err}");
}

#[tokio::test]
async fn missing_random_and_truncated_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_all("file:/nonexistent/clip.mp4", 1).await.unwrap_err();
    assert!(matches!(err, SourceError::Io { .. }), "{err:?}");
    assert!(err.is_permanent());
    assert!(err.to_string().contains("/nonexistent/clip.mp4"));

    // Random bytes.
    let junk = dir.path().join("junk.mp4");
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..50_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&junk, &bytes).unwrap();
    let err = read_all(&format!("file:{}", junk.display()), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");
    assert!(err.is_permanent());

    // moov at the end (ffmpeg's default), cut in half: no moov.
    let path = clip(dir.path(), "t.mp4", "2", &h264(), true);
    let data = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let err = read_all(&format!("file:{}", cut.display()), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");

    // moov first, media cut: opens, then fails on the first missing sample.
    let mut args = h264();
    args.extend(["-movflags", "+faststart"]);
    let path = clip(dir.path(), "fs.mp4", "2", &args, true);
    let data = std::fs::read(&path).unwrap();
    let cut = dir.path().join("fscut.mp4");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let err = read_all(
        &format!("file:{}?realtime=false", cut.display()),
        usize::MAX,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[tokio::test]
async fn damaged_header_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = h264();
    args.extend(["-movflags", "+faststart"]);
    let path = clip(dir.path(), "f.mp4", "1", &args, true);
    let data = std::fs::read(&path).unwrap();
    let moov = data.windows(4).position(|w| w == b"moov").unwrap();
    let moov_len = u32::from_be_bytes(data[moov - 4..moov].try_into().unwrap()) as usize;
    let bad = dir.path().join("bad.mp4");
    let mut outcomes = (0, 0);
    // Corrupt each byte of the moov box in turn.
    for (n, at) in (moov..moov + moov_len).enumerate() {
        let mut d = data.clone();
        d[at] ^= if n % 2 == 0 { 0xff } else { 0x80 };
        std::fs::write(&bad, &d).unwrap();
        match read_all(&format!("file:{}?realtime=false", bad.display()), 200).await {
            Ok(_) => outcomes.0 += 1,
            Err(_) => outcomes.1 += 1,
        }
    }
    assert!(outcomes.1 > 0, "some damage is detected: {outcomes:?}");
}

#[tokio::test]
async fn next_is_cancel_safe_in_a_select_with_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "cs.mp4", "1", &h264(), true);
    let all = read_all(
        &format!("file:{}?realtime=false", path.display()),
        usize::MAX,
    )
    .await
    .unwrap();
    let spec = SourceSpec::parse(&format!("file:{}", path.display())).unwrap();
    let mut src = Source::open(&spec, clock()).await.unwrap();
    let mut got = Vec::new();
    let mut timeouts = 0;
    loop {
        tokio::select! {
            f = src.next() => match f.unwrap() {
                Some(f) => got.push(f),
                None => break,
            },
            // Shorter than a frame interval: most calls are dropped while waiting.
            _ = tokio::time::sleep(std::time::Duration::from_millis(7)) => timeouts += 1,
        }
    }
    assert!(timeouts > 10, "the timer won often ({timeouts})");
    assert_eq!(got.len(), all.len(), "no frame lost to a dropped next()");
    for (a, b) in got.iter().zip(&all) {
        assert_eq!((a.track, a.dts, &a.data), (b.track, b.dts, &b.data));
    }
}
