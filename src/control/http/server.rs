//! The sockets: accept, read requests with hyper 1 (HTTP/1.1), hand them to [`Api::handle`],
//! write the answer. The only file here that does network I/O.
//!
//! Limits, against clients that misbehave or mean harm:
//! - a request's headers must arrive within [`HEADER_TIMEOUT`] (a slowloris client is
//!   disconnected, and holds no recording resource meanwhile);
//! - headers are capped by hyper's buffer ([`MAX_HEADER_BYTES`]: larger gets 431), bodies at
//!   [`MAX_BODY_BYTES`] (413, from `Content-Length` before reading, or while reading);
//! - at most [`MAX_CONNECTIONS`] connections at once; more are closed at accept;
//! - on the daemon's cancellation the listener closes, idle connections close, requests
//!   under way finish, and after [`SHUTDOWN_GRACE`] whatever is left is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::api::{error, Api};
use super::body::Body;

/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body (the record endpoints' JSON is a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// hyper's read buffer: the largest request head.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long the shutdown waits for requests under way.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Bind `addr` (before the daemon reports ready, so a taken port fails the start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `listener` until `cancel`, then wait for the connections (at most
/// [`SHUTDOWN_GRACE`]).
pub async fn serve(listener: TcpListener, api: Arc<Api>, cancel: CancellationToken) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "HTTP API listening");
    }
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
            // Reap finished connections so the count stays true.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if conns.len() >= MAX_CONNECTIONS {
            debug!(%peer, "HTTP connection refused: too many connections");
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        conns.spawn(connection(tcp, api.clone(), cancel.clone()));
    }
    drop(listener);
    let wait = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, wait).await.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    debug!("HTTP API closed");
}

async fn connection(tcp: tokio::net::TcpStream, api: Arc<Api>, cancel: CancellationToken) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(answer(&api, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn answer(api: &Api, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        too_large()
    } else {
        match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(b) => {
                api.handle(&parts.method, &parts.uri, &parts.headers, b.to_bytes())
                    .await
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => too_large(),
            Err(e) => error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
            .map(Body::from),
        }
    }
}

fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    )
    .map(Body::from)
}
