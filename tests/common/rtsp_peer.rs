//! The RTSP test peers: `tests/peers/rtsp_server.py` serving MP4 files ([`RtspPeer`]), and
//! a gst-rtsp-server serving a `gst-launch` description ([`LaunchRtspPeer`]). Killed on
//! drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::free_port;
use super::repo;

/// The RTSP test peer (`tests/peers/rtsp_server.py`), killed on drop.
pub struct RtspPeer {
    child: Child,
    pub port: u16,
}

impl RtspPeer {
    /// Serves each `(mount, file)` pair, looping, without authentication.
    pub fn start(mounts: &[(&str, &Path)]) -> RtspPeer {
        Self::start_with(mounts, None)
    }

    /// Serves the mounts, asking for `user`/`password` (basic auth) when given.
    pub fn start_with(mounts: &[(&str, &Path)], auth: Option<(&str, &str)>) -> RtspPeer {
        match auth {
            Some((u, p)) => Self::start_args(mounts, &["--user", u, "--password", p]),
            None => Self::start_args(mounts, &[]),
        }
    }

    /// Serves the mounts, with more arguments for the peer (e.g. `--protocols tcp`,
    /// `--ts /m=FILE`; see `tests/peers/rtsp_server.py`).
    pub fn start_args(mounts: &[(&str, &Path)], args: &[&str]) -> RtspPeer {
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("/usr/bin/python3");
            cmd.arg(repo().join("tests/peers/rtsp_server.py"))
                .args(["--port", &port.to_string()]);
            for (m, f) in mounts {
                cmd.arg("--mount").arg(format!("{m}={}", f.display()));
            }
            cmd.args(args);
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start /usr/bin/python3 tests/peers/rtsp_server.py (make test-deps)");
            let mut line = String::new();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let _ = out.read_line(&mut line);
            if line.trim() == format!("READY {port}") {
                return RtspPeer { child, port };
            }
            last_err = format!("peer said {line:?}");
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("RTSP peer did not start: {last_err}");
    }

    /// `rtsp://127.0.0.1:PORT/mount`.
    pub fn url(&self, mount: &str) -> String {
        format!(
            "rtsp://127.0.0.1:{}/{}",
            self.port,
            mount.trim_start_matches('/')
        )
    }

    /// The URL with credentials.
    pub fn url_auth(&self, mount: &str, user: &str, password: &str) -> String {
        format!(
            "rtsp://{user}:{password}@127.0.0.1:{}/{}",
            self.port,
            mount.trim_start_matches('/')
        )
    }
}

impl Drop for RtspPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RtspPeer {
    /// Like [`RtspPeer::start_with`], on a given `port`: for a camera that comes back on the
    /// address it had (after a kill). Retries for a few seconds while the port is busy.
    pub fn start_on(port: u16, mounts: &[(&str, &Path)], auth: Option<(&str, &str)>) -> RtspPeer {
        match auth {
            Some((u, p)) => Self::start_on_args(port, mounts, &["--user", u, "--password", p]),
            None => Self::start_on_args(port, mounts, &[]),
        }
    }

    /// [`RtspPeer::start_on`] with more arguments for the peer (see [`RtspPeer::start_args`]).
    pub fn start_on_args(port: u16, mounts: &[(&str, &Path)], args: &[&str]) -> RtspPeer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = Command::new("/usr/bin/python3");
            cmd.arg(repo().join("tests/peers/rtsp_server.py"))
                .args(["--port", &port.to_string()]);
            for (m, f) in mounts {
                cmd.arg("--mount").arg(format!("{m}={}", f.display()));
            }
            cmd.args(args);
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start /usr/bin/python3 tests/peers/rtsp_server.py (make test-deps)");
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if line.trim() == format!("READY {port}") {
                return RtspPeer { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "RTSP peer could not listen on port {port} again: said {line:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// A minimal RTSP server (gst-rtsp-server) serving one live `gst-launch` description at
/// `/cam`, for media the file-based [`RtspPeer`] cannot serve (MJPEG, MPEG-4 Part 2, MP3…).
/// The description must name its payloaders `pay0`, `pay1`…; killed on drop.
pub struct LaunchRtspPeer {
    child: Child,
    pub port: u16,
}

const LAUNCH_PEER_PY: &str = r#"
import sys, gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(sys.argv[2])
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(2)
print("READY " + sys.argv[1], flush=True)
GLib.MainLoop().run()
"#;

impl LaunchRtspPeer {
    /// Serves `launch` (e.g. `( videotestsrc is-live=true ! jpegenc ! rtpjpegpay name=pay0 )`).
    pub fn start(launch: &str) -> LaunchRtspPeer {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new("/usr/bin/python3")
                .args(["-c", LAUNCH_PEER_PY, &port.to_string(), launch])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start /usr/bin/python3 with gst-rtsp-server");
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if line.trim() == format!("READY {port}") {
                return LaunchRtspPeer { child, port };
            }
            last = line;
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("gst-launch RTSP peer did not start: said {last:?}");
    }

    /// `rtsp://127.0.0.1:PORT/cam`.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }
}

impl Drop for LaunchRtspPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
