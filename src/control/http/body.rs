//! A response body: bytes in memory (JSON, playlists, metrics), or a stream of chunks fed by
//! a blocking reader through a bounded channel (recorded files and MP4 cuts, which can be
//! far larger than what should sit in memory).
//!
//! [`Body::pieces`] spawns the reader on tokio's blocking pool: it writes the pieces with
//! [`read::write_pieces`] (positional reads, 256 KiB chunks) into the channel, which holds
//! at most [`CHANNEL_CHUNKS`] chunks, so a slow client slows the reader instead of growing
//! memory. When the client goes away hyper drops the body, the next send fails and the
//! reader stops. A read error after the head was sent ends the body early: hyper then
//! closes the connection, and the client sees fewer bytes than `Content-Length`.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;
use tracing::debug;

use crate::storage::playback::{read, Piece};

/// Chunks buffered between the reader and the socket.
pub const CHANNEL_CHUNKS: usize = 4;

/// The body of every answer of the HTTP API.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<std::io::Result<Bytes>>),
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Full(Some(b))
    }
}

impl Body {
    /// No bytes (HEAD, 304).
    pub fn empty() -> Body {
        Body::Full(None)
    }

    /// The bytes of `pieces`, read off the runtime as the client takes them.
    pub fn pieces(pieces: Vec<Piece>) -> Body {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter { tx: tx.clone() };
            if let Err(e) = read::write_pieces(&pieces, &mut w) {
                debug!(error = %e, "HTTP body ended early");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        Body::Stream(rx)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// `Write` into the channel: each write is one chunk; a closed channel (the client went
/// away) is `BrokenPipe`.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
