//! `record.start`, `record.stop`, `task.create`, `task.list`, `task.delete`.

use serde_json::json;

use super::args::{bad_field, Args};
use super::reply::{code, Reply};
use super::Commands;
use crate::control::tasks::model::to_json;
use crate::control::tasks::{NewTask, Task, TaskError, TaskKind};

/// A task error as a reply.
pub fn task_error(e: TaskError) -> Reply {
    let c = match &e {
        TaskError::NoSuchStream(_) => code::NO_SUCH_STREAM,
        TaskError::NoSuchTemplate(_) => code::NO_SUCH_TEMPLATE,
        TaskError::NoSuchTask(_) => code::NO_SUCH_TASK,
        TaskError::BadTimeRange(_) => code::BAD_TIME_RANGE,
        TaskError::Store(_) | TaskError::Internal(_) => code::INTERNAL,
    };
    Reply::error(c, e.to_string())
}

impl Commands {
    /// Tasks as JSON with their files and bytes from the index.
    async fn tasks_json(&self, tasks: Vec<Task>) -> Result<serde_json::Value, Reply> {
        let rows = self.segments().await?;
        let sched = self.sched()?;
        Ok(tasks
            .iter()
            .map(|t| {
                let (files, bytes) = sched.usage(t, &rows);
                to_json(t, files, bytes)
            })
            .collect())
    }

    async fn one_task(&self, t: Task) -> Reply {
        match self.tasks_json(vec![t]).await {
            Ok(serde_json::Value::Array(mut v)) if !v.is_empty() => Reply::ok(v.remove(0)),
            Ok(_) => Reply::error(code::INTERNAL, "task vanished"),
            Err(r) => r,
        }
    }

    pub(super) async fn record_start(&self, mut a: Args) -> Result<Reply, Reply> {
        let stream = a.name("stream")?;
        let template = a.opt_name("template")?;
        let end = a.opt_time("end_time")?;
        let duration = a.opt_duration_ms("duration")?;
        a.finish()?;
        let now = self.sched()?.clock().wall_ms();
        let end_ms = match (end, duration) {
            (Some(_), Some(_)) => {
                return Err(bad_field("duration", "give end_time or duration, not both"))
            }
            (Some(e), None) => Some(e),
            (None, Some(d)) => Some(now + d),
            (None, None) => None,
        };
        let task = self
            .sched()?
            .create(NewTask {
                kind: TaskKind::RealTime,
                stream,
                template,
                start_ms: now,
                end_ms,
            })
            .await
            .map_err(task_error)?;
        Ok(self.one_task(task).await)
    }

    pub(super) async fn record_stop(&self, mut a: Args) -> Result<Reply, Reply> {
        let id = a.opt_u64("task_id")?;
        let stream = a.opt_name("stream")?;
        a.finish()?;
        let sched = self.sched()?;
        let stopped = match (id, stream) {
            (Some(id), None) => vec![sched.stop(id).await.map_err(task_error)?],
            (None, Some(s)) => sched.stop_stream(&s).await.map_err(task_error)?,
            _ => {
                return Err(bad_field(
                    "task_id",
                    "give exactly one of task_id or stream",
                ))
            }
        };
        Ok(Reply::ok(
            json!({ "tasks": self.tasks_json(stopped).await? }),
        ))
    }

    pub(super) async fn task_create(&self, mut a: Args) -> Result<Reply, Reply> {
        let stream = a.name("stream")?;
        let template = a.opt_name("template")?;
        let start = a.time("start_time")?;
        let end = a.time("end_time")?;
        a.finish()?;
        if end <= start {
            return Err(Reply::error(
                code::BAD_TIME_RANGE,
                "end_time must be after start_time",
            ));
        }
        let task = self
            .sched()?
            .create(NewTask {
                kind: TaskKind::Scheduled,
                stream,
                template,
                start_ms: start,
                end_ms: Some(end),
            })
            .await
            .map_err(task_error)?;
        Ok(self.one_task(task).await)
    }

    pub(super) async fn task_list(&self, mut a: Args) -> Result<Reply, Reply> {
        let stream = a.opt_name("stream")?;
        a.finish()?;
        let tasks = self
            .sched()?
            .list()
            .into_iter()
            .filter(|t| stream.as_ref().is_none_or(|s| &t.stream == s))
            .collect();
        Ok(Reply::ok(json!({ "tasks": self.tasks_json(tasks).await? })))
    }

    pub(super) async fn task_delete(&self, mut a: Args) -> Result<Reply, Reply> {
        let id = a.u64("task_id")?;
        a.finish()?;
        let t = self.sched()?.delete(id).await.map_err(task_error)?;
        Ok(Reply::ok(json!({ "deleted": t.id })))
    }
}
