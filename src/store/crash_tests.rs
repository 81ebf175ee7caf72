//! kill -9 test: a child process (this test binary, re-executed) records, closes and deletes
//! segments in a loop; the parent kills it with SIGKILL at arbitrary moments, recovers, and
//! checks that the index and the files agree and that every file decodes cleanly.
//!
//! SIGKILL keeps the page cache, so this proves the ordering of the protocol against process
//! death, not against power loss.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture;
use super::*;
use crate::clock::ManualClock;
use crate::format::Format;

const CHILD_ENV: &str = "EDGEREC_STORE_CRASH_CHILD";

/// Not a test on its own: the body of the child process, run only when re-executed with
/// `EDGEREC_STORE_CRASH_CHILD=<root>`.
#[test]
fn crash_child_records_until_killed() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let clip = fixture::clip(root.parent().unwrap(), 4);
    let store = Store::open_with_clock(root, ManualClock::new(1)).unwrap();
    store.recover(1).unwrap();
    let formats: [&[Format]; 3] = [
        &[Format::Fmp4],
        &[Format::Fmp4, Format::Mp4],
        &[Format::Mp4],
    ];
    loop {
        let seq = store.next_seq("cam").unwrap();
        let c = clip.with_meta(fixture::meta("cam", seq));
        let base = format!("cam/{}/{seq}", seq / 4);
        let mut w = store
            .begin(
                &c.start.meta,
                Path::new(&base),
                formats[seq as usize % 3],
                &c.init,
            )
            .unwrap();
        for f in &c.fragments {
            w.append(f).unwrap();
        }
        w.finish(&c.close_after(c.fragments.len())).unwrap();
        let rows = store.segments().unwrap();
        if rows.len() > 5 {
            store.delete(&[rows[0].id, rows[1].id]).unwrap();
        }
    }
}

fn spawn_child(root: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::crash_tests::crash_child_records_until_killed",
        ])
        .args(["--test-threads", "1", "--nocapture"])
        .env(CHILD_ENV, root)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn segment_files(root: &Path) -> usize {
    fsutil::walk(root).map(|f| f.len()).unwrap_or(0)
}

#[test]
fn store_killed_at_arbitrary_moments_recovers_to_a_consistent_decodable_state() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for round in 0..4u64 {
        let mut child = spawn_child(&root);
        // Let it get some work done, then kill it wherever it happens to be.
        let wait_until = Instant::now() + Duration::from_secs(30);
        while segment_files(&root) < 2 && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150 + 130 * round));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child ends only by being killed");

        let store = Store::open_with_clock(&root, ManualClock::new(2)).unwrap();
        let report = store.recover(2).unwrap();
        let rows = store.segments().unwrap();
        assert!(
            !rows.is_empty(),
            "round {round}: nothing recorded? {report:?}"
        );
        let mut named = Vec::new();
        for row in &rows {
            assert_eq!(row.state, SegmentState::Closed, "round {round}: {row:?}");
            for f in &row.files {
                let path = root.join(&f.path);
                assert_eq!(std::fs::metadata(&path).unwrap().len(), f.bytes);
                assert_eq!(fixture::decode_errors(&path), "", "{}", path.display());
                named.push(f.path.clone());
            }
        }
        named.sort();
        assert_eq!(
            fsutil::walk(&root).unwrap(),
            named,
            "round {round}: {report:?}"
        );
        let again = store.recover(2).unwrap();
        assert!(
            again.recovered.is_empty()
                && again.adopted.is_empty()
                && again.removed.is_empty()
                && again.dropped_rows == 0,
            "round {round}: recovery is idempotent: {again:?}"
        );
    }
}
