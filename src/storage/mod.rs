//! Local storage: the segment files and the redb index, their durability protocol and
//! recovery ([`store`]), the ring buffer ([`retention`]) and the storage guard ([`guard`]).
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`].

pub mod guard;
pub mod retention;
pub mod store;
