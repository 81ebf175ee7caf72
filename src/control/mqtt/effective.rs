//! The effective config as published on the retained `{prefix}/{device}/config` topic:
//! what the recorder runs with, secrets left out (passwords) or redacted (camera URLs).

use crate::config::mqtt::Protocol;
use crate::config::Config;
use crate::util::redact::redact_url;

fn secs(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The JSON of `cfg` for the config topic.
pub fn effective_config(cfg: &Config) -> serde_json::Value {
    use serde_json::json;
    let s = &cfg.storage;
    json!({
        "device_id": cfg.device_id,
        "storage": {
            "root": s.root.display().to_string(),
            "max_bytes": s.max_bytes,
            // A percentage as written ("10%"), or bytes.
            "min_free": match s.min_free {
                crate::config::MinFree::Percent(p) => json!(format!("{p}%")),
                crate::config::MinFree::Bytes(b) => json!(b),
            },
            "max_age": s.max_age.map(secs),
            "retention_interval": secs(s.retention_interval),
        },
        "templates": cfg.templates.iter().map(|t| json!({
            "name": t.name,
            "formats": t.formats.iter().map(|f| format!("{f:?}").to_lowercase()).collect::<Vec<_>>(),
            "interval": secs(t.interval),
            "fragment": secs(t.fragment),
            "naming": t.naming,
        })).collect::<Vec<_>>(),
        "rules": cfg.rules.iter().map(|r| json!({
            "template": r.template, "app": r.app, "stream": r.stream, "priority": r.priority,
        })).collect::<Vec<_>>(),
        "streams": cfg.streams.iter().map(|st| json!({
            "name": st.name, "app": st.app, "source": redact_url(&st.source),
            "max_bytes": st.max_bytes,
        })).collect::<Vec<_>>(),
        "ingest": {
            "rtsp": cfg.ingest.rtsp.map(|a| a.to_string()),
            "rtmp": cfg.ingest.rtmp.map(|a| a.to_string()),
            "users": cfg.ingest.users.iter().map(|u| u.user.clone()).collect::<Vec<_>>(),
        },
        "mqtt": cfg.mqtt.as_ref().map(|m| json!({
            "url": redact_url(&m.url),
            "prefix": m.prefix,
            "client_id": m.client_id,
            "protocol": match m.protocol { Protocol::V5 => "v5", Protocol::V311 => "v3.1.1" },
            "username": m.username,
            "ca": m.ca, "cert": m.cert, "key": m.key,
            "keepalive": secs(m.keepalive),
            "telemetry_interval": secs(m.telemetry_interval),
            "outbox_capacity": m.outbox_capacity,
            "max_payload": m.max_payload,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_config_topic() {
        let cfg = Config::from_toml_str(
            r#"device_id = "e1"
[storage]
root = "d"
max_bytes = "1GiB"
[[streams]]
name = "cam"
source = "rtsp://admin:camsecret@10.0.0.5/live"
[mqtt]
url = "mqtt://127.0.0.1"
username = "u"
password = "brokersecret"
"#,
        )
        .unwrap();
        let text = effective_config(&cfg).to_string();
        assert!(!text.contains("camsecret"), "{text}");
        assert!(!text.contains("brokersecret"), "{text}");
        assert!(text.contains("rtsp://***@10.0.0.5/live"), "{text}");
        assert!(text.contains(r#""device_id":"e1""#), "{text}");
        assert_eq!(
            effective_config(&cfg)["storage"]["min_free"],
            "10%",
            "{text}"
        );
    }
}
