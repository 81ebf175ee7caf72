//! Auxiliary tables used as queues (the event outbox): appends whose key is chosen inside
//! the write transaction, bounded appends that drop the oldest and count them, and new runs
//! whose keys start above any key a crash may have taken back (see `tables.rs`), and
//! consumers with a cursor each (`consumers.rs`).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::error::StoreError;
use super::index::{Index, COUNTERS};
use super::tables::{AuxMode, AuxOp, AuxTable, QueueMeta, RUN_KEY_STRIDE};

/// The counters of a queue table: its next key and its dropped count.
fn queue_counter_names(table: AuxTable) -> (String, String) {
    (
        format!("queue_next:{}", table.name()),
        format!("queue_dropped:{}", table.name()),
    )
}

impl Index {
    /// The queue bookkeeping of an auxiliary table (see `tables.rs`).
    pub(crate) fn aux_queue(&self, table: AuxTable) -> Result<QueueMeta, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let t = txn
            .open_table(table.definition())
            .map_err(self.err("open table"))?;
        let counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
        let (next, dropped) = queue_counter_names(table);
        let get = |k: &str| -> Result<u64, StoreError> {
            Ok(counters
                .get(k)
                .map_err(self.err("read"))?
                .map_or(0, |g| g.value()))
        };
        let after_last = t
            .last()
            .map_err(self.err("read"))?
            .map_or(1, |(k, _)| k.value() + 1);
        Ok(QueueMeta {
            next_key: get(&next)?.max(after_last),
            dropped: get(&dropped)?,
        })
    }

    /// One auxiliary-table change inside the write transaction `txn`. Queue appends take
    /// their key here, so keys follow commit order (redb runs one writer at a time).
    pub(super) fn write_aux(
        &self,
        txn: &redb::WriteTransaction,
        op: &AuxOp,
    ) -> Result<(), StoreError> {
        let mut t = txn
            .open_table(op.table.definition())
            .map_err(self.err("open table"))?;
        match (op.mode, &op.value) {
            (AuxMode::Set, Some(v)) => t
                .insert(op.key, v.as_slice())
                .map(drop)
                .map_err(self.err("write aux")),
            (AuxMode::Set, None) => t.remove(op.key).map(drop).map_err(self.err("write aux")),
            (AuxMode::Append { keep }, value) => {
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let (next_name, dropped_name) = queue_counter_names(op.table);
                let stored = counters
                    .get(next_name.as_str())
                    .map_err(self.err("read"))?
                    .map_or(0, |g| g.value());
                let after_last = t
                    .last()
                    .map_err(self.err("read"))?
                    .map_or(1, |(k, _)| k.value() + 1);
                let key = stored.max(after_last);
                t.insert(key, value.as_deref().unwrap_or_default())
                    .map_err(self.err("write aux"))?;
                counters
                    .insert(next_name.as_str(), key + 1)
                    .map_err(self.err("write counter"))?;
                let mut dropped = 0;
                let mut gone = Vec::new();
                while t.len().map_err(self.err("read"))? > keep {
                    if let Some((k, _)) = t.pop_first().map_err(self.err("write aux"))? {
                        gone.push(k.value());
                    }
                    dropped += 1;
                }
                self.count_consumer_drops(&mut counters, op.table, &gone)?;
                if dropped > 0 {
                    let before = counters
                        .get(dropped_name.as_str())
                        .map_err(self.err("read"))?
                        .map_or(0, |g| g.value());
                    counters
                        .insert(dropped_name.as_str(), before.saturating_add(dropped))
                        .map_err(self.err("write counter"))?;
                }
                Ok(())
            }
            (AuxMode::NewRun, _) => {
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let (next_name, _) = queue_counter_names(op.table);
                let stored = counters
                    .get(next_name.as_str())
                    .map_err(self.err("read"))?
                    .map_or(0, |g| g.value());
                let after_last = t
                    .last()
                    .map_err(self.err("read"))?
                    .map_or(1, |(k, _)| k.value() + 1);
                let next = (stored.max(after_last) / RUN_KEY_STRIDE + 1) * RUN_KEY_STRIDE;
                counters
                    .insert(next_name.as_str(), next)
                    .map_err(self.err("write counter"))?;
                Ok(())
            }
            (AuxMode::ForgetDropped(n), Some(name)) => {
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let name = String::from_utf8_lossy(name);
                self.forget_consumer_drops(&mut counters, op.table, &name, n)
            }
            (AuxMode::Consumers, value) => {
                let names: Vec<String> = value
                    .as_deref()
                    .and_then(|v| postcard::from_bytes(v).ok())
                    .unwrap_or_default();
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let (next_name, _) = queue_counter_names(op.table);
                let stored = counters
                    .get(next_name.as_str())
                    .map_err(self.err("read"))?
                    .map_or(0, |g| g.value());
                let first = t.first().map_err(self.err("read"))?.map(|(k, _)| k.value());
                let after_last = t
                    .last()
                    .map_err(self.err("read"))?
                    .map_or(1, |(k, _)| k.value() + 1);
                let head = stored.max(after_last);
                self.set_consumers(&mut counters, op.table, &names, head, first)?;
                self.trim_passed(&mut t, &counters, op.table)
            }
            (AuxMode::Advance, Some(name)) => {
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let name = String::from_utf8_lossy(name);
                if self.advance_consumer(&mut counters, op.table, &name, op.key)? {
                    self.trim_passed(&mut t, &counters, op.table)?;
                }
                Ok(())
            }
            (AuxMode::Advance, None) => Ok(()),
            (AuxMode::ForgetDropped(n), None) => {
                let mut counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
                let (_, dropped_name) = queue_counter_names(op.table);
                let before = counters
                    .get(dropped_name.as_str())
                    .map_err(self.err("read"))?
                    .map_or(0, |g| g.value());
                counters
                    .insert(dropped_name.as_str(), before.saturating_sub(n))
                    .map_err(self.err("write counter"))?;
                Ok(())
            }
        }
    }
}
