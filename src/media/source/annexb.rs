//! Annex-B H.264 / H.265 elementary streams (what `rpicam-vid -o -`, GStreamer's
//! `filesink`/`fdsink` and `ffmpeg -f h264 -` write) into access units in MP4 form.
//!
//! I/O-free: [`StartCodes`] splits bytes into NAL units however the reads were cut;
//! [`detect_codec`] tells H.264 from H.265 by the first parameter set or delimiter;
//! [`AuAssembler`] groups NAL units into access units (a new one starts at an access unit
//! delimiter, a parameter set, an SEI, or a slice that begins a picture after the previous
//! picture's slices), keeps the latest VPS/SPS/PPS and builds `avcC`/`hvcC` from them, and
//! turns each access unit into 4-byte length-prefixed NAL units without the delimiters and
//! parameter sets (those live in the sample entry; a change starts a new segment).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::h26x::{self, NalKind, SpsInfo};
use crate::media::codec::{avc, hevc};
use crate::media::frame::{VideoCodec, VideoParams};

/// Timescale of video from a pipe (as RTP: 90 kHz).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// A NAL unit larger than this is garbage (a 4K I-frame is a few MB); it is dropped.
const MAX_NAL: usize = 16 << 20;

/// Splits a byte stream at `00 00 01` / `00 00 00 01` start codes.
#[derive(Default)]
pub struct StartCodes {
    buf: BytesMut,
    /// Offset where the current NAL unit's payload starts, once a start code was seen.
    start: Option<usize>,
    /// How far `buf` has been scanned for start codes.
    scanned: usize,
}

impl StartCodes {
    /// Appends `data`; returns the NAL units it completed (without start codes).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        self.buf.extend_from_slice(data);
        let mut i = self.scanned.max(self.start.unwrap_or(0));
        while i + 3 <= self.buf.len() {
            if self.buf[i + 2] > 1 {
                i += 3;
                continue;
            }
            if self.buf[i] == 0 && self.buf[i + 1] == 0 && self.buf[i + 2] == 1 {
                if let Some(s) = self.start {
                    // A 4-byte start code's leading zero belongs to it, not to the NAL.
                    let mut end = i;
                    while end > s && self.buf[end - 1] == 0 {
                        end -= 1;
                    }
                    let nal = self.buf.split_to(end).freeze().slice(s..);
                    i -= end;
                    if !nal.is_empty() && nal.len() <= MAX_NAL {
                        out.push(nal);
                    }
                }
                self.start = Some(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        self.scanned = i;
        if self.start.is_none() && self.buf.len() > 2 {
            // No start code yet: nothing before it matters; keep the last 2 bytes.
            let keep = self.buf.len() - 2;
            let _ = self.buf.split_to(keep);
            self.scanned = 0;
        } else if let Some(s) = self.start {
            if self.buf.len() - s > MAX_NAL {
                // Runaway unit: drop it and wait for the next start code.
                self.buf.clear();
                self.start = None;
                self.scanned = 0;
            }
        }
    }

    /// The last NAL unit, at the end of the stream.
    pub fn finish(&mut self) -> Option<Bytes> {
        let s = self.start.take()?;
        let nal = std::mem::take(&mut self.buf).freeze().slice(s..);
        self.scanned = 0;
        (!nal.is_empty()).then_some(nal)
    }
}

/// Which codec a NAL unit proves, if any: an H.265 VPS/SPS/PPS/AUD, or an H.264 SPS/AUD.
pub fn detect_codec(nal: &[u8]) -> Option<VideoCodec> {
    let (b0, b1) = (*nal.first()?, *nal.get(1)?);
    if b0 & 0x80 != 0 {
        return None;
    }
    // H.265 headers: type in bits 1..7, layer 0, temporal id plus one = 1.
    if b1 == 0x01 && matches!((b0 >> 1) & 0x3f, 32..=35) {
        return Some(VideoCodec::H265);
    }
    if matches!(b0 & 0x1f, 7 | 9) {
        return Some(VideoCodec::H264);
    }
    None
}

/// One access unit in MP4 form.
#[derive(Clone, Debug)]
pub struct AccessUnit {
    /// 4-byte length-prefixed NAL units.
    pub data: Bytes,
    /// IDR (H.264) or IRAP (H.265) picture.
    pub key: bool,
    /// Starts a new POC period (IDR).
    pub idr: bool,
    /// `pic_order_cnt_lsb` of its first slice, when the stream sends it.
    pub poc_lsb: Option<u32>,
    /// The parameters in force, once a complete set of parameter sets was seen.
    pub params: Option<Arc<VideoParams>>,
    /// Bits of `poc_lsb` (from the SPS), for wrap-around.
    pub log2_max_poc_lsb: u32,
}

/// Groups NAL units into access units and tracks the parameter sets.
pub struct AuAssembler {
    codec: VideoCodec,
    vps: Option<Bytes>,
    sps: Option<(Bytes, SpsInfo)>,
    pps: Option<Bytes>,
    h265_pps: Option<h26x::H265Pps>,
    params: Option<Arc<VideoParams>>,
    nals: Vec<Bytes>,
    has_vcl: bool,
    key: bool,
    idr: bool,
    poc_lsb: Option<u32>,
}

impl AuAssembler {
    pub fn new(codec: VideoCodec) -> Self {
        AuAssembler {
            codec,
            vps: None,
            sps: None,
            pps: None,
            h265_pps: None,
            params: None,
            nals: Vec::new(),
            has_vcl: false,
            key: false,
            idr: false,
            poc_lsb: None,
        }
    }

    /// Adds one NAL unit; returns the access unit it completed, if any.
    pub fn push(&mut self, nal: Bytes) -> Option<AccessUnit> {
        let kind = h26x::classify(self.codec, &nal);
        let starts_new = match kind {
            NalKind::Aud | NalKind::Vps | NalKind::Sps | NalKind::Pps | NalKind::Prefix => true,
            NalKind::Slice { first, .. } => first,
            NalKind::Other => false,
        };
        let done = if self.has_vcl && starts_new {
            self.finish()
        } else {
            None
        };
        match kind {
            NalKind::Aud => {}
            NalKind::Vps => self.set_param(0, nal),
            NalKind::Sps => self.set_param(1, nal),
            NalKind::Pps => self.set_param(2, nal),
            NalKind::Slice { key, .. } => {
                if !self.has_vcl {
                    self.key = key;
                    let t = h26x::nal_type(self.codec, &nal);
                    self.idr = match self.codec {
                        VideoCodec::H264 => t == 5,
                        VideoCodec::H265 => matches!(t, 16..=20),
                    };
                    self.poc_lsb = self.sps.as_ref().and_then(|(_, info)| {
                        h26x::poc_lsb(self.codec, &nal, info, self.h265_pps.as_ref())
                    });
                    self.has_vcl = true;
                }
                self.nals.push(nal);
            }
            NalKind::Prefix | NalKind::Other => {
                if self.nals.len() < 256 {
                    self.nals.push(nal);
                }
            }
        }
        done
    }

    /// The access unit in progress, at the end of the stream.
    pub fn finish(&mut self) -> Option<AccessUnit> {
        if !self.has_vcl {
            self.nals.clear();
            return None;
        }
        let len: usize = self.nals.iter().map(|n| n.len() + 4).sum();
        let mut data = BytesMut::with_capacity(len);
        for n in self.nals.drain(..) {
            data.extend_from_slice(&(n.len() as u32).to_be_bytes());
            data.extend_from_slice(&n);
        }
        self.has_vcl = false;
        Some(AccessUnit {
            data: data.freeze(),
            key: self.key,
            idr: self.idr,
            poc_lsb: self.poc_lsb,
            params: self.params.clone(),
            log2_max_poc_lsb: self.sps.as_ref().map_or(0, |(_, i)| i.log2_max_poc_lsb),
        })
    }

    fn set_param(&mut self, which: usize, nal: Bytes) {
        match which {
            0 => self.vps = Some(nal),
            1 => {
                let info = match self.codec {
                    VideoCodec::H264 => h26x::parse_h264_sps(&nal),
                    VideoCodec::H265 => h26x::parse_h265_sps(&nal),
                };
                match info.ok() {
                    Some(info) => self.sps = Some((nal, info)),
                    None => return, // unreadable: keep the last good one
                }
            }
            _ => {
                if self.codec == VideoCodec::H265 {
                    match h26x::parse_h265_pps(&nal).ok() {
                        Some(p) => self.h265_pps = Some(p),
                        None => return,
                    }
                }
                self.pps = Some(nal);
            }
        }
        if let Some(p) = self.build_params() {
            if self.params.as_deref() != Some(&p) {
                self.params = Some(Arc::new(p));
            }
        }
    }

    /// The track's parameters from the latest parameter sets; `None` until all are seen
    /// or while they cannot be read (the pipe source waits for usable ones).
    fn build_params(&self) -> Option<VideoParams> {
        let (sps, _) = self.sps.as_ref()?;
        let pps = self.pps.as_ref()?;
        match self.codec {
            VideoCodec::H264 => avc::params_from(sps, pps, VIDEO_TIMESCALE).ok(),
            VideoCodec::H265 => {
                hevc::params_from(self.vps.as_ref()?, sps, pps, VIDEO_TIMESCALE).ok()
            }
        }
    }
}

/// Full picture order counts from the `poc_lsb` of successive pictures (H.264 8.2.1.1 /
/// H.265 8.3.1, simplified to "the previous picture"), as `(period, poc)` keys that sort in
/// presentation order: the period grows at every IDR, where POC restarts.
#[derive(Debug, Default)]
pub struct PocCounter {
    period: u64,
    prev_lsb: i64,
    msb: i64,
    last: i64,
}

impl PocCounter {
    /// The presentation-order key of the next access unit in decode order.
    pub fn key(&mut self, au: &AccessUnit) -> (u64, i64) {
        if au.idr {
            self.period += 1;
            self.prev_lsb = 0;
            self.msb = 0;
        }
        let Some(lsb) = au.poc_lsb else {
            // No POC: decode order is presentation order.
            self.last += 1;
            return (self.period, self.last);
        };
        let lsb = i64::from(lsb);
        let max = 1i64 << au.log2_max_poc_lsb.clamp(4, 16);
        if lsb < self.prev_lsb && self.prev_lsb - lsb >= max / 2 {
            self.msb += max;
        } else if lsb > self.prev_lsb && lsb - self.prev_lsb > max / 2 {
            self.msb -= max;
        }
        self.prev_lsb = lsb;
        self.last = self.msb + lsb;
        (self.period, self.last)
    }
}

#[cfg(test)]
#[path = "annexb_tests.rs"]
mod tests;
