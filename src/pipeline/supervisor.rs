//! The stream supervisor: owns one [`StreamRecorder`] task per recorded stream, by name, and
//! brings them in line with what should record.
//!
//! The daemon (at startup), the record-task scheduler and `config.set` hand it the wanted
//! set — stream config plus template per stream — through [`Supervisor::apply`]: streams no
//! longer wanted are stopped (their open segment is closed cleanly), new ones are started,
//! and a stream whose template or source changed is restarted with the new one. A stream
//! wanted twice (a rule and a record task, or two tasks) is still recorded once.
//!
//! Each recorder reports every failed attempt, numbered in a row, on the failure channel
//! ([`SourceFailure`]); the scheduler counts them per task and puts a task in error once it
//! has seen [`FAIL_ATTEMPTS`] in a row. Storage faults (a segment write that fails or
//! stalls) do not end a session and are not counted here: they go to the storage watchdog
//! ([`crate::storage::watchdog`]), and the stream resumes by itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};

use crate::config::{StreamConfig, Template};
use crate::media::health::{StatusBoard, StreamStatus};
use crate::media::source::SourceSpec;
use crate::pipeline::factory::RecorderFactory;

/// A pulled source that fails this many attempts in a row fails its record tasks.
pub const FAIL_ATTEMPTS: u32 = 3;

/// One failed attempt of a stream's source (or of writing its segments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFailure {
    pub stream: String,
    /// Failed attempts in a row of the stream's recorder, this one included (1 after a
    /// healthy session, or for a recorder just started).
    pub attempt: u32,
    /// The error, credentials redacted.
    pub error: String,
}

/// What a stream recorder needs from the daemon.
pub struct SupervisorContext {
    /// Assembles each stream's recorder.
    pub factory: RecorderFactory,
    pub board: Arc<StatusBoard>,
    /// The daemon's shutdown token; each recorder holds a child of it.
    pub cancel: CancellationToken,
    /// Every failed attempt of every recorder.
    pub failures: mpsc::UnboundedSender<SourceFailure>,
}

/// One stream that should record, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Want {
    pub stream: StreamConfig,
    pub template: Template,
}

struct Running {
    want: Want,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    status: Arc<StreamStatus>,
}

/// The recorders by stream name.
pub struct Supervisor {
    ctx: SupervisorContext,
    running: Mutex<HashMap<String, Running>>,
}

/// What [`Supervisor::apply`] did, by stream name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
}

impl Supervisor {
    pub fn new(ctx: SupervisorContext) -> Supervisor {
        Supervisor {
            ctx,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Make the running recorders exactly `wants` (one per stream name). Stops finish
    /// before this returns, so a restarted stream never has two writers.
    pub async fn apply(&self, wants: Vec<Want>) -> Applied {
        let mut running = self.running.lock().await;
        let mut applied = Applied::default();
        let wanted: BTreeMap<String, Want> = wants
            .into_iter()
            .map(|w| (w.stream.name.clone(), w))
            .collect();
        // A recorder whose source ended for good (a file without loop) stays, finished, for
        // as long as it is wanted unchanged: its file is replayed once, not at every tick.
        // Once unwanted or changed it is dropped below like any other, so a later want
        // starts it again.
        let stale: Vec<String> = running
            .iter()
            .filter(|(n, r)| wanted.get(*n) != Some(&r.want))
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                stop(&self.ctx, r).await;
                if wanted.contains_key(&name) {
                    applied.restarted.push(name);
                } else {
                    info!(stream = %name, "stream no longer recorded");
                    applied.stopped.push(name);
                }
            }
        }
        for (name, want) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            match self.start(want) {
                Some(r) => {
                    if !applied.restarted.contains(&name) {
                        applied.started.push(name.clone());
                    }
                    running.insert(name, r);
                }
                None => applied.restarted.retain(|n| n != &name),
            }
        }
        applied
    }

    /// The streams being recorded and their template names.
    pub async fn recording(&self) -> BTreeMap<String, String> {
        self.running
            .lock()
            .await
            .iter()
            .filter(|(_, r)| !r.handle.is_finished())
            .map(|(n, r)| (n.clone(), r.want.template.name.clone()))
            .collect()
    }

    /// Stop every recorder and wait for each (open segments are closed).
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        for r in running.values() {
            r.cancel.cancel();
        }
        for (_, r) in running.drain() {
            if let Err(e) = r.handle.await {
                error!(error = %e, "a stream task died");
            }
        }
    }

    fn start(&self, want: Want) -> Option<Running> {
        let s = &want.stream;
        let spec = match SourceSpec::parse(&s.source) {
            Ok(spec) => spec.with_pipe_options(s.fps_milli, s.audio_pipe.clone()),
            Err(e) => {
                error!(stream = %s.name, error = %e, "bad source; stream skipped");
                return None;
            }
        };
        let ctx = &self.ctx;
        let cancel = ctx.cancel.child_token();
        let rec = ctx
            .factory
            .pulled(&s.app, &s.name, want.template.clone(), cancel.clone());
        let status = ctx.board.add(StreamStatus::new(
            &s.name,
            &spec.redacted(),
            ctx.factory.clock.now(),
            ctx.factory.clock.wall_ms(),
        ));
        let failures = ctx.failures.clone();
        let name = s.name.clone();
        let on_failure = move |attempt: u32, error: &str| {
            let _ = failures.send(SourceFailure {
                stream: name.clone(),
                attempt,
                error: crate::util::redact::redact_url(error),
            });
        };
        let span = info_span!("stream", name = %s.name);
        let handle = tokio::spawn(
            rec.run_watched(spec, status.clone(), on_failure)
                .instrument(span),
        );
        Some(Running {
            want,
            cancel,
            handle,
            status,
        })
    }
}

async fn stop(ctx: &SupervisorContext, r: Running) {
    r.cancel.cancel();
    if let Err(e) = r.handle.await {
        error!(error = %e, "a stream task died");
    }
    ctx.board.remove(&r.status);
}
