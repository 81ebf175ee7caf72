//! What an H.264/H.265 packet format hands its NAL units to. [`h264`](super::h264) and
//! [`h265`](super::h265) split RTP payloads and call it; [`video`](super::video)'s
//! assembler implements it. A trait, so the packet formats need not know the assembler
//! (and the assembler can call them without an import cycle).

use super::DepackError;

/// Receives the NAL units of one RTP payload, whole or in fragments.
pub(super) trait NalSink {
    /// A complete NAL unit (header included). An empty one reports a malformed payload.
    fn nal(&mut self, nal: &[u8]) -> Result<(), DepackError>;
    /// Start of a fragmented NAL unit with its reconstructed header.
    fn fu_start(&mut self, header: &[u8], data: &[u8]) -> Result<(), DepackError>;
    /// A middle or (`end`) last fragment.
    fn fu_more(&mut self, data: &[u8], end: bool) -> Result<(), DepackError>;
}
