//! The running pipeline: one supervised [`recorder`] task per stream (source → segmenter →
//! sinks → store), the [`supervisor`] that starts and stops them, and the [`factory`], the
//! one place a recorder is assembled (for the supervisor and for push ingest).
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`], [`crate::storage`],
//! [`crate::sync`].

pub mod factory;
pub mod fault;
pub mod recorder;
pub mod supervisor;

/// Push ingest through the recorder factory into a real store (the publish rules, the
/// registry, status entries and the segments a push leaves).
#[cfg(test)]
mod push_tests;
