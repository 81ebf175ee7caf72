//! `record_type=audio`: drop the video tracks of a push and renumber the rest, so that
//! every frame's [`StreamParams`] lists only audio tracks and `Frame::track` indexes them.

use std::sync::Arc;

use crate::media::frame::{Frame, StreamParams, TrackParams};

/// Per-publisher state: the last input params and their audio-only counterpart, so an
/// unchanged stream keeps sharing one `Arc` (a new one means "parameters changed").
#[derive(Debug, Default)]
pub struct AudioOnly {
    last_in: Option<Arc<StreamParams>>,
    out: Option<Arc<StreamParams>>,
    /// Input track index -> output track index (None for video).
    map: Vec<Option<usize>>,
}

impl AudioOnly {
    /// The frame with audio-only params, or `None` for a video frame.
    pub fn map(&mut self, mut frame: Frame) -> Option<Frame> {
        let same = self
            .last_in
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &frame.params) || **p == *frame.params);
        if !same {
            let mut tracks = Vec::new();
            self.map = frame
                .params
                .tracks
                .iter()
                .map(|t| match t {
                    TrackParams::Audio(_) => {
                        tracks.push(t.clone());
                        Some(tracks.len() - 1)
                    }
                    TrackParams::Video(_) => None,
                })
                .collect();
            let out = StreamParams { tracks };
            if self.out.as_deref() != Some(&out) {
                self.out = Some(Arc::new(out));
            }
            self.last_in = Some(frame.params.clone());
        }
        let track = (*self.map.get(frame.track)?)?;
        frame.track = track;
        frame.params = self.out.clone()?;
        frame.keyframe = true;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{AudioCodec, AudioParams, VideoCodec, VideoParams};
    use bytes::Bytes;

    fn params(video_first: bool) -> Arc<StreamParams> {
        let v = TrackParams::Video(VideoParams {
            codec: VideoCodec::H264,
            width: 320,
            height: 240,
            config: Bytes::from_static(b"avcc"),
            rfc6381: "avc1.42c01e".into(),
            timescale: 90_000,
        });
        let a = TrackParams::Audio(AudioParams {
            codec: AudioCodec::Aac,
            sample_rate: 48_000,
            channels: 1,
            config: Bytes::from_static(&[0x11, 0x88]),
            timescale: 48_000,
            frame_samples: 1024,
        });
        let tracks = if video_first { vec![v, a] } else { vec![a, v] };
        Arc::new(StreamParams { tracks })
    }

    fn frame(p: &Arc<StreamParams>, track: usize, dts: i64) -> Frame {
        Frame {
            params: p.clone(),
            track,
            dts,
            pts: dts,
            keyframe: false,
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn video_frames_are_dropped_and_audio_is_renumbered() {
        let p = params(true);
        let mut a = AudioOnly::default();
        assert!(a.map(frame(&p, 0, 0)).is_none());
        let f = a.map(frame(&p, 1, 1024)).unwrap();
        assert_eq!(f.track, 0);
        assert_eq!(f.params.tracks.len(), 1);
        assert!(!f.params.tracks[0].is_video());
        assert!(f.keyframe);
    }

    #[test]
    fn unchanged_params_keep_one_arc_and_a_change_makes_a_new_one() {
        let p = params(true);
        let mut a = AudioOnly::default();
        let f1 = a.map(frame(&p, 1, 0)).unwrap();
        let f2 = a.map(frame(&p, 1, 1024)).unwrap();
        assert!(Arc::ptr_eq(&f1.params, &f2.params));
        // Same audio, different layout: the output params are equal, so still one Arc.
        let q = params(false);
        let f3 = a.map(frame(&q, 0, 2048)).unwrap();
        assert!(Arc::ptr_eq(&f1.params, &f3.params));
        assert!(a.map(frame(&q, 1, 2048)).is_none());
    }

    #[test]
    fn an_out_of_range_track_is_dropped_not_a_panic() {
        let p = params(true);
        let mut a = AudioOnly::default();
        assert!(a.map(frame(&p, 7, 0)).is_none());
    }
}
