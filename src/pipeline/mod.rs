//! The running pipeline: one supervised [`recorder`] task per stream (source → segmenter →
//! sinks → store), and the [`supervisor`] that starts and stops them.
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`], [`crate::storage`],
//! [`crate::sync`].

pub mod recorder;
pub mod supervisor;
