//! One supervised task per stream: source → segmenter → sinks (one per container: fMP4,
//! FLV, ADTS → store).
//!
//! [`StreamRecorder::run`] is the supervisor of a pulled stream: it calls `run_once` (one
//! source session) in a loop with capped exponential backoff until cancelled. A pushed
//! stream has no one to reconnect to: [`StreamRecorder::record_once`] runs one session on
//! the source the push server feeds, and returns when the push ends. A session ends when the
//! source fails, ends, or the recorder is cancelled; its open segment is always closed
//! cleanly first.
//! All file I/O (write, fdatasync, close protocol) runs on the stream's writer thread
//! ([`crate::media::sink::SinkThread`]), never on the async runtime.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Template;
use crate::media::frame::Frame;
use crate::media::health::{StreamState, StreamStatus};
use crate::media::segment::{
    CloseReason, SegmentEvent, Segmenter, SegmenterConfig, StreamIdentity,
};
use crate::media::sink::{store_sinks, Report, SinkError, SinkSet, SinkThread};
use crate::media::source::{PipeGroups, Source, SourceError, SourceSpec};
use crate::storage::store::{SegmentRow, Store};
use crate::util::backoff::Backoff;
use crate::util::clock::SharedClock;
use crate::util::pace::Pacer;

/// A healthy session at least this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Shortest wait after an error that retrying will not fix soon.
const PERMANENT_RETRY_FLOOR: Duration = Duration::from_secs(30);

/// Everything one stream task needs, passed in explicitly.
pub struct StreamRecorder {
    pub device: String,
    pub app: String,
    pub name: String,
    pub template: Template,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub cancel: CancellationToken,
    /// Poked after each closed segment so retention can run.
    pub closed: Arc<Notify>,
    /// Paced polling of the source (pulled streams); `None` waits on the source directly
    /// (pushed streams, whose frames arrive through a channel).
    pub pacer: Option<Pacer>,
    /// `storage.alarm` when writing a segment fails, cleared at the next clean close.
    pub write_alarm: Arc<crate::sync::events::alarm::WriteAlarm>,
    /// Where a pipe source lists its commands.
    pub pipes: PipeGroups,
}

/// How a session ended.
enum SessionEnd {
    Cancelled,
    /// The source ended by itself (a file without `loop`).
    SourceEnded,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("writer task failed: {0}")]
    Task(String),
}

impl StreamRecorder {
    /// The supervisor loop of a pulled stream. Returns when cancelled or when the source
    /// ends for good.
    pub async fn run(self, spec: SourceSpec) {
        let status = self.detached_status(&spec.redacted());
        self.run_reporting(spec, status).await
    }

    /// [`StreamRecorder::run`], keeping `status` up to date (state, segment, errors, and the
    /// heartbeat the systemd watchdog depends on: see [`crate::media::health`]).
    pub async fn run_reporting(self, spec: SourceSpec, status: Arc<StreamStatus>) {
        self.run_watched(spec, status, |_, _| {}).await
    }

    /// [`StreamRecorder::run_reporting`], calling `on_failure(n)` after each failed attempt,
    /// `n` counting the attempts failed in a row (record tasks fail at 3).
    pub async fn run_watched(
        self,
        spec: SourceSpec,
        status: Arc<StreamStatus>,
        on_failure: impl Fn(u32, &str) + Send,
    ) {
        let seed = self.clock.wall_ms() as u64 ^ (self.name.len() as u64) << 32;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), seed);
        let mut segmenter = self.segmenter().await;
        info!(source = %spec.redacted(), template = %self.template.name, "stream starting");
        loop {
            let began = self.clock.now();
            status.set_state(StreamState::Connecting, began, self.clock.wall_ms());
            match self.run_once(&spec, &mut segmenter, &status).await {
                Ok(SessionEnd::Cancelled) => break,
                Ok(SessionEnd::SourceEnded) => {
                    info!("source ended; stream stopped");
                    break;
                }
                Err(e) => {
                    if self.clock.now().duration_since(began) >= HEALTHY_RUN {
                        backoff.reset();
                    }
                    let permanent = match &e {
                        SessionError::Source(s) => s.is_permanent(),
                        // A format that cannot hold the stream's codec.
                        SessionError::Sink(SinkError::Refused { .. }) => true,
                        _ => false,
                    };
                    // Retrying soon will not fix a wrong password or an unsupported codec,
                    // and cameras lock accounts after repeated bad logins.
                    let delay = match backoff.next_delay() {
                        d if permanent => d.max(PERMANENT_RETRY_FLOOR),
                        d => d,
                    };
                    if permanent {
                        error!(error = %e, retry_in = ?delay, attempt = backoff.attempts(), "stream failed");
                    } else {
                        warn!(error = %e, retry_in = ?delay, attempt = backoff.attempts(), "stream interrupted");
                    }
                    let now = self.clock.now();
                    status.failed(&e.to_string(), permanent, now, self.clock.wall_ms());
                    on_failure(backoff.attempts(), &e.to_string());
                    // Waiting is legitimate: keep beating so the watchdog knows we are alive.
                    let wait = tokio::time::sleep(delay);
                    tokio::pin!(wait);
                    let mut beat = tokio::time::interval(Duration::from_secs(1));
                    let cancelled = loop {
                        tokio::select! {
                            _ = self.cancel.cancelled() => break true,
                            _ = &mut wait => break false,
                            _ = beat.tick() => status.beat(self.clock.now()),
                        }
                    };
                    if cancelled {
                        break;
                    }
                }
            }
        }
        status.set_state(StreamState::Stopped, self.clock.now(), self.clock.wall_ms());
        info!("stream stopped");
    }

    /// A status nobody reads, for callers that do not report.
    fn detached_status(&self, source: &str) -> Arc<StreamStatus> {
        Arc::new(StreamStatus::new(
            &self.name,
            source,
            self.clock.now(),
            self.clock.wall_ms(),
        ))
    }

    /// Record one session of a source fed from outside (a push), then return: its open
    /// segment is closed when the source ends or the recorder is cancelled.
    pub async fn record_once(self, source: Source) {
        let status = self.detached_status("push");
        self.record_once_reporting(source, status).await
    }

    /// [`StreamRecorder::record_once`], keeping `status` up to date (a push's entry in
    /// `edgerec status`): recording while the source is open, stopped or failed after.
    pub async fn record_once_reporting(self, source: Source, status: Arc<StreamStatus>) {
        let mut segmenter = self.segmenter().await;
        info!(template = %self.template.name, "push recording");
        let (now, wall) = (self.clock.now(), self.clock.wall_ms());
        status.set_state(StreamState::Recording, now, wall);
        match self.record(source, &mut segmenter, &status).await {
            Ok(_) => info!("push ended"),
            Err(e) => {
                warn!(error = %e, "push recording ended with an error");
                let (now, wall) = (self.clock.now(), self.clock.wall_ms());
                status.failed(&e.to_string(), false, now, wall);
            }
        }
        status.set_state(StreamState::Stopped, self.clock.now(), self.clock.wall_ms());
    }

    /// A segmenter continuing the stream's sequence numbers from the index.
    async fn segmenter(&self) -> Segmenter {
        let next_seq = {
            let store = self.store.clone();
            let name = self.name.clone();
            match tokio::task::spawn_blocking(move || store.next_seq(&name)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot read the last sequence number; starting at 0");
                    0
                }
                Err(_) => 0,
            }
        };
        Segmenter::new(
            SegmenterConfig {
                interval: self.template.interval,
                fragment: self.template.fragment,
                ..SegmenterConfig::default()
            },
            StreamIdentity {
                device: self.device.clone(),
                app: self.app.clone(),
                stream: self.name.clone(),
            },
            next_seq,
        )
    }

    async fn run_once(
        &self,
        spec: &SourceSpec,
        seg: &mut Segmenter,
        status: &StreamStatus,
    ) -> Result<SessionEnd, SessionError> {
        let source = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(SessionEnd::Cancelled),
            s = Source::open_with(spec, self.clock.clone(), &self.pipes) => s?,
        };
        info!("source connected");
        let skipped = source.skipped().to_vec();
        // Once per stream, not at every reconnect: only when the list changes.
        if status.set_skipped(skipped.clone()) && !skipped.is_empty() {
            warn!(
                source = %spec.redacted(),
                skipped = %skipped.join(", "),
                "not recording these tracks of the source"
            );
        }
        status.set_state(
            StreamState::Recording,
            self.clock.now(),
            self.clock.wall_ms(),
        );
        self.record(source, seg, status).await
    }

    /// One session: frames from `source` through the segmenter to the writer thread, until
    /// the source ends or fails or the recorder is cancelled; the open segment is closed.
    async fn record(
        &self,
        mut source: Source,
        seg: &mut Segmenter,
        status: &StreamStatus,
    ) -> Result<SessionEnd, SessionError> {
        let sinks = SinkSet::new(store_sinks(&self.store, &self.template));
        let mut writer =
            SinkThread::spawn(&self.name, sinks).map_err(|e| SessionError::Task(e.to_string()))?;
        let mut events = Vec::new();
        let mut pacer = self.pacer.clone();
        let mut gate = crate::sync::upload::DenyGate::default();
        let result = loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    while let Some(frame) = source.take_held() {
                        seg.push(frame, self.clock.wall_ms(), &mut events);
                    }
                    seg.finish(CloseReason::Shutdown, &mut events);
                    break Ok(SessionEnd::Cancelled);
                }
                report = writer.report() => match report {
                    Some(Report::Closed(row)) => {
                        self.on_closed(&row, status);
                        self.write_alarm.closed().await;
                        continue;
                    }
                    // A write failed: close the segment with what it has, then retry.
                    Some(Report::Failed(e)) => {
                        self.write_alarm.failed(&e).await;
                        seg.finish(CloseReason::SourceEnded, &mut events);
                        break Err(e.into());
                    }
                    None => {
                        seg.finish(CloseReason::SourceEnded, &mut events);
                        break Err(SessionError::Task("writer thread ended".into()));
                    }
                },
                n = next_paced(&mut source, pacer.as_mut()) => n,
            };
            match next {
                Ok(Some(frame)) => {
                    status.frame(self.clock.now());
                    // storage.policy = "deny_new" and the disk is full of segments not
                    // uploaded yet: close the open segment and start none until space frees.
                    if gate.denied(&self.store, self.clock.now()) {
                        seg.finish(CloseReason::SourceEnded, &mut events);
                    } else {
                        seg.push(frame, self.clock.wall_ms(), &mut events);
                    }
                    for e in &events {
                        if let SegmentEvent::Start(st) = e {
                            status.segment_started(st.meta.seq, st.meta.start_ms);
                        }
                    }
                }
                Ok(None) => {
                    seg.finish(CloseReason::SourceEnded, &mut events);
                    break Ok(SessionEnd::SourceEnded);
                }
                Err(e) => {
                    seg.finish(CloseReason::SourceEnded, &mut events);
                    break Err(e.into());
                }
            }
            if !events.is_empty() {
                writer.send(std::mem::take(&mut events)).await;
            }
        };
        // Teardown in order: the source first (a pipe's commands get SIGTERM, and SIGKILL
        // after KILL_GRACE if they ignore it: the session ends only once they are gone),
        // then the final close on the writer thread, waiting until it is on disk.
        source.stop().wait().await;
        if !events.is_empty() {
            writer.send(events).await;
        }
        for report in writer.finish().await {
            match report {
                Report::Closed(row) => {
                    self.on_closed(&row, status);
                    self.write_alarm.closed().await;
                }
                Report::Failed(e) => {
                    error!(error = %e, "closing the last segment failed");
                    self.write_alarm.failed(&e).await;
                }
            }
        }
        result
    }

    fn on_closed(&self, row: &SegmentRow, status: &StreamStatus) {
        let path = row.files.first().map(|f| f.path.display().to_string());
        status.segment_closed(path.unwrap_or_default(), self.clock.now());
        info!(
            seq = row.seq,
            duration_ms = row.duration_ms,
            bytes = row.bytes,
            path = %row.files.first().map(|f| f.path.display().to_string()).unwrap_or_default(),
            "segment closed"
        );
        self.closed.notify_one();
    }
}

/// The next frame, without waking for every packet. A camera's TCP segments woke the
/// recorder ~80 times a second per stream, and the scheduler work around those wake-ups
/// cost more than the recording. So while nothing is ready, look again at each tick of the
/// shared [`Pacer`] (50 ms): the socket buffer fills meanwhile and is taken in one go.
/// After a second of nothing, wait on the source itself so its stall timeout applies.
/// Cancel-safe, as [`Source::next`] is.
async fn next_paced(
    source: &mut Source,
    pacer: Option<&mut Pacer>,
) -> Result<Option<Frame>, SourceError> {
    if let Some(pacer) = pacer.filter(|_| source.wants_pacing()) {
        for _ in 0..20 {
            if let Some(r) = source.try_next() {
                return r;
            }
            pacer.tick().await;
        }
    }
    source.next().await
}
