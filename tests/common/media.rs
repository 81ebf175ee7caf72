//! Files on disk checked against the index, and readers independent of edgerec: ffmpeg,
//! ffprobe, md5, and a ten-line MP4 box walk.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};

use super::process::SegmentRow;

/// Every regular file under `root` (relative paths, sorted), except the index, the lock and
/// the storage guard's marker.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|p| p != "index.redb" && p != "edgerec.lock" && p != ".edgerec-root");
    out.sort();
    out
}

/// Finished segment files under `root` (`*.mp4`, `*.flv`, `*.aac`, `*.m4s`, not `*.part`,
/// not an HLS recording's `*.init.mp4`).
pub fn segment_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|p| {
            [".mp4", ".flv", ".aac", ".m4s"]
                .iter()
                .any(|e| p.ends_with(e))
        })
        .filter(|p| !p.ends_with(".init.mp4"))
        .collect()
}

/// Working files under `root` (`*.part`).
pub fn part_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|p| p.ends_with(".part"))
        .collect()
}

/// Asserts that the closed rows and the finished files on disk are the same set, with the
/// same sizes, and that no row has state other than `closed`/`writing`.
pub fn assert_index_matches_disk(root: &Path, rows: &[SegmentRow]) {
    let mut indexed: HashMap<String, u64> = HashMap::new();
    for r in rows {
        assert!(
            r.state == "closed" || r.state == "writing",
            "unexpected row state {:?}",
            r
        );
        if r.state != "closed" {
            continue;
        }
        assert!(!r.files.is_empty(), "closed row without files: {r:?}");
        for f in &r.files {
            assert!(
                indexed.insert(f.path.clone(), f.bytes).is_none(),
                "{} listed twice",
                f.path
            );
        }
        let sum: u64 = r.files.iter().map(|f| f.bytes).sum();
        assert_eq!(r.bytes, sum, "row bytes != sum of its files: {r:?}");
    }
    let on_disk: HashMap<String, u64> = segment_files(root)
        .into_iter()
        .map(|p| {
            let len = fs::metadata(root.join(&p)).unwrap().len();
            (p, len)
        })
        .collect();
    let mut only_index: Vec<_> = indexed
        .keys()
        .filter(|p| !on_disk.contains_key(*p))
        .collect();
    let mut only_disk: Vec<_> = on_disk
        .keys()
        .filter(|p| !indexed.contains_key(*p))
        .collect();
    only_index.sort();
    only_disk.sort();
    assert!(
        only_index.is_empty() && only_disk.is_empty(),
        "index and disk disagree: only in index {only_index:?}, only on disk {only_disk:?}"
    );
    for (p, len) in &indexed {
        assert_eq!(
            on_disk[p], *len,
            "{p}: index says {len} bytes, disk {}",
            on_disk[p]
        );
    }
}

/// md5 of a file, hex.
pub fn md5_file(path: &Path) -> String {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Md5::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// md5 of many files, hex, in order: one `md5sum` for all of them (the tests run unoptimised,
/// where hashing tens of megabytes in-process is slow). A file that cannot be read panics.
pub fn md5_files(paths: &[PathBuf]) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    let out = Command::new("md5sum")
        .arg("--")
        .args(paths)
        .output()
        .expect("run md5sum");
    assert!(
        out.status.success(),
        "md5sum: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sums: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(sums.len(), paths.len(), "md5sum printed {sums:?}");
    sums
}

/// Counts the complete `moof`+`mdat` pairs at the top level of an fMP4 file (a torn tail
/// is ignored) and returns `(fragments, bytes up to the end of the last one)`. A plain box
/// walk, independent of edgerec's own scanner.
pub fn complete_fragments(path: &Path) -> (usize, u64) {
    let data = fs::read(path).unwrap();
    let (mut pos, mut frags, mut end, mut moof_open) = (0usize, 0usize, 0u64, false);
    while pos + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = &data[pos + 4..pos + 8];
        let size = match size32 {
            1 if pos + 16 <= data.len() => {
                u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap())
            }
            0 | 1 => break,
            s => s,
        };
        if size < 8 || pos as u64 + size > data.len() as u64 {
            break;
        }
        match kind {
            b"moof" => moof_open = true,
            b"mdat" if moof_open => {
                frags += 1;
                end = pos as u64 + size;
                moof_open = false;
            }
            _ => {}
        }
        pos += size as usize;
    }
    (frags, end)
}

/// Asserts that ffmpeg decodes the whole file without a single error message.
pub fn assert_decodes(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    if !(out.status.success() && err.trim().is_empty()) {
        // The test's directory goes when it fails: keep the file for a look.
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("failed-media")
            .join(path.file_name().unwrap_or_default());
        let _ = std::fs::create_dir_all(kept.parent().unwrap());
        let _ = std::fs::copy(path, &kept);
        panic!(
            "ffmpeg cannot decode {} cleanly (kept as {}): {err}",
            path.display(),
            kept.display()
        );
    }
}

/// How many files one ffmpeg decodes at most in [`assert_all_decode`].
const DECODE_BATCH: usize = 32;

/// [`assert_decodes`] for many files at a time: one ffmpeg per batch of files, each input
/// decoded (one thread each) into a null output, since starting ffmpeg costs more than
/// decoding a small segment. Nothing may be printed at level error or worse; on any such
/// message the batch is decoded again file by file, so the failure names the file. Returns
/// each file's stream types (`video`, `audio`) as ffmpeg's demuxer listed them.
pub fn assert_all_decode(paths: &[PathBuf]) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(paths.len());
    for batch in paths.chunks(DECODE_BATCH) {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "level+info"]);
        for p in batch {
            cmd.args(["-threads", "1", "-i"]).arg(p);
        }
        for i in 0..batch.len() {
            cmd.args(["-map", &i.to_string()]);
        }
        let run = cmd.args(["-f", "null", "-"]).output().expect("run ffmpeg");
        let err = String::from_utf8_lossy(&run.stderr);
        let bad = err
            .lines()
            .any(|l| l.contains("[error]") || l.contains("[fatal]") || l.contains("[panic]"));
        if bad || !run.status.success() {
            for p in batch {
                assert_decodes(p);
            }
            panic!("ffmpeg cannot decode a batch of files cleanly, though each alone does: {err}");
        }
        // Stream lines of the inputs: `[info]   Stream #K:N...: Video: h264 ...`, before
        // the output's `Stream mapping:`.
        let mut streams = vec![Vec::new(); batch.len()];
        for l in err.lines().take_while(|l| !l.contains("Stream mapping:")) {
            let Some(rest) = l.split("Stream #").nth(1) else {
                continue;
            };
            let Some(k) = rest.split(':').next().and_then(|k| k.parse::<usize>().ok()) else {
                continue;
            };
            for kind in ["Video", "Audio"] {
                if rest.contains(&format!(": {kind}: ")) && k < streams.len() {
                    streams[k].push(kind.to_ascii_lowercase());
                }
            }
        }
        out.extend(streams);
    }
    out
}

/// One stream as ffprobe reports it.
#[derive(Clone, Debug)]
pub struct ProbeStream {
    pub codec_type: String,
    pub codec_name: String,
    /// Seconds; from the stream, else the format.
    pub duration: f64,
    pub width: Option<u64>,
    pub sample_rate: Option<u64>,
    /// Video: pixel format (`yuv420p`, `yuv420p10le`…); empty for audio.
    pub pix_fmt: String,
    /// Codec profile as ffprobe names it (`High`, `Main 10`…).
    pub profile: String,
}

/// What ffprobe says about a file.
#[derive(Clone, Debug)]
pub struct Probe {
    pub streams: Vec<ProbeStream>,
    pub format_name: String,
    pub duration: f64,
}

impl Probe {
    /// The first stream of `codec_type` (`video` / `audio`).
    pub fn stream(&self, codec_type: &str) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.codec_type == codec_type)
    }
}

/// `ffprobe -show_streams -show_format -of json`, parsed.
pub fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |v: &serde_json::Value| -> Option<f64> { v.as_str()?.parse().ok() };
    let fmt_duration = num(&v["format"]["duration"]).unwrap_or(0.0);
    let streams = v["streams"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| ProbeStream {
            codec_type: s["codec_type"].as_str().unwrap_or("").into(),
            codec_name: s["codec_name"].as_str().unwrap_or("").into(),
            duration: num(&s["duration"]).unwrap_or(fmt_duration),
            width: s["width"].as_u64(),
            sample_rate: num(&s["sample_rate"]).map(|r| r as u64),
            pix_fmt: s["pix_fmt"].as_str().unwrap_or("").into(),
            profile: s["profile"].as_str().unwrap_or("").into(),
        })
        .collect();
    Probe {
        streams,
        format_name: v["format"]["format_name"].as_str().unwrap_or("").into(),
        duration: fmt_duration,
    }
}

/// One video packet: presentation and decode time, duration (seconds), key flag.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub pts: f64,
    pub dts: f64,
    pub duration: f64,
    pub key: bool,
}

/// The video packets of a file, in decode order, as ffprobe reads them.
pub fn video_packets(path: &Path) -> Vec<Packet> {
    packets_of(path, "v:0")
}

/// The packets of the stream `selector` (ffprobe's `-select_streams`, e.g. `a:0`).
pub fn packets_of(path: &Path, selector: &str) -> Vec<Packet> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector, "-show_entries"])
        .args([
            "packet=pts_time,dts_time,duration_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe packets of {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| {
                f.get(i)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            Packet {
                pts: n(0),
                dts: n(1),
                duration: n(2),
                key: f.get(3).is_some_and(|s| s.starts_with('K')),
            }
        })
        .collect()
}

/// md5 of every decoded video frame (ffmpeg's `framemd5` muxer), in presentation order:
/// compares pictures, not containers, so a lost, repeated or reordered frame shows.
pub fn frame_hashes(path: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "framemd5 of {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .collect()
}

/// Video duration of a file from its packets: last pts + duration − first pts (seconds).
pub fn video_span(path: &Path) -> f64 {
    span(&video_packets(path))
}

/// Audio duration of a file from its packets, like [`video_span`].
pub fn audio_span(path: &Path) -> f64 {
    span(&packets_of(path, "a:0"))
}

fn span(p: &[Packet]) -> f64 {
    let first = p.iter().map(|p| p.pts).fold(f64::INFINITY, f64::min);
    let last = p
        .iter()
        .map(|p| p.pts + if p.duration.is_nan() { 0.0 } else { p.duration })
        .fold(f64::NEG_INFINITY, f64::max);
    if p.is_empty() {
        0.0
    } else {
        last - first
    }
}

/// The four-character types of the top-level boxes of an MP4 file, in file order (stops at
/// a box that runs past the end). A plain walk, independent of edgerec's parser.
pub fn top_level_boxes(path: &Path) -> Vec<String> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as u64;
        let size = match size32 {
            1 if pos + 16 <= data.len() => {
                u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap())
            }
            0 => (data.len() - pos) as u64,
            1 => break,
            s => s,
        };
        if size < 8 || pos as u64 + size > data.len() as u64 {
            break;
        }
        out.push(String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned());
        pos += size as usize;
    }
    out
}

/// The log text without ANSI colour escapes (`ESC [ … letter`), so fields such as
/// `name=cam` can be searched for whatever the logger's colour setting.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The distinct `WIDTHxHEIGHT` of every decoded video frame of `path`.
pub fn frame_sizes(path: &Path) -> std::collections::BTreeSet<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=width,height", "-of", "csv=p=0:s=x"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe frames of {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches('x').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
