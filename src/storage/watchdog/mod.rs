//! The storage watchdog: which storage conditions are active, when each started, and what
//! to tell the world about them. It runs whether or not MQTT is configured.
//!
//! This module is the decision, free of I/O: plain calls with the time passed in
//! ([`Watchdog`]), unit-tested on a simulated clock. [`health::StorageHealth`] is its edge:
//! the handle the stream recorders and the daemon share, which logs each change and hands
//! it to whoever publishes `storage.alarm` events (the MQTT outbox, when configured).
//!
//! # Conditions
//!
//! | alarm | scope | raised | cleared |
//! | --- | --- | --- | --- |
//! | `write_error` | a stream | a segment write, fsync, rename or create failed (EIO, ENOSPC, EROFS, …) | the stream wrote a fragment again |
//! | `stalled` | a stream | its writer has been inside one batch (a fragment's write and fdatasync, or a close) for `storage.stall_timeout` | the stream wrote a fragment again |
//! | `low_space` | the disk | free space below `storage.min_free` on two samples in a row | one sample above |
//! | `read_only` | the disk | the filesystem is mounted read-only | mounted read-write |
//!
//! **Stall detection.** Every stream's writer thread marks when it starts a batch and when
//! it is done (a [`crate::util::busy::Busy`] heartbeat). The stream task looks at its
//! writer's mark every second and asks [`Watchdog::writer_busy`] whether that is a stall;
//! a thread stuck in the kernel cannot report anything itself, so the look comes from
//! outside it. A stalled stream gives up on that writer, keeps its source and waits for
//! the stuck call to return, then records again (see [`crate::pipeline::recorder`]).
//!
//! # Restart policy ([`Watchdog::verdict`])
//!
//! While every active condition is younger than `storage.fault_restart`, the recorder
//! handles it by itself (the other streams record, the faulted one retries) and the systemd
//! watchdog is fed. Once one has lasted that long, the verdict is [`Verdict::Restart`]: the
//! daemon stops feeding the watchdog, and systemd (with `WatchdogSec`) restarts the
//! recorder. A restart is what is left to try: it reopens the index (redb refuses to go on
//! after an I/O error until reopened), runs the storage guard again (a disk that came back
//! elsewhere is noticed) and recovery. A condition that persists after the restart starts
//! over, so restarts are at least `fault_restart` apart.

pub mod health;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often the disk is sampled for `low_space` and `read_only`.
pub const DISK_EVERY: Duration = Duration::from_secs(10);

/// A failed storage call of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// What was being done (`write`, `fdatasync`, `rename`, …).
    pub op: Option<String>,
    pub path: Option<String>,
    /// The errno's name (`EIO`, `ENOSPC`, `EROFS`), when the kernel gave one.
    pub errno: Option<String>,
    pub error: String,
}

/// One active condition, as `edgerec status` shows it and `storage.alarm` raises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// `write_error`, `stalled`, `low_space` or `read_only`.
    pub alarm: String,
    /// The stream it stops (none for the disk-wide ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall-clock start, ms since the Unix epoch.
    pub since_ms: i64,
    /// Failed calls in this streak (`write_error`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A condition raised or cleared: the `storage.alarm` body.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub raised: bool,
    pub body: serde_json::Value,
}

/// One disk sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSample {
    pub free: u64,
    pub total: u64,
    /// `storage.min_free` in bytes for this filesystem.
    pub min_free: u64,
    pub read_only: bool,
}

/// What to tell the systemd watchdog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing has lasted `fault_restart`: feed it.
    Feed,
    /// `condition` has lasted `lasted`: stop feeding, so systemd restarts the recorder.
    Restart {
        condition: Condition,
        lasted: Duration,
    },
}

struct Active {
    cond: Condition,
    since: Instant,
}

type Key = (&'static str, Option<String>);

/// The state of every storage condition.
pub struct Watchdog {
    active: BTreeMap<Key, Active>,
    stall_timeout: Duration,
    fault_restart: Duration,
    low_samples: u32,
}

impl Watchdog {
    /// `stall_timeout`: a writer busy this long is stalled; `fault_restart`: a condition
    /// lasting this long asks for a restart.
    pub fn new(stall_timeout: Duration, fault_restart: Duration) -> Watchdog {
        Watchdog {
            active: BTreeMap::new(),
            stall_timeout,
            fault_restart,
            low_samples: 0,
        }
    }

    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// A storage call of `stream` failed. Raised at the first failure of a streak; later
    /// ones are counted.
    pub fn write_failed(
        &mut self,
        stream: &str,
        f: Fault,
        now: Instant,
        wall_ms: i64,
    ) -> Vec<Change> {
        let key = ("write_error", Some(stream.to_owned()));
        if let Some(a) = self.active.get_mut(&key) {
            a.cond.failures += 1;
            return Vec::new();
        }
        let cond = Condition {
            alarm: "write_error".into(),
            stream: Some(stream.to_owned()),
            op: f.op,
            path: f.path,
            errno: f.errno,
            error: Some(f.error),
            since_ms: wall_ms,
            failures: 1,
        };
        self.raise(key, cond, now)
    }

    /// `stream`'s writer has been inside one batch since `busy_since` (`None`: idle),
    /// doing `op`. Returns whether that is a stall, and the alarm raised if it is new.
    pub fn writer_busy(
        &mut self,
        stream: &str,
        op: &str,
        busy_since: Option<Instant>,
        now: Instant,
        wall_ms: i64,
    ) -> (bool, Vec<Change>) {
        let Some(since) = busy_since else {
            return (false, Vec::new());
        };
        let busy = now.saturating_duration_since(since);
        if busy < self.stall_timeout {
            return (false, Vec::new());
        }
        let key = ("stalled", Some(stream.to_owned()));
        if self.active.contains_key(&key) {
            return (true, Vec::new());
        }
        let cond = Condition {
            alarm: "stalled".into(),
            stream: Some(stream.to_owned()),
            op: Some(op.to_owned()),
            path: None,
            errno: None,
            error: Some(format!(
                "a segment {op} has not returned for {} s",
                busy.as_secs()
            )),
            since_ms: wall_ms - busy.as_millis() as i64,
            failures: 0,
        };
        (true, self.raise(key, cond, since))
    }

    /// `stream` wrote a fragment (or closed a segment) again: its conditions clear.
    pub fn wrote(&mut self, stream: &str, now: Instant) -> Vec<Change> {
        self.clear_stream(stream, now, None)
    }

    /// `stream` stopped recording (unwanted, or shut down): its conditions are no one's to
    /// clear any more, so they clear with `reason`.
    pub fn stream_gone(&mut self, stream: &str, now: Instant) -> Vec<Change> {
        self.clear_stream(stream, now, Some("stream stopped"))
    }

    /// Whether `stream` has an active condition.
    pub fn faulted(&self, stream: &str) -> bool {
        self.active
            .keys()
            .any(|(_, s)| s.as_deref() == Some(stream))
    }

    /// A disk sample. Low space must be seen on two samples in a row: retention frees space
    /// after every segment close, so one low sample is normal; two mean retention cannot
    /// keep up or nothing is left to evict.
    pub fn disk(&mut self, s: DiskSample, now: Instant, wall_ms: i64) -> Vec<Change> {
        let mut out = Vec::new();
        if s.free < s.min_free {
            self.low_samples += 1;
        } else {
            self.low_samples = 0;
        }
        let key: Key = ("low_space", None);
        let low = self.low_samples >= 2;
        let fields = serde_json::json!({
            "free_bytes": s.free, "total_bytes": s.total, "min_free_bytes": s.min_free,
        });
        if low && !self.active.contains_key(&key) {
            let cond = disk_condition("low_space", wall_ms);
            out.extend(
                self.raise(key.clone(), cond, now)
                    .into_iter()
                    .map(|c| with(c, &fields)),
            );
        } else if !low && self.active.contains_key(&key) {
            out.extend(
                self.clear(&key, now, None)
                    .into_iter()
                    .map(|c| with(c, &fields)),
            );
        }
        let key: Key = ("read_only", None);
        if s.read_only && !self.active.contains_key(&key) {
            out.extend(self.raise(key, disk_condition("read_only", wall_ms), now));
        } else if !s.read_only && self.active.contains_key(&key) {
            out.extend(self.clear(&key, now, None));
        }
        out
    }

    /// Feed the systemd watchdog, or let it restart the recorder (see the module docs).
    pub fn verdict(&self, now: Instant) -> Verdict {
        let oldest = self.active.values().min_by_key(|a| a.since);
        match oldest {
            Some(a) if now.saturating_duration_since(a.since) >= self.fault_restart => {
                Verdict::Restart {
                    condition: a.cond.clone(),
                    lasted: now.saturating_duration_since(a.since),
                }
            }
            _ => Verdict::Feed,
        }
    }

    /// The active conditions, oldest first.
    pub fn conditions(&self) -> Vec<Condition> {
        let mut v: Vec<&Active> = self.active.values().collect();
        v.sort_by_key(|a| a.since);
        v.into_iter().map(|a| a.cond.clone()).collect()
    }

    fn raise(&mut self, key: Key, cond: Condition, since: Instant) -> Vec<Change> {
        let mut body = serde_json::to_value(&cond).expect("plain struct");
        body["active"] = true.into();
        self.active.insert(key, Active { cond, since });
        vec![Change { raised: true, body }]
    }

    fn clear(&mut self, key: &Key, now: Instant, reason: Option<&str>) -> Vec<Change> {
        let Some(a) = self.active.remove(key) else {
            return Vec::new();
        };
        let mut body = serde_json::json!({
            "alarm": a.cond.alarm,
            "active": false,
            "since_ms": a.cond.since_ms,
            "lasted_ms": now.saturating_duration_since(a.since).as_millis() as u64,
        });
        if let Some(s) = &a.cond.stream {
            body["stream"] = s.clone().into();
        }
        if a.cond.failures > 0 {
            body["failures"] = a.cond.failures.into();
        }
        if let Some(r) = reason {
            body["reason"] = r.into();
        }
        vec![Change {
            raised: false,
            body,
        }]
    }

    fn clear_stream(&mut self, stream: &str, now: Instant, reason: Option<&str>) -> Vec<Change> {
        let keys: Vec<Key> = self
            .active
            .keys()
            .filter(|(_, s)| s.as_deref() == Some(stream))
            .cloned()
            .collect();
        keys.iter()
            .flat_map(|k| self.clear(k, now, reason))
            .collect()
    }
}

fn disk_condition(alarm: &str, wall_ms: i64) -> Condition {
    Condition {
        alarm: alarm.into(),
        stream: None,
        op: None,
        path: None,
        errno: None,
        error: None,
        since_ms: wall_ms,
        failures: 0,
    }
}

fn with(mut c: Change, fields: &serde_json::Value) -> Change {
    if let (Some(b), Some(f)) = (c.body.as_object_mut(), fields.as_object()) {
        b.extend(f.clone());
    }
    c
}

/// The name of an errno the storage gives (`EIO`, `ENOSPC`, …), or `errno N`.
pub fn errno_name(code: i32) -> String {
    let name = match code {
        libc::EIO => "EIO",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EDQUOT => "EDQUOT",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENOENT => "ENOENT",
        libc::EBUSY => "EBUSY",
        libc::ENXIO => "ENXIO",
        libc::ENODEV => "ENODEV",
        _ => return format!("errno {code}"),
    };
    name.to_owned()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
