//! One RTMP connection as a pure state machine: bytes in ([`Connection::receive`]),
//! [`Item`]s out ([`Connection::poll`]), reply bytes out ([`Connection::take_output`]).
//! The server loop only moves bytes and calls the ingest; everything here can be fed
//! arbitrary input by tests.
//!
//! Memory is bounded by [`RtmpLimits`]: unparsed input by one read plus one chunk, partial
//! messages by `max_buffered`, one message by `max_message`.

use bytes::{Buf, Bytes, BytesMut};

use super::chunk::{ChunkReader, Message, Read};
use super::handshake;
use super::media::Media;
use super::session::{msg, Event, Output, Session};
use super::{RtmpError, RtmpLimits};
use crate::media::frame::Frame;

/// What the connection produced.
#[derive(Debug)]
pub enum Item {
    /// The client asks to publish `app`/`stream`; answer with [`Connection::accept`] or
    /// [`Connection::refuse`] before polling again.
    Publish {
        app: String,
        stream: String,
        query: String,
    },
    /// A frame of the accepted publish.
    Frame(Frame),
    /// The publisher stopped publishing (the connection may stay open).
    Unpublish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for C0+C1.
    Hello,
    /// S0-S2 sent; waiting for C2.
    Ack,
    /// Chunks.
    Chunks,
}

/// A publisher connection.
#[derive(Debug)]
pub struct Connection {
    limits: RtmpLimits,
    phase: Phase,
    input: BytesMut,
    reader: ChunkReader,
    session: Session,
    media: Media,
    out: Output,
    time: u32,
    seed: u32,
    /// Bytes received, and at which count the last Acknowledgement went out.
    received: u64,
    acked: u64,
    /// The peer's acknowledgement window (its Window Acknowledgement Size).
    window: Option<u32>,
}

impl Connection {
    /// `time` (ms, any epoch) and `seed` only go into the handshake.
    pub fn new(limits: RtmpLimits, time: u32, seed: u32) -> Connection {
        Connection {
            reader: ChunkReader::new(limits.clone()),
            limits,
            phase: Phase::Hello,
            input: BytesMut::new(),
            session: Session::default(),
            media: Media::new(),
            out: Output::default(),
            time,
            seed,
            received: 0,
            acked: 0,
            window: None,
        }
    }

    /// The most bytes [`Connection::receive`] accepts beyond what is already buffered.
    pub fn room(&self) -> usize {
        self.input_limit().saturating_sub(self.input.len())
    }

    fn input_limit(&self) -> usize {
        self.limits.read_size + self.reader.max_chunk_bytes().max(handshake::PACKET + 1)
    }

    /// Adds bytes from the socket. Poll until `Ok(None)` before receiving more.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        if self.input.len() + data.len() > self.input_limit() {
            return Err(RtmpError::TooLarge {
                what: "unparsed input",
                size: (self.input.len() + data.len()) as u64,
                limit: self.input_limit() as u64,
            });
        }
        self.input.extend_from_slice(data);
        self.received += data.len() as u64;
        if let Some(w) = self.window {
            if w > 0 && self.received - self.acked >= u64::from(w) {
                self.acked = self.received;
                self.out
                    .control(msg::ACK, &(self.received as u32).to_be_bytes());
            }
        }
        Ok(())
    }

    /// Bytes to send to the peer, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.out.take()
    }

    /// The next item, or `Ok(None)` when more input is needed (or a publish awaits its
    /// answer).
    pub fn poll(&mut self) -> Result<Option<Item>, RtmpError> {
        loop {
            match self.phase {
                Phase::Hello => {
                    if self.input.len() < 1 + handshake::PACKET {
                        if self.input.first().is_some_and(|&v| v != 3) {
                            // Refuse garbage at once instead of waiting for 1537 bytes.
                            handshake::respond(&self.input[..1], 0, 0)?;
                        }
                        return Ok(None);
                    }
                    let hello = self.input.split_to(1 + handshake::PACKET);
                    let reply = handshake::respond(&hello, self.time, self.seed)?;
                    self.out.raw(&reply);
                    self.phase = Phase::Ack;
                }
                Phase::Ack => {
                    if self.input.len() < handshake::PACKET {
                        return Ok(None);
                    }
                    self.input.advance(handshake::PACKET); // C2: nothing to check
                    self.phase = Phase::Chunks;
                }
                Phase::Chunks => {
                    if self.session.pending() {
                        return Ok(None);
                    }
                    match self.reader.read(&self.input)? {
                        Read::NeedMore => return Ok(None),
                        Read::Chunk(n, m) => {
                            self.input.advance(n);
                            if let Some(m) = m {
                                if let Some(item) = self.message(m)? {
                                    return Ok(Some(item));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn message(&mut self, m: Message) -> Result<Option<Item>, RtmpError> {
        let p = &m.payload;
        let be32 = |what: &str| -> Result<u32, RtmpError> {
            p.get(0..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| RtmpError::protocol(format!("{what} shorter than 4 bytes")))
        };
        match m.type_id {
            msg::SET_CHUNK_SIZE => self.reader.set_chunk_size(be32("Set Chunk Size")?)?,
            msg::ABORT => self.reader.abort(be32("Abort Message")?),
            msg::WINDOW_ACK_SIZE => self.window = Some(be32("Window Acknowledgement Size")?),
            // PingRequest (6) -> PingResponse (7) with the same timestamp.
            msg::USER_CONTROL if p.len() >= 6 && p[0..2] == [0, 6] => {
                self.out.user_control(7, be32_at(p, 2));
            }
            msg::COMMAND_AMF0 | msg::COMMAND_AMF3 => {
                // An AMF3 command message starts with one format byte, then AMF0.
                let body = if m.type_id == msg::COMMAND_AMF3 {
                    p.get(1..).unwrap_or_default()
                } else {
                    &p[..]
                };
                return Ok(
                    match self.session.command(m.stream_id, body, &mut self.out)? {
                        None => None,
                        Some(Event::Publish { app, stream, query }) => {
                            Some(Item::Publish { app, stream, query })
                        }
                        Some(Event::Unpublish) => {
                            self.media = Media::new();
                            Some(Item::Unpublish)
                        }
                    },
                );
            }
            msg::AUDIO | msg::VIDEO => {
                if self.session.media_stream() != Some(m.stream_id) {
                    return Ok(None); // not (yet) published: nothing to record
                }
                let frame = if m.type_id == msg::AUDIO {
                    self.media.audio(m.timestamp, p)?
                } else {
                    self.media.video(m.timestamp, p)?
                };
                return Ok(frame.map(Item::Frame));
            }
            msg::AGGREGATE => {
                return Err(RtmpError::protocol(
                    "aggregate messages are not supported; publish plain audio/video messages",
                ))
            }
            // Acknowledgement, Set Peer Bandwidth, @setDataFrame / onMetaData, others.
            _ => {}
        }
        Ok(None)
    }

    /// Accepts the pending publish (NetStream.Publish.Start).
    pub fn accept(&mut self) {
        self.session.accept(&mut self.out);
    }

    /// Refuses the pending publish with an onStatus error; close after sending the output.
    pub fn refuse(&mut self, code: &str, description: &str) {
        self.session.refuse(code, description, &mut self.out);
    }

    /// Something to log once about the media (e.g. an audio codec that is dropped).
    pub fn take_warning(&mut self) -> Option<String> {
        self.media.take_warning()
    }

    /// Bytes held for partial input and messages (for tests and limits).
    pub fn buffered(&self) -> usize {
        self.input.len() + self.reader.buffered()
    }
}

fn be32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}
