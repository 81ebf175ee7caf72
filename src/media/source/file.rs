//! The file "camera": an MP4 replayed in real time, optionally looping.
//!
//! A dedicated thread runs the blocking [`Mp4FileReader`] and hands frames over a channel of
//! [`READ_AHEAD`] frames; the async side paces them by decode time against the injected
//! clock. Dropping the source drops the channel, which ends the thread at its next frame.
//!
//! [`FileSource::next`] is cancel-safe: a frame received but not yet due is kept and
//! returned by the next call.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::mp4_reader::Mp4FileReader;
use super::SourceError;
use crate::media::frame::Frame;
use crate::util::clock::SharedClock;

/// Frames read ahead of their due time.
const READ_AHEAD: usize = 2;

/// An MP4 file replayed as a live source.
pub struct FileSource {
    rx: mpsc::Receiver<Result<Frame, SourceError>>,
    pending: Option<Frame>,
    clock: SharedClock,
    realtime: bool,
    /// Clock instant and media time (ns) of the first frame.
    origin: Option<(Instant, i128)>,
}

impl FileSource {
    /// Opens and checks the file (errors come back here, not on the first frame), then
    /// starts the reader thread.
    pub async fn open(
        path: &Path,
        looping: bool,
        realtime: bool,
        clock: SharedClock,
    ) -> Result<FileSource, SourceError> {
        let owned: PathBuf = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || Mp4FileReader::open(&owned, looping))
            .await
            .map_err(|e| SourceError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("the MP4 parser failed: {e}"),
            })??;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let shown = path.to_path_buf();
        std::thread::Builder::new()
            .name("edgerec-file".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| pump(reader, tx.clone()));
                if std::panic::catch_unwind(run).is_err() {
                    // Report instead of ending the channel, which would read as a clean end.
                    let _ = tx.blocking_send(Err(SourceError::Corrupt {
                        path: shown,
                        reason: "the MP4 reader failed unexpectedly".into(),
                    }));
                }
            })
            .map_err(|source| SourceError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(FileSource {
            rx,
            pending: None,
            clock,
            realtime,
            origin: None,
        })
    }

    /// The next frame, when it is due; `None` at the end of a non-looping file.
    pub async fn next(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.pending.is_none() {
            match self.rx.recv().await {
                Some(Ok(frame)) => self.pending = Some(frame),
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
        if self.realtime {
            if let Some(frame) = &self.pending {
                let t = media_ns(frame);
                let (start, t0) = *self.origin.get_or_insert_with(|| (self.clock.now(), t));
                let due = start + Duration::from_nanos((t - t0).max(0) as u64);
                if due > self.clock.now() {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                }
            }
        }
        Ok(self.pending.take())
    }
}

/// A frame's decode time in nanoseconds.
fn media_ns(f: &Frame) -> i128 {
    let ts = i128::from(f.track_params().timescale().max(1));
    i128::from(f.dts) * 1_000_000_000 / ts
}

fn pump(mut reader: Mp4FileReader, tx: mpsc::Sender<Result<Frame, SourceError>>) {
    loop {
        let item = match reader.next_frame() {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}
