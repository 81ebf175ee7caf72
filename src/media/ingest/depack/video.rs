//! The H.264/H.265 access-unit assembler shared by both codecs: NAL units from single,
//! aggregation and fragmentation packets are collected per RTP timestamp; an access unit
//! ends at the marker bit or when the timestamp changes. Parameter sets (in-band or from
//! the SDP) go into the decoder configuration, never into samples.
//!
//! After a loss, or any malformed packet, everything is dropped until the next key frame,
//! so a frame that references missing data is never emitted.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::nal_sink::NalSink;
use super::{h264, h265, DepackError, Rtp, SeqCheck, Sequence, Timeline, Unit};
use super::{MAX_QUEUED_UNITS, MAX_UNIT_BYTES};
use crate::media::codec::{avc, hevc, nal_type};
use crate::media::frame::{VideoCodec, VideoParams};

/// RTP clock rate of H.264 and H.265 (RFC 6184 §8.2.1, RFC 7798 §7.1).
const RTP_VIDEO_CLOCK: u32 = 90_000;

/// Parameter sets seen so far, and the params built from them.
#[derive(Debug, Default)]
pub struct ParamSets {
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
    dirty: bool,
}

impl ParamSets {
    fn set(slot: &mut Option<Bytes>, nal: &[u8], dirty: &mut bool) {
        if slot.as_deref() != Some(nal) {
            *slot = Some(Bytes::copy_from_slice(nal));
            *dirty = true;
        }
    }
}

/// The assembler for one video track.
#[derive(Debug)]
pub struct Video {
    codec: VideoCodec,
    seq: Sequence,
    timeline: Timeline,
    sets: ParamSets,
    params: Option<VideoParams>,
    /// NAL units of the access unit being assembled, and its RTP timestamp.
    nals: Vec<Bytes>,
    au_ts: Option<u32>,
    au_bytes: usize,
    /// A fragmented NAL unit being reassembled.
    fu: Option<BytesMut>,
    /// Drop access units until a key frame (start, after loss or bad input).
    need_key: bool,
    /// The current access unit is damaged: drop it when it ends.
    broken: bool,
    out: VecDeque<Unit>,
}

impl Video {
    /// `sprop` are the parameter sets from the SDP (each with its NAL header).
    pub fn new(codec: VideoCodec, sprop: &[Bytes]) -> Video {
        let mut v = Video {
            codec,
            seq: Sequence::default(),
            timeline: Timeline::default(),
            sets: ParamSets::default(),
            params: None,
            nals: Vec::new(),
            au_ts: None,
            au_bytes: 0,
            fu: None,
            need_key: true,
            broken: false,
            out: VecDeque::new(),
        };
        for nal in sprop {
            v.param_set(nal);
        }
        v.rebuild_params();
        v
    }

    pub fn params(&self) -> Option<&VideoParams> {
        self.params.as_ref()
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    fn name(&self) -> &'static str {
        match self.codec {
            VideoCodec::H264 => "H.264",
            VideoCodec::H265 => "H.265",
        }
    }

    fn bad(&mut self, reason: impl Into<String>) -> DepackError {
        self.broken = true;
        self.fu = None;
        DepackError::Payload {
            codec: self.name(),
            reason: reason.into(),
        }
    }

    pub fn push(&mut self, pkt: &Rtp<'_>) -> Result<(), DepackError> {
        match self.seq.check(pkt.seq) {
            SeqCheck::Old => return Ok(()),
            SeqCheck::Gap => {
                self.broken = true;
                self.fu = None;
            }
            SeqCheck::InOrder => {}
        }
        if self.au_ts.is_some_and(|ts| ts != pkt.timestamp) {
            self.finish_au();
        }
        self.au_ts = Some(pkt.timestamp);
        let r = match self.codec {
            VideoCodec::H264 => h264::depacketize(self, pkt.payload),
            VideoCodec::H265 => h265::depacketize(self, pkt.payload),
        };
        if pkt.marker {
            self.finish_au();
        }
        r
    }

    pub fn pull(&mut self) -> Option<Unit> {
        self.out.pop_front()
    }

    fn header_len(&self) -> usize {
        match self.codec {
            VideoCodec::H264 => 1,
            VideoCodec::H265 => 2,
        }
    }

    fn param_set(&mut self, nal: &[u8]) -> bool {
        let s = &mut self.sets;
        match (self.codec, nal_type(self.codec, nal)) {
            (VideoCodec::H264, 7) | (VideoCodec::H265, 33) => {
                ParamSets::set(&mut s.sps, nal, &mut s.dirty)
            }
            (VideoCodec::H264, 8) | (VideoCodec::H265, 34) => {
                ParamSets::set(&mut s.pps, nal, &mut s.dirty)
            }
            (VideoCodec::H265, 32) => ParamSets::set(&mut s.vps, nal, &mut s.dirty),
            _ => return false,
        }
        true
    }

    fn rebuild_params(&mut self) {
        if !self.sets.dirty {
            return;
        }
        let s = &self.sets;
        let built = match (self.codec, &s.vps, &s.sps, &s.pps) {
            (VideoCodec::H264, _, Some(sps), Some(pps)) => {
                avc::params_from(sps, pps, RTP_VIDEO_CLOCK).ok()
            }
            (VideoCodec::H265, Some(vps), Some(sps), Some(pps)) => {
                hevc::params_from(vps, sps, pps, RTP_VIDEO_CLOCK).ok()
            }
            _ => None,
        };
        if let Some(p) = built {
            self.params = Some(p);
            self.sets.dirty = false;
        }
    }

    fn finish_au(&mut self) {
        let nals = std::mem::take(&mut self.nals);
        let broken = std::mem::replace(&mut self.broken, false);
        let ts = self.au_ts.take();
        self.au_bytes = 0;
        if self.fu.take().is_some() {
            // The access unit ended inside a fragmented unit: truncated.
            self.need_key = true;
            return;
        }
        if broken {
            self.need_key = true;
            return;
        }
        let Some(ts) = ts else { return };
        let mut key = false;
        let mut samples = Vec::with_capacity(nals.len());
        for nal in &nals {
            if self.param_set(nal) {
                continue;
            }
            let t = nal_type(self.codec, nal);
            match self.codec {
                VideoCodec::H264 if t == 9 => continue, // access unit delimiter
                VideoCodec::H265 if t == 35 => continue,
                VideoCodec::H264 => key |= t == 5,
                VideoCodec::H265 => key |= (16..=21).contains(&t),
            }
            samples.push(nal);
        }
        self.rebuild_params();
        let pts = self.timeline.extend(ts);
        if samples.is_empty() || self.params.is_none() || (self.need_key && !key) {
            return;
        }
        self.need_key = false;
        let mut data = BytesMut::with_capacity(samples.iter().map(|n| n.len() + 4).sum());
        for nal in samples {
            data.put_u32(nal.len() as u32);
            data.put_slice(nal);
        }
        if self.out.len() >= MAX_QUEUED_UNITS {
            self.out.pop_front();
        }
        self.out.push_back(Unit {
            pts,
            keyframe: key,
            data: data.freeze(),
        });
    }
}

impl NalSink for Video {
    /// A complete NAL unit (header included) of the current access unit.
    fn nal(&mut self, nal: &[u8]) -> Result<(), DepackError> {
        if nal.len() < self.header_len() {
            return Err(self.bad("empty NAL unit"));
        }
        self.au_bytes += nal.len() + 4;
        if self.au_bytes > MAX_UNIT_BYTES {
            self.broken = true;
            self.nals.clear();
            return Err(DepackError::TooLarge);
        }
        if !self.broken {
            self.nals.push(Bytes::copy_from_slice(nal));
        }
        Ok(())
    }

    /// Start of a fragmented NAL unit with its reconstructed header.
    fn fu_start(&mut self, header: &[u8], data: &[u8]) -> Result<(), DepackError> {
        if self.fu.is_some() {
            return Err(self.bad("fragment start before the previous fragmented unit ended"));
        }
        let mut b = BytesMut::with_capacity(header.len() + data.len());
        b.put_slice(header);
        b.put_slice(data);
        self.fu = Some(b);
        Ok(())
    }

    /// A middle or end fragment.
    fn fu_more(&mut self, data: &[u8], end: bool) -> Result<(), DepackError> {
        let Some(fu) = self.fu.as_mut() else {
            // Its start was lost (already known from the sequence gap) or never sent (a
            // truncated unit: an error).
            let known = std::mem::replace(&mut self.broken, true);
            return if known {
                Ok(())
            } else {
                Err(self.bad("fragment without a start (truncated fragmented unit)"))
            };
        };
        if fu.len() + data.len() > MAX_UNIT_BYTES {
            self.fu = None;
            self.broken = true;
            return Err(DepackError::TooLarge);
        }
        fu.put_slice(data);
        if end {
            let nal = self.fu.take().expect("checked above").freeze();
            self.nal(&nal)?;
        }
        Ok(())
    }
}
