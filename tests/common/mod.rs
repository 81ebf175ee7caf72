//! Helpers for edgerec's end-to-end tests: real peers on loopback, the real binary, and
//! independent validators.
//!
//! - [`clip`]: test clips made by ffmpeg, cached under cargo's per-target temp dir;
//! - [`RtspPeer`]: `tests/peers/rtsp_server.py` (gst-rtsp-server), killed on drop;
//! - [`TestConfig`]: writes an edgerec config; [`Daemon`]: `edgerec run`, killed on drop;
//! - [`segments`], [`cli`]: the `edgerec` command line;
//! - [`assert_decodes`], [`probe`], [`video_packets`], [`md5_file`], [`complete_fragments`]:
//!   checks by readers that are not ours (ffmpeg, ffprobe) or trivially simple.
//!
//! Each `tests/e2e_*.rs` uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde::Deserialize;

/// The edgerec binary cargo built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgerec"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for one test, under cargo's target temp dir. Removed on drop unless
/// `E2E_KEEP=1` (then its path is printed, for post-mortems).
pub fn workdir(name: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    fs::create_dir_all(&base).unwrap();
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(&base)
        .unwrap();
    if std::env::var_os("E2E_KEEP").is_some() {
        eprintln!("{name}: keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

// ---------------------------------------------------------------- clips

/// A synthetic clip: moving test pattern, optional 440 Hz AAC tone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClipSpec {
    /// `h264` or `h265`.
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Key frame every this many frames (fixed GOP, no scene cuts).
    pub gop: u32,
    pub seconds: u32,
    pub audio: bool,
    /// Number of B-frames (0 = none).
    pub bframes: u32,
}

impl ClipSpec {
    /// 320x240 25 fps H.264 + AAC 48 kHz, key frame every `gop_s` seconds.
    pub fn h264(seconds: u32, gop_s: u32) -> ClipSpec {
        ClipSpec {
            codec: "h264",
            width: 320,
            height: 240,
            fps: 25,
            gop: 25 * gop_s,
            seconds,
            audio: true,
            bframes: 0,
        }
    }

    /// Duration of one frame in milliseconds.
    pub fn frame_ms(&self) -> f64 {
        1000.0 / self.fps as f64
    }

    /// Key-frame interval in milliseconds.
    pub fn gop_ms(&self) -> f64 {
        self.gop as f64 * self.frame_ms()
    }

    fn file_name(&self) -> String {
        format!(
            "{}-{}x{}-{}fps-g{}-b{}-{}s{}.mp4",
            self.codec,
            self.width,
            self.height,
            self.fps,
            self.gop,
            self.bframes,
            self.seconds,
            if self.audio { "-aac" } else { "" }
        )
    }
}

static CLIP_LOCK: Mutex<()> = Mutex::new(());

/// Path of a clip matching `spec`, generated with ffmpeg on first use and cached (by its
/// parameters) under the target temp dir, so test runs reuse it.
pub fn clip(spec: &ClipSpec) -> PathBuf {
    let _guard = CLIP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clips");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(spec.file_name());
    if path.exists() {
        return path;
    }
    let tmp = dir.join(format!(
        "{}.{}.tmp.mp4",
        spec.file_name(),
        std::process::id()
    ));
    let video = format!(
        "testsrc2=size={}x{}:rate={}:duration={}",
        spec.width, spec.height, spec.fps, spec.seconds
    );
    let audio = format!(
        "sine=frequency=440:sample_rate=48000:duration={}",
        spec.seconds
    );
    let gop = spec.gop.to_string();
    let bf = spec.bframes.to_string();
    let mut args: Vec<&str> = vec!["-hide_banner", "-loglevel", "error", "-y"];
    args.extend(["-f", "lavfi", "-i", &video]);
    if spec.audio {
        args.extend(["-f", "lavfi", "-i", &audio]);
    }
    let encoder = match spec.codec {
        "h264" => vec!["-c:v", "libx264", "-x264-params", "threads=2"],
        "h265" => vec![
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hvc1",
        ],
        other => panic!("clip codec {other} not supported"),
    };
    args.extend(encoder);
    args.extend(["-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", &gop]);
    args.extend(["-keyint_min", &gop, "-sc_threshold", "0", "-bf", &bf]);
    if spec.audio {
        args.extend(["-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "1"]);
    }
    args.push(tmp.to_str().unwrap());
    let out = Command::new("ffmpeg")
        .args(&args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not make {}: {}",
        spec.file_name(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &path).unwrap();
    path
}

// ---------------------------------------------------------------- processes

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
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("/usr/bin/python3");
            cmd.arg(repo().join("tests/peers/rtsp_server.py"))
                .args(["--port", &port.to_string()]);
            for (m, f) in mounts {
                cmd.arg("--mount").arg(format!("{m}={}", f.display()));
            }
            if let Some((u, p)) = auth {
                cmd.args(["--user", u, "--password", p]);
            }
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

// ---------------------------------------------------------------- files on disk

/// Every regular file under `root` (relative paths, sorted), except the index and lock.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|p| p != "index.redb" && p != "edgerec.lock");
    out.sort();
    out
}

/// Finished segment files under `root` (`*.mp4`, not `*.part`).
pub fn segment_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|p| p.ends_with(".mp4"))
        .collect()
}

/// Working files under `root` (`*.part`).
pub fn part_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|p| p.ends_with(".part"))
        .collect()
}

/// Asserts that the closed rows and the finished files on disk are the same set, with the
/// same sizes, and that no row has state other than `closed`/`writing`.
pub fn assert_index_matches_disk(root: &Path, rows: &[SegmentRow]) {
    let mut indexed: HashMap<String, u64> = HashMap::new();
    for r in rows {
        assert!(
            r.state == "closed" || r.state == "writing",
            "unexpected row state {:?}",
            r
        );
        if r.state != "closed" {
            continue;
        }
        assert!(!r.files.is_empty(), "closed row without files: {r:?}");
        for f in &r.files {
            assert!(
                indexed.insert(f.path.clone(), f.bytes).is_none(),
                "{} listed twice",
                f.path
            );
        }
        let sum: u64 = r.files.iter().map(|f| f.bytes).sum();
        assert_eq!(r.bytes, sum, "row bytes != sum of its files: {r:?}");
    }
    let on_disk: HashMap<String, u64> = segment_files(root)
        .into_iter()
        .map(|p| {
            let len = fs::metadata(root.join(&p)).unwrap().len();
            (p, len)
        })
        .collect();
    let mut only_index: Vec<_> = indexed
        .keys()
        .filter(|p| !on_disk.contains_key(*p))
        .collect();
    let mut only_disk: Vec<_> = on_disk
        .keys()
        .filter(|p| !indexed.contains_key(*p))
        .collect();
    only_index.sort();
    only_disk.sort();
    assert!(
        only_index.is_empty() && only_disk.is_empty(),
        "index and disk disagree: only in index {only_index:?}, only on disk {only_disk:?}"
    );
    for (p, len) in &indexed {
        assert_eq!(
            on_disk[p], *len,
            "{p}: index says {len} bytes, disk {}",
            on_disk[p]
        );
    }
}

/// md5 of a file, hex.
pub fn md5_file(path: &Path) -> String {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Md5::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Counts the complete `moof`+`mdat` pairs at the top level of an fMP4 file (a torn tail
/// is ignored) and returns `(fragments, bytes up to the end of the last one)`. A plain box
/// walk, independent of edgerec's own scanner.
pub fn complete_fragments(path: &Path) -> (usize, u64) {
    let data = fs::read(path).unwrap();
    let (mut pos, mut frags, mut end, mut moof_open) = (0usize, 0usize, 0u64, false);
    while pos + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = &data[pos + 4..pos + 8];
        let size = match size32 {
            1 if pos + 16 <= data.len() => {
                u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap())
            }
            0 | 1 => break,
            s => s,
        };
        if size < 8 || pos as u64 + size > data.len() as u64 {
            break;
        }
        match kind {
            b"moof" => moof_open = true,
            b"mdat" if moof_open => {
                frags += 1;
                end = pos as u64 + size;
                moof_open = false;
            }
            _ => {}
        }
        pos += size as usize;
    }
    (frags, end)
}

// ---------------------------------------------------------------- independent readers

/// Asserts that ffmpeg decodes the whole file without a single error message.
pub fn assert_decodes(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg cannot decode {} cleanly: {err}",
        path.display()
    );
}

/// One stream as ffprobe reports it.
#[derive(Clone, Debug)]
pub struct ProbeStream {
    pub codec_type: String,
    pub codec_name: String,
    /// Seconds; from the stream, else the format.
    pub duration: f64,
    pub width: Option<u64>,
    pub sample_rate: Option<u64>,
}

/// What ffprobe says about a file.
#[derive(Clone, Debug)]
pub struct Probe {
    pub streams: Vec<ProbeStream>,
    pub format_name: String,
    pub duration: f64,
}

impl Probe {
    /// The first stream of `codec_type` (`video` / `audio`).
    pub fn stream(&self, codec_type: &str) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.codec_type == codec_type)
    }
}

/// `ffprobe -show_streams -show_format -of json`, parsed.
pub fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |v: &serde_json::Value| -> Option<f64> { v.as_str()?.parse().ok() };
    let fmt_duration = num(&v["format"]["duration"]).unwrap_or(0.0);
    let streams = v["streams"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| ProbeStream {
            codec_type: s["codec_type"].as_str().unwrap_or("").into(),
            codec_name: s["codec_name"].as_str().unwrap_or("").into(),
            duration: num(&s["duration"]).unwrap_or(fmt_duration),
            width: s["width"].as_u64(),
            sample_rate: num(&s["sample_rate"]).map(|r| r as u64),
        })
        .collect();
    Probe {
        streams,
        format_name: v["format"]["format_name"].as_str().unwrap_or("").into(),
        duration: fmt_duration,
    }
}

/// One video packet: presentation and decode time, duration (seconds), key flag.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub pts: f64,
    pub dts: f64,
    pub duration: f64,
    pub key: bool,
}

/// The video packets of a file, in decode order, as ffprobe reads them.
pub fn video_packets(path: &Path) -> Vec<Packet> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "packet=pts_time,dts_time,duration_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe packets of {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| {
                f.get(i)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            Packet {
                pts: n(0),
                dts: n(1),
                duration: n(2),
                key: f.get(3).is_some_and(|s| s.starts_with('K')),
            }
        })
        .collect()
}

/// md5 of every decoded video frame (ffmpeg's `framemd5` muxer), in presentation order:
/// compares pictures, not containers, so a lost, repeated or reordered frame shows.
pub fn frame_hashes(path: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "framemd5 of {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .collect()
}

/// Video duration of a file from its packets: last pts + duration − first pts (seconds).
pub fn video_span(path: &Path) -> f64 {
    let p = video_packets(path);
    let first = p.iter().map(|p| p.pts).fold(f64::INFINITY, f64::min);
    let last = p
        .iter()
        .map(|p| p.pts + if p.duration.is_nan() { 0.0 } else { p.duration })
        .fold(f64::NEG_INFINITY, f64::max);
    if p.is_empty() {
        0.0
    } else {
        last - first
    }
}

// ---------------------------------------------------------------- randomness

/// A small seeded PRNG (xorshift64*) for kill timings; the seed is printed so a failing
/// run can be repeated with `E2E_SEED=…`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_time(test: &str) -> Rng {
        let seed = std::env::var("E2E_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: E2E_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}
