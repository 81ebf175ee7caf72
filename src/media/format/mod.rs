//! Output formats: pure encoders from segment events to bytes, and readers for our own files.
//!
//! - [`fmp4`]: the fragmented MP4 encoder (init section + one moof/mdat per fragment).
//! - [`scan`]: walks one of our files and finds its metadata and where its last complete
//!   fragment ends (crash recovery, index rebuild).
//! - [`progressive`]: rewrites a finished fMP4 into a moov-first progressive MP4.

use serde::{Deserialize, Serialize};

mod boxes;
pub mod fmp4;
pub mod progressive;
pub mod scan;
#[cfg(all(test, feature = "process-tests"))]
pub(crate) mod testutil;

/// Errors of the format encoders and readers.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A track's codec configuration could not be turned into a sample entry.
    #[error("track {track}: bad codec configuration: {reason}; the source sent parameters edgerec cannot record")]
    Config { track: usize, reason: String },
    /// An MP4 box could not be encoded.
    #[error("cannot encode the {what} box: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: mp4_atom::Error,
    },
    /// The segment metadata could not be serialized or parsed.
    #[error("segment metadata JSON: {0}")]
    Meta(#[from] serde_json::Error),
    /// Reading or writing a file failed.
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The input is not an MP4 file, or not one edgerec can read.
    #[error("not a readable MP4 file (at offset {offset}): {reason}")]
    Malformed { offset: u64, reason: String },
}

/// A recording format a template can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Fragmented MP4: init section then a moof+mdat per fragment. Crash-safe while written.
    Fmp4,
    /// Progressive MP4 (moov first), produced from the fragments when the segment closes.
    Mp4,
}

impl Format {
    /// File name suffix (appended to the expanded naming template). Both are MP4 files any
    /// player opens; when a template asks for both, the progressive copy gets its own suffix.
    pub fn suffix(self, with_fmp4: bool) -> &'static str {
        match (self, with_fmp4) {
            (Format::Fmp4, _) => ".mp4",
            (Format::Mp4, false) => ".mp4",
            (Format::Mp4, true) => ".progressive.mp4",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Fmp4 => "fmp4",
            Format::Mp4 => "mp4",
        }
    }

    /// Parse a template's format name. Formats that later issues add (hls, dash, flv, aac)
    /// are refused with a message saying so.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "fmp4" => Ok(Format::Fmp4),
            "mp4" => Ok(Format::Mp4),
            "hls" | "dash" | "flv" | "aac" => Err(format!(
                "format \"{s}\" is not supported yet by this build (supported: fmp4, mp4)"
            )),
            other => Err(format!("unknown format \"{other}\" (supported: fmp4, mp4)")),
        }
    }
}
