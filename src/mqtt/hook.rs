//! Segment events, added to the outbox inside the very index commit that closes or drops
//! the segment (an [`IndexHook`]): a crash can never keep the segment's new state and lose
//! its event, or the reverse. Recovery calls the hooks again for what it closes or adopts,
//! and ids are derived from the segment and the fact (`{device}-seg-{id}-{fact}`), so a
//! redelivery after a crash carries the same id.
//!
//! - `segment.closed`: its writer closed it, or recovery adopted files missing from the index;
//! - `segment.recovered`: recovery finished a segment torn by a crash (instead of `closed`);
//! - `segment.evicted`: retention or a delete dropped it, with `never_uploaded`.

use crate::clock::SharedClock;
use crate::events::{EventKind, Events};
use crate::store::{AuxOp, IndexHook, SegmentRow, UploadState};

/// The hook; register it with [`crate::store::Store::add_hook`] before recovery.
pub struct SegmentEvents {
    pub events: Events,
    pub clock: SharedClock,
}

/// The event id of `fact` about segment `id`.
pub fn segment_event_id(device: &str, id: u64, fact: &str) -> String {
    format!("{device}-seg-{id}-{fact}")
}

/// The fields every segment event carries (the cloud recording callback's names, plus ours).
pub fn segment_body(row: &SegmentRow) -> serde_json::Value {
    let format = row
        .files
        .first()
        .map(|f| format_name(f.format))
        .unwrap_or_default();
    serde_json::json!({
        "stream_id": row.stream,
        "app": row.app,
        "file_id": row.id,
        "seq": row.seq,
        "start_time": row.start_ms,
        "end_time": row.end_ms,
        "duration_ms": row.duration_ms,
        "file_format": format,
        "file_size": row.bytes,
        "files": row.files.iter().map(|f| serde_json::json!({
            "format": format_name(f.format),
            "path": f.path.display().to_string(),
            "bytes": f.bytes,
        })).collect::<Vec<_>>(),
        "recovered": row.recovered,
    })
}

/// `fmp4` or `mp4`.
fn format_name(f: crate::format::Format) -> String {
    format!("{f:?}").to_lowercase()
}

impl IndexHook for SegmentEvents {
    fn closing(&self, row: &mut SegmentRow, ops: &mut Vec<AuxOp>) {
        let (kind, fact) = if row.recovered {
            (EventKind::SegmentRecovered, "recovered")
        } else {
            (EventKind::SegmentClosed, "closed")
        };
        let at = if row.closed_at_ms > 0 {
            row.closed_at_ms
        } else {
            row.end_ms
        };
        let id = segment_event_id(self.events.device(), row.id, fact);
        ops.extend(self.events.ops(kind, id, at, segment_body(row)));
    }

    fn deleted(&self, rows: &[SegmentRow], ops: &mut Vec<AuxOp>) {
        let now = self.clock.wall_ms();
        for row in rows {
            let mut body = segment_body(row);
            body["never_uploaded"] = (!matches!(row.upload, UploadState::Uploaded { .. })).into();
            let id = segment_event_id(self.events.device(), row.id, "evicted");
            ops.extend(self.events.ops(EventKind::SegmentEvicted, id, now, body));
        }
    }
}
