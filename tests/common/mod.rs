//! Helpers for edgerec's end-to-end tests: real peers on loopback, the real binary, and
//! independent validators.
//!
//! - here: paths, [`workdir`], test clips made by ffmpeg ([`clip`], cached under cargo's
//!   per-target temp dir), a seeded [`Rng`];
//! - [`process`]: configs ([`TestConfig`]), `edgerec run` ([`Daemon`]), one-shot commands
//!   ([`cli`], [`segments`]); every child is killed on drop;
//! - [`rtsp_peer`]: the RTSP test peers ([`RtspPeer`], `tests/peers/rtsp_server.py`, and
//!   [`LaunchRtspPeer`]);
//! - [`media`]: files on disk against the index, and checks by readers that are not ours
//!   (ffmpeg, ffprobe) or trivially simple ([`complete_fragments`]);
//! - [`browser`]: players in headless Chromium ([`browser::play`]) and a static server
//!   with byte ranges ([`browser::StaticServer`]) (not re-exported);
//! - [`http`]: the local HTTP API from a client's side (curl) (not re-exported);
//! - [`hls`]: the tests' own playlist reader and the checks of every recorded playlist;
//! - [`flv`]: the tests' own FLV tag walk and AMF0 reader ([`read_flv`],
//!   [`check_flv_metadata`]);
//! - [`powerloss`]: the power-loss filesystem peer ([`powerloss::PowerlossFs`],
//!   `tests/peers/powerloss_fs.py`): a FUSE mount that forgets what was not fsynced on a
//!   power cut, and fails or stalls storage calls on command (not re-exported: tests that
//!   use it say `use common::powerloss::*`).
//!
//! Each `tests/e2e_*.rs` uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod browser;
pub mod flv;
pub mod hls;
pub mod http;
pub mod media;
pub mod powerloss;
pub mod process;
pub mod rtsp_peer;

// Only the FLV tests read FLV files.
#[allow(unused_imports)]
pub use flv::*;
// Only the HLS tests read playlists.
#[allow(unused_imports)]
pub use hls::*;
pub use media::*;
pub use process::*;
// Not every test binary starts an RTSP peer.
#[allow(unused_imports)]
pub use rtsp_peer::*;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The edgerec binary cargo built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgerec"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv python of the Python test peers (moto's S3 server, the webhook receiver with
/// `standardwebhooks`), made by scripts/moto-venv.sh, which `make test-deps` runs.
pub fn peer_python() -> PathBuf {
    let tools = std::env::var_os("EDGEREC_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
            cache.join("edgerec")
        });
    let py = tools.join("moto-venv/bin/python3");
    assert!(
        py.exists(),
        "{} missing: run scripts/moto-venv.sh (make test-deps does)",
        py.display()
    );
    py
}

/// The test's own wall clock, ms since the Unix epoch (to compare with the times edgerec
/// reports).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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
    /// Encoder preset: `ultrafast` gives H.264 Constrained Baseline; `veryfast` gives High.
    pub preset: &'static str,
    /// Pixel format: `yuv420p`, or `yuv420p10le` for H.265 Main 10.
    pub pix_fmt: &'static str,
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
            preset: "ultrafast",
            pix_fmt: "yuv420p",
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
        let mut encoding = String::new();
        if self.preset != "ultrafast" {
            encoding += &format!("-{}", self.preset);
        }
        if self.pix_fmt != "yuv420p" {
            encoding += &format!("-{}", self.pix_fmt);
        }
        format!(
            "{}-{}x{}-{}fps-g{}-b{}-{}s{}{encoding}.mp4",
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
    args.extend(["-preset", spec.preset, "-pix_fmt", spec.pix_fmt, "-g", &gop]);
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

/// A small seeded PRNG (xorshift64*) for kill timings; the seed is printed so a failing
/// run can be repeated with `E2E_SEED=…`.
pub struct Rng(u64);

impl Rng {
    /// A generator with a given seed (a test that takes its seed from its own variable).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

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
