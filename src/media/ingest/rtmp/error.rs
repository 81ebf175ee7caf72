//! What can go wrong on an RTMP connection. Every error closes that one connection; the
//! server logs it with the peer's address, and other connections keep going.

/// An RTMP connection failed.
#[derive(thiserror::Error, Debug)]
pub enum RtmpError {
    /// The first bytes were not an RTMP handshake (garbage, TLS, HTTP, RTMPE).
    #[error("not an RTMP client: {reason}")]
    Handshake { reason: String },

    /// The chunk stream or a control message broke the protocol.
    #[error("RTMP protocol error: {reason}")]
    Protocol { reason: String },

    /// A size the peer announced is over a configured limit; nothing was allocated for it.
    #[error(
        "RTMP {what} of {size} bytes exceeds the limit of {limit} bytes (see [ingest] limits)"
    )]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },

    /// A command came in the wrong order or with wrong arguments (e.g. publish before
    /// connect, publish on a stream id that createStream never returned).
    #[error("RTMP command error: {reason}")]
    Command { reason: String },

    /// An AMF0 value could not be decoded.
    #[error("bad AMF0 data in {context}: {reason}")]
    Amf {
        context: &'static str,
        reason: String,
    },

    /// The stream carries a codec edgerec does not record.
    #[error(
        "unsupported codec: {what} (edgerec records H.264 or H.265 video and AAC audio over RTMP)"
    )]
    UnsupportedCodec { what: String },

    /// An FLV audio or video tag is malformed.
    #[error("bad {track} data: {reason}")]
    Media { track: &'static str, reason: String },
    /// A video sequence header whose decoder configuration record cannot be used.
    #[error("bad video data: {0}")]
    VideoConfig(#[from] crate::media::codec::CodecError),

    /// The recorder stopped taking this push's frames (too far behind, taken over,
    /// stopped).
    #[error("{0}")]
    Ingest(#[from] crate::media::ingest::IngestError),

    /// The peer sent nothing for too long.
    #[error("no data from the publisher for {secs} s")]
    Timeout { secs: u64 },

    /// Reading from or writing to the socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl RtmpError {
    pub(crate) fn protocol(reason: impl Into<String>) -> RtmpError {
        RtmpError::Protocol {
            reason: reason.into(),
        }
    }

    pub(crate) fn command(reason: impl Into<String>) -> RtmpError {
        RtmpError::Command {
            reason: reason.into(),
        }
    }

    pub(crate) fn video(reason: impl Into<String>) -> RtmpError {
        RtmpError::Media {
            track: "video",
            reason: reason.into(),
        }
    }

    pub(crate) fn audio(reason: impl Into<String>) -> RtmpError {
        RtmpError::Media {
            track: "audio",
            reason: reason.into(),
        }
    }
}
