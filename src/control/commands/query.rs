//! `status`, `segments.list`, `retention.run` and the `upload.*` commands.

use serde_json::json;

use super::args::{bad_field, Args};
use super::reply::{code, Reply};
use super::Commands;
use crate::control::tasks::model::rfc3339;
use crate::control::tasks::TaskStatus;
use crate::storage::store::{SegmentRow, SegmentState, UploadState};

/// `segments.list` pages hold at most this many rows.
pub const MAX_LIMIT: u64 = 1000;
const DEFAULT_LIMIT: u64 = 100;

fn segment_json(r: &SegmentRow) -> serde_json::Value {
    json!({
        "id": r.id,
        "stream": r.stream,
        "app": r.app,
        "seq": r.seq,
        "state": format!("{:?}", r.state).to_lowercase(),
        "start_time": rfc3339(r.start_ms),
        "end_time": rfc3339(r.end_ms),
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "duration_ms": r.duration_ms,
        "bytes": r.bytes,
        "recovered": r.recovered,
        "uploaded": matches!(r.upload, UploadState::Uploaded { .. }),
        "time_quality": r.time_quality.as_str(),
        "files": r.files.iter().map(|f| json!({
            "path": f.path.display().to_string(),
            "format": f.format,
            "bytes": f.bytes,
        })).collect::<Vec<_>>(),
    })
}

impl Commands {
    pub(super) async fn status(&self, a: Args) -> Result<Reply, Reply> {
        a.finish()?;
        let sched = self.sched()?;
        let recording = sched.recording().await;
        let tasks = sched.list();
        let count = |s: TaskStatus| tasks.iter().filter(|t| t.status == s).count();
        let mut data = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "device_id": sched.config().device_id,
            "recording": recording,
            "tasks": {
                "pending": count(TaskStatus::Pending),
                "in_progress": count(TaskStatus::InProgress),
            },
            "upload_paused": self.inner.upload.as_ref().map(|u| u.is_paused()),
        });
        if let Some(src) = self.inner.status.clone() {
            let store = sched.store().clone();
            let report = tokio::task::spawn_blocking(move || src.report(&store))
                .await
                .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?
                .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?;
            data["report"] = serde_json::to_value(report).unwrap_or_default();
        }
        Ok(Reply::ok(data))
    }

    pub(super) async fn segments_list(&self, mut a: Args) -> Result<Reply, Reply> {
        let stream = a.opt_name("stream")?;
        let from = a.opt_time("from")?;
        let to = a.opt_time("to")?;
        let page = a.opt_u64("page")?.unwrap_or(0);
        let limit = a.opt_u64("limit")?.unwrap_or(DEFAULT_LIMIT);
        let after_id = a.opt_u64("after_id")?;
        a.finish()?;
        if limit == 0 || limit > MAX_LIMIT {
            return Err(bad_field("limit", format!("must be 1 to {MAX_LIMIT}")));
        }
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                return Err(Reply::error(code::BAD_TIME_RANGE, "to is before from"));
            }
        }
        if let Some(s) = &stream {
            if self.sched()?.config().stream(s).is_none()
                && !self.segments().await?.iter().any(|r| &r.stream == s)
            {
                return Err(Reply::error(
                    code::NO_SUCH_STREAM,
                    format!("no stream named {s:?} is configured or recorded"),
                ));
            }
        }
        let mut rows: Vec<SegmentRow> = self
            .segments()
            .await?
            .into_iter()
            .filter(|r| r.state != SegmentState::Deleting)
            .filter(|r| stream.as_ref().is_none_or(|s| &r.stream == s))
            .filter(|r| to.is_none_or(|t| r.start_ms <= t))
            .filter(|r| from.is_none_or(|f| r.end_ms >= f))
            .filter(|r| after_id.is_none_or(|a| r.id > a))
            .collect();
        // Recording order (ids are handed out as segments begin), never wall-clock time,
        // which a clock step can reorder (docs/time.md).
        rows.sort_by_key(|r| r.id);
        let total = rows.len() as u64;
        let items: Vec<_> = rows
            .iter()
            .skip(page.saturating_mul(limit).min(total) as usize)
            .take(limit as usize)
            .map(segment_json)
            .collect();
        Ok(Reply::ok(json!({
            "total": total,
            "page": page,
            "limit": limit,
            "segments": items,
        })))
    }

    /// Run a retention pass now (in the daemon's retention loop, so never beside another
    /// pass) and reply with what it deleted.
    pub(super) async fn retention_run(&self, a: Args) -> Result<Reply, Reply> {
        a.finish()?;
        let Some(trigger) = &self.inner.retention else {
            return Err(Reply::error(
                code::UNAVAILABLE,
                "retention is not running here",
            ));
        };
        let gone = || Reply::error(code::UNAVAILABLE, "the recorder is shutting down");
        let (tx, rx) = tokio::sync::oneshot::channel();
        trigger.send(tx).await.map_err(|_| gone())?;
        let run = rx.await.map_err(|_| gone())?;
        if let Some(e) = &run.error {
            return Err(Reply::error(
                code::INTERNAL,
                format!("the retention pass failed: {e}"),
            ));
        }
        Ok(Reply::ok(json!({
            "deleted": run.deleted,
            "segments": run.deleted.len(),
            "freed_bytes": run.freed_bytes,
            "unmet": run.unmet,
        })))
    }

    pub(super) async fn upload(&self, name: &str, a: Args) -> Result<Reply, Reply> {
        a.finish()?;
        let Some(up) = self.inner.upload.clone() else {
            return Err(Reply::error(
                code::UNAVAILABLE,
                "uploads are not configured on this device",
            ));
        };
        let action = name.trim_start_matches("upload.").to_string();
        let res = tokio::task::spawn_blocking(move || match action.as_str() {
            "pause" => up.pause(),
            "resume" => up.resume(),
            _ => {
                up.now();
                Ok(())
            }
        })
        .await
        .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?;
        res.map_err(|e| Reply::error(code::INTERNAL, e))?;
        let paused = self.inner.upload.as_ref().map(|u| u.is_paused());
        Ok(Reply::ok(json!({ "paused": paused })))
    }
}
