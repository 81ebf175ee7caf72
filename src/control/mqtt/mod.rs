//! MQTT fleet control: the connection to the broker, the topic contract (`docs/mqtt.md`),
//! events from the outbox, command transport, telemetry, and `edgerec ctl`.
//!
//! # How it fits
//!
//! - [`crate::sync::events::segment::register`] adds the segment-event hook to the store before recovery, so
//!   `segment.closed` / `segment.recovered` / `segment.evicted` land in the outbox inside the
//!   commits that change the segment.
//! - [`spawn`] starts one task ([`client`]) that owns the connection ([`conn::Link`]):
//!   it publishes the retained status and config, drains the outbox ([`publisher`]), routes
//!   commands ([`route`]) to [`crate::control::commands::Commands`] and publishes their replies,
//!   reports telemetry ([`telemetry`]), and turns stream state changes into `source.state`
//!   events. It reconnects with [`crate::util::backoff`] and never gives up.
//! - [`Handle::finish`] publishes the `offline` status and disconnects cleanly; it is the
//!   last step of shutdown, after every producer of events stopped.
//! - [`crate::sync::events::alarm`]: `storage.alarm` (low space, read-only, segment write
//!   errors), sampled by this task; [`refusal`]:
//!   the storage guard's alarm, published directly while the data directory (and so the
//!   outbox) may not be touched.
//!
//! Topic building and parsing ([`topics`]), routing ([`route`]) and the in-flight
//! bookkeeping ([`publisher::Window`]) are pure and unit-tested; `tests/e2e_mqtt*.rs` run the
//! real binary against mosquitto.

pub mod client;
pub mod conn;
pub mod ctl;
pub mod effective;
pub mod publisher;
pub mod refusal;
pub mod route;
pub mod telemetry;
pub mod topics;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::commands::Commands;
use crate::media::health::StatusBoard;
use crate::storage::store::Store;
use crate::sync::events::Events;
use crate::util::clock::SharedClock;

pub use effective::effective_config;

/// Why MQTT could not start or a `ctl` request failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A TLS file could not be used.
    #[error("mqtt TLS: {}: {message}", path.display())]
    Tls { path: PathBuf, message: String },
    /// The broker could not be reached or refused us.
    #[error("mqtt broker {broker}: {message}")]
    Broker { broker: String, message: String },
    /// No reply came in time.
    #[error("no reply from device {device} to {command} within {seconds}s (is it online? see `edgerec ctl devices`)")]
    Timeout {
        device: String,
        command: String,
        seconds: u64,
    },
    /// A bad argument to `edgerec ctl`.
    #[error("{0}")]
    Usage(String),
}

/// What the MQTT task needs from the recorder.
pub struct Context {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub events: Events,
    /// The command handler; `None` answers every command `unavailable`.
    pub commands: Option<Commands>,
    pub board: Arc<StatusBoard>,
    pub clock: SharedClock,
    /// Wall-clock start of the recorder, for uptimes.
    pub started_ms: i64,
    /// The config in force now (it changes with `config.set`); the retained config topic is
    /// republished when it returns a different config. `None`: `config` above, forever.
    pub live_config: Option<LiveConfig>,
    /// The watched clock, for telemetry (`None`: not reported).
    pub time: Option<Arc<crate::util::clockwatch::ClockWatch>>,
}

pub use crate::config::LiveConfig;

/// The running MQTT client.
pub struct Handle {
    control: mpsc::UnboundedSender<client::Control>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Handle {
    /// Publish `effective` (see [`effective_config`]) as the retained config, e.g. after
    /// `config.set`. Cheap; does nothing when MQTT is off.
    pub fn config_changed(&self, effective: serde_json::Value) {
        let _ = self.control.send(client::Control::Config(effective));
    }

    /// Publish `offline` and disconnect cleanly (bounded by a few seconds), then return.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Start the MQTT client when `[mqtt]` is configured; a handle that does nothing otherwise.
/// A connection problem (even unusable TLS files) never stops recording: the client logs
/// it and keeps trying. (The `Result` is kept for the daemon's wiring.)
pub fn spawn(ctx: Context) -> Result<Handle, MqttError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = ctx
        .config
        .mqtt
        .clone()
        .map(|cfg| tokio::spawn(client::run(cfg, ctx, rx, stop.clone())));
    Ok(Handle {
        control: tx,
        stop,
        task,
    })
}
