//! The retention policy: which closed segments to delete so that every storage limit holds.
//!
//! Pure: it gets the closed segments, the bytes of segments still being written, the limits,
//! the filesystem's size and free space, the time and a guard, and returns a [`Plan`]. The
//! store carries the plan out (it is the only code that deletes).
//!
//! Limits are enforced together, in this order, each on what the previous steps left:
//!
//! 1. `max_age`: every segment that ended more than `max_age` before `now` goes. Age is
//!    never read off a clock that may have been stepped: a segment of this boot is aged on
//!    the boot clock (never stepped); one of an earlier boot by its wall-clock end, when
//!    that can be trusted (recorded `synced`, or `corrected`); a segment whose real time
//!    cannot be known (recorded `unsynced` in an earlier boot and never corrected) is never
//!    evicted by age. See `docs/time.md`.
//! 2. Per-stream quotas: a stream's segments go, first to last in eviction order, until its
//!    closed segments plus the one it is writing fit its quota.
//! 3. `max_bytes`: segments of any stream go, in eviction order, until closed + open bytes
//!    fit.
//! 4. `min_free`: segments go, in eviction order, until the filesystem's free space plus
//!    everything planned for deletion reaches `min_free`.
//!
//! **Eviction order**: uploaded segments first (their footage exists elsewhere), oldest
//! first among them; then the others, oldest first. "Oldest" is recording order: the
//! lowest `id` (ids are handed out as segments begin, never reused; within a stream they
//! follow `seq`), never wall-clock time, which a clock step can reorder. So a newer
//! uploaded segment goes before an older one that still waits for upload. Segments being written are never candidates. An [`EvictionGuard`] may
//! protect segments (one being uploaded; under `deny_new` one waiting for upload); a
//! protected segment is skipped and the next in order is taken instead, and when a limit
//! cannot be met, [`Plan::unmet`] says which.
//!
//! **Whole recordings.** The `.m4s` segments of one HLS recording ([`Candidate::group`])
//! go together or not at all, so that no playlist is left naming a deleted file: the plan
//! treats a recording as one unit (its bytes summed, placed in the order by its first
//! segment, aged by its newest, uploaded and allowed only if every segment is) and
//! returns an eviction for each of its segments. The pass removes the playlist before the
//! segments (see `pass.rs`), and never offers a recording still being written or waiting
//! in its `resume_window` (its segments are protected).

pub mod pass;

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
    /// Whether the segment has been uploaded (its footage exists elsewhere): uploaded
    /// segments are evicted before all others.
    pub uploaded: bool,
    /// Its end on the boot clock, ms, when it was recorded in the current boot: its age is
    /// measured there.
    pub boot_end_ms: Option<i64>,
    /// Whether its wall-clock times can be compared with the wall clock now (recorded on a
    /// synchronized clock, or corrected since). Otherwise, and not of this boot, its age
    /// is unknown and `max_age` leaves it alone.
    pub trusted: bool,
    /// The finished HLS recording (its key in the store's recordings table) the segment
    /// belongs to: all of a recording's segments are deleted together.
    pub group: Option<u64>,
}

impl Candidate {
    /// Its age at `now`, ms; `None` when it cannot be known.
    pub fn age_ms(&self, now: Now) -> Option<i64> {
        match self.boot_end_ms {
            Some(end) => Some(now.boot_ms.saturating_sub(end)),
            None if self.trusted => Some(now.wall_ms.saturating_sub(self.end_ms)),
            None => None,
        }
    }
}

/// The time a plan is made at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, ms since the Unix epoch.
    pub wall_ms: i64,
    /// Boot clock, ms (for segments of this boot).
    pub boot_ms: i64,
}

impl From<i64> for Now {
    /// Wall time only (segments of no boot).
    fn from(wall_ms: i64) -> Now {
        Now {
            wall_ms,
            boot_ms: 0,
        }
    }
}

/// The limits to enforce.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Quota for all segments, closed and open.
    pub max_bytes: u64,
    /// Quota per stream name, for its closed segments plus the one it is writing.
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

/// Bytes of the segments being written, by stream name.
pub type OpenBytes = HashMap<String, u64>;

/// Decide which closed segments to delete. See the module docs for the order of limits
/// and the eviction order.
///
/// `closed` must not contain segments being written; `open` are those segments' bytes by
/// stream, which count toward their stream's quota and `max_bytes` but are never deleted.
/// `now` is the wall and boot clocks from the injected clock (an `i64` is wall time alone).
pub fn plan(
    closed: &[Candidate],
    open: &OpenBytes,
    limits: &Limits,
    disk: Disk,
    now: impl Into<Now>,
    guard: &dyn EvictionGuard,
) -> Plan {
    let (units, members) = units(closed);
    let unit_guard = |u: &Candidate| match members.get(&u.id) {
        Some(m) => m.iter().all(|c| guard.may_evict(c)),
        None => guard.may_evict(u),
    };
    let mut out = plan_units(&units, open, limits, disk, now.into(), &unit_guard);
    out.evict = out
        .evict
        .into_iter()
        .flat_map(|e| match members.get(&e.id) {
            Some(m) => m
                .iter()
                .map(|c| Eviction {
                    id: c.id,
                    reason: e.reason,
                    bytes: c.bytes,
                })
                .collect(),
            None => vec![e],
        })
        .collect();
    out
}

/// The units a plan chooses among: each recording's segments as one candidate (with the
/// id of its first segment, under which `members` lists them), other segments as they are.
fn units(closed: &[Candidate]) -> (Vec<Candidate>, HashMap<u64, Vec<&Candidate>>) {
    let mut groups: HashMap<u64, Vec<&Candidate>> = HashMap::new();
    let mut units = Vec::new();
    for c in closed {
        match c.group {
            Some(g) => groups.entry(g).or_default().push(c),
            None => units.push(c.clone()),
        }
    }
    let mut members = HashMap::new();
    for (_, mut m) in groups {
        m.sort_by_key(|c| c.id);
        let newest = m[m.len() - 1];
        units.push(Candidate {
            id: m[0].id,
            stream: m[0].stream.clone(),
            start_ms: m.iter().map(|c| c.start_ms).min().unwrap_or(0),
            end_ms: newest.end_ms,
            bytes: m.iter().map(|c| c.bytes).sum(),
            uploaded: m.iter().all(|c| c.uploaded),
            boot_end_ms: newest.boot_end_ms,
            trusted: newest.trusted,
            group: newest.group,
        });
        members.insert(m[0].id, m);
    }
    (units, members)
}

/// [`plan`] over units.
fn plan_units(
    closed: &[Candidate],
    open: &OpenBytes,
    limits: &Limits,
    disk: Disk,
    now: Now,
    guard: &dyn EvictionGuard,
) -> Plan {
    // Uploaded first, then oldest first (recording order): the ring buffer spends its space
    // on footage that exists nowhere else.
    let mut order: Vec<&Candidate> = closed.iter().collect();
    order.sort_by_key(|c| (!c.uploaded, c.id));
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
        let max_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        for i in 0..order.len() {
            if order[i].age_ms(now).is_some_and(|a| a > max_ms) {
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
        let mut per_stream: HashMap<&str, u64> =
            open.iter().map(|(s, b)| (s.as_str(), *b)).collect();
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
    let mut total = kept.saturating_add(open.values().sum());
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
mod group_tests;
#[cfg(test)]
mod tests;
