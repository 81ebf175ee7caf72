//! Tests from real payloads: what ffmpeg (`-rtpflags latm`) and GStreamer (`rtspclientsink`,
//! `rtpmp4apay`) sent to a recording RTSP server, and what ffmpeg's LATM muxer writes with
//! an in-band config; see `testdata/README.md` for how each file was captured.

use super::super::Depacketizer;
use super::*;
use crate::media::ingest::rtsp::sdp;

/// The packets of a capture: each led by a 16-bit big-endian length.
fn packets(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        out.push(data[2..2 + n].to_vec());
        data = &data[2 + n..];
    }
    out
}

/// The MP4A-LATM depacketizer the SDP's audio section gives.
fn from_sdp(sdp: &[u8]) -> Latm {
    let announced = sdp::parse(sdp).unwrap();
    announced
        .tracks
        .into_iter()
        .find_map(|t| match t.depacketizer {
            Depacketizer::Latm(l) => Some(l),
            _ => None,
        })
        .expect("an MP4A-LATM track")
}

/// An RTP packet with this payload.
fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9]);
    p.extend_from_slice(payload);
    p
}

fn set_marker(p: &mut [u8], marker: bool) {
    p[1] = (p[1] & 0x7f) | if marker { 0x80 } else { 0 };
}

/// Feeds packets and returns every unit, panicking on an error.
fn run(l: &mut Latm, pkts: &[Vec<u8>]) -> Vec<Unit> {
    let mut out = Vec::new();
    for p in pkts {
        l.push(&Rtp::parse(p).unwrap()).unwrap();
        while let Some(u) = l.pull() {
            out.push(u);
        }
    }
    out
}

fn data(units: &[Unit]) -> Vec<&[u8]> {
    units.iter().map(|u| &u.data[..]).collect()
}

const FFMPEG_SDP: &[u8] = include_bytes!("testdata/ffmpeg-latm.sdp");
const FFMPEG: &[u8] = include_bytes!("testdata/ffmpeg-latm.rtp");
const FFMPEG_FRAG_SDP: &[u8] = include_bytes!("testdata/ffmpeg-latm-fragmented.sdp");
const FFMPEG_FRAG: &[u8] = include_bytes!("testdata/ffmpeg-latm-fragmented.rtp");
const GST_SDP: &[u8] = include_bytes!("testdata/gstreamer-latm.sdp");
const GST: &[u8] = include_bytes!("testdata/gstreamer-latm.rtp");
const GST_FRAG: &[u8] = include_bytes!("testdata/gstreamer-latm-fragmented.rtp");
const LOAS: &[u8] = include_bytes!("testdata/ffmpeg-latm-inband.loas");

#[test]
fn ffmpeg_sends_one_frame_per_packet_stamped_by_the_rtp_clock() {
    let mut l = from_sdp(FFMPEG_SDP);
    let p = l.params().unwrap().clone();
    assert_eq!(
        (p.sample_rate, p.channels, p.frame_samples),
        (48_000, 1, 1024)
    );
    assert_eq!(&p.config[..], &[0x11, 0x88]);
    let pkts = packets(FFMPEG);
    let units = run(&mut l, &pkts);
    assert_eq!(units.len(), pkts.len());
    for (i, (u, p)) in units.iter().zip(&pkts).enumerate() {
        assert_eq!(u.pts, 1024 * i as i64);
        // A one-byte PayloadLengthInfo, then the frame.
        assert_eq!(&u.data[..], &Rtp::parse(p).unwrap().payload[1..]);
        assert!(u.keyframe);
    }
    // ffmpeg's first frame carries its name in a fill element.
    assert_eq!(&units[0].data[..7], b"\xde\x02\x00Lavc");
    assert_eq!(l.params(), Some(&p));
}

#[test]
fn ffmpeg_fragments_reassemble_into_the_frames_it_sends_whole() {
    // The same encoder on the same input, once with -pkt_size 120: every frame is split in
    // two or three packets, the marker on the last.
    let mut l = from_sdp(FFMPEG_FRAG_SDP);
    let pkts = packets(FFMPEG_FRAG);
    assert!(pkts.iter().any(|p| p[1] & 0x80 == 0), "fragmented");
    let frags = run(&mut l, &pkts);
    let whole = run(&mut from_sdp(FFMPEG_SDP), &packets(FFMPEG));
    assert!(frags.len() >= 4, "{} frames", frags.len());
    assert_eq!(data(&frags), data(&whole[..frags.len()]));
    let steps: Vec<i64> = frags.windows(2).map(|w| w[1].pts - w[0].pts).collect();
    assert!(steps.iter().all(|&s| s == 1024), "{steps:?}");
}

#[test]
fn gstreamer_keeps_the_mp4s_config_and_sends_frames_whole_or_fragmented() {
    let mut l = from_sdp(GST_SDP);
    let p = l.params().unwrap().clone();
    assert_eq!(&p.config[..], &[0x11, 0x88, 0x56, 0xe5, 0x00]);
    assert_eq!((p.sample_rate, p.channels), (48_000, 1));
    let pkts = packets(GST);
    let whole = run(&mut l, &pkts);
    assert_eq!(whole.len(), pkts.len());
    // GStreamer's RTP timestamps come from buffer times: the first two frames share one,
    // later steps are 1023 or 1024. They are kept as sent.
    assert_eq!(whole[0].pts, whole[1].pts);
    assert!(whole[2..]
        .windows(2)
        .all(|w| (1023..=1025).contains(&(w[1].pts - w[0].pts))));
    // rtpmp4apay mtu=100 on the same file.
    let frags = run(&mut from_sdp(GST_SDP), &packets(GST_FRAG));
    assert!(frags.len() >= 5, "{} frames", frags.len());
    assert_eq!(data(&frags), data(&whole[..frags.len()]));
}

#[test]
fn several_elements_in_one_packet_give_consecutive_timestamps() {
    let pkts = packets(FFMPEG);
    let mut payload = Vec::new();
    for p in &pkts[..3] {
        payload.extend_from_slice(Rtp::parse(p).unwrap().payload);
    }
    let mut l = from_sdp(FFMPEG_SDP);
    let units = run(&mut l, &[rtp(7, 5000, true, &payload)]);
    let expect = run(&mut from_sdp(FFMPEG_SDP), &pkts[..3]);
    assert_eq!(data(&units), data(&expect));
    let pts: Vec<i64> = units.iter().map(|u| u.pts).collect();
    assert_eq!(pts, [0, 1024, 2048]);
}

/// The AudioMuxElements of a LOAS stream (AudioSyncStream: 0x2b7, 13-bit length).
fn loas_elements(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        assert_eq!(u16::from_be_bytes([data[0], data[1]]) >> 5, 0x2b7);
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]) & 0x1fff);
        out.push(&data[3..3 + len]);
        data = &data[3 + len..];
    }
    out
}

/// An in-band (`cpresent=1`) depacketizer: the SDP's config is made irrelevant.
fn inband() -> Latm {
    let fmtp = [("cpresent".to_string(), "1".to_string())];
    Latm::new(48_000, &fmtp).unwrap()
}

#[test]
fn in_band_configs_from_ffmpegs_latm_muxer_give_the_frames_gstreamer_sent() {
    // `ffmpeg -i clip.mp4 -c:a copy -smc-interval 4 -f latm`: the config in elements 0, 4,
    // 8, "use the same" in the others; frames start at odd bit offsets after a config. The
    // GStreamer capture carried the same MP4's frames.
    let elements = loas_elements(LOAS);
    assert_eq!(elements.len(), 12);
    let pkts: Vec<Vec<u8>> = elements
        .iter()
        .enumerate()
        .map(|(i, e)| rtp(i as u16, 1024 * i as u32, true, e))
        .collect();
    let mut l = inband();
    assert_eq!(l.params(), None, "no config before the first element");
    let units = run(&mut l, &pkts);
    let gst = run(&mut from_sdp(GST_SDP), &packets(GST));
    assert_eq!(data(&units), data(&gst));
    let p = l.params().unwrap();
    assert_eq!(&p.config[..], &[0x11, 0x88]);
    assert_eq!((p.sample_rate, p.channels), (48_000, 1));

    // Joining after the first config: nothing until the next one, and no error.
    let mut late = inband();
    let from_second = run(&mut late, &pkts[1..]);
    assert_eq!(data(&from_second), data(&gst[4..]));
    assert_eq!(from_second[0].pts, 3 * 1024);

    // An in-band element split over two packets.
    let mut split = inband();
    let (a, b) = elements[0].split_at(20);
    let units = run(
        &mut split,
        &[
            rtp(1, 0, false, a),
            rtp(2, 0, true, b),
            rtp(3, 1024, true, elements[1]),
        ],
    );
    assert_eq!(data(&units), data(&gst[..2]));
}

#[test]
fn a_lost_fragment_drops_its_frame_and_the_rest_of_it_but_not_the_next_frame() {
    let pkts = packets(FFMPEG_FRAG);
    let whole = run(&mut from_sdp(FFMPEG_FRAG_SDP), &pkts);
    // Lose the first fragment of the third frame (seq of packet k: first + k).
    let ts = |p: &Vec<u8>| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let starts: Vec<usize> = (0..pkts.len())
        .filter(|&k| k == 0 || ts(&pkts[k]) != ts(&pkts[k - 1]))
        .collect();
    let lost = starts[2];
    let kept: Vec<Vec<u8>> = pkts
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != lost)
        .map(|(_, p)| p.clone())
        .collect();
    let mut l = from_sdp(FFMPEG_FRAG_SDP);
    let mut got = Vec::new();
    for p in &kept {
        l.push(&Rtp::parse(p).unwrap()).unwrap();
        while let Some(u) = l.pull() {
            got.push(u);
        }
    }
    let mut expect: Vec<&Unit> = whole.iter().collect();
    expect.remove(2);
    assert_eq!(got.iter().collect::<Vec<_>>(), expect);
}

#[test]
fn a_sender_marking_every_fragment_or_none_is_still_understood() {
    let pkts = packets(FFMPEG_FRAG);
    let expect = run(&mut from_sdp(FFMPEG_FRAG_SDP), &pkts);
    let mut all_marked = pkts.clone();
    all_marked.iter_mut().for_each(|p| set_marker(p, true));
    assert_eq!(run(&mut from_sdp(FFMPEG_FRAG_SDP), &all_marked), expect);
    // Up to the last packet with a marker, so the capture ends with a whole frame.
    let end = pkts.iter().rposition(|p| p[1] & 0x80 != 0).unwrap() + 1;
    let mut unmarked = pkts[..end].to_vec();
    unmarked.iter_mut().for_each(|p| set_marker(p, false));
    let got = run(&mut from_sdp(FFMPEG_FRAG_SDP), &unmarked);
    // Each element is taken when the timestamp moves on; the last one waits for that.
    assert_eq!(got[..], expect[..got.len()]);
    assert_eq!(got.len() + 1, expect.len());
}

#[test]
fn garbage_and_cut_real_packets_are_errors_or_frames_never_a_panic() {
    for (sdp, capture) in [
        (FFMPEG_SDP, FFMPEG),
        (GST_SDP, GST),
        (FFMPEG_FRAG_SDP, FFMPEG_FRAG),
    ] {
        for p in packets(capture) {
            for cut in 12..p.len() {
                for flip in [None, Some(12), Some(13), Some(cut.saturating_sub(1))] {
                    let mut q = p[..cut].to_vec();
                    if let Some(i) = flip.filter(|&i| i < q.len()) {
                        q[i] ^= 0x81;
                    }
                    for mut l in [from_sdp(sdp), inband()] {
                        let _ = l.push(&Rtp::parse(&q).unwrap());
                        let _ = l.push(&Rtp::parse(&rtp(900, 77, true, &q[12..])).unwrap());
                        while let Some(u) = l.pull() {
                            assert!(u.data.len() <= MAX_FRAME);
                        }
                    }
                }
            }
        }
    }
    assert!(inband()
        .push(&Rtp::parse(&rtp(1, 0, true, &[])).unwrap())
        .is_err());
}

#[test]
fn an_element_that_never_ends_is_dropped_at_the_memory_bound() {
    let mut l = from_sdp(FFMPEG_SDP);
    // A PayloadLengthInfo of 255 * 40 bytes: lengths over a frame are refused at once.
    let escape = [0xffu8; 40];
    let r = l.push(&Rtp::parse(&rtp(1, 0, true, &escape)).unwrap());
    assert!(matches!(r, Err(DepackError::Payload { .. })), "{r:?}");
    // Fragments without a marker pile up to the bound, then are dropped.
    let chunk = vec![0x10u8; 1400];
    let mut too_large = false;
    for seq in 2..1000u16 {
        match l.push(&Rtp::parse(&rtp(seq, 1024, false, &chunk)).unwrap()) {
            Ok(()) => assert!(l.pending.len() <= MAX_PENDING),
            Err(e) => {
                assert_eq!(e, DepackError::TooLarge);
                too_large = true;
                break;
            }
        }
    }
    assert!(too_large);
    assert!(l.pending.is_empty());
}

#[test]
fn cpresent_0_needs_a_config_and_the_clock_rate_is_checked() {
    let f = |kv: &[(&str, &str)]| -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(Latm::new(48_000, &f(&[("cpresent", "0")])).is_err());
    assert!(Latm::new(0, &f(&[("config", "400023103fc0")])).is_err());
    // cpresent defaults to 1 (RFC 6416); a config= is then the starting point.
    let l = Latm::new(48_000, &f(&[("config", "400023103fc0")])).unwrap();
    assert!(l.inband && l.params().is_some());
}
