//! Splitting an RTSP publisher's byte stream into requests and `$`-framed interleaved
//! packets (RFC 2326 §10.12), with the buffer bounded. Pure: the connection loop appends
//! what it reads and takes out [`Item`]s; property tests and fuzz targets feed it anything.

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::{Message, Request};

/// Largest interleaved packet: a 16-bit length after `$` and the channel.
pub const MAX_INTERLEAVED: usize = 4 + 65_535;

/// One unit of the byte stream.
#[derive(Debug)]
pub enum Item {
    Request(Request<Vec<u8>>),
    /// An interleaved packet: RTP on even channels, RTCP on odd ones by convention.
    Interleaved {
        channel: u8,
        payload: Bytes,
    },
}

/// Why the stream cannot go on. Each maps to the response sent before closing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("request over {limit} bytes (ingest.max_request_bytes)")]
    TooLarge { limit: usize },
    #[error("malformed RTSP request")]
    Malformed,
}

impl FramingError {
    /// The response to send before closing.
    pub fn response(&self) -> &'static [u8] {
        match self {
            FramingError::TooLarge { .. } => {
                b"RTSP/1.0 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n"
            }
            FramingError::Malformed => b"RTSP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        }
    }
}

/// The receive buffer of one connection.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_request: usize,
}

impl Framer {
    /// `max_request`: the largest request (headers and body) accepted.
    pub fn new(max_request: usize) -> Framer {
        Framer {
            buf: BytesMut::with_capacity(16 << 10),
            max_request: max_request.max(1),
        }
    }

    /// Most bytes [`Framer::next_item`] can leave buffered: the connection loop stops reading
    /// (and closes) when [`Framer::buffered`] is over it.
    pub fn limit(&self) -> usize {
        self.max_request.max(MAX_INTERLEAVED)
    }

    /// Bytes waiting for the rest of their request or packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The buffer to read into (`AsyncReadExt::read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete item, `Ok(None)` when more bytes are needed, or an error after
    /// which the connection must close.
    pub fn next_item(&mut self) -> Result<Option<Item>, FramingError> {
        loop {
            if self.buf.first() == Some(&b'$') {
                if self.buf.len() < 4 {
                    return Ok(None);
                }
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < 4 + len {
                    return Ok(None);
                }
                let channel = self.buf[1];
                self.buf.advance(4);
                let payload = self.buf.split_to(len).freeze();
                return Ok(Some(Item::Interleaved { channel, payload }));
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            match Message::<Vec<u8>>::parse(&self.buf[..]) {
                Ok((Message::Request(req), n)) => {
                    self.buf.advance(n);
                    return Ok(Some(Item::Request(req)));
                }
                // A response (to nothing we asked) or data framed by the library: skip it.
                Ok((_, n)) => self.buf.advance(n.max(1)),
                Err(rtsp_types::ParseError::Incomplete(_)) => {
                    if self.buf.len() >= self.max_request {
                        return Err(FramingError::TooLarge {
                            limit: self.max_request,
                        });
                    }
                    return Ok(None);
                }
                Err(rtsp_types::ParseError::Error) => return Err(FramingError::Malformed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(f: &mut Framer) -> Vec<Item> {
        let mut out = Vec::new();
        while let Some(i) = f.next_item().unwrap() {
            out.push(i);
        }
        out
    }

    #[test]
    fn requests_and_interleaved_packets_come_out_in_order_across_any_split() {
        let mut wire = b"OPTIONS rtsp://h/a/b RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec();
        wire.extend_from_slice(&[b'$', 2, 0, 3, 9, 8, 7]);
        wire.extend_from_slice(
            b"SET_PARAMETER rtsp://h/a/b RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 2\r\n\r\nab",
        );
        for split in 0..wire.len() {
            let mut f = Framer::new(4096);
            f.extend(&wire[..split]);
            let mut got = items(&mut f);
            f.extend(&wire[split..]);
            got.extend(items(&mut f));
            assert_eq!(got.len(), 3, "split at {split}");
            assert!(
                matches!(&got[0], Item::Request(r) if *r.method() == rtsp_types::Method::Options)
            );
            assert!(
                matches!(&got[1], Item::Interleaved { channel: 2, payload } if payload[..] == [9, 8, 7])
            );
            assert!(matches!(&got[2], Item::Request(r) if r.body() == b"ab"));
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn a_request_that_never_ends_is_too_large_once_over_the_limit() {
        let mut f = Framer::new(100);
        f.extend(b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 100000\r\n\r\n");
        assert!(f.next_item().unwrap().is_none());
        f.extend(&[b'x'; 100]);
        assert_eq!(
            f.next_item().unwrap_err(),
            FramingError::TooLarge { limit: 100 }
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let mut f = Framer::new(4096);
        f.extend(b"\x16\x03\x01 hello\r\n\r\n");
        assert_eq!(f.next_item().unwrap_err(), FramingError::Malformed);
        assert!(FramingError::Malformed
            .response()
            .starts_with(b"RTSP/1.0 400"));
    }
}
