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
//!
//! **Storage faults** do not end a session (see [`crate::storage::watchdog`] for what is
//! detected and reported, [`crate::pipeline::fault`] for the waits):
//! - a failed write, fsync, rename or create: the segment is closed at its last good
//!   fragment (the store refuses further appends to it and cuts the file back), frames are
//!   dropped, and recording is tried again at the next key frame after a wait (1 s, growing
//!   to 10 s). When a try gets a batch through, the alarm clears, and segments the fault
//!   left unfinished (a close that failed too) are closed then ([`Store::close_unfinished`]);
//! - a writer inside one batch for `storage.stall_timeout`: the stream gives up on it
//!   (it ends once its stuck call returns, and its segment is closed as above), starts a
//!   fresh writer and tries again only after the stuck call has returned. The stream task
//!   never waits on the disk itself, so it keeps its source and answers shutdown.

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
use crate::pipeline::fault::StorageFault;
use crate::storage::store::{SegmentRow, Store};
use crate::storage::watchdog::health::StorageHealth;
use crate::util::backoff::Backoff;
use crate::util::clock::SharedClock;
use crate::util::clockwatch::ClockWatch;
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
    /// The storage watchdog: write failures and stalls are reported to it, and it says
    /// when a busy writer counts as stalled.
    pub health: Arc<StorageHealth>,
    /// `storage.policy = "deny_new"`: set while no new segment may start.
    pub deny: crate::sync::upload::DenyFlag,
    /// Where a pipe source lists its commands.
    pub pipes: PipeGroups,
    /// The watched clock (see [`crate::pipeline::factory::RecorderFactory::time`]).
    pub time: Option<Arc<ClockWatch>>,
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

    /// A segmenter continuing the stream's sequence numbers from the index, and starting no
    /// earlier than the end of the stream's last segment of this boot (a restart after a
    /// backward clock step does not overlap it).
    async fn segmenter(&self) -> Segmenter {
        let (next_seq, last_end) = {
            let store = self.store.clone();
            let name = self.name.clone();
            let boot = self.time.as_ref().map(|t| t.boot_id().to_string());
            let read = move || -> Result<(u64, Option<i64>), crate::storage::store::StoreError> {
                let last_end = match boot {
                    Some(b) => store.last_end_in_boot(&name, &b)?,
                    None => None,
                };
                Ok((store.next_seq(&name)?, last_end))
            };
            match tokio::task::spawn_blocking(read).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot read the last sequence number; starting at 0");
                    (0, None)
                }
                Err(_) => (0, None),
            }
        };
        let mut seg = Segmenter::new(
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
        );
        if let Some(end) = last_end {
            seg.not_before(end);
        }
        seg
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
    /// Storage faults are lived through inside the session (see the module docs).
    async fn record(
        &self,
        mut source: Source,
        seg: &mut Segmenter,
        status: &StreamStatus,
    ) -> Result<SessionEnd, SessionError> {
        let mut writer = self.writer(self.health.faulted(&self.name))?;
        let mut events = Vec::new();
        // A batch the writer had no room for: no frame is read until it is handed over.
        let mut held: Option<Vec<SegmentEvent>> = None;
        let mut fault: Option<StorageFault> = None;
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pacer = self.pacer.clone();
        let mut gate = self.deny.gate();
        let mut corrections = self.time.as_ref().map_or((0, 0), |t| t.corrections());
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
                        continue;
                    }
                    Some(Report::Healthy) => {
                        self.storage_healthy(&mut fault);
                        continue;
                    }
                    // A write failed: close the segment at its last good fragment, then
                    // wait for the storage (a storage fault), or retry the session.
                    Some(Report::Failed(e)) => {
                        let SinkError::Store(store_err) = &e else {
                            seg.finish(CloseReason::SourceEnded, &mut events);
                            break Err(e.into());
                        };
                        if !self.health.write_failed(&self.name, store_err) {
                            seg.finish(CloseReason::SourceEnded, &mut events);
                            break Err(e.into());
                        }
                        let now = self.clock.now();
                        match &mut fault {
                            Some(f) => f.failed_again(now),
                            None => {
                                warn!(error = %e, "storage fault: closing the segment at its last good fragment; recording resumes when the storage works again");
                                fault = Some(StorageFault::new(now, self.seed()));
                            }
                        }
                        seg.finish(CloseReason::SourceEnded, &mut events);
                        self.hand_over(&mut writer, &mut events, &mut held);
                        continue;
                    }
                    None => {
                        seg.finish(CloseReason::SourceEnded, &mut events);
                        break Err(SessionError::Task("writer thread ended".into()));
                    }
                },
                _ = watch.tick() => {
                    let now = self.clock.now();
                    if fault.is_some() || held.is_some() {
                        // Waiting for the disk is legitimate: the storage watchdog, not
                        // the hung-stream one, watches the writer.
                        status.beat(now);
                    }
                    let busy = writer.busy();
                    let (op, since) = busy.map_or(("", None), |(op, t)| (op, Some(t)));
                    if self.health.writer_busy(&self.name, op, since) {
                        warn!(op, stall_timeout = ?self.health.stall_timeout(), "storage stalled: giving up on this writer; its segment is closed once the stuck call returns");
                        let fresh = self.writer(true)?;
                        let stuck = std::mem::replace(&mut writer, fresh).detach();
                        held = None;
                        events.clear();
                        // The new writer has no open segment: start the next one afresh.
                        seg.finish(CloseReason::SourceEnded, &mut events);
                        events.clear();
                        fault
                            .get_or_insert_with(|| StorageFault::new(now, self.seed()))
                            .stalled(stuck, now);
                    }
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if held.is_some() => {
                    if let Some(b) = held.take() {
                        if let Err(b) = writer.try_send(b) {
                            held = Some(b);
                        }
                    }
                    continue;
                }
                n = next_paced(&mut source, pacer.as_mut()), if held.is_none() => n,
            };
            match next {
                Ok(Some(frame)) => {
                    let now = self.clock.now();
                    status.frame(now);
                    if fault.as_mut().is_some_and(|f| !f.may_try(now)) {
                        // Storage fault: drop frames until the next try.
                    } else if gate.denied() {
                        // storage.policy = "deny_new" and the disk is full of segments not
                        // uploaded yet: close the open segment and start none until space
                        // frees.
                        seg.finish(CloseReason::SourceEnded, &mut events);
                    } else {
                        // This read is also where a clock step is seen (see
                        // crate::util::clockwatch); a correction moves the open segment.
                        let wall = self.clock.wall_ms();
                        if let Some(t) = &self.time {
                            let now = t.corrections();
                            if now.0 != corrections.0 {
                                seg.shift_time(now.1 - corrections.1);
                                corrections = now;
                            }
                        }
                        seg.push(frame, wall, &mut events);
                    }
                    for e in &mut events {
                        if let SegmentEvent::Start(st) = e {
                            if let Some(t) = &self.time {
                                st.meta.time_quality = Some(t.quality_now());
                                st.meta.boot = Some(t.boot_time_now());
                            }
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
            self.hand_over(&mut writer, &mut events, &mut held);
        };
        // Teardown in order: the source first (a pipe's commands get SIGTERM, and SIGKILL
        // after KILL_GRACE if they ignore it: the session ends only once they are gone),
        // then the final close on the writer thread, waiting until it is on disk.
        source.stop().wait().await;
        if let Some(b) = held.take() {
            writer.send(b).await;
        }
        if !events.is_empty() {
            writer.send(events).await;
        }
        for report in writer.finish().await {
            match report {
                Report::Closed(row) => self.on_closed(&row, status),
                Report::Healthy => self.storage_healthy(&mut fault),
                Report::Failed(e) => {
                    error!(error = %e, "closing the last segment failed");
                    if let SinkError::Store(se) = &e {
                        self.health.write_failed(&self.name, se);
                    }
                }
            }
        }
        if result.is_ok() && self.health.faulted(&self.name) {
            // Stopped for good or for now: nobody is left to clear the stream's alarms.
            self.health.stream_gone(&self.name);
        }
        result
    }

    /// A writer thread for this stream (`degraded`: its storage failed before).
    fn writer(&self, degraded: bool) -> Result<SinkThread, SessionError> {
        let sinks = SinkSet::new(store_sinks(&self.store, &self.template));
        SinkThread::spawn(&self.name, sinks, self.clock.clone(), degraded)
            .map_err(|e| SessionError::Task(e.to_string()))
    }

    /// Queue `events` on the writer, or hold them while it has no room.
    fn hand_over(
        &self,
        writer: &mut SinkThread,
        events: &mut Vec<SegmentEvent>,
        held: &mut Option<Vec<SegmentEvent>>,
    ) {
        if events.is_empty() {
            return;
        }
        let mut batch = std::mem::take(events);
        if let Some(mut h) = held.take() {
            h.append(&mut batch);
            batch = h;
        }
        if let Err(b) = writer.try_send(batch) {
            *held = Some(b);
        }
    }

    /// The storage took a batch again: clear the fault, and close what it left unfinished.
    fn storage_healthy(&self, fault: &mut Option<StorageFault>) {
        if fault.take().is_some() || self.health.faulted(&self.name) {
            info!("storage works again; recording resumed");
        }
        self.health.wrote(&self.name);
        crate::pipeline::fault::close_unfinished(
            self.store.clone(),
            &self.name,
            self.clock.wall_ms(),
            self.closed.clone(),
        );
    }

    fn seed(&self) -> u64 {
        self.clock.wall_ms() as u64 ^ (self.name.len() as u64) << 32
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
