use std::sync::atomic::AtomicBool;

use super::*;
use crate::util::clock::ManualClock;

/// A watch over a manual clock whose sync state the test sets.
fn watch(wall_ms: i64, synced: bool) -> (Arc<ManualClock>, Arc<ClockWatch>, Arc<AtomicBool>) {
    let clock = ManualClock::new(wall_ms);
    let flag = Arc::new(AtomicBool::new(synced));
    let f = flag.clone();
    let probe: SyncProbe = Box::new(move |_| SyncState {
        synced: f.load(Ordering::SeqCst),
        maxerror_ms: Some(1),
    });
    let w = ClockWatch::new(clock.clone(), probe, "boot-a".into());
    (clock, w, flag)
}

#[test]
fn a_step_of_an_unsynced_clock_is_a_correction_reported_to_the_listener() {
    let (clock, w, _) = watch(0, false);
    let mut rx = w.listen();
    assert_eq!(w.quality_now(), TimeQuality::Unsynced);
    clock.advance(std::time::Duration::from_secs(5));
    let now = 1_796_000_000_000;
    clock.step_wall(now - w.wall_ms());
    assert_eq!(
        w.wall_ms(),
        now,
        "the read that sees the step returns the new time"
    );
    let step = rx.try_recv().expect("a step was sent");
    assert_eq!(step.to_ms, now);
    assert_eq!(step.from_ms, 5_000);
    assert_eq!(step.delta_ms, now - 5_000);
    assert!(step.correction && !step.was_synced);
    assert_eq!(w.corrections(), (1, now - 5_000));
    assert_eq!(w.offset_ms(), now - clock.boot_ms());
    assert!(rx.try_recv().is_err(), "one step, reported once");
}

#[test]
fn a_step_of_a_synced_clock_is_counted_but_corrects_nothing() {
    let (clock, w, _) = watch(1_796_000_000_000, true);
    let mut rx = w.listen();
    w.quality_now();
    clock.step_wall(-3_600_000);
    w.wall_ms();
    let step = rx.try_recv().unwrap();
    assert!(step.was_synced && !step.correction);
    assert_eq!(step.delta_ms, -3_600_000);
    assert_eq!(w.corrections(), (0, 0));
    let r = w.report();
    assert_eq!((r.state.as_str(), r.steps, r.corrections), ("synced", 1, 0));
    assert_eq!(r.last_step, Some(step));
}

#[test]
fn time_passing_is_no_step() {
    let (clock, w, _) = watch(1_796_000_000_000, false);
    let mut rx = w.listen();
    for _ in 0..100 {
        clock.advance(std::time::Duration::from_millis(700));
        w.wall_ms();
    }
    assert!(rx.try_recv().is_err());
    assert_eq!(w.report().steps, 0);
}

#[test]
fn the_state_a_step_is_judged_by_is_the_one_read_before_it() {
    // NTP steps the clock and then reports it synced: the step still corrects.
    let (clock, w, flag) = watch(0, false);
    w.quality_now();
    flag.store(true, Ordering::SeqCst);
    clock.step_wall(1_796_000_000_000);
    w.wall_ms();
    assert_eq!(w.corrections().0, 1);
    assert_eq!(w.quality_now(), TimeQuality::Synced);
}
