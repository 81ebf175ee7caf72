//! `storage.alarm` events, raised when a problem starts and cleared when it ends:
//!
//! - low space and a read-only disk: the decision is pure ([`StorageWatch`]); the MQTT task
//!   samples the disk every [`CHECK_EVERY`];
//! - a segment write, fsync or rename that failed ([`WriteAlarm`], one per stream
//!   recorder): raised at the first failure of a streak, cleared when the stream next closes
//!   a segment cleanly.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::warn;

use crate::media::sink::SinkError;
use crate::storage::store::StoreError;
use crate::sync::events::{EventKind, Events};
use crate::util::clock::SharedClock;

/// How often the disk is sampled.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// One disk sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSample {
    pub free: u64,
    pub total: u64,
    /// `storage.min_free` in bytes for this filesystem.
    pub min_free: u64,
    pub read_only: bool,
}

/// Alarm state across samples.
#[derive(Debug, Default)]
pub struct StorageWatch {
    low_samples: u32,
    low: bool,
    read_only: bool,
}

impl StorageWatch {
    /// The `storage.alarm` bodies `s` raises or clears. Low space must be seen on two
    /// samples in a row: retention frees space after every segment close, so one low sample
    /// is normal; two mean retention cannot keep up or nothing is left to evict.
    pub fn sample(&mut self, s: DiskSample) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        if s.free < s.min_free {
            self.low_samples += 1;
        } else {
            self.low_samples = 0;
        }
        let low = self.low_samples >= 2;
        if low != self.low {
            self.low = low;
            out.push(serde_json::json!({
                "alarm": "low_space", "active": low,
                "free_bytes": s.free, "total_bytes": s.total, "min_free_bytes": s.min_free,
            }));
        }
        if s.read_only != self.read_only {
            self.read_only = s.read_only;
            out.push(serde_json::json!({"alarm": "read_only", "active": s.read_only}));
        }
        out
    }
}

/// The `storage.alarm` body of a failed segment write of `stream`, or `None` when the
/// failure is not the storage's (a frame that cannot be encoded, a bad naming template).
pub fn write_error_body(stream: &str, e: &SinkError) -> Option<serde_json::Value> {
    let SinkError::Store(store) = e else {
        return None;
    };
    let (op, path) = match store {
        StoreError::Io { op, path, .. } => (Some(*op), Some(path)),
        StoreError::RootNotWritable { path, .. } | StoreError::BadRoot { path, .. } => {
            (None, Some(path))
        }
        StoreError::Writer { path, .. } | StoreError::BadName { path, .. } => (None, Some(path)),
        StoreError::Index { path, .. } => (Some("index commit"), Some(path)),
        StoreError::CommitFailed(_) => (Some("index commit"), None),
        StoreError::Locked { .. } | StoreError::BadRow { .. } | StoreError::Media { .. } => {
            return None
        }
    };
    Some(serde_json::json!({
        "alarm": "write_error",
        "active": true,
        "stream": stream,
        "op": op,
        "path": path.map(|p| p.display().to_string()),
        "error": store.to_string(),
    }))
}

/// The `write_error` alarm of one stream recorder.
pub struct WriteAlarm {
    events: Option<Events>,
    stream: String,
    clock: SharedClock,
    raised: AtomicBool,
}

impl WriteAlarm {
    /// Alarms of `stream` go to `events` (`None`: nowhere, the log says it all).
    pub fn new(events: Option<Events>, stream: &str, clock: SharedClock) -> WriteAlarm {
        WriteAlarm {
            events: events.filter(Events::enabled),
            stream: stream.to_string(),
            clock,
            raised: AtomicBool::new(false),
        }
    }

    /// A segment write failed: raise the alarm, unless it is raised already.
    pub async fn failed(&self, e: &SinkError) {
        let Some(body) = write_error_body(&self.stream, e) else {
            return;
        };
        if self.raised.swap(true, Ordering::SeqCst) {
            return;
        }
        warn!(alarm = %body, "storage alarm");
        self.emit(body).await;
    }

    /// A segment was closed cleanly: clear a raised alarm.
    pub async fn closed(&self) {
        if self.raised.swap(false, Ordering::SeqCst) {
            let body = serde_json::json!({
                "alarm": "write_error", "active": false, "stream": self.stream,
            });
            self.emit(body).await;
        }
    }

    async fn emit(&self, body: serde_json::Value) {
        let Some(events) = self.events.clone() else {
            return;
        };
        let at = self.clock.wall_ms();
        let r = tokio::task::spawn_blocking(move || events.emit(EventKind::StorageAlarm, at, body))
            .await;
        if let Ok(Err(e)) = r {
            warn!(error = %e, "cannot store a storage.alarm event");
        }
    }
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

    fn s(free: u64, read_only: bool) -> DiskSample {
        DiskSample {
            free,
            total: 1000,
            min_free: 100,
            read_only,
        }
    }

    #[test]
    fn low_space_is_raised_after_two_low_samples_and_cleared_once() {
        let mut w = StorageWatch::default();
        assert!(
            w.sample(s(50, false)).is_empty(),
            "one low sample is normal"
        );
        let raised = w.sample(s(40, false));
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0]["alarm"], "low_space");
        assert_eq!(raised[0]["active"], true);
        assert!(w.sample(s(30, false)).is_empty(), "raised only once");
        let cleared = w.sample(s(500, false));
        assert_eq!(cleared[0]["active"], false);
        assert!(w.sample(s(500, false)).is_empty());
    }

    #[test]
    fn a_read_only_disk_is_raised_at_once_and_cleared() {
        let mut w = StorageWatch::default();
        let r = w.sample(s(500, true));
        assert_eq!(r[0]["alarm"], "read_only");
        assert_eq!(r[0]["active"], true);
        assert!(w.sample(s(500, true)).is_empty());
        assert_eq!(w.sample(s(500, false))[0]["active"], false);
    }

    #[test]
    fn a_failed_segment_write_names_the_stream_path_and_operation() {
        let e = SinkError::Store(StoreError::Io {
            op: "create dir",
            path: "cam/7/cam-1.mp4".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
        let b = write_error_body("cam", &e).unwrap();
        assert_eq!(b["alarm"], "write_error");
        assert_eq!(b["active"], true);
        assert_eq!(b["stream"], "cam");
        assert_eq!(b["op"], "create dir");
        assert_eq!(b["path"], "cam/7/cam-1.mp4");
        assert!(
            b["error"].as_str().unwrap().contains("Not a directory"),
            "{b}"
        );
        let encode = SinkError::Encode {
            seq: 1,
            reason: "x".into(),
        };
        assert_eq!(
            write_error_body("cam", &encode),
            None,
            "not the disk's fault"
        );
    }

    #[test]
    fn a_writable_temp_dir_is_not_read_only() {
        assert!(!read_only(&std::env::temp_dir()));
    }
}
