use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

fn eio(op: &str) -> Fault {
    Fault {
        op: Some(op.into()),
        path: Some("cam/x.mp4.part".into()),
        errno: Some("EIO".into()),
        error: format!("{op} cam/x.mp4.part: Input/output error"),
    }
}

fn wd() -> Watchdog {
    Watchdog::new(S(20), S(600))
}

#[test]
fn a_write_error_is_raised_once_per_streak_and_cleared_by_the_next_write() {
    let t0 = Instant::now();
    let mut w = wd();
    let raised = w.write_failed("cam", eio("fdatasync"), t0, 1000);
    assert_eq!(raised.len(), 1);
    let b = &raised[0].body;
    assert!(raised[0].raised);
    assert_eq!(b["alarm"], "write_error");
    assert_eq!(b["active"], true);
    assert_eq!(b["stream"], "cam");
    assert_eq!(b["op"], "fdatasync");
    assert_eq!(b["errno"], "EIO");
    assert_eq!(b["since_ms"], 1000);
    assert!(w
        .write_failed("cam", eio("create"), t0 + S(2), 3000)
        .is_empty());
    assert!(w.faulted("cam"));
    assert!(!w.faulted("door"), "another stream is not faulted");
    let cleared = w.wrote("cam", t0 + S(5));
    assert_eq!(cleared.len(), 1);
    let b = &cleared[0].body;
    assert_eq!(b["active"], false);
    assert_eq!(b["stream"], "cam");
    assert_eq!(b["failures"], 2);
    assert_eq!(b["lasted_ms"], 5000);
    assert!(w.wrote("cam", t0 + S(6)).is_empty(), "cleared only once");
    assert!(w.conditions().is_empty());
}

#[test]
fn a_writer_busy_past_the_stall_timeout_is_a_stall_dated_from_its_start() {
    let t0 = Instant::now();
    let mut w = wd();
    let (stalled, ch) = w.writer_busy("cam", "fragment", Some(t0), t0 + S(19), 0);
    assert!(!stalled && ch.is_empty(), "a slow write is not a stall");
    assert_eq!(
        w.writer_busy("cam", "x", None, t0 + S(30), 0),
        (false, vec![])
    );
    let (stalled, ch) = w.writer_busy("cam", "fragment", Some(t0), t0 + S(20), 50_000);
    assert!(stalled);
    assert_eq!(ch[0].body["alarm"], "stalled");
    assert_eq!(ch[0].body["since_ms"], 30_000, "since the call began");
    let (stalled, ch) = w.writer_busy("cam", "fragment", Some(t0), t0 + S(21), 51_000);
    assert!(stalled && ch.is_empty(), "raised once");
    let cleared = w.wrote("cam", t0 + S(40));
    assert_eq!(cleared[0].body["lasted_ms"], 40_000);
}

#[test]
fn the_watchdog_is_fed_until_a_condition_lasts_fault_restart() {
    let t0 = Instant::now();
    let mut w = Watchdog::new(S(20), S(600));
    assert_eq!(w.verdict(t0), Verdict::Feed);
    w.write_failed("cam", eio("write"), t0, 0);
    assert_eq!(w.verdict(t0 + S(599)), Verdict::Feed);
    // Short conditions elsewhere come and go without a restart.
    w.write_failed("door", eio("write"), t0 + S(100), 0);
    w.wrote("door", t0 + S(110));
    match w.verdict(t0 + S(600)) {
        Verdict::Restart { condition, lasted } => {
            assert_eq!(condition.stream.as_deref(), Some("cam"));
            assert_eq!(lasted, S(600));
        }
        v => panic!("{v:?}"),
    }
    w.wrote("cam", t0 + S(601));
    assert_eq!(
        w.verdict(t0 + S(602)),
        Verdict::Feed,
        "fed again once cleared"
    );
}

#[test]
fn a_stopped_stream_takes_its_conditions_with_it() {
    let t0 = Instant::now();
    let mut w = wd();
    w.write_failed("cam", eio("write"), t0, 0);
    w.writer_busy("cam", "close", Some(t0), t0 + S(25), 0);
    let gone = w.stream_gone("cam", t0 + S(30));
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|c| c.body["reason"] == "stream stopped"));
    assert_eq!(w.verdict(t0 + S(10_000)), Verdict::Feed);
}

fn s(free: u64, read_only: bool) -> DiskSample {
    DiskSample {
        free,
        total: 1000,
        min_free: 100,
        read_only,
    }
}

#[test]
fn low_space_is_raised_after_two_low_samples_and_cleared_once() {
    let t0 = Instant::now();
    let mut w = wd();
    assert!(
        w.disk(s(50, false), t0, 0).is_empty(),
        "one low sample is normal"
    );
    let raised = w.disk(s(40, false), t0 + S(10), 0);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].body["alarm"], "low_space");
    assert_eq!(raised[0].body["free_bytes"], 40);
    assert!(
        w.disk(s(30, false), t0 + S(20), 0).is_empty(),
        "raised once"
    );
    let cleared = w.disk(s(500, false), t0 + S(30), 0);
    assert_eq!(cleared[0].body["active"], false);
    assert_eq!(cleared[0].body["free_bytes"], 500);
    assert!(w.disk(s(500, false), t0 + S(40), 0).is_empty());
}

#[test]
fn a_read_only_disk_is_raised_at_once_and_cleared() {
    let t0 = Instant::now();
    let mut w = wd();
    let r = w.disk(s(500, true), t0, 0);
    assert_eq!(r[0].body["alarm"], "read_only");
    assert_eq!(r[0].body["active"], true);
    assert!(r[0].body.get("stream").is_none());
    assert!(w.disk(s(500, true), t0, 0).is_empty());
    assert_eq!(w.disk(s(500, false), t0, 0)[0].body["active"], false);
}

#[test]
fn errnos_have_their_names() {
    assert_eq!(errno_name(libc::EIO), "EIO");
    assert_eq!(errno_name(libc::ENOSPC), "ENOSPC");
    assert_eq!(errno_name(libc::EROFS), "EROFS");
    assert_eq!(errno_name(9999), "errno 9999");
}
