//! What leaves the box: the offline-first [`upload`] queue to object storage, and the
//! durable [`events`] outbox that MQTT (and later webhooks) publish from.
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`], [`crate::storage`].

pub mod events;
pub mod upload;
