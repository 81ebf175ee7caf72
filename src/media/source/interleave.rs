//! Keeps audio in time order with video that is held back for its decode times.
//!
//! RTP video waits a few frames in [`DtsFromPts`](super::reorder::DtsFromPts) (about 160 ms at
//! 25 fps) while audio could go straight on. The segmenter cuts segments on video key
//! frames in the order frames reach it, so each segment would end with the next segment's
//! first ~160 ms of audio, and the next would start that much audio late (an ffmpeg or
//! GStreamer push recorded 2.2 s of audio beside 2.0 s of video per segment). Held here,
//! audio leaves just before the first video frame whose decode time is not earlier, so both
//! tracks of a segment cover the same time.
//!
//! Bounded: at most [`MAX_HELD`] frames wait; when video stalls (or has not started) the
//! oldest go on regardless. Pure and clock-free.

use std::collections::VecDeque;

use crate::media::frame::Frame;

/// Audio frames held at most: over a second of AAC or Opus, more than any reorder window.
pub const MAX_HELD: usize = 64;

/// Audio waiting for video to reach its time.
#[derive(Debug, Default)]
pub struct Interleave {
    held: VecDeque<Frame>,
}

/// `a` (in timescale `ta`) is before or at `b` (in `tb`).
fn not_after(a: i64, ta: u32, b: i64, tb: u32) -> bool {
    i128::from(a) * i128::from(tb) <= i128::from(b) * i128::from(ta)
}

impl Interleave {
    /// An audio frame: held while its stream has video. Returns the frame to send now, if
    /// any: this one when there is no video, or the oldest held once over the bound.
    pub fn audio(&mut self, frame: Frame) -> Option<Frame> {
        if frame.params.video_track().is_none() {
            return Some(frame);
        }
        self.held.push_back(frame);
        if self.held.len() > MAX_HELD {
            self.held.pop_front()
        } else {
            None
        }
    }

    /// A video frame is about to be sent: the held audio due before it (not after its
    /// decode time), oldest first.
    pub fn before_video(&mut self, video: &Frame) -> Vec<Frame> {
        let tv = video.track_params().timescale();
        let mut out = Vec::new();
        while let Some(a) = self.held.front() {
            if !not_after(a.dts, a.track_params().timescale(), video.dts, tv) {
                break;
            }
            out.extend(self.held.pop_front());
        }
        out
    }

    /// The end of the session: everything held, oldest first.
    pub fn drain(&mut self) -> Option<Frame> {
        self.held.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::media::frame::{
        AudioCodec, AudioParams, StreamParams, TrackParams, VideoCodec, VideoParams,
    };

    fn params(video: bool) -> Arc<StreamParams> {
        let audio = TrackParams::Audio(AudioParams {
            codec: AudioCodec::Aac,
            sample_rate: 48_000,
            channels: 1,
            config: Bytes::from_static(&[0x11, 0x88]),
            timescale: 48_000,
            frame_samples: 1024,
        });
        let mut tracks = vec![audio];
        if video {
            tracks.insert(
                0,
                TrackParams::Video(VideoParams {
                    codec: VideoCodec::H264,
                    width: 320,
                    height: 240,
                    config: Bytes::new(),
                    rfc6381: "avc1.42c00d".into(),
                    timescale: 90_000,
                }),
            );
        }
        Arc::new(StreamParams { tracks })
    }

    fn frame(params: &Arc<StreamParams>, track: usize, dts: i64) -> Frame {
        Frame {
            params: params.clone(),
            track,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::new(),
        }
    }

    #[test]
    fn audio_waits_for_the_video_frame_of_its_time() {
        let p = params(true);
        let mut i = Interleave::default();
        // 0.2 s of audio (1024-sample frames at 48 kHz) before the video of 0 s and 0.04 s.
        for n in 0..10 {
            assert!(i.audio(frame(&p, 1, n * 1024)).is_none());
        }
        assert_eq!(i.before_video(&frame(&p, 0, 0)).len(), 1, "audio at 0 s");
        let due = i.before_video(&frame(&p, 0, 3600));
        let dts: Vec<i64> = due.iter().map(|f| f.dts).collect();
        assert_eq!(dts, [1024], "audio at 0.021 s, not 0.043 s");
        let mut rest = Vec::new();
        while let Some(f) = i.drain() {
            rest.push(f.dts);
        }
        assert_eq!(rest, (2..10).map(|n| n * 1024).collect::<Vec<_>>());
    }

    #[test]
    fn audio_only_streams_pass_and_a_stalled_video_holds_a_bounded_amount() {
        let a = params(false);
        let mut i = Interleave::default();
        assert_eq!(i.audio(frame(&a, 0, 0)).map(|f| f.dts), Some(0));
        let av = params(true);
        let mut out = 0;
        for n in 0..1000 {
            out += usize::from(i.audio(frame(&av, 1, n * 1024)).is_some());
        }
        assert_eq!(out, 1000 - MAX_HELD);
        assert_eq!(i.held.len(), MAX_HELD);
    }
}
