//! A small FLV reader of the tests' own (not edgerec's): the tags of a file with their
//! offsets, checked against their PreviousTagSize, and the onMetaData values parsed with a
//! plain AMF0 decoder. Enough to check what edgerec's FLV claims about itself.

use std::collections::BTreeMap;
use std::path::Path;

/// One tag of an FLV file.
#[derive(Clone, Debug)]
pub struct FlvTag {
    /// Offset of the tag header in the file.
    pub offset: u64,
    /// 8 audio, 9 video, 18 script data.
    pub kind: u8,
    /// Milliseconds.
    pub ts: u32,
    /// The tag's data.
    pub data: Vec<u8>,
}

impl FlvTag {
    /// A video tag holding a key frame's NAL units (not a sequence header).
    pub fn is_video_key_frame(&self) -> bool {
        self.kind == 9 && self.data.len() > 1 && self.data[0] >> 4 == 1 && self.data[1] == 1
    }
}

/// An AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    /// Object or ECMA array.
    Map(BTreeMap<String, Amf>),
    Array(Vec<Amf>),
    Null,
}

impl Amf {
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Map(m) => m.get(key),
            _ => None,
        }
    }

    pub fn num(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn numbers(&self) -> Vec<f64> {
        match self {
            Amf::Array(a) => a.iter().filter_map(Amf::num).collect(),
            _ => Vec::new(),
        }
    }
}

fn amf(b: &[u8], at: &mut usize) -> Amf {
    let marker = b[*at];
    *at += 1;
    let u16_at = |at: usize| usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
    let u32_at = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    match marker {
        0 => {
            let n = f64::from_be_bytes(b[*at..*at + 8].try_into().unwrap());
            *at += 8;
            Amf::Number(n)
        }
        1 => {
            *at += 1;
            Amf::Bool(b[*at - 1] != 0)
        }
        2 => {
            let n = u16_at(*at);
            let s = String::from_utf8_lossy(&b[*at + 2..*at + 2 + n]).into_owned();
            *at += 2 + n;
            Amf::Str(s)
        }
        3 | 8 => {
            if marker == 8 {
                *at += 4;
            }
            let mut m = BTreeMap::new();
            loop {
                let n = u16_at(*at);
                *at += 2;
                if n == 0 && b[*at] == 9 {
                    *at += 1;
                    return Amf::Map(m);
                }
                let k = String::from_utf8_lossy(&b[*at..*at + n]).into_owned();
                *at += n;
                let v = amf(b, at);
                m.insert(k, v);
            }
        }
        5 => Amf::Null,
        10 => {
            let n = u32_at(*at);
            *at += 4;
            Amf::Array((0..n).map(|_| amf(b, at)).collect())
        }
        m => panic!("AMF0 marker {m} not expected in an edgerec FLV"),
    }
}

/// A parsed FLV file: its tags, and the onMetaData array.
pub struct Flv {
    pub len: u64,
    pub tags: Vec<FlvTag>,
    pub meta: Amf,
    /// Whether the header says audio / video.
    pub has_audio: bool,
    pub has_video: bool,
}

/// Where the chain of complete tags (each followed by its PreviousTagSize) in the FLV bytes
/// `b` ends: what a torn file must be cut back to.
pub fn complete_tags_end(b: &[u8]) -> u64 {
    let header = u32::from_be_bytes(b[5..9].try_into().unwrap()) as usize;
    let mut at = header + 4;
    while at + 11 <= b.len() {
        let size = u32::from_be_bytes([0, b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let end = at + 11 + size + 4;
        if end > b.len()
            || u32::from_be_bytes(b[end - 4..end].try_into().unwrap()) as usize != 11 + size
        {
            break;
        }
        at = end;
    }
    at as u64
}

/// Reads a whole FLV file; panics on anything that does not chain (every tag followed by
/// its PreviousTagSize, the file ending exactly after the last one).
pub fn read_flv(path: &Path) -> Flv {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..3], b"FLV", "{}", path.display());
    let header = u32::from_be_bytes(b[5..9].try_into().unwrap()) as usize;
    let mut at = header + 4;
    let mut tags = Vec::new();
    while at < b.len() {
        assert!(
            at + 11 <= b.len(),
            "{}: a torn tag header at {at}",
            path.display()
        );
        let size = u32::from_be_bytes([0, b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let ts = u32::from_be_bytes([b[at + 7], b[at + 4], b[at + 5], b[at + 6]]);
        let end = at + 11 + size;
        assert!(end + 4 <= b.len(), "{}: a torn tag at {at}", path.display());
        let prev = u32::from_be_bytes(b[end..end + 4].try_into().unwrap()) as usize;
        assert_eq!(
            prev,
            11 + size,
            "{}: PreviousTagSize after {at}",
            path.display()
        );
        tags.push(FlvTag {
            offset: at as u64,
            kind: b[at],
            ts,
            data: b[at + 11..end].to_vec(),
        });
        at = end + 4;
    }
    let script = tags
        .iter()
        .find(|t| t.kind == 18)
        .unwrap_or_else(|| panic!("{}: no script tag", path.display()));
    let mut i = 0;
    assert_eq!(amf(&script.data, &mut i), Amf::Str("onMetaData".into()));
    let meta = amf(&script.data, &mut i);
    Flv {
        len: b.len() as u64,
        tags,
        meta,
        has_audio: b[4] & 4 != 0,
        has_video: b[4] & 1 != 0,
    }
}

/// Checks an edgerec FLV against itself and ffprobe: `filesize` is the file's size, the
/// `duration` is within one frame (`frame_s`) of the video span ffprobe measures, and the
/// key frame index lists exactly the key frame tags (their offsets and times). Returns the
/// number of key frames indexed.
pub fn check_flv_metadata(path: &Path, frame_s: f64) -> usize {
    let f = read_flv(path);
    let m = &f.meta;
    assert_eq!(
        m.get("filesize").and_then(Amf::num),
        Some(f.len as f64),
        "{}: filesize",
        path.display()
    );
    let duration = m.get("duration").and_then(Amf::num).unwrap();
    let span = super::video_span(path);
    assert!(
        (duration - span).abs() <= frame_s + 1e-6,
        "{}: onMetaData says {duration} s, ffprobe measures {span} s",
        path.display()
    );
    let k = m.get("keyframes").expect("a key frame index");
    let times = k.get("times").unwrap().numbers();
    let pos = k.get("filepositions").unwrap().numbers();
    let keys: Vec<&FlvTag> = f.tags.iter().filter(|t| t.is_video_key_frame()).collect();
    assert_eq!(
        pos.len(),
        keys.len(),
        "{}: one entry per key frame",
        path.display()
    );
    assert_eq!(times.len(), pos.len());
    for ((p, t), tag) in pos.iter().zip(&times).zip(&keys) {
        assert_eq!(*p as u64, tag.offset, "{}: a file position", path.display());
        assert_eq!(
            (t * 1000.0).round() as u32,
            tag.ts,
            "{}: a time",
            path.display()
        );
    }
    // Each indexed position really is the start of a video key frame tag.
    for p in &pos {
        let tag = f.tags.iter().find(|t| t.offset == *p as u64).unwrap();
        assert!(
            tag.is_video_key_frame(),
            "{}: {p} is not a key frame tag",
            path.display()
        );
    }
    pos.len()
}
