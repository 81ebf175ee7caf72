//! What the segmenter tells the writers: start a segment, append a fragment, close it.
//!
//! Every output format is a sink of these same events, so adding HLS, DASH, FLV or ADTS
//! means adding a sink, not touching the segmenter.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::media::frame::StreamParams;
use crate::util::clockwatch::{BootTime, TimeQuality};

/// Identity of a segment, written inside every file so the index can be rebuilt from the
/// files alone (see `format::fmp4` for where it lives in the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Device that recorded it (`device_id` in the config).
    pub device: String,
    /// Application name (the `app` part of a push URL; empty for pulled streams).
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Per-stream sequence number, increasing by one per segment.
    pub seq: u64,
    /// Wall-clock time of the first frame, milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Formats the template asked for (empty: not known, treated as fMP4 only). Lets
    /// recovery finish a torn segment as asked even when the index lost its row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<crate::config::format::Format>,
    /// How far `start_ms` can be trusted when it was recorded (absent in files written
    /// before edgerec knew: read as `synced`). The file keeps what was true at recording;
    /// a later correction lives in the index and in `<root>/clock-corrections.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_quality: Option<TimeQuality>,
    /// Where the segment started on the boot clock, and the wall − boot offset `start_ms`
    /// was stamped with: what a re-stamp, and an index rebuild, start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootTime>,
}

/// Begin a new segment. The first video sample of the first fragment is a key frame, except
/// after a [`CloseReason::KeyFrameOverdue`] cut.
#[derive(Clone, Debug)]
pub struct SegmentStart {
    pub meta: SegmentMeta,
    pub params: Arc<StreamParams>,
    /// Per track: the source dts that maps to time 0 in this segment.
    pub base_dts: Vec<i64>,
}

/// One sample inside a fragment.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// pts − dts in the track's timescale.
    pub cts_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// A track's run of samples in one fragment.
#[derive(Clone, Debug)]
pub struct TrackRun {
    /// Index into `SegmentStart::params.tracks`.
    pub track: usize,
    /// Decode time of the first sample relative to the segment start (`tfdt`), in the
    /// track's timescale.
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

/// A fragment: a moof+mdat in fMP4, the unit of crash loss.
#[derive(Clone, Debug)]
pub struct Fragment {
    /// 1-based fragment sequence number within the segment (`mfhd`).
    pub sequence: u32,
    /// One run per track that has samples in this fragment, in track order.
    pub runs: Vec<TrackRun>,
}

impl Fragment {
    /// Total sample bytes in this fragment.
    pub fn media_bytes(&self) -> usize {
        self.runs
            .iter()
            .flat_map(|r| r.samples.iter())
            .map(|s| s.data.len())
            .sum()
    }
}

/// Why a segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// `interval` elapsed and a key frame arrived.
    Interval,
    /// Codec parameters changed (new SPS/PPS, resolution).
    ParamsChanged,
    /// No key frame came for `2 × interval`: cut at a frame that is not one, so segments
    /// stay bounded; the next segment starts on that frame.
    KeyFrameOverdue,
    /// A timestamp went backwards or jumped far ahead.
    Discontinuity,
    /// The source ended or was lost.
    SourceEnded,
    /// The recorder is shutting down.
    Shutdown,
}

/// End of the segment. No further fragments follow until the next `Start`.
#[derive(Clone, Debug)]
pub struct SegmentClose {
    pub reason: CloseReason,
    /// Wall-clock start as the segmenter holds it at the close: the `start_ms` the segment
    /// began with, moved by any clock correction since ([`Segmenter::shift_time`]).
    ///
    /// [`Segmenter::shift_time`]: crate::media::segment::Segmenter::shift_time
    pub start_ms: i64,
    /// Media duration of the segment in milliseconds (video track if present).
    pub duration_ms: u64,
    /// Wall-clock end, milliseconds since the Unix epoch (`start_ms + duration_ms`).
    pub end_ms: i64,
}

/// The segmenter's output.
#[derive(Clone, Debug)]
pub enum SegmentEvent {
    Start(SegmentStart),
    Fragment(Fragment),
    Close(SegmentClose),
}
