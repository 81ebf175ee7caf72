//! `edgerec ctl`: the fleet side. Sends one command to a device and prints its reply, or
//! lists the devices whose retained status the broker holds. Any MQTT 5 broker works.
//!
//! The request carries both an MQTT 5 response topic (with correlation data) and a
//! `request_id`, and `ctl` listens on both reply paths, so devices on either protocol
//! version answer it.

use std::process::ExitCode;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

use crate::config::mqtt::{validate, RawMqtt};

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

fn connect(a: &CtlArgs, id: &str) -> Result<(AsyncClient, EventLoop), MqttError> {
    let raw = RawMqtt {
        url: a.broker.clone(),
        prefix: Some(a.prefix.clone()),
        client_id: Some(format!("edgerec-ctl-{id}")),
        protocol: None,
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
    let cfg = validate(&raw, "ctl").map_err(|e| MqttError::Usage(e.to_string()))?;
    let mut o = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_max_packet_size(Some(16 << 20));
    if let Some(u) = &cfg.username {
        o.set_credentials(u, cfg.password.clone().unwrap_or_default());
    }
    if cfg.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(super::conn::tls_config(&cfg)?)),
        ));
    }
    Ok(AsyncClient::new(o, 16))
}

async fn poll(lp: &mut EventLoop, broker: &str) -> Result<Event, MqttError> {
    lp.poll().await.map_err(|e| MqttError::Broker {
        broker: broker.to_string(),
        message: e.to_string(),
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
    let (client, mut lp) = connect(a, &id)?;
    client.subscribe(&response, QoS::AtLeastOnce).await?;
    client.subscribe(&legacy, QoS::AtLeastOnce).await?;
    let cmd_topic = format!("{}/cmd/{command}", topics.base());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut subacks = 0;
    loop {
        let ev = match tokio::time::timeout_at(deadline, poll(&mut lp, &a.broker)).await {
            Ok(ev) => ev?,
            Err(_) => {
                return Err(MqttError::Timeout {
                    device: device.into(),
                    command: command.into(),
                    seconds: a.timeout,
                }
                .into())
            }
        };
        match ev {
            Event::Incoming(Packet::SubAck(_)) => {
                subacks += 1;
                if subacks == 2 {
                    let props = PublishProperties {
                        response_topic: Some(response.clone()),
                        correlation_data: Some(id.clone().into_bytes().into()),
                        ..PublishProperties::default()
                    };
                    client
                        .publish_with_properties(
                            &cmd_topic,
                            QoS::AtLeastOnce,
                            false,
                            payload.to_string(),
                            props,
                        )
                        .await?;
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                if topic != response && topic != legacy {
                    continue;
                }
                let text = String::from_utf8_lossy(&p.payload).into_owned();
                println!("{text}");
                let ok = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("ok").and_then(|o| o.as_bool()))
                    .unwrap_or(false);
                let _ = client.disconnect().await;
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
    let (client, mut lp) = connect(a, &random_id())?;
    client
        .subscribe(format!("{}/+/status", a.prefix), QoS::AtLeastOnce)
        .await?;
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
            Ok(ev) => match ev? {
                Event::Incoming(Packet::SubAck(_)) => subscribed = true,
                Event::Incoming(Packet::Publish(p)) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if let Some(d) = status_device(&a.prefix, &topic) {
                        let v = serde_json::from_slice(&p.payload).unwrap_or_default();
                        found.retain(|(x, _)| x != d);
                        found.push((d.to_string(), v));
                    }
                }
                _ => {}
            },
        }
    }
    let _ = client.disconnect().await;
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
