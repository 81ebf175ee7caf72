//! The RTSP push server: publishers (ffmpeg `-f rtsp`, GStreamer `rtspclientsink`,
//! encoders) ANNOUNCE an SDP, SETUP each track over TCP interleaved transport or UDP,
//! RECORD, and send RTP; each push is recorded through [`crate::media::ingest::Ingest::publish`].
//!
//! `rtsp://host:8554/app/stream?record params` gives the app and stream names. Methods:
//! OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER/SET_PARAMETER (keepalives).
//! Refusals carry the reason as a text body; statuses come from
//! [`crate::media::ingest::PublishError::rtsp_status`].
//!
//! # Layout
//!
//! - here: the listener ([`bind`], [`serve`]).
//! - `conn`: one connection's I/O loop (timeout, writes, UDP sockets).
//! - [`framing`]: the byte stream split into requests and interleaved packets (bounded).
//! - [`session`]: the protocol state (requests, RTP -> frames); its `setup` answers SETUP,
//!   accepting tracks that are not recorded (their RTP is dropped) so publishers carry on.
//! - [`sdp`]: the announced tracks; [`auth`]: Basic and Digest credentials.
//! - [`udp`]: RTP over UDP: server port pairs and datagram readers.

pub mod auth;
mod conn;
pub mod framing;
pub mod sdp;
pub mod session;
pub mod udp;

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use super::Ingest;

/// Bind the server's address (at startup, so a port in use fails the start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr().unwrap_or(addr), "RTSP push server listening");
    Ok(listener)
}

/// Accept publishers until the shutdown token is cancelled.
pub async fn serve(ingest: Ingest, listener: TcpListener) {
    let shutdown = ingest.shutdown_token().clone();
    let mut next_id: u64 = 0;
    loop {
        let (mut sock, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    error!(error = %e, "RTSP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        match ingest.connection() {
            Ok(permit) => {
                next_id += 1;
                let id = format!("{:08x}{next_id:08x}", std::process::id());
                tokio::spawn(conn::run(ingest.clone(), sock, peer, id, permit));
            }
            Err(e) => {
                warn!(peer = %peer, error = %e, "RTSP connection refused");
                tokio::spawn(async move {
                    let _ = sock
                        .write_all(b"RTSP/1.0 503 Service Unavailable\r\nCSeq: 0\r\nContent-Length: 0\r\n\r\n")
                        .await;
                });
            }
        }
    }
    info!("RTSP push server stopped");
}
