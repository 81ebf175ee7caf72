//! The RTMP listener and the per-connection loop: the only I/O of the RTMP server.
//!
//! Each connection takes an [`Ingest::connection`] permit (refused at once past
//! `ingest.max_connections`), then moves bytes between the socket and a pure
//! [`Connection`], asks [`Ingest::publish`] when the client publishes and hands frames to
//! the [`Publisher`]. Any error closes that connection with a log line naming the peer;
//! dropping the publisher (error, EOF, FCUnpublish) ends the push and the recorder closes
//! its segment. A connection silent for `ingest.session_timeout` is closed. When
//! `ingest.users` is set, a publish must carry `user`/`pass` in its query ([`auth`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

use super::{auth, Connection, Item, RtmpError, RtmpLimits};
use crate::media::ingest::{
    Ingest, IngestError, Protocol, PublishError, PublishRequest, Publisher,
};

/// A bound RTMP server.
pub struct Server {
    listener: TcpListener,
    ingest: Ingest,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr, ingest: Ingest) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server { listener, ingest })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts publishers until the ingest's shutdown token is cancelled, then waits for
    /// every connection to end (each ends at once on shutdown, dropping its publisher).
    pub async fn run(self) {
        let shutdown = self.ingest.shutdown_token().clone();
        if let Ok(a) = self.listener.local_addr() {
            info!(addr = %a, "RTMP publish server listening");
        }
        let mut tasks = JoinSet::new();
        let mut next_id = 0u32;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => r,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("RTMP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let permit = match self.ingest.connection() {
                Ok(p) => p,
                Err(e) => {
                    warn!(peer = %peer, "RTMP connection refused: {e}");
                    continue;
                }
            };
            next_id = next_id.wrapping_add(1);
            let ingest = self.ingest.clone();
            let span = info_span!("rtmp", peer = %peer);
            tasks.spawn(
                async move {
                    let seed = next_id ^ (u32::from(peer.port()) << 16);
                    match serve(sock, peer, &ingest, seed).await {
                        Ok(()) => debug!("connection closed"),
                        Err(e) => warn!("connection closed: {e}"),
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The onStatus code a refusal is sent with.
fn refusal_code(e: &PublishError) -> &'static str {
    match e {
        PublishError::AlreadyLive { .. }
        | PublishError::NameTaken { .. }
        | PublishError::BadName { .. } => "NetStream.Publish.BadName",
        _ => "NetStream.Publish.Rejected",
    }
}

async fn serve(
    mut sock: TcpStream,
    peer: SocketAddr,
    ingest: &Ingest,
    seed: u32,
) -> Result<(), RtmpError> {
    sock.set_nodelay(true)?;
    let limits = RtmpLimits::from(ingest.limits());
    let timeout = ingest.limits().session_timeout;
    let shutdown = ingest.shutdown_token().clone();
    let mut buf = vec![0u8; limits.read_size];
    let mut conn = Connection::new(limits, 0, seed);
    let mut publisher: Option<Publisher> = None;
    loop {
        while let Some(item) = conn.poll()? {
            match item {
                Item::Publish { app, stream, query } => {
                    let creds = auth::split(&query);
                    let result = match auth::check(ingest.users(), &creds) {
                        Err(reason) => Err(("NetStream.Publish.Rejected", reason.to_owned())),
                        Ok(()) => ingest
                            .publish(PublishRequest {
                                protocol: Protocol::Rtmp,
                                app: app.clone(),
                                stream: stream.clone(),
                                query: creds.query,
                                peer,
                                // Known from the first frames: Publisher::send checks.
                                codecs: None,
                            })
                            .map_err(|e| (refusal_code(&e), e.to_string())),
                    };
                    match result {
                        Ok(p) => {
                            conn.accept();
                            publisher = Some(p);
                        }
                        Err((code, reason)) => {
                            conn.refuse(code, &reason);
                            flush(&mut sock, &mut conn, timeout).await?;
                            info!(app = %app, stream = %stream, "publish refused: {reason}");
                            return Ok(());
                        }
                    }
                }
                Item::Frame(frame) => {
                    if let Some(p) = publisher.as_mut() {
                        match p.send(frame) {
                            Ok(()) => {}
                            Err(IngestError::Refused { stream, refusal }) => {
                                // The publish was accepted before its codecs were known:
                                // refuse it now, and give the publisher time to read why.
                                let reason = refusal.to_string();
                                conn.refuse(refusal_code(&refusal), &reason);
                                flush(&mut sock, &mut conn, timeout).await?;
                                info!(stream = %stream, "publish refused: {reason}");
                                drop(publisher.take());
                                linger(&mut sock).await;
                                return Ok(());
                            }
                            Err(e) => return Err(RtmpError::Ingest(e)),
                        }
                    }
                }
                Item::Unpublish => {
                    if let Some(p) = publisher.take() {
                        info!(stream = %p.stream(), "publisher unpublished");
                    }
                }
            }
        }
        if let Some(w) = conn.take_warning() {
            match &publisher {
                Some(p) => {
                    warn!(stream = %p.stream(), "{w}");
                    p.set_skipped(vec![w]);
                }
                None => warn!("{w}"),
            }
        }
        flush(&mut sock, &mut conn, timeout).await?;
        let room = conn.room().min(buf.len());
        let stopped = async {
            match &publisher {
                Some(p) => p.stopped().await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            r = tokio::time::timeout(timeout, sock.read(&mut buf[..room])) => match r {
                Ok(r) => r?,
                Err(_) => return Err(RtmpError::Timeout { secs: timeout.as_secs() }),
            },
            _ = stopped => {
                // Taken over, or shutting down.
                return match publisher.as_ref().map(|p| p.stream().to_owned()) {
                    Some(stream) if !shutdown.is_cancelled() => Err(RtmpError::Ingest(
                        crate::media::ingest::IngestError::TakenOver { stream },
                    )),
                    _ => Ok(()),
                };
            }
            _ = shutdown.cancelled() => return Ok(()),
        };
        if n == 0 {
            if let Some(p) = &publisher {
                info!(stream = %p.stream(), "publisher disconnected");
            }
            return Ok(());
        }
        conn.receive(&buf[..n])?;
    }
}

/// After a refusal: read and drop what the publisher still sends, for at most
/// [`LINGER`], so that it reads the onStatus error before the connection closes (a
/// publisher only looks for replies between its writes).
async fn linger(sock: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = sock.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// How long a refused publisher is given to read why.
const LINGER: Duration = Duration::from_secs(2);

async fn flush(
    sock: &mut TcpStream,
    conn: &mut Connection,
    timeout: Duration,
) -> Result<(), RtmpError> {
    if let Some(out) = conn.take_output() {
        tokio::time::timeout(timeout, sock.write_all(&out))
            .await
            .map_err(|_| RtmpError::Timeout {
                secs: timeout.as_secs(),
            })??;
    }
    Ok(())
}
