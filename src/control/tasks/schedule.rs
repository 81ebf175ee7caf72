//! The scheduler core, free of I/O: given the task list and the time, which tasks change
//! status, which streams must record with which template, and when to look again.
//!
//! Overlapping tasks on one stream share one recording: [`wanted`] yields one entry per
//! stream, so the supervisor runs one recorder and no file is written twice.

use std::collections::BTreeMap;

use super::model::{Task, TaskStatus};

/// One status change, for the `task.status` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub id: u64,
    pub from: TaskStatus,
    pub to: TaskStatus,
    pub at_ms: i64,
}

fn set(t: &mut Task, to: TaskStatus, now_ms: i64, out: &mut Vec<Transition>) {
    out.push(Transition {
        id: t.id,
        from: t.status,
        to,
        at_ms: now_ms,
    });
    t.status = to;
    match to {
        TaskStatus::InProgress => t.started_ms = Some(now_ms),
        TaskStatus::Completed | TaskStatus::Error => t.ended_ms = Some(now_ms),
        TaskStatus::Pending => {}
    }
}

/// Move every task to where it belongs at `now_ms`: a pending task whose start has come goes
/// in progress; one whose whole window passed (the recorder was down) goes to error; an
/// in-progress task whose end has come completes.
pub fn advance(tasks: &mut [Task], now_ms: i64) -> Vec<Transition> {
    let mut out = Vec::new();
    for t in tasks.iter_mut() {
        if t.status == TaskStatus::Pending && t.end_ms.is_some_and(|e| e <= now_ms) {
            t.error = Some("the recorder was not running during the task's window".into());
            set(t, TaskStatus::Error, now_ms, &mut out);
            continue;
        }
        if t.status == TaskStatus::Pending && t.start_ms <= now_ms {
            set(t, TaskStatus::InProgress, now_ms, &mut out);
        }
        if t.status == TaskStatus::InProgress && t.end_ms.is_some_and(|e| e <= now_ms) {
            set(t, TaskStatus::Completed, now_ms, &mut out);
        }
    }
    out
}

/// A forward step of the wall clock jumped from `from_ms` to `to_ms` (see `docs/time.md`):
/// a pending task whose whole window lies in that jump, and a task in progress whose end
/// does, go to error with the reason, instead of completing as if their window had been
/// recorded. A pending task whose start was jumped over but whose end was not starts as
/// usual at the next [`advance`], and records the rest of its window.
pub fn skipped_by_step(tasks: &mut [Task], from_ms: i64, to_ms: i64) -> Vec<Transition> {
    let mut out = Vec::new();
    let utc = |ms: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let jump = || format!("a clock step from {} to {}", utc(from_ms), utc(to_ms));
    for t in tasks.iter_mut() {
        let Some(end) = t.end_ms.filter(|e| *e > from_ms && *e <= to_ms) else {
            continue;
        };
        let reason = match t.status {
            TaskStatus::Pending if t.start_ms >= from_ms => {
                format!("{} skipped the task's window", jump())
            }
            TaskStatus::InProgress => format!(
                "{} cut the task's window short: recorded until {}, not until {}",
                jump(),
                utc(from_ms),
                utc(end)
            ),
            _ => continue,
        };
        t.error = Some(reason);
        set(t, TaskStatus::Error, to_ms, &mut out);
    }
    out
}

/// Stop a task (`record.stop`): pending or in progress → completed. `None` when it had
/// already ended.
pub fn stop(t: &mut Task, now_ms: i64) -> Option<Transition> {
    if t.status.is_final() {
        return None;
    }
    let mut out = Vec::new();
    set(t, TaskStatus::Completed, now_ms, &mut out);
    out.pop()
}

/// The failed attempts in a row of a stream's source that one in-progress task has seen.
///
/// The stream's recorder numbers its failed attempts in a row (1, 2, 3, ...; back to 1 after
/// a healthy session, or for a new recorder). A task counts only the failures it saw while
/// in progress: a task begun while the source had already failed 50 times still gets its own
/// three attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streak {
    /// The recorder's number of the last failure seen.
    last: u32,
    /// Failures in a row seen by the task.
    count: u32,
}

impl Streak {
    /// The recorder reported its `n`th failed attempt in a row: the task's count, which
    /// starts over when the recorder's does.
    pub fn failed(&mut self, n: u32) -> u32 {
        if self.count > 0 && n == self.last.wrapping_add(1) {
            self.count += 1;
        } else {
            self.count = 1;
        }
        self.last = n;
        self.count
    }
}

/// The source of `stream` failed (its recorder's attempt `n` in a row): every in-progress
/// task on it counts the failure in `streaks` (by task id); those that have seen `limit` in
/// a row go to error with `reason`. Streaks of tasks no longer in progress are forgotten.
pub fn failed_attempt(
    tasks: &mut [Task],
    streaks: &mut std::collections::HashMap<u64, Streak>,
    stream: &str,
    n: u32,
    limit: u32,
    reason: &str,
    now_ms: i64,
) -> Vec<Transition> {
    let mut out = Vec::new();
    for t in tasks
        .iter_mut()
        .filter(|t| t.stream == stream && t.status == TaskStatus::InProgress)
    {
        if streaks.entry(t.id).or_default().failed(n) >= limit {
            t.error = Some(reason.to_string());
            set(t, TaskStatus::Error, now_ms, &mut out);
        }
    }
    streaks.retain(|id, _| {
        tasks
            .iter()
            .any(|t| t.id == *id && t.status == TaskStatus::InProgress)
    });
    out
}

/// The streams in-progress tasks need recorded, each with the template of its earliest
/// started task that names one (`None`: none names one, use the stream's default).
pub fn wanted(tasks: &[Task]) -> BTreeMap<String, Option<String>> {
    let mut active: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::InProgress)
        .collect();
    active.sort_by_key(|t| (t.started_ms, t.start_ms, t.id));
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    for t in active {
        let slot = out.entry(t.stream.clone()).or_default();
        if slot.is_none() {
            *slot = t.template.clone();
        }
    }
    out
}

/// The next time [`advance`] has something to do: the earliest pending start or pending /
/// in-progress end.
pub fn next_wake(tasks: &[Task]) -> Option<i64> {
    tasks
        .iter()
        .filter_map(|t| match t.status {
            TaskStatus::Pending => Some(t.end_ms.map_or(t.start_ms, |e| e.min(t.start_ms))),
            TaskStatus::InProgress => t.end_ms,
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::super::model::TaskKind;
    use super::*;
    use crate::util::clock::{Clock, ManualClock};
    use std::time::Duration;

    fn task(id: u64, stream: &str, start: i64, end: Option<i64>, template: Option<&str>) -> Task {
        Task {
            id,
            kind: TaskKind::Scheduled,
            stream: stream.into(),
            template: template.map(Into::into),
            start_ms: start,
            end_ms: end,
            status: TaskStatus::Pending,
            started_ms: None,
            ended_ms: None,
            error: None,
            created_ms: 0,
        }
    }

    #[test]
    fn a_forward_step_over_a_window_ends_the_task_as_error_with_the_reason() {
        let clock = ManualClock::new(10_000);
        let mut tasks = vec![
            task(1, "cam", 20_000, Some(30_000), None),
            task(2, "cam", 5_000, Some(40_000), None),
            task(3, "door", 35_000, Some(90_000), None),
        ];
        advance(&mut tasks, clock.wall_ms());
        assert_eq!(tasks[1].status, TaskStatus::InProgress);
        // The clock jumps from 10 s to 60 s.
        clock.step_wall(50_000);
        let trs = skipped_by_step(&mut tasks, 10_000, clock.wall_ms());
        assert_eq!(trs.len(), 2);
        assert_eq!(tasks[0].status, TaskStatus::Error);
        assert!(
            tasks[0]
                .error
                .as_deref()
                .unwrap()
                .contains("skipped the task's window"),
            "{:?}",
            tasks[0].error
        );
        assert_eq!(tasks[1].status, TaskStatus::Error);
        assert!(tasks[1]
            .error
            .as_deref()
            .unwrap()
            .contains("cut the task's window short"));
        // Its start was jumped over, its end was not: it starts and records the rest.
        assert_eq!(tasks[2].status, TaskStatus::Pending);
        advance(&mut tasks, clock.wall_ms());
        assert_eq!(tasks[2].status, TaskStatus::InProgress);
    }

    #[test]
    fn a_scheduled_task_starts_and_ends_on_a_simulated_clock() {
        let clock = ManualClock::new(10_000);
        let mut tasks = vec![task(1, "cam", 15_000, Some(20_000), None)];
        assert!(advance(&mut tasks, clock.wall_ms()).is_empty());
        assert_eq!(next_wake(&tasks), Some(15_000));
        assert!(wanted(&tasks).is_empty());

        clock.advance(Duration::from_secs(5));
        let tr = advance(&mut tasks, clock.wall_ms());
        assert_eq!(tr.len(), 1);
        assert_eq!(
            (tr[0].from, tr[0].to),
            (TaskStatus::Pending, TaskStatus::InProgress)
        );
        assert_eq!(tasks[0].started_ms, Some(15_000));
        assert_eq!(wanted(&tasks).get("cam"), Some(&None));
        assert_eq!(next_wake(&tasks), Some(20_000));

        clock.advance(Duration::from_millis(4_999));
        assert!(advance(&mut tasks, clock.wall_ms()).is_empty());
        clock.advance(Duration::from_millis(1));
        let tr = advance(&mut tasks, clock.wall_ms());
        assert_eq!(tr[0].to, TaskStatus::Completed);
        assert_eq!(tasks[0].ended_ms, Some(20_000));
        assert!(wanted(&tasks).is_empty());
        assert_eq!(next_wake(&tasks), None);
    }

    #[test]
    fn a_window_that_passed_while_down_is_an_error_not_a_recording() {
        let mut tasks = vec![task(1, "cam", 1_000, Some(2_000), None)];
        let tr = advance(&mut tasks, 5_000);
        assert_eq!(tr.len(), 1);
        assert_eq!(tasks[0].status, TaskStatus::Error);
        assert!(tasks[0].started_ms.is_none());
    }

    #[test]
    fn overlapping_tasks_on_one_stream_want_one_recording_with_the_earliest_template() {
        let mut tasks = vec![
            task(1, "cam", 1_000, Some(9_000), None),
            task(2, "cam", 2_000, Some(5_000), Some("hq")),
            task(3, "cam", 3_000, None, Some("lq")),
            task(4, "door", 1_000, None, Some("lq")),
        ];
        advance(&mut tasks, 1_000);
        advance(&mut tasks, 3_000);
        let w = wanted(&tasks);
        assert_eq!(w.len(), 2);
        assert_eq!(w["cam"], Some("hq".to_string()));
        assert_eq!(w["door"], Some("lq".to_string()));
        advance(&mut tasks, 5_000);
        assert_eq!(wanted(&tasks)["cam"], Some("lq".to_string()));
    }

    #[test]
    fn stopping_completes_once() {
        let mut t = task(1, "cam", 0, None, None);
        advance(std::slice::from_mut(&mut t), 10);
        let tr = stop(&mut t, 20).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (TaskStatus::InProgress, TaskStatus::Completed)
        );
        assert_eq!(t.ended_ms, Some(20));
        assert!(stop(&mut t, 30).is_none());
    }

    #[test]
    fn a_failed_source_errors_only_its_streams_in_progress_tasks_at_the_third_attempt() {
        let mut tasks = vec![
            task(1, "cam", 0, None, None),
            task(2, "cam", 100, None, None),
            task(3, "door", 0, None, None),
        ];
        advance(&mut tasks, 10);
        let mut streaks = std::collections::HashMap::new();
        for n in 1..=2 {
            let tr = failed_attempt(&mut tasks, &mut streaks, "cam", n, 3, "refused", 20);
            assert!(tr.is_empty(), "attempt {n} is not yet three");
        }
        let tr = failed_attempt(&mut tasks, &mut streaks, "cam", 3, 3, "refused", 20);
        assert_eq!(tr.len(), 1);
        assert_eq!(tasks[0].status, TaskStatus::Error);
        assert_eq!(tasks[0].error.as_deref(), Some("refused"));
        assert_eq!(tasks[1].status, TaskStatus::Pending);
        assert_eq!(tasks[2].status, TaskStatus::InProgress);
        assert!(streaks.is_empty(), "the ended task's streak is forgotten");
    }

    #[test]
    fn a_task_begun_while_the_source_was_already_failing_gets_its_own_three_attempts() {
        let mut tasks = vec![task(1, "cam", 0, None, None)];
        let mut streaks = std::collections::HashMap::new();
        // The recorder has failed 50 times in a row before the task began.
        advance(&mut tasks, 10);
        for n in 51..=52 {
            assert!(failed_attempt(&mut tasks, &mut streaks, "cam", n, 3, "x", 20).is_empty());
        }
        assert_eq!(tasks[0].status, TaskStatus::InProgress);
        let tr = failed_attempt(&mut tasks, &mut streaks, "cam", 53, 3, "x", 30);
        assert_eq!(tr.len(), 1, "the third failure the task saw fails it");
    }

    #[test]
    fn a_healthy_session_between_failures_starts_the_count_over() {
        let mut s = Streak::default();
        assert_eq!(s.failed(1), 1);
        assert_eq!(s.failed(2), 2);
        // The recorder's count went back to 1: a session succeeded in between.
        assert_eq!(s.failed(1), 1);
        assert_eq!(s.failed(2), 2);
        assert_eq!(s.failed(3), 3);
    }

    #[test]
    fn a_task_without_end_runs_until_stopped() {
        let mut tasks = vec![task(1, "cam", 0, None, None)];
        advance(&mut tasks, 0);
        assert!(advance(&mut tasks, i64::MAX / 2).is_empty());
        assert_eq!(tasks[0].status, TaskStatus::InProgress);
    }
}
