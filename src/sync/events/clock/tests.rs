//! Re-stamping on a simulated clock: rows in a real index, steps made by hand.

use std::sync::Arc;

use super::*;
use crate::media::format::Format;
use crate::media::segment::event::SegmentMeta;
use crate::storage::store::{AuxTable, SegmentRow, SegmentState, CORRECTIONS_FILE};
use crate::sync::events::Event;
use crate::util::clock::ManualClock;
use crate::util::clockwatch::{BootTime, SyncProbe, SyncState, TimeQuality};

const TRUTH: i64 = 1_796_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    events: Events,
    clock: Arc<ManualClock>,
    watch: Arc<ClockWatch>,
}

/// A store, an outbox, and a clock that boots at 1970 (boot clock 60 s) and is not
/// synchronized.
fn fixture(boot: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
    let events = Events::new(store.clone(), "edge", true, 100).unwrap();
    let clock = ManualClock::new(0);
    let probe: SyncProbe = Box::new(|_| SyncState {
        synced: false,
        maxerror_ms: None,
    });
    let watch = ClockWatch::new(clock.clone(), probe, boot.into());
    watch.quality_now();
    Fixture {
        _dir: dir,
        store,
        events,
        clock,
        watch,
    }
}

/// A closed 4 s segment starting now on `f`'s clock, with `quality`, of boot `boot`.
fn record(f: &Fixture, seq: u64, quality: TimeQuality, boot: &str) -> SegmentRow {
    let meta = SegmentMeta {
        device: "edge".into(),
        app: String::new(),
        stream: "cam".into(),
        seq,
        start_ms: f.watch.wall_ms(),
        formats: vec![],
        time_quality: Some(quality),
        boot: Some(BootTime {
            id: boot.into(),
            ..f.watch.boot_time_now()
        }),
    };
    let mut r = SegmentRow::writing(
        100 + seq,
        &meta,
        format!("cam/{seq}").into(),
        vec![Format::Fmp4],
    );
    r.state = SegmentState::Closed;
    r.duration_ms = 4_000;
    r.end_ms = r.start_ms + 4_000;
    f.store.aux_commit(vec![], Some(r.clone()), true).unwrap();
    f.clock.advance(std::time::Duration::from_secs(4));
    r
}

fn outbox(f: &Fixture) -> Vec<Event> {
    f.events
        .pending(0, 100)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// Step the wall clock to the truth and hand the step to `on_step`, as the daemon does.
fn step_to_truth(f: &Fixture) -> Vec<Restamped> {
    let mut rx = f.watch.listen();
    f.clock.step_wall(TRUTH - f.watch.wall_ms());
    f.watch.wall_ms();
    let step = rx.try_recv().expect("the step was seen");
    on_step(&f.store, &f.events, &f.watch, &step).unwrap()
}

#[test]
fn a_correction_re_stamps_this_boots_unsynced_segments_to_the_true_time() {
    let f = fixture("boot-a");
    let a = record(&f, 0, TimeQuality::Unsynced, "boot-a");
    let b = record(&f, 1, TimeQuality::Unsynced, "boot-a");
    let synced = record(&f, 2, TimeQuality::Synced, "boot-a");
    let other = record(&f, 3, TimeQuality::Unsynced, "boot-z");
    // The step comes 4 s after the last segment began: 16 s after the first.
    let moved = step_to_truth(&f);
    assert_eq!(moved.len(), 2, "{moved:?}");
    let row = |id| f.store.segment(id).unwrap().unwrap();
    // New time = time of the step on the new clock − boot-clock time elapsed since.
    assert_eq!(row(a.id).start_ms, TRUTH - 16_000);
    assert_eq!(row(b.id).start_ms, TRUTH - 12_000);
    assert_eq!(row(b.id).end_ms, TRUTH - 8_000);
    assert_eq!(row(a.id).time_quality, TimeQuality::Corrected);
    assert_eq!(row(synced.id), synced, "a synced segment keeps its times");
    assert_eq!(
        row(other.id),
        other,
        "another boot's segment is not this clock's business"
    );
    let kinds: Vec<&str> = outbox(&f).iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["clock.step", "clock.corrected"]);
    let body: serde_json::Value = serde_json::from_str(&outbox(&f)[1].body).unwrap();
    assert_eq!(body["count"], 2);
    assert_eq!(body["segments"][0]["old_start_ms"], a.start_ms);
    assert_eq!(body["segments"][0]["start_ms"], TRUTH - 16_000);
    assert!(f.store.root().join(CORRECTIONS_FILE).exists());
}

#[test]
fn a_step_of_a_synced_clock_is_reported_and_moves_nothing() {
    let f = fixture("boot-a");
    let a = record(&f, 0, TimeQuality::Synced, "boot-a");
    let step = Step {
        from_ms: 0,
        to_ms: 1,
        delta_ms: 1,
        old_offset_ms: 0,
        new_offset_ms: 1,
        was_synced: true,
        correction: false,
    };
    assert!(on_step(&f.store, &f.events, &f.watch, &step)
        .unwrap()
        .is_empty());
    assert_eq!(f.store.segment(a.id).unwrap().unwrap(), a);
    assert_eq!(outbox(&f).len(), 1);
    assert_eq!(outbox(&f)[0].kind, EventKind::ClockStep);
}

#[test]
fn a_restart_after_a_step_re_stamps_what_was_recorded_before_it_once() {
    let f = fixture("boot-a");
    let a = record(&f, 0, TimeQuality::Unsynced, "boot-a");
    // The recorder was killed; the clock is stepped; a new recorder starts on the same boot.
    f.clock.step_wall(TRUTH - f.watch.wall_ms());
    let restarted = ClockWatch::new(
        f.clock.clone(),
        Box::new(|_| SyncState {
            synced: true,
            maxerror_ms: Some(1),
        }),
        "boot-a".into(),
    );
    let moved = reconcile(&f.store, &f.events, &restarted).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        f.store.segment(a.id).unwrap().unwrap().start_ms,
        TRUTH - 4_000
    );
    assert!(reconcile(&f.store, &f.events, &restarted)
        .unwrap()
        .is_empty());
}

#[test]
fn corrections_are_applied_again_to_rows_rebuilt_from_the_files() {
    let f = fixture("boot-a");
    let a = record(&f, 0, TimeQuality::Unsynced, "boot-a");
    step_to_truth(&f);
    let corrected = f.store.segment(a.id).unwrap().unwrap();
    // As a rebuild makes it from the file: the times as recorded.
    f.store.aux_commit(vec![], Some(a.clone()), true).unwrap();
    assert_eq!(f.store.apply_corrections().unwrap().len(), 1);
    assert_eq!(f.store.segment(a.id).unwrap().unwrap(), corrected);
}

#[test]
fn the_outbox_holds_the_step_before_the_correction() {
    let f = fixture("boot-a");
    record(&f, 0, TimeQuality::Unsynced, "boot-a");
    step_to_truth(&f);
    let keys: Vec<u64> = f
        .store
        .aux_scan(AuxTable::Outbox, 0, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
}
