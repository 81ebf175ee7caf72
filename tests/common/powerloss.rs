//! The power-loss filesystem peer (`tests/peers/powerloss_fs.py`): a FUSE mount that keeps
//! what was not fsynced in memory and drops it on [`PowerlossFs::cut`], and fails or stalls
//! storage calls on command. Its docstring has the semantics and the control protocol.
//!
//! [`PowerlossFs::start`] mounts one in a fresh [`workdir`](super::workdir) (`mnt/`, the
//! peer's `backing/`, its `control.sock` and `peer.log`); on drop it is unmounted (SIGTERM,
//! then a lazy `umount` if the peer is gone or hangs) before the directory is removed.
//! Outside CI a machine without `/dev/fuse` or pyfuse3 skips (with a message); under `CI`
//! that is a failure.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use super::{repo, signal, wait_timeout, workdir};

/// What `status` reports.
#[derive(Clone, Debug, Deserialize)]
pub struct PowerlossStatus {
    /// Files with data or a size change not yet fsynced.
    pub pending_files: u64,
    /// Dirty pages held in memory, in bytes (4 KiB a page).
    pub pending_bytes: u64,
    /// Directories whose entries differ from their durable ones.
    pub pending_dirs: u64,
    pub inodes: u64,
    /// Power cuts so far.
    pub cuts: u64,
    /// Active faults, as commands (`fail write EIO /a`, `readonly`, …).
    pub faults: Vec<String>,
}

/// What a `cut tear` let reach the disk.
#[derive(Clone, Debug, Deserialize)]
pub struct Torn {
    /// The torn file's path under the mount, if it still had a name.
    pub path: Option<String>,
    /// Offset and length of the write that was torn.
    pub offset: u64,
    pub length: u64,
    /// Bytes of it kept (ending on a 4 KiB boundary of the file).
    pub kept: u64,
}

/// What a cut dropped.
#[derive(Clone, Debug, Deserialize)]
pub struct CutReport {
    pub dropped_inodes: u64,
    /// Dirty pages dropped, in bytes.
    pub dropped_bytes: u64,
    pub survivors: u64,
    pub torn: Option<Torn>,
}

/// The mounted peer. Unmounted on drop.
pub struct PowerlossFs {
    child: Option<Child>,
    /// The mount point: the program under test reads and writes here.
    pub mount: PathBuf,
    /// The peer's durable file data (one file per inode); not for the program under test.
    pub backing: PathBuf,
    pub control: PathBuf,
    log: PathBuf,
    dir: Option<tempfile::TempDir>,
}

/// Why the peer cannot run here, if it cannot: no `/dev/fuse`, or `/usr/bin/python3`
/// cannot import pyfuse3 and trio.
pub fn powerloss_missing() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import pyfuse3, trio"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Some(
            "/usr/bin/python3 cannot import pyfuse3 and trio (python3-pyfuse3; make test-deps)"
                .into(),
        );
    }
    None
}

/// Whether `path` is a mount point now (per /proc/self/mountinfo). Works on a dead FUSE
/// mount too (only the parent is resolved).
pub fn is_mounted(path: &Path) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let path = fs::canonicalize(parent)
        .unwrap_or_else(|_| parent.to_owned())
        .join(name);
    let want = path.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// `fsync` of a directory, the way a program makes its entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl PowerlossFs {
    /// Mounts the peer in a fresh work directory named after `test`. Without `/dev/fuse`
    /// or pyfuse3 it prints why and returns `None` (the test then passes, skipped), unless
    /// the `CI` environment variable is set: then it panics.
    pub fn start(test: &str) -> Option<PowerlossFs> {
        if let Some(why) = powerloss_missing() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: the power-loss filesystem cannot run here: {why}"
            );
            // Straight to stderr, past the test harness's capture, so the skip shows.
            let _ = writeln!(
                io::stderr(),
                "{test}: SKIPPED: {why} (with CI set, this fails)"
            );
            return None;
        }
        let dir = workdir(test);
        let mut fs = PowerlossFs::start_in(dir.path());
        fs.dir = Some(dir);
        Some(fs)
    }

    /// Mounts the peer under `dir` (which must outlive it), no skipping.
    pub fn start_in(dir: &Path) -> PowerlossFs {
        let mount = dir.join("mnt");
        let backing = dir.join("backing");
        let control = dir.join("control.sock");
        let log = dir.join("peer.log");
        fs::create_dir_all(&mount).unwrap();
        let err = File::create(&log).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/peers/powerloss_fs.py"))
            .arg("--backing")
            .arg(&backing)
            .arg("--mount")
            .arg(&mount)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start /usr/bin/python3 tests/peers/powerloss_fs.py (make test-deps)");
        // READY, or EOF if it fails; a thread, so that a peer hung in mount cannot hang us.
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| "(nothing within 30 s)".into());
        let fs = PowerlossFs {
            child: Some(child),
            mount,
            backing,
            control,
            log,
            dir: None,
        };
        assert_eq!(
            line.trim(),
            "READY",
            "the power-loss filesystem did not start; its log:\n{}",
            fs.log()
        );
        assert!(is_mounted(&fs.mount), "READY but not mounted: {}", fs.log());
        fs
    }

    /// `mount/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mount.join(rel)
    }

    /// The peer's log (its stderr): every control command and any error.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one control command; `Ok(reply JSON)` or `Err(message)` as the peer answered.
    pub fn command(&self, line: &str) -> Result<serde_json::Value, String> {
        let mut s = UnixStream::connect(&self.control).unwrap_or_else(|e| {
            panic!(
                "connect {}: {e}; log:\n{}",
                self.control.display(),
                self.log()
            )
        });
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(&s)
            .read_line(&mut reply)
            .unwrap_or_else(|e| panic!("no reply to {line:?}: {e}; log:\n{}", self.log()));
        let reply = reply.trim_end();
        if let Some(json) = reply.strip_prefix("ok ") {
            Ok(serde_json::from_str(json).unwrap_or_else(|e| panic!("reply {reply:?}: {e}")))
        } else if let Some(msg) = reply.strip_prefix("err ") {
            Err(msg.to_string())
        } else {
            panic!(
                "unexpected reply to {line:?}: {reply:?}; log:\n{}",
                self.log()
            )
        }
    }

    fn ok(&self, line: &str) -> serde_json::Value {
        self.command(line)
            .unwrap_or_else(|e| panic!("control {line:?} refused: {e}"))
    }

    /// Power cut: everything not durable is dropped; the mount then serves the survivors.
    pub fn cut(&self) -> CutReport {
        serde_json::from_value(self.ok("cut")).unwrap()
    }

    /// Power cut that first lets `keep` bytes (default: half) of the last pending write
    /// reach the disk, rounded down to a 4 KiB boundary of the file.
    pub fn cut_tear(&self, keep: Option<u64>) -> CutReport {
        let line = match keep {
            Some(k) => format!("cut tear {k}"),
            None => "cut tear".into(),
        };
        serde_json::from_value(self.ok(&line)).unwrap()
    }

    pub fn status(&self) -> PowerlossStatus {
        serde_json::from_value(self.ok("status")).unwrap()
    }

    /// What a cut would leave: `{"files": {path: size}, "dirs": [path], "symlinks":
    /// {path: target}, "special": [path]}` (special: sockets and FIFOs).
    pub fn durable(&self) -> serde_json::Value {
        self.ok("durable")
    }

    /// `op` (`write` or `fsync`) fails with `errno` (`EIO`, `ENOSPC`…), under `prefix` (a
    /// path under the mount, `/cam1`) or everywhere.
    pub fn fail(&self, op: &str, errno: &str, prefix: Option<&str>) {
        self.ok(&format!("fail {op} {errno} {}", prefix.unwrap_or("")));
    }

    /// Every modification fails with EROFS, under `prefix` or everywhere.
    pub fn readonly(&self, prefix: Option<&str>) {
        self.ok(&format!("readonly {}", prefix.unwrap_or("")));
    }

    /// Every fsync waits `seconds` (or until [`clear`](Self::clear)) before going on.
    pub fn stall_fsync(&self, seconds: f64, prefix: Option<&str>) {
        self.ok(&format!("stall fsync {seconds} {}", prefix.unwrap_or("")));
    }

    /// Removes every fault and wakes stalled fsyncs.
    pub fn clear(&self) {
        self.ok("clear");
    }

    /// SIGTERM; returns the peer's exit status once it has unmounted. Panics if it does not
    /// exit within 20 s or leaves the mount behind.
    pub fn unmount(mut self) -> ExitStatus {
        let stop = self.stop().expect("peer already stopped");
        self.check(&stop);
        stop.status.unwrap()
    }

    /// SIGTERM, then SIGKILL after 20 s; a mount left behind is detached (`umount -l`) so
    /// the directory can go.
    fn stop(&mut self) -> Option<Stop> {
        let mut child = self.child.take()?;
        signal(child.id(), libc::SIGTERM);
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let left_mounted = is_mounted(&self.mount);
        if left_mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        Some(Stop {
            status,
            left_mounted,
        })
    }

    fn check(&self, stop: &Stop) {
        assert!(
            stop.status.is_some(),
            "the power-loss filesystem did not exit within 20 s of SIGTERM; log:\n{}",
            self.log()
        );
        assert!(
            !stop.left_mounted,
            "the power-loss filesystem exited ({:?}) but left {} mounted; log:\n{}",
            stop.status,
            self.mount.display(),
            self.log()
        );
    }
}

struct Stop {
    status: Option<ExitStatus>,
    left_mounted: bool,
}

impl Drop for PowerlossFs {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("power-loss filesystem log:\n{}", self.log());
        }
        // On a failed check the work directory still goes, with the other fields.
        if let (Some(stop), false) = (self.stop(), panicking) {
            self.check(&stop);
        }
        drop(self.dir.take());
    }
}
