//! The I/O loop of one RTSP publisher connection: read with a timeout, split the byte
//! stream into requests and `$`-framed interleaved packets, hand them to the [`Session`],
//! write responses. Every buffer is bounded by the configured limits.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use rtsp_types::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

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
    // Room for the largest request or one interleaved packet (at most 64 KiB).
    let max_buf = limits.max_request_bytes.max(4 + 65_535);
    let mut buf = BytesMut::with_capacity(16 << 10);
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
            r = tokio::time::timeout(limits.session_timeout, sock.read_buf(&mut buf)) => r,
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
            if buf.first() == Some(&b'$') {
                if buf.len() < 4 {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if buf.len() < 4 + len {
                    break;
                }
                let channel = buf[1];
                let r = session.data(channel, &buf[4..4 + len]);
                buf.advance(4 + len);
                if let Err(e) = r {
                    break 'conn e;
                }
                continue;
            }
            if buf.is_empty() {
                break;
            }
            match Message::<Vec<u8>>::parse(&buf[..]) {
                Ok((Message::Request(req), n)) => {
                    buf.advance(n);
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
                Ok((_, n)) => buf.advance(n), // responses or data framed by the library: ignore
                Err(rtsp_types::ParseError::Incomplete(_)) => {
                    if buf.len() >= limits.max_request_bytes {
                        let _ = sock
                            .write_all(b"RTSP/1.0 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        break 'conn format!(
                            "request over {} bytes (ingest.max_request_bytes)",
                            limits.max_request_bytes
                        );
                    }
                    break;
                }
                Err(rtsp_types::ParseError::Error) => {
                    let _ = sock
                        .write_all(b"RTSP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    break 'conn "malformed RTSP request".to_owned();
                }
            }
        }
        if buf.len() > max_buf {
            break format!("over {max_buf} bytes buffered");
        }
    };
    if session.publisher().is_some() {
        info!(peer = %peer, reason = %why, "RTSP publisher disconnected");
    } else {
        warn!(peer = %peer, reason = %why, "RTSP connection closed");
    }
    let _ = sock.shutdown().await;
}
