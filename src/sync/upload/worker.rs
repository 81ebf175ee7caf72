//! The uploader task: feeds the pure queue from the index and the hook, starts transfers
//! within the link manners (windows, pause, concurrency, holds after transient errors), and
//! records their outcomes (failures in [`super::failure`], successes in [`super::segment`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::control::until_next_minute_ms;
use super::failure::{self, Failure, Holds};
use super::queue::{Job, Queue};
use super::segment::{upload_segment, Outcome};
use super::shared::{blocking, pending, Shared};
use super::target::Target;
use super::transfer::Progress;
use super::{target_name, Control, QueueHook, UploadError, Uploads};
use crate::storage::store::{AuxOp, AuxTable, SegmentRow, SegmentState, Store, UploadState};
use crate::sync::events::{EventKind, Events};

/// How often a failed orphan sweep (the service was unreachable at start) is tried again.
const SWEEP_RETRY_MS: i64 = 5 * 60_000;

/// How long a shutdown waits for the transfers under way: a single PUT finishes and is
/// recorded, a multipart upload finishes the part being sent. What is still running then is
/// abandoned and resumes from its last recorded part at the next start.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start the uploader. It stops when `cancel` fires, giving transfers under way
/// [`STOP_GRACE`] to reach a part boundary or their end (see there).
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
        failures: HashMap::new(),
        holds: Holds::default(),
        alarmed_targets: HashSet::new(),
    };
    let span = tracing::info_span!("upload");
    let handle = tokio::spawn(tracing::Instrument::instrument(w.run(cancel), span));
    (control, handle)
}

/// A transfer task that panicked or was aborted, as an upload error.
fn task_died(e: &tokio::task::JoinError) -> UploadError {
    UploadError::Target {
        target: String::new(),
        message: format!("upload task failed: {e}"),
    }
}

pub(super) struct Worker {
    pub shared: Arc<Shared>,
    hook: Arc<QueueHook>,
    queue: Queue,
    targets: HashMap<String, Arc<Target>>,
    /// Per segment: its failures so far (also saved in its `UploadParts` entry).
    failures: HashMap<u64, Failure>,
    /// Targets held after a transient error.
    holds: Holds,
    /// Targets with an alarm raised since their last success.
    alarmed_targets: HashSet<String>,
}

type Tasks = JoinSet<Result<Outcome, UploadError>>;

impl Worker {
    async fn run(mut self, cancel: CancellationToken) {
        let s = self.shared.clone();
        match self.load_all().await {
            Ok(n) if n > 0 => info!(segments = n, "upload backlog loaded from the index"),
            Ok(_) => {}
            Err(e) => error!(error = %e, "cannot read the upload queue from the index"),
        }
        let all: Vec<String> = s.up.targets.iter().map(|t| t.name.clone()).collect();
        let mut unswept = self.sweep_orphans(all).await;
        let mut swept_at = s.clock.wall_ms();
        let mut set: Tasks = JoinSet::new();
        let mut tasks: HashMap<tokio::task::Id, (u64, String)> = HashMap::new();
        loop {
            self.feed().await;
            let now_ms = s.clock.wall_ms();
            // Every `upload --now` retries the waiting jobs at once, even during a drain.
            if s.control.take_kick() {
                self.queue.retry_now();
                self.holds.clear();
                info!(pending = self.queue.len(), "uploading the backlog now");
            }
            // With nothing in flight, an orphan sweep that failed at start can run safely.
            if !unswept.is_empty() && set.is_empty() && now_ms - swept_at >= SWEEP_RETRY_MS {
                unswept = self.sweep_orphans(unswept).await;
                swept_at = now_ms;
            }
            let open = s.control.may_transfer();
            if open {
                self.start_jobs(&mut set, &mut tasks, now_ms).await;
            }
            if s.control.is_draining() && self.queue.is_empty() && set.is_empty() {
                s.control.drained();
                info!("upload backlog drained");
            }
            let wait = self.wait(open, now_ms);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.hook.wake.notified() => {}
                r = set.join_next_with_id(), if !set.is_empty() => {
                    let (tid, res) = match r {
                        Some(Ok((tid, res))) => (tid, res),
                        Some(Err(e)) => (e.id(), Err(task_died(&e))),
                        None => continue,
                    };
                    if let Some((id, target)) = tasks.remove(&tid) {
                        self.finished(id, &target, res).await;
                        // Recorded while still in flight, so retention kept its hands off.
                        s.control.finished(id);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Shutting down: no new transfer starts, and the ones under way stop at their next
        // part boundary or end. An object stored but not recorded as uploaded would be sent
        // again at the next start.
        s.control.stop();
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        while !set.is_empty() {
            tokio::select! {
                _ = &mut grace => {
                    warn!(transfers = set.len(), "shutdown: abandoning uploads under way; they resume from their last recorded part at the next start");
                    break;
                }
                Some(r) = set.join_next_with_id() => {
                    let (tid, res) = match r {
                        Ok((tid, res)) => (tid, res),
                        Err(e) => (e.id(), Err(task_died(&e))),
                    };
                    if let Some((id, target)) = tasks.remove(&tid) {
                        self.finished(id, &target, res).await;
                        s.control.finished(id);
                    }
                }
            }
        }
        set.abort_all();
        while set.join_next().await.is_some() {}
        info!("uploader stopped");
    }

    /// Start jobs up to the concurrency, skipping held targets.
    async fn start_jobs(
        &mut self,
        set: &mut Tasks,
        tasks: &mut HashMap<tokio::task::Id, (u64, String)>,
        now_ms: i64,
    ) {
        let s = self.shared.clone();
        while self.queue.in_flight() < s.up.concurrency {
            let holds = &self.holds;
            let Some(job) = self.queue.take_next(now_ms, |t| holds.until(t)) else {
                break;
            };
            // In flight from here: retention keeps its hands off.
            let done = s.control.started(job.id, job.bytes);
            match self.target(&job.target).await {
                Ok(target) => {
                    let h = set.spawn(upload_segment(s.clone(), target, job.id, done));
                    tasks.insert(h.id(), (job.id, job.target));
                }
                Err(e) => {
                    self.failed(job.id, &job.target, e).await;
                    s.control.finished(job.id);
                }
            }
        }
    }

    /// How long to sleep before looking again.
    fn wait(&self, open: bool, now_ms: i64) -> Duration {
        let s = &self.shared;
        let mut ms = if open {
            let holds = &self.holds;
            self.queue
                .next_wake_ms(|t| holds.until(t))
                .map_or(5_000, |t| (t - now_ms).clamp(50, 5_000) as u64)
        } else {
            // Paused: resume() wakes us.
            60_000
        };
        // Windows open and close on minute boundaries: look again at the next one.
        if s.control.has_windows() {
            ms = ms.min(until_next_minute_ms(now_ms) + 50);
        }
        Duration::from_millis(ms)
    }

    /// Record what a transfer task reported.
    async fn finished(&mut self, id: u64, target: &str, res: Result<Outcome, UploadError>) {
        match res {
            Ok(Outcome::Uploaded {
                url,
                bytes,
                elapsed,
            }) => {
                info!(segment = id, bytes, elapsed_ms = elapsed.as_millis() as u64, url = %url, "uploaded");
                self.queue.remove(id);
                self.failures.remove(&id);
                self.holds.lift(target);
                if self.alarmed_targets.remove(target) {
                    info!(target_name = %target, "uploads to this target work again (alarm over)");
                }
            }
            Ok(Outcome::Gone) => {
                self.queue.remove(id);
                self.failures.remove(&id);
            }
            Err(UploadError::Held) => {
                info!(
                    segment = id,
                    "transfer stopped at a part boundary (paused, outside the upload window or shutting down); it resumes from the next part"
                );
                self.queue.put_back(id);
            }
            Err(e) => self.failed(id, target, e).await,
        }
    }

    /// Queue every pending closed segment in the index, with the failures saved for it.
    async fn load_all(&mut self) -> Result<usize, UploadError> {
        let store = self.shared.store.clone();
        let (rows, entries) = blocking(move || {
            Ok((
                store.segments()?,
                store.aux_scan(AuxTable::UploadParts, 0, usize::MAX)?,
            ))
        })
        .await?;
        for (id, v) in entries {
            if let Some(f) = Progress::decode(&v).failure {
                self.failures.insert(id, f);
            }
        }
        let mut n = 0;
        let mut leftover = Vec::new();
        for r in rows {
            if pending(&r) {
                let retry_at = self.failures.get(&r.id).map_or(0, |f| f.retry_at_ms);
                let job = self.job(&r).not_before(retry_at);
                self.queue.push(job);
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

    /// The queue entry of a pending row: its target is its template's (else the first).
    fn job(&self, r: &SegmentRow) -> Job {
        let s = &self.shared;
        let target = target_name(&s.cfg, &r.app, &r.stream)
            .or_else(|| s.up.targets.first().map(|t| t.name.as_str()))
            .unwrap_or_default();
        Job::new(r.id, r.start_ms, r.bytes, target)
    }

    /// Queue the segments the hook saw close (their closing commit has landed).
    async fn feed(&mut self) {
        let ids = self.hook.take_fed();
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
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // The index cannot be read: hand them back for the next look.
                error!(error = %e, "cannot read newly closed segments from the index");
                self.hook.refeed(ids);
                return;
            }
        };
        for r in rows.into_iter().flatten() {
            // Gone or no longer pending by now (deleted, uploaded by hand): nothing to do.
            if pending(&r) {
                let job = self.job(&r);
                self.queue.push(job)
            }
        }
    }

    /// The client of target `name`, built once (off the runtime: it may create the
    /// directory of a file target or read a credentials file).
    pub(super) async fn target(&mut self, name: &str) -> Result<Arc<Target>, UploadError> {
        if let Some(t) = self.targets.get(name) {
            return Ok(t.clone());
        }
        let s = &self.shared;
        let cfg =
            s.up.target(name)
                .ok_or_else(|| UploadError::Target {
                    target: name.to_string(),
                    message: "no such upload target in the config".into(),
                })?
                .clone();
        let (limiter, part_size) = (s.limiter.clone(), s.up.part_size);
        let t = match tokio::task::spawn_blocking(move || Target::build(&cfg, limiter, part_size))
            .await
        {
            Ok(r) => Arc::new(r?),
            Err(e) => {
                return Err(UploadError::Target {
                    target: name.to_string(),
                    message: e.to_string(),
                })
            }
        };
        self.targets.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// Record a failure: the job backs off by the latest error's kind (a transient one
    /// holds its whole target), the record is saved with the job, and an alarm is raised
    /// once per kind. The job is never dropped.
    async fn failed(&mut self, id: u64, target: &str, e: UploadError) {
        let s = self.shared.clone();
        let now_ms = s.clock.wall_ms();
        let transient = e.is_transient();
        let v = failure::record(
            self.failures.get(&id),
            transient,
            e.to_string(),
            now_ms,
            id ^ now_ms as u64,
        );
        self.queue.failed(id, v.failure.retry_at_ms);
        if transient {
            self.holds.hold(target, v.failure.retry_at_ms);
        }
        let f = v.failure.clone();
        self.failures.insert(id, f.clone());
        let store = s.store.clone();
        if let Err(err) = blocking(move || save_failure(&store, id, f)).await {
            warn!(segment = id, error = %err, "cannot save the upload failure");
        }
        let (attempts, retry_in_s) = (v.failure.attempts, v.delay.as_secs());
        if v.alarm {
            self.alarmed_targets.insert(target.to_string());
            error!(alarm = "upload", segment = id, target_name = %target, attempts, retry_in_s, transient, error = %e, "upload failing; retrying, the segment stays queued");
            if let Some(ev) = &s.events {
                let body = serde_json::json!({
                    "segment_id": id,
                    "target": target,
                    "error": e.to_string(),
                    "transient": transient,
                    "failures": attempts,
                    "retry_at_ms": v.failure.retry_at_ms,
                });
                // A durable commit (an fsync): off the runtime.
                let ev = ev.clone();
                if let Err(err) =
                    blocking(move || ev.emit(EventKind::UploadAlarm, now_ms, body)).await
                {
                    warn!(error = %err, "cannot store the upload alarm event");
                }
            }
        } else {
            warn!(segment = id, attempts, retry_in_ms = v.delay.as_millis() as u64, transient, error = %e, "upload failed; will retry");
        }
    }
}

/// Save a job's failure record in its `UploadParts` entry and its attempt count in its
/// row, in one volatile commit (flushed with the next durable one; a crash loses at most
/// the latest attempts). Blocking; called while the segment is still in flight, so
/// retention does not delete it meanwhile.
fn save_failure(
    store: &Store,
    id: u64,
    f: Failure,
) -> Result<(), crate::storage::store::StoreError> {
    let Some(mut row) = store.segment(id)?.filter(pending) else {
        return Ok(());
    };
    if let UploadState::Pending { attempts, .. } = &mut row.upload {
        *attempts = f.attempts;
    }
    let mut progress = store
        .aux_get(AuxTable::UploadParts, id)?
        .map(|b| Progress::decode(&b))
        .unwrap_or_default();
    progress.failure = Some(f);
    let op = AuxOp::put(AuxTable::UploadParts, id, progress.encode());
    store.aux_commit(vec![op], Some(row), false)
}
