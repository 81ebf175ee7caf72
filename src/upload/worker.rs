//! The uploader task: feeds the pure queue from the index and the hook, starts transfers
//! within the link manners (windows, pause, concurrency), and records their outcomes.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::queue::{Job, Queue};
use super::transfer::{self, FileJob, Progress, Target};
use super::windows::{is_open, local_minute, minutes_until_open};
use super::{target_name, Control, QueueHook, UploadError, Uploads};
use crate::backoff::Backoff;
use crate::clock::SharedClock;
use crate::config::upload::UploadConfig;
use crate::config::Config;
use crate::events::{EventKind, Events};
use crate::store::{AuxOp, AuxTable, SegmentRow, SegmentState, Store, UploadState};

/// Consecutive transient failures of one segment after which an alarm is raised anyway.
const TRANSIENT_ALARM_AFTER: u32 = 5;

/// Start the uploader. It stops when `cancel` fires; a transfer under way is abandoned and
/// resumes from its last recorded part at the next start.
pub fn spawn(
    u: Uploads,
    events: Option<Events>,
    cancel: CancellationToken,
) -> (Control, tokio::task::JoinHandle<()>) {
    let control = u.control.clone();
    let up = u
        .cfg
        .upload
        .clone()
        .expect("Uploads::register checked [upload]");
    let limiter = Arc::new(super::limiter::Limiter::new(
        up.bandwidth,
        std::time::Instant::now(),
    ));
    let shared = Arc::new(Shared {
        cfg: u.cfg,
        up,
        store: u.store,
        clock: u.clock,
        events,
        control: u.control,
        limiter,
    });
    let w = Worker {
        queue: Queue::new(shared.up.order),
        shared,
        hook: u.hook,
        targets: HashMap::new(),
        backoff: HashMap::new(),
        unresolved: Vec::new(),
    };
    let span = tracing::info_span!("upload");
    let handle = tokio::spawn(tracing::Instrument::instrument(w.run(cancel), span));
    (control, handle)
}

struct Shared {
    cfg: Arc<Config>,
    up: UploadConfig,
    store: Arc<Store>,
    clock: SharedClock,
    events: Option<Events>,
    control: Control,
    limiter: Arc<super::limiter::Limiter>,
}

struct Worker {
    shared: Arc<Shared>,
    hook: Arc<QueueHook>,
    queue: Queue,
    targets: HashMap<String, Arc<Target>>,
    /// Per segment: its backoff and whether an alarm was raised for it.
    backoff: HashMap<u64, (Backoff, bool)>,
    /// Segments the hook queued whose closing commit was not visible yet.
    unresolved: Vec<u64>,
}

/// What a finished transfer task reports.
enum Outcome {
    Uploaded {
        url: String,
        bytes: u64,
        /// From the first read to the recorded commit.
        elapsed: Duration,
    },
    /// The segment is gone or no longer pending.
    Gone,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, UploadError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(UploadError::Target {
            target: String::new(),
            message: format!("index task failed: {e}"),
        }),
    }
}

impl Worker {
    async fn run(mut self, cancel: CancellationToken) {
        let s = self.shared.clone();
        match self.load_all().await {
            Ok(n) if n > 0 => info!(segments = n, "upload backlog loaded from the index"),
            Ok(_) => {}
            Err(e) => error!(error = %e, "cannot read the upload queue from the index"),
        }
        self.abort_orphans().await;
        let mut set: JoinSet<Result<Outcome, UploadError>> = JoinSet::new();
        let mut tasks: HashMap<tokio::task::Id, u64> = HashMap::new();
        let mut draining = false;
        loop {
            self.feed().await;
            let now_ms = s.clock.wall_ms();
            // Every `upload --now` retries the waiting jobs at once, even during a drain.
            if s.control.take_kick() {
                draining = true;
                self.queue.retry_now();
                info!(pending = self.queue.len(), "uploading the backlog now");
            }
            let paused = s.control.is_paused() && !draining;
            let minute = local_minute(now_ms);
            let in_window = draining || is_open(&s.up.windows, minute);
            if paused && !set.is_empty() {
                info!("uploads paused; stopping the transfer under way");
                set.abort_all();
            }
            if !paused && in_window {
                while self.queue.in_flight() < s.up.concurrency {
                    let Some(job) = self.queue.take_next(now_ms) else {
                        break;
                    };
                    match self.target_for(job.id).await {
                        Ok(target) => {
                            let done = s.control.started(job.id, job.bytes);
                            let h = set.spawn(upload_segment(s.clone(), target, job.id, done));
                            tasks.insert(h.id(), job.id);
                        }
                        Err(e) => self.failed(job.id, e),
                    }
                }
            }
            if draining && self.queue.is_empty() && set.is_empty() && self.unresolved.is_empty() {
                draining = false;
                s.control.drained();
                info!("upload backlog drained");
            }
            let wait = if !self.unresolved.is_empty() {
                Duration::from_millis(200)
            } else if paused {
                Duration::from_secs(60)
            } else if !in_window {
                // Look again within a minute (a window opens on a minute boundary).
                let m = minutes_until_open(&s.up.windows, minute).max(1);
                Duration::from_secs(u64::from(m).min(1) * 60)
            } else {
                let next = self
                    .queue
                    .next_wake_ms()
                    .map_or(5_000, |t| (t - now_ms).clamp(50, 5_000));
                Duration::from_millis(next as u64)
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.hook.wake.notified() => {}
                r = set.join_next_with_id(), if !set.is_empty() => {
                    let (tid, res) = match r {
                        Some(Ok((tid, res))) => (tid, Some(res)),
                        Some(Err(e)) => (e.id(), None),
                        None => continue,
                    };
                    if let Some(id) = tasks.remove(&tid) {
                        s.control.finished(id);
                        match res {
                            Some(Ok(Outcome::Uploaded { url, bytes, elapsed })) => {
                                info!(segment = id, bytes, elapsed_ms = elapsed.as_millis() as u64, url = %url, "uploaded");
                                self.queue.remove(id);
                                self.backoff.remove(&id);
                            }
                            Some(Ok(Outcome::Gone)) => {
                                self.queue.remove(id);
                                self.backoff.remove(&id);
                            }
                            Some(Err(e)) => self.failed(id, e),
                            // Aborted (pause): eligible again at once.
                            None => { self.queue.failed(id, 0); }
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        set.abort_all();
        while set.join_next().await.is_some() {}
        info!("uploader stopped");
    }

    /// Queue every pending closed segment in the index.
    async fn load_all(&mut self) -> Result<usize, UploadError> {
        let store = self.shared.store.clone();
        let rows = blocking(move || store.segments()).await?;
        let mut n = 0;
        let mut leftover = Vec::new();
        for r in rows {
            if pending(&r) {
                self.queue.push(Job::new(r.id, r.start_ms, r.bytes));
                n += 1;
            } else if r.state == SegmentState::Closed
                && matches!(r.upload, UploadState::Uploaded { .. })
            {
                leftover.push(r.id);
            }
        }
        // Uploaded before a stop that came between the upload and its deletion.
        if self.shared.up.delete_after_upload && !leftover.is_empty() {
            let store = self.shared.store.clone();
            match blocking(move || store.delete(&leftover)).await {
                Ok(freed) => info!(
                    bytes = freed,
                    "deleted segments uploaded before the last stop"
                ),
                Err(e) => warn!(error = %e, "cannot delete uploaded segments"),
            }
        }
        Ok(n)
    }

    /// Queue the segments the hook saw close (once their commit is visible).
    async fn feed(&mut self) {
        let mut ids = std::mem::take(&mut self.unresolved);
        ids.extend(self.hook.take_fed());
        if ids.is_empty() {
            return;
        }
        let store = self.shared.store.clone();
        let lookup = ids.clone();
        let rows = blocking(move || {
            lookup
                .iter()
                .map(|id| store.segment(*id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let Ok(rows) = rows else {
            self.unresolved = ids;
            return;
        };
        for (id, row) in ids.into_iter().zip(rows) {
            match row {
                Some(r) if pending(&r) => self.queue.push(Job::new(r.id, r.start_ms, r.bytes)),
                // The closing commit has not landed yet.
                Some(r) if r.state == SegmentState::Writing => self.unresolved.push(id),
                None if self.unresolved.len() < 10_000 => self.unresolved.push(id),
                _ => {}
            }
        }
    }

    async fn target_for(&mut self, id: u64) -> Result<Arc<Target>, UploadError> {
        let s = &self.shared;
        let store = s.store.clone();
        let row = blocking(move || store.segment(id)).await?;
        let name = row
            .as_ref()
            .and_then(|r| target_name(&s.cfg, &r.app, &r.stream))
            .or_else(|| s.up.targets.first().map(|t| t.name.as_str()))
            .unwrap_or_default()
            .to_string();
        self.target(&name)
    }

    fn target(&mut self, name: &str) -> Result<Arc<Target>, UploadError> {
        if let Some(t) = self.targets.get(name) {
            return Ok(t.clone());
        }
        let s = &self.shared;
        let cfg = s.up.target(name).ok_or_else(|| UploadError::Target {
            target: name.to_string(),
            message: "no such upload target in the config".into(),
        })?;
        let t = Arc::new(Target::build(cfg, s.limiter.clone(), s.up.part_size)?);
        self.targets.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// Record a failure: back off (short for transient errors, long for permanent ones),
    /// raise an alarm for permanent errors and for transient ones that keep failing.
    fn failed(&mut self, id: u64, e: UploadError) {
        let transient = e.is_transient();
        let seed = id ^ self.shared.clock.wall_ms() as u64;
        let (b, alarmed) = self.backoff.entry(id).or_insert_with(|| {
            let (lo, hi) = if transient { (1, 30) } else { (30, 600) };
            (
                Backoff::new(Duration::from_secs(lo), Duration::from_secs(hi), seed),
                false,
            )
        });
        let mut delay = b.next_delay();
        if !transient {
            delay = delay.max(Duration::from_secs(30));
        }
        let failures = self
            .queue
            .failed(id, self.shared.clock.wall_ms() + delay.as_millis() as i64);
        let alarm = !*alarmed && (!transient || failures >= TRANSIENT_ALARM_AFTER);
        if alarm {
            *alarmed = true;
            error!(alarm = "upload", segment = id, failures, retry_in_s = delay.as_secs(), error = %e, "upload failing; retrying slowly, the segment stays queued");
            if let Some(ev) = &self.shared.events {
                let body = serde_json::json!({
                    "segment_id": id,
                    "error": e.to_string(),
                    "transient": transient,
                    "failures": failures,
                });
                if let Err(err) = ev.emit(EventKind::UploadAlarm, self.shared.clock.wall_ms(), body)
                {
                    warn!(error = %err, "cannot store the upload alarm event");
                }
            }
        } else {
            warn!(segment = id, failures, retry_in_ms = delay.as_millis() as u64, error = %e, "upload failed; will retry");
        }
    }

    /// Abort multipart uploads whose segment is gone or no longer pending, and forget them.
    async fn abort_orphans(&mut self) {
        let store = self.shared.store.clone();
        let entries = blocking(move || {
            let entries = store.aux_scan(AuxTable::UploadParts, 0, 100_000)?;
            let mut out = Vec::new();
            for (id, v) in entries {
                let row = store.segment(id)?;
                out.push((id, v, row));
            }
            Ok(out)
        })
        .await;
        let Ok(entries) = entries else { return };
        let mut remove = Vec::new();
        for (id, v, row) in entries {
            if row.as_ref().is_some_and(pending) {
                continue;
            }
            if let Some(mp) = Progress::decode(&v).multipart {
                let names: Vec<String> = match row
                    .as_ref()
                    .and_then(|r| target_name(&self.shared.cfg, &r.app, &r.stream))
                {
                    Some(n) => vec![n.to_string()],
                    None => self
                        .shared
                        .up
                        .targets
                        .iter()
                        .map(|t| t.name.clone())
                        .collect(),
                };
                for n in names {
                    if let Ok(t) = self.target(&n) {
                        t.abort(&mp.key, &mp.upload_id).await;
                    }
                }
            }
            remove.push(AuxOp::remove(AuxTable::UploadParts, id));
        }
        if !remove.is_empty() {
            let store = self.shared.store.clone();
            if let Err(e) = blocking(move || store.aux_commit(remove, None, false)).await {
                warn!(error = %e, "cannot forget orphaned upload progress");
            }
        }
    }
}

fn pending(r: &SegmentRow) -> bool {
    r.state == SegmentState::Closed && matches!(r.upload, UploadState::Pending { .. })
}

/// Upload every file of one segment, then record it as uploaded.
async fn upload_segment(
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
    let mut first_key = None;
    for (i, f) in row.files.iter().enumerate() {
        let key = target
            .cfg
            .key
            .expand(target.prefix(), &row, &f.path)
            .map_err(|m| UploadError::Target {
                target: target.cfg.name.clone(),
                message: m,
            })?;
        first_key.get_or_insert_with(|| key.clone());
        if (i as u32) < progress.files_done {
            continue;
        }
        let path = s.store.root().join(&f.path);
        let size = std::fs::metadata(&path)
            .map_err(|source| UploadError::Read {
                path: path.clone(),
                source,
            })?
            .len();
        let job = FileJob {
            store: &s.store,
            segment: id,
            path,
            key,
            size,
            part_size: s.up.part_size,
            done: &done,
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
                crate::mqtt::hook::segment_event_id(&row.device, &row, "uploaded"),
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

/// The `segment.uploaded` event body: the fields of a cloud recording callback.
fn uploaded_body(row: &SegmentRow, url: &str) -> serde_json::Value {
    serde_json::json!({
        "stream_id": row.stream,
        "app": row.app,
        "start_time": row.start_ms.div_euclid(1000),
        "end_time": row.end_ms.div_euclid(1000),
        "start_ms": row.start_ms,
        "end_ms": row.end_ms,
        "file_format": "mp4",
        "file_size": row.bytes,
        "file_id": row.id.to_string(),
        "video_url": url,
    })
}
