//! What `edgerec uploads` shows (the backlog, failing jobs and the transfer under way) and
//! the recorder's answers to the control-socket requests behind `edgerec uploads` and
//! `edgerec upload --now|--pause|--resume` ([`REQUESTS`]); also the text rendering and the
//! progress line. The commands themselves, which talk to the socket, are in
//! `app::upload_cmd`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::transfer::Progress;
use super::{paused_in, Backlog, Control, Transfer};
use crate::storage::store::{AuxTable, SegmentRow, SegmentState, Store, StoreError, UploadState};

/// A segment waiting for upload whose last attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingJob {
    pub segment_id: u64,
    pub stream: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// The last error was transient (retried quickly).
    pub transient: bool,
    /// When it failed and when it is tried again, ms since the Unix epoch.
    pub at_ms: i64,
    pub retry_at_ms: i64,
}

/// The failing jobs among the pending `rows`, from their saved failures (blocking).
pub fn failing(store: &Store, rows: &[SegmentRow]) -> Result<Vec<FailingJob>, StoreError> {
    let mut out = Vec::new();
    for (id, v) in store.aux_scan(AuxTable::UploadParts, 0, usize::MAX)? {
        let Some(f) = Progress::decode(&v).failure else {
            continue;
        };
        let Some(r) = rows.iter().find(|r| {
            r.id == id
                && r.state == SegmentState::Closed
                && matches!(r.upload, UploadState::Pending { .. })
        }) else {
            continue;
        };
        out.push(FailingJob {
            segment_id: id,
            stream: r.stream.clone(),
            attempts: f.attempts,
            error: f.error,
            transient: f.transient,
            at_ms: f.at_ms,
            retry_at_ms: f.retry_at_ms,
        });
    }
    Ok(out)
}

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
    /// Waiting segments whose last attempt failed: attempts, last error, next retry.
    #[serde(default)]
    pub failing: Vec<FailingJob>,
}

/// Backlog and failing jobs from the index (blocking).
fn from_index(store: &Store) -> Result<(Backlog, Vec<FailingJob>), StoreError> {
    let rows = store.segments()?;
    Ok((super::backlog_of(&rows), failing(store, &rows)?))
}

/// The control-socket requests this module answers.
pub const REQUESTS: [&str; 4] = ["uploads", "upload-now", "upload-pause", "upload-resume"];

fn error_json(e: impl std::fmt::Display) -> String {
    serde_json::json!({"error": e.to_string()}).to_string()
}

/// Answer a control-socket request (one of [`REQUESTS`]).
pub async fn answer(store: &Arc<Store>, control: Option<Control>, req: &str) -> String {
    let Some(control) = control else {
        return match req {
            "uploads" => serde_json::to_string(&UploadsReport {
                running: true,
                ..UploadsReport::default()
            })
            .unwrap_or_default(),
            _ => error_json("uploads are not configured (no [upload] section)"),
        };
    };
    match req {
        "upload-now" => {
            control.now();
            return serde_json::json!({"ok": true}).to_string();
        }
        "upload-pause" | "upload-resume" => {
            let c = control.clone();
            let pause = req == "upload-pause";
            let res =
                tokio::task::spawn_blocking(move || if pause { c.pause() } else { c.resume() })
                    .await;
            return match res {
                Ok(Ok(())) => serde_json::json!({"ok": true, "paused": pause}).to_string(),
                Ok(Err(e)) => error_json(e),
                Err(e) => error_json(e),
            };
        }
        _ => {}
    }
    let s = store.clone();
    let (b, failing) = match tokio::task::spawn_blocking(move || from_index(&s)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return error_json(e),
        Err(e) => return error_json(e),
    };
    serde_json::to_string(&UploadsReport {
        configured: true,
        running: true,
        paused: control.is_paused(),
        draining: control.is_draining(),
        backlog: b,
        current: control.current(),
        failing,
    })
    .unwrap_or_default()
}

/// The report from a stopped recorder's index.
pub fn offline_report(store: &Store, configured: bool) -> Result<UploadsReport, StoreError> {
    let (backlog, failing) = from_index(store)?;
    Ok(UploadsReport {
        configured,
        running: false,
        paused: paused_in(store)?,
        draining: false,
        backlog,
        current: None,
        failing,
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

/// A duration in ms as a short human string (`45s`, `12min`, `3h`, `2d`).
pub fn human_age(ms: i64) -> String {
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
    const SHOWN: usize = 10;
    for f in r.failing.iter().take(SHOWN) {
        let retry = if f.retry_at_ms > now_ms {
            format!("retry in {}", human_age(f.retry_at_ms - now_ms))
        } else {
            "retry due".to_string()
        };
        s.push_str(&format!(
            "failing: segment {} ({}), {} attempt(s), {} ({} ago): {}\n",
            f.segment_id,
            f.stream,
            f.attempts,
            retry,
            human_age(now_ms - f.at_ms),
            f.error
        ));
    }
    if r.failing.len() > SHOWN {
        s.push_str(&format!(
            "failing: {} more (see --json)\n",
            r.failing.len() - SHOWN
        ));
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
            failing: vec![FailingJob {
                segment_id: 4,
                stream: "cam".into(),
                attempts: 7,
                error: "PUT k on target \"vod\": 403 Forbidden".into(),
                transient: false,
                at_ms: 3 * 3600 * 1000 - 60_000,
                retry_at_ms: 3 * 3600 * 1000 + 300_000,
            }],
        };
        let s = render(&r, 3 * 3600 * 1000);
        assert!(
            s.contains("3 segment(s), 30.0 MiB, oldest recorded 3h ago"),
            "{s}"
        );
        assert!(s.contains("segment 9, 5.0 MiB of 10.0 MiB (50%)"), "{s}");
        assert!(s.contains("state: running"), "{s}");
        assert!(
            s.contains("failing: segment 4 (cam), 7 attempt(s), retry in 5min (60s ago): PUT k on target \"vod\": 403 Forbidden"),
            "{s}"
        );
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
