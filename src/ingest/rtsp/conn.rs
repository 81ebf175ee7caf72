//! The I/O loop of one RTSP publisher connection: read with a timeout, split the byte
//! stream into requests and `$`-framed interleaved packets, hand them to the [`Session`],
//! write responses. Every buffer is bounded by the configured limits.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::framing::{Framer, Item};
use super::session::{After, Session};
use crate::ingest::{ConnectionPermit, Ingest};

/// Serve one connection until it closes, fails, times out, or the daemon shuts down.
pub async fn run(
    ingest: Ingest,
    mut sock: TcpStream,
    peer: SocketAddr,
    id: String,
    _permit: ConnectionPermit,
) {
    let limits = ingest.limits().clone();
    let mut framer = Framer::new(limits.max_request_bytes);
    let mut session = Session::new(ingest.clone(), peer, id);
    let shutdown = ingest.shutdown_token().clone();
    let why = 'conn: loop {
        let stopped = async {
            match session.publisher() {
                Some(p) => p.stopped().await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            _ = shutdown.cancelled() => break 'conn "shutting down".to_owned(),
            _ = stopped => break 'conn "publisher stopped (taken over or shutting down)".to_owned(),
            r = tokio::time::timeout(limits.session_timeout, sock.read_buf(framer.buffer_mut())) => r,
        };
        match read {
            Err(_) => {
                break format!(
                    "no data for {:?} (ingest.session_timeout)",
                    limits.session_timeout
                )
            }
            Ok(Err(e)) => break format!("read error: {e}"),
            Ok(Ok(0)) => break "closed by the publisher".to_owned(),
            Ok(Ok(_)) => {}
        }
        loop {
            match framer.next_item() {
                Ok(None) => break,
                Ok(Some(Item::Interleaved { channel, payload })) => {
                    if let Err(e) = session.data(channel, &payload) {
                        break 'conn e;
                    }
                }
                Ok(Some(Item::Request(req))) => {
                    debug!(peer = %peer, method = ?req.method(), "request");
                    let (resp, after) = session.handle(&req);
                    let mut out = Vec::with_capacity(256);
                    if resp.write(&mut out).is_err() {
                        break 'conn "cannot encode a response".to_owned();
                    }
                    if let Err(e) = sock.write_all(&out).await {
                        break 'conn format!("write error: {e}");
                    }
                    if after == After::Close {
                        break 'conn format!("closed after {:?} {}", req.method(), resp.status());
                    }
                }
                Err(e) => {
                    let _ = sock.write_all(e.response()).await;
                    break 'conn e.to_string();
                }
            }
        }
        if framer.buffered() > framer.limit() {
            break format!("over {} bytes buffered", framer.limit());
        }
    };
    if session.publisher().is_some() {
        info!(peer = %peer, reason = %why, "RTSP publisher disconnected");
    } else {
        warn!(peer = %peer, reason = %why, "RTSP connection closed");
    }
    let _ = sock.shutdown().await;
}
