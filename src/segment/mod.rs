//! The segmenter: a pure state machine, frames in, [`SegmentEvent`]s out.

pub mod event;

pub use event::*;
