//! The HLS VOD playlist over recorded fMP4 files: byte ranges into the files, no copy.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::{discontinuous, spans, PlaybackError, Recorded};

/// An HLS (RFC 8216, version 7) VOD playlist of what `files` (one stream's, in recording
/// order) hold in `[start_ms, end_ms)`.
///
/// One media segment per file: `EXT-X-MAP` names the file's own init section (`BYTERANGE`
/// `len@0`), `EXT-X-BYTERANGE` its fragments from the key frame at or before `start_ms` (in
/// the first file) to the last one that begins before `end_ms` (in the last file), with its
/// `EXT-X-PROGRAM-DATE-TIME` and its `EXTINF` from the fragments' decode times.
/// `EXT-X-DISCONTINUITY` goes before a file whose decode times do not continue the previous
/// file's or whose codec parameters differ ([`super::discontinuous`]): every `.mp4` starts
/// its timeline at 0, so between `.mp4` files that is every boundary, which hls.js and
/// Safari play through without a stall; the `.m4s` of one HLS recording continue each
/// other and need none. `EXT-X-TARGETDURATION` is the longest `EXTINF` rounded up.
///
/// `uri_of` gives each file's URI as the playlist should name it (relative to the
/// playlist, or an absolute URL path), already percent-encoded: it is written as it is,
/// on its own line and inside the quoted `EXT-X-MAP` attribute.
pub fn vod_m3u8(
    files: &[Recorded],
    start_ms: i64,
    end_ms: i64,
    uri_of: impl Fn(&Recorded) -> String,
) -> Result<String, PlaybackError> {
    let spans = spans(files, start_ms, end_ms)?;
    let target = spans
        .iter()
        .map(|s| s.seconds().ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    for (i, span) in spans.iter().enumerate() {
        if i > 0 && discontinuous(&spans[i - 1], span) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let uri = uri_of(span.file);
        let bytes = span.bytes();
        let _ = write!(
            out,
            "#EXT-X-MAP:URI=\"{uri}\",BYTERANGE=\"{}@0\"\n\
             #EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n#EXT-X-BYTERANGE:{}@{}\n{uri}\n",
            span.file.layout.init_len,
            date_time(span.start_ms()),
            span.seconds(),
            bytes.end - bytes.start,
            bytes.start,
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    Ok(out)
}

/// RFC 3339 with milliseconds, UTC.
fn date_time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
