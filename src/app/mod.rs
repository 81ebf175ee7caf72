//! The binary's edge: the [`daemon`] wiring (starts every part, handles signals, shuts down
//! in order), the [`cli`] (with [`export`] of recordings), and the text rendering of
//! [`status`].
//!
//! May import every layer.

pub mod cli;
pub mod daemon;
pub mod export;
pub mod status;
