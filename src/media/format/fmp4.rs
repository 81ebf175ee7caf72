//! The fragmented MP4 encoder: pure functions from segment events to bytes.
//!
//! A segment file is:
//!
//! ```text
//! ftyp            iso6, compatible iso6 + mp41
//! uuid            META_UUID, then the SegmentMeta as JSON: the file describes itself
//! moov            mvhd, one trak per track (empty sample tables), mvex with a trex per track
//! moof + mdat     one pair per Fragment, written with a single write call
//! ...
//! ```
//!
//! Track ids are the track index + 1, and each track's media timescale is the track's own
//! timescale, so timestamps pass through unchanged. A crash can only lose the fragment being
//! written; [`crate::media::format::scan`] finds where the last complete one ends.

use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Dinf, Dops, Dref, Esds, FixedPoint, Ftyp, Hdlr, Hvc1, Hvcc, Mdhd,
    Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Opus, OpusChannelMapping, Smhd, Stbl, Stco,
    Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};

use super::boxes::{encode_atom, header_len, put_header, NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS};
use super::FormatError;
use crate::media::frame::{AudioCodec, AudioParams, TrackParams, VideoCodec, VideoParams};
use crate::media::segment::event::{Fragment, SegmentMeta, SegmentStart};

/// Extended type of the top-level `uuid` box that carries the [`SegmentMeta`] as JSON.
pub const META_UUID: [u8; 16] = [
    0xfd, 0xb8, 0x1d, 0x22, 0x68, 0x17, 0x4b, 0x91, 0xa6, 0x4d, 0x43, 0x01, 0xe9, 0xe2, 0x88, 0xfb,
];

/// Seconds from 1904-01-01 (the MP4 epoch) to 1970-01-01.
const MP4_EPOCH_OFFSET_S: u64 = 2_082_844_800;

/// Encodes the init section of a segment: `ftyp`, the metadata `uuid` box, and `moov`.
pub fn encode_init(start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(1024);
    encode_atom(&ftyp(), "ftyp", &mut out)?;
    encode_meta(&start.meta, &mut out)?;
    encode_atom(&init_moov(start)?, "moov", &mut out)?;
    Ok(out)
}

/// The init section without our metadata (`ftyp` + `moov`): an HLS recording's EXT-X-MAP.
pub fn encode_init_section(start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(1024);
    encode_atom(&ftyp(), "ftyp", &mut out)?;
    encode_atom(&init_moov(start)?, "moov", &mut out)?;
    Ok(out)
}

/// The `ftyp` every edgerec MP4 starts with.
pub(crate) fn ftyp() -> Ftyp {
    Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"mp41".into()],
    }
}

/// Appends the `uuid` box holding `meta` as JSON.
pub(crate) fn encode_meta(meta: &SegmentMeta, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let json = serde_json::to_vec(meta)?;
    put_header(out, b"uuid", 16 + json.len() as u64);
    out.extend_from_slice(&META_UUID);
    out.extend_from_slice(&json);
    Ok(())
}

/// The init `moov`: every track with empty sample tables, and `mvex` announcing fragments.
fn init_moov(start: &SegmentStart) -> Result<Moov, FormatError> {
    let created = mp4_time(start.meta.start_ms);
    let tracks = &start.params.tracks;
    let trak = tracks
        .iter()
        .enumerate()
        .map(|(i, t)| trak(i, t, created))
        .collect::<Result<Vec<_>, _>>()?;
    let trex = (0..tracks.len())
        .map(|i| Trex {
            track_id: track_id(i),
            default_sample_description_index: 1,
            ..Default::default()
        })
        .collect();
    Ok(Moov {
        mvhd: Mvhd {
            creation_time: created,
            modification_time: created,
            timescale: 1000,
            duration: 0,
            rate: 1u16.into(),
            volume: 1u8.into(),
            next_track_id: track_id(tracks.len()),
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak,
        ..Default::default()
    })
}

/// The MP4 track id of track index `i`.
pub(crate) fn track_id(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

/// Wall time in ms since the Unix epoch as seconds since the MP4 epoch.
fn mp4_time(unix_ms: i64) -> u64 {
    (unix_ms.max(0) as u64 / 1000) + MP4_EPOCH_OFFSET_S
}

/// A `trak` with an empty sample table for track index `i`.
fn trak(i: usize, params: &TrackParams, created: u64) -> Result<Trak, FormatError> {
    let (tkhd, handler, name, minf_header) = match params {
        TrackParams::Video(v) => (
            Tkhd {
                width: v.width.into(),
                height: v.height.into(),
                ..Default::default()
            },
            b"vide",
            "VideoHandler",
            (Some(Vmhd::default()), None),
        ),
        TrackParams::Audio(_) => (
            Tkhd {
                volume: 1u8.into(),
                alternate_group: 1,
                ..Default::default()
            },
            b"soun",
            "SoundHandler",
            (None, Some(Smhd::default())),
        ),
    };
    Ok(Trak {
        tkhd: Tkhd {
            creation_time: created,
            modification_time: created,
            track_id: track_id(i),
            enabled: true,
            in_movie: true,
            ..tkhd
        },
        mdia: Mdia {
            mdhd: Mdhd {
                creation_time: created,
                modification_time: created,
                timescale: params.timescale(),
                duration: 0,
                language: "und".to_string(),
            },
            hdlr: Hdlr {
                handler: handler.into(),
                name: name.to_string(),
            },
            minf: Minf {
                vmhd: minf_header.0,
                smhd: minf_header.1,
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![Url::default().into()],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![sample_entry(i, params)?],
                    },
                    stco: Some(Stco::default()),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    })
}

/// The sample entry (`stsd` child) of a track.
fn sample_entry(i: usize, params: &TrackParams) -> Result<mp4_atom::Codec, FormatError> {
    let bad = |reason: String| FormatError::Config { track: i, reason };
    match params {
        TrackParams::Video(v) => video_entry(v).map_err(bad),
        TrackParams::Audio(a) => audio_entry(a).map_err(bad),
    }
}

fn video_entry(v: &VideoParams) -> Result<mp4_atom::Codec, String> {
    let visual = Visual {
        data_reference_index: 1,
        width: v.width,
        height: v.height,
        ..Default::default()
    };
    let mut config = &v.config[..];
    Ok(match v.codec {
        VideoCodec::H264 => {
            let avcc = Avcc::decode_body(&mut config).map_err(|e| format!("avcC record: {e}"))?;
            Avc1 {
                visual,
                avcc,
                ..Default::default()
            }
            .into()
        }
        VideoCodec::H265 => {
            let hvcc = Hvcc::decode_body(&mut config).map_err(|e| format!("hvcC record: {e}"))?;
            Hvc1 {
                visual,
                hvcc,
                ..Default::default()
            }
            .into()
        }
    })
}

fn audio_entry(a: &AudioParams) -> Result<mp4_atom::Codec, String> {
    let audio = Audio {
        data_reference_index: 1,
        channel_count: a.channels,
        sample_size: 16,
        // 16.16 fixed point: rates above 65535 Hz do not fit and are left 0 (the decoder
        // configuration carries the real rate).
        sample_rate: FixedPoint::new(u16::try_from(a.sample_rate).unwrap_or(0), 0),
    };
    Ok(match a.codec {
        AudioCodec::Aac => {
            if a.config.len() < 2 {
                return Err("AudioSpecificConfig shorter than 2 bytes".to_string());
            }
            Mp4a {
                audio,
                esds: Esds {
                    es_desc: EsDescriptor {
                        es_id: 0,
                        dec_config: DecoderConfig {
                            object_type_indication: 0x40, // MPEG-4 audio
                            stream_type: 5,               // audio stream
                            dec_specific: Some(DecoderSpecific {
                                raw: a.config.to_vec(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                btrt: None,
                taic: None,
            }
            .into()
        }
        AudioCodec::Opus => Opus {
            audio: Audio {
                // ISO/IEC 23003-5 style: Opus entries always say 48 kHz.
                sample_rate: 48000u16.into(),
                ..audio
            },
            dops: dops(&a.config)?,
            btrt: None,
        }
        .into(),
    })
}

/// Converts an OpusHead payload (RFC 7845 §5.1, little-endian, magic optional) into `dOps`.
fn dops(head: &[u8]) -> Result<Dops, String> {
    let head = head.strip_prefix(b"OpusHead").unwrap_or(head);
    if head.len() < 11 {
        return Err(format!(
            "OpusHead is {} bytes, needs at least 11",
            head.len()
        ));
    }
    let channels = head[1];
    let family = head[10];
    let channel_mapping = if family == 0 {
        None
    } else {
        let table = head
            .get(11..13 + usize::from(channels))
            .ok_or("OpusHead channel mapping table is truncated")?;
        Some(OpusChannelMapping {
            family,
            stream_count: table[0],
            coupled_count: table[1],
            channel_mapping: table[2..].to_vec(),
        })
    };
    Ok(Dops {
        output_channel_count: channels,
        pre_skip: u16::from_le_bytes([head[2], head[3]]),
        input_sample_rate: u32::from_le_bytes([head[4], head[5], head[6], head[7]]),
        output_gain: i16::from_le_bytes([head[8], head[9]]),
        channel_mapping,
    })
}

/// Encodes one fragment as a `moof` followed by one `mdat` holding every run's samples in
/// order, as one contiguous buffer (the store writes it with a single call).
///
/// Each run becomes a `traf` with `default-base-is-moof`, a version 1 `tfdt`, and a version 1
/// `trun` carrying per-sample duration, size, flags and signed composition offset. Fragments
/// are about a second long; one whose media exceeds 2 GiB cannot be addressed by `trun`'s
/// 32-bit data offset and is not supported.
pub fn encode_fragment(start: &SegmentStart, frag: &Fragment) -> Vec<u8> {
    debug_assert!(frag
        .runs
        .iter()
        .all(|r| r.track < start.params.tracks.len()));
    let media_len = frag.media_bytes() as u64;
    // The data offsets depend on the moof's size, which does not depend on their values.
    let probe = build_moof(frag, 0);
    let moof_len = encode_moof(&probe).len() as u64;
    let first_data = moof_len + header_len(media_len);
    let moof = encode_moof(&build_moof(frag, first_data));

    let mut out = Vec::with_capacity((moof_len + header_len(media_len) + media_len) as usize);
    out.extend_from_slice(&moof);
    put_header(&mut out, b"mdat", media_len);
    for sample in frag.runs.iter().flat_map(|r| &r.samples) {
        out.extend_from_slice(&sample.data);
    }
    out
}

/// The `moof` of `frag`, whose first sample byte is `first_data` bytes after the moof start.
fn build_moof(frag: &Fragment, first_data: u64) -> Moof {
    let mut data_offset = first_data;
    let traf = frag
        .runs
        .iter()
        .map(|run| {
            let entries: Vec<TrunEntry> = run
                .samples
                .iter()
                .map(|s| TrunEntry {
                    duration: Some(s.duration),
                    size: Some(s.data.len() as u32),
                    flags: Some(if s.keyframe {
                        SYNC_SAMPLE_FLAGS
                    } else {
                        NON_SYNC_SAMPLE_FLAGS
                    }),
                    cts: Some(i64::from(s.cts_offset)),
                })
                .collect();
            let traf = Traf {
                tfhd: Tfhd {
                    track_id: track_id(run.track),
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: run.base_decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(i32::try_from(data_offset).unwrap_or(i32::MAX)),
                    samples: entries.into(),
                }],
                ..Default::default()
            };
            data_offset += run.samples.iter().map(|s| s.data.len() as u64).sum::<u64>();
            traf
        })
        .collect();
    Moof {
        mfhd: Mfhd {
            sequence_number: frag.sequence,
        },
        traf,
    }
}

fn encode_moof(moof: &Moof) -> Vec<u8> {
    let mut out = Vec::new();
    // Cannot fail: every field fits its box (composition offsets are i32 and trun v1 is
    // signed 32-bit; the moof of a ~1 s fragment is far below 4 GiB).
    if let Err(e) = mp4_atom::Encode::encode(moof, &mut out) {
        unreachable!("moof encoding failed: {e}");
    }
    out
}

#[cfg(all(test, feature = "process-tests"))]
#[path = "fmp4_tests.rs"]
mod tests;
