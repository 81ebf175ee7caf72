//! One supervised task per stream: source → segmenter → encoder → store.
//!
//! [`StreamRecorder::run`] is the supervisor: it calls `run_once` (one source session) in a
//! loop with capped exponential backoff until cancelled. A session ends when the source
//! fails, ends, or the recorder is cancelled; its open segment is always closed cleanly first.
//! All file I/O (write, fdatasync, close protocol) runs on tokio's blocking pool, never on
//! the async workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::clock::SharedClock;
use crate::config::Template;
use crate::format::{fmp4, Format};
use crate::naming::{self, NameVars};
use crate::segment::{
    CloseReason, SegmentEvent, SegmentStart, Segmenter, SegmenterConfig, StreamIdentity,
};
use crate::source::{Source, SourceError, SourceSpec};
use crate::store::{SegmentWriter, Store, StoreError};

/// A healthy session at least this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Everything one stream task needs, passed in explicitly.
pub struct StreamRecorder {
    pub device: String,
    pub app: String,
    pub name: String,
    pub spec: SourceSpec,
    pub template: Template,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub cancel: CancellationToken,
    /// Poked after each closed segment so retention can run.
    pub closed: Arc<Notify>,
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
    Store(#[from] StoreError),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("naming template: {0}")]
    Naming(String),
    #[error("store task failed: {0}")]
    Task(String),
}

/// The segment being written.
struct Current {
    start: Arc<SegmentStart>,
    writer: SegmentWriter,
}

impl StreamRecorder {
    /// The supervisor loop. Returns when cancelled or when the source ends for good.
    pub async fn run(self) {
        let seed = self.clock.wall_ms() as u64 ^ (self.name.len() as u64) << 32;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), seed);
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
        let mut segmenter = Segmenter::new(
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
        info!(source = %self.spec.redacted(), template = %self.template.name, "stream starting");
        loop {
            let began = self.clock.now();
            match self.run_once(&mut segmenter).await {
                Ok(SessionEnd::Cancelled) => break,
                Ok(SessionEnd::SourceEnded) => {
                    info!("source ended; stream stopped");
                    break;
                }
                Err(e) => {
                    if self.clock.now().duration_since(began) >= HEALTHY_RUN {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    let permanent = matches!(&e, SessionError::Source(s) if s.is_permanent());
                    if permanent {
                        error!(error = %e, retry_in = ?delay, attempt = backoff.attempts(), "stream failed");
                    } else {
                        warn!(error = %e, retry_in = ?delay, attempt = backoff.attempts(), "stream interrupted");
                    }
                    tokio::select! {
                        _ = self.cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        info!("stream stopped");
    }

    async fn run_once(&self, seg: &mut Segmenter) -> Result<SessionEnd, SessionError> {
        let mut source = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(SessionEnd::Cancelled),
            s = Source::open(&self.spec, self.clock.clone()) => s?,
        };
        info!("source connected");
        let mut current: Option<Current> = None;
        let mut events = Vec::with_capacity(8);
        let result = loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    seg.finish(CloseReason::Shutdown, &mut events);
                    break Ok(SessionEnd::Cancelled);
                }
                n = source.next() => n,
            };
            match next {
                Ok(Some(frame)) => seg.push(frame, self.clock.wall_ms(), &mut events),
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
                if let Err(e) = self.apply(&mut events, &mut current).await {
                    seg.finish(CloseReason::SourceEnded, &mut events);
                    let _ = self.apply(&mut events, &mut current).await;
                    break Err(e);
                }
            }
        };
        // Close whatever the final events say (and abandon a writer they did not close).
        if let Err(e) = self.apply(&mut events, &mut current).await {
            error!(error = %e, "closing the last segment failed");
        }
        if let Some(cur) = current.take() {
            let _ = blocking(move || cur.writer.abandon()).await;
        }
        result
    }

    /// Carry out segment events: encode and hand bytes to the store.
    async fn apply(
        &self,
        events: &mut Vec<SegmentEvent>,
        current: &mut Option<Current>,
    ) -> Result<(), SessionError> {
        for ev in events.drain(..) {
            match ev {
                SegmentEvent::Start(start) => {
                    if let Some(old) = current.take() {
                        // Should not happen: the segmenter always closes first.
                        let _ = blocking(move || old.writer.abandon()).await;
                    }
                    let rel = self.name_for(&start)?;
                    let init = fmp4::encode_init(&start)
                        .map_err(|e| SessionError::Encode(e.to_string()))?;
                    let store = self.store.clone();
                    let formats: Vec<Format> = self.template.formats.clone();
                    let meta = start.meta.clone();
                    let writer =
                        blocking(move || store.begin(&meta, &rel, &formats, &init)).await?;
                    debug!(seq = start.meta.seq, "segment started");
                    *current = Some(Current {
                        start: Arc::new(start),
                        writer,
                    });
                }
                SegmentEvent::Fragment(frag) => {
                    let Some(mut cur) = current.take() else {
                        continue;
                    };
                    let start = cur.start.clone();
                    // The writer comes back even when the append failed, so the segment
                    // can still be closed with the fragments it has.
                    let (cur, res) = tokio::task::spawn_blocking(move || {
                        let bytes = fmp4::encode_fragment(&start, &frag);
                        let res = cur.writer.append(&bytes);
                        (cur, res)
                    })
                    .await
                    .map_err(|e| SessionError::Task(e.to_string()))?;
                    *current = Some(cur);
                    res?;
                }
                SegmentEvent::Close(close) => {
                    let Some(cur) = current.take() else {
                        continue;
                    };
                    let row = blocking(move || cur.writer.finish(&close)).await?;
                    if let Some(row) = row {
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
            }
        }
        Ok(())
    }

    fn name_for(&self, start: &SegmentStart) -> Result<PathBuf, SessionError> {
        naming::expand(
            &self.template.naming,
            &NameVars {
                stream: &self.name,
                app: &self.app,
                seq: start.meta.seq,
                start_ms: start.meta.start_ms,
            },
        )
        .map_err(SessionError::Naming)
    }
}

/// Run blocking store work off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, SessionError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(SessionError::Store),
        Err(e) => Err(SessionError::Task(e.to_string())),
    }
}
