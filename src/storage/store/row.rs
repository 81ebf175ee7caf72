//! What the index stores per segment, and where a segment's files live.
//!
//! A row is stored as one version byte followed by the row in postcard. postcard is not
//! self-describing, so a change to these types bumps [`ROW_VERSION`] and adds a decoder for
//! the old layout. New [`UploadState`] and [`TimeQuality`] variants may be appended without
//! a bump (postcard encodes an enum variant by its index).
//!
//! Versions: 1 had no clock fields; 2 added `time_quality` and `boot` at the end. A version 1
//! row reads as `synced` with no boot time (the trust it had when it was written), and is
//! written back as version 2 the next time it changes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::media::format::{Container, Format};
use crate::media::segment::event::SegmentMeta;
use crate::util::clockwatch::{BootTime, TimeQuality};

use super::error::StoreError;

/// Index key of a segment; allocated increasing, never reused.
pub type SegmentId = u64;

/// Layout version of an encoded [`SegmentRow`].
pub(crate) const ROW_VERSION: u8 = 2;
/// The layout before the clock fields.
const ROW_VERSION_1: u8 = 1;

/// Suffix of the progressive MP4 while it is being produced (distinct from the working file
/// even when only `mp4` is asked, where the final names would collide).
pub(crate) const PROGRESSIVE_TMP_SUFFIX: &str = ".progressive.mp4.part";

/// Life cycle of a row. See the protocol in the module docs of [`crate::storage::store`].
// Names are lower case in JSON (`segments --json`, the control socket); postcard in the
// index encodes variants by position, so the spelling does not touch stored rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentState {
    /// A writer owns it; its working file is `<base>.mp4.part` (`.flv.part`, `.aac.part`).
    Writing,
    /// Its files are complete, fsynced and renamed to their final names.
    Closed,
    /// Being deleted: its files may or may not still exist.
    Deleting,
}

/// Where a segment is in the upload pipeline (see [`crate::sync::upload`]). A job is never given
/// up, so there is no "failed" state: its failures are kept with its upload progress.
///
/// postcard stores the variant's position: never reorder these, append new ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Not selected for upload.
    #[default]
    NotQueued,
    /// Waiting in the upload queue.
    Pending {
        /// When it was queued, ms since the Unix epoch.
        queued_at_ms: i64,
        /// Failed attempts so far (the last error is in the job's upload progress).
        attempts: u32,
    },
    /// Uploaded; retention may treat it as safe to evict first.
    Uploaded {
        /// Object URL (without credentials).
        url: String,
        /// When the upload completed, ms since the Unix epoch.
        at_ms: i64,
    },
    /// Position 3 belonged to a `Failed` state that no build ever wrote (a job is never
    /// given up). It stays reserved so that no other state is ever read from such bytes
    /// (they fail to decode instead). Never constructed.
    #[doc(hidden)]
    #[serde(skip)]
    Reserved3,
}

/// One file of a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFile {
    /// What the file holds.
    pub format: Format,
    /// Relative to the store root.
    pub path: PathBuf,
    pub bytes: u64,
}

/// One segment in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRow {
    /// Index key.
    pub id: SegmentId,
    /// Device that recorded it ([`SegmentMeta::device`]).
    pub device: String,
    /// Application name (empty for pulled streams).
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Per-stream sequence number.
    pub seq: u64,
    /// Wall-clock time of the first frame, ms since the Unix epoch.
    pub start_ms: i64,
    /// Wall-clock end (`start_ms` while writing).
    pub end_ms: i64,
    /// Media duration (0 while writing).
    pub duration_ms: u64,
    /// Bytes of all files (0 while writing).
    pub bytes: u64,
    /// Final files (empty while writing).
    pub files: Vec<SegmentFile>,
    pub state: SegmentState,
    /// Closed by recovery after a crash rather than by its writer.
    pub recovered: bool,
    pub upload: UploadState,
    /// When the row became `Closed`, ms since the Unix epoch (0 before).
    pub closed_at_ms: i64,
    /// The expanded, de-duplicated name without extension, relative to the root; all file
    /// names of the segment derive from it.
    pub base: PathBuf,
    /// The formats asked for.
    pub formats: Vec<Format>,
    /// How far `start_ms` and `end_ms` can be trusted (see `docs/time.md`).
    pub time_quality: TimeQuality,
    /// Where it started on the boot clock, and the offset its times are stamped with;
    /// `None` for segments recorded before edgerec kept it.
    pub boot: Option<BootTime>,
}

/// A version 1 row: [`SegmentRow`] without its clock fields. Never reorder.
#[derive(Deserialize)]
struct SegmentRowV1 {
    id: SegmentId,
    device: String,
    app: String,
    stream: String,
    seq: u64,
    start_ms: i64,
    end_ms: i64,
    duration_ms: u64,
    bytes: u64,
    files: Vec<SegmentFile>,
    state: SegmentState,
    recovered: bool,
    upload: UploadState,
    closed_at_ms: i64,
    base: PathBuf,
    formats: Vec<Format>,
}

impl From<SegmentRowV1> for SegmentRow {
    fn from(r: SegmentRowV1) -> SegmentRow {
        SegmentRow {
            id: r.id,
            device: r.device,
            app: r.app,
            stream: r.stream,
            seq: r.seq,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            duration_ms: r.duration_ms,
            bytes: r.bytes,
            files: r.files,
            state: r.state,
            recovered: r.recovered,
            upload: r.upload,
            closed_at_ms: r.closed_at_ms,
            base: r.base,
            formats: r.formats,
            time_quality: TimeQuality::Synced,
            boot: None,
        }
    }
}

impl SegmentRow {
    /// The identity written inside the segment's files (without its clock fields, which
    /// are not identity).
    pub fn meta(&self) -> SegmentMeta {
        SegmentMeta {
            device: self.device.clone(),
            app: self.app.clone(),
            stream: self.stream.clone(),
            seq: self.seq,
            start_ms: self.start_ms,
            formats: vec![],
            time_quality: None,
            boot: None,
        }
    }

    /// A fresh `Writing` row.
    pub(crate) fn writing(
        id: SegmentId,
        meta: &SegmentMeta,
        base: PathBuf,
        formats: Vec<Format>,
    ) -> Self {
        SegmentRow {
            id,
            device: meta.device.clone(),
            app: meta.app.clone(),
            stream: meta.stream.clone(),
            seq: meta.seq,
            start_ms: meta.start_ms,
            end_ms: meta.start_ms,
            duration_ms: 0,
            bytes: 0,
            files: Vec::new(),
            state: SegmentState::Writing,
            recovered: false,
            upload: UploadState::NotQueued,
            closed_at_ms: 0,
            base,
            formats,
            time_quality: meta.time_quality.unwrap_or_default(),
            boot: meta.boot.clone(),
        }
    }

    /// Move the row's times onto the wall − boot offset `offset_ms` (a re-stamp after a
    /// clock correction): start and end move by the difference to the offset they were
    /// stamped with, and the row becomes `corrected`. False (unchanged) when the row has
    /// no boot time or already is on that offset.
    pub fn restamp(&mut self, offset_ms: i64) -> bool {
        let Some(boot) = &mut self.boot else {
            return false;
        };
        let delta = offset_ms - boot.offset_ms;
        if delta == 0 {
            return false;
        }
        boot.offset_ms = offset_ms;
        self.start_ms = self.start_ms.saturating_add(delta);
        self.end_ms = self.end_ms.saturating_add(delta);
        self.time_quality = TimeQuality::Corrected;
        true
    }

    /// The working file, relative to the root.
    pub fn working_path(&self) -> PathBuf {
        with_suffix(&self.base, self.container().working_suffix())
    }

    /// The container the row's formats are written through (all of them share one).
    pub fn container(&self) -> Container {
        self.formats
            .first()
            .map_or(Container::Mp4, |f| f.container())
    }

    /// The format whose final file is the working file renamed (`None` for `mp4` alone).
    pub(crate) fn renamed_format(&self) -> Option<Format> {
        self.container().renamed(&self.formats)
    }

    /// The final name of `format`'s file, relative to the root.
    pub fn final_path(&self, format: Format) -> PathBuf {
        final_path(&self.base, format, &self.formats)
    }

    /// The progressive MP4's temporary name, relative to the root.
    pub(crate) fn progressive_tmp_path(&self) -> PathBuf {
        with_suffix(&self.base, PROGRESSIVE_TMP_SUFFIX)
    }

    pub(crate) fn has(&self, format: Format) -> bool {
        self.formats.contains(&format)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![ROW_VERSION];
        // Serializing plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub(crate) fn decode(id: SegmentId, bytes: &[u8]) -> Result<SegmentRow, StoreError> {
        let bad = |source| StoreError::BadRow { id, source };
        match bytes.split_first() {
            Some((&ROW_VERSION, rest)) => postcard::from_bytes(rest).map_err(bad),
            Some((&ROW_VERSION_1, rest)) => postcard::from_bytes::<SegmentRowV1>(rest)
                .map(SegmentRow::from)
                .map_err(bad),
            _ => Err(StoreError::BadRow {
                id,
                source: postcard::Error::DeserializeBadEncoding,
            }),
        }
    }
}

/// The final name of `format`'s file for a segment named `base` asking for `formats`.
pub(crate) fn final_path(base: &Path, format: Format, formats: &[Format]) -> PathBuf {
    with_suffix(base, format.suffix(formats.contains(&Format::Fmp4)))
}

/// `path` with `suffix` appended to its last component (`a/b` + `.mp4` = `a/b.mp4`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `path` with `suffix` removed from its end, if it ends so.
pub(crate) fn strip_suffix(path: &Path, suffix: &str) -> Option<PathBuf> {
    let s = path.to_str()?;
    s.strip_suffix(suffix).map(PathBuf::from)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn row() -> SegmentRow {
        let meta = SegmentMeta {
            device: "pi".into(),
            app: String::new(),
            stream: "door".into(),
            seq: 7,
            start_ms: 1_700_000_000_000,
            formats: vec![],
            time_quality: None,
            boot: None,
        };
        SegmentRow::writing(
            3,
            &meta,
            PathBuf::from("door/2024-01-01/12-00-00"),
            vec![Format::Fmp4, Format::Mp4],
        )
    }

    #[test]
    fn row_round_trips_through_its_encoding() {
        let mut r = row();
        r.upload = UploadState::Uploaded {
            url: "s3://b/k".into(),
            at_ms: 5,
        };
        let back = SegmentRow::decode(3, &r.encode()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_retired_failed_position_never_decodes_as_another_upload_state() {
        // The layout of the builds that still declared `Failed`.
        #[derive(Serialize)]
        #[allow(dead_code)]
        enum Old {
            NotQueued,
            Pending {
                queued_at_ms: i64,
                attempts: u32,
            },
            Uploaded {
                url: String,
                at_ms: i64,
            },
            Failed {
                reason: String,
                at_ms: i64,
                attempts: u32,
            },
        }
        let up = postcard::to_allocvec(&Old::Uploaded {
            url: "u".into(),
            at_ms: 1,
        })
        .unwrap();
        assert_eq!(
            postcard::from_bytes::<UploadState>(&up).unwrap(),
            UploadState::Uploaded {
                url: "u".into(),
                at_ms: 1
            }
        );
        let failed = postcard::to_allocvec(&Old::Failed {
            reason: "x".into(),
            at_ms: 1,
            attempts: 2,
        })
        .unwrap();
        assert!(postcard::from_bytes::<UploadState>(&failed).is_err());
    }

    /// The version 1 layout, as the builds before the clock fields wrote it.
    #[derive(Serialize)]
    struct V1<'a> {
        id: SegmentId,
        device: &'a str,
        app: &'a str,
        stream: &'a str,
        seq: u64,
        start_ms: i64,
        end_ms: i64,
        duration_ms: u64,
        bytes: u64,
        files: &'a [SegmentFile],
        state: SegmentState,
        recovered: bool,
        upload: &'a UploadState,
        closed_at_ms: i64,
        base: &'a Path,
        formats: &'a [Format],
    }

    /// `r` encoded as a version 1 build encoded it.
    pub(crate) fn encode_v1(r: &SegmentRow) -> Vec<u8> {
        let v1 = V1 {
            id: r.id,
            device: &r.device,
            app: &r.app,
            stream: &r.stream,
            seq: r.seq,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            duration_ms: r.duration_ms,
            bytes: r.bytes,
            files: &r.files,
            state: r.state,
            recovered: r.recovered,
            upload: &r.upload,
            closed_at_ms: r.closed_at_ms,
            base: &r.base,
            formats: &r.formats,
        };
        let mut out = vec![1u8];
        out.extend(postcard::to_allocvec(&v1).unwrap());
        out
    }

    #[test]
    fn a_version_1_row_reads_as_synced_without_a_boot_time() {
        let mut r = row();
        r.state = SegmentState::Closed;
        r.files = vec![SegmentFile {
            format: Format::Fmp4,
            path: "door/x.mp4".into(),
            bytes: 9,
        }];
        r.upload = UploadState::Pending {
            queued_at_ms: 4,
            attempts: 1,
        };
        let back = SegmentRow::decode(3, &encode_v1(&r)).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.time_quality, TimeQuality::Synced);
        assert_eq!(back.boot, None);
        assert_eq!(
            back.encode()[0],
            ROW_VERSION,
            "written back as the new version"
        );
    }

    #[test]
    fn a_restamp_moves_start_and_end_onto_the_new_offset_once() {
        let mut r = row();
        r.end_ms = r.start_ms + 4_000;
        r.time_quality = TimeQuality::Unsynced;
        r.boot = Some(BootTime {
            id: "b".into(),
            ms: 10_000,
            offset_ms: r.start_ms - 10_000,
        });
        let truth = 1_796_000_000_000;
        assert!(r.restamp(truth - 10_000));
        assert_eq!((r.start_ms, r.end_ms), (truth, truth + 4_000));
        assert_eq!(r.time_quality, TimeQuality::Corrected);
        assert!(!r.restamp(truth - 10_000), "already on that offset");
        let mut old = row();
        assert!(!old.restamp(5), "no boot time: nothing to go by");
    }

    #[test]
    fn unknown_row_version_is_an_error_naming_the_row() {
        let mut bytes = row().encode();
        bytes[0] = 99;
        let err = SegmentRow::decode(3, &bytes).unwrap_err();
        assert!(err.to_string().contains("row 3"), "{err}");
    }

    #[test]
    fn file_names_derive_from_the_base() {
        let r = row();
        assert_eq!(
            r.working_path(),
            PathBuf::from("door/2024-01-01/12-00-00.mp4.part")
        );
        assert_eq!(
            r.final_path(Format::Fmp4),
            PathBuf::from("door/2024-01-01/12-00-00.mp4")
        );
        assert_eq!(
            r.final_path(Format::Mp4),
            PathBuf::from("door/2024-01-01/12-00-00.progressive.mp4")
        );
    }

    #[test]
    fn mp4_only_progressive_temp_differs_from_working_file() {
        let mut r = row();
        r.formats = vec![Format::Mp4];
        assert_eq!(r.final_path(Format::Mp4), with_suffix(&r.base, ".mp4"));
        assert_ne!(r.progressive_tmp_path(), r.working_path());
        assert_ne!(r.progressive_tmp_path(), r.final_path(Format::Mp4));
    }

    #[test]
    fn flv_and_aac_rows_have_their_own_working_and_final_files() {
        let mut r = row();
        r.formats = vec![Format::Flv];
        assert_eq!(r.working_path(), with_suffix(&r.base, ".flv.part"));
        assert_eq!(r.final_path(Format::Flv), with_suffix(&r.base, ".flv"));
        assert_eq!(r.renamed_format(), Some(Format::Flv));
        r.formats = vec![Format::Aac];
        assert_eq!(r.working_path(), with_suffix(&r.base, ".aac.part"));
        assert_eq!(r.final_path(Format::Aac), with_suffix(&r.base, ".aac"));
    }

    #[test]
    fn strip_suffix_inverts_with_suffix() {
        let p = with_suffix(Path::new("a/b"), ".mp4.part");
        assert_eq!(strip_suffix(&p, ".mp4.part"), Some(PathBuf::from("a/b")));
        assert_eq!(strip_suffix(&p, ".txt"), None);
    }
}
