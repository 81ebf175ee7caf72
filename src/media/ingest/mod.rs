//! Push ingest: streams pushed to us (RTSP ANNOUNCE/RECORD, RTMP publish) recorded exactly
//! like pulled cameras.
//!
//! A push server parses its protocol, then asks [`Ingest::publish`] for a [`Publisher`]:
//! that resolves the template (rules on app + stream, then the push-URL record parameters,
//! see [`params`]; rules, templates and stream names are read from the live config at each
//! publish, so a `config.set` applies to the next push), refuses a second publisher of a live stream (unless `ingest.takeover`),
//! and starts the stream's recording session on a [`crate::media::source::channel`] source,
//! through the [`PushRecorder`] the wiring place hands in (the pipeline's recorder factory:
//! push ingest does not know how a recorder is assembled). The server hands frames to
//! [`Publisher::send`]; dropping the publisher ends the push and the session closes its
//! segment cleanly. A reconnect gets a new session, which first waits for the previous one
//! to close its last segment.
//!
//! Memory is bounded: connections ([`Ingest::connection`]), request sizes and the bytes a
//! publisher may be ahead of its recorder ([`IngestLimits`]) are all limited.
//!
//! # Layout
//!
//! - here: [`Ingest`], [`Publisher`], [`PublishRequest`].
//! - [`error`]: [`PublishError`] (refusals, with RTSP status codes) and [`IngestError`].
//! - [`params`]: push-URL record parameters and URL path names (pure).
//! - [`registry`]: which streams are live (pure bookkeeping).
//! - [`audio_only`]: `record_type=audio` (pure).
//! - [`rtsp`]: the RTSP push server; [`depack`]: its RTP depacketizers (pure, fuzzed).
//! - [`rtmp`]: the RTMP publish server.

pub mod audio_only;
pub mod depack;
pub mod error;
pub mod params;
pub mod registry;
pub mod rtmp;
pub mod rtsp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

pub use error::{IngestError, PublishError};
pub use params::RecordParams;

use crate::config::{Config, IngestConfig, IngestUser, Template};
use crate::media::format;
use crate::media::frame::{AudioCodec, Frame, StreamParams, VideoCodec};
use crate::media::health::{StatusBoard, StreamStatus};
use crate::media::source::channel::{self, ChannelSendError, ChannelSender};
use crate::media::source::Source;
use crate::util::clock::SharedClock;
use audio_only::AudioOnly;
use registry::Registry;

/// The push protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtsp,
    Rtmp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Rtsp => "rtsp",
            Protocol::Rtmp => "rtmp",
        }
    }
}

/// A publisher announcing a stream.
#[derive(Clone, Debug)]
pub struct PublishRequest {
    pub protocol: Protocol,
    /// Application name (first path level; empty for `/stream`).
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Raw query string of the push URL (record params), without '?'.
    pub query: String,
    pub peer: SocketAddr,
    /// The codecs of the first video and audio track, when the protocol says them before
    /// the media (RTSP's SDP); `None` when only the first frames tell (RTMP).
    pub codecs: Option<(Option<VideoCodec>, Option<AudioCodec>)>,
}

/// Whether every format of `template` can hold a stream of these codecs (the video is not
/// recorded with `record_type=audio`). `from_url`: the formats came from `record=`.
fn check_codecs(
    template: &Template,
    from_url: bool,
    audio_only: bool,
    video: Option<VideoCodec>,
    audio: Option<AudioCodec>,
) -> Result<(), PublishError> {
    let video = if audio_only { None } else { video };
    for f in &template.formats {
        if let Some(reason) = format::refusal(*f, video, audio) {
            let asked = if from_url {
                "push URL parameter record=".to_owned()
            } else {
                format!("template \"{}\" formats", template.name)
            };
            return Err(PublishError::FormatRefused {
                asked,
                format: f.name().to_owned(),
                reason,
            });
        }
    }
    Ok(())
}

/// Limits every push server enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestLimits {
    /// Open push connections at most, all servers together.
    pub max_connections: usize,
    /// Largest request (RTSP headers + body, RTMP message) in bytes.
    pub max_request_bytes: usize,
    /// Bytes a publisher may be ahead of its recorder.
    pub max_buffered_bytes: usize,
    /// Disconnect a publisher that sends nothing for this long.
    pub session_timeout: Duration,
}

impl From<&IngestConfig> for IngestLimits {
    fn from(c: &IngestConfig) -> Self {
        IngestLimits {
            max_connections: c.max_connections,
            max_request_bytes: c.max_request_bytes,
            max_buffered_bytes: c.max_buffered_bytes,
            session_timeout: c.session_timeout,
        }
    }
}

/// Records one push: the wiring place gives push ingest one (the pipeline's recorder
/// factory), so ingest starts recordings without knowing how a recorder is assembled.
pub trait PushRecorder: Send + Sync {
    /// The recording session of the push of `app`/`stream` with `template`, fed by
    /// `source` and reporting to `status`. It ends, with its last segment closed, when the
    /// source ends.
    fn record(
        &self,
        app: &str,
        stream: &str,
        template: Template,
        source: Source,
        status: Arc<StreamStatus>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// Everything the ingest side needs from the daemon.
pub struct IngestContext {
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// The daemon's shutdown token: cancelling it kicks every publisher and closes every
    /// push's segment.
    pub cancel: CancellationToken,
    /// Starts each push's recording session.
    pub recorder: Arc<dyn PushRecorder>,
    /// `edgerec status`: each push has an entry from publish until its segment is closed.
    pub board: Arc<StatusBoard>,
}

/// What the running recorder adds to an [`IngestContext`] ([`Ingest::new_live`]).
#[derive(Clone, Default)]
pub struct IngestLive {
    /// The config in force now (it changes with `config.set`): each publish resolves its
    /// rules, templates and stream names from it. `None`: the context's config.
    pub config: Option<crate::config::LiveConfig>,
}

/// The shared push-ingest state; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Shared>,
}

struct Shared {
    ctx: IngestContext,
    live: IngestLive,
    limits: IngestLimits,
    registry: Mutex<Registry>,
    connections: Arc<Semaphore>,
    /// Each session holds a clone; [`Ingest::wait`] takes this one and waits until every
    /// clone is gone. `None` once shutting down.
    sessions: Mutex<Option<mpsc::Sender<()>>>,
    sessions_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// One open push connection, counted against `ingest.max_connections` until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
}

impl Ingest {
    pub fn new(ctx: IngestContext) -> Ingest {
        Ingest::new_live(ctx, IngestLive::default())
    }

    /// [`Ingest::new`], following the recorder's live config and raising its alarms.
    /// Limits, listen addresses and publish credentials stay as `ctx.config` has them.
    pub fn new_live(ctx: IngestContext, live: IngestLive) -> Ingest {
        let limits = IngestLimits::from(&ctx.config.ingest);
        let (tx, rx) = mpsc::channel(1);
        Ingest {
            inner: Arc::new(Shared {
                connections: Arc::new(Semaphore::new(limits.max_connections)),
                limits,
                registry: Mutex::new(Registry::default()),
                sessions: Mutex::new(Some(tx)),
                sessions_done: tokio::sync::Mutex::new(rx),
                ctx,
                live,
            }),
        }
    }

    pub fn limits(&self) -> &IngestLimits {
        &self.inner.limits
    }

    /// The `[ingest]` config (addresses, users, takeover).
    pub fn config(&self) -> &IngestConfig {
        &self.inner.ctx.config.ingest
    }

    /// Publish credentials; empty = no authentication.
    pub fn users(&self) -> &[IngestUser] {
        &self.inner.ctx.config.ingest.users
    }

    /// The daemon's shutdown token: servers stop accepting when it is cancelled.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.ctx.cancel
    }

    /// Admit one more connection, or refuse it when `max_connections` are open.
    pub fn connection(&self) -> Result<ConnectionPermit, PublishError> {
        self.inner
            .connections
            .clone()
            .try_acquire_owned()
            .map(|p| ConnectionPermit { _permit: p })
            .map_err(|_| PublishError::TooMany {
                limit: self.inner.limits.max_connections,
            })
    }

    /// Names of the streams being published right now, sorted.
    pub fn live_streams(&self) -> Vec<String> {
        self.registry().live()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A publisher announces app/stream. Resolves the template (rules on app + stream) and
    /// the push-URL record params (`record=fmp4|mp4|flv|aac`, `record_interval=SECONDS` ≤
    /// 7200, `record_type=audio`), refuses formats that cannot hold the codecs the request
    /// names, refuses a second publisher of a live stream (unless `takeover`), and starts
    /// the stream's recording session fed by the returned [`Publisher`]. The codecs are
    /// checked again on the first frame (and at every change of parameters):
    /// [`Publisher::send`] fails with [`IngestError::Refused`]. Must be called inside the
    /// tokio runtime.
    pub fn publish(&self, req: PublishRequest) -> Result<Publisher, PublishError> {
        let (app, stream) = params::split_path(&format!("/{}/{}", req.app, req.stream))?;
        let params = RecordParams::parse(&req.query)?;
        let ctx = &self.inner.ctx;
        let config = self.config_now();
        if config.stream(&stream).is_some() {
            return Err(PublishError::NameTaken { stream });
        }
        let Some(base) = crate::config::rules::resolve(&config, &app, &stream) else {
            return Err(PublishError::NotRecorded { app, stream });
        };
        let template = params.apply(base);
        if template.formats.is_empty() {
            return Err(PublishError::NotRecorded { app, stream });
        }
        let from_url = params.formats.is_some();
        if let Some((video, audio)) = req.codecs {
            check_codecs(&template, from_url, params.audio_only, video, audio)?;
        }
        let check = CodecCheck {
            template: template.clone(),
            from_url,
            last: None,
        };
        let session_guard = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(PublishError::ShuttingDown)?;
        if ctx.cancel.is_cancelled() {
            return Err(PublishError::ShuttingDown);
        }
        let claim = self
            .registry()
            .claim(&stream, self.config().takeover, &ctx.cancel)?;
        let (tx, rx) = channel::channel(self.inner.limits.max_buffered_bytes, claim.kick.clone());
        info!(
            stream = %stream,
            app = %app,
            peer = %req.peer,
            protocol = req.protocol.name(),
            query = %req.query,
            "publisher accepted"
        );
        let ingest = self.clone();
        let previous = claim.previous.clone();
        let done = claim.done.clone();
        let generation = claim.generation;
        let name = stream.clone();
        let span = info_span!("stream", name = %stream, push = req.protocol.name());
        let board = ctx.board.clone();
        let status = board.add(StreamStatus::new(
            &stream,
            &format!("{} push from {}", req.protocol.name(), req.peer),
            ctx.clock.now(),
            ctx.clock.wall_ms(),
        ));
        let reporting = status.clone();
        let recording = ctx.recorder.record(
            &app,
            &stream,
            template,
            Source::from_channel(rx),
            status.clone(),
        );
        tokio::spawn(
            async move {
                if let Some(p) = previous {
                    p.cancelled().await;
                }
                recording.await;
                board.remove(&status);
                ingest.registry().finished(&name, generation);
                done.cancel();
                drop(session_guard);
            }
            .instrument(span),
        );
        Ok(Publisher {
            tx,
            stream,
            kick: claim.kick,
            audio_only: params.audio_only.then(AudioOnly::default),
            check,
            ingest: self.clone(),
            generation,
            status: reporting,
        })
    }

    /// The config rules and templates are resolved from now: the live one when given.
    fn config_now(&self) -> Arc<Config> {
        match &self.inner.live.config {
            Some(live) => live(),
            None => self.inner.ctx.config.clone(),
        }
    }

    /// Wait until every push session has closed its segments (after the shutdown token is
    /// cancelled). New publishers are refused from the moment this is called.
    pub async fn wait(&self) {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut rx = self.inner.sessions_done.lock().await;
        while rx.recv().await.is_some() {}
    }
}

/// Checks the codecs of a push's frames against its formats, once per new
/// [`StreamParams`].
struct CodecCheck {
    template: Template,
    from_url: bool,
    last: Option<Arc<StreamParams>>,
}

impl CodecCheck {
    fn frame(&mut self, params: &Arc<StreamParams>) -> Result<(), PublishError> {
        if self.last.as_ref().is_some_and(|l| Arc::ptr_eq(l, params)) {
            return Ok(());
        }
        let (video, audio) = format::codecs(params);
        check_codecs(&self.template, self.from_url, false, video, audio)?;
        self.last = Some(params.clone());
        Ok(())
    }
}

/// The sending end of one push. Dropping it ends the push: the recorder closes the
/// segment cleanly.
pub struct Publisher {
    tx: ChannelSender,
    stream: String,
    kick: CancellationToken,
    audio_only: Option<AudioOnly>,
    /// The formats' refusals, checked on each new set of stream parameters.
    check: CodecCheck,
    ingest: Ingest,
    generation: u64,
    /// The push's `edgerec status` entry.
    status: Arc<StreamStatus>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stream", &self.stream)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Publisher {
    /// The stream name this publisher records into.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// True when `record_type=audio` asked for audio only (a server may then skip
    /// depacketizing video).
    pub fn audio_only(&self) -> bool {
        self.audio_only.is_some()
    }

    /// Tracks of this push that are not recorded, each with the reason, for `edgerec
    /// status` (the server logs them).
    pub fn set_skipped(&self, skipped: Vec<String>) {
        self.status.set_skipped(skipped);
    }

    /// Hand a frame to the recorder. Never waits. Err when the recorder is too far behind
    /// (bytes buffered over the limit), when another publisher took the stream over, or when
    /// the recorder stopped: the server then closes the publisher with that error.
    pub fn send(&mut self, frame: Frame) -> Result<(), IngestError> {
        if self.kick.is_cancelled() {
            return Err(self.stopped_error());
        }
        let frame = match &mut self.audio_only {
            Some(a) => match a.map(frame) {
                Some(f) => f,
                None => return Ok(()),
            },
            None => frame,
        };
        if let Err(refusal) = self.check.frame(&frame.params) {
            return Err(IngestError::Refused {
                stream: self.stream.clone(),
                refusal,
            });
        }
        self.tx.send(frame).map_err(|e| match e {
            ChannelSendError::Full { buffered, limit } => IngestError::Overrun {
                stream: self.stream.clone(),
                buffered,
                limit,
            },
            ChannelSendError::Closed => self.stopped_error(),
        })
    }

    fn stopped_error(&self) -> IngestError {
        let stream = self.stream.clone();
        if self.ingest.shutdown_token().is_cancelled() || !self.kick.is_cancelled() {
            IngestError::Stopped { stream }
        } else {
            IngestError::TakenOver { stream }
        }
    }

    /// Resolves when this publisher must stop: taken over, or the daemon shuts down.
    /// Servers `select!` on it beside their socket reads.
    pub async fn stopped(&self) {
        self.kick.cancelled().await
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.ingest
            .registry()
            .release(&self.stream, self.generation);
        info!(stream = %self.stream, "publisher gone");
    }
}
