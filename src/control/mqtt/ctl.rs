//! `edgerec ctl`: the fleet side. Sends one command to a device and prints its reply, or
//! lists the devices whose retained status the broker holds. Any MQTT broker works.
//!
//! With MQTT 5 (the default) the request carries both a response topic (with correlation
//! data) and a `request_id`, and `ctl` listens on both reply paths, so devices on either
//! protocol version answer it. With `--protocol v3.1.1` (brokers or networks without MQTT
//! 5) it carries the `request_id` only and listens on `{prefix}/{device}/reply/{request_id}`.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::mqtt::{validate, Protocol, RawMqtt};

use super::conn::{Link, Loop, Net, Session};
use super::topics::{status_device, Topics};
use super::MqttError;

/// `edgerec ctl`.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// Broker URL: mqtt://host:1883 or mqtts://host:8883.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Topic prefix the devices use (`mqtt.prefix`).
    #[arg(long, default_value = "edgerec")]
    pub prefix: String,
    /// Seconds to wait for the reply (or, for `devices`, for retained statuses).
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// User name at the broker.
    #[arg(long)]
    pub username: Option<String>,
    /// Password at the broker (prefer the EDGEREC_MQTT_PASSWORD environment variable).
    #[arg(long)]
    pub password: Option<String>,
    /// PEM CA bundle for mqtts:// (default: the system's roots).
    #[arg(long)]
    pub ca: Option<String>,
    /// PEM client certificate (mTLS).
    #[arg(long)]
    pub cert: Option<String>,
    /// PEM private key of --cert.
    #[arg(long)]
    pub key: Option<String>,
    /// MQTT protocol version: `v5` or `v3.1.1` (replies then come on
    /// `{prefix}/{device}/reply/{request_id}`).
    #[arg(long, default_value = "v5")]
    pub protocol: String,
    /// `devices`, or `DEVICE COMMAND [JSON]` (e.g. `edge-001 status` or
    /// `edge-001 record.start '{"stream":"cam1","duration":"10min"}'`).
    #[arg(required = true, num_args = 1..=3)]
    pub args: Vec<String>,
}

/// Run `edgerec ctl`.
pub fn main(a: CtlArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match a.args.as_slice() {
            [one] if one == "devices" => devices(&a).await,
            [device, command] => command_reply(&a, device, command, "{}").await,
            [device, command, json] => command_reply(&a, device, command, json).await,
            _ => Err(MqttError::Usage(
                "usage: edgerec ctl [--broker URL] devices | DEVICE COMMAND [JSON]".into(),
            )
            .into()),
        }
    })
}

fn random_id() -> String {
    let mut b = [0u8; 6];
    // Process id and time are enough to keep concurrent ctl calls apart.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let x = t ^ (u64::from(std::process::id()) << 32);
    b.copy_from_slice(&x.to_le_bytes()[..6]);
    b.iter().map(|v| format!("{v:02x}")).collect()
}

fn connect(a: &CtlArgs, id: &str) -> Result<(Link, Loop, Protocol), MqttError> {
    let raw = RawMqtt {
        url: a.broker.clone(),
        prefix: Some(a.prefix.clone()),
        client_id: Some(format!("edgerec-ctl-{id}")),
        protocol: Some(a.protocol.clone()),
        username: a.username.clone(),
        password: a
            .password
            .clone()
            .or_else(|| std::env::var("EDGEREC_MQTT_PASSWORD").ok()),
        ca: a.ca.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        keepalive: None,
        telemetry_interval: None,
        outbox_capacity: None,
        max_payload: None,
    };
    let cfg = validate(&raw, "ctl")
        .map_err(|e| MqttError::Usage(e.to_string().replace("mqtt.protocol", "--protocol")))?;
    let session = Session {
        will: None,
        persistent: false,
    };
    let (link, lp) = Link::with_session(&cfg, session)?;
    Ok((link, lp, cfg.protocol))
}

async fn poll(lp: &mut Loop, broker: &str) -> Result<Net, MqttError> {
    lp.poll().await.map_err(|message| MqttError::Broker {
        broker: broker.to_string(),
        message,
    })
}

async fn command_reply(
    a: &CtlArgs,
    device: &str,
    command: &str,
    json: &str,
) -> anyhow::Result<ExitCode> {
    let mut payload: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| MqttError::Usage(format!("the JSON argument is not valid JSON: {e}")))?;
    let id = random_id();
    let topics = Topics::new(&a.prefix, device);
    let legacy = topics
        .reply(&id)
        .ok_or_else(|| MqttError::Usage(format!("bad device {device:?}")))?;
    if let Some(obj) = payload.as_object_mut() {
        obj.insert("request_id".into(), id.clone().into());
    }
    let response = format!("{}/ctl/{id}", topics.base());
    let (link, mut lp, protocol) = connect(a, &id)?;
    // MQTT 5 listens on both reply paths; 3.1.1 has only the request_id one.
    let mut subscriptions = vec![legacy.as_str()];
    if protocol == Protocol::V5 {
        subscriptions.push(response.as_str());
    }
    for s in &subscriptions {
        link.subscribe(s);
    }
    let cmd_topic = format!("{}/cmd/{command}", topics.base());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut subacks = 0;
    loop {
        let net = match tokio::time::timeout_at(deadline, poll(&mut lp, &a.broker)).await {
            Ok(net) => net?,
            Err(_) => {
                return Err(MqttError::Timeout {
                    device: device.into(),
                    command: command.into(),
                    seconds: a.timeout,
                }
                .into())
            }
        };
        match net {
            Net::Subscribed => {
                subacks += 1;
                if subacks == subscriptions.len() {
                    let body = payload.to_string().into_bytes();
                    link.request(&cmd_topic, body, &response, id.clone().into_bytes());
                }
            }
            Net::Message(m) => {
                if m.topic != response && m.topic != legacy {
                    continue;
                }
                let text = String::from_utf8_lossy(&m.payload).into_owned();
                println!("{text}");
                let ok = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("ok").and_then(|o| o.as_bool()))
                    .unwrap_or(false);
                link.disconnect();
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), poll(&mut lp, &a.broker)).await;
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            _ => {}
        }
    }
}

async fn devices(a: &CtlArgs) -> anyhow::Result<ExitCode> {
    let (link, mut lp, _) = connect(a, &random_id())?;
    link.subscribe(&format!("{}/+/status", a.prefix));
    let mut found: Vec<(String, serde_json::Value)> = Vec::new();
    let hard = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut subscribed = false;
    loop {
        // Retained messages follow the SUBACK at once; stop after a quiet moment.
        let wait = if subscribed {
            Duration::from_millis(700)
        } else {
            Duration::from_secs(a.timeout)
        };
        let until = (tokio::time::Instant::now() + wait).min(hard);
        match tokio::time::timeout_at(until, poll(&mut lp, &a.broker)).await {
            Err(_) if subscribed => break,
            Err(_) => {
                return Err(MqttError::Broker {
                    broker: a.broker.clone(),
                    message: "no SUBACK".into(),
                }
                .into())
            }
            Ok(net) => match net? {
                Net::Subscribed => subscribed = true,
                Net::Message(m) => {
                    if let Some(d) = status_device(&a.prefix, &m.topic) {
                        let v = serde_json::from_slice(&m.payload).unwrap_or_default();
                        found.retain(|(x, _)| x != d);
                        found.push((d.to_string(), v));
                    }
                }
                _ => {}
            },
        }
    }
    link.disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), poll(&mut lp, &a.broker)).await;
    found.sort_by(|x, y| x.0.cmp(&y.0));
    println!("{:<24} {:<8} {:<10} uptime_s", "device", "state", "version");
    for (d, v) in found {
        let s = |k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        };
        println!(
            "{:<24} {:<8} {:<10} {}",
            d,
            s("state"),
            s("version"),
            s("uptime_s")
        );
    }
    Ok(ExitCode::SUCCESS)
}
