//! The segmenter: a pure state machine, frames in, [`SegmentEvent`]s out.
//!
//! It does no I/O and reads no clock: the caller passes the wall time with each frame.
//! See [`segmenter`] for the rules it keeps.

pub mod event;
pub mod segmenter;
mod tail;

#[cfg(test)]
mod cap_tests;
#[cfg(test)]
mod clock_tests;
#[cfg(test)]
mod tests;

pub use event::*;
pub use segmenter::{Dropped, Segmenter, SegmenterConfig, StreamIdentity};
