//! Local storage: the segment files and the redb index, their durability protocol and
//! recovery ([`store`]), the ring buffer ([`retention`]), the storage guard ([`guard`]), the
//! storage watchdog ([`watchdog`]: write errors, stalls, a full or read-only disk, tracked
//! with or without MQTT), and playback of what is recorded without copying it
//! ([`playback`]: an HLS VOD playlist and an MP4 cut as byte ranges of the files).
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`].

pub mod guard;
pub mod playback;
pub mod retention;
pub mod store;
pub mod watchdog;
