//! The recording formats a template can ask for (`formats = [...]`); the encoders for them
//! are [`crate::media::format`]'s.

use serde::{Deserialize, Serialize};

/// A recording format a template can ask for.
///
/// The index stores rows with postcard, which encodes a variant by its position: never
/// reorder these, append new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Fragmented MP4: init section then a moof+mdat per fragment. Crash-safe while written.
    Fmp4,
    /// Progressive MP4 (moov first), produced from the fragments when the segment closes.
    Mp4,
    /// FLV (H.264 + AAC): tags written while recording, `onMetaData` patched in place at
    /// close.
    Flv,
    /// ADTS AAC (`.aac`): the audio only, one 7-byte header per frame.
    Aac,
    /// HLS (RFC 8216, version 7): a playlist per recording naming fMP4/CMAF media segments
    /// (`.m4s`, one per segment, decode times continuous across them) and one init section.
    Hls,
}

/// The file a format is written through while its segment is open. The formats of one
/// container are written by one sink and share one index row; each container has its own
/// working file (`<base><working suffix>`) and its own rows, events, uploads and retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Container {
    /// `fmp4` and `mp4`: the fMP4 working file (the progressive MP4 is made from it).
    Mp4,
    /// `flv`.
    Flv,
    /// `aac`.
    Adts,
    /// `hls`: the media segment (`.m4s`); the playlist naming it is written beside it.
    Hls,
}

impl Container {
    /// Every container, in the order their sinks are started.
    pub const ALL: [Container; 4] = [
        Container::Mp4,
        Container::Flv,
        Container::Adts,
        Container::Hls,
    ];

    /// Whether its files are fMP4 (MP4 and HLS): fragments padded to pages, scanned alike.
    pub fn is_fmp4(self) -> bool {
        matches!(self, Container::Mp4 | Container::Hls)
    }

    /// Suffix of the working file while a segment is being written.
    pub fn working_suffix(self) -> &'static str {
        match self {
            Container::Mp4 => ".mp4.part",
            Container::Flv => ".flv.part",
            Container::Adts => ".aac.part",
            Container::Hls => ".m4s.part",
        }
    }

    /// Extension of the final files (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Flv => "flv",
            Container::Adts => "aac",
            Container::Hls => "m4s",
        }
    }

    /// The format whose final file is the working file renamed, when `formats` (of this
    /// container) are asked: `None` only for `mp4` alone, whose working fMP4 is removed once
    /// the progressive copy is made.
    pub fn renamed(self, formats: &[Format]) -> Option<Format> {
        match self {
            Container::Mp4 => formats.contains(&Format::Fmp4).then_some(Format::Fmp4),
            Container::Flv => Some(Format::Flv),
            Container::Adts => Some(Format::Aac),
            Container::Hls => Some(Format::Hls),
        }
    }

    /// The container whose working file `name` is, and the base (the name without the
    /// suffix). A progressive temporary (`.progressive.mp4.part`) counts as an MP4 one.
    pub fn of_working(name: &str) -> Option<(Container, &str)> {
        Container::ALL
            .into_iter()
            .find_map(|c| name.strip_suffix(c.working_suffix()).map(|b| (c, b)))
    }

    /// The file format in `file_format` of events: the cloud callback's names.
    pub fn file_format(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Flv => "flv",
            Container::Adts => "aac",
            Container::Hls => "hls",
        }
    }
}

impl Format {
    /// File name suffix (appended to the expanded naming template). `fmp4` and `mp4` are
    /// both MP4 files any player opens; when a template asks for both, the progressive copy
    /// gets its own suffix.
    pub fn suffix(self, with_fmp4: bool) -> &'static str {
        match (self, with_fmp4) {
            (Format::Fmp4, _) => ".mp4",
            (Format::Mp4, false) => ".mp4",
            (Format::Mp4, true) => ".progressive.mp4",
            (Format::Flv, _) => ".flv",
            (Format::Aac, _) => ".aac",
            (Format::Hls, _) => ".m4s",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Fmp4 => "fmp4",
            Format::Mp4 => "mp4",
            Format::Flv => "flv",
            Format::Aac => "aac",
            Format::Hls => "hls",
        }
    }

    /// The working file this format is written through.
    pub fn container(self) -> Container {
        match self {
            Format::Fmp4 | Format::Mp4 => Container::Mp4,
            Format::Flv => Container::Flv,
            Format::Aac => Container::Adts,
            Format::Hls => Container::Hls,
        }
    }

    /// Parse a template's format name. A format that a later issue adds (dash) is refused
    /// with a message saying so.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "fmp4" => Ok(Format::Fmp4),
            "mp4" => Ok(Format::Mp4),
            "flv" => Ok(Format::Flv),
            "aac" => Ok(Format::Aac),
            "hls" => Ok(Format::Hls),
            "dash" => Err(format!(
                "format \"{s}\" is not supported yet by this build (supported: {SUPPORTED})"
            )),
            other => Err(format!(
                "unknown format \"{other}\" (supported: {SUPPORTED})"
            )),
        }
    }
}

/// The format names [`Format::parse`] accepts, for messages.
pub const SUPPORTED: &str = "fmp4, mp4, flv, aac, hls";

/// `formats` split by container, in [`Container::ALL`] order, each with its formats in the
/// order given; containers nothing asks for are left out.
pub fn by_container(formats: &[Format]) -> Vec<(Container, Vec<Format>)> {
    Container::ALL
        .into_iter()
        .filter_map(|c| {
            let mine: Vec<Format> = formats
                .iter()
                .copied()
                .filter(|f| f.container() == c)
                .collect();
            (!mine.is_empty()).then_some((c, mine))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_dash_waits_for_its_issue() {
        for f in [
            Format::Fmp4,
            Format::Mp4,
            Format::Flv,
            Format::Aac,
            Format::Hls,
        ] {
            assert_eq!(Format::parse(f.name()), Ok(f));
        }
        let e = Format::parse("dash").unwrap_err();
        assert!(e.contains("not supported yet"), "{e}");
        assert!(Format::parse("avi").unwrap_err().contains("unknown"));
    }

    #[test]
    fn formats_group_by_container_and_each_has_its_working_file() {
        let groups = by_container(&[Format::Aac, Format::Mp4, Format::Flv, Format::Fmp4]);
        assert_eq!(
            groups,
            vec![
                (Container::Mp4, vec![Format::Mp4, Format::Fmp4]),
                (Container::Flv, vec![Format::Flv]),
                (Container::Adts, vec![Format::Aac]),
            ]
        );
        assert_eq!(
            Container::of_working("a/b.flv.part"),
            Some((Container::Flv, "a/b"))
        );
        assert_eq!(
            Container::of_working("a/b.progressive.mp4.part"),
            Some((Container::Mp4, "a/b.progressive"))
        );
        assert_eq!(Container::of_working("a/b.mp4"), None);
        assert_eq!(Container::Mp4.renamed(&[Format::Mp4]), None);
        assert_eq!(
            Container::Mp4.renamed(&[Format::Mp4, Format::Fmp4]),
            Some(Format::Fmp4)
        );
    }

    #[test]
    fn postcard_positions_of_the_first_formats_never_move() {
        // Rows written before flv and aac existed must read back the same.
        assert_eq!(postcard::to_allocvec(&Format::Fmp4).unwrap(), [0]);
        assert_eq!(postcard::to_allocvec(&Format::Mp4).unwrap(), [1]);
        assert_eq!(postcard::to_allocvec(&Format::Flv).unwrap(), [2]);
        assert_eq!(postcard::to_allocvec(&Format::Aac).unwrap(), [3]);
        assert_eq!(postcard::to_allocvec(&Format::Hls).unwrap(), [4]);
    }
}
