//! The FLV writer (pure: segment events in, bytes out) and the scanner that finds where a
//! torn FLV's last complete tag ends and makes the metadata patch recovery writes.
//!
//! A segment file is:
//!
//! ```text
//! header        "FLV", version 1, flags (0x04 audio | 0x01 video), header size 9
//! 0             PreviousTagSize0
//! script tag    onMetaData, of a size fixed when the file is created (see below)
//! video tag     AVC sequence header: the avcC                      (when there is video)
//! audio tag     AAC sequence header: the AudioSpecificConfig       (when there is audio)
//! tags          one per sample, in decode-time order within each fragment
//! ```
//!
//! Every tag is followed by its PreviousTagSize (11 + data size). Timestamps are
//! milliseconds from the segment start; a video tag's CompositionTime is pts − dts in
//! milliseconds. Only the first video track (H.264) and the first audio track (AAC) are
//! written: FLV holds one of each, and H.265 or Opus would need Enhanced FLV, which no
//! reader on the target boards (ffmpeg 5.1) checks ([`refusal`] says so).
//!
//! # onMetaData
//!
//! An ECMA array: `duration` (s), `filesize`, `width`, `height`, `framerate`,
//! `videocodecid` (7), `audiocodecid` (10), `audiosamplerate`, `audiosamplesize`, `stereo`,
//! `hasVideo`, `hasAudio`, `encoder`, the key frame index `keyframes` = `{times: [s],
//! filepositions: [byte offset of the tag]}` (flv.js and ffmpeg seek with it), and `edgerec`
//! = `{device, app, stream, seq, start_ms, formats}`: the segment's identity, so the index
//! can be rebuilt from the file alone.
//!
//! The tag is written at its final size when the file is created, with room for
//! [`index_slots`] key frames; the close writes the final values over it in place
//! ([`FlvEncoder::finish`] returns the patch). Numbers are always 9 bytes in AMF0, so only
//! the index changes length: the unused slots become `Number(0)` values after the array,
//! 18 bytes per slot, which readers skip (ffmpeg and flv.js read the name and the array
//! and ignore the rest of the tag).
//!
//! When a segment has more key frames than slots, the index keeps every second one (then
//! every fourth, ...) so that it still spans the whole file: seeking stays possible, landing
//! up to that many GOPs before the target. The slots come from the template's `interval`
//! and the key frames per second of the previous segment (2 per second before there is
//! one), with half again as many for margin.
//!
//! # Crash recovery
//!
//! [`scan`] walks the tags from the start, checking each PreviousTagSize against its tag,
//! and stops at the first tag that is incomplete or does not chain: the file is cut there.
//! [`repair_patch`] then makes the metadata patch from what the scan counted, as the close
//! would have.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use super::amf::{self, Amf};
use super::{read_up_to, FormatError, Patch};
use crate::media::frame::{AudioCodec, StreamParams, TrackParams, VideoCodec};
use crate::media::segment::event::{Fragment, SegmentMeta, SegmentStart};
use crate::util::clockwatch::{BootTime, TimeQuality};

/// File header (9 bytes) and PreviousTagSize0.
pub const HEADER_LEN: u64 = 13;
/// A tag's header.
const TAG_HEADER: u64 = 11;
/// Offset of the onMetaData tag's data: right after the header and its tag header.
pub const META_DATA_AT: u64 = HEADER_LEN + TAG_HEADER;

const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
const TAG_SCRIPT: u8 = 18;
/// FLV's codec ids.
const CODEC_AVC: u8 = 7;
const CODEC_AAC: u8 = 10;
/// The audio tag's first byte for AAC: format 10, "44 kHz", 16 bit, "stereo" (FLV says an
/// AAC tag always carries these; the real values are in the AudioSpecificConfig).
const AAC_FLAGS: u8 = 0xaf;

/// Key frames per second assumed before a segment has shown the stream's own.
const DEFAULT_KEY_RATE: f64 = 2.0;
/// Fewest and most key frame slots reserved.
const MIN_SLOTS: usize = 16;
const MAX_SLOTS: usize = 32_768;
/// Largest onMetaData tag the scanner reads (32 768 slots are 590 kB).
const MAX_META_BYTES: u32 = 1 << 20;
/// Largest tag data size FLV can express.
const MAX_TAG_DATA: usize = 0xff_ffff;

/// Why an FLV cannot hold a stream with this video and audio, if it cannot.
pub fn refusal(video: Option<VideoCodec>, audio: Option<AudioCodec>) -> Option<String> {
    if video == Some(VideoCodec::H265) {
        return Some(
            "FLV cannot hold H.265 here: that needs Enhanced FLV, which the ffmpeg 5.1 of the \
             target boards cannot read, so no independent reader can check the files; \
             record H.265 as fmp4 or mp4"
                .into(),
        );
    }
    if audio == Some(AudioCodec::Opus) {
        return Some(
            "FLV holds AAC audio, and this stream's audio is Opus (Enhanced FLV again, \
             which the ffmpeg 5.1 of the target boards cannot read); record it as fmp4 or mp4"
                .into(),
        );
    }
    None
}

/// How many key frames the index of a segment of `interval` has room for, given the key
/// frames per second seen so far (`None`: none yet).
pub fn index_slots(interval: Duration, key_rate: Option<f64>) -> usize {
    let rate = key_rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .unwrap_or(DEFAULT_KEY_RATE);
    let want = (interval.as_secs_f64() * rate * 1.5).ceil() + 8.0;
    (want.min(MAX_SLOTS as f64) as usize).clamp(MIN_SLOTS, MAX_SLOTS)
}

/// The values of an onMetaData tag.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// Seconds.
    pub duration: f64,
    pub filesize: f64,
    /// width, height, frames per second.
    pub video: Option<(f64, f64, f64)>,
    /// Sample rate, stereo.
    pub audio: Option<(f64, bool)>,
    /// `(seconds, byte offset of the tag)` per indexed key frame; `None`: no index (no
    /// video).
    pub keyframes: Option<Vec<(f64, f64)>>,
    /// Our identity, if the file is ours.
    pub segment: Option<SegmentMeta>,
}

impl Metadata {
    /// The script tag's data: the name, the ECMA array, then `Number(0)` values up to
    /// exactly `size` bytes. `None` if it does not fit, or the room left is not a whole
    /// number of values (9 bytes each).
    pub fn encode(&self, size: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(size);
        self.encode_unpadded(&mut out);
        let room = size.checked_sub(out.len())?;
        if room % 9 != 0 {
            return None;
        }
        for _ in 0..room / 9 {
            out.extend_from_slice(&[0; 9]);
        }
        Some(out)
    }

    /// [`Metadata::encode`] with the index thinned until it fits: every second entry is
    /// dropped (the first kept) as often as needed. `None` if even no index does not fit.
    pub fn encode_fitting(&self, size: usize) -> Option<Vec<u8>> {
        let mut m = self.clone();
        loop {
            if let Some(b) = m.encode(size) {
                return Some(b);
            }
            match &mut m.keyframes {
                Some(k) if !k.is_empty() => {
                    let kept: Vec<(f64, f64)> = k.iter().copied().step_by(2).collect();
                    *k = if kept.len() == k.len() {
                        Vec::new()
                    } else {
                        kept
                    };
                }
                _ => return None,
            }
        }
    }

    /// Size of the data with `slots` index entries (the reserve).
    fn reserve(&self, slots: usize) -> usize {
        let mut m = self.clone();
        if m.keyframes.is_some() {
            m.keyframes = Some(vec![(0.0, 0.0); slots]);
        }
        let mut out = Vec::new();
        m.encode_unpadded(&mut out);
        out.len()
    }

    fn encode_unpadded(&self, out: &mut Vec<u8>) {
        amf::encode(&Amf::string("onMetaData"), out);
        let mut props: Vec<(String, Amf)> = vec![
            ("duration".into(), Amf::Number(self.duration)),
            ("filesize".into(), Amf::Number(self.filesize)),
        ];
        if let Some((w, h, fps)) = self.video {
            props.push(("width".into(), Amf::Number(w)));
            props.push(("height".into(), Amf::Number(h)));
            props.push(("framerate".into(), Amf::Number(fps)));
            props.push(("videocodecid".into(), Amf::Number(f64::from(CODEC_AVC))));
        }
        if let Some((rate, stereo)) = self.audio {
            props.push(("audiocodecid".into(), Amf::Number(f64::from(CODEC_AAC))));
            props.push(("audiosamplerate".into(), Amf::Number(rate)));
            props.push(("audiosamplesize".into(), Amf::Number(16.0)));
            props.push(("stereo".into(), Amf::Boolean(stereo)));
        }
        props.push(("hasVideo".into(), Amf::Boolean(self.video.is_some())));
        props.push(("hasAudio".into(), Amf::Boolean(self.audio.is_some())));
        props.push(("encoder".into(), Amf::string("edgerec")));
        if let Some(k) = &self.keyframes {
            let times = k.iter().map(|e| Amf::Number(e.0)).collect();
            let pos = k.iter().map(|e| Amf::Number(e.1)).collect();
            props.push((
                "keyframes".into(),
                Amf::object([
                    ("times", Amf::StrictArray(times)),
                    ("filepositions", Amf::StrictArray(pos)),
                ]),
            ));
        }
        if let Some(m) = &self.segment {
            let formats = m.formats.iter().map(|f| Amf::string(f.name())).collect();
            let mut fields = vec![
                ("device", Amf::string(&m.device)),
                ("app", Amf::string(&m.app)),
                ("stream", Amf::string(&m.stream)),
                ("seq", Amf::Number(m.seq as f64)),
                ("start_ms", Amf::Number(m.start_ms as f64)),
                ("formats", Amf::StrictArray(formats)),
            ];
            if let Some(q) = m.time_quality {
                fields.push(("time_quality", Amf::string(q.as_str())));
            }
            if let Some(b) = &m.boot {
                fields.push((
                    "boot",
                    Amf::object([
                        ("id", Amf::string(&b.id)),
                        ("ms", Amf::Number(b.ms as f64)),
                        ("offset_ms", Amf::Number(b.offset_ms as f64)),
                    ]),
                ));
            }
            let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            props.push(("edgerec".into(), Amf::Object(fields)));
        }
        amf::encode_ecma_array(&props, out);
    }

    /// Reads an onMetaData tag's data (`None`: not an onMetaData this module wrote).
    pub fn decode(data: &[u8]) -> Option<Metadata> {
        let values = amf::decode_prefix(data, 2).ok()?;
        let [Amf::String(name), arr] = values.as_slice() else {
            return None;
        };
        if name != "onMetaData" {
            return None;
        }
        let num = |k: &str| arr.get(k).and_then(Amf::as_number);
        let flag = |k: &str| matches!(arr.get(k), Some(Amf::Boolean(true)));
        let video = flag("hasVideo").then(|| {
            (
                num("width").unwrap_or(0.0),
                num("height").unwrap_or(0.0),
                num("framerate").unwrap_or(0.0),
            )
        });
        let audio =
            flag("hasAudio").then(|| (num("audiosamplerate").unwrap_or(0.0), flag("stereo")));
        let numbers = |v: Option<&Amf>| -> Vec<f64> {
            match v {
                Some(Amf::StrictArray(items)) => items.iter().filter_map(Amf::as_number).collect(),
                _ => Vec::new(),
            }
        };
        let keyframes = arr.get("keyframes").map(|k| {
            let t = numbers(k.get("times"));
            let p = numbers(k.get("filepositions"));
            t.into_iter().zip(p).collect()
        });
        let segment = arr.get("edgerec").and_then(|e| {
            let s = |k: &str| e.get(k).and_then(Amf::as_str).map(str::to_owned);
            let n = |k: &str| e.get(k).and_then(Amf::as_number);
            let formats = match e.get("formats") {
                Some(Amf::StrictArray(items)) => items
                    .iter()
                    .filter_map(|f| f.as_str().and_then(|f| super::Format::parse(f).ok()))
                    .collect(),
                _ => Vec::new(),
            };
            let time_quality = s("time_quality").and_then(|q| match q.as_str() {
                "synced" => Some(TimeQuality::Synced),
                "unsynced" => Some(TimeQuality::Unsynced),
                "corrected" => Some(TimeQuality::Corrected),
                _ => None,
            });
            let boot = e.get("boot").and_then(|b| {
                Some(BootTime {
                    id: b.get("id").and_then(Amf::as_str)?.to_owned(),
                    ms: b.get("ms").and_then(Amf::as_number)? as i64,
                    offset_ms: b.get("offset_ms").and_then(Amf::as_number)? as i64,
                })
            });
            Some(SegmentMeta {
                device: s("device")?,
                app: s("app")?,
                stream: s("stream")?,
                seq: n("seq")? as u64,
                start_ms: n("start_ms")? as i64,
                formats,
                time_quality,
                boot,
            })
        });
        Some(Metadata {
            duration: num("duration").unwrap_or(0.0),
            filesize: num("filesize").unwrap_or(0.0),
            video,
            audio,
            keyframes,
            segment,
        })
    }
}

/// Appends a tag: header, `data`, PreviousTagSize.
fn put_tag(out: &mut Vec<u8>, kind: u8, ts_ms: u32, head: &[u8], body: &[u8]) {
    let len = head.len() + body.len();
    out.push(kind);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ts_ms.to_be_bytes()[1..]);
    out.push((ts_ms >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(head);
    out.extend_from_slice(body);
    out.extend_from_slice(&((TAG_HEADER as usize + len) as u32).to_be_bytes());
}

/// `ticks` of a `timescale` clock in milliseconds (rounded down).
fn ms(ticks: i128, timescale: u32) -> i128 {
    (ticks * 1000).div_euclid(i128::from(timescale.max(1)))
}

/// The writer of one stream's FLV files, one segment at a time. It remembers the key frame
/// rate across segments to size the next index.
#[derive(Debug)]
pub struct FlvEncoder {
    interval: Duration,
    key_rate: Option<f64>,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    /// (track index, timescale) of the video and audio tracks written.
    video: Option<(usize, u32)>,
    audio: Option<(usize, u32)>,
    meta: Metadata,
    /// Data size of the onMetaData tag.
    meta_size: usize,
    slots: usize,
    /// Bytes produced so far: the offset of the next tag.
    pos: u64,
    /// `(ms, tag offset)` of every `stride`-th key frame.
    keyframes: Vec<(u32, u64)>,
    stride: u64,
    keys_seen: u64,
    video_frames: u64,
    /// End of the last sample written, per kind, in ms.
    video_end: u64,
    audio_end: u64,
}

impl FlvEncoder {
    /// The writer for segments of about `interval`.
    pub fn new(interval: Duration) -> FlvEncoder {
        FlvEncoder {
            interval,
            key_rate: None,
            open: None,
        }
    }

    /// The first bytes of a segment's file: header, the onMetaData tag at its reserved size
    /// and the sequence headers. Refuses (with the reason) a stream FLV cannot hold.
    pub fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        let params: &StreamParams = &start.params;
        let video = params.tracks.iter().enumerate().find_map(|(i, t)| match t {
            TrackParams::Video(v) => Some((i, v)),
            TrackParams::Audio(_) => None,
        });
        let audio = params.tracks.iter().enumerate().find_map(|(i, t)| match t {
            TrackParams::Audio(a) => Some((i, a)),
            TrackParams::Video(_) => None,
        });
        if let Some(reason) = refusal(video.map(|v| v.1.codec), audio.map(|a| a.1.codec)) {
            return Err(FormatError::Refused { reason });
        }
        if video.is_none() && audio.is_none() {
            return Err(FormatError::Refused {
                reason: "the stream has no track FLV can hold".into(),
            });
        }
        let meta = Metadata {
            duration: 0.0,
            filesize: 0.0,
            video: video.map(|(_, v)| (f64::from(v.width), f64::from(v.height), 0.0)),
            audio: audio.map(|(_, a)| (f64::from(a.sample_rate), a.channels >= 2)),
            keyframes: video.map(|_| Vec::new()),
            segment: Some(start.meta.clone()),
        };
        let slots = if video.is_some() {
            index_slots(self.interval, self.key_rate)
        } else {
            0
        };
        let meta_size = meta.reserve(slots);
        let mut out = Vec::with_capacity(meta_size + 256);
        out.extend_from_slice(b"FLV\x01");
        out.push(u8::from(audio.is_some()) << 2 | u8::from(video.is_some()));
        out.extend_from_slice(&9u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let data = meta.encode(meta_size).ok_or_else(|| FormatError::Config {
            track: 0,
            reason: "the FLV metadata does not fit its own reserve".into(),
        })?;
        put_tag(&mut out, TAG_SCRIPT, 0, &[], &data);
        if let Some((i, v)) = video {
            if v.config.len() > MAX_TAG_DATA - 5 {
                return Err(FormatError::Config {
                    track: i,
                    reason: "avcC too large for an FLV tag".into(),
                });
            }
            put_tag(
                &mut out,
                TAG_VIDEO,
                0,
                &[0x10 | CODEC_AVC, 0, 0, 0, 0],
                &v.config,
            );
        }
        if let Some((i, a)) = audio {
            if a.config.len() > MAX_TAG_DATA - 2 {
                return Err(FormatError::Config {
                    track: i,
                    reason: "AudioSpecificConfig too large for an FLV tag".into(),
                });
            }
            put_tag(&mut out, TAG_AUDIO, 0, &[AAC_FLAGS, 0], &a.config);
        }
        self.open = Some(Open {
            video: video.map(|(i, v)| (i, v.timescale)),
            audio: audio.map(|(i, a)| (i, a.timescale)),
            meta,
            meta_size,
            slots,
            pos: out.len() as u64,
            keyframes: Vec::new(),
            stride: 1,
            keys_seen: 0,
            video_frames: 0,
            video_end: 0,
            audio_end: 0,
        });
        Ok(out)
    }

    /// The tags of one fragment, in decode-time order (empty when it has no sample of the
    /// tracks written).
    pub fn fragment(&mut self, frag: &Fragment) -> Result<Vec<u8>, FormatError> {
        let Some(open) = &mut self.open else {
            return Ok(Vec::new());
        };
        // (ms, is video, run index, sample index, cts ms)
        let mut order: Vec<(i128, bool, usize, usize, i32)> = Vec::new();
        for (r, run) in frag.runs.iter().enumerate() {
            let (video, ts) = match (open.video, open.audio) {
                (Some((i, ts)), _) if i == run.track => (true, ts),
                (_, Some((i, ts))) if i == run.track => (false, ts),
                _ => continue,
            };
            let mut dts = i128::from(run.base_decode_time);
            for (s, sample) in run.samples.iter().enumerate() {
                let at = ms(dts, ts);
                let cts = (ms(dts + i128::from(sample.cts_offset), ts) - at)
                    .clamp(-0x80_0000, 0x7f_ffff) as i32;
                order.push((at, video, r, s, cts));
                dts += i128::from(sample.duration);
                let end = ms(dts, ts).max(0) as u64;
                if video {
                    open.video_end = open.video_end.max(end);
                } else {
                    open.audio_end = open.audio_end.max(end);
                }
            }
        }
        // Stable: at equal times, runs keep their track order.
        order.sort_by_key(|o| o.0);
        let bytes: usize = order
            .iter()
            .map(|o| frag.runs[o.2].samples[o.3].data.len() + 20)
            .sum();
        let mut out = Vec::with_capacity(bytes);
        for (at, video, r, s, cts) in order {
            let sample = &frag.runs[r].samples[s];
            if sample.data.len() > MAX_TAG_DATA - 5 {
                return Err(FormatError::Config {
                    track: frag.runs[r].track,
                    reason: format!(
                        "a {}-byte sample is too large for an FLV tag",
                        sample.data.len()
                    ),
                });
            }
            let ts_ms = at.clamp(0, i128::from(u32::MAX)) as u32;
            let tag_at = open.pos + out.len() as u64;
            if video {
                let kind = if sample.keyframe { 0x10 } else { 0x20 };
                let c = cts.to_be_bytes();
                put_tag(
                    &mut out,
                    TAG_VIDEO,
                    ts_ms,
                    &[kind | CODEC_AVC, 1, c[1], c[2], c[3]],
                    &sample.data,
                );
                open.video_frames += 1;
                if sample.keyframe {
                    open.add_keyframe(ts_ms, tag_at);
                }
            } else {
                put_tag(&mut out, TAG_AUDIO, ts_ms, &[AAC_FLAGS, 1], &sample.data);
            }
        }
        open.pos += out.len() as u64;
        Ok(out)
    }

    /// The final onMetaData, to write over the reserved one at its offset, and the end of
    /// the segment. `None` when no segment is open.
    pub fn finish(&mut self) -> Option<Patch> {
        let open = self.open.take()?;
        let end_ms = if open.video.is_some() {
            open.video_end
        } else {
            open.audio_end
        };
        if open.video.is_some() && end_ms > 0 {
            self.key_rate = Some(open.keys_seen as f64 * 1000.0 / end_ms as f64);
        }
        let mut meta = open.meta;
        meta.duration = end_ms as f64 / 1000.0;
        meta.filesize = open.pos as f64;
        if let Some(v) = &mut meta.video {
            v.2 = frame_rate(open.video_frames, end_ms);
        }
        if meta.keyframes.is_some() {
            meta.keyframes = Some(
                open.keyframes
                    .iter()
                    .map(|&(t, p)| (f64::from(t) / 1000.0, p as f64))
                    .collect(),
            );
        }
        let bytes = meta.encode_fitting(open.meta_size)?;
        Some(Patch {
            offset: META_DATA_AT,
            bytes,
        })
    }
}

impl Open {
    /// Index a key frame, keeping at most `slots` entries: past that, every second entry
    /// goes and only every `stride`-th key frame is added from then on.
    fn add_keyframe(&mut self, ts_ms: u32, pos: u64) {
        self.keys_seen += 1;
        if (self.keys_seen - 1) % self.stride != 0 {
            return;
        }
        self.keyframes.push((ts_ms, pos));
        if self.keyframes.len() > self.slots {
            let kept: Vec<(u32, u64)> = self.keyframes.iter().copied().step_by(2).collect();
            self.keyframes = kept;
            self.stride *= 2;
        }
    }
}

/// Frames per second, rounded to 1/1000.
fn frame_rate(frames: u64, duration_ms: u64) -> f64 {
    if duration_ms == 0 {
        return 0.0;
    }
    (frames as f64 * 1_000_000.0 / duration_ms as f64).round() / 1000.0
}

/// What [`scan`] found in an FLV file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlvScan {
    /// Our identity, from the onMetaData tag.
    pub meta: Option<SegmentMeta>,
    /// End of the last complete tag and its PreviousTagSize (the header's end when there is
    /// none; 0 when the header itself is torn). Everything after it is cut off.
    pub complete_end: u64,
    /// Complete audio and video frame tags (sequence headers and script data not counted).
    pub frames: u64,
    pub video_frames: u64,
    /// Media duration up to `complete_end`: the video's (else the audio's) last timestamp
    /// plus the interval before it, in milliseconds.
    pub duration_ms: u64,
    /// `(ms, tag offset)` of every complete video key frame tag.
    pub keyframes: Vec<(u32, u64)>,
    /// The first tag's data when it is an onMetaData: its offset and bytes.
    pub metadata: Option<(u64, Vec<u8>)>,
    pub file_len: u64,
}

/// Last two timestamps of a kind of tag: the duration is the last plus the gap before it.
#[derive(Default)]
struct Clock {
    last: Option<u32>,
    gap: u32,
}

impl Clock {
    fn tick(&mut self, ts: u32) {
        if let Some(l) = self.last {
            self.gap = ts.saturating_sub(l);
        }
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
    }

    fn end(&self) -> Option<u64> {
        self.last.map(|l| u64::from(l) + u64::from(self.gap))
    }
}

/// Scans an FLV file: follows the tags from the header, each checked against its
/// PreviousTagSize, until one is incomplete or does not chain.
///
/// Errors only when reading fails or the file is not an FLV (no `FLV` signature); a torn
/// file is a normal result.
pub fn scan<R: Read + Seek>(mut r: R) -> Result<FlvScan, FormatError> {
    let io = |offset: u64| move |source| FormatError::Io { offset, source };
    let file_len = r.seek(SeekFrom::End(0)).map_err(io(0))?;
    let mut out = FlvScan {
        file_len,
        ..FlvScan::default()
    };
    r.seek(SeekFrom::Start(0)).map_err(io(0))?;
    let mut head = [0u8; HEADER_LEN as usize];
    let got = read_up_to(&mut r, &mut head).map_err(io(0))?;
    if got < 3 || &head[..3] != b"FLV" {
        return Err(FormatError::Malformed {
            offset: 0,
            reason: "no FLV signature".into(),
        });
    }
    if got < head.len() {
        return Ok(out);
    }
    let data_offset = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    if data_offset != 9 {
        return Err(FormatError::Malformed {
            offset: 5,
            reason: format!("an FLV header of {data_offset} bytes (not one edgerec writes)"),
        });
    }
    let mut at = HEADER_LEN;
    out.complete_end = at;
    let (mut video, mut audio) = (Clock::default(), Clock::default());
    loop {
        let mut th = [0u8; TAG_HEADER as usize + 5];
        if at + TAG_HEADER + 4 > file_len {
            break;
        }
        r.seek(SeekFrom::Start(at)).map_err(io(at))?;
        let got = read_up_to(&mut r, &mut th).map_err(io(at))?;
        let kind = th[0] & 0x1f;
        let size = u32::from_be_bytes([0, th[1], th[2], th[3]]);
        let ts = u32::from_be_bytes([th[7], th[4], th[5], th[6]]);
        let end = at + TAG_HEADER + u64::from(size) + 4;
        if end > file_len || !matches!(kind, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
            break;
        }
        let mut pts = [0u8; 4];
        r.seek(SeekFrom::Start(end - 4)).map_err(io(end - 4))?;
        r.read_exact(&mut pts).map_err(io(end - 4))?;
        if u32::from_be_bytes(pts) != TAG_HEADER as u32 + size {
            break;
        }
        let body_end = got.min(TAG_HEADER as usize + size as usize);
        let body = &th[TAG_HEADER as usize..body_end.max(TAG_HEADER as usize)];
        match kind {
            TAG_SCRIPT if at == HEADER_LEN && size <= MAX_META_BYTES => {
                let mut data = vec![0u8; size as usize];
                let from = at + TAG_HEADER;
                r.seek(SeekFrom::Start(from)).map_err(io(from))?;
                r.read_exact(&mut data).map_err(io(from))?;
                if let Some(m) = Metadata::decode(&data) {
                    out.meta = m.segment;
                    out.metadata = Some((from, data));
                }
            }
            TAG_VIDEO if body.len() >= 2 && body[1] == 1 => {
                out.frames += 1;
                out.video_frames += 1;
                video.tick(ts);
                if body[0] >> 4 == 1 {
                    out.keyframes.push((ts, at));
                }
            }
            TAG_AUDIO if body.len() >= 2 && (body[0] >> 4 != CODEC_AAC || body[1] == 1) => {
                out.frames += 1;
                audio.tick(ts);
            }
            _ => {}
        }
        at = end;
        out.complete_end = end;
    }
    out.duration_ms = video.end().or(audio.end()).unwrap_or(0);
    Ok(out)
}

/// The onMetaData patch for a file cut back to `scan.complete_end`: the duration, size,
/// frame rate and key frame index of what is left, at the tag's own size. `None` when the
/// file has no onMetaData of ours.
pub fn repair_patch(scan: &FlvScan) -> Option<Patch> {
    let (offset, data) = scan.metadata.as_ref()?;
    let mut meta = Metadata::decode(data)?;
    meta.duration = scan.duration_ms as f64 / 1000.0;
    meta.filesize = scan.complete_end as f64;
    if let Some(v) = &mut meta.video {
        v.2 = frame_rate(scan.video_frames, scan.duration_ms);
    }
    if meta.keyframes.is_some() {
        meta.keyframes = Some(
            scan.keyframes
                .iter()
                .map(|&(t, p)| (f64::from(t) / 1000.0, p as f64))
                .collect(),
        );
    }
    Some(Patch {
        offset: *offset,
        bytes: meta.encode_fitting(data.len())?,
    })
}

#[cfg(all(test, feature = "process-tests"))]
#[path = "flv_tests.rs"]
mod ffmpeg_tests;

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::media::format::Format;
    use crate::media::frame::{AudioParams, VideoParams};
    use crate::media::segment::event::{Sample, TrackRun};

    fn meta() -> SegmentMeta {
        SegmentMeta {
            device: "pi-garage".into(),
            app: "live".into(),
            stream: "front door".into(),
            seq: 42,
            start_ms: 1_700_000_000_123,
            formats: vec![Format::Flv],
            time_quality: Some(TimeQuality::Corrected),
            boot: Some(BootTime {
                id: "6f1c".into(),
                ms: 98_765,
                offset_ms: 1_699_999_901_358,
            }),
        }
    }

    fn start(video: VideoCodec, audio: Option<AudioCodec>) -> SegmentStart {
        let mut tracks = vec![TrackParams::Video(VideoParams {
            codec: video,
            width: 640,
            height: 480,
            config: Bytes::from_static(&[
                1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x64, 1, 0, 1, 0x68,
            ]),
            rfc6381: String::new(),
            timescale: 90_000,
        })];
        if let Some(codec) = audio {
            tracks.push(TrackParams::Audio(AudioParams {
                codec,
                sample_rate: 48_000,
                channels: 2,
                config: Bytes::from_static(&[0x11, 0x90]),
                timescale: 48_000,
                frame_samples: 1024,
            }));
        }
        SegmentStart {
            meta: meta(),
            params: Arc::new(StreamParams { tracks }),
            base_dts: vec![0, 0],
        }
    }

    fn sample(len: usize, keyframe: bool, duration: u32) -> Sample {
        Sample {
            duration,
            cts_offset: 0,
            keyframe,
            data: Bytes::from(vec![0x5a; len]),
        }
    }

    /// `secs` one-second fragments: 25 fps video with a key frame every `gop` frames, and
    /// 48 kHz AAC frames.
    fn fragments(secs: u32, gop: u32) -> Vec<Fragment> {
        (0..secs)
            .map(|k| {
                let video = (0..25)
                    .map(|i| sample(300 + i as usize, (k * 25 + i) % gop == 0, 3600))
                    .collect();
                let audio_from = u64::from(k) * 48_000 / 1024;
                let audio_to = u64::from(k + 1) * 48_000 / 1024;
                let audio = (audio_from..audio_to)
                    .map(|_| sample(200, true, 1024))
                    .collect();
                Fragment {
                    sequence: k + 1,
                    runs: vec![
                        TrackRun {
                            track: 0,
                            base_decode_time: u64::from(k) * 90_000,
                            samples: video,
                        },
                        TrackRun {
                            track: 1,
                            base_decode_time: audio_from * 1024,
                            samples: audio,
                        },
                    ],
                }
            })
            .collect()
    }

    /// A whole file as written and closed: init, fragments, the patch applied.
    fn file(enc: &mut FlvEncoder, start: &SegmentStart, frags: &[Fragment]) -> Vec<u8> {
        let mut bytes = enc.init(start).unwrap();
        for f in frags {
            bytes.extend(enc.fragment(f).unwrap());
        }
        let p = enc.finish().unwrap();
        bytes[p.offset as usize..p.offset as usize + p.bytes.len()].copy_from_slice(&p.bytes);
        bytes
    }

    #[test]
    fn the_index_is_sized_from_the_interval_and_the_key_frame_rate() {
        let minute = Duration::from_secs(60);
        assert_eq!(index_slots(minute, None), 188);
        assert_eq!(index_slots(minute, Some(0.5)), 53);
        assert_eq!(index_slots(Duration::from_secs(1), Some(0.1)), MIN_SLOTS);
        assert_eq!(
            index_slots(Duration::from_secs(7200), Some(30.0)),
            MAX_SLOTS
        );
        assert_eq!(index_slots(minute, Some(f64::NAN)), 188);
    }

    #[test]
    fn metadata_round_trips_at_its_reserved_size_and_thins_when_full() {
        let mut m = Metadata {
            duration: 12.5,
            filesize: 123_456.0,
            video: Some((640.0, 480.0, 25.0)),
            audio: Some((48_000.0, true)),
            keyframes: Some(vec![]),
            segment: Some(meta()),
        };
        let size = m.reserve(10);
        let empty = m.encode(size).unwrap();
        assert_eq!(empty.len(), size);
        assert_eq!(Metadata::decode(&empty), Some(m.clone()));
        m.keyframes = Some(
            (0..10)
                .map(|i| (f64::from(i), f64::from(i) * 1000.0))
                .collect(),
        );
        let full = m.encode(size).unwrap();
        assert_eq!(full.len(), size);
        assert_eq!(Metadata::decode(&full), Some(m.clone()));
        // One too many: every second entry goes, the first stays.
        m.keyframes = Some((0..11).map(|i| (f64::from(i), 0.0)).collect());
        assert!(m.encode(size).is_none());
        let thinned = Metadata::decode(&m.encode_fitting(size).unwrap()).unwrap();
        let times: Vec<f64> = thinned.keyframes.unwrap().iter().map(|k| k.0).collect();
        assert_eq!(times, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn a_written_file_chains_its_tags_and_indexes_its_key_frames() {
        let st = start(VideoCodec::H264, Some(AudioCodec::Aac));
        let mut enc = FlvEncoder::new(Duration::from_secs(4));
        let frags = fragments(4, 25);
        let bytes = file(&mut enc, &st, &frags);
        assert_eq!(&bytes[..5], b"FLV\x01\x05");
        let s = scan(Cursor::new(&bytes)).unwrap();
        assert_eq!(s.complete_end, bytes.len() as u64);
        assert_eq!(s.meta, Some(meta()));
        assert_eq!(s.video_frames, 100);
        assert_eq!(s.frames, 100 + 4 * 48_000 / 1024);
        assert_eq!(s.keyframes.len(), 4);
        let m = Metadata::decode(&s.metadata.as_ref().unwrap().1).unwrap();
        assert_eq!(m.duration, 4.0);
        assert_eq!(m.filesize, bytes.len() as f64);
        assert_eq!(m.video, Some((640.0, 480.0, 25.0)));
        assert_eq!(m.audio, Some((48_000.0, true)));
        let index: Vec<(f64, f64)> = s
            .keyframes
            .iter()
            .map(|&(t, p)| (f64::from(t) / 1000.0, p as f64))
            .collect();
        assert_eq!(m.keyframes, Some(index));
        for &(_, at) in &s.keyframes {
            let at = at as usize;
            assert_eq!(bytes[at], TAG_VIDEO);
            assert_eq!(bytes[at + 11], 0x17, "a key frame NALU tag");
            assert_eq!(bytes[at + 12], 1);
        }
        // The repair of a whole file is the close's own patch.
        let p = repair_patch(&s).unwrap();
        assert_eq!(p.bytes, m.encode(p.bytes.len()).unwrap());
    }

    #[test]
    fn more_key_frames_than_slots_keep_an_index_spanning_the_file() {
        let st = start(VideoCodec::H264, Some(AudioCodec::Aac));
        // 16 slots (the minimum) for a 1 s interval; 40 key frames.
        let mut enc = FlvEncoder::new(Duration::from_secs(1));
        let bytes = file(&mut enc, &st, &fragments(8, 5));
        let s = scan(Cursor::new(&bytes)).unwrap();
        assert_eq!(s.keyframes.len(), 40);
        let m = Metadata::decode(&s.metadata.unwrap().1).unwrap();
        let k = m.keyframes.unwrap();
        assert!(
            k.len() <= MIN_SLOTS && k.len() >= MIN_SLOTS / 2,
            "{}",
            k.len()
        );
        assert_eq!(k[0].0, 0.0);
        assert!(k.last().unwrap().0 >= 6.0, "{k:?}");
        let offsets: Vec<u64> = s.keyframes.iter().map(|e| e.1).collect();
        assert!(k.iter().all(|e| offsets.contains(&(e.1 as u64))));
    }

    #[test]
    fn a_torn_file_is_cut_at_a_tag_boundary_and_its_metadata_repaired() {
        let st = start(VideoCodec::H264, Some(AudioCodec::Aac));
        let mut enc = FlvEncoder::new(Duration::from_secs(4));
        let mut bytes = enc.init(&st).unwrap();
        let head = bytes.len();
        for f in fragments(3, 25) {
            bytes.extend(enc.fragment(&f).unwrap());
        }
        let whole = scan(Cursor::new(&bytes)).unwrap();
        let mut ends: Vec<u64> = vec![HEADER_LEN];
        let mut at = HEADER_LEN as usize;
        while at < bytes.len() {
            let size = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            at += 11 + size as usize + 4;
            ends.push(at as u64);
        }
        for cut in (head - 3..bytes.len()).step_by(97) {
            let s = scan(Cursor::new(&bytes[..cut])).unwrap();
            let want = *ends.iter().filter(|e| **e <= cut as u64).max().unwrap();
            assert_eq!(s.complete_end, want, "cut at {cut}");
            assert!(s.frames <= whole.frames);
            let p = repair_patch(&s).unwrap();
            let m = Metadata::decode(&p.bytes).unwrap();
            assert_eq!(m.filesize, want as f64);
            assert_eq!(m.segment, Some(meta()));
            assert_eq!(m.keyframes.unwrap().len(), s.keyframes.len());
        }
        // Garbage after a complete tag is not a tag.
        let mut junk = bytes.clone();
        junk.extend_from_slice(&[9, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 99]);
        assert_eq!(
            scan(Cursor::new(&junk)).unwrap().complete_end,
            bytes.len() as u64
        );
        assert!(scan(Cursor::new(b"not an flv")).is_err());
    }

    #[test]
    fn h265_and_opus_are_refused_with_the_reason() {
        let mut enc = FlvEncoder::new(Duration::from_secs(4));
        for st in [
            start(VideoCodec::H265, Some(AudioCodec::Aac)),
            start(VideoCodec::H264, Some(AudioCodec::Opus)),
        ] {
            match enc.init(&st) {
                Err(FormatError::Refused { reason }) => {
                    assert!(reason.contains("Enhanced FLV"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refusal(Some(VideoCodec::H264), Some(AudioCodec::Aac)).is_none());
    }

    #[test]
    fn audio_only_has_no_index_and_counts_audio_time() {
        let mut st = start(VideoCodec::H264, Some(AudioCodec::Aac));
        let audio = st.params.tracks[1].clone();
        st.params = Arc::new(StreamParams {
            tracks: vec![audio],
        });
        let frags: Vec<Fragment> = fragments(2, 25)
            .into_iter()
            .map(|mut f| {
                f.runs.remove(0);
                f.runs[0].track = 0;
                f
            })
            .collect();
        let mut enc = FlvEncoder::new(Duration::from_secs(4));
        let bytes = file(&mut enc, &st, &frags);
        assert_eq!(bytes[4], 0x04, "audio only");
        let s = scan(Cursor::new(&bytes)).unwrap();
        let m = Metadata::decode(&s.metadata.unwrap().1).unwrap();
        assert_eq!((m.video, m.keyframes), (None, None));
        assert!((m.duration - 2.0).abs() < 0.03, "{}", m.duration);
    }
}
