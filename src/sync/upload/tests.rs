//! Unit tests of the upload hook, backlog, retention guard, persisted pause, deny gate, and
//! a transfer stopped by its window closing (injected clock, file target).

use super::*;
use crate::util::clock::ManualClock;

fn cfg(policy: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"device_id = "d"
[storage]
root = "x"
max_bytes = "1GiB"
policy = "{policy}"
[[templates]]
name = "up"
formats = ["fmp4"]
upload = "vod"
[[templates]]
name = "local"
formats = ["fmp4"]
[[rules]]
template = "up"
stream = "cam*"
[[rules]]
template = "local"
stream = "other"
[upload]
[[upload.targets]]
name = "vod"
url = "file:///tmp/edgerec-test-uploads"
"#
    ))
    .unwrap()
}

fn row(id: u64, stream: &str, upload: UploadState) -> SegmentRow {
    SegmentRow {
        id,
        device: "d".into(),
        app: String::new(),
        stream: stream.into(),
        seq: id,
        start_ms: id as i64 * 1000,
        end_ms: id as i64 * 1000 + 900,
        duration_ms: 900,
        bytes: 100,
        files: vec![],
        state: SegmentState::Closed,
        recovered: false,
        upload,
        closed_at_ms: 1,
        base: std::path::PathBuf::from("b"),
        formats: vec![],
        time_quality: Default::default(),
        boot: None,
    }
}

fn store(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open(&dir.join("root")).unwrap())
}

#[test]
fn the_hook_queues_closing_segments_whose_template_names_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let u = Uploads::register(&cfg("delete_oldest"), &st, ManualClock::new(5_000)).unwrap();
    let mut ops = Vec::new();
    let mut cam = row(1, "cam1", UploadState::NotQueued);
    u.hook.closing(&mut cam, &mut ops);
    assert_eq!(
        cam.upload,
        UploadState::Pending {
            queued_at_ms: 5_000,
            attempts: 0
        }
    );
    let mut other = row(2, "other", UploadState::NotQueued);
    u.hook.closing(&mut other, &mut ops);
    assert_eq!(other.upload, UploadState::NotQueued);
    let done = UploadState::Uploaded {
        url: "u".into(),
        at_ms: 1,
    };
    let mut again = row(3, "cam2", done.clone());
    u.hook.closing(&mut again, &mut ops);
    assert_eq!(
        again.upload, done,
        "recovery closing it again must not re-queue it"
    );
    assert!(u.hook.take_fed().is_empty(), "not before its commit landed");
    u.hook.committed(&[2, 3]);
    assert!(u.hook.take_fed().is_empty(), "another commit's rows");
    u.hook.committed(&[1]);
    assert_eq!(u.hook.take_fed(), vec![1]);
    assert!(ops.is_empty());
}

#[test]
fn no_upload_section_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg("delete_oldest");
    c.upload = None;
    assert!(Uploads::register(&c, &store(dir.path()), ManualClock::new(0)).is_none());
}

#[test]
fn the_backlog_counts_closed_pending_segments_only() {
    let pending = UploadState::Pending {
        queued_at_ms: 0,
        attempts: 0,
    };
    let mut writing = row(4, "cam", pending.clone());
    writing.state = SegmentState::Writing;
    let rows = vec![
        row(3, "cam", pending.clone()),
        row(2, "cam", pending),
        row(1, "cam", UploadState::NotQueued),
        writing,
    ];
    assert_eq!(
        backlog_of(&rows),
        Backlog {
            count: 2,
            bytes: 200,
            oldest_ms: Some(2_000)
        }
    );
}

#[test]
fn retention_spares_the_transfer_under_way_and_under_deny_new_the_unsynced() {
    use crate::storage::retention::pass::PassHooks;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let u = Uploads::register(&cfg("deny_new"), &st, ManualClock::new(0)).unwrap();
    let control = u.control();
    let _done = control.started(7, 100);
    let pending = UploadState::Pending {
        queued_at_ms: 0,
        attempts: 0,
    };
    let rows = [
        row(7, "cam", pending.clone()),
        row(8, "cam", pending),
        row(9, "cam", UploadState::NotQueued),
    ];
    let flag = DenyFlag::load(&st);
    let hooks = |policy| UploadRetention::new(&cfg(policy), Some(control.clone()), flag.clone());
    let kept = |mut h: UploadRetention| {
        let mut k: Vec<u64> = h.protected(&rows).into_iter().collect();
        k.sort();
        k
    };
    assert_eq!(kept(hooks("deny_new")), [7, 8]);
    assert_eq!(kept(hooks("delete_oldest")), [7]);
    control.finished(7);
    assert!(kept(hooks("delete_oldest")).is_empty());
}

#[test]
fn pause_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let st = store(dir.path());
        let u = Uploads::register(&cfg("delete_oldest"), &st, ManualClock::new(0)).unwrap();
        assert!(!u.control().is_paused());
        u.control().pause().unwrap();
        assert!(u.control().is_paused());
    }
    let st = store(dir.path());
    let u = Uploads::register(&cfg("delete_oldest"), &st, ManualClock::new(0)).unwrap();
    assert!(u.control().is_paused());
    u.control().resume().unwrap();
    assert!(!u.control().is_paused());
}

#[test]
fn the_deny_flag_follows_retention_and_gates_recorders() {
    use crate::storage::retention::pass::PassHooks;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let waiting = row(
        1,
        "cam",
        UploadState::Pending {
            queued_at_ms: 0,
            attempts: 0,
        },
    );
    let unmet = crate::storage::retention::Plan {
        evict: vec![],
        unmet: Some(crate::storage::retention::Reason::MaxBytes),
    };
    let flag = DenyFlag::load(&st);
    let mut gate = flag.gate();
    assert!(!gate.denied());
    let mut hooks = UploadRetention::new(&cfg("deny_new"), None, flag.clone());
    assert!(
        hooks.protected(std::slice::from_ref(&waiting)).contains(&1),
        "deny_new keeps what waits for upload"
    );
    hooks.planned(&st, &unmet);
    assert!(gate.denied(), "seen at once, without reading the index");
    assert!(
        DenyFlag::load(&st).is_set(),
        "stored: a restart still refuses"
    );
    hooks.planned(&st, &crate::storage::retention::Plan::default());
    assert!(!gate.denied());
    assert!(!DenyFlag::load(&st).is_set());

    let mut oldest = UploadRetention::new(&cfg("delete_oldest"), None, flag.clone());
    assert!(oldest.protected(&[waiting]).is_empty());
    oldest.planned(&st, &unmet);
    assert!(!gate.denied(), "delete_oldest never refuses");
}

/// A file of `n` bytes of varied content.
fn varied_file(path: &std::path::Path, n: usize) {
    let data: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(path, data).unwrap();
}

fn md5_of(path: &std::path::Path) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn a_transfer_stops_at_a_part_boundary_when_its_window_closes_and_resumes_in_the_next() {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use crate::config::upload::MIN_PART_SIZE;
    use crate::sync::upload::target::Target;
    use crate::sync::upload::transfer::{FileJob, Progress};
    use crate::util::windows::{local_minute, Window};

    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    // One second past a minute boundary; the window is open for this minute and the next.
    let t0: i64 = 1_800_000_000_000 + 1_000;
    let clock = ManualClock::new(t0);
    let m0 = local_minute(t0);
    let window = Window {
        start: m0,
        end: (m0 + 2) % 1440,
    };
    let control = Control::new(
        st.clone(),
        clock.clone(),
        vec![window],
        Arc::new(Notify::new()),
    );
    let src = dir.path().join("segment.bin");
    let size = 3 * MIN_PART_SIZE + 1000;
    varied_file(&src, size as usize);
    let out = dir.path().join("out");
    let cfg = Config::from_toml_str(&format!(
        "device_id = \"d\"\n[storage]\nroot = \"x\"\nmax_bytes = \"1GiB\"\n[upload]\n[[upload.targets]]\nname = \"vod\"\nurl = \"file://{}\"\n",
        out.display()
    ))
    .unwrap();
    let limiter = Arc::new(crate::sync::upload::limiter::Limiter::new(
        None,
        std::time::Instant::now(),
    ));
    let up = cfg.upload.unwrap();
    let target = Target::build(&up.targets[0], limiter, MIN_PART_SIZE).unwrap();
    let done = AtomicU64::new(0);
    // Each part boundary takes a minute of the injected clock.
    let tick = || {
        let ok = control.may_transfer();
        clock.advance(Duration::from_secs(60));
        ok
    };
    let job = FileJob {
        store: &st,
        segment: 1,
        path: src.clone(),
        key: "d/cam/segment.bin".into(),
        size,
        part_size: MIN_PART_SIZE,
        done: &done,
        may_continue: &tick,
    };
    let r = target.upload_file(&job, &mut Progress::default()).await;
    assert!(matches!(r, Err(UploadError::Held)), "{r:?}");
    assert_eq!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        2 * MIN_PART_SIZE,
        "two parts inside the window, none after it closed"
    );
    let copy = out.join("d/cam/segment.bin");
    assert!(!copy.exists(), "an incomplete copy was published");
    let leftovers: Vec<_> = std::fs::read_dir(out.join("d/cam")).unwrap().collect();
    assert!(leftovers.is_empty(), "staging file left: {leftovers:?}");
    // Outside the window until the same minute the next day.
    assert!(!control.may_transfer());
    clock.advance(Duration::from_secs((1440 - 3) * 60));
    assert!(control.may_transfer());
    let open = || control.may_transfer();
    let job = FileJob {
        may_continue: &open,
        ..job
    };
    target
        .upload_file(&job, &mut Progress::default())
        .await
        .unwrap();
    assert_eq!(md5_of(&copy), md5_of(&src));
}
