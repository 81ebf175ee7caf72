//! The pipe "camera": a command that writes Annex-B H.264/H.265 to its stdout, such as
//! `rpicam-vid -t 0 --codec h264 --inline -o -` on a Raspberry Pi or a GStreamer pipeline
//! ending in `fdsink` on a Jetson, optionally with a second command writing ADTS AAC.
//!
//! Each command runs as `sh -c COMMAND` in its own process group, so the whole pipeline
//! (shell, encoder, any children) is signalled together. Per command, three threads:
//!
//! - a reader turns stdout into access units with the pure parsers ([`super::annexb`],
//!   [`super::adts`]) and stamps them by arrival time on the injected clock
//!   ([`super::pipe_time`]);
//! - a stderr reader logs the command's messages line by line, at most
//!   [`STDERR_LINES_PER_WINDOW`] per 10 s, and keeps the last one for error messages;
//! - a keeper owns the child: it reports the exit (the recorder's supervisor then restarts
//!   the command with backoff) and, when the source is dropped, sends SIGTERM to the group,
//!   then SIGKILL after [`KILL_GRACE`], and reaps it.
//!
//! Frames start at the first video key frame with complete parameter sets (and, when an
//! audio command is set, once its first ADTS frame is known). Video and audio timestamps
//! count from the moment the source was opened, so the tracks stay in sync.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn, Span};

use super::adts::{AdtsConfig, AdtsSplitter};
use super::annexb::{detect_codec, AuAssembler, PocCounter, StartCodes, VIDEO_TIMESCALE};
use super::pipe_time::{Pacer, PtsFromOrder};
use super::SourceError;
use crate::clock::SharedClock;
use crate::frame::{AudioCodec, AudioParams, Frame, StreamParams, TrackParams, VideoParams};
use crate::redact::redact_url;

/// Time between SIGTERM and SIGKILL when the source is dropped.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Nothing from the command for this long is a stall: the session ends and is retried.
pub const STALL: Duration = Duration::from_secs(10);
/// How long to wait for the audio command's first frame before giving up.
const AUDIO_START: Duration = Duration::from_secs(10);
/// Stderr lines logged per 10 s window; the rest are counted.
pub const STDERR_LINES_PER_WINDOW: u32 = 20;

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

/// A running pipe source. Dropping it stops the commands.
pub struct PipeSource {
    rx: mpsc::Receiver<Piece>,
    _video: Keeper,
    _audio: Option<Keeper>,
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
    /// Starts the command(s). Fails only when `sh` cannot be started.
    pub fn open(
        command: &str,
        fps: Option<f64>,
        audio: Option<&str>,
        clock: SharedClock,
    ) -> Result<PipeSource, SourceError> {
        let (tx, rx) = mpsc::channel(64);
        let opened = clock.now();
        let video = spawn(
            command,
            &tx,
            clock.clone(),
            opened,
            Box::new(move |out, ctx| video_reader(out, ctx, fps)),
        )?;
        let audio_keeper = match audio {
            Some(cmd) => Some(spawn(
                cmd,
                &tx,
                clock.clone(),
                opened,
                Box::new(audio_reader),
            )?),
            None => None,
        };
        Ok(PipeSource {
            rx,
            _video: video,
            _audio: audio_keeper,
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

/// Turns a command's stdout into pieces; runs on the reader thread.
type Reader = Box<dyn FnOnce(Box<dyn Read + Send>, Ctx) + Send>;

/// What a reader thread needs.
struct Ctx {
    tx: mpsc::Sender<Piece>,
    clock: SharedClock,
    opened: Instant,
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

/// Owns a running command; dropping it stops the command's process group.
struct Keeper {
    stop: Option<std_mpsc::Sender<()>>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The keeper thread sees the channel close and stops the group.
        self.stop.take();
    }
}

fn spawn(
    command: &str,
    tx: &mpsc::Sender<Piece>,
    clock: SharedClock,
    opened: Instant,
    reader: Reader,
) -> Result<Keeper, SourceError> {
    let shown = redact_url(command);
    let mut child = Command::new("/bin/sh")
        .args(["-c", command])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SourceError::Pipe {
            command: shown.clone(),
            reason: format!("cannot start /bin/sh: {e}"),
        })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let span = Span::current();
    let last_line = Arc::new(Mutex::new(String::new()));
    let ctx = Ctx {
        tx: tx.clone(),
        clock,
        opened,
    };
    let thread = |name: &str| std::thread::Builder::new().name(format!("edgerec-pipe-{name}"));
    let s = span.clone();
    let started = thread("out").spawn(move || {
        let _e = s.enter();
        reader(Box::new(stdout), ctx);
    });
    let s = span.clone();
    let last = last_line.clone();
    let started = started.and_then(|_| {
        thread("err").spawn(move || {
            let _e = s.enter();
            log_stderr(stderr, &last);
        })
    });
    let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
    let tx = tx.clone();
    let started = started.and_then(|_| {
        let shown = shown.clone();
        thread("keep").spawn(move || {
            let _e = span.enter();
            keep(child, stop_rx, tx, &shown, &last_line);
        })
    });
    started.map_err(|e| SourceError::Pipe {
        command: shown,
        reason: format!("cannot start a thread: {e}"),
    })?;
    Ok(Keeper {
        stop: Some(stop_tx),
    })
}

/// Waits for the child to exit (reporting it) or for the source to be dropped (stopping
/// the group: SIGTERM, then SIGKILL after [`KILL_GRACE`]), and reaps it.
fn keep(
    mut child: Child,
    stop: std_mpsc::Receiver<()>,
    tx: mpsc::Sender<Piece>,
    shown: &str,
    last_line: &Mutex<String>,
) {
    let pgid = child.id() as libc::pid_t;
    // Until the source is dropped (the channel disconnects): watch for an exit.
    while let Err(std_mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(200))
    {
        if let Ok(Some(status)) = child.try_wait() {
            let last = last_line.lock().map(|l| l.clone()).unwrap_or_default();
            let reason = if last.is_empty() {
                format!("the command exited ({status})")
            } else {
                format!("the command exited ({status}); it said: {last}")
            };
            // Whatever the shell started and left behind goes too. The group outlives its
            // reaped leader only while members remain, so its id is still ours.
            // SAFETY: kill(2) on our own child's process group; no memory is involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = tx.blocking_send(Piece::Failed(SourceError::Pipe {
                command: shown.to_string(),
                reason,
            }));
            return;
        }
    }
    // The leader is not reaped yet, so its pid (the group id) cannot have been reused.
    // SAFETY: kill(2) on our own child's process group; no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            // The shell is gone; make sure nothing it started outlives it.
            // SAFETY: as above; a group with no members left makes this a no-op (ESRCH).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    warn!(command = %shown, "pipe command ignored SIGTERM; killing it");
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Logs the command's stderr line by line, rate-limited, keeping the last line.
fn log_stderr(err: impl Read, last: &Mutex<String>) {
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u32);
    for line in BufReader::new(err).split(b'\n') {
        let Ok(line) = line else { return };
        let text = redact_url(String::from_utf8_lossy(&line).trim_end());
        if text.trim().is_empty() {
            continue;
        }
        if window.elapsed() >= Duration::from_secs(10) {
            if dropped > 0 {
                warn!(
                    lines = dropped,
                    "pipe command: stderr lines not logged (rate limit)"
                );
            }
            window = Instant::now();
            (logged, dropped) = (0, 0);
        }
        if logged < STDERR_LINES_PER_WINDOW {
            logged += 1;
            info!(target: "edgerec::pipe", "command: {text}");
        } else {
            dropped += 1;
        }
        if let Ok(mut l) = last.lock() {
            *l = text.chars().take(300).collect();
        }
    }
}
