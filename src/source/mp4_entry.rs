//! Track descriptions of an MP4 file, read straight from the `moov` box bytes.
//!
//! The `mp4` crate parses the sample tables well but not the sample entries edgerec needs
//! (it ignores `hvc1`, keeps nothing of `hvcC`). So this module walks the raw boxes
//! `moov/trak/{tkhd, mdia/{mdhd, hdlr, minf/stbl/stsd}}` and turns each track's first sample
//! entry into [`TrackParams`], keeping `avcC`/`hvcC` exactly as stored (that is what
//! [`VideoParams::config`] wants) and the AudioSpecificConfig out of `esds`.
//! Pure: bytes in, descriptions out.

use bytes::Bytes;

use crate::frame::{AudioCodec, AudioParams, TrackParams, VideoCodec, VideoParams};

/// What one `trak` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrakInfo {
    pub track_id: u32,
    /// `Ok` for a track edgerec can record; `Err` describes what it is (`video/mp4v`).
    pub params: Result<TrackParams, String>,
}

/// Iterates the boxes in `data` as `(type, payload)`.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), String>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let r = split_box(data);
        match r {
            Ok((kind, payload, rest)) => {
                data = rest;
                Some(Ok((kind, payload)))
            }
            Err(e) => {
                data = &[];
                Some(Err(e))
            }
        }
    })
}

/// A box split off the front of a buffer: type, payload, and the bytes after it.
type Split<'a> = ([u8; 4], &'a [u8], &'a [u8]);

fn split_box(data: &[u8]) -> Result<Split<'_>, String> {
    if data.len() < 8 {
        return Err(format!(
            "{} stray bytes where a box header should be",
            data.len()
        ));
    }
    let size32 = u32::from_be_bytes(data[0..4].try_into().unwrap_or_default());
    let kind: [u8; 4] = data[4..8].try_into().unwrap_or_default();
    let (header, size) = match size32 {
        0 => (8, data.len() as u64),
        1 => {
            if data.len() < 16 {
                return Err("truncated 64-bit box header".into());
            }
            (
                16,
                u64::from_be_bytes(data[8..16].try_into().unwrap_or_default()),
            )
        }
        n => (8, u64::from(n)),
    };
    if size < header as u64 || size > data.len() as u64 {
        return Err(format!(
            "box \"{}\" claims {size} bytes but {} remain",
            fourcc(&kind),
            data.len()
        ));
    }
    let size = size as usize;
    Ok((kind, &data[header..size], &data[size..]))
}

fn child<'a>(data: &'a [u8], want: &[u8; 4]) -> Result<Option<&'a [u8]>, String> {
    for b in boxes(data) {
        let (kind, payload) = b?;
        if &kind == want {
            return Ok(Some(payload));
        }
    }
    Ok(None)
}

fn need<'a>(data: &'a [u8], want: &[u8; 4], parent: &str) -> Result<&'a [u8], String> {
    child(data, want)?.ok_or_else(|| format!("{parent} has no \"{}\" box", fourcc(want)))
}

fn fourcc(k: &[u8; 4]) -> String {
    k.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

fn be_u16(d: &[u8], at: usize) -> Result<u16, String> {
    d.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "box too short".to_string())
}

fn be_u32(d: &[u8], at: usize) -> Result<u32, String> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "box too short".to_string())
}

/// Checks that every box inside `moov` that a parser descends into tiles its parent: sizes
/// at least a header, nothing running past the parent's end. The `mp4` crate loops forever
/// on a nested box whose size is 0 or smaller than its header, so a `moov` goes to it only
/// after this check.
pub fn check_tree(moov: &[u8]) -> Result<(), String> {
    check_children(moov, b"moov", 0)
}

fn check_children(data: &[u8], parent: &[u8; 4], depth: u32) -> Result<(), String> {
    if depth > 16 {
        return Err("boxes nested too deeply".into());
    }
    let mut rest = data;
    while rest.len() >= 8 {
        if rest[0..4] == [0, 0, 0, 0] {
            return Err(format!("a box inside \"{}\" has size 0", fourcc(parent)));
        }
        let (kind, payload, next) = split_box(rest)?;
        let children = match &kind {
            b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"edts" | b"mvex"
            | b"udta" | b"ilst" => Some(payload),
            // ISO meta is a full box; QuickTime meta is not.
            b"meta" => Some(match payload.get(4..8) {
                Some(b"hdlr") => payload,
                _ => payload.get(4..).unwrap_or_default(),
            }),
            b"stsd" => Some(payload.get(8..).unwrap_or_default()),
            b"avc1" | b"avc3" | b"hvc1" | b"hev1" => {
                Some(payload.get(VISUAL_CHILDREN..).unwrap_or_default())
            }
            b"mp4a" => Some(payload.get(28..).unwrap_or_default()),
            // Items of an ilst hold `data` boxes.
            _ if parent == b"ilst" => Some(payload),
            _ => None,
        };
        if let Some(c) = children {
            check_children(c, &kind, depth + 1)?;
        }
        rest = next;
    }
    Ok(())
}

/// Describes every `trak` of a `moov` payload (the bytes after the `moov` header).
pub fn parse_moov(moov: &[u8]) -> Result<Vec<TrakInfo>, String> {
    let mut out = Vec::new();
    for b in boxes(moov) {
        let (kind, trak) = b?;
        if &kind != b"trak" {
            continue;
        }
        let tkhd = need(trak, b"tkhd", "trak")?;
        let track_id = match tkhd.first() {
            Some(1) => be_u32(tkhd, 20)?,
            _ => be_u32(tkhd, 12)?,
        };
        let mdia = need(trak, b"mdia", "trak")?;
        let mdhd = need(mdia, b"mdhd", "mdia")?;
        let timescale = match mdhd.first() {
            Some(1) => be_u32(mdhd, 20)?,
            _ => be_u32(mdhd, 12)?,
        };
        if timescale == 0 {
            return Err(format!("track {track_id} has timescale 0"));
        }
        let hdlr = need(mdia, b"hdlr", "mdia")?;
        let handler: [u8; 4] = hdlr
            .get(8..12)
            .and_then(|h| h.try_into().ok())
            .ok_or("hdlr box too short")?;
        let stbl = need(need(mdia, b"minf", "mdia")?, b"stbl", "minf")?;
        let stsd = need(stbl, b"stsd", "stbl")?;
        let entries = stsd.get(8..).ok_or("stsd box too short")?;
        let (entry_kind, entry) = match boxes(entries).next() {
            Some(e) => e?,
            None => return Err(format!("track {track_id} has no sample entry")),
        };
        let params = match (&handler, &entry_kind) {
            (b"vide", b"avc1" | b"avc3") => Ok(video(entry, VideoCodec::H264, timescale)?),
            (b"vide", b"hvc1" | b"hev1") => Ok(video(entry, VideoCodec::H265, timescale)?),
            (b"soun", b"mp4a") => audio(entry, timescale)?,
            (b"vide", k) => Err(format!("video/{}", fourcc(k))),
            (b"soun", k) => Err(format!("audio/{}", fourcc(k))),
            (h, k) => Err(format!("{}/{}", fourcc(h), fourcc(k))),
        };
        out.push(TrakInfo { track_id, params });
    }
    Ok(out)
}

/// Offset of the child boxes inside a VisualSampleEntry payload.
const VISUAL_CHILDREN: usize = 78;

fn video(entry: &[u8], codec: VideoCodec, timescale: u32) -> Result<TrackParams, String> {
    let width = be_u16(entry, 24)?;
    let height = be_u16(entry, 26)?;
    if width == 0 || height == 0 {
        return Err(format!("video sample entry has size {width}x{height}"));
    }
    let children = entry
        .get(VISUAL_CHILDREN..)
        .ok_or("video sample entry too short")?;
    let (config, rfc6381) = match codec {
        VideoCodec::H264 => {
            let c = need(children, b"avcC", "the avc1 sample entry")?;
            if c.len() < 7 || c[0] != 1 {
                return Err("avcC record is malformed".into());
            }
            (c, format!("avc1.{:02X}{:02X}{:02X}", c[1], c[2], c[3]))
        }
        VideoCodec::H265 => {
            let c = need(children, b"hvcC", "the hvc1/hev1 sample entry")?;
            (c, hevc_rfc6381(c)?)
        }
    };
    Ok(TrackParams::Video(VideoParams {
        codec,
        width,
        height,
        config: Bytes::copy_from_slice(config),
        rfc6381,
        timescale,
    }))
}

/// RFC 6381 codec string from an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §E.3),
/// spelled like retina spells it for RTSP cameras, so both sources agree.
pub fn hevc_rfc6381(hvcc: &[u8]) -> Result<String, String> {
    if hvcc.len() < 23 || hvcc[0] != 1 {
        return Err("hvcC record is malformed".into());
    }
    let space = ["", "A", "B", "C"][usize::from(hvcc[1] >> 6)];
    let tier = if hvcc[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = hvcc[1] & 0x1f;
    let compat = u32::from_be_bytes([hvcc[2], hvcc[3], hvcc[4], hvcc[5]]).reverse_bits();
    let level = hvcc[12];
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{level}");
    let mut constraints = &hvcc[6..12];
    while let [head @ .., 0] = constraints {
        if head.is_empty() {
            break;
        }
        constraints = head;
    }
    for b in constraints {
        s.push_str(&format!(".{b:02X}"));
    }
    Ok(s)
}

fn audio(entry: &[u8], timescale: u32) -> Result<Result<TrackParams, String>, String> {
    let version = be_u16(entry, 8)?;
    let entry_channels = be_u16(entry, 16)?;
    let children_at = match version {
        0 => 28,
        1 => 44,
        2 => 64,
        v => return Err(format!("audio sample entry version {v} is unknown")),
    };
    let children = entry
        .get(children_at..)
        .ok_or("audio sample entry too short")?;
    let Some(esds) = child(children, b"esds")? else {
        return Err("mp4a sample entry has no esds box".into());
    };
    let (object_type, asc) = parse_esds(esds.get(4..).ok_or("esds box too short")?)?;
    // 0x40: MPEG-4 audio; 0x66..=0x68: MPEG-2 AAC main/LC/SSR.
    if !matches!(object_type, 0x40 | 0x66..=0x68) {
        return Ok(Err(format!("audio/mp4a (object type 0x{object_type:02x})")));
    }
    let asc = asc.ok_or("AAC track has no AudioSpecificConfig")?;
    let info = parse_asc(asc)?;
    let channels = if info.channels == 0 {
        entry_channels
    } else {
        info.channels
    };
    Ok(Ok(TrackParams::Audio(AudioParams {
        codec: AudioCodec::Aac,
        sample_rate: info.sample_rate,
        channels,
        config: Bytes::copy_from_slice(asc),
        timescale,
        frame_samples: info.frame_samples,
    })))
}

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
fn parse_esds(d: &[u8]) -> Result<(u8, Option<&[u8]>), String> {
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
#[derive(Debug, PartialEq, Eq)]
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

    fn mk(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

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
    fn hevc_codec_string_follows_iso_14496_15_annex_e() {
        let mut hvcc = vec![0u8; 23];
        hvcc[0] = 1;
        hvcc[1] = 0x01; // space 0, tier L, Main profile
        hvcc[2..6].copy_from_slice(&0x6000_0000u32.to_be_bytes());
        hvcc[6] = 0x90; // progressive + frame-only
        hvcc[12] = 93;
        assert_eq!(hevc_rfc6381(&hvcc).unwrap(), "hvc1.1.6.L93.90");
        hvcc[6] = 0;
        assert_eq!(hevc_rfc6381(&hvcc).unwrap(), "hvc1.1.6.L93.00");
        assert!(hevc_rfc6381(&hvcc[..10]).is_err());
    }

    #[test]
    fn box_larger_than_its_parent_is_reported_not_followed() {
        let mut data = mk(b"trak", &[0; 4]);
        data[3] = 200;
        let e = parse_moov(&data).unwrap_err();
        assert!(e.contains("claims 200 bytes"), "{e}");
    }

    #[test]
    fn nested_box_of_size_zero_or_below_its_header_is_refused() {
        let mut mdhd = mk(b"mdhd", &[0; 24]);
        let good = mk(b"trak", &mk(b"mdia", &mdhd));
        assert!(check_tree(&good).is_ok());
        mdhd[0..4].copy_from_slice(&0u32.to_be_bytes());
        let zero = mk(b"trak", &mk(b"mdia", &mdhd));
        assert!(check_tree(&zero).unwrap_err().contains("size 0"));
        mdhd[0..4].copy_from_slice(&4u32.to_be_bytes());
        let tiny = mk(b"trak", &mk(b"mdia", &mdhd));
        assert!(check_tree(&tiny).is_err());
    }

    #[test]
    fn track_without_media_box_is_an_error() {
        let tkhd = mk(b"tkhd", &[0; 84]);
        let data = mk(b"trak", &tkhd);
        let e = parse_moov(&data).unwrap_err();
        assert!(e.contains("no \"mdia\""), "{e}");
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
