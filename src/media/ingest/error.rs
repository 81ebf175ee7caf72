//! What can go wrong when a stream is pushed to us.

/// A publisher was refused. Each message tells the publisher's operator what to change;
/// [`PublishError::rtsp_status`] maps it to a status code the push servers send.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Someone already publishes this stream (and `ingest.takeover` is off).
    #[error("stream \"{stream}\" is already being published; stop the other publisher or set ingest.takeover = true")]
    AlreadyLive { stream: String },
    /// The name belongs to a configured (pulled) stream.
    #[error("stream \"{stream}\" is a configured camera stream; push under another name")]
    NameTaken { stream: String },
    /// No rule records this app/stream, so the push would go nowhere.
    #[error("nothing records app \"{app}\" stream \"{stream}\": no rule selects a template with formats; add a [[rules]] entry for it")]
    NotRecorded { app: String, stream: String },
    /// The app or stream name in the URL cannot be used (empty, `..`, control characters).
    #[error("bad {what} name {name:?}: {reason}")]
    BadName {
        what: &'static str,
        name: String,
        reason: String,
    },
    /// A push-URL record parameter is unknown or has a bad value.
    #[error("bad push URL parameter \"{param}\": {reason}")]
    BadParams { param: String, reason: String },
    /// A recording format this build cannot write yet.
    #[error("{reason}")]
    UnsupportedFormat { format: String, reason: String },
    /// A format asked for cannot hold the publisher's codecs (H.265 in FLV, Opus in
    /// `.aac`, no audio for `.aac`). `asked` says where the format was asked for.
    #[error("{asked} \"{format}\": {reason}")]
    FormatRefused {
        asked: String,
        format: String,
        reason: String,
    },
    /// The publisher offers nothing edgerec can record (e.g. `record_type=audio` without
    /// an audio track, or only unsupported codecs).
    #[error("nothing to record: {reason}")]
    NoTracks { reason: String },
    /// Too many push connections are open.
    #[error("too many push connections (limit {limit}, ingest.max_connections)")]
    TooMany { limit: usize },
    /// The recorder is shutting down.
    #[error("the recorder is shutting down")]
    ShuttingDown,
}

impl PublishError {
    /// The RTSP (and HTTP-like) status code for this refusal.
    pub fn rtsp_status(&self) -> u16 {
        match self {
            PublishError::BadName { .. } | PublishError::BadParams { .. } => 400,
            PublishError::NotRecorded { .. } | PublishError::NameTaken { .. } => 403,
            PublishError::UnsupportedFormat { .. } => 406,
            PublishError::NoTracks { .. } | PublishError::FormatRefused { .. } => 415,
            PublishError::AlreadyLive { .. } => 409,
            PublishError::TooMany { .. } | PublishError::ShuttingDown => 503,
        }
    }
}

/// A running push had to stop.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// The recorder fell too far behind (storage too slow); the publisher is disconnected
    /// so memory stays bounded.
    #[error("stream \"{stream}\": the recorder is {buffered} bytes behind (ingest.max_buffered_bytes = {limit}); is the storage too slow?")]
    Overrun {
        stream: String,
        buffered: usize,
        limit: usize,
    },
    /// Another publisher took the stream over (`ingest.takeover = true`).
    #[error("stream \"{stream}\": taken over by a new publisher")]
    TakenOver { stream: String },
    /// The recorder stopped (shutdown, or its session ended).
    #[error("stream \"{stream}\": the recorder stopped")]
    Stopped { stream: String },
    /// The publisher's codecs, known from its first frames, cannot be recorded in a format
    /// asked for: the publish is refused (RTMP gets an onStatus error with the reason).
    #[error("stream \"{stream}\": {refusal}")]
    Refused {
        stream: String,
        refusal: PublishError,
    },
}
