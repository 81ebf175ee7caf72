//! A shared, process-wide tick that streams wait on between polls of their sources.
//!
//! Why not a `sleep` per stream: in tokio, registering a timer that is due before every
//! other timer wakes the runtime's poller with an `eventfd` write, and a stream's 50 ms
//! nap is almost always the earliest timer. With one stream that was ~40 write syscalls a
//! second, twenty times the fragment writes. Here one task drives two intervals half a
//! period apart: whenever one re-arms, the other is due sooner, so re-arming never counts
//! as "earliest" and never writes to the eventfd. Streams are woken through a `watch`
//! channel from inside the runtime, which costs no syscall at all.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Subscribe with [`Pacer::tick`]; clone freely.
#[derive(Clone, Debug)]
pub struct Pacer {
    rx: watch::Receiver<u64>,
}

impl Pacer {
    /// Start the ticker (inside a tokio runtime): a tick every `period / 2`, until `cancel`.
    pub fn spawn(period: Duration, cancel: CancellationToken) -> Pacer {
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(async move {
            let start = Instant::now() + period;
            let mut a = interval_at(start, period);
            let mut b = interval_at(start + period / 2, period);
            a.set_missed_tick_behavior(MissedTickBehavior::Delay);
            b.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = a.tick() => {}
                    _ = b.tick() => {}
                }
                n += 1;
                if tx.send(n).is_err() {
                    break;
                }
            }
        });
        Pacer { rx }
    }

    /// Wait for the next tick. Returns at once if the ticker has stopped (shutdown), so a
    /// caller never hangs on it.
    pub async fn tick(&mut self) {
        let _ = self.rx.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // After the ticker stops, tick returns at once instead of hanging.
        tokio::time::timeout(Duration::from_secs(1), async {
            p.tick().await;
            p.tick().await;
        })
        .await
        .unwrap();
    }
}
