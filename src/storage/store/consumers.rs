//! Consumers of a queue table, each with its own cursor (the event log's MQTT publisher and
//! webhook endpoints, see `crate::sync::events`).
//!
//! A consumer is a name with a cursor (the first key it has not passed) and a drop count,
//! kept in the index's counters as `consumer:{table}:{name}` and
//! `consumer_dropped:{table}:{name}`, so they commit with the queue they describe. An entry
//! stays while any consumer's cursor is at or below its key; when the last one passes it, it
//! is removed in the same commit that moved the cursor. A bounded append that drops an
//! entry counts the drop for every consumer that had not passed it. A queue without any
//! consumer keeps the older behaviour: entries go only when removed by key.

use redb::{ReadableTable, ReadableTableMetadata, Table};

use super::error::StoreError;
use super::index::{Index, COUNTERS};
use super::tables::{AuxTable, ConsumerMeta};

type Counters<'t> = Table<'t, &'static str, u64>;
type Queue<'t> = Table<'t, u64, &'static [u8]>;

fn cursor_prefix(table: AuxTable) -> String {
    format!("consumer:{}:", table.name())
}

fn dropped_name(table: AuxTable, name: &str) -> String {
    format!("consumer_dropped:{}:{name}", table.name())
}

/// Cursors of `table`'s consumers, by name, from `counters`.
fn cursors(
    index: &Index,
    counters: &impl ReadableTable<&'static str, u64>,
    table: AuxTable,
) -> Result<Vec<(String, u64)>, StoreError> {
    let prefix = cursor_prefix(table);
    let mut out = Vec::new();
    for item in counters
        .range(prefix.as_str()..)
        .map_err(index.err("read"))?
    {
        let (k, v) = item.map_err(index.err("read"))?;
        let Some(name) = k.value().strip_prefix(prefix.as_str()) else {
            break;
        };
        out.push((name.to_string(), v.value()));
    }
    Ok(out)
}

impl Index {
    /// The consumers of a queue table, by name.
    pub(crate) fn aux_consumers(&self, table: AuxTable) -> Result<Vec<ConsumerMeta>, StoreError> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let counters = txn.open_table(COUNTERS).map_err(self.err("open table"))?;
        let mut out = Vec::new();
        for (name, cursor) in cursors(self, &counters, table)? {
            let dropped = counters
                .get(dropped_name(table, &name).as_str())
                .map_err(self.err("read"))?
                .map_or(0, |g| g.value());
            out.push(ConsumerMeta {
                name,
                cursor,
                dropped,
            });
        }
        Ok(out)
    }

    /// Make `names` the consumers of `table`: new ones start at `head` (or at `first`, the
    /// oldest stored key, when the queue had no consumer yet: entries stored before
    /// consumers existed are still delivered); gone ones are forgotten.
    pub(super) fn set_consumers(
        &self,
        counters: &mut Counters<'_>,
        table: AuxTable,
        names: &[String],
        head: u64,
        first: Option<u64>,
    ) -> Result<(), StoreError> {
        let prefix = cursor_prefix(table);
        let before = cursors(self, counters, table)?;
        let start = if before.is_empty() {
            first.unwrap_or(head)
        } else {
            head
        };
        for (name, _) in &before {
            if !names.contains(name) {
                counters
                    .remove(format!("{prefix}{name}").as_str())
                    .map_err(self.err("write counter"))?;
                counters
                    .remove(dropped_name(table, name).as_str())
                    .map_err(self.err("write counter"))?;
            }
        }
        for name in names {
            if !before.iter().any(|(n, _)| n == name) {
                counters
                    .insert(format!("{prefix}{name}").as_str(), start)
                    .map_err(self.err("write counter"))?;
            }
        }
        Ok(())
    }

    /// Move `name`'s cursor up to `next`. False when nothing changed.
    pub(super) fn advance_consumer(
        &self,
        counters: &mut Counters<'_>,
        table: AuxTable,
        name: &str,
        next: u64,
    ) -> Result<bool, StoreError> {
        let key = format!("{}{name}", cursor_prefix(table));
        let Some(at) = counters
            .get(key.as_str())
            .map_err(self.err("read"))?
            .map(|g| g.value())
        else {
            return Ok(false);
        };
        if next <= at {
            return Ok(false);
        }
        counters
            .insert(key.as_str(), next)
            .map_err(self.err("write counter"))?;
        Ok(true)
    }

    /// Remove the entries of `t` below every consumer's cursor (none without consumers).
    pub(super) fn trim_passed(
        &self,
        t: &mut Queue<'_>,
        counters: &Counters<'_>,
        table: AuxTable,
    ) -> Result<(), StoreError> {
        let Some(low) = cursors(self, counters, table)?
            .into_iter()
            .map(|(_, c)| c)
            .min()
        else {
            return Ok(());
        };
        while t.len().map_err(self.err("read"))? > 0 {
            let first = t.first().map_err(self.err("read"))?.map(|(k, _)| k.value());
            match first {
                Some(k) if k < low => {
                    t.pop_first().map_err(self.err("write aux"))?;
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// The bound dropped the entries `gone`: count each for the consumers that had not
    /// passed it.
    pub(super) fn count_consumer_drops(
        &self,
        counters: &mut Counters<'_>,
        table: AuxTable,
        gone: &[u64],
    ) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        for (name, cursor) in cursors(self, counters, table)? {
            let n = gone.iter().filter(|k| **k >= cursor).count() as u64;
            if n == 0 {
                continue;
            }
            let key = dropped_name(table, &name);
            let before = counters
                .get(key.as_str())
                .map_err(self.err("read"))?
                .map_or(0, |g| g.value());
            counters
                .insert(key.as_str(), before.saturating_add(n))
                .map_err(self.err("write counter"))?;
        }
        Ok(())
    }

    /// Lower `name`'s drop count by `n` (they were reported).
    pub(super) fn forget_consumer_drops(
        &self,
        counters: &mut Counters<'_>,
        table: AuxTable,
        name: &str,
        n: u64,
    ) -> Result<(), StoreError> {
        let key = dropped_name(table, name);
        let before = counters
            .get(key.as_str())
            .map_err(self.err("read"))?
            .map_or(0, |g| g.value());
        if before == 0 {
            return Ok(());
        }
        counters
            .insert(key.as_str(), before.saturating_sub(n))
            .map_err(self.err("write counter"))?;
        Ok(())
    }
}
