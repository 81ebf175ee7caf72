//! The periodic telemetry report: disk, streams, upload backlog, the process's CPU time
//! and memory, the board's temperature and the outbox. Gathering reads `/proc` and `/sys`
//! (blocking: run it off the async runtime); parsing is pure and tested here.

use std::path::Path;

use crate::control::report::{Live, Report};
use crate::storage::store::Store;
use crate::sync::events::Events;

/// CPU seconds (user + system) from the text of `/proc/self/stat`.
pub fn cpu_seconds(stat: &str, ticks_per_s: u64) -> Option<f64> {
    // The command name (field 2) may contain spaces; fields after its ')' are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_s.max(1) as f64)
}

/// Resident bytes from the text of `/proc/self/statm`.
pub fn rss_bytes(statm: &str, page: u64) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page)
}

/// Readable thermal zones in °C (millidegrees in sysfs) under `sys` (normally
/// `/sys/class/thermal`), by zone type, in zone order; unreadable zones are left out.
pub fn temperatures(sys: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(sys) else {
        return out;
    };
    let mut zones: Vec<_> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .collect();
    zones.sort_by_key(|e| e.file_name());
    for z in zones {
        let Some(milli) = std::fs::read_to_string(z.path().join("temp"))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        else {
            continue;
        };
        let kind = std::fs::read_to_string(z.path().join("type"))
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|_| z.file_name().to_string_lossy().into_owned());
        out.push(serde_json::json!({"zone": kind, "celsius": milli as f64 / 1000.0}));
    }
    out
}

/// One telemetry report (blocking), and the number of dropped events it reports: once the
/// report is handed to the broker client, call [`Events::forget_dropped`] with it.
pub fn gather(
    store: &Store,
    live: &Live,
    events: &Events,
    device: &str,
    quota: u64,
    now: std::time::Instant,
    wall_ms: i64,
) -> (serde_json::Value, u64) {
    let report: Option<Report> =
        crate::control::report::build_report(store, Some(live), device, quota, now).ok();
    // The status report's upload section (one scan of the index); the pause is persisted,
    // so the index says it too.
    let paused = crate::sync::upload::paused_in(store).unwrap_or(false);
    let u = report
        .as_ref()
        .map(|r| r.uploads.clone())
        .unwrap_or_default()
        .with_state(true, paused, wall_ms);
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_seconds(&s, ticks));
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| rss_bytes(&s, page));
    let streams = report.as_ref().map(|r| &r.streams[..]).unwrap_or_default();
    let recording: Vec<&str> = streams
        .iter()
        .filter(|s| s.state == crate::media::health::StreamState::Recording)
        .map(|s| s.name.as_str())
        .collect();
    let outbox = store
        .aux_stats(crate::storage::store::AuxTable::Outbox)
        .map(|(n, _)| n)
        .unwrap_or(0);
    let dropped = events.dropped().unwrap_or(0);
    let v = serde_json::json!({
        "at_ms": wall_ms,
        "uptime_s": (wall_ms - live.started_ms).max(0) / 1000,
        "disk": report.as_ref().and_then(|r| r.disk.clone()),
        "streams": {
            "total": streams.len(),
            "recording": recording.len(),
            "recording_names": recording,
        },
        "upload": {
            "backlog_segments": u.backlog_segments,
            "backlog_bytes": u.backlog_bytes,
            "oldest_age_s": u.oldest_age_s,
            "failing": u.failing,
            "paused": u.paused,
        },
        "process": {"cpu_seconds": cpu, "rss_bytes": rss},
        "temperature": temperatures(Path::new("/sys/class/thermal")),
        "outbox": {"pending": outbox, "dropped": dropped},
        "clock": report.as_ref().and_then(|r| r.clock.clone()),
        "callbacks": crate::sync::webhooks::aged(
            report.map(|r| r.callbacks).unwrap_or_default(),
            wall_ms,
        ),
    });
    (v, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks_even_with_spaces_in_the_name() {
        let stat =
            "1234 (edge rec) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200";
        assert_eq!(cpu_seconds(stat, 100), Some(3.0));
        assert_eq!(cpu_seconds("garbage", 100), None);
    }

    #[test]
    fn rss_is_resident_pages_times_page_size() {
        assert_eq!(rss_bytes("1000 250 100 1 0 300 0", 4096), Some(250 * 4096));
        assert_eq!(rss_bytes("", 4096), None);
    }

    #[test]
    fn temperatures_are_read_from_thermal_zones_in_order_skipping_unreadable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let zone = |name: &str, kind: Option<&str>, temp: Option<&str>| {
            let z = dir.path().join(name);
            std::fs::create_dir(&z).unwrap();
            if let Some(k) = kind {
                std::fs::write(z.join("type"), format!("{k}\n")).unwrap();
            }
            if let Some(t) = temp {
                std::fs::write(z.join("temp"), format!("{t}\n")).unwrap();
            }
        };
        zone("thermal_zone1", Some("gpu-thermal"), Some("41250"));
        zone("thermal_zone0", Some("cpu-thermal"), Some("48312"));
        zone("thermal_zone2", Some("broken"), Some("n/a"));
        zone("thermal_zone3", None, Some("-5000"));
        zone("cooling_device0", Some("fan"), Some("1"));
        let got = temperatures(dir.path());
        assert_eq!(
            got,
            vec![
                serde_json::json!({"zone": "cpu-thermal", "celsius": 48.312}),
                serde_json::json!({"zone": "gpu-thermal", "celsius": 41.25}),
                serde_json::json!({"zone": "thermal_zone3", "celsius": -5.0}),
            ]
        );
        assert!(temperatures(&dir.path().join("missing")).is_empty());
    }
}
