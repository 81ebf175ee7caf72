//! The RTMP chunk stream (RTMP specification 1.0, §5.3): messages are cut into chunks of
//! at most the peer's chunk size, interleaved by chunk stream id, with headers compressed
//! against the previous chunk on the same chunk stream (formats 0–3, extended timestamps).
//!
//! [`ChunkReader`] reassembles messages; [`write_message`] cuts them. Pure and bounded: a
//! message length or chunk size over the [`RtmpLimits`] is an error before anything is
//! allocated (audio/video messages may be up to `max_media`, every other message and the
//! chunk size up to `max_command`), the bytes of half-received messages are counted against
//! `max_buffered`, and the number of chunk streams with state is capped.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::{RtmpError, RtmpLimits};

/// At most this many chunk streams keep header state (publishers use 3–6).
const MAX_CHUNK_STREAMS: usize = 64;

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: usize = 128;

/// A reassembled message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    /// Milliseconds, wrapping at 2^32.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Header state of one chunk stream.
#[derive(Debug, Default)]
struct ChunkStream {
    /// Timestamp of the current or last message.
    timestamp: u32,
    /// The last timestamp field as sent: absolute for format 0, a delta for 1 and 2. A
    /// format 3 chunk that starts a message adds it again (as ffmpeg and librtmp do).
    ts_field: u32,
    /// The last timestamp field needed an extended timestamp, so format 3 chunks carry one.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being reassembled.
    partial: Option<BytesMut>,
}

/// Reassembles messages from chunks.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: usize,
    limits: RtmpLimits,
    /// Bytes held in partial messages.
    buffered: usize,
    streams: HashMap<u32, ChunkStream>,
}

/// What [`ChunkReader::read`] did with the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A whole chunk is not there yet; nothing was consumed.
    NeedMore,
    /// One chunk was consumed (this many bytes); it completed a message or not.
    Chunk(usize, Option<Message>),
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

impl ChunkReader {
    pub fn new(limits: RtmpLimits) -> ChunkReader {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            buffered: 0,
            streams: HashMap::new(),
        }
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        let size = size & 0x7fff_ffff;
        if size == 0 {
            return Err(RtmpError::protocol("Set Chunk Size of 0"));
        }
        if size as usize > self.limits.max_command {
            return Err(RtmpError::TooLarge {
                what: "chunk size",
                size: u64::from(size),
                limit: self.limits.max_command as u64,
            });
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Drops the partial message on `csid` (Abort Message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            if let Some(p) = s.partial.take() {
                self.buffered -= p.len();
            }
        }
    }

    /// Bytes held in partial messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The most bytes one chunk can take on the wire: the largest header plus a payload.
    pub fn max_chunk_bytes(&self) -> usize {
        18 + self.chunk_size
    }

    /// Reads one chunk from the front of `buf`.
    pub fn read(&mut self, buf: &[u8]) -> Result<Read, RtmpError> {
        let Some(&b0) = buf.first() else {
            return Ok(Read::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut at) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(Read::NeedMore),
            },
            1 => match buf.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(Read::NeedMore),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = buf.get(at..at + header_len) else {
            return Ok(Read::NeedMore);
        };
        at += header_len;
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(RtmpError::protocol(format!(
                    "chunk stream {csid} continues with a format {fmt} header but never started"
                )));
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(RtmpError::protocol(format!(
                    "more than {MAX_CHUNK_STREAMS} chunk streams"
                )));
            }
        }
        let prev = self.streams.get(&csid);
        let ts_field = match fmt {
            3 => prev.map_or(0, |p| p.ts_field),
            _ => be24(&h[0..3]),
        };
        let extended = match fmt {
            3 => prev.is_some_and(|p| p.extended),
            _ => ts_field == 0xff_ffff,
        };
        let ts_field = if extended {
            let Some(e) = buf.get(at..at + 4) else {
                return Ok(Read::NeedMore);
            };
            at += 4;
            u32::from_be_bytes([e[0], e[1], e[2], e[3]])
        } else {
            ts_field
        };
        let continuing = fmt == 3 && prev.is_some_and(|p| p.partial.is_some());
        let (length, type_id) = match fmt {
            0 | 1 => (be24(&h[3..6]), h[6]),
            _ => prev.map_or((0, 0), |p| (p.length, p.type_id)),
        };
        let (what, limit) = match type_id {
            8 | 9 => ("audio/video message length", self.limits.max_media),
            _ => ("message length", self.limits.max_command),
        };
        if length as usize > limit {
            return Err(RtmpError::TooLarge {
                what,
                size: u64::from(length),
                limit: limit as u64,
            });
        }
        let have = match prev.and_then(|p| p.partial.as_ref()) {
            Some(p) if continuing => p.len(),
            _ => 0,
        };
        let piece = (length as usize - have).min(self.chunk_size);
        let Some(payload) = buf.get(at..at + piece) else {
            return Ok(Read::NeedMore);
        };
        let consumed = at + piece;

        // The whole chunk is there: commit the header.
        let s = self.streams.entry(csid).or_default();
        if !continuing {
            if let Some(p) = s.partial.take() {
                self.buffered -= p.len(); // a new header abandons an unfinished message
            }
            s.timestamp = match fmt {
                0 => ts_field,
                _ => s.timestamp.wrapping_add(ts_field),
            };
            s.ts_field = ts_field;
            s.extended = extended;
            s.length = length;
            s.type_id = type_id;
            if fmt == 0 {
                s.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
        }
        if piece == length as usize - have && have == 0 {
            // Single-chunk message: no copy into a partial buffer.
            let msg = Message {
                csid,
                type_id: s.type_id,
                stream_id: s.stream_id,
                timestamp: s.timestamp,
                payload: Bytes::copy_from_slice(payload),
            };
            return Ok(Read::Chunk(consumed, Some(msg)));
        }
        if self.buffered + piece > self.limits.max_buffered {
            return Err(RtmpError::TooLarge {
                what: "buffered message data",
                size: (self.buffered + piece) as u64,
                limit: self.limits.max_buffered as u64,
            });
        }
        let partial = s.partial.get_or_insert_with(BytesMut::new);
        partial.extend_from_slice(payload);
        self.buffered += piece;
        if partial.len() < s.length as usize {
            return Ok(Read::Chunk(consumed, None));
        }
        let payload = s.partial.take().unwrap_or_default().freeze();
        self.buffered -= payload.len();
        Ok(Read::Chunk(
            consumed,
            Some(Message {
                csid,
                type_id: s.type_id,
                stream_id: s.stream_id,
                timestamp: s.timestamp,
                payload,
            }),
        ))
    }
}

/// Appends `payload` as one message, cut into `chunk_size` chunks: a format 0 header, then
/// format 3 continuations. `csid` must be 2..=63 (the ids replies use).
pub fn write_message(
    out: &mut BytesMut,
    chunk_size: usize,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
) {
    let csid = csid & 0x3f;
    let extended = timestamp >= 0xff_ffff;
    let ts24 = if extended { 0xff_ffff } else { timestamp };
    out.extend_from_slice(&[csid]);
    out.extend_from_slice(&ts24.to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[type_id]);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    let mut chunks = payload.chunks(chunk_size.max(1));
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for c in chunks {
        out.extend_from_slice(&[0xc0 | csid]);
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        out.extend_from_slice(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, buffered: usize) -> RtmpLimits {
        RtmpLimits {
            max_media: max,
            max_command: max,
            max_buffered: buffered,
            read_size: 1024,
        }
    }

    fn read_all(r: &mut ChunkReader, mut buf: &[u8]) -> Result<Vec<Message>, RtmpError> {
        let mut out = Vec::new();
        loop {
            match r.read(buf)? {
                Read::NeedMore => return Ok(out),
                Read::Chunk(n, m) => {
                    buf = &buf[n..];
                    out.extend(m);
                }
            }
        }
    }

    #[test]
    fn message_cut_into_chunks_is_reassembled() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        write_message(&mut out, 128, 6, 9, 1, 40, &payload);
        let mut r = ChunkReader::new(limits(1 << 20, 1 << 20));
        let msgs = read_all(&mut r, &out).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload, payload);
        assert_eq!(
            (msgs[0].type_id, msgs[0].stream_id, msgs[0].timestamp),
            (9, 1, 40)
        );
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn extended_timestamps_are_read_in_every_chunk() {
        let payload = vec![7u8; 300];
        let mut out = BytesMut::new();
        write_message(&mut out, 128, 4, 8, 1, 0x0100_0000, &payload);
        let mut r = ChunkReader::new(limits(1 << 20, 1 << 20));
        let msgs = read_all(&mut r, &out).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, 0x0100_0000);
        assert_eq!(msgs[0].payload.len(), 300);
    }

    #[test]
    fn compressed_headers_add_their_deltas() {
        // fmt 0 at t=100 (len 2), fmt 2 delta 33, then fmt 3 starting a message: +33 again.
        let mut b = vec![0x04, 0, 0, 100, 0, 0, 2, 9, 1, 0, 0, 0, 0xaa, 0xbb];
        b.extend_from_slice(&[0x84, 0, 0, 33, 0xcc, 0xdd]);
        b.extend_from_slice(&[0xc4, 0xee, 0xff]);
        let mut r = ChunkReader::new(limits(1 << 20, 1 << 20));
        let msgs = read_all(&mut r, &b).unwrap();
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [100, 133, 166]);
        assert!(msgs.iter().all(|m| m.stream_id == 1 && m.type_id == 9));
    }

    #[test]
    fn partial_chunk_consumes_nothing() {
        let mut out = BytesMut::new();
        write_message(&mut out, 4096, 3, 20, 0, 0, &[1, 2, 3, 4, 5]);
        let mut r = ChunkReader::new(limits(1 << 20, 1 << 20));
        for n in 0..out.len() {
            assert_eq!(r.read(&out[..n]).unwrap(), Read::NeedMore, "{n} bytes");
        }
        assert!(matches!(r.read(&out).unwrap(), Read::Chunk(_, Some(_))));
    }

    #[test]
    fn huge_message_length_is_refused_before_any_allocation() {
        let b = [0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        let mut r = ChunkReader::new(limits(1 << 20, 1 << 20));
        let e = r.read(&b).unwrap_err();
        assert!(e.to_string().contains("length of 16777215"), "{e}");
    }

    #[test]
    fn huge_or_zero_chunk_size_is_refused() {
        let mut r = ChunkReader::new(limits(1 << 20, 1 << 20));
        assert!(r.set_chunk_size(0x7fff_ffff).is_err());
        assert!(r.set_chunk_size(0).is_err());
        assert!(r.set_chunk_size(4096).is_ok());
    }

    #[test]
    fn interleaved_partial_messages_are_bounded_by_max_buffered() {
        let mut r = ChunkReader::new(limits(1000, 300));
        let mut b = Vec::new();
        for csid in 3..7u8 {
            b.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xe8, 9, 1, 0, 0, 0]);
            b.extend_from_slice(&[0; 128]);
        }
        let e = read_all(&mut r, &b).unwrap_err();
        assert!(e.to_string().contains("buffered"), "{e}");
    }

    #[test]
    fn continuation_on_an_unknown_chunk_stream_is_an_error() {
        let mut r = ChunkReader::new(limits(1000, 1000));
        assert!(r.read(&[0xc5, 1, 2, 3]).is_err());
        assert!(r.read(&[0x45, 0, 0, 0, 0, 0, 1, 9, 1]).is_err());
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut r = ChunkReader::new(limits(1000, 1000));
        let mut b = vec![0x05, 0, 0, 0, 0, 0x01, 0x00, 9, 1, 0, 0, 0];
        b.extend_from_slice(&[0; 128]);
        assert!(read_all(&mut r, &b).unwrap().is_empty());
        assert_eq!(r.buffered(), 128);
        r.abort(5);
        assert_eq!(r.buffered(), 0);
    }
}
