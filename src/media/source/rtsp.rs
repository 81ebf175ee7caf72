//! RTSP pull with retina. All retina-specific code lives here.
//!
//! One [`RtspSource`] is one RTSP session: `DESCRIBE`, `SETUP` of the first H.264/H.265
//! video stream and the first AAC audio stream (`rtsp_tracks` chooses; the others are
//! listed with the reason in [`RtspSource::skipped`], which the recorder reports), `PLAY`,
//! then depacketized frames. There is no reconnect loop here: any failure is returned and
//! the recorder decides when to try again.
//!
//! # Timestamps
//!
//! `dts`/`pts` are retina's [`Timestamp::elapsed`](retina::Timestamp::elapsed), in the RTP
//! clock rate (90 kHz video, the sample rate for AAC). With
//! `InitialTimestampPolicy::Permissive`, streams are aligned through the `RTP-Info` header
//! when the camera sends it for all of them. RTP carries presentation times only: video
//! decode times come from [`DtsFromPts`] (a few frames of reordering delay; equal to the
//! presentation times for streams without B-frames, which is most cameras, but encoders
//! such as x264 and OBS do send B-frames). Audio `dts == pts`, held at the previous value
//! should a camera's timestamps step backwards, and held back with the video
//! ([`Interleave`]) so a segment cut on a key frame gets the audio of its own time.
//!
//! # Start and parameter changes
//!
//! Frames are dropped until every chosen track has parameters and a video key frame arrives,
//! so the first frame out is a key frame. A new `Arc<StreamParams>` is made only when a
//! track's parameters really change (retina's `has_new_parameters`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use retina::client::{
    Demuxed, InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions,
    TcpTransportOptions, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat};

use super::interleave::Interleave;
use super::lowat;
use super::reorder::DtsFromPts;
use super::rtsp_tracks::{self, has_h265_irap, track_params, Offered};
use super::rtsp_url::split_credentials;
use super::{SourceError, Transport};
use crate::media::frame::{Frame, StreamParams, TrackParams, VideoCodec};
use crate::util::redact::redact_url;

/// The addresses `url`'s host resolves to (what retina connected to).
async fn peer_ips(url: &url::Url, port: u16) -> Vec<std::net::IpAddr> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map(|it| it.map(|a| a.ip()).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Longest wait for each of DESCRIBE (including the TCP connect), SETUP and PLAY.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence (no frame, no RTCP) before the session counts as lost.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The stall timer's period: silence for this long drops a socket low-water mark, and the
/// stall timeout is noticed within this much after it passes.
const PATIENCE: Duration = Duration::from_secs(4);

/// A playing RTSP session.
pub struct RtspSource {
    /// The URL with credentials redacted, for errors and logs.
    shown: String,
    demuxed: Pin<Box<Demuxed>>,
    /// Retina stream index -> our track index.
    track_of: Vec<Option<usize>>,
    /// Our track index -> retina stream index.
    stream_of: Vec<usize>,
    tracks: Vec<Option<TrackParams>>,
    params: Option<Arc<StreamParams>>,
    started: bool,
    /// Whether a video track was chosen (then output starts on its first key frame).
    has_video: bool,
    last_dts: Vec<i64>,
    /// Decode times for the video track (RTP gives presentation times only).
    reorder: DtsFromPts<Frame>,
    /// Audio waiting for the video to reach its time, and frames ready to hand out.
    interleave: Interleave,
    ready: std::collections::VecDeque<Frame>,
    /// The session's TCP socket and its low-water mark (see `lowat`), when found.
    lowat: Option<(lowat::Sock, lowat::Tuner)>,
    /// The stall timer (see [`RtspSource::next`]) and when retina last gave an item.
    stall: Pin<Box<tokio::time::Sleep>>,
    last_item: tokio::time::Instant,
    /// The camera's streams that are not recorded, each with the reason.
    skipped: Vec<String>,
}

impl RtspSource {
    /// Connects, chooses streams, sets them up and starts playing.
    pub async fn open(url: &url::Url, transport: Transport) -> Result<RtspSource, SourceError> {
        let shown = redact_url(url.as_str());
        let (clean, creds) = split_credentials(url);
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent(format!("edgerec/{}", env!("CARGO_PKG_VERSION")));
        let port = clean.port_or_known_default().unwrap_or(554);
        let snapshot = (transport == Transport::Tcp).then(|| lowat::Snapshot::take(port));
        let mut session = within(&shown, "connecting and sending DESCRIBE", async {
            Session::describe(clean.clone(), options).await
        })
        .await?;
        let socket = match snapshot {
            Some(snap) => snap.new_socket(&peer_ips(&clean, port).await),
            None => None,
        };

        let offered: Vec<Offered<'_>> = session
            .streams()
            .iter()
            .map(|s| Offered {
                media: s.media(),
                encoding: s.encoding_name(),
                has_parameters: s.parameters().is_some(),
            })
            .collect();
        let choice = rtsp_tracks::choose(&offered);
        let stream_of = choice.streams();
        if stream_of.is_empty() {
            return Err(SourceError::UnsupportedCodec {
                source_name: shown,
                offered: if choice.offered.is_empty() {
                    "the camera offers no streams".into()
                } else {
                    format!("the camera offers {}", choice.offered.join(", "))
                },
            });
        }
        for &i in &stream_of {
            let t = match transport {
                Transport::Tcp => retina::client::Transport::Tcp(TcpTransportOptions::default()),
                Transport::Udp => retina::client::Transport::Udp(UdpTransportOptions::default()),
            };
            let options = SetupOptions::default()
                .transport(t)
                .frame_format(FrameFormat::MP4);
            within(&shown, "sending SETUP", session.setup(i, options)).await?;
        }
        let play = PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive);
        let playing = within(&shown, "sending PLAY", session.play(play)).await?;
        let demuxed = playing.demuxed().map_err(|e| map_error(&shown, e))?;
        tracing::info!(url = %shown, tracks = stream_of.len(), transport = ?transport, "RTSP session playing");

        let mut track_of = vec![None; demuxed.streams().len()];
        for (track, &stream) in stream_of.iter().enumerate() {
            track_of[stream] = Some(track);
        }
        Ok(RtspSource {
            shown,
            demuxed: Box::pin(demuxed),
            track_of,
            tracks: vec![None; stream_of.len()],
            last_dts: vec![i64::MIN; stream_of.len()],
            stream_of,
            params: None,
            reorder: DtsFromPts::default(),
            interleave: Interleave::default(),
            ready: std::collections::VecDeque::new(),
            started: false,
            has_video: choice.video.is_some(),
            lowat: socket.map(|s| (s, lowat::Tuner::new(std::time::Instant::now()))),
            stall: Box::pin(tokio::time::sleep(PATIENCE)),
            last_item: tokio::time::Instant::now(),
            skipped: choice.skipped,
        })
    }

    /// The camera's streams that are not recorded, each as `media/encoding (reason)`.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Count received media toward the socket's low-water mark, retuning it when due.
    /// Uses the arrival time `next`/`try_next` just stamped: one clock read per item.
    fn count(&mut self, bytes: usize) {
        let Some((sock, tuner)) = &mut self.lowat else {
            return;
        };
        if let Some(mark) = tuner.received(bytes, self.last_item.into_std()) {
            match lowat::set_mark(*sock, mark) {
                Ok(()) => tracing::debug!(url = %self.shown, mark, "socket low-water mark set"),
                Err(e) => {
                    tracing::debug!(url = %self.shown, error = %e, "no socket low-water mark");
                    self.lowat = None;
                }
            }
        }
    }

    /// The next frame. Cancel-safe: retina's stream keeps its place if this future is
    /// dropped.
    ///
    /// One timer serves the stall timeout for the whole session, re-armed every
    /// [`PATIENCE`] when it fires, never per frame: re-arming it costs an `eventfd` write
    /// (it is usually the runtime's earliest timer, see [`crate::util::pace`]), so it fires
    /// rarely. When the socket has a low-water mark and nothing arrived since the last
    /// check, the mark is dropped first: the rate may have fallen below it (a static
    /// scene), and the bytes waiting under it are then delivered.
    pub async fn next(&mut self) -> Result<Option<Frame>, SourceError> {
        if let Some(frame) = self.ready.pop_front() {
            return Ok(Some(frame));
        }
        loop {
            let item = tokio::select! {
                biased;
                item = self.demuxed.next() => item,
                () = self.stall.as_mut() => { self.on_stall_check()?; continue; }
            };
            self.last_item = tokio::time::Instant::now();
            if let Some(frame) = self.on_item(item)? {
                return Ok(Some(frame));
            }
        }
    }

    /// The stall timer fired: fail after [`STALL_TIMEOUT`] of silence, drop the low-water
    /// mark after [`PATIENCE`], and re-arm it.
    fn on_stall_check(&mut self) -> Result<(), SourceError> {
        let now = tokio::time::Instant::now();
        let idle = now.saturating_duration_since(self.last_item);
        if idle >= STALL_TIMEOUT {
            return Err(SourceError::Timeout {
                url: self.shown.clone(),
                during: "waiting for media",
                secs: STALL_TIMEOUT.as_secs(),
            });
        }
        if idle >= PATIENCE {
            self.drop_mark();
        }
        self.stall.as_mut().reset(now + PATIENCE);
        Ok(())
    }

    /// Whether the recorder should poll this session on the shared pace ticks: yes until
    /// the socket has a low-water mark, which batches the wake-ups by itself.
    pub fn wants_pacing(&self) -> bool {
        self.lowat.as_ref().is_none_or(|(_, t)| t.mark() == 0)
    }

    /// Back to the kernel's default low-water mark (every byte wakes us).
    fn drop_mark(&mut self) {
        if let Some((sock, tuner)) = &mut self.lowat {
            if tuner.mark() > 0 {
                tuner.reset(std::time::Instant::now());
                if lowat::set_mark(*sock, 1).is_err() {
                    self.lowat = None;
                }
                tracing::debug!(url = %self.shown, "no media for a while: socket low-water mark dropped");
            }
        }
    }

    /// A frame from what is already received, or `None` if that holds no complete frame.
    /// Arms no timer (see [`crate::util::pace`]).
    pub fn try_next(&mut self) -> Option<Result<Option<Frame>, SourceError>> {
        if let Some(frame) = self.ready.pop_front() {
            return Some(Ok(Some(frame)));
        }
        loop {
            let item = self.demuxed.next().now_or_never()?;
            self.last_item = tokio::time::Instant::now();
            match self.on_item(item) {
                Ok(Some(frame)) => return Some(Ok(Some(frame))),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// One item from retina: a frame, or `None` when it yields no frame (yet).
    fn on_item(
        &mut self,
        item: Option<Result<CodecItem, retina::Error>>,
    ) -> Result<Option<Frame>, SourceError> {
        let item = match item {
            None => {
                return Err(SourceError::Closed {
                    url: self.shown.clone(),
                })
            }
            Some(Err(e)) => return Err(map_error(&self.shown, e)),
            Some(Ok(item)) => item,
        };
        match item {
            CodecItem::VideoFrame(f) => {
                self.count(f.data().len());
                let Some(track) = self.track_of.get(f.stream_id()).copied().flatten() else {
                    return Ok(None);
                };
                if f.has_new_parameters() || self.params.is_none() {
                    self.refresh_params()?;
                }
                let keyframe =
                    f.is_random_access_point() || (self.is_h265(track) && has_h265_irap(f.data()));
                if !self.started {
                    if !keyframe || self.params.is_none() {
                        return Ok(None);
                    }
                    self.started = true;
                }
                // RTP carries presentation times; decode times come from reordering.
                let pts = f.timestamp().elapsed();
                if let Some(params) = &self.params {
                    let frame = Frame {
                        params: params.clone(),
                        track,
                        dts: pts,
                        pts,
                        keyframe,
                        data: Bytes::from(f.into_data()),
                    };
                    if let Some((dts, pts, mut frame)) = self.reorder.push(pts, frame) {
                        frame.dts = dts;
                        frame.pts = pts;
                        return Ok(Some(self.after_audio(frame)));
                    }
                }
            }
            CodecItem::AudioFrame(f) => {
                self.count(f.data().len());
                let Some(track) = self.track_of.get(f.stream_id()).copied().flatten() else {
                    return Ok(None);
                };
                if !self.started {
                    // With video, start on its key frame; audio-only starts at once.
                    if self.has_video {
                        return Ok(None);
                    }
                    self.refresh_params()?;
                    if self.params.is_none() {
                        return Ok(None);
                    }
                    self.started = true;
                }
                let dts = self.monotonic(track, f.timestamp().elapsed());
                if let Some(params) = &self.params {
                    return Ok(self.interleave.audio(Frame {
                        params: params.clone(),
                        track,
                        dts,
                        pts: dts,
                        keyframe: true,
                        // retina keeps audio as `Bytes` but only lends it out.
                        data: Bytes::copy_from_slice(f.data()),
                    }));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// The held audio due before `video`, then `video`: the first to hand out now, the
    /// rest queued.
    fn after_audio(&mut self, video: Frame) -> Frame {
        self.ready.extend(self.interleave.before_video(&video));
        self.ready.push_back(video);
        self.ready.pop_front().expect("just queued")
    }

    /// A frame held back (video for its decode time, audio beside it), at the end of the
    /// session (see [`Source::take_held`](super::Source::take_held)).
    pub fn take_held(&mut self) -> Option<Frame> {
        if let Some(frame) = self.ready.pop_front() {
            return Some(frame);
        }
        match self.reorder.drain() {
            Some((dts, pts, mut frame)) => {
                frame.dts = dts;
                frame.pts = pts;
                Some(self.after_audio(frame))
            }
            None => self.interleave.drain(),
        }
    }

    fn is_h265(&self, track: usize) -> bool {
        matches!(
            self.params.as_ref().and_then(|p| p.tracks.get(track)),
            Some(TrackParams::Video(v)) if v.codec == VideoCodec::H265
        )
    }

    /// Keeps `dts` from going backwards on a track.
    fn monotonic(&mut self, track: usize, ts: i64) -> i64 {
        let dts = ts.max(self.last_dts[track]);
        self.last_dts[track] = dts;
        dts
    }

    /// Re-reads every chosen track's parameters from retina; makes a new `Arc` only if one
    /// changed. Leaves `params` empty while a track has none yet.
    fn refresh_params(&mut self) -> Result<(), SourceError> {
        let mut changed = false;
        for (track, &stream) in self.stream_of.iter().enumerate() {
            let s = &self.demuxed.streams()[stream];
            let new = match s.parameters() {
                Some(p) => {
                    Some(
                        track_params(p, s.clock_rate_hz()).map_err(|e| SourceError::Rtsp {
                            url: self.shown.clone(),
                            reason: e.to_string(),
                        })?,
                    )
                }
                None => None,
            };
            if new != self.tracks[track] {
                self.tracks[track] = new;
                changed = true;
            }
        }
        if changed || self.params.is_none() {
            self.params = self
                .tracks
                .iter()
                .cloned()
                .collect::<Option<Vec<_>>>()
                .map(|tracks| Arc::new(StreamParams { tracks }));
        }
        Ok(())
    }
}

/// Runs one RTSP request with [`REQUEST_TIMEOUT`], mapping errors.
async fn within<T>(
    shown: &str,
    during: &'static str,
    fut: impl std::future::Future<Output = Result<T, retina::Error>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| map_error(shown, e)),
        Err(_) => Err(SourceError::Timeout {
            url: shown.to_string(),
            during,
            secs: REQUEST_TIMEOUT.as_secs(),
        }),
    }
}

/// Sorts a retina error into our variants, with credentials redacted from its text.
fn map_error(shown: &str, e: retina::Error) -> SourceError {
    if let Some(status @ (401 | 403)) = e.status_code() {
        return SourceError::Auth {
            url: shown.to_string(),
            status,
        };
    }
    let text = redact_url(&e.to_string());
    if let Some(reason) = text.strip_prefix("Unable to connect to RTSP server: ") {
        return SourceError::Connect {
            url: shown.to_string(),
            reason: reason.to_string(),
        };
    }
    let hint = match e.status_code() {
        Some(404) => "the camera has no stream at this path; check the URL's path. ",
        Some(461) => {
            "the camera refuses this transport (TCP by default, UDP with `?transport=udp`); \
             try the other one. "
        }
        _ => "",
    };
    SourceError::Rtsp {
        url: shown.to_string(),
        reason: hint.to_string()
            + &text
                .split('\n')
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
    }
}
