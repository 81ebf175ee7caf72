//! End to end: `kill -9` at random moments, over and over, while a real-time file source is
//! recorded into 3 s segments with 500 ms fragments. After every restart, recovery must have
//! closed the torn segment (`recovered: true`, decodes cleanly), left every closed segment
//! byte-for-byte intact, and kept index and files in agreement.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;

const ITERATIONS: usize = 22;

/// A segment that was in flight when the process was killed.
#[derive(Debug)]
struct Torn {
    /// Final path (relative to the root) it will have once recovered.
    path: String,
    /// Still a working `.part` file at the kill (torn media). Otherwise a complete file
    /// at its final name whose index commit the kill lost: finished, not torn.
    was_part: bool,
    /// Complete moof+mdat pairs it had when killed (0: recovery should drop it).
    fragments: usize,
    /// Bytes up to the end of the last complete fragment.
    complete_bytes: u64,
    /// Identity of the file at the kill: a later segment may reuse the name (names have
    /// one-second resolution) and even the inode number, but not both with the same birth
    /// time; recovery renames, so a recovered file keeps its identity.
    ino: FileId,
}

/// Inode number and birth time (0 where the filesystem has no birth time: the change
/// time would not do, a rename changes it).
type FileId = (u64, i128);

/// Identity of `path`, if it exists.
fn inode(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    let born = match m.created() {
        Ok(t) => t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0),
        Err(_) => 0,
    };
    Some((m.ino(), born))
}

#[test]
fn kill_9_at_random_moments_never_loses_closed_segments_and_recovers_torn_ones() {
    let spec = ClipSpec::h264(10, 1);
    let clip = clip(&spec);
    let dir = workdir("crash");
    let root = dir.path().join("data");
    let cfg = TestConfig {
        interval: "3s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .stream("cam", &format!("file:{}?loop=true", clip.display()))
    .write(&dir.path().join("edgerec.toml"));
    let mut rng = Rng::from_env_or_time("crash_recovery");

    // path -> (bytes, md5) of every segment seen closed so far.
    let mut closed: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut torn_ever: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<Torn> = Vec::new();
    let mut recovered_ok = 0;

    for iter in 0..ITERATIONS {
        let mut daemon = Daemon::start(&cfg);
        let secs = rng.range_f64(1.0, 3.5);
        std::thread::sleep(Duration::from_secs_f64(secs));
        assert!(
            daemon.running(),
            "iteration {iter}: edgerec died on its own; log:\n{}",
            daemon.log()
        );
        daemon.kill9();
        let ctx = format!("iteration {iter} (killed after {secs:.2} s)");

        let rows = segments(&cfg);
        let row_of = |p: &str| rows.iter().find(|r| r.files.iter().any(|f| f.path == p));

        // The segments torn by the previous kill were recovered by this run's start-up.
        for t in pending.drain(..) {
            let part = root.join(format!("{}.part", t.path));
            assert_ne!(
                inode(&part),
                Some(t.ino),
                "{ctx}: {}.part is still there after a restart; log:\n{}",
                t.path,
                daemon.log()
            );
            if t.fragments == 0 {
                assert_ne!(
                    inode(&root.join(&t.path)),
                    Some(t.ino),
                    "{ctx}: torn segment without a complete fragment kept: {}",
                    t.path
                );
                continue;
            }
            let row = row_of(&t.path).unwrap_or_else(|| {
                panic!(
                    "{ctx}: torn segment {} ({} fragments) was not recovered",
                    t.path, t.fragments
                )
            });
            assert_eq!(row.state, "closed", "{ctx}: {row:?}");
            assert_eq!(
                row.recovered, t.was_part,
                "{ctx}: only torn working files are marked recovered: {row:?}"
            );
            assert!(row.duration_ms > 0, "{ctx}: {row:?}");
            let file = root.join(&t.path);
            let len = std::fs::metadata(&file).unwrap().len();
            assert!(
                len >= t.complete_bytes,
                "{ctx}: {} lost complete fragments ({len} < {} bytes)",
                t.path,
                t.complete_bytes
            );
            assert_eq!(
                inode(&file),
                Some(t.ino),
                "{ctx}: {} is not the torn file",
                t.path
            );
            assert_decodes(&file);
            let p = probe(&file);
            assert!(
                p.stream("video").is_some() && p.stream("audio").is_some(),
                "{ctx}: {p:?}"
            );
            recovered_ok += 1;
        }

        // Every closed segment is still there, unchanged.
        for (path, (bytes, md5)) in &closed {
            let row = row_of(path)
                .unwrap_or_else(|| panic!("{ctx}: closed segment {path} left the index"));
            assert_eq!(row.state, "closed", "{ctx}: {row:?}");
            let file = root.join(path);
            assert!(file.exists(), "{ctx}: closed segment {path} vanished");
            assert_eq!(
                std::fs::metadata(&file).unwrap().len(),
                *bytes,
                "{ctx}: {path} changed size"
            );
            assert_eq!(&md5_file(&file), md5, "{ctx}: {path} changed content");
        }

        // Closed rows match the disk; newly closed ones decode. What differs is what was in
        // flight at the kill: a working file, or (killed during a close) a final file whose
        // row is not closed yet.
        let closed_rows: Vec<&SegmentRow> = rows.iter().filter(|r| r.state == "closed").collect();
        for row in &closed_rows {
            assert!(
                !row.recovered || row.files.iter().all(|f| torn_ever.contains(&f.path)),
                "{ctx}: a segment nobody tore is marked recovered: {row:?}"
            );
            for f in &row.files {
                let file = root.join(&f.path);
                let len = std::fs::metadata(&file)
                    .unwrap_or_else(|e| panic!("{ctx}: indexed {} missing: {e}", f.path))
                    .len();
                assert_eq!(len, f.bytes, "{ctx}: {} size differs from index", f.path);
                if !closed.contains_key(&f.path) {
                    assert_decodes(&file);
                    closed.insert(f.path.clone(), (len, md5_file(&file)));
                }
            }
        }
        let indexed: BTreeSet<&str> = closed_rows
            .iter()
            .flat_map(|r| r.files.iter().map(|f| f.path.as_str()))
            .collect();
        let mut in_flight: Vec<String> = part_files(&root)
            .into_iter()
            .map(|p| p.trim_end_matches(".part").to_owned())
            .collect();
        in_flight.extend(
            segment_files(&root)
                .into_iter()
                .filter(|p| !indexed.contains(p.as_str())),
        );
        in_flight.sort();
        in_flight.dedup();
        // One segment is being written; at a cut, the previous one may still be closing.
        assert!(
            in_flight.len() <= 2,
            "{ctx}: more than the segments being written/closed are unfinished: {in_flight:?}"
        );
        for path in in_flight {
            let part = root.join(format!("{path}.part"));
            let was_part = part.exists();
            let file = if was_part { part } else { root.join(&path) };
            let (fragments, complete_bytes) = complete_fragments(&file);
            let ino = inode(&file).unwrap();
            torn_ever.insert(path.clone());
            pending.push(Torn {
                path,
                was_part,
                fragments,
                complete_bytes,
                ino,
            });
        }
    }

    // A last clean run: recovery, a little recording, SIGTERM.
    let mut daemon = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_millis(1500));
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "clean stop after the crashes: {status}; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        part_files(&root),
        Vec::<String>::new(),
        "working files after a clean stop"
    );
    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    for t in &pending {
        if t.fragments == 0 {
            assert_ne!(inode(&root.join(&t.path)), Some(t.ino), "{} kept", t.path);
        } else {
            assert_eq!(
                inode(&root.join(&t.path)),
                Some(t.ino),
                "{} not recovered",
                t.path
            );
            let row = rows
                .iter()
                .find(|r| r.files.iter().any(|f| f.path == t.path));
            assert!(
                row.is_some_and(|r| r.recovered == t.was_part),
                "last torn segment {} not recovered as it should be: {row:?}",
                t.path
            );
            assert_decodes(&root.join(&t.path));
        }
    }
    for (path, (bytes, md5)) in &closed {
        let file = root.join(path);
        assert_eq!(
            std::fs::metadata(&file).map(|m| m.len()).ok(),
            Some(*bytes),
            "{path}"
        );
        assert_eq!(&md5_file(&file), md5, "{path} changed");
    }
    // Random kill times land mid-segment most of the time; make sure the test tested that.
    assert!(
        recovered_ok >= ITERATIONS / 3,
        "only {recovered_ok} torn segments with data were recovered in {ITERATIONS} kills"
    );
}
