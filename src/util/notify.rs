//! systemd's service notification protocol (`sd_notify(3)`), written with std alone: one
//! datagram per message to the unix socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`). Without the variable every call is a no-op, so the
//! recorder runs the same outside systemd.
//!
//! The daemon sends `READY=1` once recovery and the first retention pass are done,
//! `WATCHDOG=1` every half `$WATCHDOG_USEC` while every stream is alive (see
//! [`crate::media::health`]), `STATUS=...` lines for `systemctl status`, and `STOPPING=1` as soon as
//! shutdown begins (systemd then waits for the exit under `TimeoutStopSec` instead of the
//! watchdog).
//!
//! Hand-written on purpose: the protocol is one `sendto` on a unix datagram socket, which
//! std does; the `systemd` crate links the C library (absent on non-systemd boards), and the
//! pure-Rust ones (`sd-notify`, `libsystemd`) would add a dependency for the same few lines.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tracing::debug;

/// A connection to systemd's notification socket, if there is one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Notifier::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// From the variables' values (for tests). The watchdog applies only when
    /// `WATCHDOG_PID` is unset or names `pid`.
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let target = socket.and_then(|s| {
            let addr = socket_addr(s)?;
            let sock = UnixDatagram::unbound().ok()?;
            Some(Target { sock, addr })
        });
        let for_us = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>() == Ok(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// True when systemd listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1` (half the watchdog timeout), when one is set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref()?;
        self.watchdog.map(|w| w / 2)
    }

    /// Sends one message (`KEY=VALUE` lines). Errors are logged at debug level and
    /// otherwise ignored: systemd going away must not stop the recording.
    pub fn send(&self, msg: &str) {
        if let Some(t) = &self.target {
            if let Err(e) = t.sock.send_to_addr(msg.as_bytes(), &t.addr) {
                debug!(error = %e, "sd_notify failed");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: closing open segments");
    }
}

fn socket_addr(s: &str) -> Option<std::os::unix::net::SocketAddr> {
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok();
    }
    if !s.starts_with('/') {
        return None; // systemd only ever passes absolute paths or abstract names
    }
    std::os::unix::net::SocketAddr::from_pathname(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams_on_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str(), Some("4000000"), None, 1);
        assert!(n.enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.ready("recording 2 streams");
        n.watchdog();
        let mut buf = [0u8; 256];
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\nSTATUS=recording 2 streams");
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }

    #[test]
    fn abstract_socket_names_work() {
        let name = format!("edgerec-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(Some(&format!("@{name}")), None, None, 1).stopping();
        let mut buf = [0u8; 256];
        let k = listener.recv(&mut buf).unwrap();
        assert!(buf[..k].starts_with(b"STOPPING=1"));
    }

    #[test]
    fn without_a_socket_nothing_happens_and_the_watchdog_needs_our_pid() {
        let n = Notifier::new(None, Some("1000000"), None, 1);
        assert!(!n.enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready("x"); // no panic, no effect
        let n = Notifier::new(Some("/run/x.sock"), Some("1000000"), Some("42"), 7);
        assert_eq!(
            n.watchdog_interval(),
            None,
            "watchdog meant for another pid"
        );
        let n = Notifier::new(Some("/run/x.sock"), Some("1000000"), Some("7"), 7);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(500)));
        assert!(!Notifier::new(Some("relative"), None, None, 1).enabled());
    }
}
