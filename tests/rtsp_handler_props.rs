//! Property tests on stable for the RTSP push server's request handling itself: the byte
//! stream framing ([`Framer`]) and the connection's protocol state ([`Session`]), driven
//! exactly as the connection loop drives them, against a real `Ingest` and store in a
//! temporary directory. Valid conversations cut at random read sizes must record; random
//! requests, mutated conversations and garbage interleaved with data must never panic,
//! keep the buffer under its bound, and get a well-formed response to every request.
//! The seed is printed; replay a failure with `FUZZ_SEED=…`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgerec::config::Config;
use edgerec::media::health::StatusBoard;
use edgerec::media::ingest::rtsp::framing::{Framer, Item};
use edgerec::media::ingest::rtsp::session::{After, Session};
use edgerec::media::ingest::{Ingest, IngestContext};
use edgerec::storage::store::{SegmentState, Store};
use edgerec::util::clock::SystemClock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn seed() -> u64 {
    let s = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0005_7a7e_3141_u64);
    eprintln!("FUZZ_SEED={s}");
    s | 1
}

const MAX_REQUEST: usize = 8 << 10;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    ingest: Ingest,
    cancel: CancellationToken,
}

fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "device_id = \"d\"\n[storage]\nroot = \"{}\"\nmax_bytes = \"1GiB\"\nmin_free = 0\n\
         [[templates]]\nname = \"t\"\nformats = [\"fmp4\"]\ninterval = \"60s\"\n\
         [[rules]]\ntemplate = \"t\"\napp = \"live\"\n\
         [ingest]\nmax_request_bytes = {MAX_REQUEST}\nmax_buffered_bytes = \"4MiB\"\n{extra}",
        dir.path().display()
    );
    let config = Arc::new(Config::from_toml_str(&toml).unwrap());
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let cancel = CancellationToken::new();
    let clock: edgerec::util::clock::SharedClock = Arc::new(SystemClock);
    let recorders = edgerec::pipeline::factory::RecorderFactory {
        device: config.device_id.clone(),
        store: store.clone(),
        clock: clock.clone(),
        closed: Arc::new(Notify::new()),
        pacer: None,
        health: edgerec::storage::watchdog::health::StorageHealth::with_defaults(clock.clone()),
        pipes: Default::default(),
        deny: edgerec::sync::upload::DenyFlag::load(&store),
        time: None,
    };
    let ingest = Ingest::new(IngestContext {
        config,
        clock,
        cancel: cancel.clone(),
        recorder: Arc::new(recorders),
        board: Arc::new(StatusBoard::default()),
    });
    Fixture {
        _dir: dir,
        store,
        ingest,
        cancel,
    }
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
    a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LADdoFB+wEQAAAAwBAAAAMg8UKqA==,aM4PyA==\r\n\
    a=control:streamid=0\r\n\
    m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
    a=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1188\r\n\
    a=control:streamid=1\r\n";

fn request(
    method: &str,
    uri: &str,
    cseq: usize,
    headers: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut m = format!("{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n");
    for (k, v) in headers {
        m += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        m += &format!("Content-Length: {}\r\n", body.len());
    }
    m += "\r\n";
    let mut m = m.into_bytes();
    m.extend_from_slice(body);
    m
}

fn interleaved(channel: u8, packet: &[u8]) -> Vec<u8> {
    let mut v = vec![b'$', channel];
    v.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    v.extend_from_slice(packet);
    v
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 7]);
    p.extend_from_slice(payload);
    p
}

/// A whole publish as ffmpeg sends it: OPTIONS, ANNOUNCE, two SETUPs, RECORD, then `secs`
/// seconds of 25 fps H.264 (a key frame each second) and AAC, a keepalive, TEARDOWN.
/// Returns the bytes and the number of requests in them.
fn conversation(r: &mut Rng, stream: &str, secs: u32) -> (Vec<u8>, usize) {
    let base = format!("rtsp://127.0.0.1:8554/live/{stream}");
    let mut out = Vec::new();
    let mut cseq = 0;
    let mut req = |out: &mut Vec<u8>, m: &str, uri: &str, h: &[(&str, String)], b: &[u8]| {
        cseq += 1;
        out.extend(request(m, uri, cseq, h, b));
    };
    req(&mut out, "OPTIONS", &base, &[], b"");
    let sdp_type = [("Content-Type", "application/sdp".to_string())];
    req(&mut out, "ANNOUNCE", &base, &sdp_type, SDP.as_bytes());
    for (i, ch) in [(0, "0-1"), (1, "2-3")] {
        let t = [(
            "Transport",
            format!("RTP/AVP/TCP;unicast;interleaved={ch};mode=record"),
        )];
        req(&mut out, "SETUP", &format!("{base}/streamid={i}"), &t, b"");
    }
    req(
        &mut out,
        "RECORD",
        &base,
        &[("Range", "npt=0.000-".into())],
        b"",
    );
    let (mut vseq, mut aseq) = (r.next() as u16, r.next() as u16);
    let (v0, a0) = (r.next() as u32, r.next() as u32);
    for f in 0..secs * 25 {
        let ts = v0.wrapping_add(f * 3600);
        let nal_type = if f % 25 == 0 { 0x65 } else { 0x41 };
        let mut nal = vec![nal_type];
        nal.extend(r.bytes(600));
        nal.push(0x80);
        if nal.len() > 300 {
            // FU-A in two fragments.
            let (a, b) = nal[1..].split_at(nal.len() / 2);
            let fu = |start: bool, end: bool, part: &[u8]| {
                let mut p = vec![
                    (nal_type & 0xe0) | 28,
                    (nal_type & 0x1f)
                        | if start {
                            0x80
                        } else if end {
                            0x40
                        } else {
                            0
                        },
                ];
                p.extend_from_slice(part);
                p
            };
            out.extend(interleaved(
                0,
                &rtp(96, false, vseq, ts, &fu(true, false, a)),
            ));
            vseq = vseq.wrapping_add(1);
            out.extend(interleaved(
                0,
                &rtp(96, true, vseq, ts, &fu(false, true, b)),
            ));
        } else {
            out.extend(interleaved(0, &rtp(96, true, vseq, ts, &nal)));
        }
        vseq = vseq.wrapping_add(1);
        // 48 kHz AAC: about two access units per video frame.
        for k in 0..2u32 {
            let au = r.bytes(40);
            let mut p = vec![0, 16];
            p.extend_from_slice(&((au.len() as u16) << 3).to_be_bytes());
            p.extend_from_slice(&au);
            let ats = a0.wrapping_add((f * 2 + k) * 1024);
            out.extend(interleaved(2, &rtp(97, true, aseq, ats, &p)));
            aseq = aseq.wrapping_add(1);
        }
        if f % 50 == 10 {
            out.extend(interleaved(1, &r.bytes(28))); // RTCP
            req(&mut out, "GET_PARAMETER", &base, &[], b"");
        }
    }
    req(&mut out, "TEARDOWN", &base, &[], b"");
    (out, cseq)
}

/// What one connection did with its input.
#[derive(Debug, Default)]
struct Outcome {
    responses: Vec<u16>,
    closed: Option<String>,
    max_buffered: usize,
}

/// Feeds `input` in random read sizes through a [`Framer`] and a [`Session`], as the
/// connection loop does, and checks the invariants every input must keep.
fn drive(r: &mut Rng, ingest: &Ingest, input: &[u8], id: u64) -> Outcome {
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut framer = Framer::new(ingest.limits().max_request_bytes);
    let mut session = Session::new(ingest.clone(), peer, format!("{id:016x}"));
    let mut out = Outcome::default();
    let mut rest = input;
    'conn: while !rest.is_empty() {
        let most = [16, 1500, 70_000][r.below(3)];
        let n = (1 + r.below(most)).min(rest.len());
        framer.extend(&rest[..n]);
        rest = &rest[n..];
        loop {
            match framer.next_item() {
                Ok(None) => break,
                Ok(Some(Item::Interleaved { channel, payload })) => {
                    if let Err(e) = session.data(channel, &payload) {
                        out.closed = Some(e);
                        break 'conn;
                    }
                }
                Ok(Some(Item::Request(req))) => {
                    // Half the requests as if the connection had bound UDP ports (it does for a
                    // SETUP asking for them), so both transports' paths are driven.
                    let udp = (r.below(2) == 0).then_some((40_000, 40_001));
                    let (resp, after, channel) = session.handle_with_udp(&req, udp);
                    assert!(
                        channel.is_none() || udp.is_some(),
                        "a UDP channel without ports"
                    );
                    let mut bytes = Vec::new();
                    resp.write(&mut bytes).expect("every response encodes");
                    let (parsed, used) = rtsp_types::Message::<Vec<u8>>::parse(&bytes[..])
                        .expect("every response parses back");
                    assert_eq!(used, bytes.len());
                    let rtsp_types::Message::Response(parsed) = parsed else {
                        panic!("a response parsed as something else");
                    };
                    let cseq = req
                        .header(&rtsp_types::headers::CSEQ)
                        .map(|v| v.as_str().to_owned());
                    if let Some(cseq) = cseq {
                        assert_eq!(
                            parsed
                                .header(&rtsp_types::headers::CSEQ)
                                .map(|v| v.as_str()),
                            Some(cseq.as_str()),
                            "the response echoes CSeq"
                        );
                    }
                    out.responses.push(u16::from(parsed.status()));
                    if after == After::Close {
                        out.closed = Some(format!("closed after {}", u16::from(parsed.status())));
                        break 'conn;
                    }
                }
                Err(e) => {
                    assert!(e.response().starts_with(b"RTSP/1.0 4"));
                    out.closed = Some(e.to_string());
                    break 'conn;
                }
            }
        }
        out.max_buffered = out.max_buffered.max(framer.buffered());
        assert!(
            framer.buffered() <= framer.limit(),
            "{} bytes buffered after draining (limit {})",
            framer.buffered(),
            framer.limit()
        );
    }
    out
}

async fn closed_segments(store: &Store, stream: &str) -> usize {
    for _ in 0..300 {
        let n = store
            .segments()
            .unwrap()
            .iter()
            .filter(|s| s.stream == stream && s.state == SegmentState::Closed)
            .count();
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    0
}

#[tokio::test(flavor = "current_thread")]
async fn valid_publishes_in_any_read_sizes_are_answered_200_and_recorded() {
    let f = fixture("");
    let mut r = Rng(seed());
    for i in 0..4 {
        let stream = format!("cam{i}");
        let (input, requests) = conversation(&mut r, &stream, 3);
        let out = drive(&mut r, &f.ingest, &input, i);
        assert_eq!(
            out.responses,
            vec![200; requests],
            "{stream}: {:?}",
            out.closed
        );
        assert_eq!(
            out.closed.as_deref(),
            Some("closed after 200"),
            "TEARDOWN closes"
        );
        assert!(
            closed_segments(&f.store, &stream).await > 0,
            "{stream}: the push left no closed segment"
        );
    }
    f.cancel.cancel();
    f.ingest.wait().await;
}

/// Flips, inserts, deletes, duplicates or splices garbage into a few places.
fn mutate(r: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..=r.below(6) {
        if v.is_empty() {
            v.push(r.next() as u8);
        }
        let i = r.below(v.len());
        match r.below(6) {
            0 => v[i] ^= 1 << r.below(8),
            1 => v.insert(i, r.next() as u8),
            2 => {
                v.remove(i);
            }
            3 => {
                let g = r.bytes(64);
                v.splice(i..i, g);
            }
            4 => {
                let end = (i + r.below(200)).min(v.len());
                let dup = v[i..end].to_vec();
                v.splice(i..i, dup);
            }
            _ => {
                let end = (i + r.below(2000)).min(v.len());
                v.drain(i..end);
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn mutated_publishes_never_panic_and_stay_bounded() {
    let f = fixture("");
    let mut r = Rng(seed() ^ 0x55);
    for i in 0..300u64 {
        let (mut input, requests) = conversation(&mut r, &format!("m{}", i % 7), 1);
        mutate(&mut r, &mut input);
        let out = drive(&mut r, &f.ingest, &input, i);
        assert!(out.responses.len() <= requests + 64, "{:?}", out.responses);
        assert!(out.max_buffered <= MAX_REQUEST.max(4 + 65_535));
        // Let the sessions of dropped publishers finish now and then.
        tokio::task::yield_now().await;
    }
    f.cancel.cancel();
    f.ingest.wait().await;
}

/// A request with a random method, URL, headers and body.
fn random_request(r: &mut Rng, cseq: usize) -> Vec<u8> {
    let method = r.pick(&[
        "OPTIONS",
        "ANNOUNCE",
        "SETUP",
        "RECORD",
        "TEARDOWN",
        "GET_PARAMETER",
        "SET_PARAMETER",
        "DESCRIBE",
        "PLAY",
        "PAUSE",
        "FOO",
    ]);
    let uri = r.pick(&[
        "rtsp://127.0.0.1/live/x",
        "rtsp://127.0.0.1/live/x/streamid=0",
        "rtsp://127.0.0.1/live/x/streamid=1",
        "rtsp://127.0.0.1/live/x?record=mp4|fmp4&record_interval=5",
        "rtsp://127.0.0.1/live/x?record_type=audio",
        "rtsp://127.0.0.1/live/x?record_interval=999999",
        "rtsp://127.0.0.1/a/b/c/d",
        "rtsp://127.0.0.1/",
        "*",
        "streamid=0",
        "rtsp://u:p@127.0.0.1/live/%2e%2e",
    ]);
    let mut headers = Vec::new();
    for _ in 0..r.below(4) {
        let (k, v) = match r.below(6) {
            0 => (
                "Transport",
                r.pick(&[
                    "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                    "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
                    "RTP/AVP/TCP;interleaved=255-256",
                    "RTP/AVP;unicast;client_port=5000-5001",
                    "RTP/AVP/TCP;interleaved=0-1,RTP/AVP/TCP;interleaved=0-1",
                    ";;;",
                ])
                .to_string(),
            ),
            1 => ("Session", format!("{:x};timeout=60", r.next())),
            2 => (
                "Authorization",
                r.pick(&[
                    "Basic dTpw",
                    "Digest username=\"u\", nonce=\"x\", response=\"0\"",
                    "Basic !!!",
                    "Digest",
                ])
                .to_string(),
            ),
            3 => ("Content-Type", "application/sdp".to_string()),
            4 => ("Range", "npt=0-".to_string()),
            _ => (
                "X-Junk",
                String::from_utf8_lossy(&r.bytes(40)).replace(['\r', '\n'], ""),
            ),
        };
        headers.push((k, v));
    }
    let body = match r.below(4) {
        0 => SDP.as_bytes().to_vec(),
        1 => {
            let mut s = SDP.as_bytes().to_vec();
            mutate(r, &mut s);
            s
        }
        2 => r.bytes(300),
        _ => Vec::new(),
    };
    request(method, uri, cseq, &headers, &body)
}

#[tokio::test(flavor = "current_thread")]
async fn random_requests_with_data_in_between_never_panic_and_are_all_answered() {
    for extra in ["", "[[ingest.users]]\nuser = \"u\"\npassword = \"p\"\n"] {
        let f = fixture(extra);
        let mut r = Rng(seed() ^ 0xaa);
        for i in 0..400u64 {
            let mut input = Vec::new();
            let mut requests = 0;
            for _ in 0..1 + r.below(12) {
                match r.below(4) {
                    0 => {
                        let ch = [0u8, 1, 2, 3, 7, 200][r.below(6)];
                        let p = rtp(
                            [96, 97, 0, 127][r.below(4)],
                            r.below(2) == 0,
                            r.next() as u16,
                            r.next() as u32,
                            &r.bytes(200),
                        );
                        input.extend(interleaved(ch, &p));
                    }
                    _ => {
                        requests += 1;
                        input.extend(random_request(&mut r, requests));
                    }
                }
            }
            let out = drive(&mut r, &f.ingest, &input, i);
            if out.closed.is_none() {
                // Nothing closed the connection: every request was answered.
                assert_eq!(out.responses.len(), requests, "{:?}", out.responses);
            }
            tokio::task::yield_now().await;
        }
        f.cancel.cancel();
        f.ingest.wait().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_and_huge_lengths_close_with_a_4xx_and_never_buffer_past_the_limit() {
    let f = fixture("");
    let mut r = Rng(seed() ^ 0x77);
    for i in 0..2000u64 {
        let input = match r.below(4) {
            0 => r.bytes(3000),
            1 => format!(
                "ANNOUNCE rtsp://h/live/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n",
                [MAX_REQUEST * 2, 99_999_999, usize::MAX / 2][r.below(3)]
            )
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat_n(b'v', MAX_REQUEST * 2))
            .collect(),
            2 => {
                let mut v = b"OPTIONS rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nX: ".to_vec();
                v.extend(std::iter::repeat_n(b'a', MAX_REQUEST * 2));
                v
            }
            _ => {
                let mut v = interleaved(0, &r.bytes(100));
                v.extend(r.bytes(500));
                v
            }
        };
        let out = drive(&mut r, &f.ingest, &input, i);
        assert!(out.max_buffered <= MAX_REQUEST.max(4 + 65_535));
        assert!(
            out.responses.iter().all(|s| *s >= 200),
            "{:?}",
            out.responses
        );
    }
    f.cancel.cancel();
    f.ingest.wait().await;
}
