//! Re-stamping after a clock correction, and the record that lets recovery and an index
//! rebuild do it again.
//!
//! When a clock that was not synchronized is stepped, the new time is the truth: each
//! segment recorded on the old offset (wall − boot clock) gets `start = its start on the
//! boot clock + the new offset`, i.e. its times move by the difference of the offsets (see
//! [`SegmentRow::restamp`]), and becomes `corrected`. The files keep their names: the index
//! is the truth (`docs/time.md`).
//!
//! The files carry each segment's boot id, boot-clock start and the offset it was stamped
//! with ([`SegmentMeta`](crate::media::segment::event::SegmentMeta)), but not the
//! correction, which comes later. That goes into `<root>/clock-corrections.json`: per boot,
//! the offset its unsynchronized segments belong on. One small file, rewritten once per
//! correction (rare), by the protocol: write `clock-corrections.json.tmp`, fsync it, rename
//! it over the old one, fsync the root. **The record is durable before the index changes**,
//! so a crash in between leaves rows that the next start re-stamps from it, never rows
//! that say more than the disk.

use std::fs;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::util::clockwatch::detector::STEP_THRESHOLD_MS;
use crate::util::clockwatch::TimeQuality;

use super::error::StoreError;
use super::fsutil::fsync_dir;
use super::index::Op;
use super::row::{SegmentId, SegmentRow, SegmentState};
use super::tables::AuxOp;
use super::Store;

/// The record of corrections, in the root.
pub const CORRECTIONS_FILE: &str = "clock-corrections.json";
/// Boots remembered in it (the oldest go first).
const BOOTS_KEPT: usize = 64;

/// The offset one boot's unsynchronized segments belong on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootCorrection {
    pub boot: String,
    /// Wall − boot clock, ms.
    pub offset_ms: i64,
    /// When it was recorded (on the corrected clock), ms since the epoch.
    pub at_ms: i64,
}

/// The content of [`CORRECTIONS_FILE`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Corrections {
    pub boots: Vec<BootCorrection>,
}

impl Corrections {
    /// `(boot, offset)` pairs, as [`Store::restamp`] takes them.
    pub fn targets(&self) -> Vec<(String, i64)> {
        self.boots
            .iter()
            .map(|b| (b.boot.clone(), b.offset_ms))
            .collect()
    }
}

/// One re-stamped segment: its times before and after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restamped {
    pub id: SegmentId,
    pub stream: String,
    pub seq: u64,
    pub old_start_ms: i64,
    pub old_end_ms: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Whether `row` is one a correction of `boot` to `offset_ms` moves: closed, recorded on
/// that boot without a synchronized clock, and more than `min_shift_ms` off that offset.
pub fn restamps(row: &SegmentRow, boot: &str, offset_ms: i64, min_shift_ms: i64) -> bool {
    row.state == SegmentState::Closed
        && row.time_quality != TimeQuality::Synced
        && row
            .boot
            .as_ref()
            .is_some_and(|b| b.id == boot && (b.offset_ms - offset_ms).abs() > min_shift_ms)
}

impl Store {
    /// The record of corrections (empty when there is none or it cannot be read; an
    /// unreadable one is logged).
    pub fn corrections(&self) -> Corrections {
        let path = self.shared.root.join(CORRECTIONS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable clock corrections; ignored");
                Corrections::default()
            }),
            Err(_) => Corrections::default(),
        }
    }

    /// Record durably that `boot`'s unsynchronized segments belong on `offset_ms` (see the
    /// module docs for the order of writes).
    pub fn record_correction(
        &self,
        boot: &str,
        offset_ms: i64,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.corrections();
        c.boots.retain(|b| b.boot != boot);
        c.boots.push(BootCorrection {
            boot: boot.to_string(),
            offset_ms,
            at_ms,
        });
        let excess = c.boots.len().saturating_sub(BOOTS_KEPT);
        c.boots.drain(..excess);
        let root = &self.shared.root;
        let path = root.join(CORRECTIONS_FILE);
        let tmp = root.join(format!("{CORRECTIONS_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&c).unwrap_or_default();
        let mut f = fs::File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        f.write_all(&json)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))?;
        drop(f);
        super::fsutil::rename(&tmp, &path)?;
        fsync_dir(root)
    }

    /// Move every closed row of each `(boot, offset)` in `targets` that [`restamps`] onto
    /// that offset, in one durable transaction with the ops `events` makes from what moved
    /// (the `clock.corrected` event). Rows being written are left to their writer, which
    /// closes them with the corrected start. Returns what moved.
    pub fn restamp(
        &self,
        targets: &[(String, i64)],
        min_shift_ms: i64,
        events: impl FnOnce(&[Restamped]) -> Vec<AuxOp>,
    ) -> Result<Vec<Restamped>, StoreError> {
        let moved = self.shared.index.update_rows(
            |row| {
                let (_, offset) = targets
                    .iter()
                    .find(|(boot, offset)| restamps(row, boot, *offset, min_shift_ms))?;
                let (old_start_ms, old_end_ms) = (row.start_ms, row.end_ms);
                row.restamp(*offset).then(|| Restamped {
                    id: row.id,
                    stream: row.stream.clone(),
                    seq: row.seq,
                    old_start_ms,
                    old_end_ms,
                    start_ms: row.start_ms,
                    end_ms: row.end_ms,
                })
            },
            |moved| events(moved).into_iter().map(Op::Aux).collect(),
        )?;
        Ok(moved)
    }

    /// Apply the record of corrections to the index (recovery's adoptions and an index
    /// rebuild start from the files, which hold the times as recorded). No events.
    pub fn apply_corrections(&self) -> Result<Vec<Restamped>, StoreError> {
        let targets = self.corrections().targets();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        self.restamp(&targets, STEP_THRESHOLD_MS, |_| Vec::new())
    }

    /// The latest end of `stream`'s rows recorded in boot `boot`.
    pub fn last_end_in_boot(&self, stream: &str, boot: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .shared
            .index
            .all()?
            .iter()
            .filter(|r| r.stream == stream && r.boot.as_ref().is_some_and(|b| b.id == boot))
            .map(|r| r.end_ms)
            .max())
    }
}
