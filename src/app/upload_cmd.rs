//! `edgerec uploads` (the backlog, failing jobs and the transfer under way), `edgerec upload
//! --now` (drain the backlog, with a progress bar on a terminal) and `edgerec upload
//! --pause` / `--resume`. They ask the running recorder through the control socket
//! (`uploads`, `upload-now`, `upload-pause`, `upload-resume`); when no recorder runs,
//! `uploads` reads the index and `--pause` / `--resume` set the flag in it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::control::socket::request;
use crate::storage::store::Store;
use crate::sync::upload::uploads::{
    human_bytes, offline_report, progress_line, render, UploadsReport,
};
use crate::sync::upload::{set_paused_in, Backlog};

/// `edgerec uploads`: the report, from the running recorder or the index. The caller
/// opens the index only when `ask` finds no recorder.
pub fn uploads(
    root: &std::path::Path,
    configured: bool,
    open: impl FnOnce() -> anyhow::Result<Store>,
    json: bool,
    now_ms: i64,
) -> anyhow::Result<()> {
    let report: UploadsReport = match request(root, "uploads")? {
        Some(a) => parse(&a)?,
        None => offline_report(&open()?, configured)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, now_ms));
    }
    Ok(())
}

fn parse(answer: &str) -> anyhow::Result<UploadsReport> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(answer) {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            anyhow::bail!("the recorder says: {e}");
        }
    }
    serde_json::from_str(answer)
        .map_err(|e| anyhow::anyhow!("unexpected answer from the running recorder ({e}): {answer}"))
}

/// `edgerec upload --now`: ask the recorder to drain the backlog and follow it until the
/// recorder reports the drain done, its queue empty (or `timeout` passes: then an error).
pub fn upload_now(root: &std::path::Path, timeout: Option<Duration>) -> anyhow::Result<()> {
    let Some(a) = request(root, "upload-now")? else {
        anyhow::bail!(
            "no recorder is running on {}: uploads run inside `edgerec run`",
            root.display()
        );
    };
    parse_ok(&a)?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut first: Option<Backlog> = None;
    let mut last_line = String::new();
    let mut last_print = Instant::now() - Duration::from_secs(60);
    loop {
        let Some(a) = request(root, "uploads")? else {
            anyhow::bail!("the recorder stopped before the backlog was drained");
        };
        let r = parse(&a)?;
        let start = first.get_or_insert_with(|| r.backlog.clone()).clone();
        let line = progress_line(&start, &r, 30);
        let mut err = std::io::stderr();
        if tty {
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        } else if line != last_line && last_print.elapsed() >= Duration::from_secs(2) {
            let _ = writeln!(err, "{line}");
            last_print = Instant::now();
        }
        last_line = line;
        // The recorder ends the drain once its queue is empty; segments that close after
        // that wait for the next window, as usual.
        if !r.draining {
            if tty {
                let _ = writeln!(err);
            }
            println!("upload backlog drained");
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            anyhow::bail!(
                "backlog not drained in time: {} segment(s), {} left",
                r.backlog.count,
                human_bytes(r.backlog.bytes)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `edgerec upload --pause` / `--resume`: tell the running recorder, or set the flag in
/// the index when none runs (the next start honours it). Prints the new state.
pub fn set_paused(
    root: &std::path::Path,
    configured: bool,
    open: impl FnOnce() -> anyhow::Result<Store>,
    pause: bool,
) -> anyhow::Result<()> {
    let req = if pause {
        "upload-pause"
    } else {
        "upload-resume"
    };
    let word = if pause { "paused" } else { "resumed" };
    match request(root, req)? {
        Some(a) => {
            parse_ok(&a)?;
            println!("uploads {word}");
        }
        None => {
            anyhow::ensure!(
                configured,
                "uploads are not configured (no [upload] section)"
            );
            set_paused_in(&open()?, pause)?;
            println!("uploads {word} (no recorder is running: it takes effect at the next start)");
        }
    }
    Ok(())
}

fn parse_ok(answer: &str) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_str(answer)
        .map_err(|_| anyhow::anyhow!("unexpected answer from the running recorder: {answer}"))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(())
}
