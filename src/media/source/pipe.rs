use std::io::Read;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::info;

use super::adts::{AdtsConfig, AdtsSplitter};
use super::annexb::{detect_codec, AuAssembler, PocCounter, StartCodes, VIDEO_TIMESCALE};
use super::pipe_child::{spawn, Keeper};
pub use super::pipe_child::{PipeGroups, KILL_GRACE, STDERR_LINES_PER_WINDOW};
use super::pipe_time::{Pacer, PtsFromOrder};
use super::SourceError;
use crate::media::frame::{AudioCodec, AudioParams, Frame, StreamParams, TrackParams, VideoParams};
use crate::util::clock::SharedClock;
use crate::util::redact::redact_url;

/// Nothing from the command for this long is a stall: the session ends and is retried.
pub const STALL: Duration = Duration::from_secs(10);
/// How long to wait for the audio command's first frame before giving up.
const AUDIO_START: Duration = Duration::from_secs(10);

/// What the reader threads hand to the async side.
enum Piece {
    Video {
        dts: i64,
        pts: i64,
        key: bool,
        data: Bytes,
        params: Arc<VideoParams>,
    },
    Audio {
        cfg: AdtsConfig,
        data: Bytes,
        arrival: Duration,
    },
    Failed(SourceError),
}

/// A running pipe source. Dropping it stops the commands in the background; [`stop`]
/// (`PipeSource::stop`) lets the caller wait until they are gone.
pub struct PipeSource {
    rx: mpsc::Receiver<Piece>,
    video_keeper: Keeper,
    audio_keeper: Option<Keeper>,
    shown: String,
    want_audio: bool,
    opened: Instant,
    clock: SharedClock,
    started: bool,
    video: Option<Arc<VideoParams>>,
    audio: Option<AdtsConfig>,
    params: Arc<StreamParams>,
    audio_next: Option<i64>,
}

impl PipeSource {
    /// Starts the command(s), registered in `groups`. Fails only when `sh` cannot be
    /// started.
    pub fn open(
        command: &str,
        fps: Option<f64>,
        audio: Option<&str>,
        clock: SharedClock,
        groups: &PipeGroups,
    ) -> Result<PipeSource, SourceError> {
        let (tx, rx) = mpsc::channel(64);
        let opened = clock.now();
        let ctx = |tx: &mpsc::Sender<Piece>| Ctx {
            tx: tx.clone(),
            clock: clock.clone(),
            opened,
        };
        let video_ctx = ctx(&tx);
        let video_keeper = spawn(
            command,
            Box::new(move |out| video_reader(out, video_ctx, fps)),
            on_exit(command, &tx),
            groups,
        )?;
        let audio_keeper = match audio {
            Some(cmd) => {
                let audio_ctx = ctx(&tx);
                Some(spawn(
                    cmd,
                    Box::new(move |out| audio_reader(out, audio_ctx)),
                    on_exit(cmd, &tx),
                    groups,
                )?)
            }
            None => None,
        };
        Ok(PipeSource {
            rx,
            video_keeper,
            audio_keeper,
            shown: redact_url(command),
            want_audio: audio.is_some(),
            opened,
            clock,
            started: false,
            video: None,
            audio: None,
            params: Arc::new(StreamParams::default()),
            audio_next: None,
        })
    }

    /// Stop the commands (SIGTERM to each group, SIGKILL after [`KILL_GRACE`]); the
    /// returned threads end once every process is reaped.
    pub fn stop(self) -> Vec<JoinHandle<()>> {
        let mut keepers = vec![self.video_keeper];
        keepers.extend(self.audio_keeper);
        keepers.into_iter().filter_map(Keeper::stop).collect()
    }

    /// The next frame. Cancel-safe: only the channel receive awaits.
    pub async fn next(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            let piece = match tokio::time::timeout(STALL, self.rx.recv()).await {
                Err(_) => {
                    return Err(SourceError::Timeout {
                        url: format!("pipe:{}", self.shown),
                        during: "reading the command's output",
                        secs: STALL.as_secs(),
                    })
                }
                Ok(None) => return Err(self.failed("its output ended")),
                Ok(Some(p)) => p,
            };
            match piece {
                Piece::Failed(e) => return Err(e),
                Piece::Audio { cfg, data, arrival } => {
                    if self.audio.as_ref() != Some(&cfg) {
                        self.audio = Some(cfg);
                        self.audio_next = None;
                        self.rebuild();
                    }
                    if !self.started {
                        continue;
                    }
                    let cfg = self.audio.as_ref().expect("set above");
                    let rate = i64::from(cfg.sample_rate);
                    let at = (arrival.as_secs_f64() * rate as f64) as i64;
                    // Count samples; re-anchor when the count drifts a second from arrival.
                    let dts = match self.audio_next {
                        Some(n) if (n - at).abs() < rate => n,
                        _ => at,
                    };
                    self.audio_next = Some(dts + 1024);
                    return Ok(Some(Frame {
                        params: self.params.clone(),
                        track: 1,
                        dts,
                        pts: dts,
                        keyframe: true,
                        data,
                    }));
                }
                Piece::Video {
                    dts,
                    pts,
                    key,
                    data,
                    params,
                } => {
                    if !self.video.as_ref().is_some_and(|v| Arc::ptr_eq(v, &params)) {
                        self.video = Some(params);
                        self.rebuild();
                    }
                    if !self.started {
                        if self.want_audio && self.audio.is_none() {
                            let waited = self.clock.now().duration_since(self.opened);
                            if waited > AUDIO_START {
                                return Err(self.failed(
                                    "the audio command wrote no ADTS AAC frame (check audio_pipe)",
                                ));
                            }
                            continue;
                        }
                        if !key {
                            continue;
                        }
                        self.started = true;
                        info!(codec = ?self.video.as_ref().map(|v| v.codec), "pipe: first key frame");
                    }
                    return Ok(Some(Frame {
                        params: self.params.clone(),
                        track: 0,
                        dts,
                        pts,
                        keyframe: key,
                        data,
                    }));
                }
            }
        }
    }

    fn failed(&self, reason: &str) -> SourceError {
        SourceError::Pipe {
            command: self.shown.clone(),
            reason: reason.to_string(),
        }
    }

    fn rebuild(&mut self) {
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            tracks.push(TrackParams::Video((**v).clone()));
        }
        if let (Some(a), true) = (&self.audio, self.video.is_some()) {
            tracks.push(TrackParams::Audio(AudioParams {
                codec: AudioCodec::Aac,
                sample_rate: a.sample_rate,
                channels: a.channels,
                config: Bytes::copy_from_slice(&a.asc),
                timescale: a.sample_rate,
                frame_samples: 1024,
            }));
        }
        self.params = Arc::new(StreamParams { tracks });
    }
}

/// What a reader thread needs.
struct Ctx {
    tx: mpsc::Sender<Piece>,
    clock: SharedClock,
    opened: Instant,
}

/// Reports a command's own exit to the source, as an error of this session.
fn on_exit(command: &str, tx: &mpsc::Sender<Piece>) -> super::pipe_child::OnExit {
    let (command, tx) = (redact_url(command), tx.clone());
    Box::new(move |reason| {
        let _ = tx.blocking_send(Piece::Failed(SourceError::Pipe { command, reason }));
    })
}

impl Ctx {
    fn since(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.opened)
    }
}

fn video_reader(out: Box<dyn Read + Send>, ctx: Ctx, fps: Option<f64>) {
    let mut out = out;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sc = StartCodes::default();
    let mut nals = Vec::new();
    let mut asm: Option<AuAssembler> = None;
    let mut pacer = Pacer::new(VIDEO_TIMESCALE, fps);
    let mut poc = PocCounter::default();
    let mut order = PtsFromOrder::default();
    let mut ready = Vec::new();
    let mut eof = false;
    while !eof {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => {
                // The command ended: hand out what it completed.
                eof = true;
                nals.extend(sc.finish());
            }
            Ok(n) => sc.push(&buf[..n], &mut nals),
        }
        let mut aus: Vec<_> = Vec::new();
        for nal in nals.drain(..) {
            if asm.is_none() {
                asm = detect_codec(&nal).map(AuAssembler::new);
            }
            aus.extend(asm.as_mut().and_then(|a| a.push(nal)));
        }
        if eof {
            aus.extend(asm.as_mut().and_then(AuAssembler::finish));
        }
        for au in aus {
            let Some(params) = au.params.clone() else {
                continue;
            };
            let dts = pacer.next(ctx.since());
            order.push(poc.key(&au), dts, (au, params), &mut ready);
        }
        if eof {
            order.drain(&mut ready);
        }
        for (dts, pts, (au, params)) in ready.drain(..) {
            let piece = Piece::Video {
                dts,
                pts,
                key: au.key,
                data: au.data,
                params,
            };
            if ctx.tx.blocking_send(piece).is_err() {
                return;
            }
        }
    }
}

fn audio_reader(out: Box<dyn Read + Send>, ctx: Ctx) {
    let mut out = out;
    let mut buf = vec![0u8; 16 * 1024];
    let mut split = AdtsSplitter::default();
    let mut frames = Vec::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        split.push(&buf[..n], &mut frames);
        let arrival = ctx.since();
        let count = frames.len() as u32;
        for (i, (cfg, data)) in frames.drain(..).enumerate() {
            // Frames that came in one read arrived together; spread them back in time.
            let back = Duration::from_secs_f64(
                f64::from(1024 * (count - 1 - i as u32)) / f64::from(cfg.sample_rate),
            );
            let piece = Piece::Audio {
                cfg,
                data,
                arrival: arrival.saturating_sub(back),
            };
            if ctx.tx.blocking_send(piece).is_err() {
                return;
            }
        }
    }
}
