//! End to end with the binary that ships: `edgerec run` records a file camera into segments,
//! `edgerec segments` lists them, and the host's ffprobe and ffmpeg read every file.
//!
//! `make test-aarch64` (part of `make test`) runs this with the aarch64 release build under
//! qemu-user: `EDGEREC_CROSS_BIN` is the binary and `EDGEREC_CROSS_RUNNER` the command
//! that runs it (`qemu-aarch64 -L /usr/aarch64-linux-gnu`). Without them it runs the host's
//! binary, so a plain `cargo test` exercises the same path.

#[allow(unused_imports)] // each test file uses a part of the shared helpers
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The binary under test and the runner words in front of it (empty for the host's).
fn target_binary() -> (PathBuf, Vec<String>) {
    match std::env::var_os("EDGEREC_CROSS_BIN") {
        Some(bin) => {
            let runner = std::env::var("EDGEREC_CROSS_RUNNER")
                .expect("EDGEREC_CROSS_RUNNER names the qemu command for EDGEREC_CROSS_BIN");
            let runner: Vec<String> = runner.split_whitespace().map(String::from).collect();
            // Relative to the repository (cargo runs tests there); the recorder runs elsewhere.
            let bin = fs::canonicalize(&bin)
                .unwrap_or_else(|e| panic!("EDGEREC_CROSS_BIN {}: {e}", Path::new(&bin).display()));
            (bin, runner)
        }
        None => (bin(), Vec::new()),
    }
}

fn command(binary: &Path, runner: &[String]) -> Command {
    match runner.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(binary);
            c
        }
        None => Command::new(binary),
    }
}

/// ELF `e_machine` of a file (0x3e x86-64, 0xb7 AArch64, 0x28 ARM).
fn elf_machine(path: &Path) -> u16 {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([b[18], b[19]])
}

struct Recorder {
    child: Option<Child>,
    log: PathBuf,
}

impl Recorder {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn shipped_binary_records_a_file_camera_into_segments_ffprobe_reads() {
    let (binary, runner) = target_binary();
    let machine = elf_machine(&binary);
    if runner.is_empty() {
        assert_eq!(machine, elf_machine(&bin()), "host binary");
    } else {
        assert!(
            machine == 0xb7 || machine == 0x28,
            "EDGEREC_CROSS_BIN is not an ARM binary (ELF machine {machine:#x})"
        );
    }
    eprintln!("testing {} via {runner:?}", binary.display());

    let spec = ClipSpec::h264(6, 1);
    let clip = clip(&spec);
    let dir = workdir("cross_record");
    let root = dir.path().join("data");
    // Real time: under qemu the emulated recorder keeps up with 25 fps 320x240 easily, and
    // the segment lengths stay meaningful.
    let source = format!("file:{}?loop=true", clip.display());
    let cfg = TestConfig {
        interval: "2s".into(),
        fragment: "1s".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &source)
    .write(&dir.path().join("edgerec.toml"));

    let log = dir.path().join("edgerec.log");
    let out = fs::File::create(&log).unwrap();
    let child = command(&binary, &runner)
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {runner:?} {}: {e}", binary.display()));
    let mut rec = Recorder {
        child: Some(child),
        log,
    };

    // About 9 s of recording: at least three closed 2 s segments.
    let mut exited = None;
    let enough = wait_until(Duration::from_secs(90), || {
        exited = rec.child.as_mut().unwrap().try_wait().unwrap();
        exited.is_some() || segment_files(&root).len() >= 4
    });
    assert!(
        exited.is_none(),
        "edgerec exited ({exited:?}); log:\n{}",
        rec.log()
    );
    assert!(enough, "no 4 segments within 90 s; log:\n{}", rec.log());
    let mut child = rec.child.take().unwrap();
    signal(child.id(), libc::SIGTERM);
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    rec.child = Some(child); // killed on drop if it hangs
    let status =
        status.unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM; log:\n{}", rec.log()));
    assert!(status.success(), "exit {status}; log:\n{}", rec.log());

    // The same binary lists what it recorded.
    let listed = command(&binary, &runner)
        .args(["segments", "--json", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "segments: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: Vec<SegmentRow> = serde_json::from_slice(&listed.stdout).unwrap();
    let closed: Vec<&SegmentRow> = rows.iter().filter(|r| r.state == "closed").collect();
    assert!(
        closed.len() >= 3,
        "{} closed segments: {rows:?}",
        closed.len()
    );
    assert_eq!(
        closed.len(),
        rows.len(),
        "a clean stop closes every segment"
    );
    assert_index_matches_disk(&root, &rows);

    for (i, row) in closed.iter().enumerate() {
        let file = root.join(&row.files[0].path);
        let p = probe(&file);
        let video = p.stream("video").expect("a video stream");
        assert_eq!(video.codec_name, "h264", "{}", file.display());
        assert_eq!(video.width, Some(spec.width as u64));
        let audio = p.stream("audio").expect("an audio stream");
        assert_eq!(audio.codec_name, "aac");
        // The last segment ends at SIGTERM, wherever that fell.
        let want = if i + 1 == closed.len() {
            0.01..=3.5
        } else {
            1.5..=3.5
        };
        assert!(
            want.contains(&p.duration),
            "{}: {} s for 2 s segments",
            file.display(),
            p.duration
        );
        assert_decodes(&file);
    }
}
