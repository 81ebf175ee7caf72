//! The ADTS AAC writer (pure: segment events in, bytes out) and the scanner that finds where
//! a torn one's last complete frame ends.
//!
//! A segment file is:
//!
//! ```text
//! ID3v2.4 tag   one TXXX frame, description "edgerec": the segment's identity as JSON, so
//!               the index can be rebuilt from the file alone (ffmpeg and players skip an
//!               ID3v2 tag in front of ADTS, as they do for HLS packed audio)
//! frames        per AAC access unit: a 7-byte ADTS header (no CRC) from the
//!               AudioSpecificConfig, then the raw frame
//! ```
//!
//! Only the first audio track is written. ADTS has no room for a duration or an index,
//! and needs none: every frame says its length, so [`scan`] walks them and a crash costs
//! at most the frame being written.

use std::io::{Read, Seek, SeekFrom};

use super::{read_up_to, FormatError};
use crate::media::codec::aac::{object_type, rate, AacError, Bits, RATES};
use crate::media::frame::{AudioCodec, AudioParams, TrackParams};
use crate::media::segment::event::{Fragment, SegmentMeta, SegmentStart};

/// The ADTS header's length without CRC.
pub const HEADER_LEN: usize = 7;
/// Largest ADTS frame (13-bit length).
const MAX_FRAME: usize = 0x1fff;
/// The ID3v2 frame's description.
const META_KEY: &[u8] = b"edgerec";
/// Largest ID3v2 tag the scanner reads.
const MAX_ID3: u32 = 64 * 1024;

/// Why an ADTS file cannot hold a stream with this audio, if it cannot.
pub fn refusal(audio: Option<AudioCodec>) -> Option<String> {
    match audio {
        Some(AudioCodec::Aac) => None,
        Some(AudioCodec::Opus) => Some(
            "an .aac file (ADTS) holds AAC audio only, and this stream's audio is Opus; \
             record it as fmp4 or mp4, which hold Opus"
                .into(),
        ),
        None => Some("the stream has no audio track to write as .aac".into()),
    }
}

/// The fixed part of every frame's header, from an AudioSpecificConfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type − 1 (1 = AAC LC).
    pub profile: u8,
    pub freq_index: u8,
    pub channels: u8,
}

impl AdtsHeader {
    /// From an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1). HE-AAC (SBR, PS) signalled
    /// explicitly is written as its AAC core, which decoders extend implicitly, as every
    /// ADTS HE-AAC stream is. Refuses what ADTS cannot carry: object types past AAC LTP, a
    /// sampling rate outside its table, channels given by a program config element.
    pub fn from_asc(asc: &[u8]) -> Result<AdtsHeader, String> {
        let (aot, core_rate, channels) = Self::read_asc(asc).map_err(|e| e.to_string())?;
        if !(1..=4).contains(&aot) {
            return Err(format!(
                "AAC object type {aot} cannot be written as ADTS (it carries types 1 to 4: \
                 Main, LC, SSR, LTP, and HE-AAC as LC)"
            ));
        }
        if !(1..=7).contains(&channels) {
            return Err(format!(
                "AAC channel configuration {channels} cannot be written as ADTS \
                 (a program config element is not supported)"
            ));
        }
        let freq_index = core_rate
            .index()
            .ok_or("an AAC sampling rate outside ADTS's table")?;
        Ok(AdtsHeader {
            profile: aot as u8 - 1,
            freq_index,
            channels,
        })
    }

    /// The object type (the core's for explicit HE-AAC), the core's rate and the
    /// channel configuration.
    fn read_asc(asc: &[u8]) -> Result<(u32, crate::media::codec::aac::Rate, u8), AacError> {
        let mut b = Bits::new(asc);
        let mut aot = object_type(&mut b)?;
        let core_rate = rate(&mut b)?;
        let channels = b.read(4)? as u8;
        if matches!(aot, 5 | 29) {
            // The first rate read is the core's; skip the extension rate.
            rate(&mut b)?;
            aot = object_type(&mut b)?;
        }
        Ok((aot, core_rate, channels))
    }

    /// The core sampling rate.
    pub fn sample_rate(&self) -> u32 {
        RATES[usize::from(self.freq_index)]
    }

    /// Appends the 7-byte header of a frame of `payload` bytes.
    pub fn put(&self, out: &mut Vec<u8>, payload: usize) {
        let len = payload + HEADER_LEN;
        out.extend_from_slice(&[
            0xff,
            0xf1,
            (self.profile << 6) | (self.freq_index << 2) | (self.channels >> 2),
            ((self.channels & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f,
            0xfc,
        ]);
    }
}

/// The ID3v2.4 tag carrying `meta`.
pub fn id3_tag(meta: &SegmentMeta) -> Result<Vec<u8>, FormatError> {
    let json = serde_json::to_vec(meta)?;
    let mut frame = vec![3]; // UTF-8
    frame.extend_from_slice(META_KEY);
    frame.push(0);
    frame.extend_from_slice(&json);
    let mut out = Vec::with_capacity(frame.len() + 20);
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&synchsafe(frame.len() + 10));
    out.extend_from_slice(b"TXXX");
    out.extend_from_slice(&synchsafe(frame.len()));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&frame);
    Ok(out)
}

fn synchsafe(n: usize) -> [u8; 4] {
    let n = n.min(0x0fff_ffff) as u32;
    [
        (n >> 21) as u8 & 0x7f,
        (n >> 14) as u8 & 0x7f,
        (n >> 7) as u8 & 0x7f,
        n as u8 & 0x7f,
    ]
}

fn from_synchsafe(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, x| (acc << 7) | u32::from(x & 0x7f))
}

/// The writer of one stream's `.aac` files.
#[derive(Debug, Default)]
pub struct AdtsEncoder {
    /// The audio track written and its header.
    open: Option<(usize, AdtsHeader)>,
}

impl AdtsEncoder {
    pub fn new() -> AdtsEncoder {
        AdtsEncoder::default()
    }

    /// The ID3 tag that begins a segment's file. Refuses (with the reason) a stream without
    /// AAC audio, or AAC that ADTS cannot carry.
    pub fn init(&mut self, start: &SegmentStart) -> Result<Vec<u8>, FormatError> {
        let audio: Option<(usize, &AudioParams)> =
            start
                .params
                .tracks
                .iter()
                .enumerate()
                .find_map(|(i, t)| match t {
                    TrackParams::Audio(a) => Some((i, a)),
                    TrackParams::Video(_) => None,
                });
        if let Some(reason) = refusal(audio.map(|a| a.1.codec)) {
            return Err(FormatError::Refused { reason });
        }
        let Some((track, a)) = audio else {
            return Err(FormatError::Refused {
                reason: "no audio track".into(),
            });
        };
        let header =
            AdtsHeader::from_asc(&a.config).map_err(|reason| FormatError::Refused { reason })?;
        self.open = Some((track, header));
        id3_tag(&start.meta)
    }

    /// One ADTS frame per audio sample of the fragment (empty without audio).
    pub fn fragment(&mut self, frag: &Fragment) -> Result<Vec<u8>, FormatError> {
        let Some((track, header)) = self.open else {
            return Ok(Vec::new());
        };
        let Some(run) = frag.runs.iter().find(|r| r.track == track) else {
            return Ok(Vec::new());
        };
        let bytes: usize = run.samples.iter().map(|s| s.data.len() + HEADER_LEN).sum();
        let mut out = Vec::with_capacity(bytes);
        for s in &run.samples {
            if s.data.len() + HEADER_LEN > MAX_FRAME {
                return Err(FormatError::Config {
                    track,
                    reason: format!("a {}-byte AAC frame is too large for ADTS", s.data.len()),
                });
            }
            header.put(&mut out, s.data.len());
            out.extend_from_slice(&s.data);
        }
        Ok(out)
    }

    /// Ends the segment (nothing to patch).
    pub fn finish(&mut self) {
        self.open = None;
    }
}

/// What [`scan`] found in an ADTS file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdtsScan {
    pub meta: Option<SegmentMeta>,
    /// End of the last complete frame (of the ID3 tag when there is none). Everything
    /// after it is cut off.
    pub complete_end: u64,
    pub frames: u64,
    /// 1024 samples per frame at the core sampling rate, in milliseconds.
    pub duration_ms: u64,
    pub file_len: u64,
}

/// Scans an ADTS file: our ID3 tag, then frame after frame until one is incomplete or is
/// not followed by a header like its own (or the end of the file).
///
/// Errors only when reading fails or the file starts with neither an ID3 tag nor an ADTS
/// frame; a torn file is a normal result.
pub fn scan<R: Read + Seek>(mut r: R) -> Result<AdtsScan, FormatError> {
    let io = |offset: u64| move |source| FormatError::Io { offset, source };
    let file_len = r.seek(SeekFrom::End(0)).map_err(io(0))?;
    r.seek(SeekFrom::Start(0)).map_err(io(0))?;
    let mut out = AdtsScan {
        file_len,
        ..AdtsScan::default()
    };
    let mut head = [0u8; 10];
    let got = read_up_to(&mut r, &mut head).map_err(io(0))?;
    let mut at: u64 = 0;
    if got >= 3 && &head[..3] == b"ID3" {
        if got < 10 {
            return Ok(out);
        }
        let size = from_synchsafe(&head[6..10]);
        let end = 10 + u64::from(size) + if head[5] & 0x10 != 0 { 10 } else { 0 };
        if end > file_len {
            return Ok(out);
        }
        if size <= MAX_ID3 && head[3] == 4 {
            let mut body = vec![0u8; size as usize];
            r.read_exact(&mut body).map_err(io(10))?;
            out.meta = find_meta(&body);
        }
        at = end;
    } else if got < 2 || head[0] != 0xff || head[1] & 0xf6 != 0xf0 {
        return Err(FormatError::Malformed {
            offset: 0,
            reason: "neither an ID3 tag nor an ADTS frame".into(),
        });
    }
    out.complete_end = at;
    r.seek(SeekFrom::Start(at)).map_err(io(at))?;
    // The bytes every header of the stream shares: ID, layer, profile, rate, channels.
    let mut fixed: Option<[u8; 3]> = None;
    // End of the frames before the last one counted.
    let mut before_last = at;
    let mut skip = vec![0u8; MAX_FRAME];
    loop {
        let mut h = [0u8; HEADER_LEN];
        let got = read_up_to(&mut r, &mut h).map_err(io(at))?;
        let same = [h[1], h[2], h[3] & 0xc0];
        // The bytes read could start a header like the others (a header torn short, or
        // a whole one).
        let plausible = h[0] == 0xff
            && (got < 2 || h[1] & 0xf6 == 0xf0)
            && fixed.is_none_or(|f| (1..got.min(4)).all(|i| same[i - 1] == f[i - 1]));
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header_len = if h[1] & 1 == 1 {
            HEADER_LEN
        } else {
            HEADER_LEN + 2
        };
        let whole = got == HEADER_LEN && plausible && len >= header_len;
        if !whole || at + len as u64 > file_len {
            // A frame only counts when what follows it could be a header like its own (or
            // nothing): a torn frame's length may reach into garbage.
            if got > 0 && !(plausible && (got < HEADER_LEN || len >= header_len)) && out.frames > 0
            {
                out.frames -= 1;
                out.complete_end = before_last;
            }
            break;
        }
        r.read_exact(&mut skip[..len - HEADER_LEN])
            .map_err(io(at))?;
        fixed.get_or_insert(same);
        before_last = at;
        at += len as u64;
        out.frames += 1;
        out.complete_end = at;
    }
    if let Some(f) = fixed {
        let rate = RATES
            .get(usize::from((f[1] >> 2) & 0xf))
            .copied()
            .unwrap_or(0);
        if rate > 0 {
            out.duration_ms = out.frames * 1024 * 1000 / u64::from(rate);
        }
    }
    Ok(out)
}

/// Our identity out of the ID3v2.4 tag's frames.
fn find_meta(mut body: &[u8]) -> Option<SegmentMeta> {
    while body.len() >= 10 && body[0] != 0 {
        let size = from_synchsafe(&body[4..8]) as usize;
        let frame = body.get(10..10 + size)?;
        if &body[..4] == b"TXXX" && frame.len() > META_KEY.len() + 2 {
            let (key, rest) = frame[1..].split_at(META_KEY.len());
            if key == META_KEY && rest[0] == 0 {
                return serde_json::from_slice(&rest[1..]).ok();
            }
        }
        body = &body[10 + size..];
    }
    None
}

#[cfg(all(test, feature = "process-tests"))]
#[path = "adts_tests.rs"]
mod ffmpeg_tests;

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::media::format::Format;
    use crate::media::frame::{StreamParams, VideoCodec, VideoParams};
    use crate::media::segment::event::{Sample, TrackRun};

    fn meta() -> SegmentMeta {
        SegmentMeta {
            device: "pi".into(),
            app: String::new(),
            stream: "mic".into(),
            seq: 3,
            start_ms: 1_700_000_000_000,
            formats: vec![Format::Aac],
            time_quality: Some(crate::util::clockwatch::TimeQuality::Unsynced),
            boot: Some(crate::util::clockwatch::BootTime {
                id: "b0".into(),
                ms: 12_345,
                offset_ms: 1_699_999_987_655,
            }),
        }
    }

    fn start(codec: AudioCodec, asc: &'static [u8]) -> SegmentStart {
        SegmentStart {
            meta: meta(),
            params: Arc::new(StreamParams {
                tracks: vec![
                    TrackParams::Video(VideoParams {
                        codec: VideoCodec::H264,
                        width: 2,
                        height: 2,
                        config: Bytes::new(),
                        rfc6381: String::new(),
                        timescale: 90_000,
                    }),
                    TrackParams::Audio(AudioParams {
                        codec,
                        sample_rate: 48_000,
                        channels: 2,
                        config: Bytes::from_static(asc),
                        timescale: 48_000,
                        frame_samples: 1024,
                    }),
                ],
            }),
            base_dts: vec![0, 0],
        }
    }

    fn fragment(frames: usize) -> Fragment {
        Fragment {
            sequence: 1,
            runs: vec![
                TrackRun {
                    track: 0,
                    base_decode_time: 0,
                    samples: vec![Sample {
                        duration: 3000,
                        cts_offset: 0,
                        keyframe: true,
                        data: Bytes::from_static(b"video"),
                    }],
                },
                TrackRun {
                    track: 1,
                    base_decode_time: 0,
                    samples: (0..frames)
                        .map(|i| Sample {
                            duration: 1024,
                            cts_offset: 0,
                            keyframe: true,
                            data: Bytes::from(vec![i as u8; 100 + i]),
                        })
                        .collect(),
                },
            ],
        }
    }

    #[test]
    fn the_header_comes_from_the_audio_specific_config() {
        // AAC LC, 48 kHz, stereo.
        let h = AdtsHeader::from_asc(&[0x11, 0x90]).unwrap();
        assert_eq!((h.profile, h.freq_index, h.channels), (1, 3, 2));
        let mut out = Vec::new();
        h.put(&mut out, 100);
        assert_eq!(out, [0xff, 0xf1, 0x4c, 0x80, 0x0d, 0x7f, 0xfc]);
        // HE-AAC signalled explicitly (object type 5, core 24 kHz, output 48 kHz): the LC core.
        let h = AdtsHeader::from_asc(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!((h.profile, h.sample_rate(), h.channels), (1, 24_000, 2));
        // ELD (object type 39) and a program config element (channels 0) are refused.
        assert!(AdtsHeader::from_asc(&[0xf8, 0xe6, 0x20]).is_err());
        assert!(AdtsHeader::from_asc(&[0x11, 0x80]).is_err());
    }

    #[test]
    fn a_written_file_carries_its_identity_and_its_frames() {
        let mut enc = AdtsEncoder::new();
        let mut bytes = enc.init(&start(AudioCodec::Aac, &[0x11, 0x90])).unwrap();
        let head = bytes.len();
        assert_eq!(&bytes[..3], b"ID3");
        bytes.extend(enc.fragment(&fragment(47)).unwrap());
        let s = scan(Cursor::new(&bytes)).unwrap();
        assert_eq!(s.meta, Some(meta()));
        assert_eq!(s.frames, 47);
        assert_eq!(s.complete_end, bytes.len() as u64);
        assert_eq!(s.duration_ms, 47 * 1024 * 1000 / 48_000);
        // Torn anywhere: cut back to the end of a whole frame.
        let mut ends = vec![head as u64];
        for i in 0..47u64 {
            ends.push(ends.last().unwrap() + 107 + i);
        }
        for cut in head..bytes.len() {
            let s = scan(Cursor::new(&bytes[..cut])).unwrap();
            let want = *ends.iter().filter(|e| **e <= cut as u64).max().unwrap();
            assert_eq!(s.complete_end, want, "cut at {cut}");
        }
        // A fragment with no audio writes nothing.
        let mut video_only = fragment(0);
        video_only.runs.pop();
        assert!(enc.fragment(&video_only).unwrap().is_empty());
    }

    #[test]
    fn opus_and_no_audio_are_refused_with_the_reason() {
        let mut enc = AdtsEncoder::new();
        match enc.init(&start(AudioCodec::Opus, &[1])) {
            Err(FormatError::Refused { reason }) => assert!(reason.contains("Opus"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(refusal(None).unwrap().contains("no audio"));
        assert!(scan(Cursor::new(b"RIFF....")).is_err());
    }
}
