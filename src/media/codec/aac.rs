//! What edgerec needs from an AAC AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): sample
//! rate, channels and frame length, for MP4 files (out of `esds`, which mp4-atom decodes),
//! RTSP push, LATM and RTMP's sequence header; and the pieces the ADTS writer reads the
//! same config with ([`Bits`], [`object_type`], [`rate`]). Pure.

use bytes::Bytes;
use thiserror::Error;

use crate::media::frame::{AudioCodec, AudioParams};

/// The sampling frequencies of `samplingFrequencyIndex` 0..=12.
pub const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Why an AudioSpecificConfig cannot be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AacError {
    #[error("AudioSpecificConfig truncated")]
    Truncated,
    #[error("AAC sampling frequency index {0} is reserved")]
    ReservedRate(u32),
    #[error("AudioSpecificConfig gives a sample rate of 0")]
    ZeroRate,
    #[error("AAC with a program config element is not supported")]
    ProgramConfig,
}

/// What edgerec needs from an AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AscInfo {
    pub sample_rate: u32,
    /// 0 when the config defers to a program config element.
    pub channels: u16,
    pub frame_samples: u32,
}

/// A sampling frequency as a config gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// An index into [`RATES`].
    Index(u8),
    /// An explicit frequency (index 15).
    Explicit(u32),
}

impl Rate {
    pub fn hz(self) -> u32 {
        match self {
            Rate::Index(i) => RATES[usize::from(i)],
            Rate::Explicit(hz) => hz,
        }
    }

    /// The [`RATES`] index of this frequency, if it has one.
    pub fn index(self) -> Option<u8> {
        match self {
            Rate::Index(i) => Some(i),
            Rate::Explicit(hz) => RATES.iter().position(|r| *r == hz).map(|i| i as u8),
        }
    }
}

/// Parses the start of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
pub fn parse_asc(asc: &[u8]) -> Result<AscInfo, AacError> {
    let mut bits = Bits::new(asc);
    let mut object_type = object_type(&mut bits)?;
    let mut sample_rate = rate(&mut bits)?.hz();
    let channel_config = bits.read(4)?;
    let sbr = matches!(object_type, 5 | 29);
    if sbr {
        sample_rate = rate(&mut bits)?.hz();
        object_type = bits.read(5)?;
    }
    // GASpecificConfig's frameLengthFlag: 960-sample frames (rare, broadcast AAC).
    let short_frames = matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23) && bits.read(1)? == 1;
    let base = if short_frames { 960 } else { 1024 };
    let channels = match channel_config {
        7 => 8,
        c => c as u16,
    };
    Ok(AscInfo {
        sample_rate,
        channels,
        frame_samples: if sbr { base * 2 } else { base },
    })
}

/// A track's parameters from its AudioSpecificConfig (RTMP's sequence header): the
/// timescale is the sample rate. Refuses a rate of 0 and channels given by a program
/// config element, which no sample entry edgerec writes can say.
pub fn audio_params(asc: &[u8]) -> Result<AudioParams, AacError> {
    let info = parse_asc(asc)?;
    if info.sample_rate == 0 {
        return Err(AacError::ZeroRate);
    }
    if info.channels == 0 {
        return Err(AacError::ProgramConfig);
    }
    Ok(AudioParams {
        codec: AudioCodec::Aac,
        sample_rate: info.sample_rate,
        channels: info.channels,
        config: Bytes::copy_from_slice(asc),
        timescale: info.sample_rate,
        frame_samples: info.frame_samples,
    })
}

/// `audioObjectType`, with its escape (31: 32 + 6 more bits).
pub fn object_type(bits: &mut Bits<'_>) -> Result<u32, AacError> {
    match bits.read(5)? {
        31 => Ok(32 + bits.read(6)?),
        t => Ok(t),
    }
}

/// `samplingFrequencyIndex`, and the explicit frequency after index 15.
pub fn rate(bits: &mut Bits<'_>) -> Result<Rate, AacError> {
    match bits.read(4)? {
        15 => Ok(Rate::Explicit(bits.read(24)?)),
        i if (i as usize) < RATES.len() => Ok(Rate::Index(i as u8)),
        i => Err(AacError::ReservedRate(i)),
    }
}

/// An MSB-first bit reader over an AudioSpecificConfig: the toolkit's one bit reader
/// ([`super::sps::Bits`]), with this module's error.
pub struct Bits<'a>(super::sps::Bits<'a>);

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bits(super::sps::Bits::new(data))
    }

    pub fn read(&mut self, n: usize) -> Result<u32, AacError> {
        // The only way it fails is running out of bits.
        self.0.bits(n as u32).map_err(|_| AacError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_48k_stereo_config_is_understood() {
        // 0x11 0x90: AAC-LC, index 3 (48 kHz), 2 channels.
        let info = parse_asc(&[0x11, 0x90]).unwrap();
        assert_eq!(
            info,
            AscInfo {
                sample_rate: 48000,
                channels: 2,
                frame_samples: 1024
            }
        );
    }

    #[test]
    fn he_aac_config_reports_the_output_rate_and_double_frames() {
        // AOT 5 (SBR), core 24 kHz (6), 2 ch, extension 48 kHz (3), AOT 2.
        // bits: 00101 0110 0010 0011 00010 0 ...
        let info = parse_asc(&[0x2B, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(info.sample_rate, 48000);
        assert_eq!(info.channels, 2);
        assert_eq!(info.frame_samples, 2048);
    }

    #[test]
    fn truncated_or_reserved_asc_is_an_error() {
        assert!(parse_asc(&[0x11]).is_err());
        // AAC-LC with reserved frequency index 13.
        assert!(parse_asc(&[0x16, 0x90]).is_err());
    }
}
