//! What the fleet manager's commands do: a transport (MQTT, the control socket) hands
//! [`Commands::handle`] a command name and its JSON payload and sends back the [`Reply`].
//!
//! Parsing is strict and precise: a payload that is not a JSON object is `bad_json`, a
//! missing or mistyped field is `bad_field` naming the field. No input panics. The
//! commands and their payloads are documented in `docs/commands.md`.

mod reply;

use std::sync::Arc;

pub use reply::{code, Reply};

/// The command handler. Cheap to clone; every transport holds one.
#[derive(Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

struct Inner {}

/// Every command name, for transports that list them.
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

impl Commands {
    /// A handler that parses commands but has nothing to act on: every known command
    /// replies `unavailable`. For transports' tests.
    pub fn detached() -> Commands {
        Commands {
            inner: Arc::new(Inner {}),
        }
    }

    /// Run command `name` with its JSON `payload` (empty means `{}`).
    pub async fn handle(&self, name: &str, payload: &[u8]) -> Reply {
        let _ = &self.inner;
        let args = match parse_object(payload) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let _ = args;
        if name == "ping" {
            return Reply::ok(serde_json::json!({}));
        }
        if !NAMES.contains(&name) {
            return Reply::error(code::UNKNOWN_COMMAND, format!("no command named {name:?}"));
        }
        Reply::error(code::UNAVAILABLE, format!("{name} is not available yet"))
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
