//! Webhooks: the event log delivered to HTTP endpoints (`[[callbacks]]`), at least once and
//! in order, each endpoint with its own cursor in the log.
//!
//! # Delivery
//!
//! Every endpoint is a consumer of the event log ([`crate::sync::events`], consumer
//! `callback:{name}`) and runs its own supervised task (`task.rs`): read the log from the
//! cursor, POST the head event, and move the cursor past it only after a 2xx. The head
//! blocks the events after it, so an endpoint gets them in `event_seq` order; a crash after
//! a 2xx and before the cursor move reached the disk sends that event again, with the same
//! `webhook-id` (receivers deduplicate by it). Other consumers (MQTT, other endpoints) never
//! move this cursor, and the log keeps an event until every consumer passed it; the bound
//! is the log's capacity (`mqtt.outbox_capacity`, default 10 000), and events it drops
//! before an endpoint passed them are counted for that endpoint (`dropped` in its status).
//! Events the endpoint's `events` filter does not want are passed over without a request.
//! A new endpoint (a new `name`, by default its URL) starts at the head of the log: it gets
//! the events stored from its first start on, no history. An endpoint removed from the
//! config loses its cursor at the next start and holds nothing back.
//!
//! # Retries
//!
//! The decisions are pure (`core.rs`): a 2xx delivers; 410 Gone disables the endpoint
//! durably and raises `callback.alarm` (in the same commit); anything else (other 4xx, 5xx,
//! timeouts, refused connections, TLS errors) is retried **forever**, after a capped
//! exponential backoff with ±20 % jitter (`retry_initial` doubling up to `retry_max`), or
//! after the `Retry-After` the endpoint sent (seconds or an HTTP date, at most a day).
//! A disabled endpoint stays disabled across restarts (it then gets no task and no cursor)
//! until **its config changes** (`url`, `events`, `secret` or `format`, by editing the file
//! or `config.set`, then a restart): that enables it again, starting at the head.
//!
//! # Formats
//!
//! See `format.rs`: `standard` (Standard Webhooks 1.0 signatures over the MQTT event JSON)
//! and `tencent` (event 100 for finished files; its `sign` does not cover the body).
//!
//! # Telemetry
//!
//! Each endpoint's record (`state.rs`) keeps whether it is disabled and why, its last error
//! and consecutive failures, and when it last delivered; [`status`] adds its lag (events
//! not passed, age of the oldest) and drop count from the log, for `edgerec status --json`
//! and the MQTT telemetry.

mod core;
mod format;
mod state;
mod task;

pub use self::core::{retry_after_delay, Answer, Delivery, Next};
pub use format::{standard_signature, tencent_body, tencent_sign};
pub use state::{aged, consumer_name, consumers, prepare, status, EndpointStatus, Record};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::callbacks::CallbackConfig;
use crate::sync::events::Events;
use crate::util::clock::SharedClock;

/// Start a delivery task for every endpoint in `cfgs` whose record (from [`prepare`]) is not
/// disabled. The tasks end when `cancel` fires; wait for the returned set at shutdown.
pub fn spawn(
    cfgs: &[CallbackConfig],
    records: &[Record],
    events: &Events,
    clock: &SharedClock,
    cancel: &CancellationToken,
) -> Result<JoinSet<()>, reqwest::Error> {
    let mut set = JoinSet::new();
    if cfgs.is_empty() {
        return Ok(set);
    }
    let client = task::client()?;
    for (cfg, rec) in cfgs.iter().zip(records) {
        if rec.disabled.is_some() {
            tracing::warn!(callback = %cfg.name, "callback: disabled by a 410; change its config to enable it again");
            continue;
        }
        set.spawn(task::supervise(task::Endpoint {
            cfg: cfg.clone(),
            events: events.clone(),
            clock: clock.clone(),
            client: client.clone(),
            cancel: cancel.child_token(),
        }));
    }
    Ok(set)
}
