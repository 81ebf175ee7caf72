//! Auxiliary tables in the index database, and hooks into the index commits that close and
//! delete segments.
//!
//! Subsystems built on the store (the upload queue, the event outbox, record tasks) keep
//! their durable state as postcard bytes under `u64` keys in tables of their own, inside the
//! same redb file as the segment rows. Two things follow: one fsync covers all of them, and a
//! change that belongs with a segment's state change (a closed segment entering the upload
//! queue, the `segment.closed` event in the outbox) lands in **the same commit** as the row,
//! through an [`IndexHook`]. A crash can then never leave a closed segment without its queue
//! entry or event: either both are in the index or neither is, and recovery, which closes or
//! adopts the segment again, calls the hooks again.
//!
//! Keys are big-endian-ordered `u64`s (redb orders `u64` keys numerically), so a table scans
//! in key order: use increasing ids for queues.

use redb::TableDefinition;

use super::row::SegmentRow;

/// The auxiliary tables. Each subsystem owns one; none reads another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuxTable {
    /// Upload job state by segment id: multipart progress (upload id, completed parts) and
    /// failures (attempts, last error, next retry).
    UploadParts,
    /// Events waiting for the broker's acknowledgement, by event sequence number.
    Outbox,
    /// Record tasks, by task id.
    Tasks,
    /// Small named values (counters, paused flags), by a key the owner defines.
    Settings,
}

impl AuxTable {
    /// Every table, for opening them all at startup.
    pub const ALL: [AuxTable; 4] = [
        AuxTable::UploadParts,
        AuxTable::Outbox,
        AuxTable::Tasks,
        AuxTable::Settings,
    ];

    pub(crate) fn definition(self) -> TableDefinition<'static, u64, &'static [u8]> {
        TableDefinition::new(match self {
            AuxTable::UploadParts => "upload_parts",
            AuxTable::Outbox => "outbox",
            AuxTable::Tasks => "tasks",
            AuxTable::Settings => "settings",
        })
    }
}

/// One change to an auxiliary table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuxOp {
    pub table: AuxTable,
    pub key: u64,
    /// The new value; `None` removes the key (no error if absent).
    pub value: Option<Vec<u8>>,
}

impl AuxOp {
    pub fn put(table: AuxTable, key: u64, value: Vec<u8>) -> AuxOp {
        AuxOp {
            table,
            key,
            value: Some(value),
        }
    }

    pub fn remove(table: AuxTable, key: u64) -> AuxOp {
        AuxOp {
            table,
            key,
            value: None,
        }
    }
}

/// Called inside the index commits that change a segment's fate, to add changes that must
/// land with it. Hooks run on the thread doing the commit (a writer thread, recovery, the
/// retention pass): keep them quick and free of I/O beyond reading the index.
pub trait IndexHook: Send + Sync {
    /// `row` is about to be committed as `Closed` — by a writer, by recovery finishing a
    /// torn segment (`row.recovered`), or by recovery adopting files it found. The hook may
    /// change the row (e.g. its `upload` state) and add ops to the same commit.
    fn closing(&self, row: &mut SegmentRow, ops: &mut Vec<AuxOp>) {
        let _ = (row, ops);
    }

    /// `rows` are being dropped from the index after their files were unlinked (retention,
    /// a delete command). The ops land in the commit that drops them.
    fn deleted(&self, rows: &[SegmentRow], ops: &mut Vec<AuxOp>) {
        let _ = (rows, ops);
    }
}
