//! The running recorder: the one wiring place. [`start`] builds every part and hands each
//! the [`Handles`] it needs; [`Running::serve`] runs retention, the flush and the watchdog
//! until a signal; [`Running::shutdown`] tears down in order.
//!
//! Startup: the storage guard → open the store → recover torn segments → first retention
//! pass → the recorder factory ([`crate::pipeline::factory`], where every stream's
//! recorder is assembled) → the record-task scheduler ([`crate::control::tasks`]), which
//! starts one task per recorded stream through the [`crate::pipeline::supervisor`], and push
//! ingest, which starts one per publisher → commands, uploads, MQTT, the HTTP API
//! (`[http]`), the local socket, the push servers (then the recorder is "ready").
//!
//! Shutdown has one path: the first SIGTERM/SIGINT cancels the token every task holds; each
//! stream stops its source (a pipe's commands are reaped) and closes its open segment
//! cleanly; the daemon waits for every task, then closes the index. A second signal, at any
//! point of that, SIGKILLs the pipe commands and exits at once with [`FAST_EXIT_CODE`] (the
//! torn segments are recovered at the next start).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control::tasks::Scheduler;
use crate::media::health::StatusBoard;
use crate::media::source::PipeGroups;
use crate::pipeline::factory::RecorderFactory;
use crate::storage::retention::pass::{run as retention_pass, RetentionRun};
use crate::storage::store::{Store, StoreError};
use crate::storage::watchdog::health::StorageHealth;
use crate::storage::watchdog::{Verdict, Watchdog, DISK_EVERY};
use crate::sync::events::Events;
use crate::sync::upload::{Control as UploadControl, DenyFlag, UploadRetention};
use crate::util::clock::SharedClock;
use crate::util::clockwatch::ClockWatch;
use crate::util::notify::Notifier;
use crate::util::pace::Pacer;

/// What the parts of a running recorder share, made once by [`start`].
#[derive(Clone)]
pub struct Handles {
    pub store: Arc<Store>,
    pub clock: SharedClock,
    /// The durable outbox (events for MQTT).
    pub events: Events,
    /// Every stream's health, for status and the watchdog.
    pub board: Arc<StatusBoard>,
    /// The shared tick pulled sources are polled on.
    pub pacer: Pacer,
    /// Every pipe command any stream runs, for the second signal's fast exit.
    pub pipes: PipeGroups,
    /// The one shutdown signal every task holds.
    pub cancel: CancellationToken,
    /// Poked after each closed segment, so retention runs.
    pub closed: Arc<Notify>,
    /// The storage watchdog: write errors, stalls, a full or read-only disk.
    pub health: Arc<StorageHealth>,
    /// Set by retention while storage is full of segments not uploaded (`deny_new`).
    pub deny: DenyFlag,
}

/// A started recorder: [`Running::serve`] it, then [`Running::shutdown`].
pub struct Running {
    cfg: Config,
    handles: Handles,
    watch: Arc<ClockWatch>,
    notifier: Notifier,
    sigterm: Signal,
    sigint: Signal,
    recording: usize,
    scheduler: Arc<Scheduler>,
    scheduler_task: JoinHandle<()>,
    uploads: Option<UploadControl>,
    upload_task: Option<JoinHandle<()>>,
    retention_rx: mpsc::Receiver<oneshot::Sender<RetentionRun>>,
    ingest: crate::media::ingest::Ingest,
    servers: JoinSet<()>,
    control: JoinHandle<()>,
    /// One delivery task per webhook endpoint (`crate::sync::webhooks`).
    webhooks: JoinSet<()>,
    /// The HTTP API (`[http]`), when configured.
    http: Option<JoinHandle<()>>,
    /// Counters of this run, for `/metrics` (retention adds its evictions).
    counters: Arc<crate::control::http::Counters>,
    mqtt: crate::control::mqtt::Handle,
}

/// Record until a signal arrives. Returns after every task has finished.
pub async fn run(cfg: Config, clock: SharedClock) -> anyhow::Result<()> {
    run_from_file(cfg, None, clock).await
}

/// [`run`], with the config file `config.set` persists the effective config to.
pub async fn run_from_file(
    cfg: Config,
    config_path: Option<PathBuf>,
    clock: SharedClock,
) -> anyhow::Result<()> {
    let Some(mut running) = start(cfg, config_path, clock).await? else {
        return Ok(());
    };
    running.serve().await;
    running.shutdown().await;
    Ok(())
}

/// Builds and starts every part. `None`: a signal came while the storage guard waited for
/// the data directory, and nothing was started.
pub async fn start(
    cfg: Config,
    config_path: Option<PathBuf>,
    clock: SharedClock,
) -> anyhow::Result<Option<Running>> {
    let notifier = Notifier::from_env();
    // The storage guard comes first: nothing may touch an unmounted disk's mount point.
    if !guard(&cfg, &clock, &notifier).await? {
        return Ok(None);
    }
    // The clock every part reads is watched: steps are seen on the reads made anyway.
    let watch = ClockWatch::new(
        clock,
        Box::new(crate::util::clockwatch::system::sync_state),
        crate::util::clockwatch::system::boot_id(),
    );
    let steps = watch.listen();
    let clock: SharedClock = watch.clone();
    let root = cfg.storage.root.clone();
    let store = Arc::new(open_store(&root).await?);
    // The outbox, and the segment-event hook that must see recovery's closes too.
    // Its consumers: MQTT and every webhook endpoint not disabled, each with its cursor.
    let callbacks = crate::sync::webhooks::prepare(&store, &cfg.callbacks)?;
    let events = Events::open(
        store.clone(),
        &cfg.device_id,
        &crate::sync::webhooks::consumers(cfg.mqtt.is_some(), &callbacks),
        cfg.mqtt
            .as_ref()
            .map_or(crate::config::mqtt::DEFAULT_OUTBOX_CAPACITY, |m| {
                m.outbox_capacity
            }),
    )?;
    crate::sync::events::segment::register(&store, &events, &clock);
    // The upload queue's hook must see recovery's closes and adoptions too.
    let uploads = crate::sync::upload::Uploads::register(&cfg, &store, clock.clone());
    let upload_control = uploads.as_ref().map(|u| u.control());
    recover(&store, &clock).await?;
    // This run's segment counters for `/metrics` (after recovery: what this run wrote).
    let counters = Arc::new(crate::control::http::Counters::default());
    store.add_hook(counters.clone());
    reconcile_clock(&store, &events, &watch).await?;
    let deny = DenyFlag::load(&store);
    let hooks = UploadRetention::new(&cfg, upload_control.clone(), deny.clone());
    let first = retention_pass(&store, &cfg, &watch, Box::new(hooks)).await;
    counters.evicted(first.deleted.len() as u64, first.freed_bytes);

    // The storage watchdog runs with or without MQTT; with it, its alarms go to the outbox.
    let health = Arc::new(
        StorageHealth::new(
            Watchdog::new(cfg.storage.stall_timeout, cfg.storage.fault_restart),
            clock.clone(),
        )
        .for_root(&root),
    );
    tokio::spawn(crate::sync::events::alarm::forward(
        health.alarms(),
        events.clone(),
        clock.clone(),
    ));
    let cancel = CancellationToken::new();
    let h = Handles {
        health,
        pacer: Pacer::spawn(std::time::Duration::from_millis(100), cancel.child_token()),
        store,
        clock,
        events,
        board: Arc::new(StatusBoard::default()),
        pipes: PipeGroups::default(),
        cancel,
        closed: Arc::new(Notify::new()),
        deny,
    };
    // Where every stream's recorder is assembled: pulled ones (through the scheduler and
    // its supervisor) and pushed ones (through push ingest).
    let recorders = RecorderFactory {
        device: cfg.device_id.clone(),
        store: h.store.clone(),
        clock: h.clock.clone(),
        closed: h.closed.clone(),
        pacer: Some(h.pacer.clone()),
        health: h.health.clone(),
        deny: h.deny.clone(),
        pipes: h.pipes.clone(),
        time: Some(watch.clone()),
    };
    // `source.state` events, for MQTT and webhooks alike (wakes only on a state change).
    tokio::spawn(crate::sync::events::streams::serve(
        h.board.clone(),
        h.events.clone(),
        h.clock.clone(),
        h.cancel.child_token(),
    ));
    // Clock steps: `clock.step`, and re-stamping after a correction (wakes only on a step).
    tokio::spawn(crate::sync::events::clock::serve(
        steps,
        h.store.clone(),
        h.events.clone(),
        watch.clone(),
        h.cancel.child_token(),
    ));
    // Streams a rule records, and those record tasks need (see crate::control::tasks).
    let (scheduler, scheduler_task) =
        crate::control::tasks::spawn(crate::control::tasks::TasksContext {
            config: cfg.clone(),
            store: h.store.clone(),
            clock: h.clock.clone(),
            events: Some(h.events.clone()),
            recorders: recorders.clone(),
            board: h.board.clone(),
            cancel: h.cancel.clone(),
        })
        .await
        .context("cannot load the record tasks")?;
    let recording = scheduler.recording().await.len();
    let abs_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    info!(
        streams = recording,
        data = %abs_root.display(),
        "edgerec ready: recording {recording} stream(s) into {}",
        abs_root.display()
    );

    let live_config: crate::config::LiveConfig = {
        let s = scheduler.clone();
        Arc::new(move || s.config())
    };
    // `retention.run`: a pass now, its outcome sent back.
    let (retention_tx, retention_rx) = mpsc::channel(4);
    let commands = crate::control::commands::spawn(crate::control::commands::Spawn {
        scheduler: scheduler.clone(),
        board: h.board.clone(),
        config_path,
        upload: upload_control.clone(),
        retention: retention_tx,
        storage: Some(h.health.clone()),
        time: Some(watch.clone()),
    })
    .await;
    let status_source = Arc::new(crate::control::report::StatusSource {
        live: crate::control::report::Live {
            board: h.board.clone(),
            pid: std::process::id(),
            started_ms: h.clock.wall_ms(),
            storage: Some(h.health.clone()),
            clock: Some(watch.clone()),
        },
        device_id: cfg.device_id.clone(),
        quota_bytes: cfg.storage.max_bytes,
        clock: h.clock.clone(),
        uploads: upload_control.clone(),
    });
    let upload_task = uploads
        .map(|u| crate::sync::upload::spawn(u, Some(h.events.clone()), h.cancel.child_token()).1);
    let mqtt = crate::control::mqtt::spawn(crate::control::mqtt::Context {
        config: Arc::new(cfg.clone()),
        store: h.store.clone(),
        events: h.events.clone(),
        commands: Some(commands.clone()),
        board: h.board.clone(),
        clock: h.clock.clone(),
        started_ms: h.clock.wall_ms(),
        live_config: Some(live_config.clone()),
        time: Some(watch.clone()),
    })?;
    let webhooks =
        crate::sync::webhooks::spawn(&cfg.callbacks, &callbacks, &h.events, &h.clock, &h.cancel)
            .context("cannot start the callbacks' HTTP client")?;
    let http = match &cfg.http {
        None => None,
        Some(hc) => {
            let listener = crate::control::http::server::bind(hc.listen)
                .await
                .with_context(|| format!("http.listen: cannot listen on {}", hc.listen))?;
            let api = Arc::new(crate::control::http::Api {
                commands: commands.clone(),
                scheduler: scheduler.clone(),
                status: status_source.clone(),
                store: h.store.clone(),
                events: h.events.clone(),
                counters: counters.clone(),
                tokens: hc.tokens.clone(),
            });
            Some(tokio::spawn(crate::control::http::server::serve(
                listener,
                api,
                h.cancel.child_token(),
            )))
        }
    };
    let control = tokio::spawn(crate::control::socket::serve_with_status(
        h.store.clone(),
        Some(status_source),
        Some(commands.clone()),
        h.cancel.child_token(),
    ));
    let ingest = crate::media::ingest::Ingest::new_live(
        crate::media::ingest::IngestContext {
            config: Arc::new(cfg.clone()),
            clock: h.clock.clone(),
            cancel: h.cancel.clone(),
            recorder: Arc::new(recorders),
            board: h.board.clone(),
        },
        crate::media::ingest::IngestLive {
            config: Some(live_config),
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
    // Recovery and the first retention pass are done, and every stream task is started.
    notifier.ready(&format!("recording {recording} stream(s)"));
    Ok(Some(Running {
        sigterm: signal(SignalKind::terminate())?,
        sigint: signal(SignalKind::interrupt())?,
        cfg,
        handles: h,
        watch,
        notifier,
        recording,
        scheduler,
        scheduler_task,
        uploads: upload_control,
        upload_task,
        retention_rx,
        ingest,
        servers,
        control,
        webhooks,
        http,
        counters,
        mqtt,
    }))
}

impl Running {
    /// The shared handles, for whatever runs beside the recorder.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// Retention after each closed segment and every `storage.retention_interval`, the
    /// index flush, `retention.run` commands and the systemd watchdog, until a signal.
    pub async fn serve(&mut self) {
        let h = self.handles.clone();
        let retention = |cfg: Arc<Config>| {
            let (store, watch) = (h.store.clone(), self.watch.clone());
            let hooks = UploadRetention::new(&cfg, self.uploads.clone(), h.deny.clone());
            let counters = self.counters.clone();
            async move {
                let run = retention_pass(&store, &cfg, &watch, Box::new(hooks)).await;
                counters.evicted(run.deleted.len() as u64, run.freed_bytes);
                run
            }
        };
        // Fed only while every stream's pipeline is alive (see crate::media::health) and no
        // storage condition has lasted `storage.fault_restart` (crate::storage::watchdog).
        let watchdog_on = self.notifier.watchdog_interval().is_some();
        let mut watchdog = tokio::time::interval(
            self.notifier
                .watchdog_interval()
                .unwrap_or(std::time::Duration::from_secs(3600)),
        );
        let mut starving = false;
        let mut tick = tokio::time::interval(self.cfg.storage.retention_interval);
        tick.tick().await;
        let mut flush_tick = tokio::time::interval(crate::storage::store::FLUSH_INTERVAL);
        flush_tick.tick().await;
        let mut storage_tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut storage_status: Option<String> = None;
        let mut last_disk: Option<std::time::Instant> = None;
        let mut sampling: Option<JoinHandle<()>> = None;
        // Recordings whose resume window passed are finished about a second after it did.
        let mut expiring: Option<JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = self.sigterm.recv() => break,
                _ = self.sigint.recv() => break,
                _ = h.closed.notified() => { retention(self.scheduler.config()).await; }
                _ = tick.tick() => { retention(self.scheduler.config()).await; }
                Some(reply) = self.retention_rx.recv() => {
                    let _ = reply.send(retention(self.scheduler.config()).await);
                }
                _ = flush_tick.tick() => flush(&h.store).await,
                _ = storage_tick.tick() => {
                    if h.store.may_have_expired()
                        && expiring.as_ref().is_none_or(|j| j.is_finished())
                    {
                        expiring = Some(tokio::task::spawn_blocking(finish_expired(h.store.clone())));
                    }
                    // The disk sample runs off the loop and never twice at once: a hung
                    // disk must not hold the loop (and with it the systemd watchdog).
                    let now = h.clock.now();
                    let due = last_disk.is_none_or(|t| now.saturating_duration_since(t) >= DISK_EVERY);
                    if due && sampling.as_ref().is_none_or(|j| j.is_finished()) {
                        last_disk = Some(now);
                        let (health, store) = (h.health.clone(), h.store.clone());
                        let min_free = self.scheduler.config().storage.min_free;
                        sampling = Some(tokio::task::spawn_blocking(move || health.sample_disk(&store, min_free)));
                    }
                    let summary = h.health.summary();
                    if summary != storage_status && !starving {
                        match &summary {
                            Some(s) => self.notifier.status(s),
                            None => self.notifier.status(&format!("recording {} stream(s)", self.recording)),
                        }
                    }
                    storage_status = summary;
                }
                _ = watchdog.tick(), if watchdog_on => {
                    let stalled = h.board.stalled(h.clock.now(), crate::media::health::STALL);
                    let verdict = h.health.verdict();
                    if stalled.is_empty() && verdict == Verdict::Feed {
                        self.notifier.watchdog();
                        if std::mem::take(&mut starving) {
                            info!("every stream is alive and the storage is fine again; feeding the watchdog");
                            self.notifier.status(&format!("recording {} stream(s)", self.recording));
                        }
                    } else if !std::mem::replace(&mut starving, true) {
                        if let Verdict::Restart { condition, lasted } = verdict {
                            error!(alarm = "storage_fault", condition = ?condition, lasted_s = lasted.as_secs(), "a storage fault has lasted storage.fault_restart; no longer feeding the systemd watchdog, so systemd restarts the recorder");
                            self.notifier.status(&format!("storage fault for {} s: {}; restart due", lasted.as_secs(), condition.alarm));
                        } else {
                            error!(alarm = "stream_hung", streams = ?stalled, "streams stopped making progress; no longer feeding the systemd watchdog");
                            self.notifier.status(&format!("hung: {}", stalled.join(", ")));
                        }
                    }
                }
            }
        }
    }

    /// Stops everything in order: stream recorders (sources, then writers), push sessions,
    /// the local socket, uploads, webhooks, then MQTT (so the events of the segments just closed go
    /// out before `offline`), and a last index flush. A second signal exits at once.
    pub async fn shutdown(self) {
        let Running {
            handles: h,
            notifier,
            mut sigterm,
            mut sigint,
            scheduler_task,
            mut servers,
            ingest,
            control,
            upload_task,
            mut webhooks,
            http,
            mqtt,
            ..
        } = self;
        info!("shutting down: closing open segments");
        notifier.stopping();
        h.cancel.cancel();
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
            // The HTTP API closes (requests under way finish, briefly).
            if let Some(t) = http {
                let _ = t.await;
            }
            // Uploads stop (a transfer under way resumes at the next start), then MQTT.
            if let Some(t) = upload_task {
                let _ = t.await;
            }
            // Webhook deliveries stop (what is not delivered goes at the next start).
            while webhooks.join_next().await.is_some() {}
            // Last: the events of the segments closed above go out before `offline`.
            mqtt.finish().await;
            flush(&h.store).await;
        };
        // A second signal ends the process at once, whichever step the shutdown is at.
        tokio::select! {
            () = shutdown => {}
            _ = sigterm.recv() => second_signal(&h.pipes),
            _ = sigint.recv() => second_signal(&h.pipes),
        }
        // Only a stream task that died could have left a command behind.
        if h.pipes.kill_all() > 0 {
            warn!("killed pipe commands left by a stream task that died");
        }
        info!("stopped");
    }
}

/// The storage guard: `Ok(true)` when the data directory may be used (at once, or after
/// waiting for its marker), `Ok(false)` when a signal came while waiting.
async fn guard(cfg: &Config, clock: &SharedClock, notifier: &Notifier) -> anyhow::Result<bool> {
    let root = &cfg.storage.root;
    match crate::storage::guard::check(
        root,
        cfg.storage.require_marker,
        &cfg.device_id,
        clock.wall_ms(),
    ) {
        Ok(Some(m)) if m.device_id != cfg.device_id => {
            warn!(marker_device = %m.device_id, device = %cfg.device_id, "the data directory was initialised for another device_id");
            Ok(true)
        }
        Ok(_) => Ok(true),
        Err(e) if !e.is_refusal() => {
            error!(alarm = "storage_guard", error = %e, "not recording");
            notifier.status(&format!("failed: {e}"));
            Err(e.into())
        }
        // The alarm (log, systemd status, MQTT), then wait for the marker.
        Err(e) => {
            use crate::control::mqtt::refusal::{Alarm, Refusal};
            use crate::storage::guard::wait::{until_marked, Waited};
            let refusal = cfg
                .mqtt
                .as_ref()
                .map(|m| Refusal::spawn(m, Alarm::new(&cfg.device_id, &e, root, clock.clone())));
            let waited = until_marked(cfg, clock, notifier, &e).await?;
            if let Some(r) = refusal {
                r.finish(waited).await;
            }
            Ok(waited == Waited::Marked)
        }
    }
}

/// Crash recovery (blocking, off the runtime), with what it did in the log.
async fn recover(store: &Arc<Store>, clock: &SharedClock) -> anyhow::Result<()> {
    let s = store.clone();
    let now = clock.wall_ms();
    let report = tokio::task::spawn_blocking(move || s.recover(now))
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
    Ok(())
}

/// Segments of this boot left on an old offset by a step made while edgerec was not
/// running, and corrections a crash kept out of the index (blocking, off the runtime).
async fn reconcile_clock(
    store: &Arc<Store>,
    events: &Events,
    watch: &Arc<ClockWatch>,
) -> anyhow::Result<()> {
    let (s, e, w) = (store.clone(), events.clone(), watch.clone());
    let moved =
        tokio::task::spawn_blocking(move || crate::sync::events::clock::reconcile(&s, &e, &w))
            .await?
            .context("re-stamping after a clock correction failed")?;
    if !moved.is_empty() {
        info!(
            segments = moved.len(),
            "re-stamped segments onto the corrected clock"
        );
    }
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

/// Finish the HLS recordings whose resume window passed (see `Store::finish_expired`).
fn finish_expired(store: Arc<Store>) -> impl FnOnce() + Send + 'static {
    move || {
        if let Err(e) = store.finish_expired() {
            error!(error = %e, "finishing recordings whose resume window passed failed; retried in a second");
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
