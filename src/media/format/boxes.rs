//! Box plumbing shared by the fMP4 encoder, the scanner and the progressive writer: sample
//! flag values, reading top-level box headers from a seekable file without trusting it, and
//! resolving a decoded `moof` into samples with absolute file offsets.

use std::io::{self, Read, Seek, SeekFrom};

use mp4_atom::{Atom, Moof, Trex};

use super::FormatError;

/// `sample_flags` of a sync sample: depends on no other sample (an I/IDR frame, or audio).
pub(crate) const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: depends on others, `sample_is_non_sync_sample` set.
pub(crate) const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Whether `sample_flags` describe a sync sample (`sample_is_non_sync_sample` clear).
pub(crate) fn is_sync(flags: u32) -> bool {
    flags & 0x0001_0000 == 0
}

/// Writes a box header for a box whose body is `body_len` bytes, using a 64-bit size
/// when the box would not fit a 32-bit one.
pub(crate) fn put_header(out: &mut Vec<u8>, kind: &[u8; 4], body_len: u64) {
    let total = body_len + 8;
    if total > u64::from(u32::MAX) {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(&(body_len + 16).to_be_bytes());
    } else {
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(kind);
    }
}

/// Length of the header [`put_header`] writes for a body of `body_len` bytes.
pub(crate) fn header_len(body_len: u64) -> u64 {
    if body_len + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    }
}

/// Encodes an mp4-atom box onto `out`, naming the box in the error.
pub(crate) fn encode_atom<T: mp4_atom::Encode>(
    atom: &T,
    what: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    atom.encode(out)
        .map_err(|source| FormatError::Encode { what, source })
}

/// Maps an I/O error to a [`FormatError`] at `offset`.
pub(crate) fn io_at(offset: u64) -> impl FnOnce(io::Error) -> FormatError {
    move |source| FormatError::Io { offset, source }
}

/// A complete top-level box found in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BoxHeader {
    pub kind: [u8; 4],
    /// Offset of the first header byte.
    pub start: u64,
    /// 8, or 16 with a 64-bit size.
    pub header_len: u64,
    /// Total size including the header.
    pub size: u64,
}

impl BoxHeader {
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
    pub fn body_start(&self) -> u64 {
        self.start + self.header_len
    }
    pub fn body_len(&self) -> u64 {
        self.size - self.header_len
    }
}

/// What [`read_header`] found at an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// A box that lies entirely inside the file.
    Box(BoxHeader),
    /// No complete box starts here: too few bytes for a header, a zero size (the untouched
    /// tail of a torn file), a size smaller than its header, or a box running past the end.
    Torn,
}

/// Reads the header of the box starting at `offset` in a file of `file_len` bytes.
pub(crate) fn read_header<R: Read + Seek>(
    r: &mut R,
    offset: u64,
    file_len: u64,
) -> Result<Found, FormatError> {
    let avail = file_len.saturating_sub(offset);
    if avail < 8 {
        return Ok(Found::Torn);
    }
    r.seek(SeekFrom::Start(offset)).map_err(io_at(offset))?;
    let mut head = [0u8; 8];
    r.read_exact(&mut head).map_err(io_at(offset))?;
    let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let kind = [head[4], head[5], head[6], head[7]];
    let (header_len, size) = match size32 {
        0 => return Ok(Found::Torn),
        1 => {
            if avail < 16 {
                return Ok(Found::Torn);
            }
            let mut large = [0u8; 8];
            r.read_exact(&mut large).map_err(io_at(offset + 8))?;
            (16, u64::from_be_bytes(large))
        }
        n => (8, u64::from(n)),
    };
    if size < header_len || size > avail {
        return Ok(Found::Torn);
    }
    Ok(Found::Box(BoxHeader {
        kind,
        start: offset,
        header_len,
        size,
    }))
}

/// Reads a box's body into memory, or `None` if it is larger than `max` bytes.
pub(crate) fn read_body<R: Read + Seek>(
    r: &mut R,
    header: &BoxHeader,
    max: u64,
) -> Result<Option<Vec<u8>>, FormatError> {
    if header.body_len() > max {
        return Ok(None);
    }
    let at = header.body_start();
    r.seek(SeekFrom::Start(at)).map_err(io_at(at))?;
    let mut body = vec![0u8; header.body_len() as usize];
    r.read_exact(&mut body).map_err(io_at(at))?;
    Ok(Some(body))
}

/// Reads and decodes a box, or `None` if it is larger than `max` bytes or does not decode.
pub(crate) fn read_atom<T: Atom, R: Read + Seek>(
    r: &mut R,
    h: &BoxHeader,
    max: u64,
) -> Result<Option<T>, FormatError> {
    let Some(body) = read_body(r, h, max)? else {
        return Ok(None);
    };
    Ok(T::decode_body(&mut &body[..]).ok())
}

/// Largest `moof` read into memory (a 1 s fragment's moof is a few KB).
const MAX_MOOF_BYTES: u64 = 16 * 1024 * 1024;

/// A complete fragment: its tracks' samples, and where its `mdat` ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FragmentAt {
    pub tracks: Vec<TrackFragment>,
    pub end: u64,
}

/// Reads the fragment whose `moof` is `moof`: `None` unless the moof decodes and is followed
/// by a complete `mdat` that holds every one of its samples (a torn or corrupt fragment).
pub(crate) fn read_fragment<R: Read + Seek>(
    r: &mut R,
    moof: &BoxHeader,
    file_len: u64,
    trex: &[Trex],
) -> Result<Option<FragmentAt>, FormatError> {
    let Some(decoded) = read_atom::<Moof, _>(r, moof, MAX_MOOF_BYTES)? else {
        return Ok(None);
    };
    let Found::Box(mdat) = read_header(r, moof.end(), file_len)? else {
        return Ok(None);
    };
    if &mdat.kind != b"mdat" {
        return Ok(None);
    }
    let Some(tracks) = resolve_moof(&decoded, moof.start, trex) else {
        return Ok(None);
    };
    let inside = |s: &FragSample| {
        s.offset >= mdat.body_start() && s.offset.saturating_add(u64::from(s.size)) <= mdat.end()
    };
    if !tracks.iter().flat_map(|t| &t.samples).all(inside) {
        return Ok(None);
    }
    Ok(Some(FragmentAt {
        tracks,
        end: mdat.end(),
    }))
}

/// One sample of a fragment, with every default resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragSample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    pub cts: i64,
    /// Absolute file offset of the sample's first byte.
    pub offset: u64,
}

/// One track's samples in one fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrackFragment {
    pub track_id: u32,
    /// `tfdt`, if present.
    pub base_decode_time: Option<u64>,
    pub samples: Vec<FragSample>,
}

impl TrackFragment {
    /// Sum of the sample durations.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

/// Resolves every `traf` of a `moof` that starts at `moof_start` into samples with absolute
/// offsets, applying `tfhd` then `trex` defaults. `None` if an offset is out of range, which
/// only a corrupt file produces.
pub(crate) fn resolve_moof(
    moof: &Moof,
    moof_start: u64,
    trex: &[Trex],
) -> Option<Vec<TrackFragment>> {
    let mut out = Vec::with_capacity(moof.traf.len());
    // Without base-data-offset or default-base-is-moof, the first traf's base is the moof
    // and each later one continues where the previous traf's data ended.
    let mut implicit_base = moof_start;
    for traf in &moof.traf {
        let tfhd = &traf.tfhd;
        let trex = trex.iter().find(|t| t.track_id == tfhd.track_id);
        let base = match (tfhd.base_data_offset, tfhd.default_base_is_moof) {
            (Some(b), _) => b,
            (None, true) => moof_start,
            (None, false) => implicit_base,
        };
        let mut samples = Vec::new();
        let mut next = base;
        for trun in &traf.trun {
            if let Some(off) = trun.data_offset {
                next = base.checked_add_signed(i64::from(off))?;
            }
            for entry in trun.samples.iter() {
                let size = entry
                    .size
                    .or(tfhd.default_sample_size)
                    .or(trex.map(|t| t.default_sample_size))?;
                samples.push(FragSample {
                    duration: entry
                        .duration
                        .or(tfhd.default_sample_duration)
                        .or(trex.map(|t| t.default_sample_duration))
                        .unwrap_or(0),
                    size,
                    flags: entry
                        .flags
                        .or(tfhd.default_sample_flags)
                        .or(trex.map(|t| t.default_sample_flags))
                        .unwrap_or(0),
                    cts: entry.cts.unwrap_or(0),
                    offset: next,
                });
                next = next.checked_add(u64::from(size))?;
            }
        }
        implicit_base = next;
        out.push(TrackFragment {
            track_id: tfhd.track_id,
            base_decode_time: traf.tfdt.as_ref().map(|t| t.base_media_decode_time),
            samples,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn header_with_zero_size_is_a_torn_tail() {
        let mut f = Cursor::new(vec![0u8; 32]);
        assert_eq!(read_header(&mut f, 0, 32).unwrap(), Found::Torn);
    }

    #[test]
    fn header_past_end_of_file_is_torn_and_inside_is_a_box() {
        let mut bytes = Vec::new();
        put_header(&mut bytes, b"free", 8);
        bytes.extend_from_slice(&[0; 8]);
        let mut f = Cursor::new(bytes);
        assert_eq!(read_header(&mut f, 0, 15).unwrap(), Found::Torn);
        let Found::Box(h) = read_header(&mut f, 0, 16).unwrap() else {
            panic!("complete box not found");
        };
        assert_eq!((&h.kind, h.size, h.body_len()), (b"free", 16, 8));
    }

    #[test]
    fn large_size_header_round_trips() {
        let mut bytes = Vec::new();
        put_header(&mut bytes, b"mdat", u64::from(u32::MAX));
        assert_eq!(bytes.len() as u64, header_len(u64::from(u32::MAX)));
        let file_len = u64::from(u32::MAX) + 16;
        let Found::Box(h) = read_header(&mut Cursor::new(bytes), 0, file_len).unwrap() else {
            panic!("large box not found");
        };
        assert_eq!((h.header_len, h.end()), (16, file_len));
    }

    #[test]
    fn sync_flags_are_told_apart() {
        assert!(is_sync(SYNC_SAMPLE_FLAGS));
        assert!(!is_sync(NON_SYNC_SAMPLE_FLAGS));
    }
}
