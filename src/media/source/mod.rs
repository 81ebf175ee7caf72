//! Where frames come from: RTSP cameras (pulled with retina) and MP4 files replayed as
//! cameras.
//!
//! The config's source string is parsed into a [`SourceSpec`]; [`Source::open`] connects
//! or opens it and [`Source::next`] yields [`Frame`]s until the stream ends or fails. A source
//! never retries by itself: the recorder supervises it and reopens with backoff, asking
//! [`SourceError::is_permanent`] how long to wait.
//!
//! Every frame is in MP4 form (see [`crate::media::frame`]); the first frame is a video key frame
//! when there is video; a new `Arc<StreamParams>` appears only when parameters change.
//! Credentials never appear in logs or errors: everything shown goes through
//! [`crate::util::redact::redact_url`].
//!
//! # Layout
//!
//! - [`SourceSpec`]: parsing source strings (`rtsp://...`, `file:...`), in
//!   [`crate::config::source`] since the config validates them.
//! - `rtsp`: the retina session; `rtsp_tracks`: which camera streams it records, and
//!   retina's parameters in our types; `rtsp_url`: credentials out of the URL (the only
//!   files that know retina).
//! - [`channel`]: frames pushed to us (RTSP/RTMP push servers), through a byte-bounded channel.
//! - `file`: real-time pacing of a file on a reader thread; `mp4_reader` reads samples in
//!   decode order (mp4-atom decodes the boxes), `mp4_table` walks sample tables, `mp4_entry`
//!   reads sample entries, `aac_config` their AAC configuration, `mp4_error` says what is
//!   wrong with a file.
//! - [`reorder`]: decode times for RTP video; [`interleave`]: audio held back with it.
//! - `pipe`: a command's Annex-B stdout (`pipe:...`); `pipe_child` runs and stops the
//!   command's processes, `annexb` splits access units,
//!   `h26x` reads SPS/slice headers and builds `avcC`/`hvcC`, `adts` splits AAC,
//!   `pipe_time` stamps arrival times.

mod adts;
mod annexb;
pub mod channel;
mod error;
mod file;
pub mod h26x;
pub mod interleave;
mod lowat;
pub(crate) mod mp4_entry;
mod mp4_error;
mod mp4_reader;
pub(crate) mod mp4_table;
pub mod pipe;
mod pipe_child;
mod pipe_time;
pub mod reorder;
mod rtsp;
mod rtsp_tracks;
mod rtsp_url;

pub use crate::config::source::{SourceSpec, Transport};
pub use error::SourceError;
pub use pipe::PipeGroups;

use crate::media::frame::Frame;
use crate::util::clock::SharedClock;

/// A source being stopped ([`Source::stop`]).
#[must_use = "wait for the source's processes to end"]
pub struct Stopping {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stopping {
    /// Wait until the source's processes (a pipe's commands) are gone and reaped; at once
    /// for sources without processes. The waiting happens off the async runtime.
    pub async fn wait(self) {
        if self.threads.is_empty() {
            return;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// An open source of frames.
pub struct Source {
    inner: Inner,
}

enum Inner {
    Rtsp(Box<rtsp::RtspSource>),
    File(file::FileSource),
    Pipe(Box<pipe::PipeSource>),
    Channel(channel::ChannelSource),
}

impl Source {
    /// Connects to the camera (DESCRIBE, SETUP, PLAY) or opens and checks the file.
    ///
    /// The clock paces file replay; RTSP timestamps come from the camera. A pipe's commands
    /// are listed in a [`PipeGroups`] of their own: use [`Source::open_with`] to share the
    /// daemon's.
    pub async fn open(spec: &SourceSpec, clock: SharedClock) -> Result<Source, SourceError> {
        Source::open_with(spec, clock, &PipeGroups::default()).await
    }

    /// [`Source::open`], listing a pipe's commands in `groups` (so a fast exit can kill
    /// them).
    pub async fn open_with(
        spec: &SourceSpec,
        clock: SharedClock,
        groups: &PipeGroups,
    ) -> Result<Source, SourceError> {
        let inner = match spec {
            SourceSpec::Rtsp { url, transport } => {
                Inner::Rtsp(Box::new(rtsp::RtspSource::open(url, *transport).await?))
            }
            SourceSpec::File {
                path,
                looping,
                realtime,
            } => Inner::File(file::FileSource::open(path, *looping, *realtime, clock).await?),
            SourceSpec::Pipe {
                command,
                fps_milli,
                audio,
            } => Inner::Pipe(Box::new(pipe::PipeSource::open(
                command,
                fps_milli.map(|f| f64::from(f) / 1000.0),
                audio.as_deref(),
                clock,
                groups,
            )?)),
        };
        Ok(Source { inner })
    }

    /// Stop the source: a pipe's commands get SIGTERM (then SIGKILL after
    /// [`pipe::KILL_GRACE`]); others just close. Await [`Stopping::wait`] for the end.
    pub fn stop(self) -> Stopping {
        Stopping {
            threads: match self.inner {
                Inner::Pipe(p) => p.stop(),
                _ => Vec::new(),
            },
        }
    }

    /// A source fed by a push server through a [`channel::channel`]. It ends (`Ok(None)`)
    /// when the push ends.
    pub fn from_channel(rx: channel::ChannelSource) -> Source {
        Source {
            inner: Inner::Channel(rx),
        }
    }

    /// Next frame; `Ok(None)` = clean end of stream (a file without loop). An RTSP session
    /// that ends is an error ([`SourceError::Closed`]), since a camera should not stop.
    ///
    /// Cancel-safe: if the returned future is dropped before it completes, no frame is
    /// lost, so it can sit in a `tokio::select!` beside a shutdown signal or a timer.
    pub async fn next(&mut self) -> Result<Option<Frame>, SourceError> {
        match &mut self.inner {
            Inner::Rtsp(s) => s.next().await,
            Inner::File(s) => s.next().await,
            Inner::Pipe(s) => s.next().await,
            Inner::Channel(s) => Ok(s.next().await),
        }
    }

    /// Whether polling on the shared pacer pays off: true for an RTSP session whose every
    /// packet would otherwise wake us, until its socket has a low-water mark (which batches
    /// the wake-ups in the kernel, see `lowat`). A file, pipe or channel source hands frames
    /// over from a thread a few at a time and is best awaited directly.
    pub fn wants_pacing(&self) -> bool {
        match &self.inner {
            Inner::Rtsp(s) => s.wants_pacing(),
            _ => false,
        }
    }

    /// A frame if one is ready now, without waiting and without arming a timer; `None`
    /// when nothing is ready. Used by the recorder's paced polling ([`crate::util::pace`]).
    pub fn try_next(&mut self) -> Option<Result<Option<Frame>, SourceError>> {
        use futures::FutureExt;
        match &mut self.inner {
            Inner::Rtsp(s) => s.try_next(),
            _ => self.next().now_or_never(),
        }
    }

    /// The source's tracks that are not recorded, each with the reason (an RTSP camera's
    /// MP4A-LATM audio, a second video stream…); empty for other sources.
    pub fn skipped(&self) -> &[String] {
        match &self.inner {
            Inner::Rtsp(s) => s.skipped(),
            Inner::File(_) | Inner::Channel(_) | Inner::Pipe(_) => &[],
        }
    }

    /// Frames already received but held back (RTSP video waiting for its decode time),
    /// handed out when the session ends so the last segment keeps them. Non-blocking.
    pub fn take_held(&mut self) -> Option<Frame> {
        match &mut self.inner {
            Inner::Rtsp(s) => s.take_held(),
            Inner::File(_) | Inner::Channel(_) | Inner::Pipe(_) => None,
        }
    }
}
