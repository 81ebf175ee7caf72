//! The upload queue's order, pure: which pending segment goes next, which wait out a
//! backoff (their own, or a hold on their target), what is in flight. The index rows
//! (`UploadState::Pending`) are the durable truth; this is the in-memory order built from
//! them at start and fed as segments close.

use std::collections::{BTreeMap, HashSet};

use crate::config::upload::UploadOrder;

/// One pending segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Segment id.
    pub id: u64,
    /// Recording start, ms since the Unix epoch (the order key).
    pub start_ms: i64,
    /// Bytes to upload.
    pub bytes: u64,
    /// The upload target it goes to.
    pub target: String,
    /// Not before this wall time (ms), after a failure.
    pub not_before_ms: i64,
}

impl Job {
    pub fn new(id: u64, start_ms: i64, bytes: u64, target: &str) -> Job {
        Job {
            id,
            start_ms,
            bytes,
            target: target.to_string(),
            not_before_ms: 0,
        }
    }

    /// Waiting out a backoff until `not_before_ms` (a failure saved before a restart).
    pub fn not_before(mut self, not_before_ms: i64) -> Job {
        self.not_before_ms = not_before_ms;
        self
    }
}

/// The pending segments and which of them are being uploaded.
#[derive(Debug, Default)]
pub struct Queue {
    order: UploadOrder,
    jobs: BTreeMap<u64, Job>,
    in_flight: HashSet<u64>,
}

impl Queue {
    pub fn new(order: UploadOrder) -> Queue {
        Queue {
            order,
            ..Queue::default()
        }
    }

    /// Add a job; a segment already queued keeps its state.
    pub fn push(&mut self, job: Job) {
        self.jobs.entry(job.id).or_insert(job);
    }

    pub fn contains(&self, id: u64) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Forget a job (uploaded, or its segment is gone).
    pub fn remove(&mut self, id: u64) {
        self.jobs.remove(&id);
        self.in_flight.remove(&id);
    }

    /// The next job to start at `now_ms`, marked in flight: the oldest (or newest, by the
    /// order) that is neither in flight nor waiting out a backoff, and whose target is not
    /// held beyond `now_ms` (`held_until` gives a target's hold, 0 for none).
    pub fn take_next(&mut self, now_ms: i64, held_until: impl Fn(&str) -> i64) -> Option<Job> {
        let ready = self.jobs.values().filter(|j| {
            !self.in_flight.contains(&j.id)
                && j.not_before_ms <= now_ms
                && held_until(&j.target) <= now_ms
        });
        let pick = match self.order {
            UploadOrder::OldestFirst => ready.min_by_key(|j| (j.start_ms, j.id)),
            UploadOrder::NewestFirst => ready.max_by_key(|j| (j.start_ms, j.id)),
        }?
        .clone();
        self.in_flight.insert(pick.id);
        Some(pick)
    }

    /// A job failed: it waits until `not_before_ms`, then is eligible again. Never dropped.
    pub fn failed(&mut self, id: u64, not_before_ms: i64) {
        self.in_flight.remove(&id);
        if let Some(j) = self.jobs.get_mut(&id) {
            j.not_before_ms = not_before_ms;
        }
    }

    /// A job stopped without failing (paused, or its window closed): eligible again as soon
    /// as transfers may run.
    pub fn put_back(&mut self, id: u64) {
        self.in_flight.remove(&id);
    }

    /// Make every waiting job eligible now (`upload --now`).
    pub fn retry_now(&mut self) {
        for j in self.jobs.values_mut() {
            j.not_before_ms = 0;
        }
    }

    /// The earliest time a waiting job becomes eligible (its backoff and its target's hold
    /// over), if any is waiting.
    pub fn next_wake_ms(&self, held_until: impl Fn(&str) -> i64) -> Option<i64> {
        self.jobs
            .values()
            .filter(|j| !self.in_flight.contains(&j.id))
            .map(|j| j.not_before_ms.max(held_until(&j.target)))
            .min()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_in_flight(&self, id: u64) -> bool {
        self.in_flight.contains(&id)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, start_ms: i64) -> Job {
        Job::new(id, start_ms, 10, "vod")
    }

    fn q(order: UploadOrder) -> Queue {
        let mut q = Queue::new(order);
        q.push(job(2, 2_000));
        q.push(job(1, 1_000));
        q.push(job(3, 3_000));
        q
    }

    fn free(_: &str) -> i64 {
        0
    }

    #[test]
    fn oldest_first_takes_the_earliest_recording_first() {
        let mut q = q(UploadOrder::OldestFirst);
        let ids: Vec<u64> = std::iter::from_fn(|| q.take_next(0, free).map(|j| j.id)).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(q.in_flight(), 3);
    }

    #[test]
    fn newest_first_then_backfills_the_older_ones() {
        let mut q = q(UploadOrder::NewestFirst);
        assert_eq!(q.take_next(0, free).unwrap().id, 3);
        q.remove(3);
        q.push(job(4, 4_000));
        assert_eq!(q.take_next(0, free).unwrap().id, 4);
        assert_eq!(q.take_next(0, free).unwrap().id, 2);
        assert_eq!(q.take_next(0, free).unwrap().id, 1);
    }

    #[test]
    fn a_failed_job_waits_out_its_backoff_and_is_never_dropped() {
        let mut q = q(UploadOrder::OldestFirst);
        let j = q.take_next(0, free).unwrap();
        q.failed(j.id, 5_000);
        assert_eq!(q.take_next(100, free).unwrap().id, 2);
        assert_eq!(q.take_next(100, free).unwrap().id, 3);
        assert_eq!(q.take_next(100, free), None);
        assert_eq!(q.next_wake_ms(free), Some(5_000));
        assert_eq!(q.take_next(5_000, free).unwrap().id, 1);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_held_target_starts_nothing_until_its_hold_is_over() {
        let mut q = q(UploadOrder::OldestFirst);
        q.push(Job::new(9, 0, 10, "other"));
        let held = |t: &str| if t == "vod" { 5_000 } else { 0 };
        assert_eq!(q.take_next(100, held).unwrap().id, 9);
        assert_eq!(q.take_next(100, held), None);
        assert_eq!(q.next_wake_ms(held), Some(5_000));
        assert_eq!(q.take_next(5_000, held).unwrap().id, 1);
    }

    #[test]
    fn a_job_put_back_goes_first_again_without_waiting() {
        let mut q = q(UploadOrder::OldestFirst);
        let j = q.take_next(0, free).unwrap();
        q.put_back(j.id);
        assert_eq!(q.next_wake_ms(free), Some(0));
        assert_eq!(q.take_next(0, free).unwrap().id, 1);
    }

    #[test]
    fn retry_now_clears_every_backoff() {
        let mut q = q(UploadOrder::OldestFirst);
        let j = q.take_next(0, free).unwrap();
        q.failed(j.id, i64::MAX);
        q.retry_now();
        assert_eq!(q.take_next(0, free).unwrap().id, 1);
    }

    #[test]
    fn pushing_a_queued_segment_again_keeps_its_backoff() {
        let mut q = q(UploadOrder::OldestFirst);
        let j = q.take_next(0, free).unwrap();
        q.failed(j.id, 9_000);
        q.push(job(1, 1_000));
        assert_eq!(q.next_wake_ms(free), Some(0));
        assert_eq!(q.take_next(0, free).unwrap().id, 2);
    }
}
