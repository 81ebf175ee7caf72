//! Control beside the pipeline: what the fleet [`commands`] do, record [`tasks`] and their
//! scheduler, the [`mqtt`] transport (commands in, events and telemetry out), the local
//! [`socket`] `edgerec status`/`segments` use, the local [`http`] API, and the status
//! [`report`].
//!
//! May import every layer below: [`crate::util`], [`crate::config`], [`crate::media`],
//! [`crate::storage`], [`crate::sync`], [`crate::pipeline`].

pub mod commands;
pub mod http;
pub mod mqtt;
pub mod report;
pub mod socket;
pub mod tasks;
