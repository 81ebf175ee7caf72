//! The reply to a command: `{"ok":true,"data":...}` or
//! `{"ok":false,"code":"bad_json","message":"..."}`.

use serde::{Deserialize, Serialize};

/// Error codes a reply may carry (documented in `docs/commands.md`).
pub mod code {
    /// The payload is not a JSON object.
    pub const BAD_JSON: &str = "bad_json";
    /// No command has this name.
    pub const UNKNOWN_COMMAND: &str = "unknown_command";
    /// A field is missing, of the wrong type, or has an unacceptable value.
    pub const BAD_FIELD: &str = "bad_field";
    /// The payload is larger than the transport accepts (the transport replies).
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// The stream is not configured.
    pub const NO_SUCH_STREAM: &str = "no_such_stream";
    /// The template is not configured.
    pub const NO_SUCH_TEMPLATE: &str = "no_such_template";
    /// No task has this id.
    pub const NO_SUCH_TASK: &str = "no_such_task";
    /// A name that looks like a path (`../x`, `/`, `\`, NUL).
    pub const BAD_NAME: &str = "bad_name";
    /// The end comes before (or at) the start.
    pub const BAD_TIME_RANGE: &str = "bad_time_range";
    /// The subsystem the command needs is not running here.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Something failed inside the recorder (the message says what).
    pub const INTERNAL: &str = "internal";
}

/// What a command answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Reply {
    /// A success carrying `data`.
    pub fn ok(data: serde_json::Value) -> Reply {
        Reply {
            ok: true,
            code: None,
            message: None,
            data,
        }
    }

    /// A failure with one of the [`code`]s and a message for a human.
    pub fn error(code: &str, message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            code: Some(code.to_string()),
            message: Some(message.into()),
            data: serde_json::Value::Null,
        }
    }

    /// The reply as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reply always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_serializes_without_code_or_message() {
        let r = Reply::ok(serde_json::json!({"n": 1}));
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            r#"{"ok":true,"data":{"n":1}}"#
        );
    }

    #[test]
    fn a_failure_serializes_without_data() {
        let r = Reply::error(code::BAD_JSON, "expected value");
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            r#"{"ok":false,"code":"bad_json","message":"expected value"}"#
        );
    }
}
