//! The I/O loop of one RTSP publisher connection: read with a timeout, split the byte
//! stream into requests and `$`-framed interleaved packets, hand them to the [`Session`],
//! write responses; for a SETUP over UDP, bind the server port pair and hand its datagrams
//! to the session too. Every buffer is bounded by the configured limits.

use std::net::SocketAddr;

use rtsp_types::{headers, Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::framing::{Framer, Item};
use super::session::{After, Session};
use super::udp::{self, Pair, Receivers};
use crate::media::ingest::{ConnectionPermit, Ingest};

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
    let mut udp = Receivers::new(peer.ip());
    let local_ip = sock.local_addr().map(|a| a.ip()).ok();
    let shutdown = ingest.shutdown_token().clone();
    // Any data, over TCP or UDP, keeps the session alive.
    let mut deadline = Instant::now() + limits.session_timeout;
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
            _ = tokio::time::sleep_until(deadline) => break 'conn format!(
                "no data for {:?} (ingest.session_timeout)",
                limits.session_timeout
            ),
            (channel, packet) = udp.recv() => {
                deadline = Instant::now() + limits.session_timeout;
                if let Err(e) = session.data(channel, &packet) {
                    break 'conn e;
                }
                continue;
            }
            r = sock.read_buf(framer.buffer_mut()) => r,
        };
        match read {
            Err(e) => break format!("read error: {e}"),
            Ok(0) => break "closed by the publisher".to_owned(),
            Ok(_) => deadline = Instant::now() + limits.session_timeout,
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
                    let (resp, after) = handle(&mut session, &mut udp, local_ip, peer, &req).await;
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

/// One request; a SETUP asking for UDP gets a port pair bound first, kept only when the
/// session takes it.
async fn handle(
    session: &mut Session,
    udp: &mut Receivers,
    local_ip: Option<std::net::IpAddr>,
    peer: SocketAddr,
    req: &Request<Vec<u8>>,
) -> (rtsp_types::Response<Vec<u8>>, After) {
    let wants_udp = *req.method() == Method::Setup
        && req
            .header(&headers::TRANSPORT)
            .and_then(|t| udp::client_ports(t.as_str()))
            .is_some();
    let (Some(ip), true) = (local_ip, wants_udp && udp.room()) else {
        return session.handle(req);
    };
    let pair = match Pair::bind(ip).await {
        Ok(p) => p,
        Err(e) => {
            warn!(peer = %peer, error = %e, "cannot bind a UDP port pair; SETUP refused");
            return session.handle(req);
        }
    };
    let (resp, after, channel) = session.handle_with_udp(req, Some(pair.ports()));
    if let Some(channel) = channel {
        debug!(peer = %peer, ports = ?pair.ports(), channel, "RTP over UDP");
        udp.start(pair, channel);
    }
    (resp, after)
}
