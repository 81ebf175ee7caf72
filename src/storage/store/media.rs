//! The store's doorway to the format readers and writers: scan one of our files, and turn
//! an fMP4 into a progressive MP4 durably (temporary file written and fsynced; the caller
//! renames it).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use crate::media::format::{progressive, scan};
use crate::media::segment::event::SegmentMeta;

use super::error::StoreError;

/// What a scan of a file tells the store.
#[derive(Clone, Debug)]
pub(crate) struct Scanned {
    /// Our identity, if the file carries it.
    pub meta: Option<SegmentMeta>,
    /// End of the last complete moof+mdat (of the init section if there is none).
    pub complete_end: u64,
    /// Number of complete fragments.
    pub fragments: u64,
    /// Media duration of the complete part.
    pub duration_ms: u64,
}

/// Scan the file at `path`.
pub(crate) fn scan(path: &Path) -> Result<Scanned, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let s = scan::scan(BufReader::new(file)).map_err(|e| StoreError::Media {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Scanned {
        meta: s.meta,
        complete_end: s.complete_end,
        fragments: s.fragments as u64,
        duration_ms: s.duration_ms,
    })
}

/// Write the progressive MP4 made from the fMP4 at `fmp4` to `tmp` (created or truncated)
/// and fsync it. Returns its size.
pub(crate) fn write_progressive(fmp4: &Path, tmp: &Path) -> Result<u64, StoreError> {
    let src = File::open(fmp4).map_err(|e| StoreError::io("open", fmp4, e))?;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| StoreError::io("create", tmp, e))?;
    let mut w = BufWriter::new(out);
    progressive::write_progressive(BufReader::new(src), &mut w).map_err(|e| StoreError::Media {
        path: fmp4.to_path_buf(),
        reason: format!("making the progressive MP4 {}: {e}", tmp.display()),
    })?;
    w.flush().map_err(|e| StoreError::io("write", tmp, e))?;
    let out = w
        .into_inner()
        .map_err(|e| StoreError::io("write", tmp, e.into_error()))?;
    out.sync_all()
        .map_err(|e| StoreError::io("fsync", tmp, e))?;
    let len = out
        .metadata()
        .map_err(|e| StoreError::io("stat", tmp, e))?
        .len();
    Ok(len)
}
