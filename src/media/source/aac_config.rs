//! What edgerec needs from an AAC AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): sample
//! rate, channels and frame length, for MP4 files (out of `esds`, which mp4-atom decodes),
//! RTSP push and LATM. Pure.

/// What edgerec needs from an AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AscInfo {
    pub sample_rate: u32,
    /// 0 when the config defers to a program config element.
    pub channels: u16,
    pub frame_samples: u32,
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Parses the start of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
pub fn parse_asc(asc: &[u8]) -> Result<AscInfo, String> {
    let mut bits = Bits::new(asc);
    let mut object_type = bits.read(5)?;
    if object_type == 31 {
        object_type = 32 + bits.read(6)?;
    }
    let mut rate = read_rate(&mut bits)?;
    let channel_config = bits.read(4)?;
    let sbr = matches!(object_type, 5 | 29);
    if sbr {
        rate = read_rate(&mut bits)?;
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
        sample_rate: rate,
        channels,
        frame_samples: if sbr { base * 2 } else { base },
    })
}

fn read_rate(bits: &mut Bits<'_>) -> Result<u32, String> {
    match bits.read(4)? {
        15 => bits.read(24),
        i => AAC_RATES
            .get(i as usize)
            .copied()
            .ok_or_else(|| format!("AAC sampling frequency index {i} is reserved")),
    }
}

/// An MSB-first bit reader over an AudioSpecificConfig (also the ADTS encoder's).
pub(crate) struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    pub(crate) fn read(&mut self, n: usize) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self
                .data
                .get(self.pos / 8)
                .ok_or("AudioSpecificConfig truncated")?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
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
