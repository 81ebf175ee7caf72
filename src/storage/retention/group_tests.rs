//! Retention by whole recordings: an HLS recording's segments go together.
use super::*;

const GIB: u64 = 1 << 30;
const ROOMY: Disk = Disk {
    total: 1000 * GIB,
    free: 900 * GIB,
};

/// Segment `id` of `cam`, one minute long, ending at `id` minutes, in recording `group`.
fn seg(id: u64, bytes: u64, group: Option<u64>) -> Candidate {
    let end_ms = id as i64 * 60_000;
    Candidate {
        id,
        stream: "cam".into(),
        start_ms: end_ms - 60_000,
        end_ms,
        bytes,
        uploaded: false,
        boot_end_ms: None,
        trusted: true,
        group,
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

fn ids(p: &Plan) -> Vec<u64> {
    let mut v: Vec<u64> = p.evict.iter().map(|e| e.id).collect();
    v.sort();
    v
}

#[test]
fn a_recording_goes_whole_even_when_one_segment_would_do() {
    // Recording 7 = segments 1..=3, recording 8 = 4..=5; 10 bytes over the quota.
    let closed: Vec<Candidate> = (1..=5)
        .map(|id| seg(id, 100, Some(if id <= 3 { 7 } else { 8 })))
        .collect();
    let p = plan(
        &closed,
        &OpenBytes::new(),
        &limits(490),
        ROOMY,
        0,
        &AllowAll,
    );
    assert_eq!(ids(&p), vec![1, 2, 3], "the oldest recording, all of it");
    assert_eq!(p.freed_bytes(), 300);
    assert!(p.evict.iter().all(|e| e.reason == Reason::MaxBytes));
    assert_eq!(p.unmet, None);
}

#[test]
fn recordings_and_lone_segments_go_in_recording_order() {
    // A lone segment (an .mp4) older than the recording goes first and is enough.
    let closed = vec![
        seg(1, 100, None),
        seg(2, 100, Some(3)),
        seg(4, 100, Some(3)),
    ];
    let p = plan(
        &closed,
        &OpenBytes::new(),
        &limits(250),
        ROOMY,
        0,
        &AllowAll,
    );
    assert_eq!(ids(&p), vec![1]);
    let p = plan(
        &closed,
        &OpenBytes::new(),
        &limits(150),
        ROOMY,
        0,
        &AllowAll,
    );
    assert_eq!(ids(&p), vec![1, 2, 4]);
}

#[test]
fn a_recording_with_one_protected_segment_is_kept_whole_and_the_next_taken() {
    let closed = vec![
        seg(1, 100, Some(1)),
        seg(2, 100, Some(1)),
        seg(3, 100, Some(2)),
    ];
    let guard = |c: &Candidate| c.id != 2;
    let p = plan(&closed, &OpenBytes::new(), &limits(250), ROOMY, 0, &guard);
    assert_eq!(
        ids(&p),
        vec![3],
        "recording 1 is protected through segment 2"
    );
    let p = plan(&closed, &OpenBytes::new(), &limits(50), ROOMY, 0, &guard);
    assert_eq!(p.unmet, Some(Reason::MaxBytes));
}

#[test]
fn a_recording_is_aged_by_its_newest_segment() {
    let closed = vec![seg(1, 10, Some(1)), seg(2, 10, Some(1))];
    let l = Limits {
        max_age: Some(Duration::from_secs(90)),
        ..limits(u64::MAX)
    };
    // At 3 min: segment 1 is 2 min old, segment 2 only 1 min.
    let p = plan(&closed, &OpenBytes::new(), &l, ROOMY, 180_000, &AllowAll);
    assert!(p.evict.is_empty(), "{p:?}");
    let p = plan(&closed, &OpenBytes::new(), &l, ROOMY, 240_000, &AllowAll);
    assert_eq!(ids(&p), vec![1, 2]);
}
