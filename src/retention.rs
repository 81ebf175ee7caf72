//! The retention policy: which closed segments to delete so that every storage limit holds.
//!
//! Pure: it gets the closed segments, the bytes of segments still being written, the limits,
//! the filesystem's size and free space, the time and a guard, and returns a [`Plan`]. The
//! store carries the plan out (it is the only code that deletes).
//!
//! Limits are enforced together, in this order, each on what the previous steps left:
//!
//! 1. `max_age`: every segment that ended more than `max_age` before `now` goes.
//! 2. Per-stream quotas: the oldest segments of a stream go until the stream's closed
//!    segments fit its quota. (The open segment's bytes are not known per stream, so they
//!    count only toward the global quota.)
//! 3. `max_bytes`: the oldest segments of any stream go until closed + open bytes fit.
//! 4. `min_free`: the oldest segments go until the filesystem's free space plus everything
//!    planned for deletion reaches `min_free`.
//!
//! "Oldest" means the lowest `end_ms`, then the lowest `id`. Segments being written are never
//! candidates. An [`EvictionGuard`] may protect segments (e.g. ones not yet uploaded); a
//! protected segment is skipped and the next oldest is taken instead, and when a limit cannot
//! be met, [`Plan::unmet`] says which.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::config::{Config, MinFree};

/// A closed segment that retention may delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index id of the segment.
    pub id: u64,
    /// Stream it belongs to (for per-stream quotas).
    pub stream: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Wall-clock end, ms since the Unix epoch; the age is measured from here.
    pub end_ms: i64,
    /// Bytes on disk (all files of the segment).
    pub bytes: u64,
    /// Whether the segment has been uploaded (always false until uploads exist).
    pub uploaded: bool,
}

/// The limits to enforce.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Quota for all segments, closed and open.
    pub max_bytes: u64,
    /// Quota per stream name, for closed segments.
    pub per_stream: HashMap<String, u64>,
    /// Free space to keep on the filesystem.
    pub min_free: MinFree,
    /// Segments that ended longer ago than this are deleted.
    pub max_age: Option<Duration>,
}

impl Limits {
    /// The limits a config asks for (`storage.*` and each stream's `max_bytes`).
    pub fn from_config(cfg: &Config) -> Limits {
        Limits {
            max_bytes: cfg.storage.max_bytes,
            per_stream: cfg
                .streams
                .iter()
                .filter_map(|s| s.max_bytes.map(|b| (s.name.clone(), b)))
                .collect(),
            min_free: cfg.storage.min_free,
            max_age: cfg.storage.max_age,
        }
    }
}

/// Size and free space of the filesystem holding the recordings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Total size in bytes.
    pub total: u64,
    /// Bytes available to edgerec.
    pub free: u64,
}

/// Which limit made a segment go (or could not be met).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `storage.max_bytes`.
    MaxBytes,
    /// A stream's `max_bytes`.
    StreamMaxBytes,
    /// `storage.min_free`.
    MinFree,
    /// `storage.max_age`.
    MaxAge,
}

impl Reason {
    /// The config key behind this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MaxBytes => "storage.max_bytes",
            Reason::StreamMaxBytes => "streams[].max_bytes",
            Reason::MinFree => "storage.min_free",
            Reason::MaxAge => "storage.max_age",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One segment to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    /// The candidate's id.
    pub id: u64,
    /// The limit that made it go.
    pub reason: Reason,
    /// Its bytes.
    pub bytes: u64,
}

/// What retention decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Segments to delete, in the order they were chosen (by limit, then oldest first).
    pub evict: Vec<Eviction>,
    /// A limit that still does not hold after the evictions, because everything left is
    /// protected by the guard or being written. When several fail, the most urgent one:
    /// `MinFree`, then `MaxBytes`, `StreamMaxBytes`, `MaxAge`.
    pub unmet: Option<Reason>,
}

impl Plan {
    /// Total bytes the plan deletes.
    pub fn freed_bytes(&self) -> u64 {
        self.evict.iter().map(|e| e.bytes).sum()
    }
}

/// Decides whether a segment may be deleted at all. This is where "keep segments that have
/// not been uploaded yet" belongs once uploads exist.
pub trait EvictionGuard {
    /// True if `c` may be deleted.
    fn may_evict(&self, c: &Candidate) -> bool;
}

/// A guard that protects nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl EvictionGuard for AllowAll {
    fn may_evict(&self, _: &Candidate) -> bool {
        true
    }
}

impl<F: Fn(&Candidate) -> bool> EvictionGuard for F {
    fn may_evict(&self, c: &Candidate) -> bool {
        self(c)
    }
}

/// Decide which closed segments to delete. See the module docs for the order of limits.
///
/// `closed` must not contain segments being written; `open_bytes` are those segments' bytes,
/// which count toward `max_bytes` but are never deleted. `now_ms` is wall time (ms since
/// the Unix epoch) from the injected clock.
pub fn plan(
    closed: &[Candidate],
    open_bytes: u64,
    limits: &Limits,
    disk: Disk,
    now_ms: i64,
    guard: &dyn EvictionGuard,
) -> Plan {
    // Oldest first. Once uploads exist, uploaded segments should go before un-uploaded ones
    // of any age (sort by `(!c.uploaded, c.end_ms, c.id)` here), so that the ring buffer
    // spends its space on footage that exists nowhere else.
    let mut order: Vec<&Candidate> = closed.iter().collect();
    order.sort_by_key(|c| (c.end_ms, c.id));
    let allowed: Vec<bool> = order.iter().map(|c| guard.may_evict(c)).collect();
    let mut evicted = vec![false; order.len()];
    let mut out = Plan::default();

    let take = |i: usize, reason: Reason, evicted: &mut [bool], out: &mut Plan| {
        evicted[i] = true;
        out.evict.push(Eviction {
            id: order[i].id,
            reason,
            bytes: order[i].bytes,
        });
    };

    // 1. Age.
    if let Some(age) = limits.max_age {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(age_ms);
        for i in 0..order.len() {
            if order[i].end_ms < cutoff {
                if allowed[i] {
                    take(i, Reason::MaxAge, &mut evicted, &mut out);
                } else {
                    out.unmet = Some(Reason::MaxAge);
                }
            }
        }
    }

    // 2. Per-stream quotas.
    if !limits.per_stream.is_empty() {
        let mut per_stream: HashMap<&str, u64> = HashMap::new();
        for (i, c) in order.iter().enumerate() {
            if !evicted[i] {
                *per_stream.entry(c.stream.as_str()).or_default() += c.bytes;
            }
        }
        for i in 0..order.len() {
            let c = order[i];
            let Some(&quota) = limits.per_stream.get(&c.stream) else {
                continue;
            };
            let used = per_stream
                .get_mut(c.stream.as_str())
                .expect("counted above");
            if !evicted[i] && allowed[i] && *used > quota {
                *used -= c.bytes;
                take(i, Reason::StreamMaxBytes, &mut evicted, &mut out);
            }
        }
        if per_stream
            .iter()
            .any(|(s, used)| limits.per_stream.get(*s).is_some_and(|q| used > q))
        {
            out.unmet = Some(Reason::StreamMaxBytes);
        }
    }

    // 3. Global quota, counting segments being written.
    let kept: u64 = order
        .iter()
        .zip(&evicted)
        .filter(|(_, e)| !**e)
        .map(|(c, _)| c.bytes)
        .sum();
    let mut total = kept.saturating_add(open_bytes);
    for i in 0..order.len() {
        if total <= limits.max_bytes {
            break;
        }
        if !evicted[i] && allowed[i] {
            total -= order[i].bytes;
            take(i, Reason::MaxBytes, &mut evicted, &mut out);
        }
    }
    if total > limits.max_bytes {
        out.unmet = Some(Reason::MaxBytes);
    }

    // 4. Free space: everything planned so far will be freed too.
    let need = limits.min_free.bytes(disk.total);
    let mut free = disk.free.saturating_add(out.freed_bytes());
    for i in 0..order.len() {
        if free >= need {
            break;
        }
        if !evicted[i] && allowed[i] {
            free = free.saturating_add(order[i].bytes);
            take(i, Reason::MinFree, &mut evicted, &mut out);
        }
    }
    if free < need {
        out.unmet = Some(Reason::MinFree);
    }
    out
}

#[cfg(test)]
mod tests {
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
        p.evict.iter().map(|e| e.id).collect()
    }

    #[test]
    fn nothing_is_evicted_when_every_limit_holds() {
        let closed = [seg(1, "a", 10), seg(2, "a", 10)];
        let p = plan(&closed, 5, &limits(100), ROOMY, 0, &AllowAll);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn max_bytes_evicts_oldest_first_until_closed_and_open_fit() {
        // Given out of order: oldest is decided by end_ms, not by position or id.
        let mut closed = vec![seg(3, "a", 10), seg(1, "b", 10), seg(2, "a", 10)];
        closed[0].end_ms = 0; // id 3 ended first.
        let p = plan(&closed, 15, &limits(30), ROOMY, 0, &AllowAll);
        // 30 closed + 15 open = 45 > 30: two segments must go.
        assert_eq!(ids(&p), vec![3, 1]);
        assert!(p.evict.iter().all(|e| e.reason == Reason::MaxBytes));
        assert_eq!(p.freed_bytes(), 20);
        assert_eq!(p.unmet, None);
    }

    #[test]
    fn equal_end_times_are_ordered_by_id() {
        let mut closed = vec![seg(9, "a", 10), seg(4, "a", 10)];
        closed[0].end_ms = 100;
        closed[1].end_ms = 100;
        let p = plan(&closed, 0, &limits(10), ROOMY, 0, &AllowAll);
        assert_eq!(ids(&p), vec![4]);
    }

    #[test]
    fn open_segments_alone_over_quota_leave_max_bytes_unmet() {
        let closed = [seg(1, "a", 10)];
        let p = plan(&closed, 50, &limits(40), ROOMY, 0, &AllowAll);
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
        let p = plan(&closed, 0, &l, ROOMY, now, &AllowAll);
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
        let p = plan(&closed, 0, &l, ROOMY, 0, &AllowAll);
        assert_eq!(ids(&p), vec![1, 3]);
        assert!(p.evict.iter().all(|e| e.reason == Reason::StreamMaxBytes));
        assert_eq!(p.unmet, None);
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
        let p = plan(&closed, 0, &l, disk, 0, &AllowAll);
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
        let p = plan(&closed, 0, &l, disk, 0, &AllowAll);
        assert_eq!(ids(&p), vec![1, 2]);
        assert_eq!(p.unmet, None);
        l.min_free = MinFree::Bytes(61);
        let p = plan(&closed, 0, &l, disk, 0, &AllowAll);
        assert_eq!(ids(&p), vec![1, 2]);
        assert_eq!(p.unmet, Some(Reason::MinFree));
    }

    #[test]
    fn guard_protected_segments_are_skipped_for_newer_ones() {
        let closed = [seg(1, "a", 10), seg(2, "a", 10), seg(3, "a", 10)];
        let keep_first = |c: &Candidate| c.id != 1;
        let p = plan(&closed, 0, &limits(20), ROOMY, 0, &keep_first);
        assert_eq!(ids(&p), vec![2]);
        assert_eq!(p.unmet, None);
    }

    #[test]
    fn limit_is_unmet_when_everything_left_is_protected() {
        let closed = [seg(1, "a", 10), seg(2, "a", 10)];
        let nothing = |_: &Candidate| false;
        let p = plan(&closed, 0, &limits(5), ROOMY, 0, &nothing);
        assert!(p.evict.is_empty());
        assert_eq!(p.unmet, Some(Reason::MaxBytes));
    }

    #[test]
    fn protected_old_segments_leave_max_age_unmet() {
        let mut l = limits(100);
        l.max_age = Some(Duration::from_secs(60));
        let closed = [seg(1, "a", 1), seg(2, "a", 1)];
        let only_two = |c: &Candidate| c.id == 2;
        let p = plan(&closed, 0, &l, ROOMY, DAY_MS, &only_two);
        assert_eq!(ids(&p), vec![2]);
        assert_eq!(p.unmet, Some(Reason::MaxAge));
    }

    #[test]
    fn protected_stream_segments_leave_its_quota_unmet() {
        let mut l = limits(1000);
        l.per_stream.insert("a".into(), 5);
        let closed = [seg(1, "a", 10)];
        let p = plan(&closed, 0, &l, ROOMY, 0, &|_: &Candidate| false);
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
        let p = plan(&closed, 0, &l, disk, DAY_MS, &|_: &Candidate| false);
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
        let p = plan(&closed, 20, &l, disk, now, &AllowAll);
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
}
