//! The power-cut test's rig: the recorder's config, the recorder and its RTMP pusher started
//! and killed together, and the one-shot commands the checks use.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgerec::storage::store::{CheckReport, SegmentRow};

use crate::common::*;

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The recorder on the power-loss mount: a looping file camera `cam` and an RTMP push
/// `live/push`, both into 2 s segments of 500 ms fragments in fMP4 and progressive MP4,
/// uploaded to a directory outside the mount, events to a broker.
pub struct Rig {
    /// The storage root, on the mount.
    pub root: PathBuf,
    /// Where the upload target puts its objects (not on the mount).
    pub uploads: PathBuf,
    pub cfg: PathBuf,
    /// The same without streams or ingest: for draining uploads and events at the end.
    pub drain_cfg: PathBuf,
    rtmp_port: u16,
    push_clip: PathBuf,
    dir: PathBuf,
    daemon: Option<Daemon>,
    pusher: Option<Child>,
    /// Recorder runs started so far (each logs one "edgerec ready").
    pub runs: usize,
}

impl Rig {
    /// Writes the configs; `root` must exist (and be durable) already.
    pub fn new(dir: &Path, root: &Path, mqtt_url: &str) -> Rig {
        // Small pictures: every byte goes through the FUSE peer (in Python) and is hashed and
        // decoded again after every cut, and the file count, not the bitrate, is what is tested.
        let small = |seconds| ClipSpec {
            width: 160,
            height: 120,
            ..ClipSpec::h264(seconds, 1)
        };
        let cam = clip(&small(10));
        let push_clip = clip(&small(8));
        let uploads = dir.join("uploads");
        let rtmp_port = free_port();
        let base = TestConfig {
            // No eviction for free space: every segment must stay, and a build machine's
            // nearly full disk (the mount's statfs is its backing filesystem's) must not
            // make retention delete some. A `segment.evicted` fails the test.
            min_free: "0".into(),
            formats: vec!["fmp4".into(), "mp4".into()],
            interval: "2s".into(),
            fragment: "500ms".into(),
            ..TestConfig::new(root)
        };
        let with_upload = |t: &TestConfig| -> String {
            t.to_toml()
                .replacen("\n[[rules]]", "upload = \"vod\"\n\n[[rules]]", 1)
        };
        let tail = format!(
            "\n[mqtt]\nurl = \"{mqtt_url}\"\ntelemetry_interval = \"1s\"\n\n[upload]\n[[upload.targets]]\nname = \"vod\"\nurl = \"file://{}\"\n",
            uploads.display()
        );
        let recording = with_upload(
            &base
                .clone()
                .stream("cam", &format!("file:{}?loop=true", cam.display())),
        ) + &format!("\n[ingest]\nrtmp = \"127.0.0.1:{rtmp_port}\"\n")
            + &tail;
        let cfg = dir.join("edgerec.toml");
        fs::write(&cfg, recording).unwrap();
        let drain_cfg = dir.join("drain.toml");
        fs::write(&drain_cfg, with_upload(&base) + &tail).unwrap();
        Rig {
            root: root.to_owned(),
            uploads,
            cfg,
            drain_cfg,
            rtmp_port,
            push_clip,
            dir: dir.to_owned(),
            daemon: None,
            pusher: None,
            runs: 0,
        }
    }

    /// Starts the recorder with `cfg` and waits until recovery is done and its control
    /// socket answers; `Err` with why if it does not come up within 60 s.
    pub fn start_recorder(&mut self, cfg: &Path) -> Result<(), String> {
        assert!(self.daemon.is_none(), "the recorder is running");
        self.runs += 1;
        let mut daemon = Daemon::start(cfg);
        let runs = self.runs;
        let up = wait_until(Duration::from_secs(60), || {
            daemon.log().matches("edgerec ready").count() >= runs && self.ping()
        });
        let running = daemon.running();
        self.daemon = Some(daemon);
        if !up {
            return Err(format!(
                "the recorder did not come up within 60 s (running: {running})"
            ));
        }
        Ok(())
    }

    /// Starts the recorder with the recording config, then the RTMP pusher.
    pub fn start(&mut self) -> Result<(), String> {
        let cfg = self.cfg.clone();
        self.start_recorder(&cfg)?;
        let port = self.rtmp_port;
        if !wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            return Err("the RTMP server did not listen within 30 s".into());
        }
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("push.log"))
            .unwrap();
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-stream_loop", "-1", "-i"])
            .arg(&self.push_clip)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/push"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn ffmpeg");
        self.pusher = Some(child);
        Ok(())
    }

    /// Whether the recorder is still running (not exited on its own).
    pub fn running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(|d| d.running())
    }

    /// The moment of the power cut: the pusher is killed and the recorder stopped
    /// (SIGSTOP), so that it runs no more code, while a call it made (an fsync stalled on a
    /// slow disk) may still be in the filesystem, as it would be when the power goes. Then
    /// [`Rig::kill`] after the cut: what the peer answers that call after the cut (EIO: its
    /// handle died with the power) never reaches the recorder's code.
    pub fn freeze(&mut self) {
        if let Some(mut p) = self.pusher.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(d) = &self.daemon {
            signal(d.pid(), libc::SIGSTOP);
        }
    }

    /// SIGKILL to the recorder and the pusher, both reaped.
    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
        if let Some(mut p) = self.pusher.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Stops the pusher, then the recorder with SIGTERM; `Err` unless it exits 0 within 30 s.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Some(mut p) = self.pusher.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        let mut d = self.daemon.take().expect("the recorder is running");
        if !d.running() {
            return Err("the recorder had exited on its own".into());
        }
        let st = d.terminate(Duration::from_secs(30));
        if !st.success() {
            return Err(format!("the recorder exited with {st} on SIGTERM"));
        }
        Ok(())
    }

    /// Whether the recorder's control socket answers.
    fn ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.root.join("control.sock")) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut out = String::new();
        s.write_all(b"ping\n").is_ok() && s.read_to_string(&mut out).is_ok() && out.contains("ok")
    }

    /// Every index row, as the running recorder lists them.
    pub fn segments(&self) -> Result<Vec<SegmentRow>, String> {
        let out = cli(
            &["segments", "--config", self.cfg.to_str().unwrap(), "--json"],
            &self.dir,
        );
        if out.code != 0 {
            return Err(format!("edgerec segments failed: {}", out.stderr));
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("segments --json: {e}"))
    }

    /// `edgerec index check --json` on the stopped recorder's root.
    pub fn index_check(&self) -> Result<CheckReport, String> {
        let out = cli(
            &[
                "index",
                "check",
                "--config",
                self.cfg.to_str().unwrap(),
                "--json",
            ],
            &self.dir,
        );
        let report: CheckReport = serde_json::from_str(&out.stdout).map_err(|e| {
            format!(
                "edgerec index check (exit {}) printed no report ({e}): {}{}",
                out.code, out.stdout, out.stderr
            )
        })?;
        let want = if report.damage.is_empty() { 0 } else { 1 };
        if out.code != want {
            return Err(format!(
                "edgerec index check exited {} with {} damage line(s): {}",
                out.code,
                report.damage.len(),
                out.stderr
            ));
        }
        Ok(report)
    }

    /// `edgerec upload --now` against the running recorder.
    pub fn upload_now(&self, cfg: &Path) -> Result<(), String> {
        let out = cli(
            &[
                "upload",
                "--now",
                "--config",
                cfg.to_str().unwrap(),
                "--timeout",
                "120s",
            ],
            &self.dir,
        );
        if out.code != 0 {
            return Err(format!(
                "edgerec upload --now exited {}: {}{}",
                out.code, out.stdout, out.stderr
            ));
        }
        Ok(())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill();
    }
}
