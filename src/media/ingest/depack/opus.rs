//! Opus over RTP (RFC 7587): one Opus packet per RTP packet, 48 kHz clock.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{DepackError, Rtp, SeqCheck, Sequence, Timeline, Unit, MAX_QUEUED_UNITS};
use crate::media::frame::{AudioCodec, AudioParams};

#[derive(Debug)]
pub struct Opus {
    params: AudioParams,
    seq: Sequence,
    timeline: Timeline,
    out: VecDeque<Unit>,
}

impl Opus {
    /// `channels` from the SDP's encoding parameters (`opus/48000/2`) and `sprop-stereo`.
    pub fn new(channels: u16) -> Opus {
        let channels = channels.clamp(1, 2);
        // OpusHead without the magic (RFC 7845 §5.1): version, channels, pre-skip (312,
        // libopus' value; RTP does not carry it), input rate, gain, mapping family 0.
        let mut head = vec![1, channels as u8];
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        Opus {
            params: AudioParams {
                codec: AudioCodec::Opus,
                sample_rate: 48_000,
                channels,
                config: Bytes::from(head),
                timescale: 48_000,
                frame_samples: 960,
            },
            seq: Sequence::default(),
            timeline: Timeline::default(),
            out: VecDeque::new(),
        }
    }

    pub fn params(&self) -> &AudioParams {
        &self.params
    }

    pub fn pull(&mut self) -> Option<Unit> {
        self.out.pop_front()
    }

    pub fn push(&mut self, pkt: &Rtp<'_>) -> Result<(), DepackError> {
        if self.seq.check(pkt.seq) == SeqCheck::Old {
            return Ok(());
        }
        let pts = self.timeline.extend(pkt.timestamp);
        if pkt.payload.is_empty() || pkt.payload.len() > 1275 * 3 {
            return Err(DepackError::Payload {
                codec: "Opus",
                reason: format!("packet of {} bytes", pkt.payload.len()),
            });
        }
        if self.out.len() >= MAX_QUEUED_UNITS {
            self.out.pop_front();
        }
        self.out.push_back(Unit {
            pts,
            keyframe: true,
            data: Bytes::copy_from_slice(pkt.payload),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_packet_is_one_access_unit_with_an_opus_head() {
        let mut o = Opus::new(2);
        assert_eq!(o.params().config.len(), 11);
        assert_eq!(o.params().config[1], 2);
        let mut p = vec![0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3];
        p.extend_from_slice(&[0xfc, 1, 2]);
        o.push(&Rtp::parse(&p).unwrap()).unwrap();
        let u = o.pull().unwrap();
        assert_eq!(&u.data[..], &[0xfc, 1, 2]);
        let mut p2 = p.clone();
        p2[3] = 2;
        p2.truncate(12);
        assert!(o.push(&Rtp::parse(&p2).unwrap()).is_err());
    }
}
