//! The store's doorway to the format readers and writers: scan one of our files (fMP4, FLV
//! or ADTS), repair a torn one's metadata, and turn an fMP4 into a progressive MP4 durably
//! (temporary file written and fsynced; the caller renames it).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::media::format::{adts, flv, progressive, scan, Container, Patch};
use crate::media::segment::event::SegmentMeta;

use super::error::StoreError;

/// What a scan of a file tells the store.
#[derive(Clone, Debug)]
pub(crate) struct Scanned {
    /// Our identity, if the file carries it.
    pub meta: Option<SegmentMeta>,
    /// End of the last complete unit (fMP4 moof+mdat, FLV tag, ADTS frame); of the file's
    /// head when there is none.
    pub complete_end: u64,
    /// Number of complete units: fMP4 fragments, FLV audio/video tags, ADTS frames. A
    /// progressive MP4 has none.
    pub fragments: u64,
    /// Media duration of the complete part.
    pub duration_ms: u64,
    /// What to write over the file once it is cut back to `complete_end`, so that its own
    /// metadata describes what is left (FLV's onMetaData).
    pub repair: Option<Patch>,
}

/// Scan the file at `path`, one of `container`'s.
pub(crate) fn scan(container: Container, path: &Path) -> Result<Scanned, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let bad = |e: crate::media::format::FormatError| StoreError::Media {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let r = BufReader::new(file);
    Ok(match container {
        Container::Mp4 | Container::Hls => {
            let s = scan::scan(r).map_err(bad)?;
            Scanned {
                meta: s.meta,
                complete_end: s.complete_end,
                fragments: s.fragments as u64,
                duration_ms: s.duration_ms,
                repair: None,
            }
        }
        Container::Flv => {
            let s = flv::scan(r).map_err(bad)?;
            Scanned {
                repair: flv::repair_patch(&s),
                meta: s.meta,
                complete_end: s.complete_end,
                fragments: s.frames,
                duration_ms: s.duration_ms,
            }
        }
        Container::Adts => {
            let s = adts::scan(r).map_err(bad)?;
            Scanned {
                meta: s.meta,
                complete_end: s.complete_end,
                fragments: s.frames,
                duration_ms: s.duration_ms,
                repair: None,
            }
        }
    })
}

/// Cut the working file at `path` back to `scan.complete_end`, write its repair patch,
/// and fsync it.
pub(crate) fn cut_back(path: &Path, scan: &Scanned) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))?;
    file.set_len(scan.complete_end)
        .map_err(|e| StoreError::io("truncate", path, e))?;
    if let Some(p) = &scan.repair {
        if p.offset + p.bytes.len() as u64 <= scan.complete_end {
            file.write_all_at(&p.bytes, p.offset)
                .map_err(|e| StoreError::io("write", path, e))?;
        }
    }
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path, e))
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
