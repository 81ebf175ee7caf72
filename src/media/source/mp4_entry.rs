//! What one track of an MP4 file is, from the `trak` mp4-atom decodes: its first sample
//! entry (`avc1`/`avc3`, `hvc1`/`hev1`, `mp4a`, `Opus`) turned into [`TrackParams`].
//!
//! The decoder configuration records (`avcC`/`hvcC`) are re-encoded from mp4-atom's types,
//! which is what every format sink does with [`VideoParams::config`] anyway; AAC's
//! AudioSpecificConfig is the `esds` DecoderSpecificInfo as stored, and Opus's config is the
//! OpusHead that `dOps` carries. Pure: a decoded box in, a description out.

use bytes::Bytes;
use mp4_atom::{Atom, Avcc, Codec, Dops, Encode, FourCC, Hvcc, Mp4a, Trak, Visual};

use super::mp4_error::Mp4Error;
use crate::media::codec::aac::parse_asc;
use crate::media::codec::{avc, hevc};
use crate::media::frame::{AudioCodec, AudioParams, TrackParams, VideoParams};

/// What one `trak` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackKind {
    /// A track edgerec records; `nal_length` is the video's NAL length field size in bytes.
    Usable {
        params: TrackParams,
        nal_length: Option<u8>,
    },
    /// A track edgerec does not record, described as `video/mp4v` or `audio/mp4a (object
    /// type 0x6b)`.
    Other(String),
}

/// The track's id and what it holds. An error is a track too damaged to describe.
pub fn describe(trak: &Trak) -> Result<(u32, TrackKind), Mp4Error> {
    let track_id = trak.tkhd.track_id;
    let timescale = trak.mdia.mdhd.timescale;
    if timescale == 0 {
        return Err(Mp4Error::ZeroTimescale { track_id });
    }
    let handler = trak.mdia.hdlr.handler;
    let entry = trak
        .mdia
        .minf
        .stbl
        .stsd
        .codecs
        .first()
        .ok_or(Mp4Error::NoSampleEntry { track_id })?;
    let video = handler == FourCC::new(b"vide");
    let audio = handler == FourCC::new(b"soun");
    let kind = match entry {
        Codec::Avc1(e) if video => avc(&e.visual, &e.avcc, timescale)?,
        Codec::Avc3(e) if video => avc(&e.visual, &e.avcc, timescale)?,
        Codec::Hvc1(e) if video => hevc(&e.visual, &e.hvcc, timescale)?,
        Codec::Hev1(e) if video => hevc(&e.visual, &e.hvcc, timescale)?,
        Codec::Mp4a(e) if audio => aac(e, timescale)?,
        Codec::Opus(e) if audio => TrackKind::Usable {
            params: TrackParams::Audio(AudioParams {
                codec: AudioCodec::Opus,
                // Opus always decodes at 48 kHz (RFC 7845 §5.1); dOps's rate is the input's.
                sample_rate: 48_000,
                channels: u16::from(e.dops.output_channel_count),
                config: opus_head(&e.dops),
                timescale,
                // The common 20 ms frame; only the last frame of a segment uses it.
                frame_samples: 960,
            }),
            nal_length: None,
        },
        other => {
            let kind = fourcc(&entry_kind(other));
            TrackKind::Other(match (video, audio) {
                (true, _) => format!("video/{kind}"),
                (_, true) => format!("audio/{kind}"),
                _ => format!("{}/{kind}", fourcc(handler.as_ref())),
            })
        }
    };
    Ok((track_id, kind))
}

fn visual_size(v: &Visual) -> Result<(u16, u16), Mp4Error> {
    if v.width == 0 || v.height == 0 {
        return Err(Mp4Error::VideoSize {
            width: v.width,
            height: v.height,
        });
    }
    Ok((v.width, v.height))
}

/// The body of a decoded box, as stored in a sample entry.
fn body<T: Atom>(atom: &T) -> Result<Vec<u8>, Mp4Error> {
    let mut out = Vec::new();
    atom.encode_body(&mut out)
        .map_err(|source| Mp4Error::Decode {
            what: T::KIND.to_string(),
            source,
        })?;
    Ok(out)
}

fn avc(v: &Visual, avcc: &Avcc, timescale: u32) -> Result<TrackKind, Mp4Error> {
    visual_size(v)?;
    let sets = avc::parse_record(&body(avcc)?)?;
    let params = avc::params(&sets, timescale)?;
    video(v, params, sets.nal_length_size)
}

fn hevc(v: &Visual, hvcc: &Hvcc, timescale: u32) -> Result<TrackKind, Mp4Error> {
    visual_size(v)?;
    let sets = hevc::parse_record(&body(hvcc)?)?;
    let params = hevc::params(&sets, timescale)?;
    video(v, params, sets.nal_length_size)
}

/// A video track: the record and codec string rebuilt by the codec toolkit from the
/// entry's parameter sets, the picture size the sample entry gives.
fn video(v: &Visual, params: VideoParams, nal_length: u8) -> Result<TrackKind, Mp4Error> {
    let (width, height) = visual_size(v)?;
    Ok(TrackKind::Usable {
        params: TrackParams::Video(VideoParams {
            width,
            height,
            ..params
        }),
        nal_length: Some(nal_length),
    })
}

fn aac(e: &Mp4a, timescale: u32) -> Result<TrackKind, Mp4Error> {
    let dec = &e.esds.es_desc.dec_config;
    let object_type = dec.object_type_indication;
    // 0x40: MPEG-4 audio; 0x66..=0x68: MPEG-2 AAC main/LC/SSR.
    if !matches!(object_type, 0x40 | 0x66..=0x68) {
        return Ok(TrackKind::Other(format!(
            "audio/mp4a (object type 0x{object_type:02x})"
        )));
    }
    let asc = match &dec.dec_specific {
        Some(d) if !d.raw.is_empty() => &d.raw,
        _ => return Err(Mp4Error::NoAudioSpecificConfig),
    };
    let info = parse_asc(asc).map_err(Mp4Error::AudioSpecificConfig)?;
    let channels = if info.channels == 0 {
        e.audio.channel_count
    } else {
        info.channels
    };
    Ok(TrackKind::Usable {
        params: TrackParams::Audio(AudioParams {
            codec: AudioCodec::Aac,
            sample_rate: info.sample_rate,
            channels,
            config: Bytes::copy_from_slice(asc),
            timescale,
            frame_samples: info.frame_samples,
        }),
        nal_length: None,
    })
}

/// The OpusHead payload (RFC 7845 §5.1, without the magic) that a `dOps` box carries.
pub(crate) fn opus_head(d: &Dops) -> Bytes {
    let mut h = vec![1, d.output_channel_count];
    h.extend_from_slice(&d.pre_skip.to_le_bytes());
    h.extend_from_slice(&d.input_sample_rate.to_le_bytes());
    h.extend_from_slice(&d.output_gain.to_le_bytes());
    match &d.channel_mapping {
        None => h.push(0),
        Some(m) => {
            h.extend_from_slice(&[m.family, m.stream_count, m.coupled_count]);
            h.extend_from_slice(&m.channel_mapping);
        }
    }
    Bytes::from(h)
}

/// The box type of a sample entry, for naming an unsupported one.
fn entry_kind(c: &Codec) -> [u8; 4] {
    if let Codec::Unknown(kind, _) = c {
        return (*kind).into();
    }
    let mut b = Vec::new();
    match c.encode(&mut b) {
        Ok(()) => b
            .get(4..8)
            .and_then(|k| k.try_into().ok())
            .unwrap_or(*b"????"),
        Err(_) => *b"????",
    }
}

fn fourcc(k: &[u8; 4]) -> String {
    k.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

#[cfg(test)]
#[path = "mp4_entry_tests.rs"]
mod tests;
