//! Property tests of the RTMP server's parsers on the stable toolchain: seeded random bytes
//! and mutated valid publisher conversations go into the pure [`Connection`] (handshake,
//! chunk stream, AMF0 commands, FLV tags), and random/mutated input into the AMF0 decoder,
//! the chunk reader and the FLV tag parser. Each asserts no panic and bounded memory.
//!
//! `RTMP_FUZZ_SEED=N` repeats a run; `RTMP_FUZZ_ITERS=N` runs longer (default 300 per
//! property, a few seconds in a debug build).

use bytes::{Bytes, BytesMut};

use edgerec::media::ingest::rtmp::amf::{self, Amf};
use edgerec::media::ingest::rtmp::chunk::{write_message, ChunkReader, Read};
use edgerec::media::ingest::rtmp::handshake::PACKET;
use edgerec::media::ingest::rtmp::media::Media;
use edgerec::media::ingest::rtmp::session::msg;
use edgerec::media::ingest::rtmp::{flv, Connection, Item, RtmpLimits};

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
    /// Random bytes, fewer than `max`.
    fn up_to(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn setup(name: &str) -> (Rng, usize) {
    let seed = std::env::var("RTMP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_4711_u64);
    let iters = std::env::var("RTMP_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    eprintln!("{name}: RTMP_FUZZ_SEED={seed} RTMP_FUZZ_ITERS={iters}");
    (Rng(seed | 1), iters)
}

fn limits() -> RtmpLimits {
    RtmpLimits {
        max_media: 256 << 10,
        max_command: 16 << 10,
        max_buffered: 512 << 10,
        read_size: 4096,
    }
}

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0c, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x01, 0x40, 0xf1, 0x42, 0x99, 0x60,
];

fn avc_header() -> Vec<u8> {
    let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x0c, 0xff, 0xe1];
    b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    b.extend_from_slice(SPS);
    b.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
    b
}

fn picture(rng: &mut Rng, key: bool) -> Vec<u8> {
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 40];
    for _ in 0..1 + rng.below(3) {
        let n = 1 + rng.below(3000);
        b.extend_from_slice(&(n as u32).to_be_bytes());
        b.extend(rng.bytes(n));
    }
    b
}

/// A valid publisher conversation: handshake, connect, createStream, publish, metadata,
/// sequence headers, then pictures and AAC frames with growing timestamps.
fn conversation(rng: &mut Rng) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[3]);
    out.extend_from_slice(&rng.bytes(2 * PACKET));
    let mut chunk = 128;
    let cmd = |out: &mut BytesMut, chunk: usize, stream: u32, v: &[Amf]| {
        write_message(
            out,
            chunk,
            3,
            msg::COMMAND_AMF0,
            stream,
            0,
            &amf::encode_all(v),
        );
    };
    if rng.below(2) == 0 {
        chunk = 1 + rng.below(8192);
        write_message(
            &mut out,
            128,
            2,
            msg::SET_CHUNK_SIZE,
            0,
            0,
            &(chunk as u32).to_be_bytes(),
        );
    }
    cmd(
        &mut out,
        chunk,
        0,
        &[
            Amf::string("connect"),
            Amf::Number(1.0),
            Amf::object([
                ("app", Amf::string("live")),
                ("tcUrl", Amf::string("rtmp://127.0.0.1/live")),
            ]),
        ],
    );
    cmd(
        &mut out,
        chunk,
        0,
        &[Amf::string("createStream"), Amf::Number(2.0), Amf::Null],
    );
    cmd(
        &mut out,
        chunk,
        1,
        &[
            Amf::string("publish"),
            Amf::Number(3.0),
            Amf::Null,
            Amf::string("cam?record_interval=2"),
            Amf::string("live"),
        ],
    );
    let meta = amf::encode_all(&[
        Amf::string("@setDataFrame"),
        Amf::string("onMetaData"),
        Amf::object([
            ("width", Amf::Number(320.0)),
            ("videocodecid", Amf::Number(7.0)),
        ]),
    ]);
    write_message(&mut out, chunk, 4, msg::DATA_AMF0, 1, 0, &meta);
    write_message(&mut out, chunk, 6, msg::VIDEO, 1, 0, &avc_header());
    write_message(&mut out, chunk, 4, msg::AUDIO, 1, 0, &[0xaf, 0, 0x11, 0x90]);
    let mut ts = 0u32;
    for i in 0..3 + rng.below(12) {
        ts += rng.below(50) as u32;
        if i > 0 && rng.below(3) == 0 {
            let aac: Vec<u8> = [0xaf, 1].into_iter().chain(rng.up_to(300)).collect();
            write_message(&mut out, chunk, 4, msg::AUDIO, 1, ts, &aac);
        } else {
            let p = picture(rng, i % 5 == 0);
            write_message(&mut out, chunk, 6, msg::VIDEO, 1, ts, &p);
        }
    }
    cmd(
        &mut out,
        chunk,
        1,
        &[Amf::string("FCUnpublish"), Amf::Number(4.0), Amf::Null],
    );
    out.to_vec()
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(8) {
        if data.is_empty() {
            data.extend(rng.bytes(16));
        }
        let at = rng.below(data.len());
        match rng.below(6) {
            0 => data[at] = rng.next() as u8,
            1 => data[at] ^= 1 << rng.below(8),
            2 => {
                let n = rng.below(64).min(data.len() - at);
                data.drain(at..at + n);
            }
            3 => {
                let junk = rng.up_to(64);
                data.splice(at..at, junk);
            }
            4 => data[at] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
            _ => data.truncate(at),
        }
    }
}

/// Feeds `data` in random-sized reads the way the server does (refusing some publishes
/// when `refuse`); returns the items seen and the error that ended it, if any. Asserts
/// that held input stays bounded and no frame exceeds the media limit.
fn feed(rng: &mut Rng, data: &[u8], refuse: bool) -> (usize, Option<String>) {
    let l = limits();
    let mut conn = Connection::new(l.clone(), 0, rng.next() as u32);
    let bound = l.max_buffered + l.read_size + l.max_command + PACKET + 64;
    let mut items = 0;
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(l.read_size))
            .min(conn.room())
            .min(data.len() - at);
        if let Err(e) = conn.receive(&data[at..at + n]) {
            return (items, Some(e.to_string()));
        }
        at += n;
        loop {
            match conn.poll() {
                Ok(Some(Item::Publish { .. })) => {
                    items += 1;
                    if refuse && rng.below(8) == 0 {
                        conn.refuse("NetStream.Publish.BadName", "fuzz");
                    } else {
                        conn.accept();
                    }
                }
                Ok(Some(Item::Frame(f))) => {
                    items += 1;
                    assert!(f.data.len() <= l.max_media);
                    assert!(f.track < f.params.tracks.len());
                }
                Ok(Some(Item::Unpublish)) => items += 1,
                Ok(None) => break,
                Err(e) => return (items, Some(e.to_string())),
            }
            assert!(conn.buffered() <= bound, "{} bytes held", conn.buffered());
        }
        let _ = conn.take_output();
        assert!(conn.buffered() <= bound, "{} bytes held", conn.buffered());
    }
    (items, None)
}

#[test]
fn valid_conversations_yield_frames_in_any_read_sizes() {
    let (mut rng, iters) = setup("valid");
    for _ in 0..iters / 10 {
        let data = conversation(&mut rng);
        // Publish, at least the first key frame, Unpublish.
        let (items, err) = feed(&mut rng, &data, false);
        assert_eq!(err, None);
        assert!(items >= 3, "{items} items");
    }
}

#[test]
fn mutated_conversations_never_panic_and_stay_bounded() {
    let (mut rng, iters) = setup("mutated");
    for _ in 0..iters {
        let mut data = conversation(&mut rng);
        // Mostly past the handshake, where the chunk parser lives.
        let keep = 1 + 2 * PACKET;
        let mut tail = data.split_off(keep.min(data.len()));
        mutate(&mut rng, &mut tail);
        data.extend(tail);
        feed(&mut rng, &data, true);
    }
}

#[test]
fn random_bytes_never_panic() {
    let (mut rng, iters) = setup("random");
    for _ in 0..iters {
        let mut data = rng.up_to(20_000);
        if rng.below(2) == 0 {
            // A valid handshake first, so the random part reaches the chunk parser.
            let mut hs = vec![3u8];
            hs.extend(rng.bytes(2 * PACKET));
            hs.extend(data);
            data = hs;
        }
        feed(&mut rng, &data, true);
    }
}

#[test]
fn chunk_reader_survives_random_headers_with_bounded_buffers() {
    let (mut rng, iters) = setup("chunks");
    let l = limits();
    for _ in 0..iters {
        let mut r = ChunkReader::new(l.clone());
        let mut data = rng.up_to(50_000);
        // Bias towards small chunk-stream ids and header formats that need state.
        for i in (0..data.len()).step_by(1 + rng.below(200)) {
            data[i] = (data[i] & 0xc0) | (2 + rng.below(6) as u8);
        }
        let mut buf = &data[..];
        while let Ok(Read::Chunk(n, m)) = r.read(buf) {
            assert!(n > 0 && n <= buf.len());
            if let Some(m) = m {
                assert!(m.payload.len() <= l.max_media);
            }
            assert!(r.buffered() <= l.max_buffered);
            buf = &buf[n..];
        }
    }
}

#[test]
fn amf_decoder_survives_random_and_mutated_input() {
    let (mut rng, iters) = setup("amf");
    let valid = amf::encode_all(&[
        Amf::string("connect"),
        Amf::Number(1.0),
        Amf::object([
            ("app", Amf::string("live")),
            (
                "nested",
                Amf::object([("a", Amf::StrictArray(vec![Amf::Null, Amf::Boolean(true)]))]),
            ),
            ("when", Amf::Date(1.0)),
        ]),
        Amf::Undefined,
    ]);
    for _ in 0..iters * 10 {
        let mut data = if rng.below(2) == 0 {
            valid.clone()
        } else {
            rng.up_to(512)
        };
        mutate(&mut rng, &mut data);
        if let Ok(values) = amf::decode_all(&data) {
            // Whatever decodes re-encodes to no more than a few times the input.
            assert!(amf::encode_all(&values).len() <= 16 * data.len() + 16);
        }
    }
}

#[test]
fn flv_tags_never_panic_the_media_state() {
    let (mut rng, iters) = setup("flv");
    let header = avc_header();
    for _ in 0..iters * 5 {
        let mut media = Media::new();
        media.video(0, &Bytes::from(header.clone())).unwrap();
        media
            .audio(0, &Bytes::from_static(&[0xaf, 0, 0x11, 0x90]))
            .unwrap();
        for ts in 0..10u32 {
            let video = rng.below(2) == 0;
            let mut tag = match (video, rng.below(3)) {
                (true, 0) => header.clone(),
                (true, _) => picture(&mut rng, true),
                (false, 0) => vec![0xaf, 0, 0x12, 0x10],
                (false, _) => vec![0xaf, 1, 1, 2, 3],
            };
            mutate(&mut rng, &mut tag);
            let tag = Bytes::from(tag);
            let _ = flv::parse_video(&tag);
            let _ = flv::parse_audio(&tag);
            let r = if video {
                media.video(ts * 40, &tag)
            } else {
                media.audio(ts * 40, &tag)
            };
            if let Ok(Some(f)) = r {
                assert!(f.data.len() <= tag.len() + 4 * tag.len());
                assert!(f.track < f.params.tracks.len());
            }
        }
    }
}
