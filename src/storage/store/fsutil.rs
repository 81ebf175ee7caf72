//! Small file system helpers the protocol is made of: fsync of files and directories, the
//! root lock, the tree walk, statvfs, and removal of emptied directories.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// Name of the index database inside the root.
pub(crate) const INDEX_FILE: &str = "index.redb";
/// Name of the lock file inside the root.
pub(crate) const LOCK_FILE: &str = "edgerec.lock";

/// fsync a directory, making the entries created, renamed or removed in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let d = File::open(dir).map_err(|e| StoreError::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// `create_dir_all` that fsyncs the parent of every directory it creates: once it returns,
/// a power cut cannot lose the new directories' entries (and everything under them).
pub(crate) fn create_dirs(dir: &Path) -> io::Result<()> {
    for parent in make_dirs(dir)? {
        File::open(&parent)?.sync_all()?;
    }
    Ok(())
}

/// `create_dir_all` without the fsyncs: returns the parents of the directories it created,
/// top down, which the caller must fsync before relying on them (see [`create_dirs`]).
/// Lets a caller create under a lock and fsync after releasing it, so that a stalled disk
/// under one directory cannot hold the lock other streams need.
pub(crate) fn make_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    make_dirs_into(dir, &mut made)?;
    Ok(made)
}

fn make_dirs_into(dir: &Path, made: &mut Vec<PathBuf>) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let up = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    make_dirs_into(up, made)?;
    match fs::create_dir(dir) {
        Ok(()) => {
            made.push(up.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The directory holding `path` (the root itself for a top-level file).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// rename, with the error naming both ends.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(|e| {
        StoreError::io(
            "rename",
            format!("{} to {}", from.display(), to.display()),
            e,
        )
    })
}

/// Remove a file; a file already gone is not an error. Returns whether it existed.
pub(crate) fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("remove", path, e)),
    }
}

/// Size of a file, `None` if it does not exist.
pub(crate) fn file_len(path: &Path) -> Result<Option<u64>, StoreError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("stat", path, e)),
    }
}

/// Create (if needed, durably: see [`create_dirs`]) and check the root, then take its lock
/// file.
///
/// The lock is an exclusive `flock` on `<root>/edgerec.lock`, released by the kernel when the
/// process dies, so a crash never leaves a stale lock behind.
pub(crate) fn prepare_root(root: &Path) -> Result<File, StoreError> {
    if fs::metadata(root).is_ok_and(|m| !m.is_dir()) {
        return Err(StoreError::BadRoot {
            path: root.to_path_buf(),
            reason: "it exists but is not a directory".into(),
        });
    }
    if let Err(e) = create_dirs(root) {
        return Err(match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                not_writable(root, e)
            }
            _ => StoreError::BadRoot {
                path: root.to_path_buf(),
                reason: format!("cannot create it: {e}"),
            },
        });
    }
    let meta = fs::metadata(root).map_err(|e| StoreError::BadRoot {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err(StoreError::BadRoot {
            path: root.to_path_buf(),
            reason: "it exists but is not a directory".into(),
        });
    }
    let lock_path = root.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&lock_path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                not_writable(root, e)
            }
            _ => StoreError::io("create lock file", &lock_path, e),
        })?;
    // SAFETY: flock on a valid, open descriptor has no memory-safety requirements.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            StoreError::Locked {
                root: root.to_path_buf(),
                lock: lock_path,
            }
        } else {
            StoreError::io("lock", lock_path, e)
        });
    }
    Ok(lock)
}

fn not_writable(root: &Path, source: io::Error) -> StoreError {
    StoreError::RootNotWritable {
        path: root.to_path_buf(),
        // SAFETY: geteuid has no preconditions.
        uid: unsafe { libc::geteuid() },
        source,
    }
}

/// Every regular file under `root` (not following symlinks), relative to `root`, sorted,
/// except the index and lock files at the top.
pub(crate) fn walk(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let abs = root.join(&rel);
        let entries = fs::read_dir(&abs).map_err(|e| StoreError::io("list", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &abs, e))?;
            let ty = entry
                .file_type()
                .map_err(|e| StoreError::io("stat", entry.path(), e))?;
            let child = rel.join(entry.file_name());
            if ty.is_dir() {
                dirs.push(child);
            } else if ty.is_file() {
                let top = rel.as_os_str().is_empty();
                let name = entry.file_name();
                if top && (name == INDEX_FILE || name == LOCK_FILE) {
                    continue;
                }
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// After files in `dir` were removed: remove `dir` and its ancestors while they are empty,
/// stopping at `root`, and fsync the parent of each removed directory.
pub(crate) fn remove_empty_dirs(root: &Path, dir: &Path) -> Result<(), StoreError> {
    let mut dir = dir.to_path_buf();
    while dir.starts_with(root) && dir != root {
        match fs::remove_dir(&dir) {
            Ok(()) => {
                let up = parent(&dir).to_path_buf();
                fsync_dir(&up)?;
                dir = up;
            }
            // Not empty, already gone, or anything else: stop climbing, nothing to undo.
            Err(_) => break,
        }
    }
    Ok(())
}

/// Total and unprivileged-available bytes of the file system holding `path`.
pub(crate) fn statvfs(path: &Path) -> Result<(u64, u64), StoreError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        StoreError::io(
            "statvfs",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(StoreError::io("statvfs", path, io::Error::last_os_error()));
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_root_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = prepare_root(dir.path()).unwrap();
        let err = prepare_root(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another edgerec"), "{err}");
    }

    #[test]
    fn root_that_is_a_file_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = prepare_root(&file).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn walk_lists_nested_files_but_not_index_or_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/x.mp4"), b"").unwrap();
        fs::write(r.join("y.mp4.part"), b"").unwrap();
        fs::write(r.join(INDEX_FILE), b"").unwrap();
        fs::write(r.join(LOCK_FILE), b"").unwrap();
        assert_eq!(
            walk(r).unwrap(),
            vec![PathBuf::from("a/b/x.mp4"), PathBuf::from("y.mp4.part")]
        );
    }

    #[test]
    fn create_dirs_makes_every_missing_level_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dirs(&deep).unwrap();
        assert!(deep.is_dir());
        create_dirs(&deep).unwrap();
        fs::write(dir.path().join("f"), b"").unwrap();
        assert!(create_dirs(&dir.path().join("f/g")).is_err());
    }

    #[test]
    fn remove_empty_dirs_climbs_until_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("s/2024/01")).unwrap();
        fs::write(r.join("s/keep"), b"").unwrap();
        remove_empty_dirs(r, &r.join("s/2024/01")).unwrap();
        assert!(!r.join("s/2024").exists());
        assert!(r.join("s/keep").exists());
    }

    #[test]
    fn statvfs_reports_free_space_not_above_total() {
        let dir = tempfile::tempdir().unwrap();
        let (total, free) = statvfs(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
    }
}
