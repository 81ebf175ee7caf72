//! The handlers: a routed, authorized request in, a JSON (or Prometheus text) response out.
//! Recording goes through the fleet commands ([`Commands::handle`], as MQTT and the control
//! socket run them), status through the same report as `edgerec status --json`, events
//! straight from the durable event log; playback in [`super::playback`]. No sockets here:
//! [`super::server`] does the I/O.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{json, Map, Value};

use super::auth::{decide, Decision};
use super::body::Body;
use super::metrics::{Consumer, Counters, Snapshot};
use super::query::{self, BadParam};
use super::route::{route, Endpoint, RouteError};
use crate::config::http::{Scope, Token};
use crate::control::commands::{code, Commands, Reply};
use crate::control::report::StatusSource;
use crate::control::tasks::Scheduler;
use crate::storage::store::{AuxTable, Store};
use crate::sync::events::Events;

/// What the handlers act on; made once by the daemon.
pub struct Api {
    pub commands: Commands,
    pub scheduler: Arc<Scheduler>,
    pub status: Arc<StatusSource>,
    pub store: Arc<Store>,
    pub events: Events,
    pub counters: Arc<Counters>,
    pub tokens: Vec<Token>,
}

/// The HTTP status of a fleet command's error code.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        code::BAD_JSON | code::BAD_FIELD | code::BAD_NAME | code::BAD_TIME_RANGE => {
            StatusCode::BAD_REQUEST
        }
        code::NO_SUCH_STREAM | code::NO_SUCH_TASK | code::NO_SUCH_TEMPLATE => StatusCode::NOT_FOUND,
        code::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        code::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Bytes> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Bytes> {
    json_response(status, &json!({ "error": message.to_string() }))
}

pub(super) fn bad_param(e: BadParam) -> Response<Bytes> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": e.to_string(), "parameter": e.param }),
    )
}

fn command_error(r: Reply) -> Response<Bytes> {
    let c = r.code.unwrap_or_default();
    json_response(
        status_of(&c),
        &json!({ "error": r.message.unwrap_or_default(), "code": c }),
    )
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response<Bytes> {
    error(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// An answer, or the error answer that replaces it.
pub(super) type Result<T> = std::result::Result<T, Response<Bytes>>;

impl Api {
    /// Answer one request (its body already read, within the server's cap).
    pub async fn handle(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        self.dispatch(method, uri, headers, body)
            .await
            .unwrap_or_else(|e| e.map(Body::from))
    }

    async fn dispatch(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>> {
        let auth = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
        let endpoint = match route(method, uri.path()) {
            Ok(e) => e,
            // Nothing about the paths is told to a caller without a token.
            Err(_) if decide(&self.tokens, auth, Scope::View) != Decision::Allow => {
                return Err(unauthorized())
            }
            Err(RouteError::NotFound) => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no endpoint at {}", uri.path()),
                ))
            }
            Err(RouteError::MethodNotAllowed(allow)) => {
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed here; use {allow}"),
                );
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                return Err(r);
            }
            Err(RouteError::BadName(m)) => return Err(error(StatusCode::BAD_REQUEST, m)),
        };
        // Players (hls.js, `<video>`, ffmpeg) send no `Authorization` header: the playback
        // URLs (and the media URLs their playlists name) take the token as `?token=`.
        let query_bearer = match (&endpoint, auth) {
            (
                Endpoint::PlaybackM3u8(_)
                | Endpoint::PlaybackMp4(_)
                | Endpoint::Media(_)
                | Endpoint::Page
                | Endpoint::HlsJs,
                None,
            ) => query::token(uri.query()).map(|t| format!("Bearer {t}")),
            _ => None,
        };
        let auth = auth.or(query_bearer.as_deref().map(str::as_bytes));
        match decide(&self.tokens, auth, endpoint.scope()) {
            Decision::Allow => {}
            Decision::Unauthorized => return Err(unauthorized()),
            Decision::Forbidden => {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "this token has the view scope; this endpoint needs control",
                ))
            }
        }
        let q = uri.query();
        let r = match endpoint {
            Endpoint::PlaybackM3u8(s) => return self.playback_m3u8(&s, q).await,
            Endpoint::PlaybackMp4(s) => return self.playback_mp4(&s, method, q, headers).await,
            Endpoint::Media(m) => return self.media(&m, method, q, headers).await,
            Endpoint::RecordStart(s) => self.record_start(&s, q, &body).await,
            Endpoint::RecordGet(s) => self.record_get(&s, q).await,
            Endpoint::RecordStop(s) => self.record_stop(&s, q).await,
            Endpoint::Status => self.status(q).await,
            Endpoint::Segments(s) => self.segments(&s, q).await,
            Endpoint::Events => self.replay(q).await,
            Endpoint::Metrics => self.metrics(q).await,
            Endpoint::Page => Ok(super::page::page()),
            Endpoint::HlsJs => Ok(super::page::hls_js()),
        };
        r.map(|r| r.map(Body::from))
    }

    async fn command(&self, name: &str, payload: Value) -> Result<Value> {
        let reply = self
            .commands
            .handle(name, &serde_json::to_vec(&payload).unwrap_or_default())
            .await;
        if reply.ok {
            Ok(reply.data)
        } else {
            Err(command_error(reply))
        }
    }

    /// Off the runtime: `f` reads the index or files.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<Store>) -> T + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(internal)
    }

    /// The live777 fields every record reply carries: `recording` and `playlist`.
    async fn record_reply(&self, stream: &str, mut v: Map<String, Value>) -> Result<Value> {
        let recording = self.scheduler.recording().await.contains_key(stream);
        let s = stream.to_string();
        let playlist = self
            .blocking(move |store| super::playlist::latest(&store, &s))
            .await?;
        v.insert("stream".into(), stream.into());
        v.insert("recording".into(), recording.into());
        v.insert(
            "playlist".into(),
            playlist.map_or(Value::Null, |p| p.display().to_string().into()),
        );
        Ok(Value::Object(v))
    }

    async fn record_start(
        &self,
        stream: &str,
        q: Option<&str>,
        body: &[u8],
    ) -> Result<Response<Bytes>> {
        let q = query::record(q).map_err(bad_param)?;
        let mut payload = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "the body must be a JSON object",
                    ))
                }
                Err(e) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not JSON: {e}"),
                    ))
                }
            }
        };
        if payload.contains_key("stream") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "field \"stream\": the stream is named in the path, not the body",
            ));
        }
        if let Some(d) = q.duration_s {
            if payload.contains_key("duration") {
                return Err(bad_param(BadParam {
                    param: "duration".into(),
                    message: "given both in the query and in the body".into(),
                }));
            }
            payload.insert("duration".into(), json!(d));
        }
        payload.insert("stream".into(), stream.into());
        let task = self.command("record.start", Value::Object(payload)).await?;
        let mut v = Map::new();
        v.insert("task".into(), task);
        let v = self.record_reply(stream, v).await?;
        Ok(json_response(StatusCode::OK, &v))
    }

    async fn record_get(&self, stream: &str, q: Option<&str>) -> Result<Response<Bytes>> {
        query::none(q).map_err(bad_param)?;
        let known = self.scheduler.config().stream(stream).is_some()
            || self.scheduler.recording().await.contains_key(stream);
        if !known {
            return Err(command_error(Reply::error(
                code::NO_SUCH_STREAM,
                format!("no stream named {stream:?} is configured"),
            )));
        }
        let data = self
            .command("task.list", json!({ "stream": stream }))
            .await?;
        let tasks = data["tasks"].as_array().cloned().unwrap_or_default();
        // The task that records now, else the newest one.
        let active = |t: &&Value| matches!(t["status"].as_str(), Some("in_progress" | "pending"));
        let task = tasks
            .iter()
            .filter(active)
            .max_by_key(|t| t["task_id"].as_u64())
            .or_else(|| tasks.iter().max_by_key(|t| t["task_id"].as_u64()))
            .cloned()
            .unwrap_or(Value::Null);
        let mut v = Map::new();
        v.insert("task".into(), task);
        let v = self.record_reply(stream, v).await?;
        Ok(json_response(StatusCode::OK, &v))
    }

    async fn record_stop(&self, stream: &str, q: Option<&str>) -> Result<Response<Bytes>> {
        query::none(q).map_err(bad_param)?;
        let data = self
            .command("record.stop", json!({ "stream": stream }))
            .await?;
        let tasks = data["tasks"].clone();
        let mut v = Map::new();
        v.insert("task".into(), tasks.get(0).cloned().unwrap_or(Value::Null));
        v.insert("tasks".into(), tasks);
        let v = self.record_reply(stream, v).await?;
        Ok(json_response(StatusCode::OK, &v))
    }

    async fn status(&self, q: Option<&str>) -> Result<Response<Bytes>> {
        query::none(q).map_err(bad_param)?;
        let st = self.status.clone();
        let report = self
            .blocking(move |store| st.report(&store))
            .await?
            .map_err(internal)?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(report).map_err(internal)?,
        ))
    }

    async fn segments(&self, stream: &str, q: Option<&str>) -> Result<Response<Bytes>> {
        let q = query::segments(q).map_err(bad_param)?;
        let mut payload = json!({ "stream": stream, "limit": q.limit });
        if let Some(s) = q.start_ms {
            payload["from"] = s.into();
        }
        if let Some(e) = q.end_ms {
            payload["to"] = e.into();
        }
        if let Some(a) = q.after_id {
            payload["after_id"] = a.into();
        }
        let data = self.command("segments.list", payload).await?;
        let segments = data["segments"].as_array().cloned().unwrap_or_default();
        let more = data["total"].as_u64().unwrap_or(0) > segments.len() as u64;
        let next = segments
            .last()
            .filter(|_| more)
            .and_then(|s| s["id"].as_u64())
            .map_or(Value::Null, |id| id.to_string().into());
        Ok(json_response(
            StatusCode::OK,
            &json!({ "stream": stream, "segments": segments, "next_cursor": next }),
        ))
    }

    async fn replay(&self, q: Option<&str>) -> Result<Response<Bytes>> {
        let q = query::events(q).map_err(bad_param)?;
        let events = self.events.clone();
        let from = q.after_seq.map_or(0, |s| s.saturating_add(1));
        let limit = q.limit as usize;
        let found = tokio::task::spawn_blocking(move || events.pending(from, limit))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let device = self.events.device();
        let next = found.last().map(|(k, _)| *k).or(q.after_seq);
        let list: Vec<Value> = found
            .iter()
            .filter_map(|(k, e)| {
                serde_json::from_slice(&crate::sync::events::payload(device, e, Some(*k))).ok()
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "events": list, "next_after_seq": next }),
        ))
    }

    async fn metrics(&self, q: Option<&str>) -> Result<Response<Bytes>> {
        query::none(q).map_err(bad_param)?;
        let st = self.status.clone();
        let (report, consumers) = self
            .blocking(move |store| {
                let report = st.report(&store)?;
                let mut consumers = Vec::new();
                for c in store.aux_consumers(AuxTable::Outbox)? {
                    let lag = store
                        .aux_scan(AuxTable::Outbox, c.cursor, usize::MAX)?
                        .len();
                    consumers.push(Consumer {
                        name: c.name,
                        lag: lag as u64,
                        dropped: c.dropped,
                    });
                }
                Ok::<_, crate::storage::store::StoreError>((report, consumers))
            })
            .await?
            .map_err(internal)?;
        let text = super::metrics::render(&Snapshot::new(&report, consumers, &self.counters));
        Ok(respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text.into_bytes(),
        ))
    }
}

fn unauthorized() -> Response<Bytes> {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "a token is required: send Authorization: Bearer <token>",
    );
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_codes_map_to_http_statuses() {
        assert_eq!(status_of(code::BAD_FIELD), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(code::BAD_NAME), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(code::NO_SUCH_STREAM), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(code::UNAVAILABLE),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(code::INTERNAL), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
