//! AAC configuration out of MP4 boxes: the `esds` descriptor chain and the
//! AudioSpecificConfig it carries (ISO/IEC 14496-1 §7.2.6, 14496-3 §1.6.2.1). Pure.

/// Reads an MPEG-4 descriptor header: `(tag, body, rest)`.
fn descriptor(d: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let tag = *d.first().ok_or("descriptor missing")?;
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let b = *d.get(i).ok_or("descriptor length truncated")?;
        len = (len << 7) | usize::from(b & 0x7f);
        i += 1;
        if b & 0x80 == 0 || i > 4 {
            break;
        }
    }
    let body = d.get(i..i + len).ok_or("descriptor longer than its box")?;
    Ok((tag, body, &d[i + len..]))
}

/// From an `esds` payload (after version/flags): the object type indication and the
/// DecoderSpecificInfo (the AudioSpecificConfig for AAC).
pub fn parse_esds(d: &[u8]) -> Result<(u8, Option<&[u8]>), String> {
    let (tag, es, _) = descriptor(d)?;
    if tag != 0x03 {
        return Err(format!(
            "esds starts with descriptor tag {tag}, not ES_Descriptor"
        ));
    }
    let flags = *es.get(2).ok_or("ES_Descriptor too short")?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*es.get(at).ok_or("ES_Descriptor too short")?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let mut rest = es.get(at..).ok_or("ES_Descriptor too short")?;
    while !rest.is_empty() {
        let (tag, body, next) = descriptor(rest)?;
        if tag == 0x04 {
            let object_type = *body.first().ok_or("DecoderConfigDescriptor too short")?;
            let dsi = match body.get(13..) {
                Some(sub) if !sub.is_empty() => match descriptor(sub)? {
                    (0x05, info, _) => Some(info),
                    _ => None,
                },
                _ => None,
            };
            return Ok((object_type, dsi));
        }
        rest = next;
    }
    Err("esds has no DecoderConfigDescriptor".into())
}

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
    let mut bits = Bits { data: asc, pos: 0 };
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

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, String> {
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

    #[test]
    fn esds_with_decoder_specific_info_yields_the_config() {
        // ES_Descriptor(ES_ID=1, flags=0) { DecoderConfig(0x40, ...) { DSI(11 90) } SL(02) }
        let mut dcd = vec![0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dcd.extend_from_slice(&[0x05, 0x02, 0x11, 0x90]);
        let mut es = vec![0x00, 0x01, 0x00, 0x04, dcd.len() as u8];
        es.extend_from_slice(&dcd);
        es.extend_from_slice(&[0x06, 0x01, 0x02]);
        let mut esds = vec![0x03, 0x80, 0x80, 0x80, es.len() as u8];
        esds.extend_from_slice(&es);
        let (oti, dsi) = parse_esds(&esds).unwrap();
        assert_eq!(oti, 0x40);
        assert_eq!(dsi, Some(&[0x11, 0x90][..]));
        assert!(parse_esds(&esds[..8]).is_err());
    }
}
