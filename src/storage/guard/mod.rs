//! The storage guard: edgerec records only into a data directory that `edgerec init`
//! prepared, so an SD card or USB SSD that failed to mount never fills the root filesystem
//! (as Moonfire does with its `meta` file).
//!
//! `edgerec init` creates `storage.root` if needed (fsyncing the parent of each directory it
//! creates) and writes [`MARKER`] into it: a small JSON file with a random id, the device id
//! and the creation time, made durable (write, fsync, rename, fsync the directory). `edgerec run` then checks for it before it touches
//! the directory. When the disk is not mounted, the mount point is an empty directory (or,
//! deeper down, the directory does not exist) on the root filesystem: no marker, so the
//! recorder refuses with an error naming the path, raises an alarm and waits.
//!
//! With `storage.require_marker = false` (demos, tests) `run` marks the root itself when it
//! does not exist yet, and otherwise records without checking.
//!
//! A refused `run` does not exit: it raises the alarm (log, systemd status, MQTT) and
//! waits for the marker, then records by itself ([`wait`]).

pub mod wait;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the marker file inside `storage.root`.
pub const MARKER: &str = ".edgerec-root";

/// What the marker file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Random, 128 bits in hex: tells two data disks apart.
    pub id: String,
    /// `device_id` of the config that ran `init`.
    pub device_id: String,
    /// Wall-clock creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

/// Why the guard refused, or could not write the marker.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `storage.root` does not exist.
    #[error(
        "refusing to record: the data directory {} does not exist. If it is on an SD card or \
         SSD, mount it; if this is the right place, run `edgerec init --config FILE` once",
        root.display()
    )]
    Missing { root: PathBuf },
    /// `storage.root` exists but has no marker.
    #[error(
        "refusing to record: the data directory {} has no {MARKER} marker, so it may be an \
         unmounted mount point on the root filesystem. Mount the SD card or SSD there, or, if \
         this is the right directory, run `edgerec init --config FILE` once",
        root.display()
    )]
    Unmarked { root: PathBuf },
    /// The marker is there but unreadable.
    #[error("the marker {} is damaged ({reason}); check the disk, or delete it and run `edgerec init`", path.display())]
    Damaged { path: PathBuf, reason: String },
    /// Creating the directory or writing the marker failed.
    #[error("cannot prepare {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GuardError {
    /// The `storage.alarm` kind of this refusal.
    pub fn alarm_kind(&self) -> &'static str {
        match self {
            GuardError::Missing { .. } => "missing_root",
            GuardError::Unmarked { .. } => "unmarked_root",
            GuardError::Damaged { .. } => "damaged_marker",
            GuardError::Io { .. } => "unusable_root",
        }
    }

    /// A refusal of a directory that is not (yet) the intended one: `run` waits for the
    /// marker. The others (the directory cannot be created or written) are errors that
    /// end `run`, as every other unusable data directory does.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, GuardError::Io { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GuardError + '_ {
    move |source| GuardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the marker of `root`; `Ok(None)` when there is none.
pub fn read(root: &Path) -> Result<Option<Marker>, GuardError> {
    let path = root.join(MARKER);
    let mut text = String::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_string(&mut text).map_err(io(&path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| GuardError::Damaged {
            path,
            reason: e.to_string(),
        })
}

/// `edgerec init`: creates `root` and writes the marker unless one is there. Returns the
/// marker and whether it was written now.
pub fn init(root: &Path, device_id: &str, wall_ms: i64) -> Result<(Marker, bool), GuardError> {
    // Each new directory's entry is fsynced in its parent: a power cut must not take back
    // the root `init` reported made.
    crate::storage::store::create_dirs(root).map_err(io(root))?;
    if let Some(m) = read(root)? {
        return Ok((m, false));
    }
    let marker = Marker {
        id: random_id(),
        device_id: device_id.to_owned(),
        created_ms: wall_ms,
    };
    let path = root.join(MARKER);
    let tmp = root.join(format!("{MARKER}.tmp"));
    let mut json = serde_json::to_vec_pretty(&marker).expect("plain struct");
    json.push(b'\n');
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(&json).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(io(root))?;
    Ok((marker, true))
}

/// `edgerec run`'s check, before anything touches `root`.
///
/// With `require_marker`, the marker must be there. Without it, a missing root is created
/// and marked (so turning `require_marker` on later just works), and an existing one is
/// accepted as is.
pub fn check(
    root: &Path,
    require_marker: bool,
    device_id: &str,
    wall_ms: i64,
) -> Result<Option<Marker>, GuardError> {
    let exists = root.is_dir();
    if !require_marker {
        if !exists {
            return init(root, device_id, wall_ms).map(|(m, _)| Some(m));
        }
        return read(root);
    }
    if !exists {
        return Err(GuardError::Missing {
            root: root.to_path_buf(),
        });
    }
    match read(root)? {
        Some(m) => Ok(Some(m)),
        None => Err(GuardError::Unmarked {
            root: root.to_path_buf(),
        }),
    }
}

/// 128 random bits from the kernel, in hex.
fn random_id() -> String {
    random_hex(16)
}

/// `n` random bytes from the kernel (at most 16), in hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // No /dev/urandom (a strange chroot): the id only needs to differ between disks.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ u128::from(std::process::id()) << 64).to_be_bytes();
    }
    b[..n.min(16)].iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_refuses_a_missing_or_unmarked_root_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sd");
        let e = check(&root, true, "d", 0).unwrap_err();
        assert!(matches!(e, GuardError::Missing { .. }));
        assert!(e.to_string().contains(&root.display().to_string()));
        assert!(!root.exists(), "the check never creates the directory");
        fs::create_dir(&root).unwrap();
        let e = check(&root, true, "d", 0).unwrap_err();
        assert!(matches!(e, GuardError::Unmarked { .. }));
        assert!(e.to_string().contains("edgerec init"), "{e}");
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn init_marks_once_and_run_then_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b");
        let (m, new) = init(&root, "edge-7", 1234).unwrap();
        assert!(new);
        assert_eq!(m.id.len(), 32);
        assert_eq!((m.device_id.as_str(), m.created_ms), ("edge-7", 1234));
        let (again, new) = init(&root, "other", 99).unwrap();
        assert!(!new);
        assert_eq!(again, m, "a second init keeps the first marker");
        assert_eq!(check(&root, true, "edge-7", 0).unwrap(), Some(m));
        assert!(!root.join(format!("{MARKER}.tmp")).exists());
    }

    #[test]
    fn without_require_marker_a_missing_root_is_created_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        assert!(check(&root, false, "d", 5).unwrap().is_some());
        assert!(root.join(MARKER).exists());
        // An existing unmarked root is accepted as is.
        let other = dir.path().join("old");
        fs::create_dir(&other).unwrap();
        assert_eq!(check(&other, false, "d", 5).unwrap(), None);
        assert!(!other.join(MARKER).exists());
    }

    #[test]
    fn a_damaged_marker_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MARKER), "not json").unwrap();
        let e = check(dir.path(), true, "d", 0).unwrap_err();
        assert!(matches!(e, GuardError::Damaged { .. }), "{e}");
    }
}
