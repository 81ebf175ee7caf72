//! LATM's StreamMuxConfig (ISO/IEC 14496-3 §1.7.3), as an MP4A-LATM publisher sends it in
//! the SDP's `config=` (hex) or in-band: where the AudioSpecificConfig is, and how the
//! AudioMuxElements that follow are laid out. Pure, bit-exact, and never panics: every read
//! is checked, and input that runs out is [`LatmError::Truncated`].
//!
//! What is supported is what RTP publishers send: one program with one layer, all streams
//! with the same time framing, frame lengths given in bytes (`frameLengthType` 0), any
//! number of sub-frames, other data and the CRC field; `audioMuxVersion` 0 and 1 (with
//! `audioMuxVersionA` 0). Anything else is [`LatmError::Unsupported`], said once when the
//! track is announced.
//!
//! Two real-world quirks are accepted:
//! - GStreamer's `rtpmp4apay` copies the MP4's AudioSpecificConfig verbatim, including its
//!   backward-compatible SBR signalling (sync extension `0x2b7`), and cuts the config off
//!   after it (`config=40002310adca00`). The sync extension is recognised (`0x2b7` begins
//!   with `frameLengthType` 2, which is reserved, so it cannot be a real field), and fields
//!   missing at the end of an SDP config take their usual values (frame lengths in bytes,
//!   no other data), as ffmpeg's receiver assumes.
//! - The AudioSpecificConfig kept for the MP4 sample entry is exactly the bits the
//!   publisher sent, zero-padded to whole bytes.

use bytes::Bytes;

use crate::media::codec::aac::{parse_asc, AscInfo};

/// Why a StreamMuxConfig or AudioMuxElement cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LatmError {
    /// The data ends before the syntax does (maybe more is coming in the next packet).
    #[error("LATM data truncated")]
    Truncated,
    /// Valid LATM that edgerec does not record.
    #[error("unsupported LATM: {0}")]
    Unsupported(String),
    /// Not valid LATM.
    #[error("malformed LATM: {0}")]
    Malformed(String),
}

/// A big-endian bit reader over a byte slice.
#[derive(Debug, Clone)]
pub struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bits left.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Up to 32 bits.
    pub fn read(&mut self, n: usize) -> Result<u32, LatmError> {
        debug_assert!(n <= 32);
        if n > self.remaining() {
            return Err(LatmError::Truncated);
        }
        let mut v = 0u64;
        for _ in 0..n {
            let byte = self.data[self.pos / 8];
            v = (v << 1) | u64::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v as u32)
    }

    /// The next `n` bits without consuming them.
    pub fn peek(&self, n: usize) -> Result<u32, LatmError> {
        self.clone().read(n)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), LatmError> {
        if n > self.remaining() {
            return Err(LatmError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    pub fn byte_align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// `n` whole bytes starting at the current (possibly unaligned) bit position.
    pub fn bytes(&mut self, n: usize) -> Result<Vec<u8>, LatmError> {
        if n.saturating_mul(8) > self.remaining() {
            return Err(LatmError::Truncated);
        }
        if self.pos % 8 == 0 {
            let start = self.pos / 8;
            self.pos += n * 8;
            return Ok(self.data[start..start + n].to_vec());
        }
        (0..n).map(|_| self.read(8).map(|b| b as u8)).collect()
    }

    /// The bits from `from` to the current position, zero-padded to whole bytes.
    fn since(&self, from: usize) -> Vec<u8> {
        let mut r = Bits {
            data: self.data,
            pos: from,
        };
        let len = self.pos - from;
        let mut out = Vec::with_capacity(len.div_ceil(8));
        let mut left = len;
        while left > 0 {
            let n = left.min(8);
            // In range: these bits were read already.
            let v = r.read(n).unwrap_or(0) as u8;
            out.push(v << (8 - n));
            left -= n;
        }
        out
    }
}

/// `LatmGetValue()`: 2 bits of byte count, then that many bytes plus one.
fn latm_value(r: &mut Bits<'_>) -> Result<u64, LatmError> {
    let bytes = r.read(2)? + 1;
    let mut v = 0u64;
    for _ in 0..bytes {
        v = (v << 8) | u64::from(r.read(8)?);
    }
    Ok(v)
}

/// One parsed StreamMuxConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxConfig {
    /// The AudioSpecificConfig, byte-aligned, for the MP4 sample entry.
    pub asc: Bytes,
    pub info: AscInfo,
    /// AAC frames (PayloadMux) per AudioMuxElement: `numSubFrames + 1`.
    pub sub_frames: u32,
    /// Bits of other data after the frames of each AudioMuxElement.
    pub other_data_bits: u64,
}

/// How strictly to read the end of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// In-band: every field must be there.
    Strict,
    /// From the SDP: fields missing after the AudioSpecificConfig take their usual values
    /// (GStreamer sends such configs).
    Lenient,
}

/// Parses a StreamMuxConfig from the `config=` hex of an SDP's fmtp.
pub fn from_hex(hex: &str) -> Result<MuxConfig, LatmError> {
    let hex = hex.trim();
    let bytes = (hex.len() % 2 == 0 && hex.len() <= 512)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten()
        .ok_or_else(|| LatmError::Malformed(format!("config={hex} is not hex")))?;
    let mut r = Bits::new(&bytes);
    stream_mux_config(&mut r, Tail::Lenient)
}

/// `StreamMuxConfig()`.
pub fn stream_mux_config(r: &mut Bits<'_>, tail: Tail) -> Result<MuxConfig, LatmError> {
    let version = r.read(1)?;
    let version_a = if version == 1 { r.read(1)? } else { 0 };
    if version_a != 0 {
        return Err(LatmError::Unsupported("audioMuxVersionA 1".into()));
    }
    if version == 1 {
        latm_value(r)?; // taraBufferFullness
    }
    let same_time_framing = r.read(1)?;
    let sub_frames = r.read(6)? + 1;
    let programs = r.read(4)? + 1;
    let layers = r.read(3)? + 1;
    if programs != 1 || layers != 1 {
        return Err(LatmError::Unsupported(format!(
            "{programs} programs with {layers} layers (one of each is supported)"
        )));
    }
    if same_time_framing != 1 {
        return Err(LatmError::Unsupported("allStreamsSameTimeFraming 0".into()));
    }
    let (asc, info) = if version == 0 {
        audio_specific_config(r)?
    } else {
        let len = usize::try_from(latm_value(r)?)
            .map_err(|_| LatmError::Malformed("AudioSpecificConfig length".into()))?;
        let start = r.position();
        let got = audio_specific_config(r)?;
        let used = r.position() - start;
        if used > len {
            return Err(LatmError::Malformed(format!(
                "AudioSpecificConfig of {used} bits in a field of {len}"
            )));
        }
        r.skip(len - used)?; // fill bits
        got
    };
    let defaults = MuxConfig {
        asc,
        info,
        sub_frames,
        other_data_bits: 0,
    };
    match rest_of_config(r, version, defaults.clone()) {
        Err(LatmError::Truncated) if tail == Tail::Lenient => Ok(defaults),
        other => other,
    }
}

/// From `frameLengthType` to the end of the config.
fn rest_of_config(
    r: &mut Bits<'_>,
    version: u32,
    mut config: MuxConfig,
) -> Result<MuxConfig, LatmError> {
    let frame_length_type = r.read(3)?;
    if frame_length_type != 0 {
        return Err(LatmError::Unsupported(format!(
            "frameLengthType {frame_length_type} (frame lengths in bytes, 0, are supported)"
        )));
    }
    r.skip(8)?; // latmBufferFullness
    if r.read(1)? == 1 {
        config.other_data_bits = if version == 1 {
            latm_value(r)?
        } else {
            let mut bits = 0u64;
            loop {
                let escape = r.read(1)?;
                bits = (bits << 8) + u64::from(r.read(8)?);
                if escape == 0 || bits > 1 << 24 {
                    break;
                }
            }
            bits
        };
    }
    if r.read(1)? == 1 {
        r.skip(8)?; // crcCheckSum
    }
    Ok(config)
}

/// `GetAudioObjectType()`.
fn object_type(r: &mut Bits<'_>) -> Result<u32, LatmError> {
    match r.read(5)? {
        31 => Ok(32 + r.read(6)?),
        t => Ok(t),
    }
}

fn sampling_frequency(r: &mut Bits<'_>) -> Result<(), LatmError> {
    if r.read(4)? == 15 {
        r.skip(24)?;
    }
    Ok(())
}

/// Reads one AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) to find where it ends, and
/// returns its bits and what it says.
fn audio_specific_config(r: &mut Bits<'_>) -> Result<(Bytes, AscInfo), LatmError> {
    let start = r.position();
    let mut aot = object_type(r)?;
    sampling_frequency(r)?;
    let channels = r.read(4)?;
    let explicit_sbr = matches!(aot, 5 | 29);
    if explicit_sbr {
        sampling_frequency(r)?;
        aot = object_type(r)?;
        if aot == 22 {
            r.skip(4)?; // extensionChannelConfiguration
        }
    }
    match aot {
        1..=4 | 6 | 7 | 17 | 19..=23 => ga_specific_config(r, channels, aot)?,
        other => {
            return Err(LatmError::Unsupported(format!(
                "audio object type {other} (AAC is supported)"
            )))
        }
    }
    if matches!(aot, 17 | 19..=27) {
        let ep = r.read(2)?;
        if ep >= 2 {
            return Err(LatmError::Unsupported(format!("epConfig {ep}")));
        }
    }
    if !explicit_sbr && r.remaining() >= 16 && r.peek(11)? == 0x2b7 {
        sync_extension(r)?;
    }
    let asc = r.since(start);
    let info = parse_asc(&asc).map_err(|e| LatmError::Malformed(e.to_string()))?;
    Ok((Bytes::from(asc), info))
}

/// Backward-compatible SBR/PS signalling after a GASpecificConfig.
fn sync_extension(r: &mut Bits<'_>) -> Result<(), LatmError> {
    r.skip(11)?;
    match object_type(r)? {
        // sbrPresentFlag 1: the extension sampling frequency, then maybe PS signalling.
        5 if r.read(1)? == 1 => {
            sampling_frequency(r)?;
            if r.remaining() >= 12 && r.peek(11)? == 0x548 {
                r.skip(12)?; // syncExtensionType 0x548, psPresentFlag
            }
        }
        22 => {
            if r.read(1)? == 1 {
                sampling_frequency(r)?;
            }
            r.skip(4)?; // extensionChannelConfiguration
        }
        _ => {}
    }
    Ok(())
}

/// `GASpecificConfig()`.
fn ga_specific_config(r: &mut Bits<'_>, channels: u32, aot: u32) -> Result<(), LatmError> {
    r.skip(1)?; // frameLengthFlag
    if r.read(1)? == 1 {
        r.skip(14)?; // coreCoderDelay
    }
    let extension = r.read(1)?;
    if channels == 0 {
        return Err(LatmError::Unsupported(
            "channel configuration 0 (a program config element)".into(),
        ));
    }
    if matches!(aot, 6 | 20) {
        r.skip(3)?; // layerNr
    }
    if extension == 1 {
        if aot == 22 {
            r.skip(5 + 11)?; // numOfSubFrame, layer_length
        }
        if matches!(aot, 17 | 19 | 20 | 23) {
            r.skip(3)?; // resilience flags
        }
        r.skip(1)?; // extensionFlag3
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn ffmpeg_config_is_aac_lc_48k_mono_with_every_field() {
        // ffmpeg -rtpflags latm: fmtp config=400023103fc0.
        let c = from_hex("400023103fc0").unwrap();
        assert_eq!(&c.asc[..], &[0x11, 0x88]);
        assert_eq!(c.info.sample_rate, 48_000);
        assert_eq!(c.info.channels, 1);
        assert_eq!(c.info.frame_samples, 1024);
        assert_eq!((c.sub_frames, c.other_data_bits), (1, 0));
        // The same bits read strictly: nothing is missing.
        let bytes = [0x40, 0x00, 0x23, 0x10, 0x3f, 0xc0];
        assert_eq!(
            stream_mux_config(&mut Bits::new(&bytes), Tail::Strict),
            Ok(c)
        );
    }

    #[test]
    fn gstreamer_config_keeps_the_sync_extension_and_defaults_the_cut_off_fields() {
        // rtspclientsink (rtpmp4apay) from an MP4 whose esds holds 11 88 56 e5 00.
        let c = from_hex("40002310adca00").unwrap();
        assert_eq!(&c.asc[..], &[0x11, 0x88, 0x56, 0xe5, 0x00]);
        assert_eq!((c.info.sample_rate, c.info.channels), (48_000, 1));
        assert_eq!((c.sub_frames, c.other_data_bits), (1, 0));
        let bytes = [0x40, 0x00, 0x23, 0x10, 0xad, 0xca, 0x00];
        assert_eq!(
            stream_mux_config(&mut Bits::new(&bytes), Tail::Strict),
            Err(LatmError::Truncated)
        );
    }

    #[test]
    fn version_1_configs_carry_the_asc_length_and_other_data() {
        // audioMuxVersion 1, versionA 0, tara (1 byte), same framing, 2 sub-frames, one
        // program and layer, ascLen 16 then 11 90 (AAC-LC 48k stereo), frameLengthType 0,
        // fullness, other data (LatmGetValue 40 bits), no CRC.
        let mut w = BitWriter::default();
        w.put(1, 1);
        w.put(0, 1);
        w.put(0, 2);
        w.put(0xff, 8);
        w.put(1, 1);
        w.put(1, 6);
        w.put(0, 4);
        w.put(0, 3);
        w.put(0, 2);
        w.put(16, 8);
        w.put(0x1190, 16);
        w.put(0, 3);
        w.put(0xff, 8);
        w.put(1, 1);
        w.put(0, 2);
        w.put(40, 8);
        w.put(0, 1);
        let bytes = w.finish();
        let c = stream_mux_config(&mut Bits::new(&bytes), Tail::Strict).unwrap();
        assert_eq!(&c.asc[..], &[0x11, 0x90]);
        assert_eq!(
            (c.info.channels, c.sub_frames, c.other_data_bits),
            (2, 2, 40)
        );
    }

    #[test]
    fn several_programs_fixed_frame_lengths_and_program_config_elements_are_unsupported() {
        let unsupported = |hex: &str| matches!(from_hex(hex), Err(LatmError::Unsupported(_)));
        // numLayer 4.
        assert!(unsupported("400823103fc0"));
        // frameLengthType 1 after the ffmpeg ASC: 0x3f -> 0x7f sets it.
        assert!(unsupported("400023107fc0"));
        // Channel configuration 0.
        assert!(unsupported("400023003fc0"));
        // audioMuxVersionA 1.
        assert!(unsupported("c0"));
        assert!(matches!(from_hex("4x"), Err(LatmError::Malformed(_))));
        assert!(matches!(from_hex(""), Err(LatmError::Truncated)));
    }

    #[test]
    fn unaligned_bytes_are_read_across_byte_boundaries() {
        let data = [0b1010_1011, 0b1100_1101, 0b1110_0000];
        let mut r = Bits::new(&data);
        assert_eq!(r.read(3).unwrap(), 0b101);
        assert_eq!(r.bytes(2).unwrap(), vec![0b0101_1110, 0b0110_1111]);
        assert_eq!(r.remaining(), 5);
        assert_eq!(r.bytes(1), Err(LatmError::Truncated));
        r.byte_align();
        assert_eq!(r.remaining(), 0);
    }

    /// Writes bit fields, for building test configs.
    #[derive(Default)]
    pub struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        pub fn put(&mut self, v: u64, n: usize) {
            for i in (0..n).rev() {
                self.bits.push((v >> i) & 1 == 1);
            }
        }

        pub fn finish(&self) -> Vec<u8> {
            self.bits
                .chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i)))
                })
                .collect()
        }
    }
}
