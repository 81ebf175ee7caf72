//! Fewer wake-ups per RTSP session: `SO_RCVLOWAT` on the session's TCP socket.
//!
//! Without it, the kernel wakes the runtime for every TCP segment the camera sends (a
//! 4 Mbit/s stream is ~400 segments a second), although the recorder only reads on its
//! pace ticks. With the low-water mark set to ~[`TARGET`] worth of the stream's measured
//! rate, the socket becomes readable only once that much has arrived, and the recorder,
//! which then waits on the socket instead of polling it on pace ticks, wakes ~10 times a
//! second. Nothing waits much longer than [`TARGET`] at a steady rate; when the rate drops,
//! the mark is lowered at the next [`RETUNE`], and when nothing arrives for a few seconds the
//! source drops it altogether (`RtspSource::next`).
//!
//! retina owns the socket and does not expose it, so it is found by what it is: the one
//! TCP socket connected to the camera's address that appeared while the session was being
//! opened ([`Snapshot`]). When that is ambiguous (two sessions to one camera opening at the
//! same moment) nothing is changed: the mark is only an optimization. Before each change
//! the descriptor is checked to still be the same socket (by inode).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How much of the stream one wake-up should gather.
pub const TARGET: Duration = Duration::from_millis(100);
/// How often the rate is measured and the mark adjusted.
pub const RETUNE: Duration = Duration::from_secs(5);
/// The first measurement, after a session opens or a mark was dropped, is shorter: until a
/// mark is set every TCP segment wakes the runtime (~20 wake-ups a second for a 4 Mbit/s
/// stream), so a whole [`RETUNE`] of that is most of a stream's wake-ups in its first
/// minute. A burst at the start (a camera sending its first GOP at once) can make this
/// first mark too high; [`MAX_MARK`] bounds it and the next [`RETUNE`] corrects it.
pub const FIRST_WINDOW: Duration = Duration::from_secs(1);
/// Below this many bytes per [`TARGET`], a mark is not worth it (low-rate streams wake
/// rarely anyway, and their latency would grow).
const MIN_MARK: usize = 4096;
/// The most a mark may be: bounded latency if the rate collapses between two retunes.
const MAX_MARK: usize = 128 * 1024;

/// A TCP socket of this process: descriptor and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sock {
    fd: i32,
    inode: u64,
}

/// The TCP sockets connected to a peer port before a session opened.
#[derive(Debug, Default)]
pub struct Snapshot {
    port: u16,
    before: HashSet<Sock>,
}

impl Snapshot {
    /// Sockets connected to `port` (on any address) now.
    pub fn take(port: u16) -> Snapshot {
        Snapshot {
            port,
            before: sockets_to(port, None).into_iter().collect(),
        }
    }

    /// The one socket connected to `port` on one of `ips` that was not there before.
    pub fn new_socket(&self, ips: &[IpAddr]) -> Option<Sock> {
        let fresh: Vec<Sock> = sockets_to(self.port, Some(ips))
            .into_iter()
            .filter(|s| !self.before.contains(s))
            .collect();
        match fresh.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// Decides the mark from bytes received over time. Pure.
#[derive(Debug)]
pub struct Tuner {
    window_start: Instant,
    bytes: u64,
    mark: usize,
    /// The first window since a start or reset: [`FIRST_WINDOW`] long.
    first: bool,
}

impl Tuner {
    pub fn new(now: Instant) -> Tuner {
        Tuner {
            window_start: now,
            bytes: 0,
            mark: 0,
            first: true,
        }
    }

    /// The mark now set (0: none).
    pub fn mark(&self) -> usize {
        self.mark
    }

    /// Forget the mark (it was dropped) and start measuring again.
    pub fn reset(&mut self, now: Instant) {
        *self = Tuner::new(now);
    }

    /// Count `n` received bytes; returns a new mark to set when one is due.
    pub fn received(&mut self, n: usize, now: Instant) -> Option<usize> {
        self.bytes += n as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        let window = if self.first { FIRST_WINDOW } else { RETUNE };
        if elapsed < window {
            return None;
        }
        self.first = false;
        let per_target = self.bytes as f64 * TARGET.as_secs_f64() / elapsed.as_secs_f64();
        let want = if (per_target as usize) < MIN_MARK {
            0
        } else {
            (per_target as usize).min(MAX_MARK)
        };
        self.window_start = now;
        self.bytes = 0;
        // Change only on a real difference: each change is a syscall and a /proc lookup.
        let differs = want.abs_diff(self.mark) * 4 > self.mark.max(1);
        if differs {
            self.mark = want;
            Some(want)
        } else {
            None
        }
    }
}

/// Set `SO_RCVLOWAT` on `sock` if its descriptor is still that socket (0 → 1, the default).
pub fn set_mark(sock: Sock, bytes: usize) -> std::io::Result<()> {
    if inode_of(sock.fd) != Some(sock.inode) {
        return Err(std::io::Error::other("the socket is gone"));
    }
    let v: libc::c_int = bytes.clamp(1, MAX_MARK) as libc::c_int;
    // SAFETY: setsockopt with a valid pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn inode_of(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// TCP sockets of this process whose peer has `port` (and one of `ips`, if given).
fn sockets_to(port: u16, ips: Option<&[IpAddr]>) -> Vec<Sock> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(inode) = inode_of(fd) else { continue };
        let Some(peer) = tcp_peer(fd) else { continue };
        if peer.port() == port && ips.is_none_or(|ips| ips.contains(&peer.ip())) {
            out.push(Sock { fd, inode });
        }
    }
    out
}

/// The peer of a connected TCP socket.
fn tcp_peer(fd: i32) -> Option<SocketAddr> {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt/getpeername write at most `len` bytes into the buffers given.
    unsafe {
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            &mut ty as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        ) != 0
            || ty != libc::SOCK_STREAM
        {
            return None;
        }
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return None;
        }
        match addr.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_4_mbit_stream_gets_a_mark_of_100_ms_of_bytes() {
        let t0 = Instant::now();
        let mut t = Tuner::new(t0);
        // 500 kB/s in 50 ms steps.
        let mut set = None;
        for i in 1..=100 {
            if let Some(m) = t.received(25_000, t0 + Duration::from_millis(50 * i)) {
                set = Some(m);
            }
        }
        let m = set.expect("a mark after the first window");
        assert!((49_000..=51_000).contains(&m), "{m}");
    }

    #[test]
    fn a_slow_stream_gets_no_mark_and_a_slowing_one_loses_it() {
        let t0 = Instant::now();
        let mut t = Tuner::new(t0);
        assert_eq!(
            t.received(10_000, t0 + RETUNE),
            None,
            "2 kB/s: not worth a mark"
        );
        let mut t = Tuner::new(t0);
        assert!(t.received(5_000_000, t0 + RETUNE).is_some());
        assert_eq!(
            t.received(1_000, t0 + RETUNE * 2),
            Some(0),
            "back to the default"
        );
    }

    #[test]
    fn the_first_mark_comes_after_one_second_and_later_ones_every_retune() {
        let t0 = Instant::now();
        let mut t = Tuner::new(t0);
        assert_eq!(t.received(400_000, t0 + FIRST_WINDOW / 2), None);
        let first = t
            .received(100_000, t0 + FIRST_WINDOW)
            .expect("a mark after 1 s");
        assert!((49_000..=51_000).contains(&first), "{first}");
        // Half the rate: a real difference, but not due before a whole RETUNE.
        let t1 = t0 + FIRST_WINDOW;
        assert_eq!(t.received(250_000, t1 + RETUNE / 2), None);
        let second = t.received(1_000_000, t1 + RETUNE).expect("retuned");
        assert!((24_000..=26_000).contains(&second), "{second}");
        // After a reset (the mark was dropped), the short window again.
        t.reset(t1 + RETUNE);
        assert!(t.received(500_000, t1 + RETUNE + FIRST_WINDOW).is_some());
    }

    #[test]
    fn small_changes_of_rate_do_not_retune() {
        let t0 = Instant::now();
        let mut t = Tuner::new(t0);
        assert!(t.received(2_500_000, t0 + RETUNE).is_some());
        assert_eq!(t.received(2_600_000, t0 + RETUNE * 2), None);
    }

    #[test]
    fn finds_the_socket_a_connection_opened_and_sets_its_mark() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let snap = Snapshot::take(port);
        let _old_style = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let sock = snap
            .new_socket(&["127.0.0.1".parse().unwrap()])
            .expect("the new socket");
        set_mark(sock, 8192).unwrap();
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reading a c_int option into a c_int.
        let r = unsafe {
            libc::getsockopt(
                sock.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                &mut v as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(v, 8192);
        // A second connection makes it ambiguous for a snapshot taken before both.
        let _second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(snap.new_socket(&["127.0.0.1".parse().unwrap()]), None);
    }
}
