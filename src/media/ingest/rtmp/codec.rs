//! Track parameters from the decoder configurations FLV sequence headers carry: `avcC`
//! and `hvcC` (read and rebuilt by the codec toolkit, [`crate::media::codec`]) and the AAC
//! AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1). Pure.

use bytes::Bytes;

use crate::media::codec::aac::{self, AacError};
use crate::media::codec::{avc, hevc, CodecError};
use crate::media::frame::{AudioParams, VideoCodec, VideoParams};

/// RTMP timestamps are milliseconds; video keeps them as they are.
pub const VIDEO_TIMESCALE: u32 = 1000;

/// A video track's parameters, and the NAL length size its frames use (1, 2 or 4 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoConfig {
    pub params: VideoParams,
    pub nal_length_size: u8,
}

/// Reads a sequence header's decoder configuration record and rebuilds it with the codec
/// toolkit, so a publisher's record is normalized like every other path's (4-byte NAL
/// lengths, the High-profile trailer, the hvcC fields from the SPS): frames with shorter
/// NAL lengths are rewritten (see [`to_four_byte_lengths`]).
pub fn video_config(codec: VideoCodec, record: &[u8]) -> Result<VideoConfig, CodecError> {
    let (params, nal_length_size) = match codec {
        VideoCodec::H264 => {
            let sets = avc::parse_record(record)?;
            (avc::params(&sets, VIDEO_TIMESCALE)?, sets.nal_length_size)
        }
        VideoCodec::H265 => {
            let sets = hevc::parse_record(record)?;
            (hevc::params(&sets, VIDEO_TIMESCALE)?, sets.nal_length_size)
        }
    };
    Ok(VideoConfig {
        params,
        nal_length_size,
    })
}

/// Rewrites length-prefixed NAL units to 4-byte lengths, checking that the lengths tile
/// `data` exactly; empty NAL units are dropped. `None` when nothing is left.
pub fn to_four_byte_lengths(data: &Bytes, size: u8) -> Result<Option<Bytes>, String> {
    let size = usize::from(size);
    let mut at = 0;
    let mut clean = size == 4;
    let mut units = 0;
    while at < data.len() {
        let len_bytes = data
            .get(at..at + size)
            .ok_or("NAL length runs past the end of the frame")?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > data.len() - at - size {
            return Err(format!(
                "NAL unit of {len} bytes runs past the end of the frame"
            ));
        }
        clean &= len > 0;
        units += usize::from(len > 0);
        at += size + len;
    }
    if units == 0 {
        return Ok(None);
    }
    if clean {
        return Ok(Some(data.clone()));
    }
    let mut out = Vec::with_capacity(data.len() + units * 4);
    let mut at = 0;
    while at < data.len() {
        let len = data[at..at + size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > 0 {
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.extend_from_slice(&data[at + size..at + size + len]);
        }
        at += size + len;
    }
    Ok(Some(Bytes::from(out)))
}

/// Parses an AAC AudioSpecificConfig ([`aac::audio_params`]). The track's timescale is its
/// sample rate.
pub fn aac_config(asc: &[u8]) -> Result<AudioParams, AacError> {
    aac::audio_params(asc)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SPS_320X240: &[u8] = &[
        0x67, 0x64, 0x00, 0x0c, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x01, 0x40, 0xf1, 0x42, 0x99, 0x60,
    ];

    fn avcc(length_size_minus_one: u8) -> Vec<u8> {
        let mut r = vec![1, 0x64, 0x00, 0x0c, 0xfc | length_size_minus_one, 0xe1];
        r.extend_from_slice(&(SPS_320X240.len() as u16).to_be_bytes());
        r.extend_from_slice(SPS_320X240);
        r.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        r
    }

    #[test]
    fn avcc_gives_size_codec_string_and_length_size() {
        let c = video_config(VideoCodec::H264, &avcc(3)).unwrap();
        assert_eq!((c.params.width, c.params.height), (320, 240));
        assert_eq!(c.params.rfc6381, "avc1.64000C");
        // The High-profile trailer (4:2:0, 8-bit) is added to a record sent without it.
        assert_eq!(
            &c.params.config[c.params.config.len() - 4..],
            &[0xfd, 0xf8, 0xf8, 0]
        );
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.params.timescale, 1000);
    }

    #[test]
    fn two_byte_nal_lengths_are_rewritten_and_the_record_says_four() {
        let c = video_config(VideoCodec::H264, &avcc(1)).unwrap();
        assert_eq!(c.nal_length_size, 2);
        assert_eq!(c.params.config[4] & 3, 3);
        let data = Bytes::from_static(&[0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
        let out = to_four_byte_lengths(&data, 2).unwrap().unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
    }

    #[test]
    fn nal_lengths_that_do_not_tile_the_frame_are_an_error() {
        let data = Bytes::from_static(&[0, 0, 0, 9, 0x65]);
        assert!(to_four_byte_lengths(&data, 4).is_err());
        let data = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0]);
        assert!(to_four_byte_lengths(&data, 4).is_err());
        let empty = Bytes::from_static(&[0, 0, 0, 0]);
        assert_eq!(to_four_byte_lengths(&empty, 4).unwrap(), None);
    }

    #[test]
    fn truncated_avcc_is_an_error_at_every_cut() {
        let r = avcc(3);
        for n in 0..8 + SPS_320X240.len() - 10 {
            assert!(video_config(VideoCodec::H264, &r[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn aac_lc_config_gives_rate_channels_and_frame_length() {
        let a = aac_config(&[0x12, 0x10]).unwrap(); // AAC-LC, 44.1 kHz, stereo
        assert_eq!(
            (a.sample_rate, a.channels, a.frame_samples),
            (44100, 2, 1024)
        );
        assert_eq!(a.timescale, 44100);
        assert!(aac_config(&[0x12]).is_err());
        assert!(aac_config(&[0x16, 0x90]).is_err()); // reserved rate index 13
    }
}
