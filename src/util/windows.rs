//! Upload time windows (`windows = ["22:00-06:00"]`), pure: minutes of the local day in,
//! open or closed out. The caller reads the local time (see [`local_minute`]).

use std::fmt;

/// Minutes in a day.
pub const DAY_MINUTES: u32 = 24 * 60;

/// One daily window, `start` inclusive, `end` exclusive, in minutes after local midnight.
/// `start > end` wraps past midnight (`22:00-06:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

impl Window {
    /// Parse `"HH:MM-HH:MM"` (24-hour clock; `24:00` is allowed as an end).
    pub fn parse(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("\"{s}\" is not a window like \"22:00-06:00\""))?;
        let hm = |t: &str, end: bool| -> Result<u32, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("\"{t}\" in \"{s}\" is not HH:MM"))?;
            let h: u32 = h
                .parse()
                .map_err(|_| format!("\"{t}\" in \"{s}\" is not HH:MM"))?;
            let m: u32 = m
                .parse()
                .map_err(|_| format!("\"{t}\" in \"{s}\" is not HH:MM"))?;
            let max_h = if end { 24 } else { 23 };
            if h > max_h || m > 59 || (h == 24 && m != 0) {
                return Err(format!("\"{t}\" in \"{s}\" is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let w = Window {
            start: hm(a, false)?,
            end: hm(b, true)? % DAY_MINUTES,
        };
        if w.start == w.end {
            return Err(format!(
                "\"{s}\" is empty (start equals end); remove `windows` to upload at any time"
            ));
        }
        Ok(w)
    }

    /// True if `minute` (0..1440) falls inside.
    pub fn contains(&self, minute: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// True if uploads may run at local `minute`: no windows, or inside one of them.
pub fn is_open(windows: &[Window], minute: u32) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(minute))
}

/// Minutes from `minute` until a window opens (0 when one is open now).
pub fn minutes_until_open(windows: &[Window], minute: u32) -> u32 {
    if is_open(windows, minute) {
        return 0;
    }
    windows
        .iter()
        .map(|w| (w.start + DAY_MINUTES - minute) % DAY_MINUTES)
        .min()
        .unwrap_or(0)
}

/// The local minute of the day at `wall_ms` (ms since the Unix epoch), using the system's
/// time zone (`TZ`, `/etc/localtime`).
pub fn local_minute(wall_ms: i64) -> u32 {
    let secs = wall_ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if ok {
        (tm.tm_hour as u32) * 60 + tm.tm_min as u32
    } else {
        (wall_ms.div_euclid(60_000).rem_euclid(DAY_MINUTES as i64)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_across_midnight_contains_both_ends_of_the_night() {
        let w = Window::parse("22:00-06:00").unwrap();
        assert!(w.contains(23 * 60));
        assert!(w.contains(0));
        assert!(w.contains(5 * 60 + 59));
        assert!(!w.contains(6 * 60));
        assert!(!w.contains(12 * 60));
        assert_eq!(w.to_string(), "22:00-06:00");
    }

    #[test]
    fn a_daytime_window_excludes_its_end() {
        let w = Window::parse("09:30-17:00").unwrap();
        assert!(!w.contains(9 * 60 + 29));
        assert!(w.contains(9 * 60 + 30));
        assert!(!w.contains(17 * 60));
        assert_eq!(Window::parse("18:00-24:00").unwrap().end, 0);
    }

    #[test]
    fn bad_windows_say_why() {
        assert!(Window::parse("22:00").unwrap_err().contains("22:00-06:00"));
        assert!(Window::parse("25:00-06:00")
            .unwrap_err()
            .contains("time of day"));
        assert!(Window::parse("10:00-10:00").unwrap_err().contains("empty"));
        assert!(Window::parse("ab:00-10:00").unwrap_err().contains("HH:MM"));
    }

    #[test]
    fn no_windows_means_always_open_and_the_wait_is_to_the_next_start() {
        assert!(is_open(&[], 123));
        let ws = [
            Window::parse("22:00-23:00").unwrap(),
            Window::parse("02:00-03:00").unwrap(),
        ];
        assert_eq!(minutes_until_open(&ws, 21 * 60), 60);
        assert_eq!(minutes_until_open(&ws, 23 * 60 + 30), 150);
        assert_eq!(minutes_until_open(&ws, 22 * 60 + 5), 0);
    }
}
