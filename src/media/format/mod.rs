//! Output formats: pure encoders from segment events to bytes, and readers for our own files.
//!
//! - [`fmp4`]: the fragmented MP4 encoder (init section + one moof/mdat per fragment).
//! - [`scan`]: walks one of our MP4 files and finds its metadata and where its last complete
//!   fragment ends (crash recovery, index rebuild).
//! - [`layout`]: where an fMP4's init and fragments are, for playback's byte ranges.
//! - [`progressive`]: rewrites a finished fMP4 into a moov-first progressive MP4.
//! - [`flv`]: the FLV encoder (onMetaData patched in place at close, key frame index) and
//!   its scanner; [`amf`]: AMF0, FLV's script data (and RTMP's commands).
//! - [`adts`]: the ADTS AAC encoder and its scanner.
//! - [`hls`]: HLS media segments (fMP4 with a continuous timeline) and the playlist's text.
//!
//! Every file a segment is written through has an [`Encoder`]: the bytes that begin the
//! file, the bytes of each fragment, and what to write over its own earlier bytes when it
//! closes. [`encoder`] picks the one of a [`Container`].

use std::io::Read;
use std::time::Duration;

pub mod adts;
pub mod amf;
mod boxes;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod layout;
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
    /// The input is not a file of the format edgerec can read.
    #[error("not a readable file of its format (at offset {offset}): {reason}")]
    Malformed { offset: u64, reason: String },
    /// The format cannot hold this stream (its codec); the reason says what to do.
    #[error("{reason}")]
    Refused { reason: String },
}

/// The format choice is the config's; the encoders for it are here.
pub use crate::config::format::{by_container, Container, Format};
use crate::media::frame::{AudioCodec, StreamParams, TrackParams, VideoCodec};
use crate::media::segment::event::{Fragment, SegmentStart};

/// Bytes to write over a file's own earlier bytes before it closes (FLV's onMetaData).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// The encoder of one container's files, one segment at a time: [`Encoder::init`] when a
/// segment starts, [`Encoder::fragment`] per fragment, [`Encoder::finish`] at close. Pure:
/// it returns bytes, the store writes them.
pub trait Encoder: Send {
    /// The bytes that begin the file, or why this container cannot hold the stream.
    fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError>;
    /// The bytes of one fragment; empty when it holds nothing this container writes.
    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<Vec<u8>, FormatError>;
    /// What to write over the file's earlier bytes before it is closed, if anything.
    fn finish(&mut self) -> Option<Patch>;
    /// The next segment begins a new recording (HLS: its decode times restart at 0).
    fn new_recording(&mut self) {}
}

struct Fmp4Encoder;

impl Encoder for Fmp4Encoder {
    fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        fmp4::encode_init(start)
    }
    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<Vec<u8>, FormatError> {
        Ok(fmp4::encode_fragment(start, frag))
    }
    fn finish(&mut self) -> Option<Patch> {
        None
    }
}

impl Encoder for flv::FlvEncoder {
    fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        flv::FlvEncoder::init(self, start)
    }
    fn fragment(&mut self, _: &SegmentStart, frag: &Fragment) -> Result<Vec<u8>, FormatError> {
        flv::FlvEncoder::fragment(self, frag)
    }
    fn finish(&mut self) -> Option<Patch> {
        flv::FlvEncoder::finish(self)
    }
}

impl Encoder for adts::AdtsEncoder {
    fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        adts::AdtsEncoder::init(self, start)
    }
    fn fragment(&mut self, _: &SegmentStart, frag: &Fragment) -> Result<Vec<u8>, FormatError> {
        adts::AdtsEncoder::fragment(self, frag)
    }
    fn finish(&mut self) -> Option<Patch> {
        adts::AdtsEncoder::finish(self);
        None
    }
}

impl Encoder for hls::HlsEncoder {
    fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        hls::HlsEncoder::init(self, start)
    }
    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<Vec<u8>, FormatError> {
        Ok(hls::HlsEncoder::fragment(self, start, frag))
    }
    fn finish(&mut self) -> Option<Patch> {
        None
    }
    fn new_recording(&mut self) {
        hls::HlsEncoder::new_recording(self)
    }
}

/// The encoder of `container`'s files for a stream cut every `interval`.
pub fn encoder(container: Container, interval: Duration) -> Box<dyn Encoder> {
    match container {
        Container::Mp4 => Box::new(Fmp4Encoder),
        Container::Flv => Box::new(flv::FlvEncoder::new(interval)),
        Container::Adts => Box::new(adts::AdtsEncoder::new()),
        Container::Hls => Box::new(hls::HlsEncoder::new()),
    }
}

/// Why `format` cannot hold a stream whose first video and audio tracks have these codecs,
/// if it cannot (MP4, and so HLS's fMP4, holds every codec edgerec records). The push servers ask before
/// accepting a publisher; the encoders refuse the same at a segment's start.
pub fn refusal(
    format: Format,
    video: Option<VideoCodec>,
    audio: Option<AudioCodec>,
) -> Option<String> {
    match format {
        Format::Fmp4 | Format::Mp4 | Format::Hls => None,
        Format::Flv => flv::refusal(video, audio),
        Format::Aac => adts::refusal(audio),
    }
}

/// The codecs of the first video and the first audio track of `params`.
pub fn codecs(params: &StreamParams) -> (Option<VideoCodec>, Option<AudioCodec>) {
    let video = params.tracks.iter().find_map(|t| match t {
        TrackParams::Video(v) => Some(v.codec),
        TrackParams::Audio(_) => None,
    });
    let audio = params.tracks.iter().find_map(|t| match t {
        TrackParams::Audio(a) => Some(a.codec),
        TrackParams::Video(_) => None,
    });
    (video, audio)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
