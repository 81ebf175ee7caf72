//! Retention policy tests: each limit alone, then together.
use super::*;

const GIB: u64 = 1 << 30;
const DAY_MS: i64 = 86_400_000;
/// A disk with plenty of free space.
const ROOMY: Disk = Disk {
    total: 1000 * GIB,
    free: 900 * GIB,
};

/// Segment `id` of `stream`, one minute long, ending at `id` minutes, `bytes` big.
fn seg(id: u64, stream: &str, bytes: u64) -> Candidate {
    let end_ms = id as i64 * 60_000;
    Candidate {
        id,
        stream: stream.into(),
        start_ms: end_ms - 60_000,
        end_ms,
        bytes,
        uploaded: false,
        boot_end_ms: None,
        trusted: true,
        group: None,
    }
}

fn limits(max_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        per_stream: HashMap::new(),
        min_free: MinFree::Bytes(0),
        max_age: None,
    }
}

/// `bytes` being written by a stream no per-stream quota names.
fn open(bytes: u64) -> OpenBytes {
    [("live".to_string(), bytes)].into()
}

fn ids(p: &Plan) -> Vec<u64> {
    p.evict.iter().map(|e| e.id).collect()
}

#[test]
fn nothing_is_evicted_when_every_limit_holds() {
    let closed = [seg(1, "a", 10), seg(2, "a", 10)];
    let p = plan(&closed, &open(5), &limits(100), ROOMY, 0, &AllowAll);
    assert_eq!(p, Plan::default());
}

#[test]
fn max_bytes_evicts_oldest_first_until_closed_and_open_fit() {
    // Given out of order: oldest is recording order (id), not position nor wall-clock end,
    // which a clock step can reorder.
    let mut closed = vec![seg(3, "a", 10), seg(1, "b", 10), seg(2, "a", 10)];
    closed[0].end_ms = 0; // id 3 says it ended first: a clock stepped back.
    let p = plan(&closed, &open(15), &limits(30), ROOMY, 0, &AllowAll);
    // 30 closed + 15 open = 45 > 30: two segments must go.
    assert_eq!(ids(&p), vec![1, 2]);
    assert!(p.evict.iter().all(|e| e.reason == Reason::MaxBytes));
    assert_eq!(p.freed_bytes(), 20);
    assert_eq!(p.unmet, None);
}

#[test]
fn equal_end_times_are_ordered_by_id() {
    let mut closed = vec![seg(9, "a", 10), seg(4, "a", 10)];
    closed[0].end_ms = 100;
    closed[1].end_ms = 100;
    let p = plan(&closed, &open(0), &limits(10), ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![4]);
}

#[test]
fn open_segments_alone_over_quota_leave_max_bytes_unmet() {
    let closed = [seg(1, "a", 10)];
    let p = plan(&closed, &open(50), &limits(40), ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1]);
    assert_eq!(p.unmet, Some(Reason::MaxBytes));
}

#[test]
fn max_age_evicts_segments_that_ended_before_the_cutoff() {
    let now = 10 * DAY_MS;
    let mut closed = vec![seg(1, "a", 1), seg(2, "a", 1), seg(3, "a", 1)];
    closed[0].end_ms = now - 8 * DAY_MS;
    closed[1].end_ms = now - 7 * DAY_MS; // exactly 7 days old: kept.
    closed[2].end_ms = now - DAY_MS;
    let mut l = limits(100);
    l.max_age = Some(Duration::from_secs(7 * 86_400));
    let p = plan(&closed, &open(0), &l, ROOMY, now, &AllowAll);
    assert_eq!(
        p.evict,
        vec![Eviction {
            id: 1,
            reason: Reason::MaxAge,
            bytes: 1
        }]
    );
    assert_eq!(p.unmet, None);
}

#[test]
fn per_stream_quota_evicts_only_that_streams_oldest() {
    let closed = [
        seg(1, "big", 10),
        seg(2, "small", 10),
        seg(3, "big", 10),
        seg(4, "big", 10),
    ];
    let mut l = limits(1000);
    l.per_stream.insert("big".into(), 15);
    let p = plan(&closed, &open(0), &l, ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1, 3]);
    assert!(p.evict.iter().all(|e| e.reason == Reason::StreamMaxBytes));
    assert_eq!(p.unmet, None);
}

#[test]
fn per_stream_quota_counts_the_segment_the_stream_is_writing() {
    let closed = [seg(1, "a", 10), seg(2, "a", 10), seg(3, "b", 10)];
    let mut l = limits(1000);
    l.per_stream.insert("a".into(), 25);
    // 20 closed fit 25, but with 10 being written the stream holds 30: its oldest goes.
    let open: OpenBytes = [("a".to_string(), 10), ("b".to_string(), 500)].into();
    let p = plan(&closed, &open, &l, ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1]);
    assert_eq!(p.evict[0].reason, Reason::StreamMaxBytes);
    assert_eq!(p.unmet, None);
    // A stream writing more than its quota on its own: everything closed goes, unmet.
    let open: OpenBytes = [("a".to_string(), 30)].into();
    let p = plan(&closed, &open, &l, ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1, 2]);
    assert_eq!(p.unmet, Some(Reason::StreamMaxBytes));
}

#[test]
fn a_newer_uploaded_segment_goes_before_an_older_one_waiting_for_upload() {
    let mut closed = vec![
        seg(1, "a", 10),
        seg(2, "a", 10),
        seg(3, "a", 10),
        seg(4, "a", 10),
    ];
    closed[2].uploaded = true;
    closed[3].uploaded = true;
    let p = plan(&closed, &open(0), &limits(25), ROOMY, 0, &AllowAll);
    // Uploaded ones first, the oldest of them first; then the oldest not uploaded.
    assert_eq!(ids(&p), vec![3, 4]);
    let p = plan(&closed, &open(0), &limits(15), ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![3, 4, 1]);
}

#[test]
fn every_limit_takes_uploaded_segments_first() {
    let mut closed = vec![seg(1, "a", 10), seg(2, "a", 10), seg(3, "b", 10)];
    closed[1].uploaded = true;
    closed[2].uploaded = true;
    // Per-stream quota: stream a's uploaded #2 goes, not its older #1.
    let mut l = limits(1000);
    l.per_stream.insert("a".into(), 10);
    assert_eq!(
        ids(&plan(&closed, &open(0), &l, ROOMY, 0, &AllowAll)),
        vec![2]
    );
    // min_free: the uploaded ones, oldest first, before #1.
    let mut l = limits(1000);
    l.min_free = MinFree::Bytes(20);
    let disk = Disk {
        total: 1000,
        free: 0,
    };
    assert_eq!(
        ids(&plan(&closed, &open(0), &l, disk, 0, &AllowAll)),
        vec![2, 3]
    );
    // A guard protecting an uploaded segment moves on to the next in eviction order.
    let busy = |c: &Candidate| c.id != 2;
    assert_eq!(
        ids(&plan(&closed, &open(0), &limits(15), ROOMY, 0, &busy)),
        vec![3, 1]
    );
}

#[test]
fn min_free_counts_planned_evictions_as_freed() {
    let disk = Disk {
        total: 1000,
        free: 50,
    };
    let closed = [seg(1, "a", 30), seg(2, "a", 30), seg(3, "a", 30)];
    let mut l = limits(70);
    l.min_free = MinFree::Percent(10.0); // 100 bytes.
    let p = plan(&closed, &open(0), &l, disk, 0, &AllowAll);
    // max_bytes takes #1 (90 -> 60, freeing 30: free 80); min_free then takes #2.
    assert_eq!(ids(&p), vec![1, 2]);
    assert_eq!(p.evict[0].reason, Reason::MaxBytes);
    assert_eq!(p.evict[1].reason, Reason::MinFree);
    assert_eq!(p.unmet, None);
}

#[test]
fn min_free_as_bytes_is_enforced() {
    let disk = Disk {
        total: 1000,
        free: 0,
    };
    let closed = [seg(1, "a", 30), seg(2, "a", 30)];
    let mut l = limits(1000);
    l.min_free = MinFree::Bytes(60);
    let p = plan(&closed, &open(0), &l, disk, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1, 2]);
    assert_eq!(p.unmet, None);
    l.min_free = MinFree::Bytes(61);
    let p = plan(&closed, &open(0), &l, disk, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1, 2]);
    assert_eq!(p.unmet, Some(Reason::MinFree));
}

#[test]
fn guard_protected_segments_are_skipped_for_newer_ones() {
    let closed = [seg(1, "a", 10), seg(2, "a", 10), seg(3, "a", 10)];
    let keep_first = |c: &Candidate| c.id != 1;
    let p = plan(&closed, &open(0), &limits(20), ROOMY, 0, &keep_first);
    assert_eq!(ids(&p), vec![2]);
    assert_eq!(p.unmet, None);
}

#[test]
fn limit_is_unmet_when_everything_left_is_protected() {
    let closed = [seg(1, "a", 10), seg(2, "a", 10)];
    let nothing = |_: &Candidate| false;
    let p = plan(&closed, &open(0), &limits(5), ROOMY, 0, &nothing);
    assert!(p.evict.is_empty());
    assert_eq!(p.unmet, Some(Reason::MaxBytes));
}

#[test]
fn protected_old_segments_leave_max_age_unmet() {
    let mut l = limits(100);
    l.max_age = Some(Duration::from_secs(60));
    let closed = [seg(1, "a", 1), seg(2, "a", 1)];
    let only_two = |c: &Candidate| c.id == 2;
    let p = plan(&closed, &open(0), &l, ROOMY, DAY_MS, &only_two);
    assert_eq!(ids(&p), vec![2]);
    assert_eq!(p.unmet, Some(Reason::MaxAge));
}

#[test]
fn protected_stream_segments_leave_its_quota_unmet() {
    let mut l = limits(1000);
    l.per_stream.insert("a".into(), 5);
    let closed = [seg(1, "a", 10)];
    let p = plan(&closed, &open(0), &l, ROOMY, 0, &|_: &Candidate| false);
    assert_eq!(p.unmet, Some(Reason::StreamMaxBytes));
}

#[test]
fn most_urgent_unmet_limit_is_reported() {
    let mut l = limits(5);
    l.max_age = Some(Duration::from_secs(1));
    l.min_free = MinFree::Bytes(100);
    let closed = [seg(1, "a", 10)];
    let disk = Disk {
        total: 1000,
        free: 0,
    };
    let p = plan(&closed, &open(0), &l, disk, DAY_MS, &|_: &Candidate| false);
    assert_eq!(p.unmet, Some(Reason::MinFree));
}

#[test]
fn all_limits_combine_and_each_segment_is_evicted_once() {
    let now = 100 * 60_000;
    let closed: Vec<Candidate> = (1..=10)
        .map(|i| seg(i, if i % 2 == 0 { "even" } else { "odd" }, 10))
        .collect();
    let mut l = limits(50);
    l.max_age = Some(Duration::from_secs(60 * 98)); // ids 1 (ended at minute 1) go.
    l.per_stream.insert("even".into(), 20); // even: 2,4,6,8,10 -> keep 8,10.
    l.min_free = MinFree::Bytes(75);
    let disk = Disk {
        total: 1000,
        free: 0,
    };
    let p = plan(&closed, &open(20), &l, disk, now, &AllowAll);
    let reasons: Vec<(u64, Reason)> = p.evict.iter().map(|e| (e.id, e.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (1, Reason::MaxAge),
            (2, Reason::StreamMaxBytes),
            (4, Reason::StreamMaxBytes),
            (6, Reason::StreamMaxBytes),
            // Left: 3,5,7,8,9,10 = 60 + 20 open = 80 > 50: three oldest go.
            (3, Reason::MaxBytes),
            (5, Reason::MaxBytes),
            (7, Reason::MaxBytes),
            // Freed 70 < 75: one more.
            (8, Reason::MinFree),
        ]
    );
    let mut unique = ids(&p);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), p.evict.len());
    assert_eq!(p.unmet, None);
}

#[test]
fn limits_come_from_the_config() {
    let cfg = Config::from_toml_str(crate::config::DEFAULT_TOML).unwrap();
    let l = Limits::from_config(&cfg);
    assert_eq!(l.max_bytes, 2 * GIB);
    assert_eq!(l.per_stream.get("demo"), Some(&GIB));
    assert_eq!(l.min_free, MinFree::Percent(10.0));
    assert_eq!(l.max_age, Some(Duration::from_secs(7 * 86_400)));
}

#[test]
fn max_age_measures_this_boots_segments_on_the_boot_clock() {
    // Recorded at 1970 on this boot, an hour of boot clock ago; the wall clock now says
    // 2026: by the wall clock it is 56 years old, by the boot clock an hour.
    let now = Now {
        wall_ms: 1_796_000_000_000,
        boot_ms: 2 * 3_600_000,
    };
    let mut young = seg(1, "a", 1);
    young.end_ms = 60_000;
    young.trusted = false;
    young.boot_end_ms = Some(3_600_000);
    let mut old = seg(2, "a", 1);
    old.boot_end_ms = Some(0);
    old.end_ms = now.wall_ms; // a wall clock stepped backwards: ignored for this boot
    let mut l = limits(100);
    l.max_age = Some(Duration::from_secs(5_400));
    let p = plan(&[young, old], &open(0), &l, ROOMY, now, &AllowAll);
    assert_eq!(ids(&p), vec![2]);
}

#[test]
fn max_age_never_evicts_a_segment_whose_time_cannot_be_known() {
    let now = 1_796_000_000_000;
    let mut unknown = seg(1, "a", 1);
    unknown.end_ms = 0;
    unknown.trusted = false;
    let mut corrected = seg(2, "a", 1);
    corrected.end_ms = now - 8 * DAY_MS;
    let mut l = limits(100);
    l.max_age = Some(Duration::from_secs(7 * 86_400));
    let p = plan(&[unknown, corrected], &open(0), &l, ROOMY, now, &AllowAll);
    assert_eq!(
        ids(&p),
        vec![2],
        "an earlier boot's trusted segment ages by its wall end"
    );
}

#[test]
fn quotas_evict_in_recording_order_not_by_wall_clock_time() {
    // Segment 1 was recorded first, on a clock that said 2026; segment 2 after a
    // backward step, on a clock that said 1970.
    let mut first = seg(1, "a", 10);
    first.end_ms = 1_796_000_000_000;
    let mut second = seg(2, "a", 10);
    second.end_ms = 60_000;
    let p = plan(&[second, first], &open(0), &limits(15), ROOMY, 0, &AllowAll);
    assert_eq!(ids(&p), vec![1]);
}
