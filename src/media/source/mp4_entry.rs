//! Track descriptions of an MP4 file, read straight from the `moov` box bytes.
//!
//! The `mp4` crate parses the sample tables well but not the sample entries edgerec needs
//! (it ignores `hvc1`, keeps nothing of `hvcC`). So this module walks the raw boxes
//! `moov/trak/{tkhd, mdia/{mdhd, hdlr, minf/stbl/stsd}}` and turns each track's first sample
//! entry into [`TrackParams`], keeping `avcC`/`hvcC` exactly as stored (that is what
//! [`VideoParams::config`] wants) and the AudioSpecificConfig out of `esds`.
//! Pure: bytes in, descriptions out.

use bytes::Bytes;

use super::aac_config::{parse_asc, parse_esds};
use crate::media::frame::{AudioCodec, AudioParams, TrackParams, VideoCodec, VideoParams};

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
}
