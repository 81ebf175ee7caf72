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
//! disk; beyond that [`SinkThread::send`] waits, so a stalled disk backs up into the source's
//! socket instead of into RAM.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::{SinkError, SinkSet};
use crate::media::segment::SegmentEvent;
use crate::storage::store::SegmentRow;

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
}

/// Handle of a running writer thread.
pub struct SinkThread {
    tx: Option<SyncSender<Vec<SegmentEvent>>>,
    reports: UnboundedReceiver<Report>,
    handle: Option<JoinHandle<()>>,
}

impl SinkThread {
    /// Start the thread (named `rec-<stream>`) that owns `set`. It logs in the caller's
    /// tracing span (the stream's), so its lines name the stream like the task's do.
    pub fn spawn(stream: &str, mut set: SinkSet) -> std::io::Result<SinkThread> {
        let (tx, rx) = sync_channel::<Vec<SegmentEvent>>(QUEUE);
        let (rtx, reports) = unbounded_channel();
        let span = tracing::Span::current();
        let handle = std::thread::Builder::new()
            .name(format!("rec-{stream}"))
            .stack_size(STACK)
            .spawn(move || {
                let _span = span.enter();
                for batch in rx {
                    let applied = set.apply(batch);
                    for row in applied.closed {
                        let _ = rtx.send(Report::Closed(Box::new(row)));
                    }
                    if let Some(e) = applied.error {
                        let _ = rtx.send(Report::Failed(e));
                    }
                }
                // The stream task is gone: whatever is still open is left to recovery
                // (or removed if it has no fragment).
                if set.is_open() {
                    set.abort();
                }
            })?;
        Ok(SinkThread {
            tx: Some(tx),
            reports,
            handle: Some(handle),
        })
    }

    /// Queue a batch of events. Waits while [`QUEUE`] batches are already waiting.
    pub async fn send(&mut self, mut batch: Vec<SegmentEvent>) {
        let Some(tx) = &self.tx else { return };
        loop {
            match tx.try_send(batch) {
                Ok(()) => return,
                Err(TrySendError::Full(b)) => {
                    batch = b;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // The thread is gone (it only ends when we drop the sender, or panics).
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
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
