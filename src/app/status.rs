//! `edgerec status` as text for a terminal.

use std::time::Duration;

use crate::control::report::Report;

/// The report as text for a terminal.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.running {
        let _ = writeln!(
            s,
            "edgerec recording on {} (device {}, pid {})",
            r.root,
            r.device_id,
            r.pid.map_or("?".into(), |p| p.to_string())
        );
    } else {
        let _ = writeln!(
            s,
            "no recorder is running on {} (device {}); from the index:",
            r.root, r.device_id
        );
    }
    if !r.streams.is_empty() {
        let _ = writeln!(
            s,
            "\n{:<16} {:<10} {:>8} {:>10}  segment / last error",
            "stream", "state", "frames", "idle"
        );
        for st in &r.streams {
            let seg = match &st.segment {
                Some(o) => format!("writing #{} (started {})", o.seq, utc(o.start_ms)),
                None => st.last_closed.clone().unwrap_or_else(|| "-".into()),
            };
            let state = serde_json::to_value(st.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{:<16} {:<10} {:>8} {:>9}s  {seg}",
                st.name, state, st.frames, st.idle_s
            );
            if let Some(e) = &st.last_error {
                let _ = writeln!(s, "{:<16} last error: {e}", "");
            }
            for t in &st.skipped {
                let _ = writeln!(s, "{:<16} not recorded: {t}", "");
            }
        }
    }
    if !r.storage.is_empty() {
        let _ = writeln!(s, "\nstorage alarms:");
        for c in &r.storage {
            let mut what = c.alarm.clone();
            if let Some(st) = &c.stream {
                let _ = write!(what, " {st}");
            }
            if let (Some(op), Some(e)) = (&c.op, &c.errno) {
                let _ = write!(what, ": {op} {e}");
            } else if let Some(op) = &c.op {
                let _ = write!(what, ": {op}");
            }
            let _ = writeln!(s, "  {what} since {}", utc(c.since_ms));
            if let Some(e) = &c.error {
                let _ = writeln!(s, "    {e}");
            }
        }
    }
    if let Some(d) = &r.disk {
        let _ = writeln!(
            s,
            "\ndisk: {} used of {} quota; {} free of {}",
            human(d.used_bytes),
            human(d.quota_bytes),
            human(d.free_bytes),
            human(d.total_bytes)
        );
    }
    let _ = writeln!(
        s,
        "\n{:<16} {:>7} {:>7} {:>10}",
        "segments", "closed", "writing", "bytes"
    );
    for c in &r.segments {
        let _ = writeln!(
            s,
            "{:<16} {:>7} {:>7} {:>10}",
            c.stream,
            c.closed,
            c.writing,
            human(c.bytes)
        );
    }
    if let Some(c) = &r.clock {
        let _ = write!(
            s,
            "\nclock: {}{}, {} step(s) seen ({} correction(s))",
            c.state,
            c.maxerror_ms
                .map_or(String::new(), |e| format!(" (max error {e} ms)")),
            c.steps,
            c.corrections
        );
        match &c.last_step {
            Some(st) => {
                let _ = writeln!(
                    s,
                    "; last: {} -> {} ({:+} s)",
                    utc(st.from_ms),
                    utc(st.to_ms),
                    st.delta_ms / 1000
                );
            }
            None => s.push('\n'),
        }
    }
    let _ = writeln!(s, "\n{}", r.uploads.render());
    for c in &r.callbacks {
        let state = if c.disabled { "DISABLED" } else { "enabled" };
        let age = c
            .oldest_age_s
            .map_or(String::new(), |a| format!(", oldest {a}s old"));
        let _ = writeln!(
            s,
            "callback {} ({}, {state}): {} event(s) behind{age}, {} dropped",
            c.name, c.format, c.lag_events, c.dropped
        );
        if let Some(e) = c.disabled_reason.as_ref().or(c.last_error.as_ref()) {
            let _ = writeln!(s, "  last error: {e}");
        }
    }
    s
}

/// `2026-01-02T03:04:05Z` from ms since the Unix epoch.
fn utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
