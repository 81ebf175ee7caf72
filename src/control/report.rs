//! The answer to `status`: the live stream states from the [`StatusBoard`] and what the
//! index holds (segments per stream, disk use, the upload backlog). The control socket,
//! MQTT telemetry and the CLI all build it here; [`crate::app::status`] renders it.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::media::health::{StatusBoard, StreamReport};
use crate::storage::watchdog::health::StorageHealth;
use crate::storage::watchdog::Condition;
use crate::util::clockwatch::{ClockReport, ClockWatch};

/// Disk use as reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    /// Bytes of all segments in the index.
    pub used_bytes: u64,
    /// `storage.max_bytes`.
    pub quota_bytes: u64,
    /// Free and total bytes of the filesystem holding the root.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Segment counts of one stream, from the index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub stream: String,
    pub closed: u64,
    pub writing: u64,
    pub bytes: u64,
    /// Wall-clock start of the oldest and end of the newest closed segment.
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

pub use crate::sync::upload::report::UploadReport;

/// What a running recorder's `status` reports besides the index: its live parts.
pub struct StatusSource {
    pub live: Live,
    pub device_id: String,
    pub quota_bytes: u64,
    pub clock: crate::util::clock::SharedClock,
    /// The uploader, when `[upload]` is configured (`uploads`, `upload-now`).
    pub uploads: Option<crate::sync::upload::Control>,
}

impl StatusSource {
    /// The running recorder's status report, with the uploader's state (blocking: call it
    /// off the async runtime).
    pub fn report(
        &self,
        store: &crate::storage::store::Store,
    ) -> Result<crate::control::report::Report, crate::storage::store::StoreError> {
        let mut r = crate::control::report::build_report(
            store,
            Some(&self.live),
            &self.device_id,
            self.quota_bytes,
            self.clock.now(),
        )?;
        r.uploads = r.uploads.with_state(
            self.uploads.is_some(),
            self.uploads.as_ref().is_some_and(|u| u.is_paused()),
            self.clock.wall_ms(),
        );
        r.callbacks = crate::sync::webhooks::aged(r.callbacks, self.clock.wall_ms());
        Ok(r)
    }
}

/// The answer to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// False when no recorder runs and the report comes from the index alone.
    pub running: bool,
    pub device_id: String,
    pub root: String,
    /// Process id and wall-clock start of the running recorder.
    pub pid: Option<u32>,
    pub started_ms: Option<i64>,
    pub streams: Vec<StreamReport>,
    /// Active storage conditions (the storage watchdog's), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<Condition>,
    pub disk: Option<DiskReport>,
    pub segments: Vec<SegmentCounts>,
    pub uploads: UploadReport,
    /// The clock: synchronized or not, steps seen (a running recorder; older recorders
    /// do not send it).
    #[serde(default)]
    pub clock: Option<ClockReport>,
    /// Webhook endpoints: lag, drops, last error, disabled (see `crate::sync::webhooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<crate::sync::webhooks::EndpointStatus>,
}

/// What only a running recorder knows.
pub struct Live {
    pub board: Arc<StatusBoard>,
    pub pid: u32,
    pub started_ms: i64,
    /// The storage watchdog.
    pub storage: Option<Arc<StorageHealth>>,
    /// The watched clock (`None`: not reported).
    pub clock: Option<Arc<ClockWatch>>,
}

/// Builds the report from the index (blocking: call it off the async runtime) and, when the
/// recorder runs, its live stream states.
pub fn build_report(
    store: &crate::storage::store::Store,
    live: Option<&Live>,
    device_id: &str,
    quota_bytes: u64,
    now: Instant,
) -> Result<Report, crate::storage::store::StoreError> {
    let rows = store.segments()?;
    let (segments, used_bytes) = count_segments(&rows);
    let disk = store.disk().ok().map(|d| DiskReport {
        used_bytes,
        quota_bytes,
        free_bytes: d.free,
        total_bytes: d.total,
    });
    Ok(Report {
        running: live.is_some(),
        device_id: device_id.to_owned(),
        root: store.root().display().to_string(),
        pid: live.map(|l| l.pid),
        started_ms: live.map(|l| l.started_ms),
        streams: live.map(|l| l.board.reports(now)).unwrap_or_default(),
        storage: live
            .and_then(|l| l.storage.as_ref())
            .map(|s| s.conditions())
            .unwrap_or_default(),
        uploads: UploadReport::from_index(store, &rows)?,
        clock: live.and_then(|l| l.clock.as_ref()).map(|c| c.report()),
        callbacks: crate::sync::webhooks::status(store)?,
        disk,
        segments,
    })
}

/// Per-stream segment counts and total bytes from index rows. A segment recorded in several
/// formats has a row per file (MP4, FLV, AAC): it counts once.
pub fn count_segments(rows: &[crate::storage::store::SegmentRow]) -> (Vec<SegmentCounts>, u64) {
    use crate::storage::store::SegmentState;
    let mut out: Vec<SegmentCounts> = Vec::new();
    let mut counted = std::collections::HashSet::new();
    let mut total = 0;
    for r in rows {
        let c = match out.iter_mut().position(|c| c.stream == r.stream) {
            Some(i) => &mut out[i],
            None => {
                out.push(SegmentCounts {
                    stream: r.stream.clone(),
                    ..SegmentCounts::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        let first = counted.insert((r.stream.as_str(), r.seq, r.state == SegmentState::Closed));
        match r.state {
            SegmentState::Closed => {
                c.closed += u64::from(first);
                c.oldest_ms = Some(c.oldest_ms.map_or(r.start_ms, |o| o.min(r.start_ms)));
                c.newest_ms = Some(c.newest_ms.map_or(r.end_ms, |n| n.max(r.end_ms)));
            }
            SegmentState::Writing => c.writing += u64::from(first),
            SegmentState::Deleting => {}
        }
        c.bytes += r.bytes;
        total += r.bytes;
    }
    out.sort_by(|a, b| a.stream.cmp(&b.stream));
    (out, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::format::Format;
    use crate::media::segment::event::SegmentMeta;
    use crate::storage::store::{SegmentRow, SegmentState};

    #[test]
    fn a_segment_with_a_row_per_format_counts_once_and_its_bytes_all() {
        let meta = |seq| SegmentMeta {
            device: "d".into(),
            app: String::new(),
            stream: "cam".into(),
            seq,
            start_ms: 1000 * seq as i64,
            formats: vec![],
            time_quality: None,
            boot: None,
        };
        let mut rows = Vec::new();
        for (id, (seq, format, state)) in [
            (0, Format::Fmp4, SegmentState::Closed),
            (0, Format::Flv, SegmentState::Closed),
            (0, Format::Aac, SegmentState::Closed),
            (1, Format::Fmp4, SegmentState::Writing),
            (1, Format::Flv, SegmentState::Writing),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = SegmentRow::writing(id as u64, &meta(seq), "cam/x".into(), vec![format]);
            r.state = state;
            r.bytes = 10;
            rows.push(r);
        }
        let (counts, total) = count_segments(&rows);
        assert_eq!((counts[0].closed, counts[0].writing), (1, 1));
        assert_eq!((counts[0].bytes, total), (50, 50));
    }
}
