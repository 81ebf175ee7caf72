//! What can be wrong with an MP4 file the file source reads.
//!
//! [`Mp4Error`] is the reading's own error; [`Mp4Error::into_source`] turns it into the
//! [`SourceError`] the recorder sees: I/O failures stay I/O errors, a valid file of a kind
//! the file source does not replay is `UnsupportedFile`, everything else is `Corrupt`.

use std::path::Path;

use super::SourceError;

/// A problem reading an MP4 file.
#[derive(thiserror::Error, Debug)]
pub enum Mp4Error {
    #[error(transparent)]
    Io(#[from] std::io::Error),

    // The top-level boxes.
    #[error("moov box not found")]
    NoMoov,
    #[error("the file has two moov boxes")]
    TwoMoov,
    #[error("moov box of {size} bytes is too large")]
    MoovTooLarge { size: u64 },
    #[error("truncated box header")]
    TruncatedHeader,
    #[error("box at offset {offset} has size {size}")]
    BadBoxSize { offset: u64, size: u64 },
    #[error(
        "the file is truncated: box \"{kind}\" at offset {offset} needs {size} bytes but the \
         file ends {left} bytes later"
    )]
    Truncated {
        kind: String,
        offset: u64,
        size: u64,
        left: u64,
    },
    #[error("box \"{kind}\" claims {size} bytes but {left} remain")]
    Overrun { kind: String, size: u64, left: u64 },
    /// mp4-atom could not decode a box; `what` says which (`track 2`).
    #[error("{what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: mp4_atom::Error,
    },
    #[error(
        "fragmented MP4 is not supported by the file source; remux it first \
         (ffmpeg -i IN -c copy -movflags +faststart OUT.mp4)"
    )]
    Fragmented,

    /// No track is one edgerec records; `offered` says what the file has.
    #[error("no supported track; {offered}")]
    NoTrack { offered: String },

    // Sample entries.
    #[error("track {track_id} has timescale 0")]
    ZeroTimescale { track_id: u32 },
    #[error("track {track_id} has no sample entry")]
    NoSampleEntry { track_id: u32 },
    #[error("video sample entry has size {width}x{height}")]
    VideoSize { width: u16, height: u16 },
    /// The sample entry's `avcC`/`hvcC` cannot be read or its SPS parsed.
    #[error(transparent)]
    Codec(#[from] crate::media::codec::CodecError),
    #[error("the video uses {0}-byte NAL lengths; only 4-byte is supported (remux with ffmpeg)")]
    NalLengthSize(u8),
    #[error("AAC track has no AudioSpecificConfig")]
    NoAudioSpecificConfig,
    /// The AudioSpecificConfig does not parse.
    #[error("AudioSpecificConfig: {0}")]
    AudioSpecificConfig(crate::media::codec::aac::AacError),

    // Sample tables.
    #[error("stsz has no size for sample {0}")]
    NoSize(u32),
    #[error("stsc is empty")]
    EmptyStsc,
    #[error("stsc is inconsistent at chunk {0}")]
    BadStsc(u32),
    #[error("no chunk offset for chunk {chunk} (sample {sample})")]
    NoChunkOffset { chunk: u32, sample: u32 },
    #[error("sample offset overflows")]
    OffsetOverflow,
    #[error("stts has no time for sample {0}")]
    NoTime(u32),
    #[error("stts covers fewer than the {0} samples")]
    ShortStts(u32),
    #[error("the file has zero duration and cannot loop")]
    ZeroDuration,
    #[error(
        "a sample of {size} bytes at offset {offset} lies beyond the end of the {file_len}-byte \
         file (truncated?)"
    )]
    SampleBeyondEnd {
        size: u32,
        offset: u64,
        file_len: u64,
    },
    /// A sample-table error of one track (its index among the recorded tracks).
    #[error("track {track}: {source}")]
    Track {
        track: usize,
        #[source]
        source: Box<Mp4Error>,
    },
}

impl Mp4Error {
    /// The error the recorder sees for this problem in the file at `path`.
    pub fn into_source(self, path: &Path) -> SourceError {
        let path = path.to_path_buf();
        match self {
            Mp4Error::Io(source) => SourceError::Io { path, source },
            Mp4Error::NoTrack { offered } => SourceError::UnsupportedCodec {
                source_name: path.display().to_string(),
                offered,
            },
            Mp4Error::Fragmented | Mp4Error::NalLengthSize(_) => SourceError::UnsupportedFile {
                path,
                reason: self.to_string(),
            },
            other => SourceError::Corrupt {
                path,
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stays_io_unsupported_kinds_are_unsupported_and_the_rest_is_corrupt() {
        let p = Path::new("a.mp4");
        let io = Mp4Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(io.into_source(p), SourceError::Io { .. }));
        let frag = Mp4Error::Fragmented.into_source(p);
        assert!(matches!(frag, SourceError::UnsupportedFile { .. }));
        assert!(frag.to_string().contains("remux"), "{frag}");
        let nal = Mp4Error::NalLengthSize(2).into_source(p);
        assert!(nal.to_string().contains("2-byte NAL lengths"), "{nal}");
        let e = Mp4Error::NoMoov.into_source(p);
        assert_eq!(
            e.to_string(),
            "a.mp4: not a usable MP4 file: moov box not found"
        );
    }
}
