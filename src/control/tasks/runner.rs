//! The scheduler service: the task list (persisted in the tasks table), the effective
//! config, and the loop that turns both into running recorders.
//!
//! Every change (a command, a task's start or end time, a failed source) goes the same way
//! ([`Scheduler::tick`]): update the tasks with the pure core ([`super::schedule`]), commit
//! the tasks that started and their `task.status` events in one durable index transaction,
//! hand the supervisor the wanted set (every stream a rule records, plus every stream an
//! in-progress task needs), and only then commit the tasks that ended with their events: a
//! stream no longer wanted has stopped and closed its last segment by then, so the
//! `completed` event's `files` and `bytes` count it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::model::{Task, TaskKind, TaskStatus};
use super::schedule::{self, Transition};
use super::TaskError;
use crate::config::{Config, Template};
use crate::pipeline::supervisor::{Applied, SourceFailure, Supervisor, Want, FAIL_ATTEMPTS};
use crate::storage::store::{AuxOp, AuxTable, SegmentRow, SegmentState, Store};
use crate::sync::events::{EventKind, Events};
use crate::util::clock::SharedClock;
use crate::util::clockwatch::detector::STEP_THRESHOLD_MS;

/// The longest the loop sleeps without looking at the clock while a task waits for a start
/// or end time (a wall clock that jumps, as at boot on a board without a battery-backed
/// clock when NTP sets it, is noticed within this).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The loop's sleep when no task waits for a time: nothing to do until a command, a
/// source failure or a config change wakes it. Not every second, so an idle recorder
/// does not wake its threads for nothing.
const IDLE_SLEEP: Duration = Duration::from_secs(60);

/// A task to create (`record.start`, `task.create`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub kind: TaskKind,
    pub stream: String,
    pub template: Option<String>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

struct State {
    tasks: Vec<Task>,
    next_id: u64,
    config: Arc<Config>,
    /// Failed source attempts each in-progress task has seen in a row, by task id.
    streaks: HashMap<u64, schedule::Streak>,
    /// Wall and boot clocks at the last tick: a wall clock that moved further than the boot
    /// clock since was stepped forward (see [`schedule::skipped_by_step`]).
    last_tick: Option<(i64, i64)>,
}

/// Tasks, config and the supervisor, shared by the commands and the scheduler loop.
pub struct Scheduler {
    store: Arc<Store>,
    clock: SharedClock,
    events: Option<Events>,
    supervisor: Supervisor,
    state: Mutex<State>,
    /// Serializes reconciliations so that two never interleave their stops and starts.
    apply_lock: tokio::sync::Mutex<()>,
    wake: Notify,
}

impl Scheduler {
    /// Load the stored tasks. Blocking (reads the index).
    pub fn load(
        store: Arc<Store>,
        clock: SharedClock,
        events: Option<Events>,
        supervisor: Supervisor,
        config: Config,
    ) -> Result<Scheduler, TaskError> {
        let mut tasks = Vec::new();
        let mut from = 0;
        loop {
            let batch = store.aux_scan(AuxTable::Tasks, from, 256)?;
            let Some((last, _)) = batch.last() else { break };
            from = last + 1;
            for (key, bytes) in batch {
                match Task::decode(&bytes) {
                    Some(t) => tasks.push(t),
                    None => warn!(key, "unreadable record task in the index; ignored"),
                }
            }
        }
        let next_id = tasks.iter().map(|t| t.id + 1).max().unwrap_or(1);
        Ok(Scheduler {
            store,
            clock,
            events,
            supervisor,
            state: Mutex::new(State {
                tasks,
                next_id,
                config: Arc::new(config),
                streaks: HashMap::new(),
                last_tick: None,
            }),
            apply_lock: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The effective config.
    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Every task, by id.
    pub fn list(&self) -> Vec<Task> {
        let mut t = self.lock().tasks.clone();
        t.sort_by_key(|t| t.id);
        t
    }

    pub fn get(&self, id: u64) -> Option<Task> {
        self.lock().tasks.iter().find(|t| t.id == id).cloned()
    }

    /// The streams being recorded and their templates.
    pub async fn recording(&self) -> BTreeMap<String, String> {
        self.supervisor.recording().await
    }

    /// Replace the effective config (already validated) and bring the recorders in line.
    pub async fn set_config(&self, config: Config) -> Result<Applied, TaskError> {
        self.lock().config = Arc::new(config);
        self.tick().await
    }

    /// Create a task. A scheduled task's window must end in the future.
    pub async fn create(&self, new: NewTask) -> Result<Task, TaskError> {
        let now = self.clock.wall_ms();
        {
            let st = self.lock();
            check_names(&st.config, &new.stream, new.template.as_deref())?;
        }
        if let Some(end) = new.end_ms {
            if end <= new.start_ms {
                return Err(TaskError::BadTimeRange(
                    "end_time is not after start_time".into(),
                ));
            }
            if end <= now {
                return Err(TaskError::BadTimeRange(
                    "end_time has already passed".into(),
                ));
            }
        }
        let task = {
            let mut st = self.lock();
            let id = st.next_id;
            st.next_id += 1;
            Task {
                id,
                kind: new.kind,
                stream: new.stream,
                template: new.template,
                start_ms: new.start_ms,
                end_ms: new.end_ms,
                status: TaskStatus::Pending,
                started_ms: None,
                ended_ms: None,
                error: None,
                created_ms: now,
            }
        };
        let ops = vec![AuxOp::put(AuxTable::Tasks, task.id, task.encode())];
        self.commit(ops).await?;
        self.lock().tasks.push(task.clone());
        info!(task = task.id, stream = %task.stream, "record task created");
        self.tick().await?;
        Ok(self.get(task.id).unwrap_or(task))
    }

    /// Stop one task (completed). Stopping an ended task is not an error: it is returned as is.
    pub async fn stop(&self, id: u64) -> Result<Task, TaskError> {
        let now = self.clock.wall_ms();
        let (task, tr) = {
            let mut st = self.lock();
            let t = st
                .tasks
                .iter_mut()
                .find(|t| t.id == id)
                .ok_or(TaskError::NoSuchTask(id))?;
            let tr = schedule::stop(t, now);
            (t.clone(), tr)
        };
        self.tick_with(tr.into_iter().collect()).await?;
        Ok(task)
    }

    /// Stop every unfinished task on `stream`.
    pub async fn stop_stream(&self, stream: &str) -> Result<Vec<Task>, TaskError> {
        let now = self.clock.wall_ms();
        let mut trs = Vec::new();
        let stopped = {
            let mut st = self.lock();
            check_names(&st.config, stream, None)?;
            let mut stopped = Vec::new();
            for t in st.tasks.iter_mut().filter(|t| t.stream == stream) {
                if let Some(tr) = schedule::stop(t, now) {
                    trs.push(tr);
                    stopped.push(t.clone());
                }
            }
            stopped
        };
        self.tick_with(trs).await?;
        Ok(stopped)
    }

    /// Delete a task (stopping it first if it runs).
    pub async fn delete(&self, id: u64) -> Result<Task, TaskError> {
        let task = self.stop(id).await?;
        self.commit(vec![AuxOp::remove(AuxTable::Tasks, id)])
            .await?;
        self.lock().tasks.retain(|t| t.id != id);
        Ok(task)
    }

    /// Closed segments of the task's stream overlapping its window: (files, bytes).
    pub fn usage(&self, task: &Task, rows: &[SegmentRow]) -> (u64, u64) {
        usage(task, rows, self.clock.wall_ms())
    }

    /// Advance the tasks to now, persist what changed, and apply the wanted set.
    pub async fn tick(&self) -> Result<Applied, TaskError> {
        self.tick_with(Vec::new()).await
    }

    /// [`Scheduler::tick`], with `earlier` transitions already made to the tasks in memory
    /// (a stop, a failure) and not persisted yet. Tasks that started are stored before the
    /// recorders change; tasks that ended after, once their recorder closed its last segment.
    async fn tick_with(&self, earlier: Vec<Transition>) -> Result<Applied, TaskError> {
        let now = self.clock.wall_ms();
        let boot = self.clock.boot_ms();
        let trs = {
            let mut st = self.lock();
            let mut trs = earlier;
            if let Some((wall0, boot0)) = st.last_tick.replace((now, boot)) {
                let expected = wall0 + (boot - boot0);
                if now - expected > STEP_THRESHOLD_MS {
                    let skipped = schedule::skipped_by_step(&mut st.tasks, expected, now);
                    if !skipped.is_empty() {
                        warn!(
                            tasks = skipped.len(),
                            "a forward clock step skipped the windows of record tasks"
                        );
                    }
                    trs.extend(skipped);
                }
            }
            trs.extend(schedule::advance(&mut st.tasks, now));
            // A stream removed from the config (config.set) fails the tasks that need it.
            let State { tasks, config, .. } = &mut *st;
            let gone: std::collections::BTreeSet<String> = tasks
                .iter()
                .filter(|t| !t.status.is_final() && config.stream(&t.stream).is_none())
                .map(|t| t.stream.clone())
                .collect();
            for stream in gone {
                for t in tasks.iter_mut().filter(|t| t.stream == stream) {
                    if let Some(mut tr) = schedule::stop(t, now) {
                        t.status = TaskStatus::Error;
                        t.error = Some("the stream was removed from the config".into());
                        tr.to = TaskStatus::Error;
                        trs.push(tr);
                    }
                }
            }
            trs
        };
        let (ended, begun): (Vec<Transition>, Vec<Transition>) =
            trs.into_iter().partition(|tr| tr.to.is_final());
        self.persist(begun).await?;
        let applied = {
            let _guard = self.apply_lock.lock().await;
            let wants = {
                let st = self.lock();
                wants(&st.config, &st.tasks)
            };
            self.supervisor.apply(wants).await
        };
        self.persist(ended).await?;
        Ok(applied)
    }

    /// A failed attempt of a stream's source: the in-progress tasks on it that have now seen
    /// [`FAIL_ATTEMPTS`] in a row go to error (in memory; the caller persists the returned
    /// transitions through [`Scheduler::tick_with`]).
    pub fn source_failed(&self, f: &SourceFailure) -> Vec<Transition> {
        let reason = format!(
            "the source failed {FAIL_ATTEMPTS} attempts in a row: {}",
            f.error
        );
        let now = self.clock.wall_ms();
        let mut st = self.lock();
        let State { tasks, streaks, .. } = &mut *st;
        schedule::failed_attempt(
            tasks,
            streaks,
            &f.stream,
            f.attempt,
            FAIL_ATTEMPTS,
            &reason,
            now,
        )
    }

    /// The loop: tick at every start/end time, on every change, and after each failed
    /// attempt of a pulled source (a task fails after [`FAIL_ATTEMPTS`] in a row). On
    /// cancel, stops every recorder and waits for them.
    pub async fn run(
        self: Arc<Self>,
        mut failures: mpsc::UnboundedReceiver<SourceFailure>,
        cancel: CancellationToken,
    ) {
        loop {
            let mut failed = Vec::new();
            let now = self.clock.wall_ms();
            let sleep = {
                let st = self.lock();
                match schedule::next_wake(&st.tasks) {
                    Some(w) => Duration::from_millis((w - now).max(0) as u64).min(MAX_SLEEP),
                    None => IDLE_SLEEP,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                Some(f) = failures.recv() => {
                    failed = self.source_failed(&f);
                    if !failed.is_empty() {
                        warn!(stream = %f.stream, tasks = failed.len(), "record tasks failed: the source keeps failing");
                    }
                }
            }
            if cancel.is_cancelled() {
                break;
            }
            if let Err(e) = self.tick_with(failed).await {
                warn!(error = %e, "record task update failed; retrying");
            }
        }
        self.supervisor.shutdown().await;
    }

    /// Store the tasks named in `trs` with a `task.status` event each, in one durable commit.
    async fn persist(&self, trs: Vec<Transition>) -> Result<(), TaskError> {
        if trs.is_empty() {
            return Ok(());
        }
        let snapshot: Vec<(Transition, Task)> = trs
            .into_iter()
            .filter_map(|tr| self.get(tr.id).map(|t| (tr, t)))
            .collect();
        for (tr, task) in &snapshot {
            info!(task = task.id, stream = %task.stream, from = tr.from.as_str(), to = tr.to.as_str(), "record task status");
        }
        // Event ops read the index (files, bytes, outbox size): off the runtime.
        let (store, events) = (self.store.clone(), self.events.clone());
        let ops = tokio::task::spawn_blocking(move || -> Result<Vec<AuxOp>, TaskError> {
            let rows = match &events {
                Some(_) => store.segments()?,
                None => Vec::new(),
            };
            let mut ops = Vec::new();
            for (tr, task) in &snapshot {
                ops.push(AuxOp::put(AuxTable::Tasks, task.id, task.encode()));
                if let Some(ev) = &events {
                    let (files, bytes) = usage(task, &rows, tr.at_ms);
                    let mut body = super::model::to_json(task, files, bytes);
                    // Two changes in one step (a window that passed) report each in turn.
                    body["status"] = tr.to.as_str().into();
                    body["previous_status"] = tr.from.as_str().into();
                    // `kind` is the event's own in the published payload.
                    body["task_kind"] = task.kind.as_str().into();
                    ops.extend(ev.ops(EventKind::TaskStatus, ev.fresh_id(), tr.at_ms, body));
                }
            }
            Ok(ops)
        })
        .await
        .map_err(|e| TaskError::Internal(e.to_string()))??;
        self.commit(ops).await
    }

    async fn commit(&self, ops: Vec<AuxOp>) -> Result<(), TaskError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.aux_commit(ops, None, true))
            .await
            .map_err(|e| TaskError::Internal(e.to_string()))??;
        self.wake.notify_one();
        Ok(())
    }
}

/// The stream and template must be configured.
fn check_names(cfg: &Config, stream: &str, template: Option<&str>) -> Result<(), TaskError> {
    if cfg.stream(stream).is_none() {
        return Err(TaskError::NoSuchStream(stream.to_string()));
    }
    if let Some(t) = template {
        if cfg.template(t).is_none() {
            return Err(TaskError::NoSuchTemplate(t.to_string()));
        }
    }
    Ok(())
}

/// The template a task without one records with: the stream's rule template if that
/// records, else the first template that records.
pub fn default_template<'a>(cfg: &'a Config, app: &str, stream: &str) -> Option<&'a Template> {
    crate::config::rules::resolve(cfg, app, stream)
        .or_else(|| cfg.templates.iter().find(|t| !t.is_off()))
}

/// Every configured stream that a rule records or an in-progress task needs, with its
/// template. A task's template overrides the rule's while the task runs; an "off" template
/// named by a task records nothing.
pub fn wants(cfg: &Config, tasks: &[Task]) -> Vec<Want> {
    let by_task = schedule::wanted(tasks);
    let mut out = Vec::new();
    for s in &cfg.streams {
        let template = match by_task.get(&s.name) {
            Some(Some(name)) => cfg
                .template(name)
                .or_else(|| default_template(cfg, &s.app, &s.name)),
            Some(None) => default_template(cfg, &s.app, &s.name),
            None => crate::config::rules::resolve(cfg, &s.app, &s.name),
        };
        if let Some(t) = template.filter(|t| !t.is_off()) {
            out.push(Want {
                stream: s.clone(),
                template: t.clone(),
            });
        }
    }
    out
}

/// Closed segments of the task's stream overlapping its window, as (files, bytes).
pub fn usage(task: &Task, rows: &[SegmentRow], now_ms: i64) -> (u64, u64) {
    let Some((from, to)) = task.window(now_ms) else {
        return (0, 0);
    };
    rows.iter()
        .filter(|r| r.stream == task.stream && r.state == SegmentState::Closed)
        .filter(|r| r.start_ms < to && r.end_ms > from)
        .fold((0, 0), |(n, b), r| (n + r.files.len() as u64, b + r.bytes))
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
