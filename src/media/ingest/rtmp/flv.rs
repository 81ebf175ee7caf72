//! FLV audio and video tag bodies, as RTMP carries them in messages 8 and 9 (FLV
//! specification 10.1, annex E; Enhanced RTMP v1 for `hvc1`/`avc1` FourCC video).
//! Pure: splits a body into what it is and its payload, without copying.

use bytes::Bytes;

use super::RtmpError;
use crate::media::frame::VideoCodec;

/// What a video tag carries.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoTag {
    /// A decoder configuration record (`avcC` / `hvcC`).
    SequenceHeader { codec: VideoCodec, config: Bytes },
    /// Length-prefixed NAL units of one picture; `cts` = pts - dts in ms.
    Frame {
        codec: VideoCodec,
        keyframe: bool,
        cts: i32,
        data: Bytes,
    },
    /// End of sequence, video info/command frames, metadata: nothing to record.
    Ignored,
}

/// What an audio tag carries.
#[derive(Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// AudioSpecificConfig.
    SequenceHeader(Bytes),
    /// One raw AAC frame.
    Frame(Bytes),
}

fn si24(b: &[u8]) -> i32 {
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

/// Parses a video message body.
pub fn parse_video(body: &Bytes) -> Result<VideoTag, RtmpError> {
    let Some(&b0) = body.first() else {
        return Ok(VideoTag::Ignored); // empty tags are sent as keepalives by some encoders
    };
    if b0 & 0x80 != 0 {
        return parse_enhanced_video(body);
    }
    let frame_type = b0 >> 4;
    let codec = match b0 & 0x0f {
        7 => VideoCodec::H264,
        // 12: the de-facto (pre-Enhanced-RTMP) HEVC codec id of Chinese CDNs and encoders.
        12 => VideoCodec::H265,
        id => {
            let name = match id {
                2 => "Sorenson H.263",
                3 => "Screen video",
                4 => "On2 VP6",
                5 => "On2 VP6 with alpha",
                6 => "Screen video v2",
                _ => "unknown",
            };
            return Err(RtmpError::UnsupportedCodec {
                what: format!("FLV video codec id {id} ({name})"),
            });
        }
    };
    if frame_type == 5 {
        return Ok(VideoTag::Ignored); // video info/command frame
    }
    if body.len() < 5 {
        return Err(RtmpError::video(format!(
            "{}-byte AVC tag is shorter than its 5-byte header",
            body.len()
        )));
    }
    let cts = si24(&body[2..5]);
    match body[1] {
        0 => Ok(VideoTag::SequenceHeader {
            codec,
            config: body.slice(5..),
        }),
        1 => Ok(VideoTag::Frame {
            codec,
            keyframe: frame_type == 1,
            cts,
            data: body.slice(5..),
        }),
        2 => Ok(VideoTag::Ignored),
        t => Err(RtmpError::video(format!("AVC packet type {t} is unknown"))),
    }
}

fn parse_enhanced_video(body: &Bytes) -> Result<VideoTag, RtmpError> {
    if body.len() < 5 {
        return Err(RtmpError::video(
            "Enhanced RTMP tag shorter than its header",
        ));
    }
    let frame_type = (body[0] >> 4) & 0x07;
    let packet_type = body[0] & 0x0f;
    let fourcc = &body[1..5];
    let codec = match fourcc {
        b"avc1" => VideoCodec::H264,
        b"hvc1" => VideoCodec::H265,
        other => {
            return Err(RtmpError::UnsupportedCodec {
                what: format!("Enhanced RTMP video \"{}\"", String::from_utf8_lossy(other)),
            })
        }
    };
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    let keyframe = frame_type == 1;
    match packet_type {
        0 => Ok(VideoTag::SequenceHeader {
            codec,
            config: body.slice(5..),
        }),
        1 => {
            if body.len() < 8 {
                return Err(RtmpError::video("coded frames without composition time"));
            }
            Ok(VideoTag::Frame {
                codec,
                keyframe,
                cts: si24(&body[5..8]),
                data: body.slice(8..),
            })
        }
        3 => Ok(VideoTag::Frame {
            codec,
            keyframe,
            cts: 0,
            data: body.slice(5..),
        }),
        2 | 4 => Ok(VideoTag::Ignored), // sequence end, metadata
        t => Err(RtmpError::UnsupportedCodec {
            what: format!("Enhanced RTMP video packet type {t} (multitrack / MPEG-2 TS / ModEx)"),
        }),
    }
}

/// Parses an audio message body.
pub fn parse_audio(body: &Bytes) -> Result<Option<AudioTag>, RtmpError> {
    let Some(&b0) = body.first() else {
        return Ok(None);
    };
    let format = b0 >> 4;
    if format != 10 {
        let name = match format {
            0 | 3 => "linear PCM",
            1 => "ADPCM",
            2 | 14 => "MP3",
            4..=6 => "Nellymoser",
            7 => "G.711 A-law",
            8 => "G.711 mu-law",
            9 => "Enhanced RTMP audio",
            11 => "Speex",
            _ => "unknown",
        };
        return Err(RtmpError::UnsupportedCodec {
            what: format!("FLV audio format {format} ({name})"),
        });
    }
    match body.get(1) {
        None => Err(RtmpError::audio("AAC tag without packet type")),
        Some(0) => Ok(Some(AudioTag::SequenceHeader(body.slice(2..)))),
        Some(1) => Ok(Some(AudioTag::Frame(body.slice(2..)))),
        Some(t) => Err(RtmpError::audio(format!("AAC packet type {t} is unknown"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_key_frame_carries_its_negative_composition_time() {
        let body = Bytes::from_static(&[0x17, 1, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x65]);
        let tag = parse_video(&body).unwrap();
        assert_eq!(
            tag,
            VideoTag::Frame {
                codec: VideoCodec::H264,
                keyframe: true,
                cts: -33,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            }
        );
    }

    #[test]
    fn enhanced_rtmp_hevc_sequence_start_and_frames_are_understood() {
        let mut seq = vec![0x90];
        seq.extend_from_slice(b"hvc1");
        seq.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            parse_video(&Bytes::from(seq)).unwrap(),
            VideoTag::SequenceHeader {
                codec: VideoCodec::H265,
                config: Bytes::from_static(&[1, 2, 3]),
            }
        );
        let mut x = vec![0xa3]; // inter frame, CodedFramesX
        x.extend_from_slice(b"hvc1");
        x.extend_from_slice(&[0, 0, 0, 1, 2]);
        match parse_video(&Bytes::from(x)).unwrap() {
            VideoTag::Frame { keyframe, cts, .. } => assert!(!keyframe && cts == 0),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn unsupported_codecs_are_named() {
        let e = parse_video(&Bytes::from_static(&[0x12, 0])).unwrap_err();
        assert!(e.to_string().contains("H.263"), "{e}");
        let mut av1 = vec![0x90];
        av1.extend_from_slice(b"av01");
        let e = parse_video(&Bytes::from(av1)).unwrap_err();
        assert!(e.to_string().contains("av01"), "{e}");
        let e = parse_audio(&Bytes::from_static(&[0x2f, 0])).unwrap_err();
        assert!(e.to_string().contains("MP3"), "{e}");
    }

    #[test]
    fn aac_header_and_frame_are_told_apart() {
        let h = parse_audio(&Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap();
        assert_eq!(
            h,
            Some(AudioTag::SequenceHeader(Bytes::from_static(&[0x12, 0x10])))
        );
        let f = parse_audio(&Bytes::from_static(&[0xaf, 1, 9])).unwrap();
        assert_eq!(f, Some(AudioTag::Frame(Bytes::from_static(&[9]))));
        assert!(parse_audio(&Bytes::from_static(&[0xaf])).is_err());
    }
}
