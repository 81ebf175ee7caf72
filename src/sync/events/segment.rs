//! Segment events, added to the outbox inside the very index commit that closes or drops
//! the segment (an [`IndexHook`]): a crash can never keep the segment's new state and lose
//! its event, or the reverse. Recovery calls the hooks again for what it closes or adopts,
//! and ids are derived from the segment and the fact (`{device}-seg-{stream}-{seq}-{fact}`;
//! `{device}-seg-{stream}-{seq}-flv-{fact}` and `...-aac-{fact}` for the FLV and ADTS files,
//! which have rows, and so events, of their own), so a redelivery after a crash carries the
//! same id. Not from the index row id: a crash can
//! take back the volatile commits that numbered rows, and recovery then numbers the
//! segments it finds again, in another order; a stream's sequence number is written into the
//! segment's own file and never reused.
//!
//! - `segment.closed`: its writer closed it, or recovery adopted files missing from the index;
//! - `segment.recovered`: recovery finished a segment torn by a crash (instead of `closed`);
//! - `segment.evicted`: retention or a delete dropped it, with `never_uploaded`.

use std::sync::Arc;

use crate::media::format::Container;
use crate::storage::store::{AuxOp, IndexHook, SegmentRow, Store, UploadState};
use crate::sync::events::{EventKind, Events};
use crate::util::clock::SharedClock;

/// Adds the segment-event hook to `store` when events are enabled. Call before
/// [`Store::recover`], so recovery's closes and adoptions report too.
pub fn register(store: &Store, events: &Events, clock: &SharedClock) {
    if events.enabled() {
        store.add_hook(Arc::new(SegmentEvents {
            events: events.clone(),
            clock: clock.clone(),
        }));
    }
}

/// The hook; register it with [`crate::storage::store::Store::add_hook`] before recovery.
pub struct SegmentEvents {
    pub events: Events,
    pub clock: SharedClock,
}

/// The event id of `fact` about the segment of `row` (see the module docs).
pub fn segment_event_id(device: &str, row: &SegmentRow, fact: &str) -> String {
    match row.container() {
        // The MP4 files' ids predate the other containers: unchanged.
        Container::Mp4 => format!("{device}-seg-{}-{}-{fact}", row.stream, row.seq),
        c => format!(
            "{device}-seg-{}-{}-{}-{fact}",
            row.stream,
            row.seq,
            c.file_format()
        ),
    }
}

/// The fields every segment event carries (the cloud recording callback's names, plus ours).
pub fn segment_body(row: &SegmentRow) -> serde_json::Value {
    serde_json::json!({
        "stream_id": row.stream,
        "app": row.app,
        "file_id": row.id.to_string(),
        "seq": row.seq,
        "start_time": row.start_ms.div_euclid(1000),
        "end_time": row.end_ms.div_euclid(1000),
        "start_ms": row.start_ms,
        "end_ms": row.end_ms,
        "duration_ms": row.duration_ms,
        // `mp4`, `flv` or `aac`: fmp4 and mp4 are both MP4 files, `files` tells fragmented
        // from progressive.
        "file_format": row.container().file_format(),
        "file_size": row.bytes,
        "files": row.files.iter().map(|f| serde_json::json!({
            "format": format_name(f.format),
            "path": f.path.display().to_string(),
            "bytes": f.bytes,
        })).collect::<Vec<_>>(),
        "recovered": row.recovered,
        "time_quality": row.time_quality.as_str(),
    })
}

/// `fmp4` or `mp4`.
fn format_name(f: crate::media::format::Format) -> String {
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
        let id = segment_event_id(self.events.device(), row, fact);
        ops.extend(self.events.ops(kind, id, at, segment_body(row)));
    }

    fn deleted(&self, rows: &[SegmentRow], ops: &mut Vec<AuxOp>) {
        let now = self.clock.wall_ms();
        for row in rows {
            let mut body = segment_body(row);
            body["never_uploaded"] = (!matches!(row.upload, UploadState::Uploaded { .. })).into();
            let id = segment_event_id(self.events.device(), row, "evicted");
            ops.extend(self.events.ops(EventKind::SegmentEvicted, id, now, body));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::format::Format;
    use crate::media::segment::event::SegmentMeta;
    use crate::storage::store::{AuxTable, Store};
    use crate::sync::events::Event;
    use crate::util::clock::ManualClock;

    fn row(id: u64) -> SegmentRow {
        let meta = SegmentMeta {
            device: "edge-1".into(),
            app: String::new(),
            stream: "cam".into(),
            seq: 3,
            start_ms: 10_000,
            formats: vec![],
            time_quality: None,
            boot: None,
        };
        let mut r = SegmentRow::writing(id, &meta, "cam/x".into(), vec![]);
        r.end_ms = 12_500;
        r.closed_at_ms = 12_600;
        r
    }

    fn hook(dir: &std::path::Path) -> SegmentEvents {
        let store = Arc::new(Store::open(&dir.join("root")).unwrap());
        SegmentEvents {
            events: Events::new(store, "edge-1", true, 100).unwrap(),
            clock: ManualClock::new(99_000),
        }
    }

    fn events_of(ops: &[AuxOp]) -> Vec<Event> {
        ops.iter()
            .filter(|o| o.table == AuxTable::Outbox)
            .filter_map(|o| Event::decode(o.value.as_ref()?))
            .collect()
    }

    #[test]
    fn a_closed_segment_gets_a_closed_event_with_a_deterministic_id() {
        let dir = tempfile::tempdir().unwrap();
        let h = hook(dir.path());
        let mut ops = Vec::new();
        h.closing(&mut row(7), &mut ops);
        let ev = events_of(&ops);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::SegmentClosed);
        assert_eq!(ev[0].id, "edge-1-seg-cam-3-closed");
        assert_eq!(ev[0].at_ms, 12_600);
        let body: serde_json::Value = serde_json::from_str(&ev[0].body).unwrap();
        assert_eq!(body["stream_id"], "cam");
        assert_eq!(body["time_quality"], "synced");
        assert_eq!(
            (body["start_time"].clone(), body["end_ms"].clone()),
            (10.into(), 12_500.into())
        );
    }

    #[test]
    fn flv_aac_and_hls_files_get_events_of_their_own_with_their_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let h = hook(dir.path());
        let mut ids = Vec::new();
        for (formats, file_format) in [
            (vec![Format::Fmp4, Format::Mp4], "mp4"),
            (vec![Format::Flv], "flv"),
            (vec![Format::Aac], "aac"),
            (vec![Format::Hls], "hls"),
        ] {
            let mut r = row(7);
            r.formats = formats;
            let mut ops = Vec::new();
            h.closing(&mut r, &mut ops);
            let ev = events_of(&ops);
            let body: serde_json::Value = serde_json::from_str(&ev[0].body).unwrap();
            assert_eq!(body["file_format"], file_format);
            ids.push(ev[0].id.clone());
        }
        assert_eq!(
            ids,
            [
                "edge-1-seg-cam-3-closed",
                "edge-1-seg-cam-3-flv-closed",
                "edge-1-seg-cam-3-aac-closed",
                "edge-1-seg-cam-3-hls-closed"
            ]
        );
    }

    #[test]
    fn a_segment_recovery_finished_is_reported_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let h = hook(dir.path());
        let mut r = row(8);
        r.recovered = true;
        let mut ops = Vec::new();
        h.closing(&mut r, &mut ops);
        let ev = events_of(&ops);
        assert_eq!(ev[0].kind, EventKind::SegmentRecovered);
        assert_eq!(ev[0].id, "edge-1-seg-cam-3-recovered");
    }

    #[test]
    fn an_evicted_segment_says_whether_it_was_ever_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let h = hook(dir.path());
        let mut up = row(2);
        up.upload = UploadState::Uploaded {
            url: "s3://b/k".into(),
            at_ms: 1,
        };
        let mut ops = Vec::new();
        h.deleted(&[row(1), up], &mut ops);
        let ev = events_of(&ops);
        assert_eq!(ev.len(), 2);
        let never: Vec<serde_json::Value> = ev
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["never_uploaded"]
                    .clone()
            })
            .collect();
        assert_eq!(never, [true, false]);
        assert_eq!(ev[0].id, "edge-1-seg-cam-3-evicted");
        assert_eq!(ev[0].at_ms, 99_000);
    }
}
