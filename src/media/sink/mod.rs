//! Sinks: consumers of the segmenter's events.
//!
//! Every output format is a [`Sink`] fed the same [`SegmentEvent`]s in order: `start`, then
//! `fragment`s, then `close`. One segmenter feeds them all: the source is read once.
//! [`store_sinks`] makes a template's: one [`StoreSink`] per container its formats need,
//! each with its container's encoder, its own working file and its own index rows (so each
//! file gets its own event, upload and retention):
//!
//! | container | formats | file |
//! | --- | --- | --- |
//! | MP4 | `fmp4`, `mp4` | the fMP4, and the progressive MP4 made from it at close |
//! | FLV | `flv` | tags written while recording, onMetaData patched at close |
//! | ADTS | `aac` | the audio only |
//! | HLS | `hls` | `.m4s` media segments, and the recording's playlist ([`HlsSink`]) |
//!
//! DASH is meant to be added the same way: a further sink beside these, without touching
//! the segmenter or the recorder.
//!
//! Sinks do blocking I/O; each stream's [`SinkSet`] lives on its own writer thread
//! ([`SinkThread`]).

use std::sync::Arc;

use crate::config::Template;
use crate::media::format::{self, Container, Format};
use crate::media::segment::{Fragment, SegmentClose, SegmentEvent, SegmentStart};
use crate::storage::store::{SegmentRow, Store, StoreError};

mod hls_sink;
mod store_sink;
mod thread;

pub use hls_sink::{playlist_entry, HlsSink, PlaylistFile, Playlists, Resumed};
pub use store_sink::StoreSink;
pub use thread::{Detached, Report, SinkThread};

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encoding segment {seq} failed: {reason}")]
    Encode { seq: u64, reason: String },
    #[error("naming template {template:?}: {reason}")]
    Naming { template: String, reason: String },
    /// A format the template asks for cannot hold this stream (its codec). Retrying does
    /// not help until the stream or the template changes.
    #[error("template \"{template}\" formats: \"{format}\" cannot record this stream: {reason}")]
    Refused {
        template: String,
        format: &'static str,
        reason: String,
    },
}

/// The sinks of a stream recorded with `template`: one [`StoreSink`] per container its
/// formats need (MP4 first, then FLV, then ADTS, then HLS's, inside its [`HlsSink`]).
pub fn store_sinks(store: &Arc<Store>, template: &Template) -> Vec<Box<dyn Sink>> {
    format::by_container(&template.formats)
        .into_iter()
        .map(|(container, formats): (_, Vec<Format>)| {
            let files = StoreSink::new(
                store.clone(),
                formats,
                template.naming.clone(),
                template.name.clone(),
                format::encoder(container, template.interval),
            );
            if container == Container::Hls {
                Box::new(HlsSink::new(
                    store.clone() as Arc<dyn Playlists>,
                    files,
                    template.interval,
                    template.playlist_max_length,
                    template.resume_window,
                )) as Box<dyn Sink>
            } else {
                Box::new(files) as Box<dyn Sink>
            }
        })
        .collect()
}

/// One output of a stream.
pub trait Sink: Send {
    /// Whether this sink can write a segment of `start`'s stream (its codecs). Every sink
    /// is asked before any starts, so a refused stream starts no file at all.
    fn accepts(&self, _start: &SegmentStart) -> Result<(), SinkError> {
        Ok(())
    }
    /// Begin a segment. Called only when no segment is open in this sink.
    fn start(&mut self, start: &Arc<SegmentStart>) -> Result<(), SinkError>;
    /// Append a fragment of the open segment.
    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<(), SinkError>;
    /// Close the open segment; a sink that indexes its files returns the row.
    fn close(&mut self, close: &SegmentClose) -> Result<Option<SegmentRow>, SinkError>;
    /// Drop the open segment without closing it (the session ended with no close event).
    fn abort(&mut self);
}

/// What a batch of events did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Rows of the segments closed.
    pub closed: Vec<SegmentRow>,
    /// The first error, if any.
    pub error: Option<SinkError>,
    /// Something reached the disk: a fragment appended to an open segment, or a segment
    /// closed. (A batch can go through without writing anything, e.g. fragments for a
    /// segment whose start failed.)
    pub wrote: bool,
}

/// The sinks of one stream, and the segment they are writing.
pub struct SinkSet {
    sinks: Vec<Box<dyn Sink>>,
    current: Option<Arc<SegmentStart>>,
}

impl SinkSet {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        SinkSet {
            sinks,
            current: None,
        }
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        self.current.is_some()
    }

    /// Feed events to every sink, in order, and return the rows of the segments closed.
    ///
    /// After an error the rest of the batch still runs in a degraded way: the open segment
    /// is closed when its close event comes (with the fragments it has), and nothing new is
    /// started or appended. The first error is returned beside the rows.
    pub fn apply(&mut self, events: impl IntoIterator<Item = SegmentEvent>) -> Applied {
        let mut out = Applied::default();
        for ev in events {
            let failed = out.error.is_some();
            let res = match ev {
                SegmentEvent::Start(_) | SegmentEvent::Fragment(_) if failed => Ok(()),
                SegmentEvent::Start(start) => self.start(start),
                SegmentEvent::Fragment(frag) => self.fragment(&frag).map(|w| out.wrote |= w),
                SegmentEvent::Close(close) => {
                    let before = out.closed.len();
                    let r = self.close(&close, &mut out.closed);
                    out.wrote |= out.closed.len() > before;
                    r
                }
            };
            if let Err(e) = res {
                out.error.get_or_insert(e);
            }
        }
        out
    }

    fn start(&mut self, start: SegmentStart) -> Result<(), SinkError> {
        if self.current.is_some() {
            // The segmenter always closes first; be safe anyway.
            self.abort();
        }
        for s in &self.sinks {
            s.accepts(&start)?;
        }
        let start = Arc::new(start);
        self.current = Some(start.clone());
        for s in &mut self.sinks {
            if let Err(e) = s.start(&start) {
                // No segment is open: its fragments are dropped, not counted as written.
                self.abort();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether the fragment was written (a segment is open and every sink took it).
    fn fragment(&mut self, frag: &Fragment) -> Result<bool, SinkError> {
        let Some(start) = &self.current else {
            return Ok(false);
        };
        for s in &mut self.sinks {
            s.fragment(start, frag)?;
        }
        Ok(true)
    }

    fn close(&mut self, close: &SegmentClose, rows: &mut Vec<SegmentRow>) -> Result<(), SinkError> {
        if self.current.take().is_none() {
            return Ok(());
        }
        let mut first_err = None;
        for s in &mut self.sinks {
            match s.close(close) {
                Ok(Some(row)) => rows.push(row),
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Drop the open segment in every sink.
    pub fn abort(&mut self) {
        self.current = None;
        for s in &mut self.sinks {
            s.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::StreamParams;
    use crate::media::segment::{CloseReason, SegmentMeta};
    use std::sync::Mutex;

    /// A sink that logs what it is told.
    struct Log(Arc<Mutex<Vec<String>>>, bool);

    impl Sink for Log {
        fn start(&mut self, s: &Arc<SegmentStart>) -> Result<(), SinkError> {
            self.0.lock().unwrap().push(format!("start {}", s.meta.seq));
            Ok(())
        }
        fn fragment(&mut self, _: &SegmentStart, f: &Fragment) -> Result<(), SinkError> {
            if self.1 {
                return Err(SinkError::Encode {
                    seq: 0,
                    reason: "boom".into(),
                });
            }
            self.0.lock().unwrap().push(format!("frag {}", f.sequence));
            Ok(())
        }
        fn close(&mut self, _: &SegmentClose) -> Result<Option<SegmentRow>, SinkError> {
            self.0.lock().unwrap().push("close".into());
            Ok(None)
        }
        fn abort(&mut self) {
            self.0.lock().unwrap().push("abort".into());
        }
    }

    fn start(seq: u64) -> SegmentEvent {
        SegmentEvent::Start(SegmentStart {
            meta: SegmentMeta {
                device: "d".into(),
                app: String::new(),
                stream: "s".into(),
                seq,
                start_ms: 0,
                formats: vec![],
                time_quality: None,
                boot: None,
            },
            params: Arc::new(StreamParams::default()),
            base_dts: vec![],
        })
    }

    fn frag(n: u32) -> SegmentEvent {
        SegmentEvent::Fragment(Fragment {
            sequence: n,
            runs: vec![],
        })
    }

    fn close() -> SegmentEvent {
        SegmentEvent::Close(SegmentClose {
            reason: CloseReason::Interval,
            start_ms: 0,
            duration_ms: 1,
            end_ms: 1,
        })
    }

    #[test]
    fn every_sink_sees_the_same_events_in_order() {
        let a = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::new(Mutex::new(Vec::new()));
        let mut set = SinkSet::new(vec![
            Box::new(Log(a.clone(), false)),
            Box::new(Log(b.clone(), false)),
        ]);
        let r = set.apply(vec![start(1), frag(1), frag(2), close(), start(2), frag(1)]);
        assert!(r.error.is_none());
        let want = ["start 1", "frag 1", "frag 2", "close", "start 2", "frag 1"];
        assert_eq!(*a.lock().unwrap(), want);
        assert_eq!(*b.lock().unwrap(), want);
        assert!(set.is_open());
    }

    #[test]
    fn after_an_error_the_open_segment_still_closes_and_nothing_new_starts() {
        let a = Arc::new(Mutex::new(Vec::new()));
        let mut set = SinkSet::new(vec![Box::new(Log(a.clone(), true))]);
        let r = set.apply(vec![start(1), frag(1), frag(2), close(), start(2), frag(1)]);
        assert!(matches!(r.error, Some(SinkError::Encode { .. })));
        assert!(!set.is_open());
        assert_eq!(*a.lock().unwrap(), ["start 1", "close"]);
    }

    /// A sink whose start fails.
    struct NoStart;

    impl Sink for NoStart {
        fn start(&mut self, _: &Arc<SegmentStart>) -> Result<(), SinkError> {
            Err(SinkError::Encode {
                seq: 0,
                reason: "disk says no".into(),
            })
        }
        fn fragment(&mut self, _: &SegmentStart, _: &Fragment) -> Result<(), SinkError> {
            Ok(())
        }
        fn close(&mut self, _: &SegmentClose) -> Result<Option<SegmentRow>, SinkError> {
            Ok(None)
        }
        fn abort(&mut self) {}
    }

    /// A sink that refuses every stream.
    struct Refuses;

    impl Sink for Refuses {
        fn accepts(&self, _: &SegmentStart) -> Result<(), SinkError> {
            Err(SinkError::Refused {
                template: "t".into(),
                format: "flv",
                reason: "no".into(),
            })
        }
        fn start(&mut self, _: &Arc<SegmentStart>) -> Result<(), SinkError> {
            unreachable!("never started")
        }
        fn fragment(&mut self, _: &SegmentStart, _: &Fragment) -> Result<(), SinkError> {
            unreachable!()
        }
        fn close(&mut self, _: &SegmentClose) -> Result<Option<SegmentRow>, SinkError> {
            unreachable!()
        }
        fn abort(&mut self) {}
    }

    #[test]
    fn a_failed_start_opens_nothing_so_its_fragments_count_as_nothing_written() {
        let mut set = SinkSet::new(vec![Box::new(NoStart)]);
        let r = set.apply(vec![start(1)]);
        assert!(r.error.is_some());
        assert!(!set.is_open());
        let r = set.apply(vec![frag(1), frag(2)]);
        assert!(r.error.is_none());
        assert!(!r.wrote, "nothing reached a segment");
        let a = Arc::new(Mutex::new(Vec::new()));
        let mut ok = SinkSet::new(vec![Box::new(Log(a, false))]);
        assert!(!ok.apply(vec![start(1)]).wrote);
        assert!(ok.apply(vec![frag(1)]).wrote);
    }

    #[test]
    fn a_sink_refusing_the_stream_keeps_every_sink_from_starting() {
        let a = Arc::new(Mutex::new(Vec::new()));
        let mut set = SinkSet::new(vec![Box::new(Log(a.clone(), false)), Box::new(Refuses)]);
        let r = set.apply(vec![start(1), frag(1), close()]);
        assert!(matches!(r.error, Some(SinkError::Refused { .. })));
        // A later batch of the same segment finds nothing open either.
        assert!(set.apply(vec![frag(2), close()]).error.is_none());
        assert!(a.lock().unwrap().is_empty(), "{:?}", a.lock().unwrap());
        assert!(!set.is_open());
    }

    #[test]
    fn fragments_without_an_open_segment_are_ignored() {
        let a = Arc::new(Mutex::new(Vec::new()));
        let mut set = SinkSet::new(vec![Box::new(Log(a.clone(), false))]);
        assert!(set.apply(vec![frag(1), close()]).error.is_none());
        assert!(a.lock().unwrap().is_empty());
    }
}
