//! AAC over RTP as MP4A-LATM (RFC 6416, which replaced RFC 3016): the payload is LATM
//! AudioMuxElements, each holding one or more AAC frames behind byte-length fields
//! (PayloadLengthInfo). This is what GStreamer's `rtspclientsink` sends for AAC (its
//! default payloader, `rtpmp4apay`), what ffmpeg sends with `-rtpflags latm`, and what many
//! encoders and some cameras send. The frames are recorded exactly as `mpeg4-generic` AAC
//! is: the same `mp4a` track, with the AudioSpecificConfig taken from the StreamMuxConfig.
//!
//! # Why hand-written
//!
//! retina (0.4) depacketizes `mpeg4-generic` only, and no maintained crate reads LATM. The
//! format is small but bit-oriented: the AudioSpecificConfig inside a StreamMuxConfig has no
//! length field (`audioMuxVersion` 0) and must be parsed to its end, and with an in-band
//! config the frames that follow start at any bit. Both are here and in `latm_config`.
//!
//! # What is accepted
//!
//! - `a=rtpmap:N MP4A-LATM/RATE[/CH]`; `fmtp` `cpresent=0` with `config=` (the
//!   StreamMuxConfig in hex), or `cpresent=1` (the default) with the config in-band,
//!   `config=` then being optional.
//! - Several AudioMuxElements per packet, each with any number of sub-frames; one element
//!   split over several packets with the same timestamp, the marker bit on the last. A
//!   packet with the marker that does not yet hold whole elements waits for more with the
//!   same timestamp (a sender marking every fragment), and elements never marked are taken
//!   when the timestamp moves on.
//! - Frame `k` of a packet is stamped with the RTP timestamp plus `k` frame durations.
//!
//! Loss (a sequence gap) drops the element being assembled, and the packets after the gap
//! until an element surely starts (after a marker bit, or at a new timestamp), since a
//! continuation fragment cannot be told from the start of an element. Memory is bounded: [`MAX_PENDING`] bytes assembling, and the shared queue
//! bound. Malformed or unsupported input is a [`DepackError`], never a panic.

use std::collections::VecDeque;

use bytes::Bytes;

use super::latm_config::{self, Bits, LatmError, MuxConfig, Tail};
use super::{DepackError, Rtp, SeqCheck, Sequence, Timeline, Unit, MAX_QUEUED_UNITS};
use crate::media::frame::{AudioCodec, AudioParams};

/// Largest AAC frame accepted (6144 bits per channel, 8 channels, rounded up).
const MAX_FRAME: usize = 8192;
/// Bytes of AudioMuxElements being assembled at most (64 sub-frames of the largest frame).
pub const MAX_PENDING: usize = 64 * MAX_FRAME;

const CODEC: &str = "MP4A-LATM";

fn depack_error(e: LatmError) -> DepackError {
    match e {
        LatmError::Unsupported(reason) => DepackError::Unsupported {
            codec: CODEC,
            reason,
        },
        LatmError::Malformed(reason) => DepackError::Payload {
            codec: CODEC,
            reason,
        },
        LatmError::Truncated => DepackError::Payload {
            codec: CODEC,
            reason: "AudioMuxElement cut short".into(),
        },
    }
}

#[derive(Debug)]
pub struct Latm {
    clock_rate: u32,
    /// `cpresent=1`: every AudioMuxElement starts with `useSameStreamMux`.
    inband: bool,
    /// The StreamMuxConfig elements are read with (from the SDP, or the last in-band one).
    mux: Option<MuxConfig>,
    /// Parameters of the last pulled frame; before any, the SDP config's.
    params: Option<AudioParams>,
    seq: Sequence,
    timeline: Timeline,
    /// Elements being assembled, and their RTP timestamp (extended).
    pending: Vec<u8>,
    pending_pts: i64,
    /// After a loss: the timestamp of the packets being dropped, until one with the marker
    /// bit has gone by or the timestamp changes (a new element starts either way).
    resync: Option<i64>,
    out: VecDeque<(Unit, AudioParams)>,
}

/// What one parse of the assembled bytes gave.
struct Parsed {
    frames: Vec<(Bytes, AudioParams)>,
    mux: Option<MuxConfig>,
}

impl Latm {
    /// From the SDP: the RTP clock rate and the fmtp (`cpresent`, `config`).
    pub fn new(clock_rate: u32, fmtp: &[(String, String)]) -> Result<Latm, LatmError> {
        let get = |k: &str| {
            fmtp.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.trim())
        };
        let inband = get("cpresent").is_none_or(|v| v != "0");
        let mux = get("config").map(latm_config::from_hex).transpose()?;
        if !inband && mux.is_none() {
            return Err(LatmError::Malformed(
                "cpresent=0 but no config= (StreamMuxConfig) in the fmtp".into(),
            ));
        }
        if clock_rate == 0 {
            return Err(LatmError::Malformed("RTP clock rate 0".into()));
        }
        Ok(Latm {
            clock_rate,
            inband,
            params: mux.as_ref().map(|m| audio_params(m, clock_rate)),
            mux,
            seq: Sequence::default(),
            timeline: Timeline::default(),
            pending: Vec::new(),
            pending_pts: 0,
            resync: None,
            out: VecDeque::new(),
        })
    }

    /// The parameters of the last pulled frame (`None` while an in-band config has not
    /// arrived).
    pub fn params(&self) -> Option<&AudioParams> {
        self.params.as_ref()
    }

    pub fn pull(&mut self) -> Option<Unit> {
        let (unit, params) = self.out.pop_front()?;
        self.params = Some(params);
        Some(unit)
    }

    pub fn push(&mut self, pkt: &Rtp<'_>) -> Result<(), DepackError> {
        let gap = match self.seq.check(pkt.seq) {
            SeqCheck::Old => return Ok(()),
            SeqCheck::Gap => true,
            SeqCheck::InOrder => false,
        };
        let pts = self.timeline.extend(pkt.timestamp);
        if gap {
            self.pending.clear();
            self.resync = Some(pts);
        }
        if let Some(ts) = self.resync {
            if gap || pts == ts {
                // This packet may continue an element whose start was lost; after its
                // marker, the next packet starts one.
                self.resync = (!pkt.marker).then_some(pts);
                return Ok(());
            }
            // A new timestamp: a new element starts here.
            self.resync = None;
        }
        if pkt.payload.is_empty() {
            return Err(depack_error(LatmError::Malformed("empty payload".into())));
        }
        let mut result = Ok(());
        if !self.pending.is_empty() && pts != self.pending_pts {
            // Elements whose last packet had no marker: take them if they are whole.
            result = self.flush(true);
        }
        if self.pending.is_empty() {
            self.pending_pts = pts;
        }
        if self.pending.len() + pkt.payload.len() > MAX_PENDING {
            self.pending.clear();
            return Err(DepackError::TooLarge);
        }
        self.pending.extend_from_slice(pkt.payload);
        if pkt.marker {
            let r = self.flush(false);
            result = result.and(r);
        }
        result
    }

    /// Reads the assembled bytes as whole elements and queues their frames. When they end
    /// inside an element, they wait for more unless `last`.
    fn flush(&mut self, last: bool) -> Result<(), DepackError> {
        match parse(
            &self.pending,
            self.inband,
            self.mux.clone(),
            self.clock_rate,
        ) {
            Ok(parsed) => {
                self.pending.clear();
                self.mux = parsed.mux;
                let mut pts = self.pending_pts;
                for (data, params) in parsed.frames {
                    let step = i64::from(params.frame_samples);
                    if self.out.len() >= MAX_QUEUED_UNITS {
                        self.out.pop_front();
                    }
                    let unit = Unit {
                        pts,
                        keyframe: true,
                        data,
                    };
                    self.out.push_back((unit, params));
                    pts += step;
                }
                Ok(())
            }
            Err(LatmError::Truncated) if !last => Ok(()),
            Err(e) => {
                self.pending.clear();
                Err(depack_error(e))
            }
        }
    }
}

/// The MP4 track parameters a StreamMuxConfig gives, in the RTP clock.
fn audio_params(m: &MuxConfig, clock_rate: u32) -> AudioParams {
    let step = i64::from(m.info.frame_samples) * i64::from(clock_rate)
        / i64::from(m.info.sample_rate.max(1));
    AudioParams {
        codec: AudioCodec::Aac,
        sample_rate: m.info.sample_rate,
        channels: m.info.channels.max(1),
        config: m.asc.clone(),
        timescale: clock_rate,
        frame_samples: step.clamp(1, 1 << 20) as u32,
    }
}

/// Reads `data` as a sequence of whole AudioMuxElements.
fn parse(
    data: &[u8],
    inband: bool,
    mut mux: Option<MuxConfig>,
    clock_rate: u32,
) -> Result<Parsed, LatmError> {
    let mut r = Bits::new(data);
    let mut frames = Vec::new();
    let mut params = mux.as_ref().map(|m| audio_params(m, clock_rate));
    while r.remaining() > 0 {
        if inband && r.read(1)? == 0 {
            let m = latm_config::stream_mux_config(&mut r, Tail::Strict)?;
            params = Some(audio_params(&m, clock_rate));
            mux = Some(m);
        }
        let (Some(m), Some(p)) = (&mux, &params) else {
            // useSameStreamMux before any config: nothing here can be read. Senders repeat
            // the config, so frames flow from the next one.
            return Ok(Parsed {
                frames: Vec::new(),
                mux,
            });
        };
        for _ in 0..m.sub_frames {
            let mut len = 0usize;
            loop {
                let b = r.read(8)?;
                len += b as usize;
                if b != 255 {
                    break;
                }
                if len > MAX_FRAME {
                    return Err(LatmError::Malformed(format!(
                        "a frame of more than {MAX_FRAME} bytes"
                    )));
                }
            }
            if len > MAX_FRAME {
                return Err(LatmError::Malformed(format!("a frame of {len} bytes")));
            }
            let frame = r.bytes(len)?;
            if !frame.is_empty() {
                frames.push((Bytes::from(frame), p.clone()));
            }
        }
        let other = usize::try_from(m.other_data_bits)
            .map_err(|_| LatmError::Malformed("other data too long".into()))?;
        r.skip(other)?;
        r.byte_align();
    }
    Ok(Parsed { frames, mux })
}

#[cfg(test)]
#[path = "latm_tests.rs"]
mod tests;
