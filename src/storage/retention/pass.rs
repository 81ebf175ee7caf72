//! One retention pass, the I/O around the pure [`plan`]: read the index and the
//! working files' sizes, plan, delete by the store's protocol, report. The daemon runs a
//! pass at start, after every segment close and every `storage.retention_interval`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::{plan, Candidate, Limits, Now, OpenBytes, Plan, Reason};
use crate::config::Config;
use crate::media::format::Format;
use crate::storage::store::{
    RecordingEntry, SegmentRow, SegmentState, Store, StoreError, UploadState,
};
use crate::util::clock::Clock;
use crate::util::clockwatch::{ClockWatch, TimeQuality};

/// Where a pass stands in time: both clocks, and which boot this is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassTime {
    pub now: Now,
    /// This boot's id (empty: unknown, every segment is aged by its wall-clock end).
    pub boot_id: String,
}

impl PassTime {
    /// Now, on the watched clock.
    pub fn of(watch: &ClockWatch) -> PassTime {
        PassTime {
            now: Now {
                wall_ms: watch.wall_ms(),
                boot_ms: watch.boot_ms(),
            },
            boot_id: watch.boot_id().to_string(),
        }
    }

    /// The retention candidate for a closed row.
    pub fn candidate(&self, r: &SegmentRow) -> Candidate {
        let this_boot = r
            .boot
            .as_ref()
            .filter(|b| !self.boot_id.is_empty() && b.id == self.boot_id);
        Candidate {
            id: r.id,
            stream: r.stream.clone(),
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            bytes: r.bytes,
            uploaded: matches!(r.upload, UploadState::Uploaded { .. }),
            boot_end_ms: this_boot.map(|b| b.ms.saturating_add(r.duration_ms as i64)),
            trusted: r.time_quality != TimeQuality::Unsynced,
            group: None,
        }
    }
}

impl From<i64> for PassTime {
    fn from(wall_ms: i64) -> PassTime {
        PassTime {
            now: Now::from(wall_ms),
            boot_id: String::new(),
        }
    }
}

/// A segment a retention pass deleted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RetentionDeleted {
    pub id: u64,
    pub stream: String,
    pub bytes: u64,
    /// The limit that made it go (`storage.max_bytes`, `storage.min_free`, ...).
    pub reason: &'static str,
}

/// What one retention pass did (`retention.run` replies with it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionRun {
    pub deleted: Vec<RetentionDeleted>,
    /// Bytes freed on disk.
    pub freed_bytes: u64,
    /// A limit the pass could not meet (nothing left that may be evicted).
    pub unmet: Option<&'static str>,
    /// The pass failed (nothing, or only part, was deleted).
    pub error: Option<String>,
}

/// Asks the daemon for a retention pass now; it sends the outcome back.
pub type RetentionTrigger = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<RetentionRun>>;

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Segments deleted, with the limit that made each go.
    pub deleted: Vec<RetentionDeleted>,
    /// Their bytes.
    pub freed: u64,
    /// A limit that still does not hold.
    pub unmet: Option<Reason>,
}

/// One retention pass (the blocking part runs off the async runtime). Failures are logged;
/// the next pass tries again. Returns what it did (`retention.run` replies with it).
pub async fn run(
    store: &Arc<Store>,
    cfg: &Config,
    watch: &ClockWatch,
    mut hooks: Box<dyn PassHooks>,
) -> RetentionRun {
    let store = store.clone();
    let cfg = cfg.clone();
    let at = PassTime::of(watch);
    let res = tokio::task::spawn_blocking(move || pass(&store, &cfg, at, hooks.as_mut())).await;
    let error = match res {
        Ok(Ok(r)) => {
            if !r.deleted.is_empty() {
                info!(
                    segments = r.deleted.len(),
                    bytes = r.freed,
                    "retention evicted segments (uploaded first, then the oldest)"
                );
            }
            if let Some(reason) = r.unmet {
                warn!(
                    reason = reason.as_str(),
                    "retention cannot meet a storage limit: nothing left that may be evicted"
                );
            }
            return RetentionRun {
                deleted: r.deleted,
                freed_bytes: r.freed,
                unmet: r.unmet.map(|u| u.as_str()),
                error: None,
            };
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    error!(error = %error, "retention pass failed");
    RetentionRun {
        error: Some(error),
        ..Default::default()
    }
}

/// What a pass asks of the layers above it (uploads, which this layer does not know):
/// which closed segments it must keep, and what to report around its deletes. `()` keeps
/// nothing back and reports nothing. Called on the pass's blocking thread.
pub trait PassHooks: Send {
    /// Before planning, with every row of the index: the ids that must not be deleted.
    fn protected(&mut self, rows: &[SegmentRow]) -> HashSet<u64>;
    /// The plan, before anything is deleted.
    fn planned(&mut self, _store: &Store, _plan: &Plan) {}
    /// After the deletes (some may have failed: check the index).
    fn deleted(&mut self, _store: &Store, _plan: &Plan) {}
}

impl PassHooks for () {
    fn protected(&mut self, _rows: &[SegmentRow]) -> HashSet<u64> {
        HashSet::new()
    }
}

/// The pass itself (blocking).
pub fn pass(
    store: &Store,
    cfg: &Config,
    at: impl Into<PassTime>,
    hooks: &mut dyn PassHooks,
) -> Result<PassReport, StoreError> {
    let at = at.into();
    let rows = store.segments()?;
    let mut closed = Vec::new();
    let mut open = OpenBytes::new();
    let mut protected = hooks.protected(&rows);
    let recordings = Recordings::new(store.recordings()?);
    for r in rows {
        match r.state {
            SegmentState::Closed => {
                let mut c = at.candidate(&r);
                match recordings.of(&r) {
                    Some((key, true)) => c.group = Some(key),
                    // Being written, or waiting in its resume window: kept.
                    Some((_, false)) => {
                        protected.insert(r.id);
                    }
                    None => {}
                }
                closed.push(c);
            }
            SegmentState::Writing => {
                *open.entry(r.stream.clone()).or_default() += open_size(store.root(), &r)
            }
            SegmentState::Deleting => {}
        }
    }
    let disk = store.disk()?;
    let guard = |c: &Candidate| !protected.contains(&c.id);
    let plan = plan(
        &closed,
        &open,
        &Limits::from_config(cfg),
        disk,
        at.now,
        &guard,
    );
    hooks.planned(store, &plan);
    let ids: Vec<u64> = plan.evict.iter().map(|e| e.id).collect();
    let group_of: HashMap<u64, u64> = closed
        .iter()
        .filter_map(|c| c.group.map(|g| (c.id, g)))
        .collect();
    let mut keys: Vec<u64> = ids
        .iter()
        .filter_map(|id| group_of.get(id).copied())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let freed = if ids.is_empty() {
        Ok(0)
    } else {
        // Playlists first, then their segments (see `Store::delete_recordings`).
        store.delete_recordings(&keys, &ids)
    };
    // Only what really went (also after a delete that failed half-way).
    hooks.deleted(store, &plan);
    let stream_of: HashMap<u64, &str> = closed.iter().map(|c| (c.id, c.stream.as_str())).collect();
    Ok(PassReport {
        deleted: plan
            .evict
            .iter()
            .map(|e| RetentionDeleted {
                id: e.id,
                stream: stream_of
                    .get(&e.id)
                    .copied()
                    .unwrap_or_default()
                    .to_string(),
                bytes: e.bytes,
                reason: e.reason.as_str(),
            })
            .collect(),
        freed: freed?,
        unmet: plan.unmet,
    })
}

/// Which HLS recording each `.m4s` row belongs to: the recording of its stream with the
/// highest first sequence number at or below its own (as recovery rebuilds playlists).
struct Recordings {
    /// Per (app, stream): its recordings by first_seq.
    by_stream: HashMap<(String, String), Vec<Begins>>,
}

/// A recording's (first_seq, key, finished).
type Begins = (u64, u64, bool);

impl Recordings {
    fn new(entries: Vec<(u64, RecordingEntry)>) -> Self {
        let mut by_stream: HashMap<(String, String), Vec<Begins>> = HashMap::new();
        for (key, e) in entries {
            by_stream
                .entry((e.app, e.stream))
                .or_default()
                .push((e.first_seq, key, e.finished));
        }
        for v in by_stream.values_mut() {
            v.sort_unstable();
        }
        Recordings { by_stream }
    }

    /// `(key, finished)` of the recording `r` is in, if it is an `.m4s` row of one.
    fn of(&self, r: &SegmentRow) -> Option<(u64, bool)> {
        if !r.formats.contains(&Format::Hls) {
            return None;
        }
        let v = self.by_stream.get(&(r.app.clone(), r.stream.clone()))?;
        let i = v.partition_point(|(first, _, _)| *first <= r.seq);
        let (_, key, finished) = v.get(i.checked_sub(1)?)?;
        Some((*key, *finished))
    }
}

/// Bytes on disk of a segment still being written (its working file).
fn open_size(root: &Path, row: &SegmentRow) -> u64 {
    std::fs::metadata(root.join(row.working_path()))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[cfg(all(test, feature = "process-tests"))]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::media::format::Format;
    use crate::storage::store::fixture::{self, Clip};

    fn config(extra_stream_a: &str, max_bytes: u64) -> Config {
        Config::from_toml_str(&format!(
            r#"device_id = "d"
[storage]
root = "x"
max_bytes = {max_bytes}
min_free = 0
[[templates]]
name = "t"
formats = ["fmp4"]
[[rules]]
template = "t"
stream = "*"
[[streams]]
name = "a"
source = "file:a.mp4"
{extra_stream_a}
[[streams]]
name = "b"
source = "file:b.mp4"
"#
        ))
        .unwrap()
    }

    /// Segment `seq` of `stream` with `n` one-second fragments, closed or still open.
    fn record(store: &Store, clip: &Clip, stream: &str, seq: u64, n: usize) -> SegmentRow {
        let w = begin(store, clip, stream, seq, n);
        let close = clip.with_meta(fixture::meta(stream, seq)).close_after(n);
        w.finish(&close).unwrap().unwrap()
    }

    fn begin(
        store: &Store,
        clip: &Clip,
        stream: &str,
        seq: u64,
        n: usize,
    ) -> crate::storage::store::SegmentWriter {
        let c = clip.with_meta(fixture::meta(stream, seq));
        let base = format!("{stream}/{seq}");
        let mut w = store
            .begin(&c.start.meta, Path::new(&base), &[Format::Fmp4], &c.init)
            .unwrap();
        for f in &c.fragments[..n] {
            w.append(f).unwrap();
        }
        w
    }

    fn ids(store: &Store) -> Vec<(String, u64)> {
        let mut ids: Vec<(String, u64)> = store
            .segments()
            .unwrap()
            .iter()
            .filter(|r| r.state == SegmentState::Closed)
            .map(|r| (r.stream.clone(), r.seq))
            .collect();
        ids.sort();
        ids
    }

    fn assert_kept_decode(store: &Store) {
        for r in store.segments().unwrap() {
            if r.state == SegmentState::Closed {
                let p = store.root().join(&r.files[0].path);
                assert_eq!(fixture::decode_errors(&p), "", "{}", p.display());
            }
        }
    }

    #[test]
    fn a_streams_quota_counts_the_segment_it_is_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
        let clip = fixture::clip(dir.path(), 3);
        let a0 = record(&store, &clip, "a", 0, 2);
        let a1 = record(&store, &clip, "a", 1, 2);
        record(&store, &clip, "b", 0, 2);
        let open = begin(&store, &clip, "a", 2, 2);
        let open_bytes = open.bytes();
        // The closed segments of "a" fit its quota; with the one being written they do not.
        let quota = a0.bytes + a1.bytes + open_bytes / 2;
        let cfg = config(&format!("max_bytes = {quota}"), 1 << 30);
        let r = pass(&store, &cfg, 0, &mut ()).unwrap();
        assert_eq!(r.deleted.len(), 1);
        assert_eq!(r.unmet, None);
        assert_eq!(ids(&store), [("a".into(), 1), ("b".into(), 0)]);
        assert_kept_decode(&store);
        open.abandon().unwrap();
    }

    #[test]
    fn a_pass_evicts_a_newer_uploaded_segment_before_an_older_one_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
        let clip = fixture::clip(dir.path(), 3);
        let a0 = record(&store, &clip, "a", 0, 2);
        let mut a1 = record(&store, &clip, "a", 1, 2);
        let b0 = record(&store, &clip, "b", 0, 2);
        a1.upload = UploadState::Uploaded {
            url: "file:///x".into(),
            at_ms: 1,
        };
        store.aux_commit(vec![], Some(a1.clone()), true).unwrap();
        let cfg = config("", a0.bytes + b0.bytes + a1.bytes - 1);
        let r = pass(&store, &cfg, 0, &mut ()).unwrap();
        assert_eq!(r.deleted.len(), 1);
        assert_eq!(ids(&store), [("a".into(), 0), ("b".into(), 0)]);
        assert_kept_decode(&store);
    }
}
