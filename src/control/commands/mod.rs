//! What the fleet manager's commands do: a transport (MQTT, the control socket) hands
//! [`Commands::handle`] a command name and its JSON payload and sends back the [`Reply`].
//!
//! Parsing is strict and precise ([`args`]): a payload that is not a JSON object is
//! `bad_json`, a missing, mistyped or unknown field is `bad_field` naming the field, a
//! path-like name is `bad_name`. No input panics. The commands, their payloads and the
//! error codes are documented in `docs/commands.md`.
//!
//! - [`record`]: `record.start`/`record.stop` and `task.*`, through the
//!   [`Scheduler`](crate::control::tasks::Scheduler);
//! - [`query`]: `status`, `segments.list`, `retention.run`, `upload.*`;
//! - [`settings`]: `config.get`, `config.set`.

pub mod args;
mod query;
mod record;
mod reply;
pub mod settings;

use std::path::PathBuf;
use std::sync::Arc;

pub use reply::{code, Reply};

use crate::control::tasks::Scheduler;
use crate::storage::store::SegmentRow;
use args::Args;

/// Every command name.
pub const NAMES: [&str; 14] = [
    "status",
    "record.start",
    "record.stop",
    "task.create",
    "task.list",
    "task.delete",
    "segments.list",
    "config.get",
    "config.set",
    "upload.pause",
    "upload.resume",
    "upload.now",
    "retention.run",
    "ping",
];

/// What `upload.*` need from the uploader.
pub trait UploadControl: Send + Sync {
    fn pause(&self) -> Result<(), String>;
    fn resume(&self) -> Result<(), String>;
    fn now(&self);
    fn is_paused(&self) -> bool;
}

pub use crate::storage::retention::pass::{RetentionDeleted, RetentionRun, RetentionTrigger};

/// What the commands act on.
pub struct CommandsContext {
    pub scheduler: Arc<Scheduler>,
    /// Live stream states, for `status`.
    pub status: Option<Arc<crate::control::report::StatusSource>>,
    /// The config file `config.set` persists to (`None`: `config.get`/`set` unavailable).
    pub config_path: Option<PathBuf>,
    /// The uploader (`None`: `upload.*` reply `unavailable`).
    pub upload: Option<Arc<dyn UploadControl>>,
    /// Runs a retention pass and reports it (the daemon's retention loop).
    pub retention: Option<RetentionTrigger>,
}

/// The command handler. Cheap to clone; every transport holds one.
#[derive(Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: a detached handler (every command but `ping` is `unavailable`).
    scheduler: Option<Arc<Scheduler>>,
    status: Option<Arc<crate::control::report::StatusSource>>,
    upload: Option<Arc<dyn UploadControl>>,
    retention: Option<RetentionTrigger>,
    /// The config file and its TOML as last written.
    config_file: tokio::sync::Mutex<Option<(PathBuf, toml::Table)>>,
}

impl Commands {
    /// Blocking: reads the config file (a file that cannot be read leaves `config.*`
    /// unavailable, with a warning).
    pub fn new(ctx: CommandsContext) -> Commands {
        let config_file = ctx.config_path.and_then(|p| {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str::<toml::Table>(&t).map_err(|e| e.to_string()));
            match text {
                Ok(t) => Some((p, t)),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "config.get/config.set unavailable");
                    None
                }
            }
        });
        Commands {
            inner: Arc::new(Inner {
                scheduler: Some(ctx.scheduler),
                status: ctx.status,
                upload: ctx.upload,
                retention: ctx.retention,
                config_file: tokio::sync::Mutex::new(config_file),
            }),
        }
    }

    /// A handler with nothing to act on: commands are parsed, and every one but `ping`
    /// replies `unavailable`. For transports' tests.
    pub fn detached() -> Commands {
        Commands {
            inner: Arc::new(Inner {
                scheduler: None,
                status: None,
                upload: None,
                retention: None,
                config_file: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The scheduler the commands act on, or `unavailable`.
    fn sched(&self) -> Result<&Arc<Scheduler>, Reply> {
        self.inner
            .scheduler
            .as_ref()
            .ok_or_else(|| Reply::error(code::UNAVAILABLE, "the recorder is not running here"))
    }

    /// The effective config as JSON with secrets hidden (for a retained topic), when the
    /// recorder runs from a config file.
    pub async fn effective_config(&self) -> Option<serde_json::Value> {
        let f = self.inner.config_file.lock().await;
        f.as_ref().map(|(_, t)| settings::redacted(t))
    }

    /// Run command `name` with its JSON `payload` (empty means `{}`).
    pub async fn handle(&self, name: &str, payload: &[u8]) -> Reply {
        let args = match parse_object(payload) {
            Ok(v) => Args::new(v),
            Err(r) => return r,
        };
        let r = match name {
            "ping" => args.finish().map(|_| Reply::ok(serde_json::json!({}))),
            n if NAMES.contains(&n) && self.inner.scheduler.is_none() => Err(Reply::error(
                code::UNAVAILABLE,
                format!("{n} is not available: the recorder is not running here"),
            )),
            "status" => self.status(args).await,
            "record.start" => self.record_start(args).await,
            "record.stop" => self.record_stop(args).await,
            "task.create" => self.task_create(args).await,
            "task.list" => self.task_list(args).await,
            "task.delete" => self.task_delete(args).await,
            "segments.list" => self.segments_list(args).await,
            "config.get" => self.config_get(args).await,
            "config.set" => self.config_set(args).await,
            "upload.pause" | "upload.resume" | "upload.now" => self.upload(name, args).await,
            "retention.run" => self.retention_run(args).await,
            _ => Err(Reply::error(
                code::UNKNOWN_COMMAND,
                format!("no command named {name:?}; known: {}", NAMES.join(", ")),
            )),
        };
        r.unwrap_or_else(|e| e)
    }

    /// Every index row (blocking read, off the runtime).
    async fn segments(&self) -> Result<Vec<SegmentRow>, Reply> {
        let store = self.sched()?.store().clone();
        tokio::task::spawn_blocking(move || store.segments())
            .await
            .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?
            .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))
    }
}

/// The payload as a JSON object; empty or whitespace means `{}`.
fn parse_object(payload: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Reply> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Reply::error(
            code::BAD_JSON,
            "the payload must be a JSON object",
        )),
        Err(e) => Err(Reply::error(code::BAD_JSON, format!("invalid JSON: {e}"))),
    }
}

/// What the daemon hands [`spawn`].
pub struct Spawn {
    pub scheduler: Arc<Scheduler>,
    pub board: Arc<crate::media::health::StatusBoard>,
    pub config_path: Option<PathBuf>,
    pub upload: Option<crate::sync::upload::Control>,
    /// The daemon's retention loop.
    pub retention: RetentionTrigger,
    /// The storage watchdog, for the `status` command.
    pub storage: Option<Arc<crate::storage::watchdog::health::StorageHealth>>,
    /// The watched clock, for `status` (`None`: not reported).
    pub time: Option<Arc<crate::util::clockwatch::ClockWatch>>,
}

/// The daemon's command handler (reads the config file off the runtime).
pub async fn spawn(s: Spawn) -> Commands {
    let cfg = s.scheduler.config();
    let clock = s.scheduler.clock().clone();
    let status = Arc::new(crate::control::report::StatusSource {
        live: crate::control::report::Live {
            board: s.board,
            pid: std::process::id(),
            started_ms: clock.wall_ms(),
            storage: s.storage.clone(),
            clock: s.time.clone(),
        },
        device_id: cfg.device_id.clone(),
        quota_bytes: cfg.storage.max_bytes,
        clock,
        uploads: s.upload.clone(),
    });
    let ctx = CommandsContext {
        scheduler: s.scheduler,
        status: Some(status),
        config_path: s.config_path,
        upload: s.upload.map(|u| Arc::new(u) as Arc<dyn UploadControl>),
        retention: Some(s.retention),
    };
    match tokio::task::spawn_blocking(move || Commands::new(ctx)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "command handler failed to start");
            Commands::detached()
        }
    }
}

impl UploadControl for crate::sync::upload::Control {
    fn pause(&self) -> Result<(), String> {
        crate::sync::upload::Control::pause(self).map_err(|e| e.to_string())
    }
    fn resume(&self) -> Result<(), String> {
        crate::sync::upload::Control::resume(self).map_err(|e| e.to_string())
    }
    fn now(&self) {
        crate::sync::upload::Control::now(self)
    }
    fn is_paused(&self) -> bool {
        crate::sync::upload::Control::is_paused(self)
    }
}
