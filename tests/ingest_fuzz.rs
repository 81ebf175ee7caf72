//! Property tests on stable: random and mutated input to the RTSP push side's pure parsers
//! (RTP, SDP, depacketizers, RTSP message framing). They assert no panic and bounded output;
//! the seed is printed so a failure can be replayed with `FUZZ_SEED=…`.

use edgerec::media::frame::VideoCodec;
use edgerec::media::ingest::depack::{
    aac::Aac, latm::Latm, opus::Opus, video::Video, Depacketizer, Rtp,
};
use edgerec::media::ingest::rtsp::sdp;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Flip, insert, delete or overwrite a few bytes.
    fn mutate(&mut self, v: &mut Vec<u8>) {
        for _ in 0..=self.below(4) {
            let i = self.below(v.len().max(1));
            match self.below(4) {
                0 if !v.is_empty() => v[i] ^= 1 << self.below(8),
                1 => v.insert(i.min(v.len()), self.next() as u8),
                2 if !v.is_empty() => {
                    v.remove(i);
                }
                _ if !v.is_empty() => v[i] = self.next() as u8,
                _ => v.push(self.next() as u8),
            }
        }
    }
}

fn seed() -> u64 {
    let s = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_4711_u64);
    eprintln!("FUZZ_SEED={s}");
    s | 1
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
    a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LADdoFB+wEQAAAAwBAAAAMg8UKqA==,aM4PyA==\r\n\
    a=control:streamid=0\r\n\
    m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
    a=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1188\r\n\
    a=control:streamid=1\r\n";

fn depacketizers() -> Vec<Depacketizer> {
    let aac = [
        ("mode", "AAC-hbr"),
        ("sizelength", "13"),
        ("config", "1188"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<Vec<_>>();
    vec![
        Depacketizer::Video(Box::new(Video::new(VideoCodec::H264, &[]))),
        Depacketizer::Video(Box::new(Video::new(VideoCodec::H265, &[]))),
        Depacketizer::Aac(Aac::new(48_000, &aac).unwrap()),
        Depacketizer::Opus(Opus::new(2)),
        Depacketizer::Latm(
            Latm::new(
                48_000,
                &fmtp(&[("cpresent", "0"), ("config", "400023103fc0")]),
            )
            .unwrap(),
        ),
        Depacketizer::Latm(Latm::new(48_000, &fmtp(&[("cpresent", "1")])).unwrap()),
    ]
}

fn fmtp(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Real MP4A-LATM payloads: ffmpeg's over RTP (`cpresent=0`), and the AudioMuxElements of
/// its LATM muxer with in-band configs (`cpresent=1`), from the depacketizer's test data.
fn latm_payloads(inband: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if inband {
        let mut d =
            &include_bytes!("../src/media/ingest/depack/testdata/ffmpeg-latm-inband.loas")[..];
        while d.len() >= 3 {
            let n = usize::from(u16::from_be_bytes([d[1], d[2]]) & 0x1fff).min(d.len() - 3);
            out.push(d[3..3 + n].to_vec());
            d = &d[3 + n..];
        }
    } else {
        let mut d = &include_bytes!("../src/media/ingest/depack/testdata/ffmpeg-latm.rtp")[..];
        while d.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([d[0], d[1]])).min(d.len() - 2);
            out.push(d[2 + 12..2 + n].to_vec());
            d = &d[2 + n..];
        }
    }
    out
}

/// A plausible RTP packet for the codec at `i`, so mutations reach deep paths.
fn packet(r: &mut Rng, codec: usize, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 96 | if r.below(3) == 0 { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1]);
    let body = r.bytes(300);
    match codec {
        0 => {
            let kind = [0x65u8, 0x41, 0x18, 0x7c][r.below(4)];
            p.push(kind);
            if kind == 0x7c {
                p.push([0x85u8, 0x05, 0x45][r.below(3)]);
            }
        }
        1 => {
            let t = [19u8, 1, 48, 49][r.below(4)];
            p.extend_from_slice(&[t << 1, 1]);
            if t == 49 {
                p.push([0x80u8 | 19, 19, 0x40 | 19][r.below(3)]);
            }
        }
        2 => {
            p.extend_from_slice(&[0, 16]);
            p.extend_from_slice(&(((body.len() as u16) << 3) | r.below(2) as u16).to_be_bytes());
        }
        4 | 5 => {
            // A real element, a piece of one (a fragment), or two in one packet.
            let real = latm_payloads(codec == 5);
            let mut e = real[r.below(real.len())].clone();
            match r.below(4) {
                0 => e.truncate(r.below(e.len())),
                1 => e.drain(..r.below(e.len())).for_each(drop),
                2 => e.extend_from_slice(&real[r.below(real.len())]),
                _ => {}
            }
            p.extend_from_slice(&e);
            return p;
        }
        _ => {}
    }
    p.extend_from_slice(&body);
    p
}

#[test]
fn depacketizers_survive_random_and_mutated_packets_with_bounded_output() {
    let mut r = Rng(seed());
    for (codec, mut d) in depacketizers().into_iter().enumerate() {
        let mut seq: u16 = r.next() as u16;
        let mut ts: u32 = r.next() as u32;
        for _ in 0..20_000 {
            // Mostly in order, sometimes lost, duplicated, or timestamps jumping back.
            seq = seq.wrapping_add([1u16, 1, 1, 2, 0, 40000][r.below(6)]);
            ts = ts.wrapping_add([0u32, 3600, 1024][r.below(3)]);
            if r.below(50) == 0 {
                ts = ts.wrapping_sub(90_000);
            }
            let mut p = packet(&mut r, codec, seq, ts);
            if r.below(4) == 0 {
                r.mutate(&mut p);
            }
            if r.below(20) == 0 {
                p = r.bytes(64);
            }
            if let Ok(rtp) = Rtp::parse(&p) {
                let _ = d.push(&rtp);
            }
            let mut n = 0;
            while let Some(u) = d.pull() {
                n += 1;
                assert!(u.data.len() <= 8 << 20);
                if codec < 2 {
                    // Video units are whole length-prefixed NAL units.
                    let mut rest = &u.data[..];
                    while !rest.is_empty() {
                        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                        assert!(4 + len <= rest.len());
                        rest = &rest[4 + len..];
                    }
                }
            }
            assert!(n <= 64, "more units than the queue bound");
        }
    }
}

#[test]
fn sdp_parsing_survives_mutations() {
    let mut r = Rng(seed());
    assert_eq!(sdp::parse(SDP.as_bytes()).unwrap().tracks.len(), 2);
    for _ in 0..20_000 {
        let mut s = SDP.as_bytes().to_vec();
        r.mutate(&mut s);
        let _ = sdp::parse(&s);
        let _ = sdp::parse(&r.bytes(200));
    }
}

#[test]
fn rtsp_message_framing_survives_garbage_and_huge_lengths() {
    let mut r = Rng(seed());
    let base = format!(
        "ANNOUNCE rtsp://127.0.0.1/live/cam9 RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    for _ in 0..20_000 {
        let mut m = base.clone().into_bytes();
        r.mutate(&mut m);
        let _ = rtsp_types::Message::<Vec<u8>>::parse(&m[..]);
        let _ = rtsp_types::Message::<Vec<u8>>::parse(&r.bytes(300)[..]);
    }
    let huge = "ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\n";
    assert!(rtsp_types::Message::<Vec<u8>>::parse(huge.as_bytes()).is_err());
}
