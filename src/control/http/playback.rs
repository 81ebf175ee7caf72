//! The playback endpoints: `GET /api/playback/{stream}.m3u8?start&end` (an HLS VOD playlist
//! of byte ranges into the recorded files), `GET /api/playback/{stream}.mp4?start&duration`
//! (one MP4 cut on key frames) and `GET /api/media/{stream}/{id}.{mp4|m4s}` (a recorded
//! file, what the playlist's URIs name). The planning is `crate::storage::playback`'s
//! (`docs/playback.md`); here are the HTTP rules around it:
//!
//! - the index and the files' layouts are read off the runtime ([`Api::blocking`]), and the
//!   bytes are streamed from the files in chunks ([`Body::pieces`]), never built in memory;
//! - `Range` (one range; `bytes=a-b`, `a-`, `-n`): 206 with `Content-Range`, 416 with
//!   `bytes */len`, every answer with `Accept-Ranges: bytes` and `Content-Length`;
//! - a strong `ETag` (the cut's; a media file's row id, format and size), and
//!   `If-None-Match` answered 304;
//! - a media URL names an index row, never a path: only a closed row of that stream, and
//!   only its file of that format, is served.

use std::ops::Range;
use std::path::{Component, PathBuf};

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use super::api::{bad_param, error, internal, json_response, respond, Api, Result};
use super::body::Body;
use super::query;
use super::route::Media;
use crate::media::format::Format;
use crate::storage::playback::{
    mp4_cut, read, resolve_range, vod_m3u8, Piece, PlaybackError, RangeReply, Recorded,
};
use crate::storage::store::{SegmentState, Store, StoreError};

/// Characters escaped in a stream name inside a media URI (a path segment in a playlist
/// line and in a quoted `EXT-X-MAP` attribute).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl Api {
    pub(super) async fn playback_m3u8(
        &self,
        stream: &str,
        q: Option<&str>,
    ) -> Result<Response<Body>> {
        let q = query::playback_m3u8(q).map_err(bad_param)?;
        let (s, start, end) = (stream.to_string(), q.start_ms, q.end_ms);
        let files = self
            .blocking(move |store| load(&store, &s, start, end))
            .await?
            .map_err(Refused::answer)?;
        let token = q.token.as_deref();
        let text = vod_m3u8(&files, start, end, |r| media_uri(stream, r, token))
            .map_err(playback_error)?;
        let mut r = respond(
            StatusCode::OK,
            "application/vnd.apple.mpegurl",
            text.into_bytes(),
        );
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(r.map(Body::from))
    }

    pub(super) async fn playback_mp4(
        &self,
        stream: &str,
        method: &Method,
        q: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response<Body>> {
        let q = query::playback_mp4(q).map_err(bad_param)?;
        let (s, start, end) = (stream.to_string(), q.start_ms, q.end_ms);
        let cut = self
            .blocking(move |store| {
                let files = load(&store, &s, start, end)?;
                Ok::<_, Refused>(mp4_cut(&files, start, (end - start) as u64)?)
            })
            .await?
            .map_err(Refused::answer)?;
        let etag = cut.etag().to_string();
        Ok(ranged(
            method,
            headers,
            cut.len(),
            "video/mp4",
            &etag,
            |r| cut.read_range(r),
        ))
    }

    pub(super) async fn media(
        &self,
        m: &Media,
        method: &Method,
        q: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response<Body>> {
        query::media(q).map_err(bad_param)?;
        let which = m.clone();
        let (path, len, etag) = self
            .blocking(move |store| media_file(&store, &which))
            .await?
            .map_err(Refused::answer)?;
        let ctype = if m.ext == "m4s" {
            "video/iso.segment"
        } else {
            "video/mp4"
        };
        Ok(ranged(method, headers, len, ctype, &etag, |r| {
            vec![Piece::File {
                path,
                offset: r.start,
                len: r.end - r.start,
            }]
        }))
    }
}

/// Why a playback request is refused, before it is an HTTP answer ([`Refused::answer`]).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Playback(#[from] PlaybackError),
    #[error("reading the index: {0}")]
    Store(#[from] StoreError),
    #[error("stream {stream:?} has no recorded .{ext} file with id {id}")]
    NoMedia {
        stream: String,
        ext: &'static str,
        id: u64,
    },
}

impl Refused {
    fn answer(self) -> Response<Bytes> {
        match self {
            Refused::Playback(e) => playback_error(e),
            Refused::Store(e) => internal(e),
            e @ Refused::NoMedia { .. } => error(StatusCode::NOT_FOUND, e),
        }
    }
}

/// The recorded files of `stream` in `[start_ms, end_ms)` with their layouts. Blocking.
fn load(
    store: &Store,
    stream: &str,
    start_ms: i64,
    end_ms: i64,
) -> std::result::Result<Vec<Recorded>, Refused> {
    let rows = store.segments()?;
    Ok(read::load(store.root(), &rows, stream, start_ms, end_ms)?)
}

/// The file a media URL names: its path, length and ETag. Blocking.
fn media_file(store: &Store, m: &Media) -> std::result::Result<(PathBuf, u64, String), Refused> {
    let not_found = || Refused::NoMedia {
        stream: m.stream.clone(),
        ext: m.ext,
        id: m.id,
    };
    let row = store
        .segment(m.id)?
        .filter(|r| r.stream == m.stream && r.state == SegmentState::Closed)
        .ok_or_else(not_found)?;
    let format = if m.ext == "m4s" {
        Format::Hls
    } else {
        Format::Fmp4
    };
    let file = row
        .files
        .iter()
        .find(|f| f.format == format)
        .ok_or_else(not_found)?;
    // Index paths are the store's own, relative and plain; anything else is not served.
    if !file
        .path
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(not_found());
    }
    let path = store.root().join(&file.path);
    let len = std::fs::metadata(&path).map_err(|_| not_found())?.len();
    Ok((path, len, format!("\"{}-{}-{len}\"", row.id, m.ext)))
}

/// The URI of a recorded file in a playlist: its media URL on this server, with the
/// request's `token` when it came in the query.
fn media_uri(stream: &str, r: &Recorded, token: Option<&str>) -> String {
    let ext = if r.rel.extension().is_some_and(|e| e == "m4s") {
        "m4s"
    } else {
        "mp4"
    };
    let name = percent_encoding::utf8_percent_encode(stream, SEGMENT);
    let mut uri = format!("/api/media/{name}/{}.{ext}", r.id);
    if let Some(t) = token {
        uri.push_str("?token=");
        uri.extend(percent_encoding::utf8_percent_encode(t, SEGMENT));
    }
    uri
}

/// The answer for `len` bytes whose pieces `pieces_of` gives for a byte range: 200, 206,
/// 416 or 304, per `Range` and `If-None-Match`.
fn ranged(
    method: &Method,
    headers: &HeaderMap,
    len: u64,
    content_type: &'static str,
    etag: &str,
    pieces_of: impl FnOnce(Range<u64>) -> Vec<Piece>,
) -> Response<Body> {
    let mut b = Response::builder()
        .header(ACCEPT_RANGES, "bytes")
        .header(ETAG, etag);
    if not_modified(headers, etag) {
        return b
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|e| internal(e).map(Body::from));
    }
    let reply = resolve_range(headers.get(RANGE).and_then(|v| v.to_str().ok()), len);
    if let Some(cr) = reply.content_range(len) {
        b = b.header(CONTENT_RANGE, cr);
    }
    let bytes = match reply {
        RangeReply::Whole => 0..len,
        RangeReply::Partial(r) => {
            b = b.status(StatusCode::PARTIAL_CONTENT);
            r
        }
        RangeReply::Unsatisfiable => {
            let mut r = json_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &json!({ "error": format!("the range is outside the {len} bytes") }),
            );
            r.headers_mut()
                .extend(b.headers_ref().cloned().unwrap_or_default());
            return r.map(Body::from);
        }
    };
    let body = if *method == Method::HEAD || bytes.is_empty() {
        Body::empty()
    } else {
        Body::pieces(pieces_of(bytes.clone()))
    };
    b.header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, bytes.end - bytes.start)
        .body(body)
        .unwrap_or_else(|e| internal(e).map(Body::from))
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak comparison, as RFC 9110 asks.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// The HTTP answer of a playback error.
fn playback_error(e: PlaybackError) -> Response<Bytes> {
    let status = match &e {
        PlaybackError::Empty { .. } => StatusCode::NOT_FOUND,
        PlaybackError::BadRange { .. } => {
            return bad_param(query::BadParam {
                param: "end".into(),
                message: e.to_string(),
            })
        }
        // Deleted by retention between the index read and the file read.
        PlaybackError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_none_match_matches_the_tag_a_list_or_a_star() {
        let tag = "\"abc\"";
        assert!(not_modified(&headers(&[(IF_NONE_MATCH, "\"abc\"")]), tag));
        assert!(not_modified(
            &headers(&[(IF_NONE_MATCH, "\"x\", W/\"abc\"")]),
            tag
        ));
        assert!(not_modified(&headers(&[(IF_NONE_MATCH, "*")]), tag));
        assert!(!not_modified(&headers(&[(IF_NONE_MATCH, "\"abcd\"")]), tag));
        assert!(!not_modified(&HeaderMap::new(), tag));
    }

    #[test]
    fn ranges_answer_206_416_and_200_with_lengths() {
        let head = Method::HEAD;
        let r = ranged(
            &head,
            &headers(&[(RANGE, "bytes=10-19")]),
            100,
            "video/mp4",
            "\"t\"",
            |_| vec![],
        );
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes 10-19/100");
        assert_eq!(r.headers()[CONTENT_LENGTH], "10");
        assert_eq!(r.headers()[ACCEPT_RANGES], "bytes");
        let r = ranged(
            &head,
            &headers(&[(RANGE, "bytes=100-")]),
            100,
            "video/mp4",
            "\"t\"",
            |_| vec![],
        );
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes */100");
        let r = ranged(
            &head,
            &HeaderMap::new(),
            100,
            "video/mp4",
            "\"t\"",
            |_| vec![],
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_LENGTH], "100");
        assert_eq!(r.headers()[ETAG], "\"t\"");
        let r = ranged(
            &head,
            &headers(&[(IF_NONE_MATCH, "\"t\"")]),
            100,
            "video/mp4",
            "\"t\"",
            |_| vec![],
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }
}
