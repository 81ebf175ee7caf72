//! `Ingest` against a real store in a temporary directory: publish, frames, end of push.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::media::frame::Frame;
use crate::media::frame::{AudioCodec, AudioParams, StreamParams, TrackParams};
use crate::media::ingest::*;
use crate::pipeline::factory::RecorderFactory;
use crate::storage::store::SegmentState;
use crate::storage::store::Store;
use crate::util::clock::SystemClock;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    cancel: CancellationToken,
    ingest: Ingest,
    board: Arc<crate::media::health::StatusBoard>,
}

fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "device_id = \"d\"\n[storage]\nroot = \"{}\"\nmax_bytes = \"1GiB\"\nmin_free = 0\n\
         [[templates]]\nname = \"t\"\nformats = [\"fmp4\"]\ninterval = \"60s\"\n\
         [[templates]]\nname = \"off\"\nformats = []\n\
         [[rules]]\ntemplate = \"t\"\napp = \"live\"\n\
         [[rules]]\ntemplate = \"off\"\nstream = \"quiet\"\n\
         [[streams]]\nname = \"cam1\"\nsource = \"file:x.mp4\"\n{extra}",
        dir.path().display()
    );
    let config = Arc::new(Config::from_toml_str(&toml).unwrap());
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let cancel = CancellationToken::new();
    let board = Arc::new(crate::media::health::StatusBoard::default());
    let clock: crate::util::clock::SharedClock = Arc::new(SystemClock);
    let recorders = RecorderFactory {
        device: config.device_id.clone(),
        store: store.clone(),
        clock: clock.clone(),
        closed: Arc::new(Notify::new()),
        pacer: None,
        health: crate::storage::watchdog::health::StorageHealth::with_defaults(clock.clone()),
        pipes: Default::default(),
        deny: crate::sync::upload::DenyFlag::load(&store),
        time: None,
    };
    let ingest = Ingest::new(IngestContext {
        config,
        clock,
        cancel: cancel.clone(),
        recorder: Arc::new(recorders),
        board: board.clone(),
    });
    Fixture {
        _dir: dir,
        store,
        cancel,
        ingest,
        board,
    }
}

fn req(app: &str, stream: &str, query: &str) -> PublishRequest {
    PublishRequest {
        protocol: Protocol::Rtsp,
        app: app.into(),
        stream: stream.into(),
        query: query.into(),
        peer: "127.0.0.1:5000".parse().unwrap(),
        codecs: None,
    }
}

fn audio_frames(n: usize) -> Vec<Frame> {
    let params = Arc::new(StreamParams {
        tracks: vec![TrackParams::Audio(AudioParams {
            codec: AudioCodec::Aac,
            sample_rate: 48_000,
            channels: 1,
            config: Bytes::from_static(&[0x11, 0x88]),
            timescale: 48_000,
            frame_samples: 1024,
        })],
    });
    (0..n)
        .map(|i| Frame {
            params: params.clone(),
            track: 0,
            dts: i as i64 * 1024,
            pts: i as i64 * 1024,
            keyframe: true,
            data: Bytes::from(vec![0x21u8; 20]),
        })
        .collect()
}

async fn closed_rows(
    store: &Arc<Store>,
    stream: &str,
    want: usize,
) -> Vec<crate::storage::store::SegmentRow> {
    for _ in 0..200 {
        let rows: Vec<_> = store
            .segments()
            .unwrap()
            .into_iter()
            .filter(|r| r.stream == stream && r.state == SegmentState::Closed)
            .collect();
        if rows.len() >= want {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {want} closed segment(s) of {stream}");
}

#[tokio::test]
async fn a_push_is_recorded_and_its_segment_closes_when_the_publisher_goes() {
    let f = fixture("");
    let mut p = f.ingest.publish(req("live", "cam9", "")).unwrap();
    assert_eq!(f.ingest.live_streams(), vec!["cam9".to_string()]);
    for fr in audio_frames(150) {
        p.send(fr).unwrap();
    }
    drop(p);
    let rows = closed_rows(&f.store, "cam9", 1).await;
    assert_eq!(rows[0].app, "live");
    assert!(rows[0].duration_ms >= 3000, "{}", rows[0].duration_ms);
    assert!(f.ingest.live_streams().is_empty());
}

#[tokio::test]
async fn a_reconnect_starts_a_new_segment_with_the_next_sequence_number() {
    let f = fixture("");
    for _ in 0..2 {
        let mut p = f.ingest.publish(req("live", "cam9", "")).unwrap();
        for fr in audio_frames(100) {
            p.send(fr).unwrap();
        }
    }
    let rows = closed_rows(&f.store, "cam9", 2).await;
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(seqs, vec![0, 1]);
}

#[tokio::test]
async fn a_second_publisher_is_refused_while_the_first_is_live() {
    let f = fixture("");
    let _p = f.ingest.publish(req("live", "cam9", "")).unwrap();
    let e = f.ingest.publish(req("live", "cam9", "")).unwrap_err();
    assert_eq!(
        e,
        PublishError::AlreadyLive {
            stream: "cam9".into()
        }
    );
    assert_eq!(e.rtsp_status(), 409);
}

#[tokio::test]
async fn with_takeover_the_new_publisher_wins_and_the_old_one_is_told() {
    let f = fixture("[ingest]\ntakeover = true\n");
    let mut old = f.ingest.publish(req("live", "cam9", "")).unwrap();
    let _new = f.ingest.publish(req("live", "cam9", "")).unwrap();
    tokio::time::timeout(Duration::from_secs(1), old.stopped())
        .await
        .unwrap();
    let e = old.send(audio_frames(1).remove(0)).unwrap_err();
    assert_eq!(
        e,
        IngestError::TakenOver {
            stream: "cam9".into()
        }
    );
}

#[tokio::test]
async fn pushes_nobody_records_or_with_bad_names_or_params_are_refused() {
    let f = fixture("");
    let cases = [
        (req("other", "x", ""), 403),
        (req("live", "quiet", ""), 403),
        (req("", "cam1", ""), 403),
        (req("live", "..", ""), 400),
        (req("live", "x", "record=avi"), 400),
        (req("live", "x", "record=dash"), 406),
    ];
    for (r, status) in cases {
        let e = f.ingest.publish(r.clone()).unwrap_err();
        assert_eq!(e.rtsp_status(), status, "{r:?}: {e}");
    }
}

#[tokio::test]
async fn a_recorder_too_far_behind_disconnects_the_publisher() {
    let f = fixture("[ingest]\nmax_buffered_bytes = \"64KiB\"\n");
    let mut p = f.ingest.publish(req("live", "cam9", "")).unwrap();
    let big = Frame {
        data: Bytes::from(vec![0u8; 40_000]),
        ..audio_frames(1).remove(0)
    };
    // Nothing yields to the runtime, so the recorder cannot drain in between.
    p.send(big.clone()).unwrap();
    let e = p.send(big).unwrap_err();
    assert!(
        matches!(e, IngestError::Overrun { limit: 65_536, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_until_one_closes() {
    let f = fixture("[ingest]\nmax_connections = 2\n");
    let a = f.ingest.connection().unwrap();
    let _b = f.ingest.connection().unwrap();
    assert_eq!(
        f.ingest.connection().unwrap_err(),
        PublishError::TooMany { limit: 2 }
    );
    drop(a);
    f.ingest.connection().unwrap();
}

#[tokio::test]
async fn shutdown_stops_publishers_closes_segments_and_refuses_new_ones() {
    let f = fixture("");
    let mut p = f.ingest.publish(req("live", "cam9", "")).unwrap();
    for fr in audio_frames(100) {
        p.send(fr).unwrap();
    }
    tokio::task::yield_now().await;
    f.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(1), p.stopped())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), f.ingest.wait())
        .await
        .expect("sessions finish");
    assert_eq!(closed_rows(&f.store, "cam9", 1).await.len(), 1);
    assert_eq!(
        f.ingest.publish(req("live", "cam8", "")).unwrap_err(),
        PublishError::ShuttingDown
    );
    assert!(matches!(
        p.send(audio_frames(1).remove(0)),
        Err(IngestError::Stopped { .. })
    ));
}

#[tokio::test]
async fn a_push_shows_in_the_status_board_until_its_segment_is_closed() {
    use crate::media::health::StreamState;
    let f = fixture("");
    let mut p = f.ingest.publish(req("live", "cam9", "")).unwrap();
    for fr in audio_frames(100) {
        p.send(fr).unwrap();
    }
    let now = std::time::Instant::now();
    let mut seen = None;
    for _ in 0..200 {
        let r = f.board.reports(now);
        if r.first().is_some_and(|r| r.frames > 0) {
            seen = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reports = seen.expect("the push never reported frames");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].name, "cam9");
    assert_eq!(reports[0].state, StreamState::Recording);
    assert_eq!(reports[0].source, "rtsp push from 127.0.0.1:5000");
    drop(p);
    closed_rows(&f.store, "cam9", 1).await;
    for _ in 0..200 {
        if f.board.reports(now).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the ended push is still on the board: {:?}",
        f.board.reports(now)
    );
}

/// One RTSP request from its text (headers, a blank line, then the body).
fn rtsp_request(text: &str) -> rtsp_types::Request<Vec<u8>> {
    match rtsp_types::Message::<Vec<u8>>::parse(text.as_bytes()) {
        Ok((rtsp_types::Message::Request(r), _)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

#[tokio::test]
async fn a_track_edgerec_does_not_record_is_set_up_and_its_rtp_dropped() {
    // ffmpeg pushing H.264 + G.711 µ-law: refusing the PCMU SETUP (404, 415, 451, 453, 461,
    // 501) makes ffmpeg and rtspclientsink give up the whole push.
    use rtsp_types::StatusCode;
    let f = fixture("");
    let peer = "127.0.0.1:5000".parse().unwrap();
    let mut s = rtsp::session::Session::new(f.ingest.clone(), peer, "s1".into());
    let sdp = include_str!("../media/ingest/rtsp/testdata/ffmpeg-h264-pcmu.sdp");
    let url = "rtsp://127.0.0.1:8554/live/mixed";
    let announce = format!(
        "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let setup = |cseq: u32, track: u32, transport: &str| {
        rtsp_request(&format!(
            "SETUP {url}/streamid={track} RTSP/1.0\r\nCSeq: {cseq}\r\nTransport: {transport}\r\n\r\n"
        ))
    };
    let record = rtsp_request(&format!("RECORD {url} RTSP/1.0\r\nCSeq: 9\r\n\r\n"));
    assert_eq!(
        s.handle(&rtsp_request(&announce)).0.status(),
        StatusCode::from(200)
    );
    let tcp = |ch: u8| {
        format!(
            "RTP/AVP/TCP;unicast;interleaved={ch}-{};mode=record",
            ch + 1
        )
    };

    // Another push sets up only the track that is not recorded, over UDP: accepted, but
    // RECORD is refused, since nothing would be recorded.
    let mut other = rtsp::session::Session::new(f.ingest.clone(), peer, "s2".into());
    let url2 = "rtsp://127.0.0.1:8554/live/other";
    let announce2 = announce.replace(url, url2);
    assert_eq!(
        other.handle(&rtsp_request(&announce2)).0.status(),
        StatusCode::from(200)
    );
    let pcmu_only = rtsp_request(&format!(
        "SETUP {url2}/streamid=1 RTSP/1.0\r\nCSeq: 2\r\n\
         Transport: RTP/AVP/UDP;unicast;client_port=5002-5003;mode=record\r\n\r\n"
    ));
    let (r, _, udp) = other.handle_with_udp(&pcmu_only, Some((40_002, 40_003)));
    assert_eq!(r.status(), StatusCode::from(200));
    assert!(udp.is_some(), "its datagrams are read, then dropped");
    let record2 = rtsp_request(&format!("RECORD {url2} RTSP/1.0\r\nCSeq: 3\r\n\r\n"));
    assert_eq!(other.handle(&record2).0.status(), StatusCode::from(455));

    // This push sets up both tracks.
    assert_eq!(
        s.handle(&setup(3, 0, &tcp(0))).0.status(),
        StatusCode::from(200)
    );
    let (r, _) = s.handle(&setup(4, 1, &tcp(2)));
    assert_eq!(r.status(), StatusCode::from(200));
    let transport = r.header(&rtsp_types::headers::TRANSPORT).unwrap();
    assert!(
        transport.as_str().contains("interleaved=2-3"),
        "{transport:?}"
    );
    assert_eq!(s.handle(&record).0.status(), StatusCode::from(200));
    // More PCMU packets than the bad-packet limit: dropped quietly, the push goes on.
    for seq in 0..600u16 {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        s.data(2, &p).unwrap();
    }
    let reports = f.board.reports(std::time::Instant::now());
    let mixed = reports.iter().find(|r| r.name == "mixed").unwrap();
    assert_eq!(mixed.skipped.len(), 1);
    assert!(
        mixed.skipped[0].starts_with("audio PCMU/8000 (not a codec"),
        "{:?}",
        mixed.skipped
    );
}

#[tokio::test]
async fn codecs_a_format_cannot_hold_are_refused_at_publish_or_at_the_first_frame() {
    use crate::media::frame::VideoCodec;
    let f = fixture("");
    // Known before the media (RTSP's SDP): refused at publish, 415, naming `record=`.
    let mut r = req("live", "cam9", "record=flv");
    r.codecs = Some((Some(VideoCodec::H265), Some(AudioCodec::Aac)));
    let e = f.ingest.publish(r).unwrap_err();
    assert_eq!(e.rtsp_status(), 415, "{e}");
    assert!(e.to_string().contains("record= \"flv\""), "{e}");
    // With record_type=audio the video is not recorded: an FLV of the audio is fine.
    let mut r = req("live", "cam8", "record=flv&record_type=audio");
    r.codecs = Some((Some(VideoCodec::H265), Some(AudioCodec::Aac)));
    drop(f.ingest.publish(r).unwrap());
    // Known from the first frame only (RTMP): `send` refuses it, with the reason.
    let mut p = f.ingest.publish(req("live", "mic", "record=aac")).unwrap();
    let mut frame = audio_frames(1).remove(0);
    let mut params = (*frame.params).clone();
    if let TrackParams::Audio(a) = &mut params.tracks[0] {
        a.codec = AudioCodec::Opus;
    }
    frame.params = Arc::new(params);
    match p.send(frame) {
        Err(IngestError::Refused { refusal, .. }) => {
            assert!(refusal.to_string().contains("Opus"), "{refusal}")
        }
        other => panic!("{other:?}"),
    }
    // AAC goes through.
    let mut p = f.ingest.publish(req("live", "mic2", "record=aac")).unwrap();
    for fr in audio_frames(3) {
        p.send(fr).unwrap();
    }
    f.cancel.cancel();
}
