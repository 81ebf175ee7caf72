//! The store's error type: every variant names the path or segment involved and, where the
//! user can do something about it, says what.

use std::io;
use std::path::PathBuf;

use super::SegmentId;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage root cannot be created or is not a directory.
    #[error(
        "storage root {path} is not usable: {reason}; point `storage.root` at a directory \
         edgerec may write to"
    )]
    BadRoot { path: PathBuf, reason: String },

    /// The storage root exists but this process may not write to it.
    #[error(
        "storage root {path} is not writable ({source}); fix its permissions (the daemon runs \
         as uid {uid}) or choose another `storage.root`"
    )]
    RootNotWritable {
        path: PathBuf,
        uid: u32,
        #[source]
        source: io::Error,
    },

    /// Another process holds the root's lock file.
    #[error(
        "storage root {root} is already used by another edgerec process (lock {lock} is held); \
         stop that process or give this one another `storage.root`"
    )]
    Locked { root: PathBuf, lock: PathBuf },

    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "fsync", "rename to", "create".
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The redb index failed.
    #[error("segment index {path}: {context}: {source}")]
    Index {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: Box<redb::Error>,
    },

    /// A row in the index could not be decoded (written by an incompatible version?).
    #[error(
        "segment index row {id} is unreadable ({source}); run `edgerec index rebuild` to \
         rebuild the index from the files"
    )]
    BadRow {
        id: SegmentId,
        #[source]
        source: postcard::Error,
    },

    /// A group commit this call depended on failed (the first caller got the full error).
    #[error("segment index commit failed: {0}")]
    CommitFailed(String),

    /// A segment file could not be read as our fMP4.
    #[error("segment file {path} could not be read: {reason}")]
    Media { path: PathBuf, reason: String },

    /// A writer was asked for something its state does not allow.
    #[error("segment {id} ({path}): {reason}")]
    Writer {
        id: SegmentId,
        path: PathBuf,
        reason: String,
    },

    /// `begin` was given an unusable relative name or format list.
    #[error("cannot start segment {path}: {reason}")]
    BadName { path: PathBuf, reason: String },
}

impl StoreError {
    /// An [`StoreError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An [`StoreError::Index`] from any redb error.
    pub(crate) fn index(
        path: impl Into<PathBuf>,
        context: &'static str,
        source: impl Into<redb::Error>,
    ) -> Self {
        StoreError::Index {
            path: path.into(),
            context,
            source: Box::new(source.into()),
        }
    }
}
