//! `[mqtt]`: the broker edgerec reports to and takes commands from (see `docs/mqtt.md`).
//!
//! Raw and validated structs live together here so the MQTT section is one file; the
//! shared config files only name the field.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::size::parse_size;
use super::units::{RawDuration, RawSize};
use super::ConfigError;

/// Default `mqtt.prefix`.
pub const DEFAULT_PREFIX: &str = "edgerec";
/// Default `mqtt.keepalive`.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
/// Default `mqtt.telemetry_interval`.
pub const DEFAULT_TELEMETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Default `mqtt.outbox_capacity`.
pub const DEFAULT_OUTBOX_CAPACITY: u64 = 10_000;
/// Default `mqtt.max_payload`.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 10;

/// `[mqtt]` as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMqtt {
    pub url: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub keepalive: Option<RawDuration>,
    #[serde(default)]
    pub telemetry_interval: Option<RawDuration>,
    #[serde(default)]
    pub outbox_capacity: Option<i64>,
    #[serde(default)]
    pub max_payload: Option<RawSize>,
}

/// MQTT protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 5 (default): replies go to the request's response topic.
    V5,
    /// MQTT 3.1.1: replies go to `{prefix}/{device}/reply/{request_id}`.
    V311,
}

/// `[mqtt]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// The broker URL as written (`mqtt://host:1883` or `mqtts://host:8883`).
    pub url: String,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (default 1883, or 8883 with `mqtts`).
    pub port: u16,
    /// `mqtts://`: TLS (rustls).
    pub tls: bool,
    /// Topics are `{prefix}/{device_id}/...` (default `edgerec`).
    pub prefix: String,
    /// MQTT client id (default `edgerec-{device_id}`); the broker keeps the session under it.
    pub client_id: String,
    /// `v5` (default) or `v3.1.1`.
    pub protocol: Protocol,
    /// User name, optional.
    pub username: Option<String>,
    /// Password, optional; never logged.
    pub password: Option<String>,
    /// PEM CA bundle the broker's certificate is checked against (default: the system's).
    pub ca: Option<PathBuf>,
    /// PEM client certificate (mTLS), with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// MQTT keepalive (default 30 s).
    pub keepalive: Duration,
    /// How often telemetry is published (default 60 s).
    pub telemetry_interval: Duration,
    /// Most events kept while the broker is unreachable; the oldest go first (default 10 000).
    pub outbox_capacity: u64,
    /// Largest command payload accepted, in bytes (default 64 KiB).
    pub max_payload: usize,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("client_id", &self.client_id)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("keepalive", &self.keepalive)
            .field("telemetry_interval", &self.telemetry_interval)
            .field("outbox_capacity", &self.outbox_capacity)
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

fn bad<T>(field: &str, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(format!("mqtt.{field}"), message))
}

fn duration(field: &str, v: &Option<RawDuration>, default: Duration) -> Result<Duration> {
    let Some(RawDuration(s)) = v else {
        return Ok(default);
    };
    humantime::parse_duration(s.trim()).or_else(|e| {
        bad(
            field,
            format!("invalid duration \"{s}\": {e} (use e.g. \"30s\")"),
        )
    })
}

/// A name that may sit inside a topic level: no wildcards, separators or control characters.
fn topic_safe(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '+' | '#' | '/' | '\0') || c.is_control())
}

fn path(v: &Option<String>) -> Option<PathBuf> {
    v.as_ref().map(PathBuf::from)
}

/// Validate `[mqtt]` of the recorder `device_id`.
pub(crate) fn validate(raw: &RawMqtt, device_id: &str) -> Result<MqttConfig> {
    if !topic_safe(device_id) {
        return Err(ConfigError::invalid(
            "device_id",
            "must not contain \"+\" or \"#\" when [mqtt] is set (it is a topic level)",
        ));
    }
    let url = url::Url::parse(raw.url.trim()).or_else(|e| {
        bad(
            "url",
            format!(
                "invalid URL {:?}: {e} (use mqtt://host:1883 or mqtts://host:8883)",
                raw.url
            ),
        )
    })?;
    let tls = match url.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => {
            return bad(
                "url",
                format!("unknown scheme {other:?}: use mqtt:// or mqtts://"),
            )
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return bad(
            "url",
            "must not carry credentials: use mqtt.username and mqtt.password",
        );
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return bad("url", "has no host");
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return bad("url", "must be just scheme://host[:port]");
    }
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });

    let prefix = raw.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into());
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.split('/').any(|l| !topic_safe(l))
    {
        return bad(
            "prefix",
            format!("{prefix:?} must be topic levels separated by \"/\", without \"+\", \"#\" or empty levels"),
        );
    }
    let client_id = raw
        .client_id
        .clone()
        .unwrap_or_else(|| format!("edgerec-{device_id}"));
    if client_id.is_empty() || client_id.len() > 128 || client_id.chars().any(char::is_control) {
        return bad("client_id", "must be 1 to 128 printable characters");
    }
    let protocol = match raw.protocol.as_deref() {
        None | Some("v5") | Some("5") => Protocol::V5,
        Some("v3.1.1") | Some("3.1.1") | Some("v311") => Protocol::V311,
        Some(other) => return bad("protocol", format!("{other:?}: use \"v5\" or \"v3.1.1\"")),
    };
    if raw.password.is_some() && raw.username.is_none() {
        return bad("password", "needs mqtt.username");
    }
    let (ca, cert, key) = (path(&raw.ca), path(&raw.cert), path(&raw.key));
    if !tls {
        for (field, v) in [("ca", &ca), ("cert", &cert), ("key", &key)] {
            if v.is_some() {
                return bad(field, "needs an mqtts:// url (TLS)");
            }
        }
    }
    match (&cert, &key) {
        (Some(_), None) => return bad("key", "is required with mqtt.cert"),
        (None, Some(_)) => return bad("cert", "is required with mqtt.key"),
        _ => {}
    }
    let keepalive = duration("keepalive", &raw.keepalive, DEFAULT_KEEPALIVE)?;
    if keepalive < Duration::from_secs(5) || keepalive > Duration::from_secs(65535) {
        return bad("keepalive", "must be between 5s and 18h");
    }
    let telemetry_interval = duration(
        "telemetry_interval",
        &raw.telemetry_interval,
        DEFAULT_TELEMETRY_INTERVAL,
    )?;
    if telemetry_interval < Duration::from_secs(1) {
        return bad("telemetry_interval", "must be at least 1s");
    }
    let outbox_capacity = match raw.outbox_capacity {
        None => DEFAULT_OUTBOX_CAPACITY,
        Some(n) if (1..=10_000_000).contains(&n) => n as u64,
        Some(n) => return bad("outbox_capacity", format!("{n} must be 1 to 10000000")),
    };
    let max_payload = match &raw.max_payload {
        None => DEFAULT_MAX_PAYLOAD,
        Some(RawSize::Int(i)) => usize::try_from(*i)
            .or_else(|_| bad("max_payload", format!("size {i} must not be negative")))?,
        Some(RawSize::Str(s)) => parse_size(s).or_else(|m| bad("max_payload", m))? as usize,
    };
    if !(256..=(256 << 20)).contains(&max_payload) {
        return bad("max_payload", "must be between 256 bytes and 256MiB");
    }
    Ok(MqttConfig {
        url: raw.url.clone(),
        host,
        port,
        tls,
        prefix,
        client_id,
        protocol,
        username: raw.username.clone(),
        password: raw.password.clone(),
        ca,
        cert,
        key,
        keepalive,
        telemetry_interval,
        outbox_capacity,
        max_payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<MqttConfig> {
        let raw: RawMqtt = toml::from_str(body).expect("toml");
        validate(&raw, "edge-1")
    }

    fn err_of(body: &str) -> String {
        parse(body).unwrap_err().to_string()
    }

    #[test]
    fn a_bare_url_gets_every_default() {
        let c = parse(r#"url = "mqtt://127.0.0.1""#).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.tls), ("127.0.0.1", 1883, false));
        assert_eq!(c.prefix, "edgerec");
        assert_eq!(c.client_id, "edgerec-edge-1");
        assert_eq!(c.protocol, Protocol::V5);
        assert_eq!(c.keepalive, Duration::from_secs(30));
        assert_eq!(c.telemetry_interval, Duration::from_secs(60));
        assert_eq!(c.outbox_capacity, 10_000);
        assert_eq!(c.max_payload, 64 << 10);
    }

    #[test]
    fn mqtts_defaults_to_port_8883_and_takes_tls_files() {
        let c = parse(
            r#"url = "mqtts://broker.example.com"
ca = "/ca.pem"
cert = "/d.pem"
key = "/d.key"
protocol = "v3.1.1"
max_payload = "1KiB""#,
        )
        .unwrap();
        assert_eq!((c.port, c.tls), (8883, true));
        assert_eq!(c.protocol, Protocol::V311);
        assert_eq!(c.key, Some(PathBuf::from("/d.key")));
        assert_eq!(c.max_payload, 1024);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err_of(r#"url = "http://x""#).contains("mqtt.url"));
        assert!(err_of(r#"url = "mqtt://u:p@x""#).contains("mqtt.url"));
        assert!(err_of("url = \"mqtt://x\"\nprefix = \"a/+/b\"").contains("mqtt.prefix"));
        assert!(err_of("url = \"mqtt://x\"\nprotocol = \"v4\"").contains("mqtt.protocol"));
        assert!(err_of("url = \"mqtt://x\"\nca = \"/ca\"").contains("mqtt.ca"));
        assert!(err_of("url = \"mqtts://x\"\ncert = \"/c\"").contains("mqtt.key"));
        assert!(err_of("url = \"mqtt://x\"\npassword = \"p\"").contains("mqtt.password"));
        assert!(err_of("url = \"mqtt://x\"\nkeepalive = \"1s\"").contains("mqtt.keepalive"));
        assert!(err_of("url = \"mqtt://x\"\noutbox_capacity = 0").contains("mqtt.outbox_capacity"));
        assert!(err_of("url = \"mqtt://x\"\nmax_payload = \"1TB\"").contains("mqtt.max_payload"));
    }

    #[test]
    fn a_device_id_with_a_wildcard_is_refused_when_mqtt_is_on() {
        let raw: RawMqtt = toml::from_str(r#"url = "mqtt://x""#).unwrap();
        let e = validate(&raw, "edge+1").unwrap_err().to_string();
        assert!(e.starts_with("device_id"), "{e}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = parse("url = \"mqtt://x\"\nusername = \"u\"\npassword = \"hunter2\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
