//! Which of a camera's streams an RTSP pull records, and why the others are not; retina's
//! parameters in our types. Pure (no network), so the choices are unit-tested.
//!
//! Video parameters are not taken from retina as they are: the parameter sets are read out
//! of retina's `avcC`/`hvcC` and the record, size and codec string rebuilt by the codec
//! toolkit ([`crate::media::codec`]), so a pulled stream's sample entry is the one every
//! other path writes (retina's `avcC` lacks the High-profile trailer).
//!
//! Recorded: the first H.264/H.265 video stream and the first `mpeg4-generic` AAC stream.
//! Everything else is skipped with a reason that `edgerec status` shows and the recorder
//! logs once per stream. In particular retina (0.4) has no MP4A-LATM depacketizer: a
//! camera's LATM AAC is skipped and its video recorded; the RTSP push server, which has
//! its own depacketizers, records LATM.

use bytes::Bytes;
use retina::codec::{ParametersRef, VideoParametersCodec};
use thiserror::Error;

use crate::media::codec::{avc, hevc, CodecError};
use crate::media::frame::{AudioCodec, AudioParams, TrackParams};

/// Why retina's parameters of a set-up stream cannot be recorded.
#[derive(Debug, Error)]
pub enum TrackParamsError {
    #[error("unexpected video parameters {0}")]
    UnexpectedVideo(String),
    #[error("video parameters: {0}")]
    Codec(#[from] CodecError),
    #[error("a metadata stream was set up as media")]
    Metadata,
}

/// One stream a camera's DESCRIBE offers, as retina sees it.
#[derive(Clone, Copy, Debug)]
pub struct Offered<'a> {
    /// `video`, `audio`, `application`…
    pub media: &'a str,
    /// retina's lower-case encoding name, e.g. `h264`, `mpeg4-generic`, `mp4a-latm`.
    pub encoding: &'a str,
    /// Whether retina could read the stream's parameters from the SDP.
    pub has_parameters: bool,
}

/// The streams an RTSP pull sets up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Choice {
    pub video: Option<usize>,
    pub audio: Option<usize>,
    /// `media/encoding (reason)` of every other stream.
    pub skipped: Vec<String>,
    /// `media/encoding` of every stream, for the error when nothing is recordable.
    pub offered: Vec<String>,
}

impl Choice {
    /// retina stream indexes to set up: the video first.
    pub fn streams(&self) -> Vec<usize> {
        self.video.into_iter().chain(self.audio).collect()
    }
}

/// Chooses the streams to record.
pub fn choose(streams: &[Offered<'_>]) -> Choice {
    let mut c = Choice::default();
    for (i, s) in streams.iter().enumerate() {
        let name = format!("{}/{}", s.media, s.encoding);
        let reason = match (s.media, s.encoding) {
            ("video", "h264" | "h265") if c.video.is_none() => {
                c.video = Some(i);
                None
            }
            ("video", "h264" | "h265") => Some("a second video stream; the first is recorded"),
            ("audio", "mpeg4-generic") if !s.has_parameters => {
                Some("its SDP gives no AAC configuration edgerec can use")
            }
            ("audio", "mpeg4-generic") if c.audio.is_none() => {
                c.audio = Some(i);
                None
            }
            ("audio", "mpeg4-generic") => Some("a second audio stream; the first is recorded"),
            ("audio", "mp4a-latm") => Some(
                "AAC as MP4A-LATM, which the RTSP client (retina 0.4) cannot depacketize; \
                 set the camera's audio to AAC as MPEG4-GENERIC (RFC 3640) to record it",
            ),
            ("application", _) => Some("metadata, not audio or video"),
            _ => Some("not a codec edgerec records over RTSP (H.264, H.265, AAC)"),
        };
        if let Some(reason) = reason {
            c.skipped.push(format!("{name} ({reason})"));
        }
        c.offered.push(name);
    }
    c
}

/// Our description of a retina stream's parameters.
pub fn track_params(
    p: ParametersRef<'_>,
    clock_rate: u32,
) -> Result<TrackParams, TrackParamsError> {
    match p {
        ParametersRef::Video(v) => {
            let record = v.extra_data();
            let params = match v.codec_params() {
                VideoParametersCodec::H264 { .. } => {
                    avc::params(&avc::parse_record(record)?, clock_rate)?
                }
                VideoParametersCodec::H265 { .. } => {
                    hevc::params(&hevc::parse_record(record)?, clock_rate)?
                }
                other => return Err(TrackParamsError::UnexpectedVideo(format!("{other:?}"))),
            };
            Ok(TrackParams::Video(params))
        }
        ParametersRef::Audio(a) => Ok(TrackParams::Audio(AudioParams {
            codec: AudioCodec::Aac,
            sample_rate: a.clock_rate(),
            channels: a.channels().get(),
            config: Bytes::copy_from_slice(a.extra_data()),
            timescale: a.clock_rate(),
            frame_samples: a.frame_length().map_or(1024, |n| n.get()),
        })),
        ParametersRef::Message(_) => Err(TrackParamsError::Metadata),
    }
}

/// Whether 4-byte length-prefixed H.265 data holds an IRAP picture (BLA, IDR or CRA, NAL
/// types 16–21). retina counts only IDR as a random access point, but encoders such as x265
/// put CRA pictures at every GOP after the first, and a segment may start on any of them.
pub fn has_h265_irap(mut data: &[u8]) -> bool {
    while data.len() >= 5 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let nal_type = (data[4] >> 1) & 0x3f;
        if (16..=21).contains(&nal_type) {
            return true;
        }
        data = data.get(4 + len..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(streams: &[(&'static str, &'static str)]) -> Vec<Offered<'static>> {
        streams
            .iter()
            .map(|&(media, encoding)| Offered {
                media,
                encoding,
                has_parameters: true,
            })
            .collect()
    }

    #[test]
    fn latm_audio_is_skipped_with_the_reason_and_the_video_kept() {
        // What tests/peers/rtsp_server.py --audio-pay latm offers (rtph264pay, rtpmp4apay).
        let c = choose(&offered(&[("video", "h264"), ("audio", "mp4a-latm")]));
        assert_eq!((c.video, c.audio), (Some(0), None));
        assert_eq!(c.streams(), [0]);
        assert_eq!(c.skipped.len(), 1);
        assert!(
            c.skipped[0].starts_with("audio/mp4a-latm (AAC as MP4A-LATM, which the RTSP client"),
            "{:?}",
            c.skipped
        );
    }

    #[test]
    fn the_first_video_and_aac_stream_are_recorded_and_every_other_is_named() {
        let mut s = offered(&[
            ("application", "vnd.onvif.metadata"),
            ("audio", "mpeg4-generic"),
            ("video", "h265"),
            ("audio", "pcmu"),
            ("video", "h264"),
            ("audio", "mpeg4-generic"),
        ]);
        s[1].has_parameters = false;
        let c = choose(&s);
        assert_eq!((c.video, c.audio), (Some(2), Some(5)));
        assert_eq!(c.streams(), [2, 5]);
        let names: Vec<&str> = c
            .skipped
            .iter()
            .map(|s| s.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "application/vnd.onvif.metadata",
                "audio/mpeg4-generic",
                "audio/pcmu",
                "video/h264"
            ]
        );
        assert!(
            c.skipped[1].contains("no AAC configuration"),
            "{:?}",
            c.skipped
        );
        assert_eq!(c.offered.len(), 6);
    }

    #[test]
    fn nothing_recordable_is_an_empty_choice_listing_the_offer() {
        let c = choose(&offered(&[("video", "mp4v-es"), ("audio", "mpa")]));
        assert!(c.streams().is_empty());
        assert_eq!(c.offered, ["video/mp4v-es", "audio/mpa"]);
    }

    #[test]
    fn h265_cra_and_idr_pictures_are_key_frames_but_trailing_ones_are_not() {
        let nal = |t: u8| {
            let mut v = vec![0, 0, 0, 3, t << 1, 1, 0xaa];
            v.truncate(7);
            v
        };
        // An access unit of VPS(32) + CRA(21), IDR_W_RADL(19), and a TRAIL_R(1).
        let mut cra = nal(32);
        cra.extend(nal(21));
        assert!(has_h265_irap(&cra));
        assert!(has_h265_irap(&nal(19)));
        assert!(!has_h265_irap(&nal(1)));
        assert!(
            !has_h265_irap(&[0, 0, 0, 9, 2]),
            "truncated data is not a key frame"
        );
    }
}
