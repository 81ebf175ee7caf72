//! Local storage: the segment files and the redb index, their durability protocol and
//! recovery ([`store`]), the ring buffer ([`retention`]), the storage guard ([`guard`]) and
//! the storage watchdog ([`watchdog`]: write errors, stalls, a full or read-only disk,
//! tracked with or without MQTT).
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`].

pub mod guard;
pub mod retention;
pub mod store;
pub mod watchdog;
