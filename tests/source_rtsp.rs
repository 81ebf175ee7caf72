//! The RTSP source against a real RTSP server on loopback (gst-rtsp-server, through the
//! shared test peer `tests/peers/rtsp_server.py`). Frames are checked by ffmpeg after being
//! rewritten as elementary streams (see `source_common`).

#[allow(unused_imports)]
mod common;
mod source_common;

use std::sync::Arc;

use common::{clip, free_port, ClipSpec, RtspPeer};
use edgerec::media::frame::{AudioCodec, Frame, TrackParams, VideoCodec};
use edgerec::media::source::{Source, SourceError, SourceSpec};
use edgerec::util::clock::{SharedClock, SystemClock};
use source_common::{count, decoded_frames, dump};

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// Reads frames until `video_frames` video frames arrived.
async fn read_video(url: &str, video_frames: usize) -> Result<Vec<Frame>, SourceError> {
    let spec = SourceSpec::parse(url).unwrap();
    let mut src = Source::open(&spec, clock()).await?;
    let mut frames = Vec::new();
    while count(&frames, 0) < video_frames {
        frames.push(src.next().await?.expect("a camera does not end"));
    }
    Ok(frames)
}

fn assert_per_track_dts_increase(frames: &[Frame]) {
    for track in 0..frames[0].params.tracks.len() {
        let dts: Vec<i64> = frames
            .iter()
            .filter(|f| f.track == track)
            .map(|f| f.dts)
            .collect();
        assert!(!dts.is_empty(), "track {track} has frames");
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "dts increases on track {track}"
        );
        assert!(
            frames.iter().all(|f| f.pts == f.dts),
            "RTP gives dts == pts"
        );
    }
}

#[tokio::test]
async fn h264_and_aac_over_tcp_arrive_as_decodable_mp4_frames() {
    let clip = clip(&ClipSpec::h264(2, 1));
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let frames = read_video(&peer.url("/cam"), 60).await.unwrap();

    let params = frames[0].params.clone();
    assert_eq!(params.tracks.len(), 2);
    match &params.tracks[0] {
        TrackParams::Video(v) => {
            assert_eq!(v.codec, VideoCodec::H264);
            assert_eq!((v.width, v.height), (320, 240));
            assert_eq!(v.timescale, 90_000);
            assert!(v.rfc6381.starts_with("avc1."), "{}", v.rfc6381);
        }
        other => panic!("{other:?}"),
    }
    match &params.tracks[1] {
        TrackParams::Audio(a) => {
            assert_eq!(a.codec, AudioCodec::Aac);
            assert_eq!(
                (a.sample_rate, a.channels, a.timescale),
                (48_000, 1, 48_000)
            );
            assert_eq!(a.frame_samples, 1024);
        }
        other => panic!("{other:?}"),
    }
    // Video is held a few frames for its decode times, so audio may come first; the
    // first video frame is a key frame.
    let first_video = frames.iter().find(|f| f.track == 0).unwrap();
    assert!(first_video.keyframe, "video starts on a key frame");
    assert!(frames.iter().all(|f| Arc::ptr_eq(&f.params, &params)));
    assert_per_track_dts_increase(&frames);
    // 25 fps at 90 kHz.
    let video: Vec<&Frame> = frames.iter().filter(|f| f.track == 0).collect();
    assert_eq!(video[1].dts - video[0].dts, 3600);
    // A key frame every second (25 frames).
    assert!(video[25].keyframe && video[50].keyframe && !video[1].keyframe);

    let dir = tempfile::tempdir().unwrap();
    let (v, a) = dump(&frames, &dir.path().join("rtsp"));
    assert_eq!(decoded_frames(&v.unwrap(), "h264"), 60);
    assert_eq!(
        decoded_frames(&a.unwrap(), "aac"),
        count(&frames, 1),
        "every audio frame decodes"
    );
}

#[tokio::test]
async fn udp_transport_is_used_when_asked() {
    let clip = clip(&ClipSpec::h264(2, 1));
    // A server that offers only UDP: the default (TCP) is refused, so frames read with
    // `?transport=udp` did come over UDP.
    let peer = RtspPeer::start_args(&[("/cam", &clip)], &["--protocols", "udp"]);
    let refused = read_video(&peer.url("/cam"), 1).await.err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|e| e.to_string().contains("461")),
        "TCP must be refused by a UDP-only server: {refused:?}"
    );
    let url = format!("{}?transport=udp", peer.url("/cam"));
    let frames = read_video(&url, 30).await.unwrap();
    assert!(frames[0].keyframe);
    assert_per_track_dts_increase(&frames);
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = dump(&frames, &dir.path().join("udp"));
    assert_eq!(decoded_frames(&v.unwrap(), "h264"), 30);
}

#[tokio::test]
async fn h265_camera_is_recorded_with_its_hvcc() {
    let spec = ClipSpec {
        codec: "h265",
        audio: false,
        ..ClipSpec::h264(2, 1)
    };
    let clip = clip(&spec);
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let frames = read_video(&peer.url("/cam"), 30).await.unwrap();
    assert_eq!(frames[0].params.tracks.len(), 1);
    match frames[0].track_params() {
        TrackParams::Video(v) => {
            assert_eq!(v.codec, VideoCodec::H265);
            assert!(v.rfc6381.starts_with("hvc1."), "{}", v.rfc6381);
        }
        other => panic!("{other:?}"),
    }
    assert!(frames[0].keyframe);
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = dump(&frames, &dir.path().join("h265"));
    assert_eq!(decoded_frames(&v.unwrap(), "hevc"), 30);
}

#[tokio::test]
async fn credentials_are_sent_and_wrong_ones_give_an_auth_error_without_the_password() {
    let clip = clip(&ClipSpec::h264(2, 1));
    let peer = RtspPeer::start_with(&[("/cam", &clip)], Some(("admin", "s3cret")));

    let frames = read_video(&peer.url_auth("/cam", "admin", "s3cret"), 5)
        .await
        .unwrap();
    assert!(frames[0].keyframe);

    let err = read_video(&peer.url_auth("/cam", "admin", "wrong-pw"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Auth { .. }), "{err:?}");
    assert!(err.is_permanent());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-pw"), "{shown}");
    assert!(shown.contains("rtsp://***@127.0.0.1"), "{shown}");

    let err = read_video(&peer.url("/cam"), 1).await.unwrap_err();
    assert!(matches!(err, SourceError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn refused_connection_is_a_transient_error_without_the_password() {
    let url = format!("rtsp://admin:hunter2@127.0.0.1:{}/cam", free_port());
    let err = read_video(&url, 1).await.unwrap_err();
    assert!(matches!(err, SourceError::Connect { .. }), "{err:?}");
    assert!(!err.is_permanent());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("rtsp://***@127.0.0.1"), "{shown}");
}

#[tokio::test]
async fn unknown_path_is_an_rtsp_error_naming_the_url() {
    let clip = clip(&ClipSpec::h264(2, 1));
    let peer = RtspPeer::start(&[("/cam", &clip)]);
    let err = read_video(&peer.url("/nothing-here"), 1).await.unwrap_err();
    assert!(matches!(err, SourceError::Rtsp { .. }), "{err:?}");
    assert!(err.to_string().contains("/nothing-here"), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}
