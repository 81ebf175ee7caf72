//! Which endpoint a request is for: the method and the raw (still percent-encoded) path in,
//! an [`Endpoint`] with its stream and the scope it needs out. Pure.
//!
//! A stream name is everything between an endpoint's prefix and its suffix, percent-decoded,
//! then checked as the fleet commands check names: a name with `/` (literal or `%2F`), `\`,
//! `..` or a control character is refused (400), never looked up.

use http::Method;

use crate::config::http::Scope;
use crate::control::commands::args::check_name;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/record/{stream}`: start recording (a real-time record task).
    RecordStart(String),
    /// `GET /api/record/{stream}`: the stream's recording state.
    RecordGet(String),
    /// `DELETE /api/record/{stream}`: stop its record tasks.
    RecordStop(String),
    /// `GET /api/status`: `edgerec status --json`.
    Status,
    /// `GET /api/streams/{stream}/segments`.
    Segments(String),
    /// `GET /api/events`: replay the event log.
    Events,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /api/playback/{stream}.m3u8`: an HLS VOD playlist of byte ranges.
    PlaybackM3u8(String),
    /// `GET /api/playback/{stream}.mp4`: one MP4 cut on key frames.
    PlaybackMp4(String),
    /// `GET /api/media/{stream}/{id}.{ext}`: a recorded file of the index (row `id`, its
    /// file of the format `ext` names: `mp4` the fMP4, `m4s` the HLS media), what the VOD
    /// playlist's URIs point at.
    Media(Media),
    /// `GET /`: the web page.
    Page,
    /// `GET /assets/hls.js`: the player the page loads.
    HlsJs,
}

impl Endpoint {
    /// The scope a token needs for it.
    pub fn scope(&self) -> Scope {
        match self {
            Endpoint::RecordStart(_) | Endpoint::RecordStop(_) => Scope::Control,
            _ => Scope::View,
        }
    }
}

/// A recorded file named by its index row: never a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub stream: String,
    pub id: u64,
    /// `mp4` (the `fmp4` file) or `m4s` (the `hls` file).
    pub ext: &'static str,
}

/// Why no endpoint matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// 404.
    NotFound,
    /// 405, with the methods the path allows (the `Allow` header).
    MethodNotAllowed(&'static str),
    /// 400: the stream name is not acceptable (the message says why).
    BadName(String),
}

const RECORD: &str = "/api/record/";
const STREAMS: &str = "/api/streams/";
const PLAYBACK: &str = "/api/playback/";
const MEDIA: &str = "/api/media/";

/// The endpoint of `method` on `path` (the URI's path, percent-encoded).
pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
    let get = |e: Endpoint| allow(method, &[Method::GET, Method::HEAD], "GET, HEAD", e);
    if path == "/api/status" {
        return get(Endpoint::Status);
    }
    if path == "/api/events" {
        return get(Endpoint::Events);
    }
    if path == "/metrics" {
        return get(Endpoint::Metrics);
    }
    if path == "/" || path == "/index.html" {
        return get(Endpoint::Page);
    }
    if path == "/assets/hls.js" {
        return get(Endpoint::HlsJs);
    }
    if let Some(rest) = path.strip_prefix(RECORD) {
        let stream = stream_name(rest)?;
        return match *method {
            Method::POST => Ok(Endpoint::RecordStart(stream)),
            Method::GET | Method::HEAD => Ok(Endpoint::RecordGet(stream)),
            Method::DELETE => Ok(Endpoint::RecordStop(stream)),
            _ => Err(RouteError::MethodNotAllowed("GET, HEAD, POST, DELETE")),
        };
    }
    if let Some(rest) = path.strip_prefix(STREAMS) {
        let Some(raw) = rest.strip_suffix("/segments") else {
            return Err(RouteError::NotFound);
        };
        let stream = stream_name(raw)?;
        return get(Endpoint::Segments(stream));
    }
    if let Some(rest) = path.strip_prefix(PLAYBACK) {
        if let Some(raw) = rest.strip_suffix(".m3u8") {
            return get(Endpoint::PlaybackM3u8(stream_name(raw)?));
        }
        if let Some(raw) = rest.strip_suffix(".mp4") {
            return get(Endpoint::PlaybackMp4(stream_name(raw)?));
        }
    }
    if let Some(rest) = path.strip_prefix(MEDIA) {
        // `{stream}/{id}.{ext}`: the stream cannot hold a literal `/` (refused below), so
        // the last `/` separates them.
        let Some((raw, file)) = rest.rsplit_once('/') else {
            return Err(RouteError::NotFound);
        };
        let stream = stream_name(raw)?;
        let Some((id, ext)) = file.split_once('.') else {
            return Err(RouteError::NotFound);
        };
        let ext = match ext {
            "mp4" => "mp4",
            "m4s" => "m4s",
            _ => return Err(RouteError::NotFound),
        };
        let Ok(id) = id.parse::<u64>() else {
            return Err(RouteError::NotFound);
        };
        return get(Endpoint::Media(Media { stream, id, ext }));
    }
    Err(RouteError::NotFound)
}

fn allow(
    method: &Method,
    ok: &[Method],
    allowed: &'static str,
    e: Endpoint,
) -> Result<Endpoint, RouteError> {
    if ok.contains(method) {
        Ok(e)
    } else {
        Err(RouteError::MethodNotAllowed(allowed))
    }
}

/// A path segment as a stream name: percent-decoded, then checked.
fn stream_name(raw: &str) -> Result<String, RouteError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| RouteError::BadName("the stream name is not UTF-8".into()))?;
    check_name("stream", &decoded)
        .map_err(|r| RouteError::BadName(r.message.unwrap_or_else(|| "bad stream name".into())))?;
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_methods_map_to_start_get_and_stop() {
        let r = |m| route(&m, "/api/record/cam1").unwrap();
        assert_eq!(r(Method::POST), Endpoint::RecordStart("cam1".into()));
        assert_eq!(r(Method::GET), Endpoint::RecordGet("cam1".into()));
        assert_eq!(r(Method::DELETE), Endpoint::RecordStop("cam1".into()));
        assert_eq!(
            route(&Method::PUT, "/api/record/cam1"),
            Err(RouteError::MethodNotAllowed("GET, HEAD, POST, DELETE"))
        );
    }

    #[test]
    fn only_record_start_and_stop_need_control() {
        assert_eq!(Endpoint::RecordStart("a".into()).scope(), Scope::Control);
        assert_eq!(Endpoint::RecordStop("a".into()).scope(), Scope::Control);
        assert_eq!(Endpoint::RecordGet("a".into()).scope(), Scope::View);
        assert_eq!(Endpoint::Metrics.scope(), Scope::View);
    }

    #[test]
    fn stream_names_that_look_like_paths_are_refused() {
        for p in [
            "/api/record/..",
            "/api/record/a/b",
            "/api/record/a%2Fb",
            "/api/record/a%2fb",
            "/api/record/%2E%2E",
            "/api/record/",
            "/api/record/a%00",
            "/api/streams/../segments",
            "/api/streams/x%2F..%2Fy/segments",
        ] {
            assert!(
                matches!(route(&Method::GET, p), Err(RouteError::BadName(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn percent_encoded_names_are_decoded() {
        assert_eq!(
            route(&Method::GET, "/api/streams/front%20door/segments"),
            Ok(Endpoint::Segments("front door".into()))
        );
    }

    #[test]
    fn read_endpoints_refuse_other_methods() {
        assert_eq!(
            route(&Method::POST, "/metrics"),
            Err(RouteError::MethodNotAllowed("GET, HEAD"))
        );
        assert_eq!(route(&Method::GET, "/api/status"), Ok(Endpoint::Status));
        assert_eq!(route(&Method::GET, "/api/events"), Ok(Endpoint::Events));
    }

    #[test]
    fn playback_paths_name_their_stream_and_the_page_is_at_the_root() {
        assert_eq!(
            route(&Method::GET, "/api/playback/cam1.m3u8"),
            Ok(Endpoint::PlaybackM3u8("cam1".into()))
        );
        assert_eq!(
            route(&Method::GET, "/api/playback/front%20door.mp4"),
            Ok(Endpoint::PlaybackMp4("front door".into()))
        );
        assert_eq!(
            route(&Method::POST, "/api/playback/cam1.mp4"),
            Err(RouteError::MethodNotAllowed("GET, HEAD"))
        );
        assert_eq!(route(&Method::GET, "/"), Ok(Endpoint::Page));
        assert_eq!(route(&Method::GET, "/assets/hls.js"), Ok(Endpoint::HlsJs));
        assert_eq!(Endpoint::Page.scope(), Scope::View);
    }

    #[test]
    fn media_is_a_row_id_of_a_stream_never_a_path() {
        assert_eq!(
            route(&Method::GET, "/api/media/cam1/42.mp4"),
            Ok(Endpoint::Media(Media {
                stream: "cam1".into(),
                id: 42,
                ext: "mp4"
            }))
        );
        assert_eq!(
            route(&Method::GET, "/api/media/cam1/7.m4s").map(|e| e.scope()),
            Ok(Scope::View)
        );
        for p in ["/api/media/../42.mp4", "/api/media/a%2F..%2Fb/42.mp4"] {
            assert!(
                matches!(route(&Method::GET, p), Err(RouteError::BadName(_))),
                "{p}"
            );
        }
        for p in [
            "/api/media/cam1/42",
            "/api/media/cam1/42.flv",
            "/api/media/cam1/..%2F42.mp4",
            "/api/media/cam1/x.mp4",
            "/api/media/cam1",
        ] {
            assert_eq!(route(&Method::GET, p), Err(RouteError::NotFound), "{p}");
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in ["/api", "/api/streams/cam1", "/api/streams/cam1/x", "/x"] {
            assert_eq!(route(&Method::GET, p), Err(RouteError::NotFound), "{p}");
        }
    }
}
