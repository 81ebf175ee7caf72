//! A stream's writer thread: owns the stream's [`SinkSet`] and applies event batches off the
//! async runtime.
//!
//! Why a thread per stream instead of `spawn_blocking` per fragment: every completion of a
//! blocking-pool task wakes the runtime with a write to its eventfd, which doubled the write
//! syscalls per stream (measured with strace). Here the async side hands batches over a
//! bounded std channel (a futex wake, no write) and hears back only when a segment closes or
//! something fails.
//!
//! Memory stays bounded: at most [`QUEUE`] batches (about one fragment each) wait for the
//! disk; beyond that [`SinkThread::try_send`] hands the batch back and the stream task holds
//! it (and reads no more frames) until there is room, so a slow disk backs up into the
//! source's socket instead of into RAM, while the task stays responsive.
//!
//! **Stalls.** The thread marks when it starts and ends each batch ([`Busy`]), so the
//! stream task can tell a slow disk from a stuck one (the storage watchdog decides, see
//! `storage::watchdog`). A stream that gives up on a stuck writer [`detach`](SinkThread::detach)es
//! it: the thread applies nothing more once its stuck call returns, and leaves the open
//! segment (cut back to its last good fragment by the store) to be closed later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::{SinkError, SinkSet};
use crate::media::segment::SegmentEvent;
use crate::storage::store::SegmentRow;
use crate::util::busy::Busy;
use crate::util::clock::SharedClock;

/// Batches that may wait for the disk.
pub const QUEUE: usize = 4;
/// Stack of a writer thread. It encodes and writes, nothing deep, but making the
/// progressive MP4 copies through a buffer, and debug builds use far more stack than
/// release ones: 256 KiB overflowed there. Only the pages touched count toward RSS.
const STACK: usize = 1024 * 1024;

/// What the writer thread tells the stream task.
#[derive(Debug)]
pub enum Report {
    Closed(Box<SegmentRow>),
    Failed(SinkError),
    /// A batch went through after a failure (or, for a writer started `degraded`, the
    /// first batch did): the stream's storage works again. Sent once per failure streak.
    Healthy,
}

/// Handle of a running writer thread.
pub struct SinkThread {
    tx: Option<SyncSender<Vec<SegmentEvent>>>,
    reports: UnboundedReceiver<Report>,
    handle: Option<JoinHandle<()>>,
    busy: Arc<Busy>,
    detached: Arc<AtomicBool>,
}

/// A writer given up on: its thread ends once its stuck call returns.
pub struct Detached(JoinHandle<()>);

impl Detached {
    /// A thread to wait for (tests).
    pub fn from_handle(h: JoinHandle<()>) -> Detached {
        Detached(h)
    }

    /// Whether the thread has ended (its stuck call returned).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl SinkThread {
    /// Start the thread (named `rec-<stream>`) that owns `set`. It logs in the caller's
    /// tracing span (the stream's), so its lines name the stream like the task's do.
    /// `degraded`: the stream's storage failed before, so the first batch that goes through
    /// is reported ([`Report::Healthy`]).
    pub fn spawn(
        stream: &str,
        mut set: SinkSet,
        clock: SharedClock,
        degraded: bool,
    ) -> std::io::Result<SinkThread> {
        let (tx, rx) = sync_channel::<Vec<SegmentEvent>>(QUEUE);
        let (rtx, reports) = unbounded_channel();
        let span = tracing::Span::current();
        let busy = Arc::new(Busy::default());
        let detached = Arc::new(AtomicBool::new(false));
        let (b, d) = (busy.clone(), detached.clone());
        let handle = std::thread::Builder::new()
            .name(format!("rec-{stream}"))
            .stack_size(STACK)
            .spawn(move || {
                let _span = span.enter();
                let mut degraded = degraded;
                for batch in rx {
                    if d.load(Ordering::SeqCst) {
                        continue;
                    }
                    b.start(batch_kind(&batch), clock.now());
                    let applied = set.apply(batch);
                    b.done();
                    for row in applied.closed {
                        let _ = rtx.send(Report::Closed(Box::new(row)));
                    }
                    match applied.error {
                        Some(e) => {
                            degraded = true;
                            let _ = rtx.send(Report::Failed(e));
                        }
                        None if applied.wrote && std::mem::take(&mut degraded) => {
                            let _ = rtx.send(Report::Healthy);
                        }
                        None => {}
                    }
                }
                // The stream task is gone (or gave up on us): whatever is still open is
                // left to be closed later (or removed if it has no fragment).
                if set.is_open() {
                    set.abort();
                }
            })?;
        Ok(SinkThread {
            tx: Some(tx),
            reports,
            handle: Some(handle),
            busy,
            detached,
        })
    }

    /// Queue a batch of events, or hand it back when [`QUEUE`] batches are already
    /// waiting. A batch for a thread that is gone is dropped.
    pub fn try_send(&mut self, batch: Vec<SegmentEvent>) -> Result<(), Vec<SegmentEvent>> {
        let Some(tx) = &self.tx else { return Ok(()) };
        match tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(b)) => Err(b),
            // The thread is gone (it only ends when we drop the sender, or panics).
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Queue a batch of events, waiting while [`QUEUE`] batches are already waiting.
    pub async fn send(&mut self, mut batch: Vec<SegmentEvent>) {
        while let Err(b) = self.try_send(batch) {
            batch = b;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the thread is doing and since when, if it is inside a batch.
    pub fn busy(&self) -> Option<(&'static str, Instant)> {
        self.busy.current()
    }

    /// Give up on the thread: it applies nothing more (what is queued is dropped) and ends
    /// once the call it is in returns, leaving its open segment to be closed later.
    pub fn detach(mut self) -> Detached {
        self.detached.store(true, Ordering::SeqCst);
        self.tx = None;
        Detached(self.handle.take().expect("a running writer has its handle"))
    }

    /// The next report, waiting for it. `None` once the thread has ended.
    pub async fn report(&mut self) -> Option<Report> {
        self.reports.recv().await
    }

    /// Let the thread apply everything queued, wait for it to end, and return the reports
    /// it left.
    pub async fn finish(mut self) -> Vec<Report> {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let mut out = Vec::new();
        while let Ok(r) = self.reports.try_recv() {
            out.push(r);
        }
        out
    }
}

/// What a batch mostly is, for the busy mark: a close (with its progressive copy) can take
/// longer than a fragment.
fn batch_kind(batch: &[SegmentEvent]) -> &'static str {
    if batch.iter().any(|e| matches!(e, SegmentEvent::Close(_))) {
        "close"
    } else if batch.iter().any(|e| matches!(e, SegmentEvent::Start(_))) {
        "start"
    } else {
        "fragment"
    }
}
