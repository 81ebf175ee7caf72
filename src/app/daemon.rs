//! The running recorder: startup, the stream tasks, retention, signals and ordered shutdown.
//!
//! Startup: open the store → recover torn segments → first retention pass → start one task
//! per recorded stream, through the [`crate::pipeline::supervisor`] that the record-task scheduler
//! ([`crate::control::tasks`]) and `config.set` drive at runtime (then the recorder is "ready").
//! Shutdown has one path: the first SIGTERM/SIGINT cancels the token every task holds; each
//! stream stops its source (a pipe's commands are reaped) and closes its open segment
//! cleanly; the daemon waits for every task, then closes the index. A second signal, at any
//! point of that, SIGKILLs the pipe commands and exits at once with [`FAST_EXIT_CODE`] (the
//! torn segments are recovered at the next start).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::media::health::StatusBoard;
use crate::storage::retention::pass::run as retention_pass;
use crate::storage::store::{Store, StoreError};
use crate::util::clock::SharedClock;

/// Record until a signal arrives. Returns after every task has finished.
pub async fn run(cfg: Config, clock: SharedClock) -> anyhow::Result<()> {
    run_from_file(cfg, None, clock).await
}

/// [`run`], with the config file `config.set` persists the effective config to.
pub async fn run_from_file(
    cfg: Config,
    config_path: Option<std::path::PathBuf>,
    clock: SharedClock,
) -> anyhow::Result<()> {
    let root = cfg.storage.root.clone();
    let notifier = crate::util::notify::Notifier::from_env();
    // The storage guard comes first: nothing may touch an unmounted disk's mount point.
    match crate::storage::guard::check(
        &root,
        cfg.storage.require_marker,
        &cfg.device_id,
        clock.wall_ms(),
    ) {
        Ok(Some(m)) if m.device_id != cfg.device_id => {
            warn!(marker_device = %m.device_id, device = %cfg.device_id, "the data directory was initialised for another device_id")
        }
        Ok(_) => {}
        Err(e) if !e.is_refusal() => {
            error!(alarm = "storage_guard", error = %e, "not recording");
            notifier.status(&format!("failed: {e}"));
            return Err(e.into());
        }
        // The alarm (log, systemd status, MQTT), then wait for the marker.
        Err(e) => {
            use crate::control::mqtt::refusal::{Alarm, Refusal};
            use crate::storage::guard::wait::{until_marked, Waited};
            let refusal = cfg
                .mqtt
                .as_ref()
                .map(|m| Refusal::spawn(m, Alarm::new(&cfg.device_id, &e, &root, clock.clone())));
            let waited = until_marked(&cfg, &clock, &notifier, &e).await?;
            if let Some(r) = refusal {
                r.finish(waited).await;
            }
            if waited == Waited::Stopped {
                return Ok(());
            }
        }
    }
    let store = open_store(&root).await?;
    let store = Arc::new(store);
    // The outbox, and the segment-event hook that must see recovery's closes too.
    let events = crate::sync::events::Events::new(
        store.clone(),
        &cfg.device_id,
        cfg.mqtt.is_some(),
        cfg.mqtt.as_ref().map_or(1, |m| m.outbox_capacity),
    )?;
    crate::sync::events::segment::register(&store, &events, &clock);
    // The upload queue's hook must see recovery's closes and adoptions too.
    let uploads = crate::sync::upload::Uploads::register(&cfg, &store, clock.clone());
    let upload_control = uploads.as_ref().map(|u| u.control());
    let abs_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    {
        let store = store.clone();
        let now = clock.wall_ms();
        let report = tokio::task::spawn_blocking(move || store.recover(now))
            .await?
            .context("recovery failed")?;
        for r in &report.recovered {
            warn!(stream = %r.stream, seq = r.seq, duration_ms = r.duration_ms, "recovered a segment torn by a crash or power cut");
        }
        for r in &report.adopted {
            info!(stream = %r.stream, seq = r.seq, "adopted a segment file missing from the index");
        }
        for p in &report.removed {
            info!(path = %p.display(), "removed an unrecoverable partial file");
        }
    }
    retention_pass(&store, &cfg, clock.wall_ms(), upload_control.as_ref()).await;

    let cancel = CancellationToken::new();
    let board = Arc::new(StatusBoard::default());
    let closed = Arc::new(Notify::new());
    // Every pipe command any stream runs, for the second signal's fast exit.
    let pipes = crate::media::source::PipeGroups::default();
    let pacer = crate::util::pace::Pacer::spawn(
        std::time::Duration::from_millis(100),
        cancel.child_token(),
    );
    // Streams a rule records, and those record tasks need (see crate::control::tasks).
    let (scheduler, scheduler_task) =
        crate::control::tasks::spawn(crate::control::tasks::TasksContext {
            config: cfg.clone(),
            store: store.clone(),
            clock: clock.clone(),
            events: Some(events.clone()),
            closed: closed.clone(),
            pacer: Some(pacer.clone()),
            board: board.clone(),
            cancel: cancel.clone(),
            pipes: pipes.clone(),
        })
        .await
        .context("cannot load the record tasks")?;
    let recording = scheduler.recording().await.len();
    info!(
        streams = recording,
        data = %abs_root.display(),
        "edgerec ready: recording {recording} stream(s) into {}",
        abs_root.display()
    );

    let live_config: crate::control::mqtt::LiveConfig = {
        let s = scheduler.clone();
        Arc::new(move || s.config())
    };
    // `retention.run`: a pass now, its outcome sent back.
    let (retention_tx, mut retention_rx) = tokio::sync::mpsc::channel(4);
    let commands = crate::control::commands::spawn(crate::control::commands::Spawn {
        scheduler: scheduler.clone(),
        board: board.clone(),
        config_path,
        upload: upload_control.clone(),
        retention: retention_tx,
    })
    .await;
    let status_source = Arc::new(crate::control::socket::StatusSource {
        commands: Some(commands.clone()),
        live: crate::control::report::Live {
            board: board.clone(),
            pid: std::process::id(),
            started_ms: clock.wall_ms(),
        },
        device_id: cfg.device_id.clone(),
        quota_bytes: cfg.storage.max_bytes,
        clock: clock.clone(),
        uploads: upload_control.clone(),
    });
    let upload_task = uploads
        .map(|u| crate::sync::upload::spawn(u, Some(events.clone()), cancel.child_token()).1);
    let mqtt = crate::control::mqtt::spawn(crate::control::mqtt::Context {
        config: Arc::new(cfg.clone()),
        store: store.clone(),
        events: events.clone(),
        commands: Some(commands.clone()),
        board: board.clone(),
        clock: clock.clone(),
        started_ms: clock.wall_ms(),
        live_config: Some(live_config.clone()),
    })?;
    let control = tokio::spawn(crate::control::socket::serve_with_status(
        store.clone(),
        Some(status_source),
        cancel.child_token(),
    ));
    // Recovery and the first retention pass are done, and every stream task is started.
    notifier.ready(&format!("recording {recording} stream(s)"));
    // Fed only while every stream's pipeline is alive (see crate::app::status).
    let watchdog_every = notifier
        .watchdog_interval()
        .unwrap_or(std::time::Duration::from_secs(3600));
    let mut watchdog = tokio::time::interval(watchdog_every);
    let mut starving = false;
    let ingest = crate::media::ingest::Ingest::new_live(
        crate::media::ingest::IngestContext {
            config: Arc::new(cfg.clone()),
            store: store.clone(),
            clock: clock.clone(),
            cancel: cancel.clone(),
            closed: closed.clone(),
            board: board.clone(),
        },
        crate::media::ingest::IngestLive {
            config: Some(live_config.clone()),
            events: Some(events.clone()),
        },
    );
    let mut servers = JoinSet::new();
    if let Some(addr) = cfg.ingest.rtsp {
        let listener = crate::media::ingest::rtsp::bind(addr)
            .await
            .with_context(|| format!("ingest.rtsp: cannot listen on {addr}"))?;
        servers.spawn(crate::media::ingest::rtsp::serve(ingest.clone(), listener));
    }
    if let Some(addr) = cfg.ingest.rtmp {
        let server = crate::media::ingest::rtmp::Server::bind(addr, ingest.clone())
            .await
            .with_context(|| format!("ingest.rtmp: cannot listen on {addr}"))?;
        servers.spawn(server.run());
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(cfg.storage.retention_interval);
    tick.tick().await;
    let mut flush_tick = tokio::time::interval(crate::storage::store::FLUSH_INTERVAL);
    flush_tick.tick().await;
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = closed.notified() => { retention_pass(&store, &scheduler.config(), clock.wall_ms(), upload_control.as_ref()).await; }
            _ = tick.tick() => { retention_pass(&store, &scheduler.config(), clock.wall_ms(), upload_control.as_ref()).await; }
            Some(reply) = retention_rx.recv() => {
                let done = retention_pass(&store, &scheduler.config(), clock.wall_ms(), upload_control.as_ref()).await;
                let _ = reply.send(done);
            }
            _ = flush_tick.tick() => flush(&store).await,
            _ = watchdog.tick(), if notifier.watchdog_interval().is_some() => {
                let stalled = board.stalled(clock.now(), crate::media::health::STALL);
                if stalled.is_empty() {
                    notifier.watchdog();
                    if std::mem::take(&mut starving) {
                        info!("every stream is alive again; feeding the watchdog");
                        notifier.status(&format!("recording {recording} stream(s)"));
                    }
                } else if !std::mem::replace(&mut starving, true) {
                    error!(alarm = "stream_hung", streams = ?stalled, "streams stopped making progress; no longer feeding the systemd watchdog");
                    notifier.status(&format!("hung: {}", stalled.join(", ")));
                }
            }
        }
    }
    info!("shutting down: closing open segments");
    notifier.stopping();
    cancel.cancel();
    let shutdown = async {
        // The scheduler stops every stream recorder (its source, then its writer) and
        // waits for their segments to close and their pipe commands to be gone.
        if let Err(e) = scheduler_task.await {
            error!(error = %e, "the stream scheduler died");
        }
        // Push servers stop accepting; every push's session closes its segment.
        while servers.join_next().await.is_some() {}
        ingest.wait().await;
        let _ = control.await;
        // Uploads stop (a transfer under way resumes at the next start), then MQTT.
        if let Some(t) = upload_task {
            let _ = t.await;
        }
        // Last: the events of the segments closed above go out before `offline`.
        mqtt.finish().await;
        flush(&store).await;
    };
    // A second signal ends the process at once, whichever step the shutdown is at.
    tokio::select! {
        () = shutdown => {}
        _ = sigterm.recv() => second_signal(&pipes),
        _ = sigint.recv() => second_signal(&pipes),
    }
    // Only a stream task that died could have left a command behind.
    if pipes.kill_all() > 0 {
        warn!("killed pipe commands left by a stream task that died");
    }
    drop(store);
    info!("stopped");
    Ok(())
}

/// Open the store. A command such as `edgerec segments` may hold the root's lock for a
/// moment while no recorder runs, so a held lock is retried for a few seconds before it
/// counts as another recorder.
async fn open_store(root: &Path) -> anyhow::Result<Store> {
    let mut tries = 0;
    loop {
        let r = root.to_path_buf();
        match tokio::task::spawn_blocking(move || Store::open(&r)).await? {
            Ok(s) => return Ok(s),
            Err(StoreError::Locked { .. }) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot use the data directory {}", root.display()))
            }
        }
    }
}

/// Make the index's volatile changes durable (see the store's durability protocol).
async fn flush(store: &Arc<Store>) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            error!(error = %e, "index flush failed; recovery repairs the index at the next start")
        }
        Err(e) => error!(error = %e, "index flush task failed"),
    }
}

/// Exit code of the fast exit on a second SIGTERM/SIGINT (128 + SIGINT, as shells report
/// an interrupted command).
pub const FAST_EXIT_CODE: i32 = 130;

/// The fast exit: kill the pipe commands' process groups (their keepers will not get to
/// it), then exit without closing anything; recovery repairs the rest at the next start.
fn second_signal(pipes: &crate::media::source::PipeGroups) -> ! {
    let killed = pipes.kill_all();
    warn!(
        pipe_commands_killed = killed,
        "second signal: exiting now; the open segments are recovered at the next start"
    );
    std::process::exit(FAST_EXIT_CODE);
}
