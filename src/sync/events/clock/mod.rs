//! What a clock step does to the recordings, and the events that report it.
//!
//! - `clock.step`: the wall clock moved (from, to, delta, whether it was synchronized);
//!   stored on its own, durably.
//! - `clock.corrected`: segments were re-stamped after a correction (a step of a clock that
//!   was not synchronized), with each one's old and new times; stored in the very commit
//!   that re-stamps them.
//!
//! [`on_step`] handles one step as the watched clock reports it; [`reconcile`] runs at
//! start, after recovery, for steps made while edgerec was not running and corrections a
//! crash kept out of the index. See `docs/time.md`.

use serde_json::json;

use crate::storage::store::{restamps, AuxOp, Restamped, Store, StoreError};
use crate::sync::events::{EventKind, Events};
use crate::util::clock::Clock;
use crate::util::clockwatch::detector::STEP_THRESHOLD_MS;
use crate::util::clockwatch::{ClockWatch, Step};

/// At most this many segments are listed in one `clock.corrected` event (the count is
/// always complete).
pub const LISTED: usize = 500;

/// The body of `clock.step`.
pub fn step_body(step: &Step) -> serde_json::Value {
    json!({
        "from_ms": step.from_ms,
        "to_ms": step.to_ms,
        "delta_ms": step.delta_ms,
        "was_synced": step.was_synced,
        "correction": step.correction,
    })
}

/// The body of `clock.corrected`: the boot and the offset its segments moved onto, when one
/// correction made it (`None`: recorded corrections applied again at start).
pub fn corrected_body(onto: Option<(&str, i64)>, moved: &[Restamped]) -> serde_json::Value {
    json!({
        "boot_id": onto.map(|o| o.0),
        "offset_ms": onto.map(|o| o.1),
        "count": moved.len(),
        "truncated": moved.len() > LISTED,
        "segments": moved.iter().take(LISTED).map(|m| json!({
            "file_id": m.id.to_string(),
            "stream_id": m.stream,
            "seq": m.seq,
            "old_start_ms": m.old_start_ms,
            "old_end_ms": m.old_end_ms,
            "start_ms": m.start_ms,
            "end_ms": m.end_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Move this boot's unsynchronized segments onto `offset_ms`: the record first (durable),
/// then the rows with their `clock.corrected` event (blocking).
fn correct(
    store: &Store,
    events: &Events,
    boot: &str,
    offset_ms: i64,
    now_ms: i64,
) -> Result<Vec<Restamped>, StoreError> {
    store.record_correction(boot, offset_ms, now_ms)?;
    let mut targets = store.corrections().targets();
    if !targets.iter().any(|(b, _)| b == boot) {
        targets.push((boot.to_string(), offset_ms));
    }
    store.restamp(&targets, STEP_THRESHOLD_MS, |moved| -> Vec<AuxOp> {
        let id = events.fresh_id();
        events.ops(
            EventKind::ClockCorrected,
            id,
            now_ms,
            corrected_body(Some((boot, offset_ms)), moved),
        )
    })
}

/// Handle one step (blocking): the `clock.step` event, and for a correction the re-stamp.
pub fn on_step(
    store: &Store,
    events: &Events,
    watch: &ClockWatch,
    step: &Step,
) -> Result<Vec<Restamped>, StoreError> {
    events.emit(EventKind::ClockStep, step.to_ms, step_body(step))?;
    if !step.correction || watch.boot_id().is_empty() {
        return Ok(Vec::new());
    }
    let moved = correct(
        store,
        events,
        watch.boot_id(),
        step.new_offset_ms,
        watch.wall_ms(),
    )?;
    if !moved.is_empty() {
        tracing::info!(
            segments = moved.len(),
            delta_ms = step.delta_ms,
            "re-stamped the segments recorded before the clock was corrected"
        );
    }
    Ok(moved)
}

/// At start, after recovery (blocking): segments of this boot recorded without a
/// synchronized clock on another offset than the one in force (the clock was stepped while
/// edgerec was not running, or a crash came between a correction's record and its
/// re-stamp) are moved onto it; corrections recorded for other boots are applied too.
pub fn reconcile(
    store: &Store,
    events: &Events,
    watch: &ClockWatch,
) -> Result<Vec<Restamped>, StoreError> {
    let boot = watch.boot_id();
    let offset = watch.offset_ms();
    let stale = !boot.is_empty()
        && store
            .segments()?
            .iter()
            .any(|r| restamps(r, boot, offset, STEP_THRESHOLD_MS));
    let moved = if stale {
        tracing::warn!(
            offset_ms = offset,
            "the clock was stepped while edgerec was not running, before it was synchronized: \
             re-stamping this boot's segments"
        );
        correct(store, events, boot, offset, watch.wall_ms())?
    } else {
        let targets = store.corrections().targets();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        store.restamp(&targets, STEP_THRESHOLD_MS, |moved| {
            let id = events.fresh_id();
            events.ops(
                EventKind::ClockCorrected,
                id,
                watch.wall_ms(),
                corrected_body(None, moved),
            )
        })?
    };
    Ok(moved)
}

/// Handle the steps the watched clock reports until `cancel` (one task; it wakes only on a
/// step).
pub async fn serve(
    mut steps: tokio::sync::mpsc::UnboundedReceiver<Step>,
    store: std::sync::Arc<Store>,
    events: Events,
    watch: std::sync::Arc<ClockWatch>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let step = tokio::select! {
            _ = cancel.cancelled() => return,
            s = steps.recv() => match s { Some(s) => s, None => return },
        };
        let (store, events, watch) = (store.clone(), events.clone(), watch.clone());
        let r = tokio::task::spawn_blocking(move || on_step(&store, &events, &watch, &step)).await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "handling a clock step failed; the next start re-stamps what it missed")
            }
            Err(e) => tracing::error!(error = %e, "the clock step task failed"),
        }
    }
}

#[cfg(test)]
mod tests;
