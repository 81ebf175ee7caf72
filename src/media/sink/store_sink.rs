//! The store sink: one container's files (fMP4, FLV or ADTS), encoded by that container's
//! [`Encoder`] and written through the store's durability protocol. The store also
//! produces the progressive MP4 at close when the template asks for `mp4`.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{debug, warn};

use crate::media::format::{self, Encoder, Format, FormatError};
use crate::media::segment::{Fragment, SegmentClose, SegmentStart};
use crate::storage::store::{SegmentRow, SegmentWriter, Store};
use crate::util::naming::{self, NameVars};

use super::{Sink, SinkError};

/// Writes a stream's segments of one container into the store.
pub struct StoreSink {
    store: Arc<Store>,
    /// The template's formats written through this container.
    formats: Vec<Format>,
    naming: String,
    /// The template's name, for refusals.
    template: String,
    encoder: Box<dyn Encoder>,
    writer: Option<SegmentWriter>,
    /// Length of the open (or last) segment's head.
    head_len: u64,
}

impl StoreSink {
    /// `formats` all of one container; `encoder` that container's.
    pub fn new(
        store: Arc<Store>,
        formats: Vec<Format>,
        naming: String,
        template: String,
        encoder: Box<dyn Encoder>,
    ) -> Self {
        StoreSink {
            store,
            formats,
            naming,
            template,
            encoder,
            writer: None,
            head_len: 0,
        }
    }

    /// Length of the head (init section) of the segment open or last closed.
    pub fn head_len(&self) -> u64 {
        self.head_len
    }

    /// The next segment begins a new recording (see [`Encoder::new_recording`]).
    pub fn new_recording(&mut self) {
        self.encoder.new_recording();
    }

    /// The expanded naming template for `start`'s segment.
    pub(super) fn name_for(&self, start: &SegmentStart) -> Result<PathBuf, SinkError> {
        let m = &start.meta;
        naming::expand(
            &self.naming,
            &NameVars {
                stream: &m.stream,
                app: &m.app,
                seq: m.seq,
                start_ms: m.start_ms,
            },
        )
        .map_err(|reason| SinkError::Naming {
            template: self.naming.clone(),
            reason,
        })
    }

    fn encode_error(&self, seq: u64, e: FormatError) -> SinkError {
        match e {
            FormatError::Refused { reason } => SinkError::Refused {
                template: self.template.clone(),
                format: self.formats[0].name(),
                reason,
            },
            e => SinkError::Encode {
                seq,
                reason: e.to_string(),
            },
        }
    }
}

impl Sink for StoreSink {
    fn accepts(&self, start: &SegmentStart) -> Result<(), SinkError> {
        let (video, audio) = format::codecs(&start.params);
        for f in &self.formats {
            if let Some(reason) = format::refusal(*f, video, audio) {
                return Err(SinkError::Refused {
                    template: self.template.clone(),
                    format: f.name(),
                    reason,
                });
            }
        }
        Ok(())
    }

    fn start(&mut self, start: &Arc<SegmentStart>) -> Result<(), SinkError> {
        let rel = self.name_for(start)?;
        // The file records the formats asked for, so recovery can finish it as asked.
        let mut start = SegmentStart::clone(start);
        start.meta.formats = self.formats.clone();
        let init = self
            .encoder
            .init(&start)
            .map_err(|e| self.encode_error(start.meta.seq, e))?;
        self.writer = Some(self.store.begin(&start.meta, &rel, &self.formats, &init)?);
        self.head_len = init.len() as u64;
        debug!(
            seq = start.meta.seq,
            format = self.formats[0].name(),
            "segment started"
        );
        Ok(())
    }

    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<(), SinkError> {
        if self.writer.is_none() {
            return Ok(());
        }
        let bytes = self
            .encoder
            .fragment(start, frag)
            .map_err(|e| self.encode_error(start.meta.seq, e))?;
        if bytes.is_empty() {
            // Nothing of this container's tracks in this fragment.
            return Ok(());
        }
        // On error the writer has cut the file back to its last good fragment, so the
        // segment can still be closed.
        if let Some(w) = &mut self.writer {
            w.append(&bytes)?;
        }
        Ok(())
    }

    fn close(&mut self, close: &SegmentClose) -> Result<Option<SegmentRow>, SinkError> {
        let patch = self.encoder.finish();
        match self.writer.take() {
            Some(mut w) => {
                if let Some(p) = patch.filter(|_| w.fragments() > 0) {
                    w.patch(&p)?;
                }
                Ok(w.finish(close)?)
            }
            None => Ok(None),
        }
    }

    fn abort(&mut self) {
        self.encoder.finish();
        let Some(w) = self.writer.take() else { return };
        if w.fragments() == 0 {
            if let Err(e) = w.abandon() {
                warn!(error = %e, "removing an empty segment failed; recovery removes it at the next start");
            }
        } else {
            // Never throw away written media: the working file and its row stay, and
            // recovery closes them at the next start.
            warn!(
                id = w.id(),
                "segment left open after an error; it is recovered at the next start"
            );
        }
    }
}
