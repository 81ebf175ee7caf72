//! `edgerec uploads` (the backlog and the transfer under way) and `edgerec upload --now`
//! (drain the backlog, with a progress bar on a terminal). Both ask the running recorder
//! through the control socket (`uploads`, `upload-now`); `uploads` reads the index when no
//! recorder runs.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{backlog, Backlog, Control, Transfer, PAUSED_KEY};
use crate::store::{AuxTable, Store};

/// The answer to the `uploads` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadsReport {
    /// False when the config has no `[upload]` section.
    pub configured: bool,
    /// False when no recorder runs and this comes from the index alone.
    pub running: bool,
    pub paused: bool,
    /// An `upload --now` drain is under way.
    pub draining: bool,
    pub backlog: Backlog,
    pub current: Option<Transfer>,
}

/// Answer a control-socket request (`uploads` or `upload-now`).
pub async fn answer(store: &Arc<Store>, control: Option<Control>, req: &str) -> String {
    let Some(control) = control else {
        return match req {
            "uploads" => serde_json::to_string(&UploadsReport {
                running: true,
                ..UploadsReport::default()
            })
            .unwrap_or_default(),
            _ => serde_json::json!({"error": "uploads are not configured (no [upload] section)"})
                .to_string(),
        };
    };
    if req == "upload-now" {
        control.now();
        return serde_json::json!({"ok": true}).to_string();
    }
    let s = store.clone();
    let b = match tokio::task::spawn_blocking(move || backlog(&s)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return serde_json::json!({"error": e.to_string()}).to_string(),
        Err(e) => return serde_json::json!({"error": e.to_string()}).to_string(),
    };
    serde_json::to_string(&UploadsReport {
        configured: true,
        running: true,
        paused: control.is_paused(),
        draining: control.is_draining(),
        backlog: b,
        current: control.current(),
    })
    .unwrap_or_default()
}

/// The report from a stopped recorder's index.
pub fn offline_report(
    store: &Store,
    configured: bool,
) -> Result<UploadsReport, crate::store::StoreError> {
    Ok(UploadsReport {
        configured,
        running: false,
        paused: matches!(store.aux_get(AuxTable::Settings, PAUSED_KEY)?, Some(v) if v == [1]),
        draining: false,
        backlog: backlog(store)?,
        current: None,
    })
}

/// Bytes as a short human string.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_age(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}min", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The text of `edgerec uploads`.
pub fn render(r: &UploadsReport, now_ms: i64) -> String {
    if !r.configured {
        return "uploads: not configured (no [upload] section)\n".into();
    }
    let mut s = format!(
        "backlog: {} segment(s), {}",
        r.backlog.count,
        human_bytes(r.backlog.bytes)
    );
    if let Some(o) = r.backlog.oldest_ms {
        s.push_str(&format!(", oldest recorded {} ago", human_age(now_ms - o)));
    }
    s.push('\n');
    let state = match (r.running, r.paused, r.draining) {
        (false, true, _) => "recorder not running (uploads paused)",
        (false, false, _) => "recorder not running",
        (true, true, false) => "paused",
        (true, _, true) => "uploading now (upload --now)",
        (true, false, false) => "running",
    };
    s.push_str(&format!("state: {state}\n"));
    match &r.current {
        Some(t) => s.push_str(&format!(
            "current: segment {}, {} of {} ({}%)\n",
            t.segment_id,
            human_bytes(t.bytes_done),
            human_bytes(t.bytes_total),
            percent(t.bytes_done, t.bytes_total)
        )),
        None => s.push_str("current: none\n"),
    }
    s
}

fn percent(done: u64, total: u64) -> u64 {
    (done.min(total) * 100).checked_div(total).unwrap_or(100)
}

/// One progress line for `upload --now`: a bar over the bytes of the whole drain.
pub fn progress_line(start: &Backlog, r: &UploadsReport, width: usize) -> String {
    let total = start.bytes.max(1);
    let in_flight = r.current.as_ref().map_or(0, |t| t.bytes_done);
    let left = r.backlog.bytes.saturating_sub(in_flight);
    let done = total.saturating_sub(left).min(total);
    let filled = (done as u128 * width as u128 / total as u128) as usize;
    format!(
        "[{}{}] {:>3}% {} left, {} segment(s)",
        "#".repeat(filled),
        "-".repeat(width - filled.min(width)),
        percent(done, total),
        human_bytes(left),
        r.backlog.count
    )
}

/// `edgerec uploads`: the report, from the running recorder or the index. The caller
/// opens the index only when `ask` finds no recorder.
pub fn uploads(
    root: &std::path::Path,
    configured: bool,
    open: impl FnOnce() -> anyhow::Result<Store>,
    json: bool,
    now_ms: i64,
) -> anyhow::Result<()> {
    let report: UploadsReport = match crate::control::request(root, "uploads")? {
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
    let Some(a) = crate::control::request(root, "upload-now")? else {
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
        let Some(a) = crate::control::request(root, "uploads")? else {
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

fn parse_ok(answer: &str) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_str(answer)
        .map_err(|_| anyhow::anyhow!("unexpected answer from the running recorder: {answer}"))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_backlog_age_and_the_current_transfer() {
        let r = UploadsReport {
            configured: true,
            running: true,
            paused: false,
            draining: false,
            backlog: Backlog {
                count: 3,
                bytes: 30 << 20,
                oldest_ms: Some(0),
            },
            current: Some(Transfer {
                segment_id: 9,
                bytes_done: 5 << 20,
                bytes_total: 10 << 20,
            }),
        };
        let s = render(&r, 3 * 3600 * 1000);
        assert!(
            s.contains("3 segment(s), 30.0 MiB, oldest recorded 3h ago"),
            "{s}"
        );
        assert!(s.contains("segment 9, 5.0 MiB of 10.0 MiB (50%)"), "{s}");
        assert!(s.contains("state: running"), "{s}");
    }

    #[test]
    fn the_progress_bar_counts_the_transfer_under_way() {
        let start = Backlog {
            count: 2,
            bytes: 100,
            oldest_ms: None,
        };
        let mut r = UploadsReport {
            configured: true,
            running: true,
            draining: true,
            backlog: Backlog {
                count: 1,
                bytes: 50,
                oldest_ms: None,
            },
            current: Some(Transfer {
                segment_id: 2,
                bytes_done: 25,
                bytes_total: 50,
            }),
            ..UploadsReport::default()
        };
        let l = progress_line(&start, &r, 4);
        assert!(l.starts_with("[###-]  75%"), "{l}");
        r.backlog = Backlog::default();
        r.current = None;
        assert!(progress_line(&start, &r, 4).starts_with("[####] 100%"));
    }

    #[test]
    fn unconfigured_uploads_say_so() {
        assert!(render(&UploadsReport::default(), 0).contains("not configured"));
    }
}
