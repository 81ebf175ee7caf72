//! What can go wrong with a source, and whether retrying can help.

use std::path::PathBuf;

/// A source failed. Every variant names the source (URL with credentials redacted, or path)
/// and says what to check.
#[derive(thiserror::Error, Debug)]
pub enum SourceError {
    /// The camera could not be reached (refused, unreachable, DNS failure, reset).
    #[error("cannot connect to {url}: {reason} (is the camera on and the address right?)")]
    Connect { url: String, reason: String },

    /// The camera did not answer, or stopped sending media, in time.
    #[error("{url}: no answer for {secs} s while {during}")]
    Timeout {
        url: String,
        during: &'static str,
        secs: u64,
    },

    /// The camera refused the credentials (RTSP 401/403).
    #[error("{url}: the camera refused the credentials ({status}); check user and password in the source URL")]
    Auth { url: String, status: u16 },

    /// Any other RTSP protocol failure, with retina's description.
    #[error("{url}: RTSP error: {reason}")]
    Rtsp { url: String, reason: String },

    /// The camera closed the session.
    #[error("{url}: the camera closed the stream")]
    Closed { url: String },

    /// Nothing in the stream is something edgerec records.
    #[error("{source_name}: no supported track (edgerec records H.264/H.265 video and AAC audio); {offered}")]
    UnsupportedCodec {
        /// Redacted URL or file path.
        source_name: String,
        /// What the source offers, e.g. `offers video/jpeg, audio/pcmu`.
        offered: String,
    },

    /// The file is not a usable MP4 (damaged, truncated, not MP4 at all).
    #[error("{}: not a usable MP4 file: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// The file is a valid MP4 of a kind the file source does not replay (e.g. fragmented).
    #[error("{}: {reason}", path.display())]
    UnsupportedFile { path: PathBuf, reason: String },

    /// A `pipe:` command could not start, exited, or its output ended.
    #[error("pipe:{command}: {reason}")]
    Pipe { command: String, reason: String },

    /// Opening or reading the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// True when retrying soon will not help: the input itself is wrong (unsupported codec,
    /// damaged or missing file, refused credentials — retrying those can lock the account on
    /// many cameras). The recorder still may retry these, but with a long backoff.
    pub fn is_permanent(&self) -> bool {
        match self {
            SourceError::UnsupportedCodec { .. }
            | SourceError::Corrupt { .. }
            | SourceError::UnsupportedFile { .. }
            | SourceError::Auth { .. } => true,
            SourceError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            SourceError::Connect { .. }
            | SourceError::Timeout { .. }
            | SourceError::Rtsp { .. }
            | SourceError::Closed { .. }
            | SourceError::Pipe { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_problems_are_permanent_and_network_problems_are_not() {
        let corrupt = SourceError::Corrupt {
            path: "x.mp4".into(),
            reason: "no moov".into(),
        };
        assert!(corrupt.is_permanent());
        let missing = SourceError::Io {
            path: "x.mp4".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(missing.is_permanent());
        let refused = SourceError::Connect {
            url: "rtsp://cam/".into(),
            reason: "refused".into(),
        };
        assert!(!refused.is_permanent());
        assert!(SourceError::Auth {
            url: "rtsp://***@cam/".into(),
            status: 401
        }
        .is_permanent());
    }

    #[test]
    fn messages_name_the_source() {
        let e = SourceError::Corrupt {
            path: "clips/a.mp4".into(),
            reason: "moov box not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "clips/a.mp4: not a usable MP4 file: moov box not found"
        );
        let e = SourceError::UnsupportedCodec {
            source_name: "rtsp://***@cam/x".into(),
            offered: "offers video/jpeg".into(),
        };
        assert!(e
            .to_string()
            .starts_with("rtsp://***@cam/x: no supported track"));
    }
}
