//! A stream's storage fault, as its recorder lives through it: the session goes on (the
//! camera stays connected, a push is not dropped), frames are dropped until the next try,
//! and a writer given up on after a stall is waited for before anything is tried again.
//!
//! Pure apart from asking a detached writer whether it has ended: the times come in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::media::sink::Detached;
use crate::storage::store::Store;
use crate::util::backoff::Backoff;

/// First wait before recording is tried again after a storage fault.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait: one create, a small write and an fsync per try, at most every 10 s.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// The fault state of one stream session.
pub struct StorageFault {
    backoff: Backoff,
    retry_at: Instant,
    /// The writer given up on after a stall: until its stuck call returns, the disk has not
    /// answered, and trying again would only strand another thread.
    stuck: Option<Detached>,
}

impl StorageFault {
    /// A fault began at `now`.
    pub fn new(now: Instant, seed: u64) -> StorageFault {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX, seed);
        let retry_at = now + backoff.next_delay();
        StorageFault {
            backoff,
            retry_at,
            stuck: None,
        }
    }

    /// The try failed again at `now`: wait longer.
    pub fn failed_again(&mut self, now: Instant) {
        self.retry_at = now + self.backoff.next_delay();
    }

    /// The writer was given up on after a stall.
    pub fn stalled(&mut self, stuck: Detached, now: Instant) {
        self.stuck = Some(stuck);
        self.failed_again(now);
    }

    /// Whether frames may go to the segmenter again (a try): the wait is over and no stuck
    /// writer is left.
    pub fn may_try(&mut self, now: Instant) -> bool {
        if self.stuck.as_ref().is_some_and(|d| !d.is_finished()) {
            return false;
        }
        self.stuck = None;
        now >= self.retry_at
    }

    /// Whether a stuck writer is still waited for.
    pub fn waiting_for_stuck_writer(&self) -> bool {
        self.stuck.as_ref().is_some_and(|d| !d.is_finished())
    }
}

/// Close, off the runtime, the segments of `stream` a storage fault left open (see
/// [`Store::close_unfinished`]); pokes retention when it closed any. Called once the
/// stream's storage took a batch again.
pub fn close_unfinished(store: Arc<Store>, stream: &str, now_ms: i64, closed: Arc<Notify>) {
    let name = stream.to_owned();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        match store.close_unfinished(&name, now_ms) {
            Ok(r) => {
                for row in &r.recovered {
                    info!(
                        seq = row.seq,
                        duration_ms = row.duration_ms,
                        "closed a segment the storage fault left open, at its last good fragment"
                    );
                }
                for row in &r.adopted {
                    info!(
                        seq = row.seq,
                        "finished the close a storage fault interrupted"
                    );
                }
                if !r.recovered.is_empty() || !r.adopted.is_empty() {
                    closed.notify_one();
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot close the segments a storage fault left open yet; recovery closes them at the next start")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_come_after_a_growing_wait() {
        let t0 = Instant::now();
        let mut f = StorageFault::new(t0, 1);
        assert!(!f.may_try(t0));
        assert!(f.may_try(t0 + RETRY_MAX));
        f.failed_again(t0 + RETRY_MAX);
        assert!(!f.may_try(t0 + RETRY_MAX));
        assert!(f.may_try(t0 + 2 * RETRY_MAX + RETRY_MAX));
    }

    #[test]
    fn a_stuck_writer_holds_back_every_try_until_it_returns() {
        let t0 = Instant::now();
        let mut f = StorageFault::new(t0, 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        f.stalled(Detached::from_handle(h), t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(!f.may_try(later), "the stuck call has not returned");
        assert!(f.waiting_for_stuck_writer());
        drop(tx);
        while f.waiting_for_stuck_writer() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(f.may_try(later));
    }
}
