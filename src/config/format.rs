//! The recording formats a template can ask for (`formats = [...]`); the encoders for them
//! are [`crate::media::format`]'s.

use serde::{Deserialize, Serialize};

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
