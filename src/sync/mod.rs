//! What leaves the box: the offline-first [`upload`] queue to object storage, and the
//! durable [`events`] log that MQTT and [`webhooks`] deliver from, each with its own cursor.
//!
//! May import: [`crate::util`], [`crate::config`], [`crate::media`], [`crate::storage`].

pub mod events;
pub mod upload;
pub mod webhooks;
