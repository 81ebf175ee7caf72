//! `[[callbacks]]`: webhook endpoints the event log is delivered to (see
//! `crate::sync::webhooks` and the README's Callbacks section).
//!
//! URLs come only from here (the file, or a `config.set` patch of `callbacks`), never from
//! anything a pushed stream or a camera says.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Default `callbacks[].timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `callbacks[].retry_initial`.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Default `callbacks[].retry_max`.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// The event kinds a filter may name (the MQTT topics' last part). `sync::events` checks
/// that this list matches its kinds.
pub const EVENT_KINDS: [&str; 11] = [
    "segment.closed",
    "segment.uploaded",
    "segment.recovered",
    "segment.evicted",
    "task.status",
    "source.state",
    "storage.alarm",
    "upload.alarm",
    "clock.step",
    "clock.corrected",
    "callback.alarm",
];
/// The kinds a `tencent` endpoint can be sent (finished files: closed by its writer,
/// finished by recovery after a crash, uploaded).
pub const TENCENT_KINDS: [&str; 3] = ["segment.closed", "segment.recovered", "segment.uploaded"];

/// One `[[callbacks]]` entry as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCallback {
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    pub secret: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retry_initial: Option<String>,
    #[serde(default)]
    pub retry_max: Option<String>,
}

/// How a callback's body is shaped and signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackFormat {
    /// The MQTT event's JSON, signed per Standard Webhooks 1.0 (default).
    Standard,
    /// Tencent Cloud's recording callback (event 100) for finished files.
    Tencent,
}

/// `[[callbacks]]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// Stable name of the endpoint: its cursor in the event log is kept under it (default:
    /// the URL). Renaming an endpoint makes it a new one, which starts at the log's head.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Event kinds sent (default: all). Others are passed over without a request.
    pub events: Vec<String>,
    /// `standard`: a `whsec_` + base64 key. `tencent`: the key of `sign = MD5(key + t)`.
    /// Never logged.
    pub secret: String,
    /// `standard` (default) or `tencent`.
    pub format: CallbackFormat,
    /// One request's time limit (default 10 s).
    pub timeout: Duration,
    /// First retry delay; it doubles per failure, with ±20 % jitter (default 1 s).
    pub retry_initial: Duration,
    /// Longest retry delay (default 5 min). Retries never stop.
    pub retry_max: Duration,
}

impl CallbackConfig {
    /// Whether events of kind `kind` (e.g. `segment.closed`) go to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        let allowed = match self.format {
            CallbackFormat::Standard => true,
            CallbackFormat::Tencent => TENCENT_KINDS.contains(&kind),
        };
        allowed && (self.events.is_empty() || self.events.iter().any(|k| k == kind))
    }

    /// A fingerprint of what defines the endpoint's deliveries (url, events, secret,
    /// format): an endpoint a 410 disabled is enabled again when it changes.
    pub fn fingerprint(&self) -> String {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        let fmt = match self.format {
            CallbackFormat::Standard => "standard",
            CallbackFormat::Tencent => "tencent",
        };
        for part in [self.url.as_str(), &self.events.join(","), &self.secret, fmt] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"***")
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .finish()
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

fn bad<T>(field: String, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, message))
}

/// Durations are read as strings here (not `raw::RawDuration`), so this file and `raw.rs`
/// do not import each other.
fn duration(field: String, v: &Option<String>, default: Duration) -> Result<Duration> {
    let Some(s) = v else {
        return Ok(default);
    };
    match humantime::parse_duration(s.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => bad(field, "must be more than 0"),
        Err(e) => bad(
            field,
            format!("invalid duration \"{s}\": {e} (use e.g. \"10s\")"),
        ),
    }
}

/// Validate every `[[callbacks]]` entry.
pub(crate) fn validate(raw: &[RawCallback]) -> Result<Vec<CallbackConfig>> {
    let mut out: Vec<CallbackConfig> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let p = format!("callbacks[{i}]");
        let cb = one(&p, c)?;
        if out.iter().any(|o| o.name == cb.name) {
            let what = if c.name.is_some() { "name" } else { "url" };
            return bad(
                format!("{p}.{what}"),
                format!(
                    "\"{}\" is used by another callback (give each a distinct `name`)",
                    cb.name
                ),
            );
        }
        out.push(cb);
    }
    Ok(out)
}

fn one(p: &str, c: &RawCallback) -> Result<CallbackConfig> {
    let url = c.url.trim().to_string();
    match url::Url::parse(&url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
        Ok(u) => {
            return bad(
                format!("{p}.url"),
                format!(
                    "\"{url}\": scheme \"{}\" is not supported (use http:// or https://)",
                    u.scheme()
                ),
            )
        }
        Err(e) => return bad(format!("{p}.url"), format!("\"{url}\" is not a URL: {e}")),
    }
    let name = match &c.name {
        None => url.clone(),
        Some(n) if n.trim().is_empty() => return bad(format!("{p}.name"), "must not be empty"),
        Some(n) if n.chars().any(char::is_control) => {
            return bad(format!("{p}.name"), "must not contain control characters")
        }
        Some(n) => n.clone(),
    };
    let format = match c.format.as_deref() {
        None | Some("standard") => CallbackFormat::Standard,
        Some("tencent") => CallbackFormat::Tencent,
        Some(f) => {
            return bad(
                format!("{p}.format"),
                format!("\"{f}\" is not a format (use \"standard\" or \"tencent\")"),
            )
        }
    };
    let mut events = Vec::new();
    for (j, e) in c.events.iter().flatten().enumerate() {
        let field = format!("{p}.events[{j}]");
        if !EVENT_KINDS.contains(&e.as_str()) {
            return bad(
                field,
                format!(
                    "\"{e}\" is not an event kind (one of {})",
                    EVENT_KINDS.join(", ")
                ),
            );
        }
        if format == CallbackFormat::Tencent && !TENCENT_KINDS.contains(&e.as_str()) {
            return bad(
                field,
                format!(
                    "a tencent callback only sends finished files ({})",
                    TENCENT_KINDS.join(", ")
                ),
            );
        }
        events.push(e.clone());
    }
    if c.events.as_ref().is_some_and(|e| e.is_empty()) {
        return bad(
            format!("{p}.events"),
            "must not be empty (leave it out to send every kind)",
        );
    }
    match format {
        CallbackFormat::Standard => standard_key(&c.secret)
            .map(drop)
            .or_else(|m| bad(format!("{p}.secret"), m))?,
        CallbackFormat::Tencent if c.secret.is_empty() => {
            return bad(format!("{p}.secret"), "must not be empty")
        }
        CallbackFormat::Tencent => {}
    }
    let timeout = duration(format!("{p}.timeout"), &c.timeout, DEFAULT_TIMEOUT)?;
    let retry_initial = duration(
        format!("{p}.retry_initial"),
        &c.retry_initial,
        DEFAULT_RETRY_INITIAL,
    )?;
    let retry_max = duration(format!("{p}.retry_max"), &c.retry_max, DEFAULT_RETRY_MAX)?;
    if retry_max < retry_initial {
        return bad(
            format!("{p}.retry_max"),
            format!(
                "{} is shorter than retry_initial ({})",
                humantime::format_duration(retry_max),
                humantime::format_duration(retry_initial)
            ),
        );
    }
    Ok(CallbackConfig {
        name,
        url,
        events,
        secret: c.secret.clone(),
        format,
        timeout,
        retry_initial,
        retry_max,
    })
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`.
pub fn standard_key(secret: &str) -> std::result::Result<Vec<u8>, String> {
    use base64::Engine;
    let Some(b64) = secret.strip_prefix("whsec_") else {
        return Err(
            "must start with \"whsec_\" followed by a base64 key (Standard Webhooks)".into(),
        );
    };
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(k) if k.len() >= 16 => Ok(k),
        Ok(_) => {
            Err("the key after \"whsec_\" must be at least 16 bytes (24 base64 characters)".into())
        }
        Err(_) => Err("the part after \"whsec_\" is not valid base64".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "device_id = \"d\"\n[storage]\nroot = \"/tmp/x\"\nmax_bytes = \"1GiB\"\n";
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(cb: &str) -> std::result::Result<Config, String> {
        Config::from_toml_str(&format!("{BASE}[[callbacks]]\n{cb}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_callback_gets_defaults_and_is_named_by_its_url() {
        let c = parse(&format!(
            "url = \"http://127.0.0.1:9/hook\"\nsecret = \"{KEY}\""
        ))
        .unwrap();
        let cb = &c.callbacks[0];
        assert_eq!(cb.name, "http://127.0.0.1:9/hook");
        assert_eq!(cb.format, CallbackFormat::Standard);
        assert_eq!(cb.timeout, DEFAULT_TIMEOUT);
        assert!(cb.wants("segment.closed") && cb.wants("clock.step"));
        assert!(
            !format!("{cb:?}").contains("MfKQ"),
            "the secret is never printed"
        );
    }

    #[test]
    fn bad_callback_fields_are_named() {
        let cases = [
            (format!("url = \"ftp://x/\"\nsecret = \"{KEY}\""), "callbacks[0].url"),
            (format!("url = \"nope\"\nsecret = \"{KEY}\""), "callbacks[0].url"),
            ("url = \"http://x/\"\nsecret = \"plain\"".to_string(), "callbacks[0].secret"),
            (format!("url = \"http://x/\"\nsecret = \"{KEY}\"\nevents = [\"segment.close\"]"), "callbacks[0].events[0]"),
            (format!("url = \"http://x/\"\nsecret = \"{KEY}\"\nformat = \"zlm\""), "callbacks[0].format"),
            (format!("url = \"http://x/\"\nsecret = \"{KEY}\"\ntimeout = \"0s\""), "callbacks[0].timeout"),
            (format!("url = \"http://x/\"\nsecret = \"{KEY}\"\nretry_initial = \"1m\"\nretry_max = \"1s\""), "callbacks[0].retry_max"),
            ("url = \"http://x/\"\nsecret = \"k\"\nformat = \"tencent\"\nevents = [\"source.state\"]".to_string(), "callbacks[0].events[0]"),
            (format!("url = \"http://x/\"\nsecret = \"{KEY}\"\nsurprise = 1"), "surprise"),
        ];
        for (cb, field) in cases {
            let e = parse(&cb).unwrap_err();
            assert!(e.contains(field), "{cb}: {e}");
        }
    }

    #[test]
    fn two_callbacks_may_not_share_a_name() {
        let e = Config::from_toml_str(&format!(
            "{BASE}[[callbacks]]\nurl = \"http://x/\"\nsecret = \"{KEY}\"\n\
             [[callbacks]]\nurl = \"http://x/\"\nsecret = \"{KEY}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("callbacks[1].url"), "{e}");
    }

    #[test]
    fn a_tencent_callback_only_wants_finished_files() {
        let c = parse("url = \"http://x/\"\nsecret = \"k\"\nformat = \"tencent\"").unwrap();
        let cb = &c.callbacks[0];
        assert!(cb.wants("segment.closed") && cb.wants("segment.uploaded"));
        assert!(
            cb.wants("segment.recovered"),
            "a file recovery finished is a finished file"
        );
        assert!(!cb.wants("source.state"));
    }

    #[test]
    fn the_fingerprint_changes_with_what_defines_deliveries() {
        let a = parse(&format!("url = \"http://x/\"\nsecret = \"{KEY}\"")).unwrap();
        let b = parse(&format!(
            "url = \"http://y/\"\nsecret = \"{KEY}\"\nname = \"http://x/\""
        ))
        .unwrap();
        let c = parse(&format!(
            "url = \"http://x/\"\nsecret = \"{KEY}\"\ntimeout = \"3s\""
        ))
        .unwrap();
        assert_ne!(a.callbacks[0].fingerprint(), b.callbacks[0].fingerprint());
        assert_eq!(a.callbacks[0].fingerprint(), c.callbacks[0].fingerprint());
    }
}
