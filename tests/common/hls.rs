//! The tests' own reading of an HLS playlist (independent of edgerec's writer), and the
//! checks every recorded playlist must pass: RFC 8216 tags, ffmpeg decoding it clean,
//! every entry's file present, ENDLIST only when finished.

use std::path::{Path, PathBuf};

use super::media::{assert_decodes, files_under, video_span};

/// One media segment line and the tags before it.
#[derive(Clone, Debug)]
pub struct HlsEntry {
    pub uri: String,
    pub extinf_s: f64,
    pub has_program_date_time: bool,
}

/// A playlist as read by the test.
#[derive(Clone, Debug)]
pub struct Playlist {
    pub path: PathBuf,
    pub text: String,
    pub target_s: u64,
    pub entries: Vec<HlsEntry>,
    pub ended: bool,
}

impl Playlist {
    pub fn read(path: &Path) -> Playlist {
        let text = std::fs::read_to_string(path).unwrap();
        let mut target_s = 0;
        let mut entries = Vec::new();
        let (mut extinf, mut pdt) = (None, false);
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                target_s = t.parse().unwrap();
            } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = true;
            } else if let Some(d) = line.strip_prefix("#EXTINF:") {
                extinf = Some(d.trim_end_matches(',').parse::<f64>().unwrap());
            } else if !line.starts_with('#') && !line.is_empty() {
                entries.push(HlsEntry {
                    uri: line.to_owned(),
                    extinf_s: extinf.take().expect("EXTINF before every URI"),
                    has_program_date_time: std::mem::take(&mut pdt),
                });
            }
        }
        Playlist {
            path: path.to_owned(),
            ended: text.ends_with("#EXT-X-ENDLIST\n"),
            text,
            target_s,
            entries,
        }
    }

    /// An entry's file, relative to the root the playlist is under.
    pub fn file_of(&self, e: &HlsEntry, root: &Path) -> String {
        let p = self.path.parent().unwrap().join(&e.uri);
        let p = std::fs::canonicalize(&p).unwrap_or(p);
        let root = std::fs::canonicalize(root).unwrap();
        p.strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Sum of the EXTINF durations, seconds.
    pub fn duration_s(&self) -> f64 {
        self.entries.iter().map(|e| e.extinf_s).sum()
    }

    /// The RFC 8216 rules edgerec promises: version 7, an EVENT playlist with its init
    /// section, a PROGRAM-DATE-TIME on every segment, no EXTINF above the target duration
    /// (rounded), every entry's file present.
    pub fn check(&self, root: &Path) {
        let t = &self.text;
        assert!(t.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n"), "{t}");
        assert_eq!(t.matches("#EXT-X-TARGETDURATION:").count(), 1, "{t}");
        assert!(t.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{t}");
        assert!(t.contains("#EXT-X-MAP:URI=\""), "{t}");
        assert!(self.target_s > 0, "{t}");
        for e in &self.entries {
            assert!(e.has_program_date_time, "{e:?} in {t}");
            assert!(e.extinf_s.round() as u64 <= self.target_s, "{e:?}");
            assert!(root.join(self.file_of(e, root)).is_file(), "{e:?}: no file");
        }
    }
}

/// Every playlist under `root`, sorted by path.
pub fn playlists(root: &Path) -> Vec<Playlist> {
    files_under(root)
        .into_iter()
        .filter(|p| p.ends_with(".m3u8"))
        .map(|p| Playlist::read(&root.join(p)))
        .collect()
}

/// A finished playlist read by ffmpeg: decodes clean, and its video lasts the sum of its
/// EXTINFs within `gop_s` (one GOP: a continuous timeline, no segment lost or doubled).
pub fn assert_playlist_plays(p: &Playlist, gop_s: f64) {
    assert_decodes(&p.path);
    let span = video_span(&p.path);
    assert!(
        (span - p.duration_s()).abs() <= gop_s,
        "{}: ffmpeg plays {span} s, EXTINFs sum to {} s\n{}",
        p.path.display(),
        p.duration_s(),
        p.text
    );
}
