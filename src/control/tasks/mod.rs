//! Record tasks: real-time (`record.start`) and scheduled (`task.create`) recordings of a
//! configured stream, with a status (pending → in_progress → completed | error), persisted
//! in the index's tasks table so that they survive restarts.
//!
//! - [`model`]: the task as stored and reported.
//! - [`schedule`]: the pure core — given the tasks and the time: status changes, which
//!   streams must record with which template, and when to look again. Unit-tested with a
//!   simulated clock.
//! - [`runner`]: the [`Scheduler`] — tasks, the effective config, and the loop that hands
//!   the [`Supervisor`](crate::pipeline::supervisor::Supervisor) the wanted set.
//!
//! A stream records while a rule selects a template with formats for it **or** an
//! in-progress task covers it; overlapping tasks and rules share one recording, so no file
//! is written twice. A task's `files` and `bytes` count the closed segments of its stream
//! that overlap its window (shared segments count for every task they overlap).

pub mod model;
pub mod runner;
pub mod schedule;

pub use model::{Task, TaskKind, TaskStatus};
pub use runner::{NewTask, Scheduler};

use crate::storage::store::StoreError;

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no stream named {0:?} is configured")]
    NoSuchStream(String),
    #[error("no template named {0:?} is configured")]
    NoSuchTemplate(String),
    #[error("no task with id {0}")]
    NoSuchTask(u64),
    #[error("{0}")]
    BadTimeRange(String),
    #[error("record tasks: index error: {0}")]
    Store(#[from] StoreError),
    #[error("record tasks: {0}")]
    Internal(String),
}

/// What [`spawn`] needs from the daemon.
pub struct TasksContext {
    pub config: crate::config::Config,
    pub store: std::sync::Arc<crate::storage::store::Store>,
    pub clock: crate::util::clock::SharedClock,
    /// The outbox for `task.status` events (`None`: no events).
    pub events: Option<crate::sync::events::Events>,
    /// Assembles the recorder of each stream the tasks and rules start.
    pub recorders: crate::pipeline::factory::RecorderFactory,
    pub board: std::sync::Arc<crate::media::health::StatusBoard>,
    /// The daemon's shutdown token.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// Load the stored tasks, start every stream a rule or an in-progress task records, and
/// spawn the scheduler loop. The loop's handle finishes after shutdown once every stream
/// recorder has closed its segment.
pub async fn spawn(
    ctx: TasksContext,
) -> Result<(std::sync::Arc<Scheduler>, tokio::task::JoinHandle<()>), TaskError> {
    let (failures_tx, failures_rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = crate::pipeline::supervisor::Supervisor::new(
        crate::pipeline::supervisor::SupervisorContext {
            factory: ctx.recorders,
            board: ctx.board,
            cancel: ctx.cancel.clone(),
            failures: failures_tx,
        },
    );
    let (store, clock, events, config) = (ctx.store, ctx.clock, ctx.events, ctx.config);
    let scheduler = tokio::task::spawn_blocking(move || {
        Scheduler::load(store, clock, events, supervisor, config)
    })
    .await
    .map_err(|e| TaskError::Internal(e.to_string()))??;
    let scheduler = std::sync::Arc::new(scheduler);
    scheduler.tick().await?;
    let handle = tokio::spawn(scheduler.clone().run(failures_rx, ctx.cancel));
    Ok((scheduler, handle))
}
