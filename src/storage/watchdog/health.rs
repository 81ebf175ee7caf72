//! The storage watchdog's edge: [`StorageHealth`], the handle every stream recorder and the
//! daemon share. It feeds the [`Watchdog`] with the time, logs every change, and hands the
//! `storage.alarm` bodies to the publisher the wiring place subscribed ([`StorageHealth::alarms`];
//! with MQTT, the outbox). Without a subscriber the log, `edgerec status` and the systemd
//! watchdog still get everything.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{error, info};

use super::{errno_name, Change, Condition, DiskSample, Fault, Verdict, Watchdog};
use crate::config::MinFree;
use crate::storage::store::{Store, StoreError};
use crate::util::clock::SharedClock;

/// The shared storage watchdog. `Send + Sync`; share it as `Arc<StorageHealth>`.
pub struct StorageHealth {
    watchdog: Mutex<Watchdog>,
    clock: SharedClock,
    out: Mutex<Option<UnboundedSender<serde_json::Value>>>,
    /// Paths in alarms are given relative to it.
    root: Option<std::path::PathBuf>,
}

impl StorageHealth {
    pub fn new(watchdog: Watchdog, clock: SharedClock) -> StorageHealth {
        StorageHealth {
            watchdog: Mutex::new(watchdog),
            clock,
            out: Mutex::new(None),
            root: None,
        }
    }

    /// Paths in alarms relative to `root` (the storage root).
    pub fn for_root(mut self, root: &Path) -> StorageHealth {
        self.root = Some(root.to_path_buf());
        self
    }

    /// A watchdog with the default `storage.stall_timeout` and `storage.fault_restart`.
    pub fn with_defaults(clock: SharedClock) -> std::sync::Arc<StorageHealth> {
        let w = Watchdog::new(
            crate::config::DEFAULT_STALL_TIMEOUT,
            crate::config::DEFAULT_FAULT_RESTART,
        );
        std::sync::Arc::new(StorageHealth::new(w, clock))
    }

    fn lock(&self) -> MutexGuard<'_, Watchdog> {
        self.watchdog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `storage.alarm` bodies from now on (one subscriber: a second call replaces the
    /// first).
    pub fn alarms(&self) -> UnboundedReceiver<serde_json::Value> {
        let (tx, rx) = unbounded_channel();
        *self.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    fn publish(&self, changes: Vec<Change>) {
        for c in changes {
            if c.raised {
                error!(alarm = %c.body, "storage alarm raised");
            } else {
                info!(alarm = %c.body, "storage alarm cleared");
            }
            if let Some(tx) = &*self.out.lock().unwrap_or_else(|p| p.into_inner()) {
                let _ = tx.send(c.body);
            }
        }
    }

    /// A storage call of `stream` failed with `e`. Returns false when `e` is not the
    /// storage's fault (a locked root, an unreadable index row, media we cannot parse).
    pub fn write_failed(&self, stream: &str, e: &StoreError) -> bool {
        let Some(mut fault) = fault_of(e) else {
            return false;
        };
        if let (Some(root), Some(p)) = (&self.root, &fault.path) {
            if let Ok(rel) = Path::new(p).strip_prefix(root) {
                fault.path = Some(rel.display().to_string());
            }
        }
        let (now, wall) = (self.clock.now(), self.clock.wall_ms());
        let changes = self.lock().write_failed(stream, fault, now, wall);
        self.publish(changes);
        true
    }

    /// Whether `stream`'s writer, busy with `op` since `busy_since`, is stalled (raising
    /// the alarm the first time).
    pub fn writer_busy(&self, stream: &str, op: &str, busy_since: Option<Instant>) -> bool {
        let (now, wall) = (self.clock.now(), self.clock.wall_ms());
        let (stalled, changes) = self.lock().writer_busy(stream, op, busy_since, now, wall);
        self.publish(changes);
        stalled
    }

    /// `stream` wrote again: its conditions clear.
    pub fn wrote(&self, stream: &str) {
        let changes = self.lock().wrote(stream, self.clock.now());
        self.publish(changes);
    }

    /// `stream` stopped recording: its conditions clear.
    pub fn stream_gone(&self, stream: &str) {
        let changes = self.lock().stream_gone(stream, self.clock.now());
        self.publish(changes);
    }

    /// Whether `stream` has an active condition.
    pub fn faulted(&self, stream: &str) -> bool {
        self.lock().faulted(stream)
    }

    /// The stall timeout (`storage.stall_timeout`).
    pub fn stall_timeout(&self) -> std::time::Duration {
        self.lock().stall_timeout()
    }

    /// Sample the disk holding the store's root (blocking: statvfs).
    pub fn sample_disk(&self, store: &Store, min_free: MinFree) {
        let Ok(d) = store.disk() else { return };
        let sample = DiskSample {
            free: d.free,
            total: d.total,
            min_free: min_free.bytes(d.total),
            read_only: read_only(store.root()),
        };
        let (now, wall) = (self.clock.now(), self.clock.wall_ms());
        let changes = self.lock().disk(sample, now, wall);
        self.publish(changes);
    }

    /// Feed the systemd watchdog or not (see the restart policy in [`super`]).
    pub fn verdict(&self) -> Verdict {
        self.lock().verdict(self.clock.now())
    }

    /// The active conditions, oldest first.
    pub fn conditions(&self) -> Vec<Condition> {
        self.lock().conditions()
    }

    /// One line for systemd's `STATUS=`, when something is wrong.
    pub fn summary(&self) -> Option<String> {
        let c = self.conditions();
        let first = c.first()?;
        let what = match (&first.stream, &first.errno, &first.op) {
            (Some(s), Some(e), Some(op)) => format!("{s}: {} ({op} {e})", first.alarm),
            (Some(s), _, _) => format!("{s}: {}", first.alarm),
            _ => first.alarm.clone(),
        };
        let more = if c.len() > 1 {
            format!(" and {} more", c.len() - 1)
        } else {
            String::new()
        };
        Some(format!("storage fault: {what}{more}"))
    }
}

/// The fault `e` reports, or `None` when it is not the storage's (the root locked by
/// another recorder, an index row we cannot decode, a file we cannot parse).
pub fn fault_of(e: &StoreError) -> Option<Fault> {
    let (op, path, errno) = match e {
        StoreError::Io { op, path, source } => (
            Some(op.to_string()),
            Some(path),
            source.raw_os_error().map(errno_name),
        ),
        StoreError::RootNotWritable { path, source, .. } => {
            (None, Some(path), source.raw_os_error().map(errno_name))
        }
        StoreError::BadRoot { path, .. }
        | StoreError::Writer { path, .. }
        | StoreError::BadName { path, .. } => (None, Some(path), None),
        StoreError::Index { path, .. } => (Some("index commit".into()), Some(path), None),
        StoreError::CommitFailed(_) => (Some("index commit".into()), None, None),
        StoreError::Locked { .. } | StoreError::BadRow { .. } | StoreError::Media { .. } => {
            return None
        }
    };
    Some(Fault {
        op,
        path: path.map(|p| p.display().to_string()),
        errno,
        error: e.to_string(),
    })
}

/// Whether the filesystem holding `path` is mounted read-only (false when unknown).
pub fn read_only(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs is plain old data; zeroed is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && (st.f_flag & libc::ST_RDONLY) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_segment_write_names_the_path_operation_and_errno() {
        let e = StoreError::Io {
            op: "create dir",
            path: "cam/7/cam-1.mp4".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        };
        let f = fault_of(&e).unwrap();
        assert_eq!(f.op.as_deref(), Some("create dir"));
        assert_eq!(f.path.as_deref(), Some("cam/7/cam-1.mp4"));
        assert_eq!(f.errno.as_deref(), Some("ENOTDIR"));
        assert!(f.error.contains("Not a directory"), "{}", f.error);
        let locked = StoreError::Locked {
            root: "/d".into(),
            lock: "/d/edgerec.lock".into(),
        };
        assert_eq!(fault_of(&locked), None, "not the disk's fault");
    }

    #[test]
    fn a_writable_temp_dir_is_not_read_only() {
        assert!(!read_only(&std::env::temp_dir()));
    }
}
