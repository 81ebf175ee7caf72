//! A busy mark: one thread says when it starts and ends a blocking call, another looks at
//! how long the current one has lasted. The storage watchdog's stall detection reads a
//! stream writer's mark (see `storage::watchdog`): a thread stuck in the kernel cannot say
//! it is stuck, but its mark, left set, says it for it.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// When the current call began, and what it is; `None` while idle.
#[derive(Debug, Default)]
pub struct Busy(Mutex<Option<(&'static str, Instant)>>);

impl Busy {
    fn lock(&self) -> MutexGuard<'_, Option<(&'static str, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call `what` begins at `now`.
    pub fn start(&self, what: &'static str, now: Instant) {
        *self.lock() = Some((what, now));
    }

    /// The call is done.
    pub fn done(&self) {
        *self.lock() = None;
    }

    /// The call in progress and when it began.
    pub fn current(&self) -> Option<(&'static str, Instant)> {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_holds_the_call_in_progress_until_it_is_done() {
        let b = Busy::default();
        assert_eq!(b.current(), None);
        let t = Instant::now();
        b.start("fragment", t);
        assert_eq!(b.current(), Some(("fragment", t)));
        b.done();
        assert_eq!(b.current(), None);
    }
}
