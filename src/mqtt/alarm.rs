//! `storage.alarm` events: low space and a read-only disk, raised when they start and
//! cleared when they end. The decision is pure ([`StorageWatch`]); the MQTT task samples the
//! disk every [`CHECK_EVERY`].

use std::path::Path;
use std::time::Duration;

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
    fn a_writable_temp_dir_is_not_read_only() {
        assert!(!read_only(&std::env::temp_dir()));
    }
}
