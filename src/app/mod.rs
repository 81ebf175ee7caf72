//! The binary's edge: the [`daemon`] wiring (starts every part, handles signals, shuts down
//! in order), the [`cli`] (with [`upload_cmd`] and [`command_cmd`], which ask the running
//! recorder, and [`export`] of recordings), and the text rendering of [`status`].
//!
//! May import every layer.

pub mod cli;
pub mod command_cmd;
pub mod daemon;
pub mod export;
pub mod status;
pub mod upload_cmd;
