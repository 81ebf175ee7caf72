//! The RTMP publish server: ffmpeg, OBS, GStreamer and hardware encoders push
//! `rtmp://host[:1935]/app/stream?record params`, and each publish is recorded through
//! [`crate::media::ingest::Ingest::publish`] like any other stream.
//!
//! Everything that parses the wire is pure and fed by tests with random and mutated input
//! (`tests/rtmp_fuzz.rs`); only [`server`] does I/O. A connection goes:
//!
//! ```text
//! handshake (C0 C1 / S0 S1 S2 / C2) -> chunks -> messages
//!   commands (AMF0): connect{app} createStream publish(name?query) ... -> Ingest::publish
//!   audio/video (FLV tags): sequence headers -> StreamParams; frames -> Publisher::send
//! ```
//!
//! The app is the connect's `app` (a `?query` there is stripped); the stream is the publish
//! name, whose `?query` carries the record parameters (the app's query is used when the name
//! has none). When `ingest.users` is set, the query must also carry `user=…&pass=…`.
//!
//! Hand-written on purpose: the Rust RTMP crates (`rml_rtmp`, `scuffle-rtmp`) are whole
//! client and server session stacks with their own event models and dependencies, while
//! edgerec needs only the publish side of a server. Owning it keeps the wire parsing a pure
//! state machine with bounded buffers, fuzzed by `tests/rtmp_fuzz.rs`, whose FLV tags become
//! [`crate::media::frame::Frame`]s directly.
//!
//! # Layout
//!
//! - [`connection`]: one connection as a pure state machine (bytes in, items and reply
//!   bytes out).
//! - [`handshake`], [`chunk`]: the handshake and the chunk stream (reader and writer).
//! - [`amf`], [`session`]: AMF0 and the publisher's commands and replies.
//! - [`auth`]: publish credentials from the publish URL's query.
//! - [`flv`], [`media`], [`codec`]: FLV tags to [`crate::media::frame::Frame`]s, decoder
//!   configurations to track parameters (records rebuilt and picture size read by the codec
//!   toolkit, [`crate::media::codec`]).
//! - [`server`]: the tokio listener and per-connection loop.
//! - [`error`]: the error type, [`RtmpError`].

/// AMF0 is FLV's script-data encoding too; it lives with the FLV writer.
pub use crate::media::format::amf;
pub mod auth;
pub mod chunk;
pub mod codec;
pub mod connection;
pub mod error;
pub mod flv;
pub mod handshake;
pub mod media;
pub mod server;
pub mod session;

pub use connection::{Connection, Item};
pub use error::RtmpError;
pub use server::Server;

use super::IngestLimits;

/// Bounds of one connection's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpLimits {
    /// Largest audio or video message (one FLV tag: a key frame can be large).
    pub max_media: usize,
    /// Largest other message (commands, metadata) and largest chunk size.
    pub max_command: usize,
    /// Bytes of partially received messages held at once.
    pub max_buffered: usize,
    /// Bytes read from the socket at a time.
    pub read_size: usize,
}

impl From<&IngestLimits> for RtmpLimits {
    /// Media messages may be as large as a publisher may buffer (`max_buffered_bytes`,
    /// capped at RTMP's 16 MiB); commands and the chunk size are request-sized
    /// (`max_request_bytes`).
    fn from(l: &IngestLimits) -> Self {
        RtmpLimits {
            max_media: l.max_buffered_bytes.min(0xff_ffff),
            max_command: l.max_request_bytes,
            max_buffered: l.max_buffered_bytes,
            read_size: 64 << 10,
        }
    }
}

#[cfg(test)]
mod connection_tests;
