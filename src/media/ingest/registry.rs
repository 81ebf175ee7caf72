//! Which pushed streams are live: one publisher per stream name, and one recording
//! session at a time per name (a new push waits for the previous one's last segment to
//! close, so sequence numbers and files never overlap). Pure bookkeeping under the
//! caller's lock.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::PublishError;

#[derive(Debug)]
struct Entry {
    generation: u64,
    /// A publisher still holds this stream.
    live: bool,
    /// Cancelled to kick the publisher (takeover, shutdown).
    kick: CancellationToken,
    /// Cancelled when this push's recording session has closed its last segment.
    done: CancellationToken,
}

/// A granted claim on a stream name.
#[derive(Debug)]
pub struct Claim {
    pub generation: u64,
    /// Stops this publisher (child of the daemon's token).
    pub kick: CancellationToken,
    /// Cancel when the session has finished.
    pub done: CancellationToken,
    /// The previous push's session, to wait for before recording.
    pub previous: Option<CancellationToken>,
}

/// Live pushed streams by name.
#[derive(Debug, Default)]
pub struct Registry {
    entries: HashMap<String, Entry>,
    next_generation: u64,
}

impl Registry {
    /// Claim `stream` for a new publisher. A live one is refused, or kicked when
    /// `takeover` is set. `parent` is the daemon's cancellation token.
    pub fn claim(
        &mut self,
        stream: &str,
        takeover: bool,
        parent: &CancellationToken,
    ) -> Result<Claim, PublishError> {
        let previous = match self.entries.get(stream) {
            Some(e) if e.live && !takeover => {
                return Err(PublishError::AlreadyLive {
                    stream: stream.to_owned(),
                })
            }
            Some(e) => {
                e.kick.cancel();
                Some(e.done.clone())
            }
            None => None,
        };
        self.next_generation += 1;
        let entry = Entry {
            generation: self.next_generation,
            live: true,
            kick: parent.child_token(),
            done: CancellationToken::new(),
        };
        let claim = Claim {
            generation: entry.generation,
            kick: entry.kick.clone(),
            done: entry.done.clone(),
            previous,
        };
        self.entries.insert(stream.to_owned(), entry);
        Ok(claim)
    }

    /// The publisher of `generation` went away; a new one may claim the name.
    pub fn release(&mut self, stream: &str, generation: u64) {
        if let Some(e) = self.entries.get_mut(stream) {
            if e.generation == generation {
                e.live = false;
            }
        }
    }

    /// The session of `generation` finished; forget the stream unless a newer push has it.
    pub fn finished(&mut self, stream: &str, generation: u64) {
        if self
            .entries
            .get(stream)
            .is_some_and(|e| e.generation == generation)
        {
            self.entries.remove(stream);
        }
    }

    /// Whether a publisher currently holds `stream`.
    pub fn is_live(&self, stream: &str) -> bool {
        self.entries.get(stream).is_some_and(|e| e.live)
    }

    /// Names of the live pushed streams, sorted.
    pub fn live(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.live)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_publisher_of_a_live_stream_is_refused() {
        let mut r = Registry::default();
        let root = CancellationToken::new();
        r.claim("cam9", false, &root).unwrap();
        let e = r.claim("cam9", false, &root).unwrap_err();
        assert_eq!(
            e,
            PublishError::AlreadyLive {
                stream: "cam9".into()
            }
        );
        r.claim("cam8", false, &root).unwrap();
        assert_eq!(r.live(), vec!["cam8".to_string(), "cam9".to_string()]);
    }

    #[test]
    fn takeover_kicks_the_first_publisher_and_the_new_session_waits_for_the_old() {
        let mut r = Registry::default();
        let root = CancellationToken::new();
        let first = r.claim("cam9", true, &root).unwrap();
        let second = r.claim("cam9", true, &root).unwrap();
        assert!(first.kick.is_cancelled());
        assert!(!second.kick.is_cancelled());
        let prev = second.previous.unwrap();
        assert!(!prev.is_cancelled());
        first.done.cancel();
        assert!(prev.is_cancelled());
        // The old publisher going away does not free the name the new one holds.
        r.release("cam9", first.generation);
        r.finished("cam9", first.generation);
        assert!(r.is_live("cam9"));
    }

    #[test]
    fn after_release_a_reconnect_is_accepted_and_waits_for_the_closing_session() {
        let mut r = Registry::default();
        let root = CancellationToken::new();
        let first = r.claim("cam9", false, &root).unwrap();
        r.release("cam9", first.generation);
        assert!(!r.is_live("cam9"));
        let second = r.claim("cam9", false, &root).unwrap();
        assert!(second.previous.is_some());
        r.finished("cam9", second.generation);
        assert!(!r.is_live("cam9"));
        let third = r.claim("cam9", false, &root).unwrap();
        assert!(third.previous.is_none());
    }

    #[test]
    fn shutdown_kicks_every_publisher() {
        let mut r = Registry::default();
        let root = CancellationToken::new();
        let a = r.claim("a", false, &root).unwrap();
        root.cancel();
        assert!(a.kick.is_cancelled());
    }
}
