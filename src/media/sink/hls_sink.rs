//! The HLS sink: the `.m4s` media segments through a [`StoreSink`] like every container's
//! files, and the recording's playlist, which the store writes through [`Playlists`] (see
//! the durability protocol's **Playlist** steps in `storage::store`).
//!
//! A recording (one playlist) runs from a stream's first segment until its session ends
//! (the source ended or was lost, shutdown, a timestamp discontinuity), its codec
//! parameters change (a new init section), or it lists `playlist_max_length` of media. A
//! segment is listed only after its close made it durable. A segment left open by an error
//! keeps its playlist unfinished: the next start's recovery closes the segment and rewrites
//! the playlist from the index, finished.
//!
//! **Splicing** (`resume_window` > 0): when the source ends or is lost, the recording is not
//! finished but *suspended*: the store keeps its deadline (now + window) in the index. The
//! stream's next session (this process or the next one) asks the store to resume it before
//! opening a new recording: its first segment is listed after `EXT-X-DISCONTINUITY` (and a
//! new `EXT-X-MAP` when the init section differs). Shutdown (`record.stop`, the task's end,
//! the stream removed, the daemon stopping) finishes it at once, and so does a timestamp
//! discontinuity; a window that passes is finished by the store's timer
//! ([`crate::storage::store::Store::finish_expired`]) or when the stream comes back late.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::config::format::Format;
use crate::media::format::hls::{self, Entry, Recording};
use crate::media::frame::StreamParams;
use crate::media::segment::{CloseReason, Fragment, SegmentClose, SegmentStart};

// The sinks' row type, as the `Sink` trait names it.
use super::SegmentRow;
use super::{Sink, SinkError, StoreSink};

/// Where playlists are written: the store implements it (the durability order is its).
pub trait Playlists: Send + Sync {
    /// Create a recording's playlist at `<rel_base>.m3u8` (or a free `-N` name) with its
    /// init section beside it; `head` renders the playlist's head from the init's file name.
    /// `rec` is whose recording it is (kept in the store's recordings table).
    fn open_playlist(
        &self,
        rel_base: &Path,
        init: &[u8],
        head: &dyn Fn(&str) -> String,
        rec: &hls::Recording,
    ) -> Result<Box<dyn PlaylistFile>, SinkError>;

    /// Continue `app`/`stream`'s suspended recording, whose resume window has not passed,
    /// from segment `seq` on with the init section `init`; `None` when there is none (one
    /// whose window passed is finished).
    fn resume_playlist(
        &self,
        app: &str,
        stream: &str,
        seq: u64,
        init: &[u8],
    ) -> Result<Option<Resumed>, SinkError>;
}

/// A suspended recording taken up again.
pub struct Resumed {
    pub playlist: Box<dyn PlaylistFile>,
    /// The lines that go before the next entry (`EXT-X-DISCONTINUITY`, maybe `EXT-X-MAP`).
    pub lines: String,
    /// The media it lists already.
    pub listed_ms: u64,
}

/// An open playlist.
pub trait PlaylistFile: Send {
    /// Its path, relative to the storage root.
    fn rel(&self) -> &Path;
    /// Append `text` and make it durable.
    fn append(&mut self, text: &str) -> Result<(), SinkError>;
    /// Append `EXT-X-ENDLIST`: the recording is finished.
    fn finish(&mut self) -> Result<(), SinkError>;
    /// The stream is gone: keep the recording open for it for `window`.
    fn suspend(&mut self, window: Duration) -> Result<(), SinkError>;
}

/// A recording being written.
struct Open {
    playlist: Box<dyn PlaylistFile>,
    params: Arc<StreamParams>,
    /// Media listed so far.
    duration_ms: u64,
    /// Lines that go before the next entry (a splice's).
    lines: String,
}

/// Writes a stream's HLS recordings.
pub struct HlsSink {
    store: Arc<dyn Playlists>,
    segments: StoreSink,
    target_s: u64,
    max_ms: u64,
    resume_window: Duration,
    open: Option<Open>,
}

impl HlsSink {
    /// `segments` writes the `.m4s` files (the HLS container's [`StoreSink`]).
    pub fn new(
        store: Arc<dyn Playlists>,
        segments: StoreSink,
        interval: Duration,
        max_length: Duration,
        resume_window: Duration,
    ) -> Self {
        HlsSink {
            store,
            segments,
            target_s: hls::target_duration(interval),
            max_ms: max_length.as_millis() as u64,
            resume_window,
            open: None,
        }
    }

    fn finish_recording(&mut self) -> Result<(), SinkError> {
        if let Some(mut o) = self.open.take() {
            o.playlist.finish()?;
        }
        Ok(())
    }

    fn open_recording(&mut self, start: &SegmentStart) -> Result<(), SinkError> {
        let rel = self.segments.name_for(start)?;
        let init = hls::init_section(start).map_err(|e| SinkError::Encode {
            seq: start.meta.seq,
            reason: e.to_string(),
        })?;
        let rec = Recording {
            app: start.meta.app.clone(),
            stream: start.meta.stream.clone(),
            first_seq: start.meta.seq,
        };
        self.segments.new_recording();
        let m = &start.meta;
        if let Some(r) = self
            .store
            .resume_playlist(&m.app, &m.stream, m.seq, &init)?
        {
            self.open = Some(Open {
                playlist: r.playlist,
                params: start.params.clone(),
                duration_ms: r.listed_ms,
                lines: r.lines,
            });
            return Ok(());
        }
        let target = self.target_s;
        let playlist =
            self.store
                .open_playlist(&rel, &init, &|map| hls::head(target, map, &rec), &rec)?;
        self.open = Some(Open {
            playlist,
            params: start.params.clone(),
            duration_ms: 0,
            lines: String::new(),
        });
        Ok(())
    }
}

impl Sink for HlsSink {
    fn accepts(&self, start: &SegmentStart) -> Result<(), SinkError> {
        self.segments.accepts(start)
    }

    fn start(&mut self, start: &Arc<SegmentStart>) -> Result<(), SinkError> {
        if self.open.as_ref().is_some_and(|o| o.params != start.params) {
            // New codec parameters need a new init section: a new recording.
            self.finish_recording()?;
        }
        if self.open.is_none() {
            self.open_recording(start)?;
        }
        self.segments.start(start)
    }

    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<(), SinkError> {
        self.segments.fragment(start, frag)
    }

    fn close(&mut self, close: &SegmentClose) -> Result<Option<SegmentRow>, SinkError> {
        let row = self.segments.close(close)?;
        let head_len = self.segments.head_len();
        if let (Some(row), Some(o)) = (&row, &mut self.open) {
            if let Some(e) = playlist_entry(o.playlist.rel(), row, head_len) {
                if e.duration_ms.div_ceil(1000) > self.target_s {
                    warn!(
                        duration_ms = e.duration_ms,
                        target_s = self.target_s,
                        "segment longer than the playlist's target duration"
                    );
                }
                let text = std::mem::take(&mut o.lines) + &hls::entry(&e);
                if let Err(err) = o.playlist.append(&text) {
                    // Its tail is unknown now: nothing more is appended to it. It stays
                    // unfinished, and the next start's recovery rewrites it from the index;
                    // the next segment begins a new recording.
                    self.open = None;
                    return Err(err);
                }
                o.duration_ms += e.duration_ms;
            }
        }
        let ends = matches!(
            close.reason,
            CloseReason::SourceEnded | CloseReason::Shutdown | CloseReason::Discontinuity
        );
        let full = self
            .open
            .as_ref()
            .is_some_and(|o| o.duration_ms >= self.max_ms);
        let waits = close.reason == CloseReason::SourceEnded && !self.resume_window.is_zero();
        if waits && !full {
            if let Some(mut o) = self.open.take() {
                o.playlist.suspend(self.resume_window)?;
            }
        } else if ends || full {
            self.finish_recording()?;
        }
        Ok(row)
    }

    fn abort(&mut self) {
        self.segments.abort();
        // Unfinished on purpose: the open segment (if it has fragments) is closed by the next
        // start's recovery, which then rewrites this playlist with it and finishes it.
        self.open = None;
    }
}

/// The playlist entry of `row`'s `.m4s` in the playlist at `playlist` (both relative to the
/// root); `head_len` is where its fragments begin.
pub fn playlist_entry(playlist: &Path, row: &SegmentRow, head_len: u64) -> Option<Entry> {
    let f = row.files.iter().find(|f| f.format == Format::Hls)?;
    let dir = playlist.parent().unwrap_or(Path::new(""));
    Some(Entry {
        uri: hls::relative_uri(dir, &f.path),
        start_ms: row.start_ms,
        duration_ms: row.duration_ms,
        offset: head_len,
        len: f.bytes.saturating_sub(head_len),
    })
}
