//! One job: upload every file of a segment, then record it as uploaded (one durable commit
//! with the `segment.uploaded` event) and, with `delete_after_upload`, delete it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::shared::{blocking, pending, Shared};
use super::target::Target;
use super::transfer::{self, FileJob, Progress};
use super::UploadError;
use crate::storage::store::{AuxOp, AuxTable, SegmentRow, UploadState};
use crate::sync::events::EventKind;
use crate::util::object_key::KeyFields;

/// The parts of `row` an object key is made of.
fn key_fields(row: &SegmentRow) -> KeyFields<'_> {
    KeyFields {
        device: &row.device,
        app: &row.app,
        stream: &row.stream,
        seq: row.seq,
        id: row.id,
        start_ms: row.start_ms,
    }
}

/// What a finished job reports.
pub(super) enum Outcome {
    Uploaded {
        url: String,
        bytes: u64,
        /// From the first read to the recorded commit.
        elapsed: Duration,
    },
    /// The segment is gone or no longer pending.
    Gone,
}

/// Upload every file of segment `id` to `target`, then record it as uploaded.
pub(super) async fn upload_segment(
    s: Arc<Shared>,
    target: Arc<Target>,
    id: u64,
    done: Arc<AtomicU64>,
) -> Result<Outcome, UploadError> {
    let started = s.clock.now();
    let store = s.store.clone();
    let row = blocking(move || store.segment(id)).await?;
    let Some(row) = row.filter(pending) else {
        return Ok(Outcome::Gone);
    };
    let store = s.store.clone();
    let mut progress = blocking(move || {
        Ok(store
            .aux_get(AuxTable::UploadParts, id)?
            .map(|b| Progress::decode(&b))
            .unwrap_or_default())
    })
    .await?;
    let may_continue = || s.control.may_transfer();
    let mut first_key = None;
    for (i, f) in row.files.iter().enumerate() {
        let key = target
            .cfg
            .key
            .expand(target.prefix(), &key_fields(&row), &f.path)
            .map_err(|m| UploadError::Target {
                target: target.cfg.name.clone(),
                message: m,
            })?;
        first_key.get_or_insert_with(|| key.clone());
        if (i as u32) < progress.files_done {
            continue;
        }
        let path = s.store.root().join(&f.path);
        let size = file_size(&path).await?;
        let job = FileJob {
            store: &s.store,
            segment: id,
            path,
            key,
            size,
            part_size: s.up.part_size,
            done: &done,
            may_continue: &may_continue,
        };
        target.upload_file(&job, &mut progress).await?;
        progress.files_done = i as u32 + 1;
        progress.multipart = None;
        if i + 1 < row.files.len() {
            transfer::save(&s.store, id, &progress).await?;
        }
    }
    let url = target.url(first_key.as_deref().unwrap_or_default());
    let at_ms = s.clock.wall_ms();
    let store = s.store.clone();
    let events = s.events.clone();
    let u = url.clone();
    let recorded = blocking(move || {
        let mut ops = vec![AuxOp::remove(AuxTable::UploadParts, id)];
        // Re-read: the row is what it is now (retention never deletes a segment in flight).
        let Some(mut row) = store.segment(id)? else {
            store.aux_commit(ops, None, true)?;
            return Ok(None);
        };
        if let Some(ev) = &events {
            ops.extend(ev.ops(
                EventKind::SegmentUploaded,
                crate::sync::events::segment::segment_event_id(&row.device, &row, "uploaded"),
                at_ms,
                uploaded_body(&row, &u),
            ));
        }
        row.upload = UploadState::Uploaded { url: u, at_ms };
        let bytes = row.bytes;
        store.aux_commit(ops, Some(row), true)?;
        Ok(Some(bytes))
    })
    .await?;
    let Some(bytes) = recorded else {
        return Ok(Outcome::Gone);
    };
    let elapsed = s.clock.now().saturating_duration_since(started);
    if s.up.delete_after_upload {
        let store = s.store.clone();
        match blocking(move || store.delete(&[id])).await {
            Ok(freed) => info!(segment = id, bytes = freed, "deleted after upload"),
            Err(e) => warn!(segment = id, error = %e, "cannot delete an uploaded segment"),
        }
    }
    Ok(Outcome::Uploaded {
        url,
        bytes,
        elapsed,
    })
}

/// The size of a segment file (blocking pool).
async fn file_size(path: &std::path::Path) -> Result<u64, UploadError> {
    let p = path.to_path_buf();
    let res = tokio::task::spawn_blocking(move || std::fs::metadata(&p).map(|m| m.len())).await;
    match res {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(source)) => Err(UploadError::Read {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) => Err(UploadError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// The `segment.uploaded` event body: the fields of a cloud recording callback.
fn uploaded_body(row: &SegmentRow, url: &str) -> serde_json::Value {
    serde_json::json!({
        "stream_id": row.stream,
        "app": row.app,
        "seq": row.seq,
        "start_time": row.start_ms.div_euclid(1000),
        "end_time": row.end_ms.div_euclid(1000),
        "start_ms": row.start_ms,
        "end_ms": row.end_ms,
        "file_format": row.container().file_format(),
        "file_size": row.bytes,
        "file_id": row.id.to_string(),
        "video_url": url,
        "time_quality": row.time_quality.as_str(),
    })
}
