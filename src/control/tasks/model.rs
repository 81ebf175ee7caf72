//! A record task as stored (postcard, in [`AuxTable::Tasks`](crate::storage::store::AuxTable) under
//! its id) and as reported (JSON).

use serde::{Deserialize, Serialize};

/// How a task was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// `record.start`: starts now, ends at its end time or when stopped.
    RealTime,
    /// `task.create`: starts and ends at given times.
    Scheduled,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::RealTime => "real_time",
            TaskKind::Scheduled => "scheduled",
        }
    }
}

/// Where a task is in its life: pending → in_progress → completed | error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Waiting for its start time.
    Pending,
    /// Its stream is being recorded for it.
    InProgress,
    /// Ended at its end time, or stopped.
    Completed,
    /// Failed: its pulled source failed 3 attempts in a row, or its window passed while the
    /// recorder was not running.
    Error,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Completed => "completed",
            TaskStatus::Error => "error",
        }
    }

    /// Completed or error: nothing will change any more.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Error)
    }
}

/// One record task. Times are ms since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Unique, increasing; the key in the tasks table.
    pub id: u64,
    pub kind: TaskKind,
    /// A configured stream.
    pub stream: String,
    /// The template to record with; `None` = the stream's rule template, or the first
    /// template that records.
    pub template: Option<String>,
    /// Planned start.
    pub start_ms: i64,
    /// Planned end; `None` = until stopped.
    pub end_ms: Option<i64>,
    pub status: TaskStatus,
    /// When it actually went in progress.
    pub started_ms: Option<i64>,
    /// When it actually completed or failed.
    pub ended_ms: Option<i64>,
    /// Why it is in `error`.
    pub error: Option<String>,
    pub created_ms: i64,
}

impl Task {
    /// Postcard bytes for the tasks table.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a task always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Task> {
        postcard::from_bytes(bytes).ok()
    }

    /// The wall-clock window its files are counted in: from when it started to when it
    /// ended (or `now` while in progress). `None` before it started.
    pub fn window(&self, now_ms: i64) -> Option<(i64, i64)> {
        let from = self.started_ms?;
        Some((from, self.ended_ms.unwrap_or(now_ms).max(from)))
    }
}

/// RFC 3339 (UTC, milliseconds) for a time in ms since the Unix epoch.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A task as the `task.*` and `record.*` commands and the `task.status` event report it.
/// `files` and `bytes` count the closed segments of its stream that overlap its window.
pub fn to_json(t: &Task, files: u64, bytes: u64) -> serde_json::Value {
    let time = |ms: Option<i64>| ms.map(rfc3339);
    serde_json::json!({
        "task_id": t.id,
        "kind": t.kind.as_str(),
        "stream": t.stream,
        "template": t.template,
        "status": t.status.as_str(),
        "start_time": rfc3339(t.start_ms),
        "end_time": time(t.end_ms),
        "started_at": time(t.started_ms),
        "ended_at": time(t.ended_ms),
        "error": t.error,
        "files": files,
        "bytes": bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_survives_encoding() {
        let t = Task {
            id: 7,
            kind: TaskKind::Scheduled,
            stream: "cam1".into(),
            template: Some("continuous".into()),
            start_ms: 1_000,
            end_ms: Some(2_000),
            status: TaskStatus::Error,
            started_ms: Some(1_001),
            ended_ms: None,
            error: Some("source failed".into()),
            created_ms: 5,
        };
        assert_eq!(Task::decode(&t.encode()), Some(t));
        assert_eq!(Task::decode(b"\xff\xff"), None);
    }

    #[test]
    fn rfc3339_has_milliseconds_in_utc() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
