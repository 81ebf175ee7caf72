//! The scheduler service against a real index, on a simulated clock: persistence across a
//! reload, `task.status` events in the outbox, and what the supervisor is asked to record.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::media::health::StatusBoard;
use crate::pipeline::supervisor::{Supervisor, SupervisorContext};
use crate::sync::events::{EventKind, Events};
use crate::util::clock::{Clock, ManualClock};

const CONFIG: &str = r#"
device_id = "edge-1"
[storage]
root = "unused"
max_bytes = "1GiB"
[[templates]]
name = "t"
formats = ["fmp4"]
[[templates]]
name = "off"
formats = []
[[rules]]
template = "t"
stream = "ruled"
[[streams]]
name = "cam"
source = "file:/nonexistent/cam.mp4"
[[streams]]
name = "ruled"
source = "file:/nonexistent/ruled.mp4"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    events: Events,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
    let clock = ManualClock::new(1_000_000);
    let events = Events::new(store.clone(), "edge-1", true, 100).unwrap();
    Fixture {
        _dir: dir,
        store,
        clock,
        events,
    }
}

fn scheduler(f: &Fixture) -> Scheduler {
    let (tx, _rx) = mpsc::unbounded_channel();
    let clock: SharedClock = f.clock.clone();
    let sup = Supervisor::new(SupervisorContext {
        factory: crate::pipeline::factory::RecorderFactory {
            device: "edge-1".into(),
            store: f.store.clone(),
            clock: clock.clone(),
            closed: Arc::new(Notify::new()),
            pacer: None,
            health: crate::storage::watchdog::health::StorageHealth::with_defaults(clock.clone()),
            pipes: Default::default(),
            deny: crate::sync::upload::DenyFlag::load(&f.store),
            time: None,
        },
        board: Arc::new(StatusBoard::default()),
        cancel: CancellationToken::new(),
        failures: tx,
    });
    let cfg = Config::from_toml_str(CONFIG).unwrap();
    Scheduler::load(f.store.clone(), clock, Some(f.events.clone()), sup, cfg).unwrap()
}

/// A scheduled task on `cam` from `start` to `end` ms from now.
async fn scheduled_cam(f: &Fixture, s: &Scheduler, start: i64, end: i64) -> Task {
    let now = f.clock.wall_ms();
    s.create(NewTask {
        kind: TaskKind::Scheduled,
        stream: "cam".into(),
        template: None,
        start_ms: now + start,
        end_ms: Some(now + end),
    })
    .await
    .unwrap()
}

fn statuses(ev: &Events) -> Vec<(u64, String)> {
    ev.pending(0, 100)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.kind == EventKind::TaskStatus)
        .map(|(_, e)| {
            let b: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            (
                b["task_id"].as_u64().unwrap(),
                b["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_scheduled_task_runs_on_the_simulated_clock_and_reports_each_status() {
    let f = fixture();
    let s = scheduler(&f);
    let now = f.clock.wall_ms();
    let t = scheduled_cam(&f, &s, 5_000, 10_000).await;
    assert_eq!(t.status, TaskStatus::Pending);
    assert_eq!(s.recording().await.keys().collect::<Vec<_>>(), ["ruled"]);

    f.clock.advance(Duration::from_secs(5));
    s.tick().await.unwrap();
    assert_eq!(s.get(t.id).unwrap().status, TaskStatus::InProgress);
    assert_eq!(
        s.recording().await.get("cam").map(String::as_str),
        Some("t")
    );

    f.clock.advance(Duration::from_secs(5));
    let applied = s.tick().await.unwrap();
    assert_eq!(applied.stopped, ["cam"]);
    let done = s.get(t.id).unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.started_ms, Some(now + 5_000));
    assert_eq!(done.ended_ms, Some(now + 10_000));
    assert_eq!(
        statuses(&f.events),
        [
            (t.id, "in_progress".to_string()),
            (t.id, "completed".to_string())
        ]
    );
}

#[tokio::test]
async fn tasks_come_back_after_a_reload_and_ids_keep_growing() {
    let f = fixture();
    let now = f.clock.wall_ms();
    let first = {
        let s = scheduler(&f);
        let a = s
            .create(NewTask {
                kind: TaskKind::RealTime,
                stream: "cam".into(),
                template: Some("t".into()),
                start_ms: now,
                end_ms: None,
            })
            .await
            .unwrap();
        assert_eq!(a.status, TaskStatus::InProgress);
        a
    };
    let s = scheduler(&f);
    assert_eq!(s.list(), std::slice::from_ref(&first));
    let b = s
        .create(NewTask {
            kind: TaskKind::RealTime,
            stream: "ruled".into(),
            template: None,
            start_ms: now,
            end_ms: None,
        })
        .await
        .unwrap();
    assert!(b.id > first.id);
    s.delete(first.id).await.unwrap();
    assert_eq!(scheduler(&f).list().len(), 1, "the delete is stored");
}

#[tokio::test]
async fn bad_tasks_are_refused_with_their_reason() {
    let f = fixture();
    let s = scheduler(&f);
    let now = f.clock.wall_ms();
    let new = |stream: &str, template: Option<&str>, end: Option<i64>| NewTask {
        kind: TaskKind::Scheduled,
        stream: stream.into(),
        template: template.map(Into::into),
        start_ms: now,
        end_ms: end,
    };
    assert!(matches!(
        s.create(new("nope", None, None)).await,
        Err(TaskError::NoSuchStream(_))
    ));
    assert!(matches!(
        s.create(new("cam", Some("nope"), None)).await,
        Err(TaskError::NoSuchTemplate(_))
    ));
    assert!(matches!(
        s.create(new("cam", None, Some(now - 1))).await,
        Err(TaskError::BadTimeRange(_))
    ));
    assert!(matches!(s.stop(42).await, Err(TaskError::NoSuchTask(42))));
    assert!(s.list().is_empty());
}

#[test]
fn an_off_template_on_a_task_records_nothing_and_tasks_override_rules() {
    let cfg = Config::from_toml_str(CONFIG).unwrap();
    let mk = |stream: &str, template: Option<&str>| Task {
        id: 1,
        kind: TaskKind::RealTime,
        stream: stream.into(),
        template: template.map(Into::into),
        start_ms: 0,
        end_ms: None,
        status: TaskStatus::InProgress,
        started_ms: Some(0),
        ended_ms: None,
        error: None,
        created_ms: 0,
    };
    let names = |w: Vec<Want>| -> Vec<String> { w.into_iter().map(|w| w.stream.name).collect() };
    assert_eq!(names(wants(&cfg, &[])), ["ruled"]);
    assert_eq!(names(wants(&cfg, &[mk("cam", None)])), ["cam", "ruled"]);
    assert_eq!(
        names(wants(&cfg, &[mk("ruled", Some("off"))])),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn removing_a_stream_from_the_config_fails_its_tasks() {
    let f = fixture();
    let s = scheduler(&f);
    let now = f.clock.wall_ms();
    let t = s
        .create(NewTask {
            kind: TaskKind::RealTime,
            stream: "cam".into(),
            template: None,
            start_ms: now,
            end_ms: None,
        })
        .await
        .unwrap();
    let cfg = Config::from_toml_str(&CONFIG.replace("name = \"cam\"", "name = \"cam2\"")).unwrap();
    let applied = s.set_config(cfg).await.unwrap();
    assert_eq!(applied.stopped, ["cam"]);
    let t = s.get(t.id).unwrap();
    assert_eq!(t.status, TaskStatus::Error);
    assert!(t.error.unwrap().contains("removed"));
    assert_eq!(statuses(&f.events).last().unwrap().1, "error");
}

#[tokio::test]
async fn a_task_whose_window_a_forward_clock_step_skips_ends_in_error_not_completed() {
    let f = fixture();
    let s = scheduler(&f);
    let t = scheduled_cam(&f, &s, 60_000, 120_000).await;
    s.tick().await.unwrap();
    // NTP sets the clock an hour ahead; one second of boot clock passes.
    f.clock.advance(Duration::from_secs(1));
    f.clock.step_wall(3_600_000);
    s.tick().await.unwrap();
    let t = s.get(t.id).unwrap();
    assert_eq!(t.status, TaskStatus::Error);
    assert!(
        t.error
            .as_deref()
            .unwrap()
            .contains("skipped the task's window"),
        "{:?}",
        t.error
    );
    assert_eq!(statuses(&f.events).last().unwrap().1, "error");
}
