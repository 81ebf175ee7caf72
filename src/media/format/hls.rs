//! HLS (RFC 8216, `EXT-X-VERSION:7`): the media segments' encoder and the playlist's text.
//! Pure: the store writes the bytes (see `storage::store::playlist` for the durability order).
//!
//! A recording is:
//!
//! ```text
//! <first base>.m3u8        the playlist: head, one entry per closed segment, ENDLIST at the end
//! <first base>.init.mp4    the init section (ftyp + moov) its EXT-X-MAP names
//! <base>.m4s               one per segment: ftyp + uuid (our metadata) + moov, then moof+mdat
//! ```
//!
//! A media segment is a whole fMP4 file, so that crash recovery, index rebuild and any MP4
//! player read it alone as they read our `.mp4` files; its playlist entry names only the
//! fragments (`EXT-X-BYTERANGE` from the end of its own init section), which is what a CMAF
//! player wants. Decode times (`tfdt`) are continuous across the segments of a recording:
//! each track of a segment starts where the same track of the previous one ended.
//!
//! `EXT-X-TARGETDURATION` is fixed when the playlist opens, from the template's interval: the
//! segmenter cuts on the first key frame after `interval` and forces a cut once `2 × interval`
//! passed without one, so no segment is longer than `2 × interval` plus one frame.

use std::path::{Component, Path};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{fmp4, FormatError};
use crate::media::frame::StreamParams;
use crate::media::segment::event::{Fragment, SegmentStart};

/// The comment line (not a tag: players skip it) that tells recovery whose recording a
/// playlist is: `#EDGEREC:{"app":"","stream":"cam1","first_seq":12}`.
const RECORDING_PREFIX: &str = "#EDGEREC:";
/// The last line of a finished playlist.
pub const ENDLIST: &str = "#EXT-X-ENDLIST\n";

/// Which stream a playlist records, from which segment on. A recording holds that stream's
/// segments from `first_seq` up to the next recording's `first_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub app: String,
    pub stream: String,
    pub first_seq: u64,
}

/// `EXT-X-TARGETDURATION` for segments cut at `interval`: the longest segment the segmenter
/// makes (`2 × interval` and a frame), in whole seconds rounded up.
pub fn target_duration(interval: Duration) -> u64 {
    (interval.as_millis() as u64 * 2).div_ceil(1000) + 1
}

/// The playlist's head: everything before the first entry.
pub fn head(target_s: u64, map_uri: &str, rec: &Recording) -> String {
    let rec = serde_json::to_string(rec).unwrap_or_default();
    format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target_s}\n\
         #EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-MEDIA-SEQUENCE:0\n{RECORDING_PREFIX}{rec}\n{}",
        map_line(map_uri)
    )
}

/// The `EXT-X-MAP` line naming the init section `uri`.
pub fn map_line(uri: &str) -> String {
    format!("#EXT-X-MAP:URI=\"{}\"\n", quote(uri))
}

/// One media segment of a playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the playlist's directory, `/`-separated.
    pub uri: String,
    /// Wall-clock time of its first frame, ms since the Unix epoch.
    pub start_ms: i64,
    pub duration_ms: u64,
    /// Where its fragments begin in the file (the end of its own init section).
    pub offset: u64,
    /// The fragments' length (file length − offset).
    pub len: u64,
}

/// The lines of one entry.
pub fn entry(e: &Entry) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(e.start_ms.max(0) as u64);
    format!(
        "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{}.{:03},\n#EXT-X-BYTERANGE:{}@{}\n{}\n",
        humantime::format_rfc3339_millis(t),
        e.duration_ms / 1000,
        e.duration_ms % 1000,
        e.len,
        e.offset,
        e.uri
    )
}

/// What recovery needs from a playlist on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub recording: Option<Recording>,
    pub target_s: Option<u64>,
    /// The first `EXT-X-MAP` (the head's).
    pub map_uri: Option<String>,
    /// The sum of its `EXTINF`s.
    pub duration_ms: u64,
    /// It ends with `EXT-X-ENDLIST` on a line of its own.
    pub finished: bool,
}

/// Reads a playlist we wrote (a torn last line is fine: it is not a complete ENDLIST).
pub fn parse(text: &str) -> Parsed {
    let mut p = Parsed {
        recording: None,
        target_s: None,
        map_uri: None,
        duration_ms: 0,
        finished: false,
    };
    for line in text.lines() {
        if let Some(j) = line.strip_prefix(RECORDING_PREFIX) {
            p.recording = serde_json::from_str(j).ok();
        } else if let Some(t) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_s = t.trim().parse().ok();
        } else if let Some(m) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            if p.map_uri.is_none() {
                p.map_uri = m.strip_suffix('"').map(str::to_owned);
            }
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d = d.trim_end_matches(',');
            if let Ok(s) = d.parse::<f64>() {
                p.duration_ms += (s * 1000.0).round() as u64;
            }
        }
    }
    p.finished = text.ends_with(ENDLIST);
    p
}

/// `to` (relative to the storage root) as a URI relative to the directory `from` (also
/// relative to the root), `/`-separated.
pub fn relative_uri(from: &Path, to: &Path) -> String {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); a.len() - common];
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// URIs are written inside quotes: a quote or line break in a name would break the line.
fn quote(uri: &str) -> String {
    uri.replace(['"', '\n', '\r'], "_")
}

/// The init section a recording's EXT-X-MAP names: `ftyp` + `moov`. Its creation time is
/// the Unix epoch rather than the session's start, so that the same codec parameters always
/// give the same bytes: a spliced session whose init section equals the recording's needs no new `EXT-X-MAP`.
pub fn init_section(start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
    let mut timeless = start.clone();
    timeless.meta.start_ms = 0;
    fmp4::encode_init_section(&timeless)
}

/// The media segments' encoder: our fMP4 files, with each track's decode times continued
/// from the previous segment of the same recording.
#[derive(Debug, Default)]
pub struct HlsEncoder {
    /// Per track: the decode time this segment starts at in the recording.
    offset: Vec<u64>,
    /// Per track: where this segment's samples end, relative to the segment.
    end: Vec<u64>,
    /// The next segment starts a new recording (decode time 0).
    fresh: bool,
    params: Option<Arc<StreamParams>>,
}

impl HlsEncoder {
    pub fn new() -> Self {
        HlsEncoder {
            fresh: true,
            ..Default::default()
        }
    }

    /// The next segment begins a new recording: its decode times start at 0.
    pub fn new_recording(&mut self) {
        self.fresh = true;
    }

    /// The head of a segment file (as an fMP4's); moves the timeline on by the previous
    /// segment's length.
    pub fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        let n = start.params.tracks.len();
        let same_tracks = self.params.as_ref().is_some_and(|p| p.tracks.len() == n);
        if self.fresh || !same_tracks {
            self.offset = vec![0; n];
        } else {
            for (o, e) in self.offset.iter_mut().zip(&self.end) {
                *o += e;
            }
        }
        self.end = vec![0; n];
        self.fresh = false;
        self.params = Some(start.params.clone());
        fmp4::encode_init(start)
    }

    /// One fragment, its decode times moved onto the recording's timeline.
    pub fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Vec<u8> {
        let mut moved = frag.clone();
        for run in &mut moved.runs {
            let dur: u64 = run.samples.iter().map(|s| u64::from(s.duration)).sum();
            if let Some(e) = self.end.get_mut(run.track) {
                *e = (*e).max(run.base_decode_time + dur);
            }
            run.base_decode_time += self.offset.get(run.track).copied().unwrap_or(0);
        }
        fmp4::encode_fragment(start, &moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Recording {
        Recording {
            app: "live".into(),
            stream: "cam1".into(),
            first_seq: 7,
        }
    }

    #[test]
    fn uris_are_relative_to_the_playlist_directory() {
        let uri = |a: &str, b: &str| relative_uri(Path::new(a), Path::new(b));
        assert_eq!(uri("cam/d1", "cam/d1/a.m4s"), "a.m4s");
        assert_eq!(uri("cam/d1", "cam/d2/b.m4s"), "../d2/b.m4s");
        assert_eq!(uri("", "c.m4s"), "c.m4s");
    }

    #[test]
    fn target_duration_covers_a_forced_cut_at_twice_the_interval() {
        assert_eq!(target_duration(Duration::from_secs(2)), 5);
        assert_eq!(target_duration(Duration::from_millis(1500)), 4);
        assert_eq!(target_duration(Duration::from_secs(60)), 121);
    }

    #[test]
    fn a_playlist_reads_back_its_recording_and_is_finished_only_by_a_whole_endlist() {
        let mut text = head(5, "a.init.mp4", &rec());
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:5\n"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        text += &entry(&Entry {
            uri: "a.m4s".into(),
            start_ms: 1_765_134_281_123,
            duration_ms: 2_040,
            offset: 900,
            len: 12_345,
        });
        assert!(
            text.contains(
                "#EXT-X-PROGRAM-DATE-TIME:2025-12-07T19:04:41.123Z\n#EXTINF:2.040,\n\
                 #EXT-X-BYTERANGE:12345@900\na.m4s\n"
            ),
            "{text}"
        );
        let p = parse(&text);
        assert_eq!(p.recording, Some(rec()));
        assert_eq!(p.target_s, Some(5));
        assert_eq!(p.map_uri.as_deref(), Some("a.init.mp4"));
        assert_eq!(p.duration_ms, 2_040);
        let spliced = format!("{text}#EXT-X-DISCONTINUITY\n{}", map_line("a-1.init.mp4"));
        assert_eq!(
            parse(&spliced).map_uri.as_deref(),
            Some("a.init.mp4"),
            "the head's map"
        );
        assert!(!p.finished);
        assert!(
            !parse(&(text.clone() + "#EXT-X-END")).finished,
            "torn ENDLIST"
        );
        assert!(parse(&(text + ENDLIST)).finished);
    }
}
