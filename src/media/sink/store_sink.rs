//! The fMP4 sink: encodes each event with [`crate::media::format::fmp4`] and writes it through the
//! store's durability protocol. The store also produces the progressive MP4 at close when the
//! template asks for `mp4`.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{debug, warn};

use crate::media::format::{fmp4, Format};
use crate::media::segment::{Fragment, SegmentClose, SegmentStart};
use crate::storage::store::{SegmentRow, SegmentWriter, Store};
use crate::util::naming::{self, NameVars};

use super::{Sink, SinkError};

/// Writes a stream's segments into the store.
pub struct StoreSink {
    store: Arc<Store>,
    formats: Vec<Format>,
    naming: String,
    writer: Option<SegmentWriter>,
}

impl StoreSink {
    pub fn new(store: Arc<Store>, formats: Vec<Format>, naming: String) -> Self {
        StoreSink {
            store,
            formats,
            naming,
            writer: None,
        }
    }

    fn name_for(&self, start: &SegmentStart) -> Result<PathBuf, SinkError> {
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
}

impl Sink for StoreSink {
    fn start(&mut self, start: &Arc<SegmentStart>) -> Result<(), SinkError> {
        let rel = self.name_for(start)?;
        // The file records the formats asked for, so recovery can finish it as asked.
        let mut start = SegmentStart::clone(start);
        start.meta.formats = self.formats.clone();
        let init = fmp4::encode_init(&start).map_err(|e| SinkError::Encode {
            seq: start.meta.seq,
            reason: e.to_string(),
        })?;
        self.writer = Some(self.store.begin(&start.meta, &rel, &self.formats, &init)?);
        debug!(seq = start.meta.seq, "segment started");
        Ok(())
    }

    fn fragment(&mut self, start: &SegmentStart, frag: &Fragment) -> Result<(), SinkError> {
        let Some(w) = &mut self.writer else {
            return Ok(());
        };
        // On error the writer has cut the file back to its last good fragment, so the
        // segment can still be closed.
        w.append(&fmp4::encode_fragment(start, frag))?;
        Ok(())
    }

    fn close(&mut self, close: &SegmentClose) -> Result<Option<SegmentRow>, SinkError> {
        match self.writer.take() {
            Some(w) => Ok(w.finish(close)?),
            None => Ok(None),
        }
    }

    fn abort(&mut self) {
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
