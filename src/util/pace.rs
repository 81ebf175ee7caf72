//! A shared, process-wide tick that streams wait on between polls of their sources.
//!
//! Why not a `sleep` per stream: in tokio, registering a timer that is due before every
//! other timer wakes the runtime's poller with an `eventfd` write, and a stream's 50 ms
//! nap is almost always the earliest timer. With one stream that was ~40 write syscalls a
//! second, twenty times the fragment writes. Here one task drives two intervals half a
//! period apart: whenever one re-arms, the other is due sooner, so re-arming never counts
//! as "earliest" and never writes to the eventfd. Streams are woken through a `watch`
//! channel from inside the runtime, which costs no syscall at all.
//!
//! The ticker only runs while some stream waits for a tick: RTSP sessions whose socket has
//! a low-water mark wait on the socket instead, and an idle ticker would still wake the
//! process 20 times a second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Subscribe with [`Pacer::tick`]; clone freely.
#[derive(Clone, Debug)]
pub struct Pacer {
    rx: watch::Receiver<u64>,
    demand: Arc<Demand>,
}

/// How many callers wait in [`Pacer::tick`]; the ticker sleeps without timers at zero.
#[derive(Debug, Default)]
struct Demand {
    waiting: AtomicUsize,
    wake: Notify,
}

/// Counts one waiter for as long as it lives (a cancelled `tick` future included).
struct Waiting<'a>(&'a Demand);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pacer {
    /// Start the ticker (inside a tokio runtime): a tick every `period / 2`, until `cancel`.
    pub fn spawn(period: Duration, cancel: CancellationToken) -> Pacer {
        let (tx, rx) = watch::channel(0u64);
        let demand = Arc::new(Demand::default());
        let d = demand.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            'idle: loop {
                // No timers while nobody waits.
                while d.waiting.load(Ordering::SeqCst) == 0 {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = d.wake.notified() => {}
                    }
                }
                let start = Instant::now() + period / 2;
                let mut a = interval_at(start, period);
                let mut b = interval_at(start + period / 2, period);
                a.set_missed_tick_behavior(MissedTickBehavior::Delay);
                b.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = a.tick() => {}
                        _ = b.tick() => {}
                    }
                    n += 1;
                    if tx.send(n).is_err() {
                        return;
                    }
                    if d.waiting.load(Ordering::SeqCst) == 0 {
                        continue 'idle;
                    }
                }
            }
        });
        Pacer { rx, demand }
    }

    /// Wait for the next tick. Returns at once if the ticker has stopped (shutdown), so a
    /// caller never hangs on it.
    pub async fn tick(&mut self) {
        if self.demand.waiting.fetch_add(1, Ordering::SeqCst) == 0 {
            self.demand.wake.notify_one();
        }
        let _waiting = Waiting(&self.demand);
        let _ = self.rx.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_ticker_sleeps_while_nobody_waits_and_resumes_on_demand() {
        let cancel = CancellationToken::new();
        let mut p = Pacer::spawn(Duration::from_millis(100), cancel.clone());
        p.tick().await;
        let ticks = *p.rx.borrow();
        // Nobody waits for a while: no ticks are sent.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(*p.rx.borrow() <= ticks + 1, "ticked while idle");
        // Waiting again wakes the ticker: fresh ticks come within a tick period.
        tokio::time::timeout(Duration::from_millis(200), async {
            p.tick().await;
            p.tick().await;
        })
        .await
        .expect("the ticker resumed");
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_arrive_every_half_period() {
        let cancel = CancellationToken::new();
        let mut p = Pacer::spawn(Duration::from_millis(50), cancel.clone());
        let t0 = Instant::now();
        for _ in 0..4 {
            p.tick().await;
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took <= Duration::from_millis(130),
            "{took:?}"
        );
        cancel.cancel();
        tokio::task::yield_now().await;
        // After the ticker stops, tick returns at once instead of hanging.
        tokio::time::timeout(Duration::from_secs(1), async {
            p.tick().await;
            p.tick().await;
        })
        .await
        .unwrap();
    }
}
