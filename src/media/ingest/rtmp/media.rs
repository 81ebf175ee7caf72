//! FLV tags of one published stream -> [`Frame`]s.
//!
//! - Tracks come from sequence headers; the [`StreamParams`] are built when the first coded
//!   frame arrives (publishers send every sequence header first) and rebuilt only when a
//!   header's content changes, so frames share one `Arc` until then.
//! - Video keeps RTMP's millisecond timestamps (timescale 1000); `pts = dts + cts`.
//! - Audio counts samples (timescale = sample rate), so AAC frames get exact 1024-sample
//!   durations instead of 23/24 ms jitter; the count re-syncs to the RTMP timestamp when
//!   they disagree by more than [`AUDIO_RESYNC_MS`].
//! - Nothing goes out before the first video key frame when there is video.
//! - Audio in a codec edgerec cannot record (MP3, G.711, ...) is dropped and reported once
//!   through [`Media::take_warning`]; the video is still recorded. An unsupported video codec
//!   is an error.
//! - An empty sequence header (some encoders send one when they stop) is ignored.
//!
//! Timestamps going backwards are passed on: the segmenter closes the segment there.

use std::sync::Arc;

use bytes::Bytes;

use super::codec::{self, VideoConfig};
use super::flv::{self, AudioTag, VideoTag};
use super::RtmpError;
use crate::media::frame::{AudioParams, Frame, StreamParams, TrackParams};

/// Audio sample counting follows the RTMP timestamp again past this difference.
const AUDIO_RESYNC_MS: i64 = 100;

/// Media state of one publish.
#[derive(Debug, Default)]
pub struct Media {
    video: Option<VideoConfig>,
    audio: Option<AudioParams>,
    /// Current parameters; `None` after a header changed, until the next coded frame.
    params: Option<Arc<StreamParams>>,
    /// Waiting for the first video key frame (set again when video appears).
    waiting_for_key: bool,
    /// Unwrapping of 32-bit RTMP timestamps: last raw value and its 64-bit extension.
    clock: Option<(u32, i64)>,
    /// dts the next audio frame gets if it follows on from the previous one.
    next_audio_dts: Option<i64>,
    /// Unsupported audio seen: reported once.
    audio_ignored: bool,
    warning: Option<String>,
}

impl Media {
    pub fn new() -> Media {
        Media::default()
    }

    /// Something the operator should hear about once (e.g. audio dropped), if any.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Extends a wrapping 32-bit millisecond timestamp; jumps of up to 2^31 ms either way.
    fn unwrap_ts(&mut self, ts: u32) -> i64 {
        let ext = match self.clock {
            None => i64::from(ts),
            Some((last, last_ext)) => last_ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        self.clock = Some((ts, ext));
        ext
    }

    /// Track index of video and audio in the current params.
    fn indices(&self) -> (usize, usize) {
        (0, usize::from(self.video.is_some()))
    }

    fn params(&mut self) -> Arc<StreamParams> {
        if let Some(p) = &self.params {
            return p.clone();
        }
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            tracks.push(TrackParams::Video(v.params.clone()));
        }
        if let Some(a) = &self.audio {
            tracks.push(TrackParams::Audio(a.clone()));
        }
        let p = Arc::new(StreamParams { tracks });
        self.params = Some(p.clone());
        p
    }

    /// A video message body at RTMP time `ts`.
    pub fn video(&mut self, ts: u32, body: &Bytes) -> Result<Option<Frame>, RtmpError> {
        let ts = self.unwrap_ts(ts);
        match flv::parse_video(body)? {
            VideoTag::Ignored => Ok(None),
            VideoTag::SequenceHeader { config, .. } if config.is_empty() => Ok(None),
            VideoTag::SequenceHeader { codec, config } => {
                let c = codec::video_config(codec, &config)?;
                if self.video.as_ref() != Some(&c) {
                    if self.video.is_none() {
                        self.waiting_for_key = true;
                    }
                    self.video = Some(c);
                    self.params = None;
                }
                Ok(None)
            }
            VideoTag::Frame {
                codec,
                keyframe,
                cts,
                data,
            } => {
                let Some(v) = &self.video else {
                    return Ok(None); // no sequence header yet: not decodable
                };
                if v.params.codec != codec {
                    return Err(RtmpError::video(format!(
                        "{codec:?} frame after a {:?} sequence header",
                        v.params.codec
                    )));
                }
                let Some(data) = codec::to_four_byte_lengths(&data, v.nal_length_size)
                    .map_err(RtmpError::video)?
                else {
                    return Ok(None);
                };
                if self.waiting_for_key && !keyframe {
                    return Ok(None);
                }
                self.waiting_for_key = false;
                Ok(Some(Frame {
                    params: self.params(),
                    track: self.indices().0,
                    dts: ts,
                    pts: ts + i64::from(cts),
                    keyframe,
                    data,
                }))
            }
        }
    }

    /// An audio message body at RTMP time `ts`.
    pub fn audio(&mut self, ts: u32, body: &Bytes) -> Result<Option<Frame>, RtmpError> {
        let ts = self.unwrap_ts(ts);
        let tag = match flv::parse_audio(body) {
            Err(e @ RtmpError::UnsupportedCodec { .. }) => {
                if !std::mem::replace(&mut self.audio_ignored, true) {
                    self.warning = Some(format!("audio not recorded: {e}"));
                }
                return Ok(None);
            }
            other => other?,
        };
        match tag {
            None => Ok(None),
            Some(AudioTag::SequenceHeader(asc)) if asc.is_empty() => Ok(None),
            Some(AudioTag::SequenceHeader(asc)) => {
                let a = codec::aac_config(&asc).map_err(|e| RtmpError::audio(e.to_string()))?;
                if self.audio.as_ref() != Some(&a) {
                    self.audio = Some(a);
                    self.params = None;
                    self.next_audio_dts = None;
                }
                Ok(None)
            }
            Some(AudioTag::Frame(data)) => {
                let Some(a) = &self.audio else {
                    return Ok(None);
                };
                let (rate, samples) = (i64::from(a.sample_rate), i64::from(a.frame_samples));
                if data.is_empty() || (self.video.is_some() && self.waiting_for_key) {
                    return Ok(None);
                }
                let from_ts = ts * rate / 1000;
                let dts = match self.next_audio_dts {
                    Some(next) if (next - from_ts).abs() * 1000 <= AUDIO_RESYNC_MS * rate => next,
                    _ => from_ts,
                };
                self.next_audio_dts = Some(dts + samples);
                Ok(Some(Frame {
                    params: self.params(),
                    track: self.indices().1,
                    dts,
                    pts: dts,
                    keyframe: true,
                    data,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0c, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x01, 0x40, 0xf1, 0x42, 0x99, 0x60,
    ];

    pub(crate) fn avc_header() -> Bytes {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x0c, 0xff, 0xe1];
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        Bytes::from(b)
    }

    fn picture(key: bool, cts: u8) -> Bytes {
        let b0 = if key { 0x17 } else { 0x27 };
        Bytes::from(vec![b0, 1, 0, 0, cts, 0, 0, 0, 2, 0x65, 0x88])
    }

    const AAC_HEADER: &[u8] = &[0xaf, 0, 0x12, 0x10];

    #[test]
    fn frames_wait_for_the_first_key_frame_then_share_one_params_arc() {
        let mut m = Media::new();
        assert!(m.video(0, &avc_header()).unwrap().is_none());
        assert!(m
            .audio(0, &Bytes::from_static(AAC_HEADER))
            .unwrap()
            .is_none());
        assert!(m.video(0, &picture(false, 0)).unwrap().is_none());
        assert!(m
            .audio(10, &Bytes::from_static(&[0xaf, 1, 1]))
            .unwrap()
            .is_none());
        let k = m.video(40, &picture(true, 80)).unwrap().unwrap();
        assert!(k.keyframe);
        assert_eq!((k.dts, k.pts, k.track), (40, 120, 0));
        assert_eq!(k.params.tracks.len(), 2);
        let a = m
            .audio(46, &Bytes::from_static(&[0xaf, 1, 1]))
            .unwrap()
            .unwrap();
        assert_eq!(a.track, 1);
        assert_eq!(a.dts, 46 * 44100 / 1000);
        assert!(Arc::ptr_eq(&a.params, &k.params));
        let p = m.video(80, &picture(false, 40)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&p.params, &k.params));
    }

    #[test]
    fn audio_counts_samples_and_resyncs_on_a_gap() {
        let mut m = Media::new();
        m.audio(0, &Bytes::from_static(AAC_HEADER)).unwrap();
        let f = |m: &mut Media, ts| m.audio(ts, &Bytes::from_static(&[0xaf, 1, 1])).unwrap();
        assert_eq!(f(&mut m, 1000).unwrap().dts, 44100);
        assert_eq!(f(&mut m, 1023).unwrap().dts, 44100 + 1024);
        assert_eq!(f(&mut m, 1046).unwrap().dts, 44100 + 2048);
        assert_eq!(f(&mut m, 5000).unwrap().dts, 5 * 44100);
    }

    #[test]
    fn timestamps_unwrap_past_two_to_the_32_ms() {
        let mut m = Media::new();
        m.video(u32::MAX - 10, &avc_header()).unwrap();
        let a = m.video(u32::MAX - 5, &picture(true, 0)).unwrap().unwrap();
        let b = m.video(20, &picture(false, 0)).unwrap().unwrap();
        assert_eq!(b.dts - a.dts, 26);
    }

    #[test]
    fn changed_sequence_header_gives_new_params() {
        let mut m = Media::new();
        m.video(0, &avc_header()).unwrap();
        let a = m.video(0, &picture(true, 0)).unwrap().unwrap();
        m.video(30, &avc_header()).unwrap(); // same content: same params
        let b = m.video(40, &picture(false, 0)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a.params, &b.params));
        m.audio(50, &Bytes::from_static(AAC_HEADER)).unwrap();
        let c = m.video(60, &picture(false, 0)).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a.params, &c.params));
        assert_eq!(c.params.tracks.len(), 2);
    }

    #[test]
    fn audio_only_stream_starts_at_once() {
        let mut m = Media::new();
        m.audio(0, &Bytes::from_static(AAC_HEADER)).unwrap();
        let a = m
            .audio(0, &Bytes::from_static(&[0xaf, 1, 1]))
            .unwrap()
            .unwrap();
        assert_eq!((a.track, a.params.tracks.len()), (0, 1));
    }

    #[test]
    fn unsupported_audio_is_dropped_with_one_warning_and_video_continues() {
        let mut m = Media::new();
        m.video(0, &avc_header()).unwrap();
        let mp3 = Bytes::from_static(&[0x2f, 0xff, 0xfb]);
        assert!(m.audio(0, &mp3).unwrap().is_none());
        assert!(m.take_warning().unwrap().contains("MP3"));
        assert!(m.audio(20, &mp3).unwrap().is_none());
        assert_eq!(m.take_warning(), None);
        let k = m.video(40, &picture(true, 0)).unwrap().unwrap();
        assert_eq!(k.params.tracks.len(), 1);
    }

    #[test]
    fn empty_sequence_headers_are_ignored() {
        let mut m = Media::new();
        assert!(m
            .video(0, &Bytes::from_static(&[0x17, 0, 0, 0, 0]))
            .unwrap()
            .is_none());
        assert!(m
            .audio(0, &Bytes::from_static(&[0xaf, 0]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn corrupt_frame_is_an_error_not_a_frame() {
        let mut m = Media::new();
        m.video(0, &avc_header()).unwrap();
        let bad = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65]);
        assert!(m.video(0, &bad).is_err());
    }
}
