//! The web page at `/` (issue 15 item 3) and the one script it loads, `/assets/hls.js`, both
//! carried in the binary (`include_str!`): the box may be offline, so nothing comes from a
//! CDN. The page (`assets/web/index.html`) lists the streams with their state
//! (`/api/status`), draws a timeline per stream of what is on disk (`/api/streams/…/segments`:
//! recorded spans, gaps, uploaded or not) and plays a clicked point through
//! `/api/playback/{stream}.m3u8` with hls.js. hls.js is `hls.light.min.js` 1.7.4 from npm,
//! vendored with its licence (Apache-2.0) in `assets/web/`; about 390 KB of the binary.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

/// The page.
pub const INDEX_HTML: &str = include_str!("../../../assets/web/index.html");
/// hls.js (light build: no EME, no subtitles, no alternate audio).
pub const HLS_JS: &str = include_str!("../../../assets/web/hls.light.min.js");

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from_static(body.as_bytes()));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// `GET /`.
pub fn page() -> Response<Bytes> {
    asset(INDEX_HTML, "text/html; charset=utf-8", "no-cache")
}

/// `GET /assets/hls.js`.
pub fn hls_js() -> Response<Bytes> {
    asset(HLS_JS, "text/javascript; charset=utf-8", "max-age=86400")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_hls_js_from_this_server_and_nothing_from_elsewhere() {
        assert!(INDEX_HTML.contains("'/assets/hls.js'"));
        assert!(!INDEX_HTML.contains("//cdn"), "no CDN");
        assert!(!INDEX_HTML.contains("src=\"http"), "no remote script");
        assert!(HLS_JS.len() > 100_000 && HLS_JS.contains("Hls"));
    }
}
