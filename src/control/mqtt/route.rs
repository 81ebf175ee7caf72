//! What to do with a message that arrived on a command topic, pure: which command, where
//! the reply goes, and what to refuse before any command code sees it.
//!
//! - The topic must be exactly this device's `cmd/{name}` ([`Topics::command`]); anything
//!   else is ignored, never acted on.
//! - The reply goes to the MQTT 5 response topic (with the correlation data) when the
//!   request has one, else to `{prefix}/{device}/reply/{request_id}` when the JSON payload
//!   carries a `request_id` string; with neither, the command runs and no reply is sent.
//! - A payload over `max_payload` is refused with `payload_too_large` without parsing it
//!   (only its first bytes are scanned for a `request_id`, to know where to reply).

use crate::control::commands::{code, Reply};

use super::topics::Topics;

/// An incoming PUBLISH, protocol-neutral.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation: Option<Vec<u8>>,
}

/// Where a reply is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub topic: String,
    /// Echoed as the reply's correlation data (MQTT 5).
    pub correlation: Option<Vec<u8>>,
}

/// The decision about one inbound message.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// Not a command topic of this device.
    Ignore,
    /// Refused before running anything; send `reply` when there is somewhere to send it.
    Refuse {
        name: String,
        reply_to: Option<ReplyTo>,
        reply: Reply,
    },
    /// Run command `name` with `payload` (`request_id` removed) and reply.
    Run {
        name: String,
        payload: Vec<u8>,
        reply_to: Option<ReplyTo>,
    },
}

/// How far into an oversized payload we look for a `request_id`.
const SCAN_LIMIT: usize = 4096;

/// Decide what `msg` means for the device of `topics`.
pub fn route(topics: &Topics, msg: &Inbound, max_payload: usize) -> Route {
    let Some(name) = topics.command(&msg.topic) else {
        return Route::Ignore;
    };
    let name = name.to_string();
    let response = msg
        .response_topic
        .as_ref()
        .filter(|t| !t.is_empty() && !t.contains(['+', '#']))
        .map(|t| ReplyTo {
            topic: t.clone(),
            correlation: msg.correlation.clone(),
        });
    let by_request_id = |id: Option<String>| {
        id.and_then(|id| topics.reply(&id)).map(|topic| ReplyTo {
            topic,
            correlation: None,
        })
    };
    if msg.payload.len() > max_payload {
        let head = &msg.payload[..msg.payload.len().min(SCAN_LIMIT)];
        let reply_to = response.or_else(|| by_request_id(scan_request_id(head)));
        return Route::Refuse {
            name,
            reply_to,
            reply: Reply::error(
                code::PAYLOAD_TOO_LARGE,
                format!(
                    "the payload is {} bytes; this device accepts at most {max_payload}",
                    msg.payload.len()
                ),
            ),
        };
    }
    match serde_json::from_slice::<serde_json::Value>(&msg.payload) {
        Ok(serde_json::Value::Object(mut obj)) => {
            let id = match obj.remove("request_id") {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            };
            let reply_to = response.or_else(|| by_request_id(id));
            Route::Run {
                name,
                payload: serde_json::to_vec(&obj).expect("a JSON object serializes"),
                reply_to,
            }
        }
        // Malformed or not an object: the command handler gives the precise error.
        _ => Route::Run {
            name,
            reply_to: response.or_else(|| by_request_id(scan_request_id(&msg.payload))),
            payload: msg.payload.clone(),
        },
    }
}

/// A `"request_id": "..."` string found by scanning, for payloads that are not parsed.
fn scan_request_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let at = text.find("\"request_id\"")?;
    let rest = text[at + "\"request_id\"".len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("edgerec", "edge-1")
    }

    fn msg(topic: &str, payload: &str) -> Inbound {
        Inbound {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            ..Inbound::default()
        }
    }

    #[test]
    fn another_devices_command_is_ignored() {
        let r = route(&topics(), &msg("edgerec/edge-2/cmd/status", "{}"), 1024);
        assert_eq!(r, Route::Ignore);
    }

    #[test]
    fn a_v5_request_is_answered_on_its_response_topic_with_its_correlation() {
        let mut m = msg("edgerec/edge-1/cmd/status", r#"{"request_id":"r1"}"#);
        m.response_topic = Some("fleet/replies/7".into());
        m.correlation = Some(b"c-7".to_vec());
        match route(&topics(), &m, 1024) {
            Route::Run {
                name,
                payload,
                reply_to,
            } => {
                assert_eq!(name, "status");
                assert_eq!(payload, b"{}");
                let to = reply_to.unwrap();
                assert_eq!(to.topic, "fleet/replies/7");
                assert_eq!(to.correlation.as_deref(), Some(&b"c-7"[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_id_gives_the_reply_topic_and_is_removed_from_the_payload() {
        let m = msg(
            "edgerec/edge-1/cmd/record.stop",
            r#"{"request_id":"abc","stream":"cam1"}"#,
        );
        match route(&topics(), &m, 1024) {
            Route::Run {
                payload, reply_to, ..
            } => {
                assert_eq!(payload, br#"{"stream":"cam1"}"#);
                assert_eq!(reply_to.unwrap().topic, "edgerec/edge-1/reply/abc");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_response_topic_or_request_id_nobody_gets_a_reply() {
        match route(&topics(), &msg("edgerec/edge-1/cmd/status", "{}"), 1024) {
            Route::Run { reply_to, .. } => assert_eq!(reply_to, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_json_still_runs_so_the_handler_names_the_error_and_finds_its_request_id() {
        let m = msg("edgerec/edge-1/cmd/status", r#"{"request_id": "q9", oops"#);
        match route(&topics(), &m, 1024) {
            Route::Run {
                payload, reply_to, ..
            } => {
                assert_eq!(payload, m.payload);
                assert_eq!(reply_to.unwrap().topic, "edgerec/edge-1/reply/q9");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversized_payload_is_refused_with_payload_too_large() {
        let big = format!(r#"{{"request_id":"big","pad":"{}"}}"#, "x".repeat(2000));
        match route(&topics(), &msg("edgerec/edge-1/cmd/config.set", &big), 1024) {
            Route::Refuse {
                name,
                reply_to,
                reply,
            } => {
                assert_eq!(name, "config.set");
                assert_eq!(reply.code.as_deref(), Some("payload_too_large"));
                assert!(!reply.ok);
                assert_eq!(reply_to.unwrap().topic, "edgerec/edge-1/reply/big");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_id_that_is_not_a_topic_level_gets_no_reply() {
        let m = msg("edgerec/edge-1/cmd/status", r#"{"request_id":"../x/+"}"#);
        match route(&topics(), &m, 1024) {
            Route::Run { reply_to, .. } => assert_eq!(reply_to, None),
            other => panic!("{other:?}"),
        }
    }
}
