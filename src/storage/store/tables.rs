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
//!
//! A table used as a queue (the event outbox) appends with [`AuxOp::append`]: the key is
//! chosen **inside the write transaction** (one more than any key the table ever had, kept in
//! the index's counters, so keys never repeat, not even after the queue emptied or a restart),
//! and redb runs one write transaction at a time, so key order is commit order. A bounded
//! queue drops its oldest entries in that same transaction and counts them in a durable
//! counter ([`QueueMeta::dropped`]) that its reader lowers with [`AuxOp::forget_dropped`].
//! A crash takes back volatile appends, and their keys would be handed out again; a queue
//! whose keys are seen outside (the outbox's `event_seq`) starts each run with
//! [`AuxOp::new_run`], so keys only ever grow.

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
    /// Webhook endpoints' own state (disabled by a 410, last error), by a hash of the
    /// endpoint's name (see `crate::sync::webhooks`).
    Callbacks,
    /// HLS recordings (playlist, stream, resume deadline, splices, finished), by a key
    /// increasing in the order they opened (see `recordings.rs`).
    Recordings,
}

impl AuxTable {
    /// Every table, for opening them all at startup.
    pub const ALL: [AuxTable; 6] = [
        AuxTable::UploadParts,
        AuxTable::Outbox,
        AuxTable::Tasks,
        AuxTable::Settings,
        AuxTable::Callbacks,
        AuxTable::Recordings,
    ];

    pub(crate) fn definition(self) -> TableDefinition<'static, u64, &'static [u8]> {
        TableDefinition::new(self.name())
    }

    /// The table's name in the database (also names its queue counters).
    pub(crate) fn name(self) -> &'static str {
        match self {
            AuxTable::UploadParts => "upload_parts",
            AuxTable::Outbox => "outbox",
            AuxTable::Tasks => "tasks",
            AuxTable::Settings => "settings",
            AuxTable::Callbacks => "callbacks",
            AuxTable::Recordings => "recordings",
        }
    }
}

/// How an [`AuxOp`] changes its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuxMode {
    /// Put `value` under `key`, or remove `key` when `value` is `None`.
    Set,
    /// Queue append: put `value` under the table's next key (`key` is ignored), then, while
    /// the table holds more than `keep` entries, remove the oldest and count it as dropped.
    Append { keep: u64 },
    /// Lower the table's dropped count by this much (saturating): the drops were reported.
    /// With `value` = a consumer's name, lower that consumer's count instead.
    ForgetDropped(u64),
    /// Set the queue's consumers to the names in `value` (postcard `Vec<String>`): a name
    /// not there before gets a cursor at the head (the next key an append gets), or at the
    /// oldest entry when the queue had no consumers at all yet; a name no longer there loses
    /// its cursor and drop count, so it pins nothing. Then entries every cursor passed go.
    Consumers,
    /// Move the cursor of the consumer named in `value` to `key` (never backwards; an
    /// unknown name is ignored), then remove the entries every cursor passed.
    Advance,
    /// A new run begins: later appends get keys above every key an earlier run may have
    /// used, even in volatile commits a crash took back (the next key jumps to the next
    /// multiple of [`RUN_KEY_STRIDE`]). Commit it durably, once per run.
    NewRun,
}

/// How far apart the key ranges of two runs of a queue are (see [`AuxMode::NewRun`]).
pub const RUN_KEY_STRIDE: u64 = 1 << 32;

/// One change to an auxiliary table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuxOp {
    pub table: AuxTable,
    pub key: u64,
    /// The new value; `None` removes the key (no error if absent).
    pub value: Option<Vec<u8>>,
    pub mode: AuxMode,
}

impl AuxOp {
    pub fn put(table: AuxTable, key: u64, value: Vec<u8>) -> AuxOp {
        AuxOp {
            table,
            key,
            value: Some(value),
            mode: AuxMode::Set,
        }
    }

    pub fn remove(table: AuxTable, key: u64) -> AuxOp {
        AuxOp {
            table,
            key,
            value: None,
            mode: AuxMode::Set,
        }
    }

    /// Append `value` to the queue `table`, keeping at most `keep` entries (the oldest go
    /// first, counted in [`QueueMeta::dropped`]). The key is assigned when the op commits.
    pub fn append(table: AuxTable, value: Vec<u8>, keep: u64) -> AuxOp {
        AuxOp {
            table,
            key: 0,
            value: Some(value),
            mode: AuxMode::Append { keep: keep.max(1) },
        }
    }

    /// Start a new run of the queue `table` (see [`AuxMode::NewRun`]).
    pub fn new_run(table: AuxTable) -> AuxOp {
        AuxOp {
            table,
            key: 0,
            value: None,
            mode: AuxMode::NewRun,
        }
    }

    /// Lower the dropped count of the queue `table` by `n` (they were reported).
    pub fn forget_dropped(table: AuxTable, n: u64) -> AuxOp {
        AuxOp {
            table,
            key: 0,
            value: None,
            mode: AuxMode::ForgetDropped(n),
        }
    }

    /// Lower consumer `name`'s dropped count of the queue `table` by `n`.
    pub fn forget_consumer_dropped(table: AuxTable, name: &str, n: u64) -> AuxOp {
        AuxOp {
            table,
            key: 0,
            value: Some(name.as_bytes().to_vec()),
            mode: AuxMode::ForgetDropped(n),
        }
    }

    /// Make `names` the consumers of the queue `table` (see [`AuxMode::Consumers`]).
    pub fn consumers(table: AuxTable, names: &[String]) -> AuxOp {
        AuxOp {
            table,
            key: 0,
            value: Some(postcard::to_allocvec(names).expect("names encode")),
            mode: AuxMode::Consumers,
        }
    }

    /// Consumer `name` of the queue `table` is done with every key below `next`.
    pub fn advance(table: AuxTable, name: &str, next: u64) -> AuxOp {
        AuxOp {
            table,
            key: next,
            value: Some(name.as_bytes().to_vec()),
            mode: AuxMode::Advance,
        }
    }
}

/// One consumer of a queue table (see [`AuxMode::Consumers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMeta {
    pub name: String,
    /// The first key the consumer has not passed.
    pub cursor: u64,
    /// Entries the queue's bound dropped before this consumer passed them (durable), not
    /// yet forgotten.
    pub dropped: u64,
}

/// The bookkeeping of a table used as a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueMeta {
    /// The key the next append gets.
    pub next_key: u64,
    /// Entries dropped by bounded appends and not yet forgotten.
    pub dropped: u64,
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

    /// `rows` (still as they were, e.g. `Closed`) are being deleted (retention, a delete
    /// command). The ops land in the durable commit that marks them `Deleting`, before any
    /// of their files is unlinked; recovery finishing an interrupted delete does not call
    /// the hook again.
    fn deleted(&self, rows: &[SegmentRow], ops: &mut Vec<AuxOp>) {
        let _ = (rows, ops);
    }

    /// The commit that carried the `closing` or `deleted` changes of the rows `ids` landed:
    /// readers see it now. The moment to wake whoever consumes those changes (a consumer
    /// woken in `closing` could look before the commit and find nothing). Not called for a
    /// commit that failed.
    fn committed(&self, ids: &[super::SegmentId]) {
        let _ = ids;
    }
}
