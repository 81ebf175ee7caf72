//! The durability protocol, checked where it matters: in the system calls. A child process
//! (this test binary, re-executed) runs one store operation under `strace -f -y`, and the
//! parent reads the trace and checks the order of creates, fsyncs, unlinks and index syncs.
//!
//! A crash test cannot prove these steps: SIGKILL keeps the page cache, so a missing
//! directory fsync or an index commit that never reached the disk goes unnoticed until a
//! power cut. The trace shows them. Needs `strace` (`make test-deps` installs it); skipped
//! under qemu-user (`scripts/cross-test.sh`), which cannot be traced.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::fixture;
use super::tests::{open, record, write};
use crate::media::format::Format;

const CHILD_ENV: &str = "EDGEREC_STORE_STRACE_CHILD";
/// The child opens this (missing) file right before the operation under test, so the parent
/// knows where in the trace the operation starts.
const MARK: &str = "strace-mark-operation-starts";

/// Not a test on its own: the traced child's body, run only with `EDGEREC_STORE_STRACE_CHILD`
/// set to `<action>:<dir>`.
#[test]
fn strace_child_runs_one_store_operation() {
    let Some(arg) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let arg = arg.to_string_lossy().into_owned();
    let (action, dir) = arg.split_once(':').expect("action:dir");
    let dir = Path::new(dir);
    let clip = fixture::clip(dir, 2);
    let root = dir.join("root");
    let store = open(&root);
    match action {
        "begin" => {
            mark(dir);
            let w = write(&store, &clip, "cam/2024/0", &[Format::Fmp4], 1);
            mark(dir);
            drop(w);
        }
        "delete" => {
            let a = record(&store, &clip, "cam/a/0", &[Format::Fmp4], 2);
            let b = record(&store, &clip, "cam/b/1", &[Format::Fmp4, Format::Mp4], 2);
            store.flush().unwrap();
            mark(dir);
            store.delete(&[a.id, b.id]).unwrap();
            mark(dir);
        }
        "rebuild" => {
            // A writer dropped mid-segment leaves a working file for the rebuild to close (and
            // nothing to adopt, whose commit is durable anyway).
            drop(write(&store, &clip, "cam/torn", &[Format::Fmp4], 1));
            store.flush().unwrap();
            mark(dir);
            let report = store.rebuild_index().unwrap();
            mark(dir);
            assert_eq!((report.recovered.len(), report.adopted.len()), (1, 0));
        }
        other => panic!("unknown action {other}"),
    }
}

fn mark(dir: &Path) {
    let _ = std::fs::File::open(dir.join(MARK));
}

/// One completed system call: its name and its text (arguments and result).
#[derive(Debug)]
struct Call {
    name: String,
    text: String,
}

impl Call {
    /// Whether it succeeded (its result is not `-1 E...`).
    fn ok(&self) -> bool {
        self.text
            .rsplit_once(" = ")
            .is_some_and(|(_, r)| !r.starts_with('-'))
    }
}

/// Run `action` in a traced child; the calls between the two marks, in completion order.
fn traced(action: &str) -> (tempfile::TempDir, Vec<Call>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace");
    let status = Command::new("strace")
        .args(["-f", "-y", "-qq", "-s", "4096", "-o"])
        .arg(&out)
        .args([
            "-e",
            "trace=openat,mkdir,mkdirat,fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &super::fixture::libtest_name(module_path!(), "strace_child_runs_one_store_operation"),
        ])
        .args(["--test-threads", "1", "--nocapture"])
        .env(CHILD_ENV, format!("{action}:{}", dir.path().display()))
        .status()
        .expect("strace runs (install it: make test-deps)");
    assert!(status.success(), "the traced child failed: {status}");
    let text = std::fs::read_to_string(&out).unwrap();
    let calls = parse(&text);
    let marks: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name == "openat" && c.text.contains(MARK))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(marks.len(), 2, "two marks in the trace:\n{text}");
    let between = calls
        .into_iter()
        .skip(marks[0] + 1)
        .take(marks[1] - marks[0] - 1)
        .collect();
    (dir, between)
}

/// Parse `strace -f` output, joining `<unfinished ...>` calls with their `resumed` ends; a
/// call counts at the line where it completes.
fn parse(text: &str) -> Vec<Call> {
    let mut open: std::collections::HashMap<String, String> = Default::default();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            open.insert(pid.to_string(), head.to_string());
            continue;
        }
        let full = if let Some(tail) = rest.strip_prefix("<... ") {
            let tail = tail.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{}", open.remove(pid).unwrap_or_default(), tail)
        } else {
            rest.to_string()
        };
        let Some((name, _)) = full.split_once('(') else {
            continue;
        };
        calls.push(Call {
            name: name.to_string(),
            text: full,
        });
    }
    calls
}

/// Index of the first call named one of `names` whose text contains `needle`, at or after
/// `from`.
fn find(calls: &[Call], from: usize, names: &[&str], needle: &str) -> Option<usize> {
    (from..calls.len()).find(|&i| {
        names.contains(&calls[i].name.as_str()) && calls[i].text.contains(needle) && calls[i].ok()
    })
}

/// `fsync(N</path>)` of exactly the directory `dir`.
fn dir_sync(dir: &Path) -> String {
    format!("</{}>)", dir.display().to_string().trim_start_matches('/'))
}

fn show(calls: &[Call]) -> String {
    calls.iter().map(|c| format!("{}\n", c.text)).collect()
}

#[test]
fn begin_makes_the_new_working_file_and_its_directories_durable() {
    let (dir, calls) = traced("begin");
    let root = dir.path().join("root");
    let part = root.join("cam/2024/0.mp4.part");
    let t = show(&calls);
    let created = find(&calls, 0, &["openat"], &format!("\"{}\"", part.display()))
        .unwrap_or_else(|| panic!("the working file is created:\n{t}"));
    assert!(calls[created].text.contains("O_EXCL"), "{t}");
    let synced = find(&calls, created, &["fdatasync", "fsync"], ".mp4.part>")
        .unwrap_or_else(|| panic!("its init section is synced:\n{t}"));
    find(
        &calls,
        synced,
        &["fsync"],
        &dir_sync(&root.join("cam/2024")),
    )
    .unwrap_or_else(|| {
        panic!("then its directory is fsynced, or a power cut loses the name:\n{t}")
    });
    // Each directory created on the way is made durable in its parent.
    for (made, parent) in [
        (root.join("cam"), root.clone()),
        (root.join("cam/2024"), root.join("cam")),
    ] {
        let at = find(
            &calls,
            0,
            &["mkdir", "mkdirat"],
            &format!("\"{}\"", made.display()),
        )
        .unwrap_or_else(|| panic!("{} is created:\n{t}", made.display()));
        find(&calls, at, &["fsync"], &dir_sync(&parent)).unwrap_or_else(|| {
            panic!(
                "{} is fsynced after creating {}:\n{t}",
                parent.display(),
                made.display()
            )
        });
    }
    let dir_syncs = calls
        .iter()
        .filter(|c| c.name == "fsync" && c.text.contains(&dir_sync(&root.join("cam/2024"))))
        .count();
    assert_eq!(
        dir_syncs, 1,
        "one fsync of the segment's directory per segment:\n{t}"
    );
}

#[test]
fn delete_marks_durably_before_unlinking_and_fsyncs_each_directory_after() {
    let (dir, calls) = traced("delete");
    let root = dir.path().join("root");
    let t = show(&calls);
    let first_unlink = find(&calls, 0, &["unlink", "unlinkat"], ".mp4")
        .unwrap_or_else(|| panic!("segment files are unlinked:\n{t}"));
    let index = format!("{}>", root.join(super::fsutil::INDEX_FILE).display());
    let mark = find(&calls, 0, &["fsync", "fdatasync"], &index);
    assert!(
        mark.is_some_and(|m| m < first_unlink),
        "the Deleting mark reaches the disk before any file is unlinked:\n{t}"
    );
    let unlinked: Vec<PathBuf> = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "unlink" | "unlinkat") && c.ok())
        .filter(|c| c.text.contains(".mp4\""))
        .filter_map(|c| c.text.split('"').nth(1).map(PathBuf::from))
        .collect();
    assert_eq!(
        unlinked.len(),
        3,
        "a.mp4, b.mp4 and b.progressive.mp4:\n{t}"
    );
    let last_unlink = (0..calls.len())
        .rev()
        .find(|&i| matches!(calls[i].name.as_str(), "unlink" | "unlinkat"))
        .unwrap();
    for d in [root.join("cam/a"), root.join("cam/b")] {
        let at = find(&calls, 0, &["fsync"], &dir_sync(&d))
            .unwrap_or_else(|| panic!("{} is fsynced:\n{t}", d.display()));
        let unlinked_here = (0..calls.len())
            .filter(|&i| matches!(calls[i].name.as_str(), "unlink" | "unlinkat"))
            .filter(|&i| calls[i].text.contains(&format!("\"{}/", d.display())))
            .max()
            .unwrap();
        assert!(
            at > unlinked_here,
            "{} fsynced after its unlinks:\n{t}",
            d.display()
        );
    }
    assert!(last_unlink > mark.unwrap());
}

#[test]
fn rebuild_ends_with_a_durable_commit_after_its_last_file_change() {
    let (dir, calls) = traced("rebuild");
    let root = dir.path().join("root");
    let t = show(&calls);
    let index = format!("{}>", root.join(super::fsutil::INDEX_FILE).display());
    let renamed = (0..calls.len())
        .rev()
        .find(|&i| calls[i].name.starts_with("rename") && calls[i].text.contains("torn.mp4.part"))
        .unwrap_or_else(|| panic!("the torn segment is closed by its rename:\n{t}"));
    find(&calls, renamed, &["fsync", "fdatasync"], &index)
        .unwrap_or_else(|| panic!("the index is synced after the rebuild's last close:\n{t}"));
}
