//! Child processes: `edgerec run`, one-shot `edgerec` commands, and the config files they
//! read (the RTSP test peers are in `rtsp_peer`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::bin;

/// A free TCP port on loopback (the listener is closed again; a tiny race is accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned and own; no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` every 100 ms until it is true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a test config holds; [`TestConfig::write`] turns it into TOML.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub root: PathBuf,
    pub max_bytes: String,
    pub min_free: String,
    pub max_age: Option<String>,
    pub retention_interval: String,
    pub formats: Vec<String>,
    pub interval: String,
    pub fragment: String,
    pub naming: String,
    /// `(name, source)` pairs.
    pub streams: Vec<(String, String)>,
    /// `storage.require_marker`; false by default here, so tests need no `edgerec init`.
    pub require_marker: bool,
}

impl TestConfig {
    /// Defaults: 1 GiB quota, 1 MiB min free, 4 s segments, 1 s fragments, fMP4.
    pub fn new(root: &Path) -> TestConfig {
        TestConfig {
            root: root.to_owned(),
            max_bytes: "1GiB".into(),
            min_free: "1MiB".into(),
            max_age: None,
            retention_interval: "1s".into(),
            formats: vec!["fmp4".into()],
            interval: "4s".into(),
            fragment: "1s".into(),
            naming: "{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}".into(),
            streams: Vec::new(),
            require_marker: false,
        }
    }

    /// Adds a stream.
    pub fn stream(mut self, name: &str, source: &str) -> TestConfig {
        self.streams.push((name.into(), source.into()));
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap(); // a JSON string is a TOML basic string
        let mut t = format!(
            "device_id = \"e2e\"\n\n[storage]\nroot = {}\nmax_bytes = {}\nmin_free = {}\nretention_interval = {}\n",
            q(self.root.to_str().unwrap()),
            q(&self.max_bytes),
            q(&self.min_free),
            q(&self.retention_interval)
        );
        t += &format!("require_marker = {}\n", self.require_marker);
        if let Some(a) = &self.max_age {
            t += &format!("max_age = {}\n", q(a));
        }
        let formats: Vec<String> = self.formats.iter().map(|f| q(f)).collect();
        t += &format!(
            "\n[[templates]]\nname = \"t\"\nformats = [{}]\ninterval = {}\nfragment = {}\nnaming = {}\n",
            formats.join(", "),
            q(&self.interval),
            q(&self.fragment),
            q(&self.naming)
        );
        t += "\n[[rules]]\ntemplate = \"t\"\nstream = \"*\"\n";
        for (name, source) in &self.streams {
            t += &format!(
                "\n[[streams]]\nname = {}\nsource = {}\n",
                q(name),
                q(source)
            );
        }
        t
    }

    /// Writes the config to `path` and returns it.
    pub fn write(&self, path: &Path) -> PathBuf {
        fs::write(path, self.to_toml()).unwrap();
        path.to_owned()
    }
}

/// `edgerec run --config FILE`, output to a log file next to the config; SIGKILLed on drop.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts recording. The working directory is the config's directory.
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_env(config, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let dir = config.parent().unwrap();
        let log = dir.join("edgerec.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn edgerec run");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Everything the daemon logged so far (all runs sharing this config's directory).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit; panics (with the log) if it hangs.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        signal(child.id(), libc::SIGTERM);
        match wait_timeout(&mut child, timeout) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "edgerec did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Result of a one-shot `edgerec` command.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `edgerec ARGS` in `cwd` and waits (at most 60 s).
pub fn cli(args: &[&str], cwd: &Path) -> CliOutput {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgerec");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = so.read_to_string(&mut stdout);
    let st = wait_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("edgerec {args:?} hung");
    });
    CliOutput {
        code: st.code().unwrap_or(-1),
        stdout,
        stderr: t.join().unwrap(),
    }
}

/// One file of a segment, as `edgerec segments --json` lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct FileRow {
    pub format: String,
    /// Relative to `storage.root`.
    pub path: String,
    pub bytes: u64,
}

/// One index row, as `edgerec segments --json` lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct SegmentRow {
    pub id: serde_json::Value,
    pub stream: String,
    pub seq: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_ms: i64,
    pub bytes: u64,
    /// `closed` / `writing` (lower-cased here; `e2e_cli` checks the raw spelling).
    #[serde(deserialize_with = "lowercase")]
    pub state: String,
    pub recovered: bool,
    pub files: Vec<FileRow>,
    /// `synced`, `unsynced` or `corrected` (see docs/time.md).
    #[serde(default)]
    pub time_quality: String,
    /// Boot id, boot-clock start and stamping offset; absent for older rows.
    #[serde(default)]
    pub boot: Option<BootTime>,
}

/// Where a segment started on the boot clock, as `edgerec segments --json` lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct BootTime {
    pub id: String,
    /// `CLOCK_BOOTTIME` at the segment's first frame, ms.
    pub ms: i64,
    pub offset_ms: i64,
}

fn lowercase<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.to_ascii_lowercase())
}

/// The index rows (`edgerec segments --config F --json`), sorted by stream then seq.
pub fn segments(config: &Path) -> Vec<SegmentRow> {
    let out = cli(
        &["segments", "--config", config.to_str().unwrap(), "--json"],
        config.parent().unwrap(),
    );
    assert_eq!(out.code, 0, "edgerec segments failed: {}", out.stderr);
    let mut rows: Vec<SegmentRow> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "segments --json is not the expected JSON ({e}): {}",
            out.stdout
        )
    });
    rows.sort_by(|a, b| (&a.stream, a.seq).cmp(&(&b.stream, b.seq)));
    rows
}

/// The closed rows of `stream`, in the order given (seq order from [`segments`]).
pub fn closed_of<'a>(rows: &'a [SegmentRow], stream: &str) -> Vec<&'a SegmentRow> {
    rows.iter()
        .filter(|r| r.stream == stream && r.state == "closed")
        .collect()
}

/// Waits (at most `timeout`) until the recorder running on `root` lists at least `n` closed
/// rows of `stream`.
///
/// [`segments`] is only run once the recorder's `control.sock` exists: run while the
/// recorder is still starting, it would open the index itself, and the recorder would then
/// find the root locked and exit.
pub fn wait_closed(cfg: &Path, root: &Path, stream: &str, n: usize, timeout: Duration) -> bool {
    wait_until(timeout, || {
        root.join("control.sock").exists() && closed_of(&segments(cfg), stream).len() >= n
    })
}

/// SIGTERM, and returns the log; panics (with the log) if the daemon had already exited or
/// does not exit 0 within 20 s.
pub fn stop_clean(daemon: &mut Daemon) -> String {
    assert!(
        daemon.running(),
        "edgerec exited by itself; log:\n{}",
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(20));
    let log = daemon.log();
    assert!(status.success(), "exit {status} on SIGTERM; log:\n{log}");
    log
}

/// Collects every datagram sent to a unix socket bound at `path`: systemd's side of the
/// notify protocol (`$NOTIFY_SOCKET`), one message per datagram.
pub fn notify_listen(path: &Path) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            g.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    got
}

/// `ffmpeg -re -i clip -c copy -f flv URL`: an RTMP publisher, its stderr piped.
pub fn rtmp_push(clip: &Path, url: &str) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}
