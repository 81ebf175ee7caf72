//! The kernel's side of the clock: `adjtimex` (read only) and the boot id.

use super::detector::judge_sync;
use super::SyncState;

/// `adjtimex` with no modes (reading needs no privilege), judged by
/// [`judge_sync`]. A failed call counts as not synchronized.
pub fn sync_state(wall_ms: i64) -> SyncState {
    // SAFETY: a zeroed timex with `modes = 0` asks the kernel to only fill it in.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex writes into the struct we own.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return SyncState {
            synced: false,
            maxerror_ms: None,
        };
    }
    SyncState {
        synced: judge_sync(rc, tx.status as i64, tx.maxerror as i64, wall_ms),
        maxerror_ms: Some(tx.maxerror as i64 / 1000),
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id` without dashes); empty if unreadable.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_default()
}
