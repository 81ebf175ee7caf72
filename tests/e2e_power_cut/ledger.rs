//! What the power-cut test knows, and the checks made against it: the segments the broker
//! was told about (each file's size and md5 when its event arrived), the segments not yet
//! confirmed when the power went (their fragments before and after the cut), the files
//! already decoded, and the figures. Checks panic; the test adds the cut and the seed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use edgerec::media::format::Format;
use edgerec::storage::store::{SegmentRow, SegmentState};

use crate::common::*;
use crate::mosquitto::Sub;

/// Where the recorder (device `e2e`) publishes its events.
pub const EVENTS: &str = "edgerec/e2e/events/";
/// Confirmed files whose md5 is checked again after each cut (all of them while there are
/// fewer): 50 cuts confirm about 300 files.
const REHASH_PER_CUT: usize = 400;

/// A file of a confirmed segment, as it was when its event arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSum {
    /// Relative to the storage root.
    pub path: String,
    pub bytes: u64,
    pub md5: String,
}

/// A segment a `segment.closed` or `segment.recovered` event confirmed to the broker.
#[derive(Clone, Debug)]
pub struct Confirmed {
    pub stream: String,
    pub seq: u64,
    pub files: Vec<FileSum>,
    /// By `segment.recovered`: recovery closed it after a crash.
    pub recovered: bool,
}

/// Complete fragments (moof+mdat pairs, by a plain box walk) of an fMP4 file, and the bytes
/// up to the end of the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frags {
    pub n: usize,
    pub bytes: u64,
}

impl Frags {
    pub fn of(path: &Path) -> Frags {
        let (n, bytes) = complete_fragments(path);
        Frags { n, bytes }
    }
}

/// A segment whose fMP4 was on the mount when the power went, without an event confirming
/// it: being written, or closed too recently for its event to have arrived.
#[derive(Clone, Debug)]
pub struct Unconfirmed {
    /// Its name without suffix, relative to the root (the row's `base`).
    pub base: String,
    /// What the recorder had written when it was stopped (the mount shows written data
    /// until the cut).
    pub at_kill: Frags,
    /// What the cut left.
    pub after_cut: Frags,
    /// After the cut it was a working file (`.mp4.part`), so recovery closes it as recovered.
    pub part_after_cut: bool,
}

/// The figures the test prints and docs/reliability.md reports.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub cuts: usize,
    pub tears: usize,
    /// Runs on a slow disk (every fsync stalled).
    pub slow: usize,
    /// Cuts that dropped data not yet fsynced, and the bytes they dropped (4 KiB pages,
    /// every file, the index included).
    pub cuts_dropping: usize,
    pub dropped_bytes: u64,
    /// Segments unconfirmed at a kill, and those of them with a fragment not yet durable.
    pub unconfirmed: usize,
    pub fragments_lost: usize,
    pub max_fragments_lost: usize,
    pub bytes_lost: u64,
    /// Working files recovery closed after a cut.
    pub recovered: usize,
    /// Unconfirmed segments the cut left without a complete fragment (recovery drops them).
    pub emptied: usize,
    /// Damage reported by `edgerec index check` (must stay 0), and the pending items.
    pub damage: usize,
    pub pending: usize,
}

#[derive(Default)]
pub struct Ledger {
    /// By event id.
    pub confirmed: BTreeMap<String, Confirmed>,
    /// Paths of every confirmed file.
    confirmed_paths: HashSet<String>,
    /// Messages of the subscriber already read.
    cursor: usize,
    /// Event messages received, and how many times each id came.
    pub messages: usize,
    pub ids: HashMap<String, usize>,
    /// Files ffmpeg has decoded, and those ffprobe has read too.
    pub decoded: HashSet<String>,
    pub probed: usize,
    /// Where the next bounded re-hash ([`Ledger::confirmed_intact_bounded`]) starts.
    rehash_from: usize,
    /// Unconfirmed segments of the last cut, for the next start's recovery.
    pending_recovery: Vec<Unconfirmed>,
    pub fig: Figures,
}

impl Ledger {
    /// Reads the events that arrived since the last call. A segment event seen for the first
    /// time has its files hashed now (through the mount); a repeated one must name the same
    /// files with the same sizes.
    pub fn take_events(&mut self, sub: &Sub, root: &Path) {
        let messages = sub.messages();
        for (topic, payload) in &messages[self.cursor.min(messages.len())..] {
            let Some(kind) = topic.strip_prefix(EVENTS) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(payload)
                .unwrap_or_else(|e| panic!("event {topic} is not JSON ({e}): {payload}"));
            let id = v["id"].as_str().unwrap_or_else(|| panic!("no id: {v}"));
            self.messages += 1;
            *self.ids.entry(id.to_string()).or_default() += 1;
            assert_ne!(
                kind, "segment.evicted",
                "retention evicted a segment, though nothing should fill the 1 GiB quota (is the \
                 disk holding the work directory full?): {v}"
            );
            if kind != "segment.closed" && kind != "segment.recovered" {
                continue;
            }
            let named: Vec<(String, u64)> = v["files"]
                .as_array()
                .unwrap_or_else(|| panic!("{kind} without files: {v}"))
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap().to_string(),
                        f["bytes"].as_u64().unwrap(),
                    )
                })
                .collect();
            if let Some(c) = self.confirmed.get(id) {
                let had: Vec<(String, u64)> =
                    c.files.iter().map(|f| (f.path.clone(), f.bytes)).collect();
                assert_eq!(
                    named, had,
                    "{id} was delivered again naming other files or sizes: {v}"
                );
                continue;
            }
            let files = named
                .into_iter()
                .map(|(path, bytes)| {
                    let abs = root.join(&path);
                    let len = std::fs::metadata(&abs)
                        .unwrap_or_else(|e| panic!("{kind} {id} arrived, but {path}: {e}"))
                        .len();
                    assert_eq!(
                        len, bytes,
                        "{kind} {id} arrived, but {path} has {len} bytes, not the event's {bytes}"
                    );
                    FileSum {
                        md5: md5_file(&abs),
                        path,
                        bytes,
                    }
                })
                .collect::<Vec<_>>();
            for f in &files {
                self.confirmed_paths.insert(f.path.clone());
            }
            let c = Confirmed {
                stream: v["stream_id"].as_str().unwrap().to_string(),
                seq: v["seq"].as_u64().unwrap(),
                files,
                recovered: kind == "segment.recovered",
            };
            self.confirmed.insert(id.to_string(), c);
        }
        self.cursor = messages.len();
    }

    /// The unconfirmed segments on the mount now (the recorder stopped, the power not yet
    /// cut): every fMP4, working or final, that no received event names.
    pub fn unconfirmed_at_kill(&self, root: &Path) -> Vec<(String, Frags)> {
        let mut out = Vec::new();
        for rel in fmp4_files(root) {
            let base = if let Some(b) = rel.strip_suffix(".mp4.part") {
                b
            } else if let Some(b) = rel.strip_suffix(".mp4") {
                if self.confirmed_paths.contains(&rel) {
                    continue;
                }
                b
            } else {
                continue;
            };
            out.push((base.to_string(), Frags::of(&root.join(&rel))));
        }
        out
    }

    /// After the cut: what survived of each unconfirmed segment. At most one fragment may be
    /// lost (the one whose fdatasync had not returned).
    pub fn after_cut(&mut self, root: &Path, at_kill: Vec<(String, Frags)>) {
        for (base, at_kill) in at_kill {
            let part = root.join(format!("{base}.mp4.part"));
            let fin = root.join(format!("{base}.mp4"));
            let (after_cut, part_after_cut) = if part.exists() {
                (Frags::of(&part), true)
            } else if fin.exists() {
                (Frags::of(&fin), false)
            } else {
                (Frags::default(), false)
            };
            assert!(
                after_cut.n <= at_kill.n,
                "{base}: {} complete fragments after the cut, more than the {} written",
                after_cut.n,
                at_kill.n
            );
            let lost = at_kill.n - after_cut.n;
            assert!(
                lost <= 1,
                "{base}: {} complete fragments were written when the power went, {} survived \
                 the cut: {lost} lost, where only the one being written may be",
                at_kill.n,
                after_cut.n
            );
            self.fig.unconfirmed += 1;
            self.fig.fragments_lost += lost;
            self.fig.max_fragments_lost = self.fig.max_fragments_lost.max(lost);
            self.fig.bytes_lost += at_kill.bytes - after_cut.bytes;
            self.pending_recovery.push(Unconfirmed {
                base,
                at_kill,
                after_cut,
                part_after_cut,
            });
        }
    }

    /// Every confirmed segment's files are still there, same size, same md5.
    pub fn confirmed_intact(&self, root: &Path) {
        self.intact(root, None);
    }

    /// [`Ledger::confirmed_intact`] with the md5 re-check bounded to `REHASH_PER_CUT`
    /// files, taken in turn from where the last call stopped (sizes are checked for all):
    /// `make soak`'s 1000 cuts would otherwise re-hash a quadratic amount of data. With
    /// `make test`'s 50 cuts every file is re-hashed after every cut.
    pub fn confirmed_intact_bounded(&mut self, root: &Path) {
        let start = self.rehash_from;
        self.rehash_from = self.intact(root, Some((start, REHASH_PER_CUT)));
    }

    /// Checks sizes of all confirmed files and md5s of `window` (start, count; all if none)
    /// of them in a fixed order; returns where the next window starts.
    fn intact(&self, root: &Path, window: Option<(usize, usize)>) -> usize {
        let mut files: Vec<(&String, &Confirmed, &FileSum)> = Vec::new();
        for (id, c) in &self.confirmed {
            for f in &c.files {
                let len = std::fs::metadata(root.join(&f.path))
                    .unwrap_or_else(|e| {
                        panic!(
                            "{} of {id} ({} #{}), confirmed to the broker, is gone: {e}",
                            f.path, c.stream, c.seq
                        )
                    })
                    .len();
                assert_eq!(
                    len, f.bytes,
                    "{} of {id}, confirmed to the broker with {} bytes, has {len}",
                    f.path, f.bytes
                );
                files.push((id, c, f));
            }
        }
        let (start, count) = match window {
            Some((start, count)) if count < files.len() => (start % files.len(), count),
            _ => (0, files.len()),
        };
        let picked: Vec<&(&String, &Confirmed, &FileSum)> =
            files.iter().cycle().skip(start).take(count).collect();
        let paths: Vec<PathBuf> = picked.iter().map(|(_, _, f)| root.join(&f.path)).collect();
        for ((id, _, f), md5) in picked.iter().zip(md5_files(&paths)) {
            assert_eq!(
                md5, f.md5,
                "{} of {id}, confirmed to the broker, changed content (same size)",
                f.path
            );
        }
        start + count
    }

    /// After a restart (recovery done): the index lists every confirmed file in a closed row
    /// with its size, and recovery kept every complete fragment the cut left of each
    /// unconfirmed segment (and closed it as recovered if it was a working file).
    pub fn after_recovery(&mut self, rows: &[SegmentRow], root: &Path) {
        let closed: HashMap<String, (u64, &SegmentRow)> = rows
            .iter()
            .filter(|r| r.state == SegmentState::Closed)
            .flat_map(|r| {
                r.files
                    .iter()
                    .map(move |f| (f.path.display().to_string(), (f.bytes, r)))
            })
            .collect();
        for (id, c) in &self.confirmed {
            for f in &c.files {
                let (bytes, _) = closed.get(&f.path).unwrap_or_else(|| {
                    panic!(
                        "{} of {id}, confirmed to the broker, is in no closed row",
                        f.path
                    )
                });
                assert_eq!(*bytes, f.bytes, "the index's size of {} of {id}", f.path);
            }
        }
        for u in std::mem::take(&mut self.pending_recovery) {
            if u.after_cut.n == 0 {
                self.fig.emptied += 1;
                continue;
            }
            let row = rows
                .iter()
                .find(|r| r.state == SegmentState::Closed && r.base == Path::new(&u.base))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {} complete fragments survived the cut, but after recovery no closed \
                         row has it",
                        u.base, u.after_cut.n
                    )
                });
            let fmp4 = row
                .files
                .iter()
                .find(|f| f.format == Format::Fmp4)
                .unwrap_or_else(|| panic!("{}: no fMP4 in {row:?}", u.base));
            let kept = Frags::of(&root.join(&fmp4.path));
            assert_eq!(
                kept, u.after_cut,
                "{}: recovery kept {kept:?} of the {:?} that survived the cut ({:?} when killed)",
                u.base, u.after_cut, u.at_kill
            );
            if u.part_after_cut {
                assert!(
                    row.recovered,
                    "{}: closed from a working file, but not marked recovered",
                    u.base
                );
                self.fig.recovered += 1;
            }
        }
    }

    /// After a cut, with the recorder down: [`Ledger::confirmed_intact`], and at the same
    /// time (hashing waits on the FUSE peer, decoding on the CPU) the confirmed files not
    /// decoded yet are decoded (see [`decode`]).
    pub fn check_confirmed(&mut self, root: &Path) {
        let files: Vec<(String, bool)> = self
            .confirmed
            .values()
            .flat_map(|c| c.files.iter().map(|f| (f.path.clone(), c.recovered)))
            .filter(|(p, _)| !self.decoded.contains(p))
            .collect();
        let probed = std::thread::scope(|s| {
            let decoding = s.spawn(|| decode(&files, root));
            self.confirmed_intact_bounded(root);
            decoding
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        self.probed += probed;
        self.decoded.extend(files.into_iter().map(|(p, _)| p));
    }

    /// [`decode`] for the files of every closed row not decoded yet.
    pub fn decode_rows(&mut self, rows: &[SegmentRow], root: &Path) {
        let files: Vec<(String, bool)> = rows
            .iter()
            .filter(|r| r.state == SegmentState::Closed)
            .flat_map(|r| {
                r.files
                    .iter()
                    .map(|f| (f.path.display().to_string(), r.recovered))
            })
            .filter(|(p, _)| !self.decoded.contains(p))
            .collect();
        self.probed += decode(&files, root);
        self.decoded.extend(files.into_iter().map(|(p, _)| p));
    }

    /// Deliveries beyond the first of each event id.
    pub fn duplicates(&self) -> usize {
        self.ids.values().map(|n| n - 1).sum()
    }
}

/// ffmpeg decodes each file (`(path under root, of a recovered segment)`) without a message
/// (see [`assert_all_decode`]) and lists video and audio in it; ffprobe reads the fMP4 of
/// each recovered segment too (the file recovery cut back: the one a recovery bug would
/// break; its progressive copy is made by the same code as every other). Returns how many
/// files ffprobe read.
fn decode(files: &[(String, bool)], root: &Path) -> usize {
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| root.join(p)).collect();
    let mut probed = 0;
    for ((rel, recovered), streams) in files.iter().zip(assert_all_decode(&paths)) {
        assert!(
            streams.contains(&"video".to_string()) && streams.contains(&"audio".to_string()),
            "{rel}: ffmpeg lists the streams {streams:?}, not video and audio"
        );
        if *recovered && !rel.ends_with(".progressive.mp4") {
            let p = probe(&root.join(rel));
            assert!(
                p.stream("video").is_some_and(|v| v.codec_name == "h264")
                    && p.stream("audio").is_some_and(|a| a.codec_name == "aac"),
                "{rel}: ffprobe finds {:?}",
                p.streams
            );
            probed += 1;
        }
    }
    probed
}

/// The fMP4 files under `root` (`*.mp4.part` and `*.mp4`, not progressive copies), relative.
/// Quick, since it runs between the moment of the cut and the cut, while a stalled fsync
/// may be finishing: the entry types come from the directory listing, no file is stat'ed.
fn fmp4_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(e.path()),
                Ok(t) if t.is_file() => {
                    let fmp4 = (name.ends_with(".mp4.part") || name.ends_with(".mp4"))
                        && !name.contains(".progressive.");
                    if fmp4 {
                        let rel = e.path().strip_prefix(root).unwrap().to_owned();
                        out.push(rel.display().to_string());
                    }
                }
                _ => {}
            }
        }
    }
    out
}
