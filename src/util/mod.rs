//! Small leaf utilities that every layer may use. They import nothing of the crate but
//! each other.
//!
//! - [`backoff`]: capped exponential backoff with jitter (hand-written: a dozen lines, with
//!   the injected clock; the crates for it pull in a runtime of their own);
//! - [`busy`]: a thread's mark of the blocking call it is in, for stall detection;
//! - [`clock`]: injected wall, monotonic and boot time;
//! - [`clockwatch`]: the wall clock watched: synchronized or not (`adjtimex`), steps
//!   detected on the reads the recorder makes anyway, segment time quality;
//! - [`glob`]: the rules' shell-style globs (hand-written: `*`, `?`, `[...]` over stream
//!   names, without the regex engine `globset` brings);
//! - [`naming`]: file-name templates (`{stream}/{YYYY}/...`);
//! - [`object_key`]: upload object-key templates (`{device}/{stream}/.../{file}`);
//! - [`notify`]: systemd's sd_notify (one datagram; hand-written rather than `libsystemd`);
//! - [`pace`]: the shared tick streams poll their sources on;
//! - [`redact`]: credentials out of URLs and messages before they reach a log;
//! - [`windows`]: daily time windows (`"22:00-06:00"`), for uploads.

pub mod backoff;
pub mod busy;
pub mod clock;
pub mod clockwatch;
pub mod glob;
pub mod naming;
pub mod notify;
pub mod object_key;
pub mod pace;
pub mod redact;
pub mod windows;
