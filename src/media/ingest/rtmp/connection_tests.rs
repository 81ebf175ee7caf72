//! A whole publisher conversation through the pure [`Connection`].

use bytes::BytesMut;

use super::amf::{encode_all, Amf};
use super::chunk::write_message;
use super::handshake::PACKET;
use super::session::msg;
use super::*;

fn limits() -> RtmpLimits {
    RtmpLimits {
        max_media: 1 << 20,
        max_command: 64 << 10,
        max_buffered: 4 << 20,
        read_size: 64 << 10,
    }
}

/// What a client sends, chunked at `chunk` bytes.
struct Client {
    out: BytesMut,
    chunk: usize,
}

impl Client {
    fn new() -> Client {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[3]);
        out.extend_from_slice(&[0x5a; PACKET]); // C1
        out.extend_from_slice(&[0xa5; PACKET]); // C2 (not checked)
        Client { out, chunk: 128 }
    }

    fn send(&mut self, csid: u8, type_id: u8, stream: u32, ts: u32, payload: &[u8]) {
        write_message(
            &mut self.out,
            self.chunk,
            csid,
            type_id,
            stream,
            ts,
            payload,
        );
    }

    fn command(&mut self, stream: u32, values: &[Amf]) {
        self.send(3, msg::COMMAND_AMF0, stream, 0, &encode_all(values));
    }

    fn set_chunk_size(&mut self, n: u32) {
        self.send(2, msg::SET_CHUNK_SIZE, 0, 0, &n.to_be_bytes());
        self.chunk = n as usize;
    }

    fn connect(&mut self, app: &str) {
        self.command(
            0,
            &[
                Amf::string("connect"),
                Amf::Number(1.0),
                Amf::object([("app", Amf::string(app))]),
            ],
        );
    }

    fn create_and_publish(&mut self, name: &str) {
        self.command(
            0,
            &[Amf::string("createStream"), Amf::Number(2.0), Amf::Null],
        );
        self.command(
            1,
            &[
                Amf::string("publish"),
                Amf::Number(3.0),
                Amf::Null,
                Amf::string(name),
                Amf::string("live"),
            ],
        );
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

fn key_frame(size: usize) -> Vec<u8> {
    let mut b = vec![0x17, 1, 0, 0, 0];
    b.extend_from_slice(&(size as u32 + 1).to_be_bytes());
    b.push(0x65);
    b.extend(std::iter::repeat_n(0x11, size));
    b
}

/// Feeds `bytes` in `step`-sized reads; returns the items and everything sent back.
fn run(
    conn: &mut Connection,
    bytes: &[u8],
    step: usize,
    accept: bool,
) -> Result<(Vec<Item>, Vec<u8>), RtmpError> {
    let mut items = Vec::new();
    let mut sent = Vec::new();
    for piece in bytes.chunks(step) {
        conn.receive(piece)?;
        while let Some(item) = conn.poll()? {
            if matches!(item, Item::Publish { .. }) {
                if accept {
                    conn.accept();
                } else {
                    conn.refuse("NetStream.Publish.BadName", "already live");
                }
            }
            items.push(item);
        }
        while let Some(out) = conn.take_output() {
            sent.extend_from_slice(&out);
        }
    }
    Ok((items, sent))
}

#[test]
fn ffmpeg_like_publish_yields_the_request_then_frames() {
    let mut c = Client::new();
    c.set_chunk_size(4096);
    c.connect("live");
    c.create_and_publish("cam8?record_interval=2");
    c.send(
        4,
        msg::DATA_AMF0,
        1,
        0,
        &encode_all(&[Amf::string("@setDataFrame")]),
    );
    c.send(6, msg::VIDEO, 1, 0, &avc_header());
    c.send(6, msg::VIDEO, 1, 40, &key_frame(10_000));
    for step in [1, 7, 1000, 1 << 16] {
        let mut conn = Connection::new(limits(), 0, 1);
        let (items, sent) = run(&mut conn, &c.out, step, true).unwrap();
        assert_eq!(items.len(), 2, "step {step}: {items:?}");
        match &items[0] {
            Item::Publish { app, stream, query } => {
                assert_eq!((app.as_str(), stream.as_str()), ("live", "cam8"));
                assert_eq!(query, "record_interval=2");
            }
            i => panic!("{i:?}"),
        }
        match &items[1] {
            Item::Frame(f) => {
                assert!(f.keyframe);
                assert_eq!((f.dts, f.data.len()), (40, 10_005));
            }
            i => panic!("{i:?}"),
        }
        assert!(sent.len() > 1 + 2 * PACKET);
        let text = String::from_utf8_lossy(&sent);
        assert!(text.contains("NetConnection.Connect.Success"));
        assert!(text.contains("NetStream.Publish.Start"));
        assert_eq!(conn.buffered(), 0);
    }
}

#[test]
fn garbage_is_refused_at_the_first_byte() {
    let mut conn = Connection::new(limits(), 0, 1);
    conn.receive(b"GET / HTTP/1.1\r\n").unwrap();
    let e = conn.poll().unwrap_err();
    assert!(e.to_string().contains("not an RTMP client"), "{e}");
}

#[test]
fn publish_before_connect_closes_the_connection() {
    let mut c = Client::new();
    c.create_and_publish("cam");
    let mut conn = Connection::new(limits(), 0, 1);
    let e = run(&mut conn, &c.out, 4096, true).unwrap_err();
    assert!(e.to_string().contains("before connect"), "{e}");
}

#[test]
fn refused_publish_sends_an_error_status_and_no_frames() {
    let mut c = Client::new();
    c.connect("live");
    c.create_and_publish("cam");
    c.send(6, msg::VIDEO, 1, 0, &avc_header());
    c.send(6, msg::VIDEO, 1, 40, &key_frame(100));
    let mut conn = Connection::new(limits(), 0, 1);
    let (items, sent) = run(&mut conn, &c.out, 4096, false).unwrap();
    assert_eq!(items.len(), 1);
    let text = String::from_utf8_lossy(&sent);
    assert!(text.contains("NetStream.Publish.BadName") && text.contains("already live"));
}

#[test]
fn media_before_publish_is_ignored() {
    let mut c = Client::new();
    c.connect("live");
    c.send(6, msg::VIDEO, 1, 0, &avc_header());
    c.send(6, msg::VIDEO, 1, 40, &key_frame(100));
    let mut conn = Connection::new(limits(), 0, 1);
    let (items, _) = run(&mut conn, &c.out, 4096, true).unwrap();
    assert!(items.is_empty());
}

#[test]
fn oversized_media_message_is_refused_without_buffering_it() {
    let mut c = Client::new();
    c.set_chunk_size(4096);
    c.connect("live");
    c.create_and_publish("cam");
    c.send(6, msg::VIDEO, 1, 0, &key_frame(2 << 20));
    let mut conn = Connection::new(limits(), 0, 1);
    let e = run(&mut conn, &c.out, 1 << 16, true).unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    assert!(conn.buffered() < 200 << 10);
}

#[test]
fn window_acknowledgement_size_gets_acknowledgements() {
    let mut c = Client::new();
    c.send(2, msg::WINDOW_ACK_SIZE, 0, 0, &5000u32.to_be_bytes());
    c.connect("live");
    for _ in 0..20 {
        c.send(4, msg::DATA_AMF0, 0, 0, &[0x05; 500]);
    }
    let mut conn = Connection::new(limits(), 0, 1);
    let (_, sent) = run(&mut conn, &c.out, 1000, true).unwrap();
    // An Acknowledgement: chunk stream 2, message type 3.
    let acks = sent
        .windows(8)
        .filter(|w| w[0] == 2 && w[4..8] == [0, 0, 4, msg::ACK])
        .count();
    assert!(acks >= 1, "no Acknowledgement in the reply");
}
