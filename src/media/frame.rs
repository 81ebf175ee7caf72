//! The one frame type every source produces and the segmenter consumes.
//!
//! A [`Frame`] is one access unit of one track, already in the form MP4 stores it:
//! video as 4-byte length-prefixed NAL units (AVCC/HVCC, no parameter sets needed in-band),
//! audio as a raw access unit (no ADTS header). Its [`StreamParams`] travel with it as an
//! `Arc`, so a parameter change (new SPS/PPS, new resolution) is visible on the very frame
//! where it happens and the segmenter can start a new segment with a new init section.

use std::sync::Arc;

use bytes::Bytes;

/// Video codecs edgerec records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    H264,
    H265,
}

/// Audio codecs edgerec records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// MPEG-4 AAC; `config` is the AudioSpecificConfig.
    Aac,
    /// Opus; `config` is the OpusHead payload (RFC 7845 §5.1) without the magic.
    Opus,
}

/// Parameters of a video track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoParams {
    pub codec: VideoCodec,
    pub width: u16,
    pub height: u16,
    /// The decoder configuration record exactly as it goes into the sample entry:
    /// AVCDecoderConfigurationRecord (`avcC`) for H.264, HEVCDecoderConfigurationRecord
    /// (`hvcC`) for H.265.
    pub config: Bytes,
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub rfc6381: String,
    /// Ticks per second of `dts`/`pts` (90 000 for RTP and most MP4 files).
    pub timescale: u32,
}

/// Parameters of an audio track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioParams {
    pub codec: AudioCodec,
    pub sample_rate: u32,
    pub channels: u16,
    /// AudioSpecificConfig for AAC, OpusHead for Opus.
    pub config: Bytes,
    /// Ticks per second of `dts`/`pts`; normally equal to `sample_rate`.
    pub timescale: u32,
    /// Samples per access unit (1024 for AAC-LC, 960 for 20 ms Opus); the duration used
    /// for the last frame of a segment when no next frame tells it.
    pub frame_samples: u32,
}

/// One track's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackParams {
    Video(VideoParams),
    Audio(AudioParams),
}

impl TrackParams {
    pub fn timescale(&self) -> u32 {
        match self {
            TrackParams::Video(v) => v.timescale,
            TrackParams::Audio(a) => a.timescale,
        }
    }

    pub fn is_video(&self) -> bool {
        matches!(self, TrackParams::Video(_))
    }
}

/// All tracks of a stream, indexed by [`Frame::track`]. A source emits a new `Arc` only when
/// something changes, so an unchanged stream shares one allocation across all its frames.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StreamParams {
    pub tracks: Vec<TrackParams>,
}

impl StreamParams {
    /// Index of the first video track, the one segments are cut on.
    pub fn video_track(&self) -> Option<usize> {
        self.tracks.iter().position(TrackParams::is_video)
    }
}

/// One access unit.
#[derive(Clone, Debug)]
pub struct Frame {
    pub params: Arc<StreamParams>,
    /// Index into `params.tracks`.
    pub track: usize,
    /// Decode timestamp in the track's timescale. Non-decreasing per track; sources keep it
    /// increasing across reconnects of the same session and across file loops.
    pub dts: i64,
    /// Presentation timestamp in the track's timescale.
    pub pts: i64,
    /// True for an IDR/IRAP video frame (and for every audio frame).
    pub keyframe: bool,
    /// Sample bytes as stored in MP4 (see module docs). Cheap to clone.
    pub data: Bytes,
}

impl Frame {
    pub fn track_params(&self) -> &TrackParams {
        &self.params.tracks[self.track]
    }
}
