//! Output formats: pure encoders from segment events to bytes, and readers for our own files.
//!
//! - [`fmp4`]: the fragmented MP4 encoder (init section + one moof/mdat per fragment).
//! - [`scan`]: walks one of our files and finds its metadata and where its last complete
//!   fragment ends (crash recovery, index rebuild).
//! - [`progressive`]: rewrites a finished fMP4 into a moov-first progressive MP4.

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

/// The format choice is the config's; the encoders for it are here.
pub use crate::config::format::Format;
