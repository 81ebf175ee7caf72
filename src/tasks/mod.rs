//! Record tasks: real-time (`record.start`) and scheduled (`task.create`) recordings of a
//! configured stream, with a status (pending → in_progress → completed | error), persisted
//! in the index's tasks table so that they survive restarts.
//!
//! - [`model`]: the task as stored and reported.
//! - [`schedule`]: the pure core — given the tasks and the time: status changes, which
//!   streams must record with which template, and when to look again. Unit-tested with a
//!   simulated clock.
//! - [`runner`]: the [`Scheduler`] — tasks, the effective config, and the loop that hands
//!   the [`Supervisor`](crate::supervisor::Supervisor) the wanted set.
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

use crate::store::StoreError;

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
