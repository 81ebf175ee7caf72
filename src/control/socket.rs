//! The local control socket, `<storage.root>/control.sock`.
//!
//! The index is a redb database that one process holds open, so while the recorder runs,
//! other `edgerec` commands ask it through this socket instead. The protocol is one request
//! line in, one JSON document out, then the connection closes:
//!
//! | request      | answer                                   |
//! |--------------|------------------------------------------|
//! | `segments`   | JSON array of index rows (`SegmentRow`)  |
//! | `ping`       | `{"ok":true}`                            |
//! | `status`     | [`crate::control::report::Report`] as JSON        |
//! | `uploads`    | [`crate::sync::upload::uploads::UploadsReport`]    |
//! | `upload-now` | `{"ok":true}`: drain the upload backlog |
//! | `upload-pause`, `upload-resume` | `{"ok":true,"paused":B}`: pause or resume uploads |
//! | `command NAME [JSON]` | the [`crate::control::commands::Reply`] of fleet command `NAME` |
//!
//! Anything else gets `{"error": "..."}`. Requests are capped at 64 KiB.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::control::commands::Commands;
pub use crate::control::report::StatusSource;
use crate::storage::store::Store;

/// Where the socket lives for a storage root.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join("control.sock")
}

/// Serve the socket until cancelled. The socket file is removed on the way out.
pub async fn serve(store: Arc<Store>, cancel: CancellationToken) {
    serve_with_status(store, None, None, cancel).await
}

/// [`serve`], also answering `status` (and the upload requests) when `status` is given,
/// and `command NAME JSON` when `commands` is.
pub async fn serve_with_status(
    store: Arc<Store>,
    status: Option<Arc<StatusSource>>,
    commands: Option<Commands>,
    cancel: CancellationToken,
) {
    let path = socket_path(store.root());
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "control socket unavailable; `edgerec segments` will not work while recording");
            return;
        }
    };
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let store = store.clone();
        let status = status.clone();
        let commands = commands.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut line = String::new();
            let mut rd = tokio::io::BufReader::new(rd.take(64 << 10));
            let read = tokio::time::timeout(Duration::from_secs(5), rd.read_line(&mut line)).await;
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let answer = match (line.trim(), status) {
                ("status", Some(st)) => status_answer(&store, st).await,
                (req, Some(_)) if req.starts_with("command ") && commands.is_some() => {
                    let (name, payload) = req["command ".len()..]
                        .trim()
                        .split_once(' ')
                        .unwrap_or((req["command ".len()..].trim(), ""));
                    let reply = commands
                        .as_ref()
                        .expect("checked")
                        .handle(name, payload.as_bytes())
                        .await;
                    String::from_utf8_lossy(&reply.to_bytes()).into_owned()
                }
                (req, st) if crate::sync::upload::uploads::REQUESTS.contains(&req) => {
                    crate::sync::upload::uploads::answer(
                        &store,
                        st.and_then(|s| s.uploads.clone()),
                        req,
                    )
                    .await
                }
                (req, _) => answer(&store, req).await,
            };
            let _ = wr.write_all(answer.as_bytes()).await;
            let _ = wr.shutdown().await;
        });
    }
    let _ = std::fs::remove_file(&path);
    debug!("control socket closed");
}

async fn answer(store: &Arc<Store>, req: &str) -> String {
    match req {
        "ping" => r#"{"ok":true}"#.to_string(),
        "segments" => {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.segments()).await {
                Ok(Ok(rows)) => {
                    serde_json::to_string(&rows).unwrap_or_else(|e| err(&e.to_string()))
                }
                Ok(Err(e)) => err(&e.to_string()),
                Err(e) => err(&e.to_string()),
            }
        }
        other => err(&format!(
            "unknown request {other:?} (try: segments, status, ping, uploads)"
        )),
    }
}

async fn status_answer(store: &Arc<Store>, st: Arc<StatusSource>) -> String {
    let store = store.clone();
    let res = tokio::task::spawn_blocking(move || st.report(&store)).await;
    match res {
        Ok(Ok(r)) => serde_json::to_string(&r).unwrap_or_else(|e| err(&e.to_string())),
        Ok(Err(e)) => err(&e.to_string()),
        Err(e) => err(&e.to_string()),
    }
}

fn err(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// Ask a running recorder. `Ok(None)` when no recorder is listening on this root.
pub fn request(root: &Path, req: &str) -> std::io::Result<Option<String>> {
    let mut s = match UnixStream::connect(socket_path(root)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("{req}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(Some(out))
}
