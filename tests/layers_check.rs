//! `scripts/check-layers.py` (in `make lint` and `make test`): clean on the tree as it is,
//! and failing, with the files named, on a copy of the tree given a deliberate import
//! cycle, an import that goes up a layer, a process started by an ungated unit test, or a
//! baseline entry that no longer occurs.

use std::fs;
use std::path::Path;
use std::process::Command;

fn check(root: &Path, baseline: &Path) -> (i32, String) {
    let out = Command::new("python3")
        .arg("scripts/check-layers.py")
        .arg("--root")
        .arg(root)
        .arg("--baseline")
        .arg(baseline)
        .output()
        .expect("python3 runs scripts/check-layers.py");
    (
        out.status.code().expect("exits"),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of src/ in a temporary repository root.
fn tree_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("src"), &dir.path().join("src"));
    dir
}

fn append(root: &Path, file: &str, text: &str) {
    let p = root.join("src").join(file);
    let mut s = fs::read_to_string(&p).unwrap();
    s.push_str(text);
    fs::write(p, s).unwrap();
}

const BASELINE: &str = "scripts/layers-baseline.txt";

#[test]
fn the_tree_as_it_is_passes() {
    let (code, out) = check(Path::new("."), Path::new(BASELINE));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_new_cycle_between_two_files_fails_and_names_both() {
    let dir = tree_copy();
    append(
        dir.path(),
        "util/glob.rs",
        "\nuse crate::util::naming::expand;\n",
    );
    append(
        dir.path(),
        "util/naming.rs",
        "\nuse crate::util::glob::Glob;\n",
    );
    let (code, out) = check(dir.path(), Path::new(BASELINE));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cycle: src/util/glob.rs , src/util/naming.rs"),
        "{out}"
    );
}

#[test]
fn an_import_that_goes_up_a_layer_fails() {
    let dir = tree_copy();
    append(
        dir.path(),
        "media/segment/mod.rs",
        "\nfn _up() { let _ = crate::storage::store::Store::open; }\n",
    );
    let (code, out) = check(dir.path(), Path::new(BASELINE));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "up: src/media/segment/mod.rs -> src/storage/store/mod.rs (media imports storage)"
        ),
        "{out}"
    );
}

#[test]
fn a_unit_test_that_starts_a_process_outside_the_feature_fails() {
    let dir = tree_copy();
    append(
        dir.path(),
        "util/backoff.rs",
        "\n#[cfg(test)]\nmod spawning {\n    #[test]\n    fn runs_ffmpeg() {\n        \
         std::process::Command::new(\"ffmpeg\").status().unwrap();\n    }\n}\n",
    );
    let (code, out) = check(dir.path(), Path::new(BASELINE));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("process: src/util/backoff.rs:") && out.contains("process-tests"),
        "{out}"
    );
}

#[test]
fn a_baseline_entry_that_no_longer_occurs_fails() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("baseline.txt");
    let mut text = fs::read_to_string(BASELINE).unwrap();
    text.push_str("up: src/util/clock.rs -> src/app/cli.rs (util imports app)\n");
    fs::write(&stale, text).unwrap();
    let (code, out) = check(Path::new("."), &stale);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fixed, remove it from baseline.txt"), "{out}");
}
