//! The connection to the broker: rumqttc options from the config (MQTT 5 or 3.1.1, rustls
//! TLS with a CA and an optional client certificate, credentials, a persistent session,
//! the Last Will) and [`Link`], one face for both protocol versions.
//!
//! Requests go straight into the event loop's queue, and the queue is emptied after a
//! connection error: rumqttc never retransmits anything of ours on its own. The publisher
//! resends unacknowledged events from the outbox instead, so the outbox stays the one
//! source of truth for what was delivered (see [`super::publisher`]).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{v5, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::mqtt::Protocol;
use crate::config::MqttConfig;

use super::route::Inbound;
use super::MqttError;

/// How long the broker keeps our session (subscriptions, queued commands) while we are away.
const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;
/// Largest packet we accept; larger command payloads than `max_payload` up to this size are
/// refused with `payload_too_large`, bigger ones are not delivered to us (MQTT 5) or end the
/// connection (3.1.1).
const MAX_INCOMING_PACKET: usize = 16 << 20;
/// rumqttc's in-flight limit; the publisher keeps well below it.
const INFLIGHT: u16 = 100;

/// What the event loop reported, protocol-neutral.
#[derive(Debug)]
pub enum Net {
    /// CONNACK: connected (again).
    Connected { session_present: bool },
    /// A message on a subscribed topic.
    Message(Inbound),
    /// A PUBLISH of ours went out with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged our QoS 1 PUBLISH with this packet id.
    Acked(u16),
    /// Anything else (pings, SUBACK, ...).
    Other,
}

/// One MQTT connection of either protocol version.
pub enum Link {
    V4 {
        // Held only so the event loop's request channel stays open.
        _client: rumqttc::AsyncClient,
        lp: Box<rumqttc::EventLoop>,
    },
    V5 {
        _client: v5::AsyncClient,
        lp: Box<v5::EventLoop>,
    },
}

impl Link {
    /// Options and event loop for `cfg`; nothing connects until the first [`Link::poll`].
    pub fn new(cfg: &MqttConfig, status_topic: &str, will: Vec<u8>) -> Result<Link, MqttError> {
        let transport = if cfg.tls {
            Some(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls_config(cfg)?),
            )))
        } else {
            None
        };
        Ok(match cfg.protocol {
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
                o.set_keep_alive(cfg.keepalive)
                    .set_clean_session(false)
                    .set_inflight(INFLIGHT)
                    .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
                    .set_last_will(rumqttc::LastWill::new(
                        status_topic,
                        will,
                        QoS::AtLeastOnce,
                        true,
                    ));
                if let Some(u) = &cfg.username {
                    o.set_credentials(u, cfg.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, lp) = rumqttc::AsyncClient::new(o, 16);
                Link::V4 {
                    _client: client,
                    lp: Box::new(lp),
                }
            }
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
                o.set_keep_alive(cfg.keepalive)
                    .set_clean_start(false)
                    .set_session_expiry_interval(Some(SESSION_EXPIRY_S))
                    .set_outgoing_inflight_upper_limit(INFLIGHT)
                    .set_max_packet_size(Some(MAX_INCOMING_PACKET as u32))
                    .set_last_will(v5::mqttbytes::v5::LastWill::new(
                        status_topic,
                        will,
                        v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                if let Some(u) = &cfg.username {
                    o.set_credentials(u, cfg.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, lp) = v5::AsyncClient::new(o, 16);
                Link::V5 {
                    _client: client,
                    lp: Box::new(lp),
                }
            }
        })
    }

    /// Next thing that happened; connects first when not connected. After an error, call
    /// again (after a backoff) to reconnect.
    pub async fn poll(&mut self) -> Result<Net, String> {
        match self {
            Link::V4 { lp, .. } => {
                use rumqttc::{Event, Outgoing, Packet};
                match lp.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Ok(Net::Connected {
                        session_present: c.session_present,
                    }),
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Net::Message(Inbound {
                        topic: String::from_utf8_lossy(p.topic.as_bytes()).into_owned(),
                        payload: p.payload.to_vec(),
                        response_topic: None,
                        correlation: None,
                    })),
                    Ok(Event::Incoming(Packet::PubAck(a))) => Ok(Net::Acked(a.pkid)),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Net::Sent(pkid)),
                    Ok(_) => Ok(Net::Other),
                    Err(e) => {
                        lp.pending.clear();
                        Err(e.to_string())
                    }
                }
            }
            Link::V5 { lp, .. } => {
                use v5::mqttbytes::v5::Packet;
                use v5::Event;
                match lp.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Ok(Net::Connected {
                        session_present: c.session_present,
                    }),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let props = p.properties.unwrap_or_default();
                        Ok(Net::Message(Inbound {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            response_topic: props.response_topic,
                            correlation: props.correlation_data.map(|b| b.to_vec()),
                        }))
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => Ok(Net::Acked(a.pkid)),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Ok(Net::Sent(pkid)),
                    Ok(_) => Ok(Net::Other),
                    Err(e) => {
                        lp.pending.clear();
                        Err(e.to_string())
                    }
                }
            }
        }
    }

    /// Queue a PUBLISH (QoS 1 when `reliable`, else QoS 0). Each one is reported back as
    /// [`Net::Sent`], in queue order.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        reliable: bool,
        retain: bool,
        correlation: Option<Vec<u8>>,
    ) {
        match self {
            Link::V4 { lp, .. } => {
                let qos = if reliable {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                let mut p = rumqttc::Publish::new(topic, qos, payload);
                p.retain = retain;
                lp.pending.push_back(rumqttc::Request::Publish(p));
            }
            Link::V5 { lp, .. } => {
                use v5::mqttbytes::v5::{Publish, PublishProperties};
                let qos = if reliable {
                    v5::mqttbytes::QoS::AtLeastOnce
                } else {
                    v5::mqttbytes::QoS::AtMostOnce
                };
                let props = correlation.map(|c| PublishProperties {
                    correlation_data: Some(c.into()),
                    payload_format_indicator: Some(1),
                    content_type: Some("application/json".into()),
                    ..PublishProperties::default()
                });
                let mut p = Publish::new(topic, qos, payload, props);
                p.retain = retain;
                lp.pending.push_back(v5::Request::Publish(p));
            }
        }
    }

    /// Queue a SUBSCRIBE at QoS 1.
    pub fn subscribe(&mut self, filter: &str) {
        match self {
            Link::V4 { lp, .. } => {
                lp.pending
                    .push_back(rumqttc::Request::Subscribe(rumqttc::Subscribe::new(
                        filter,
                        QoS::AtLeastOnce,
                    )))
            }
            Link::V5 { lp, .. } => {
                use v5::mqttbytes::v5::{Filter, Subscribe};
                lp.pending.push_back(v5::Request::Subscribe(Subscribe::new(
                    Filter::new(filter, v5::mqttbytes::QoS::AtLeastOnce),
                    None,
                )))
            }
        }
    }

    /// Queue a DISCONNECT (a clean one: the broker does not publish the Last Will).
    pub fn disconnect(&mut self) {
        match self {
            Link::V4 { lp, .. } => lp
                .pending
                .push_back(rumqttc::Request::Disconnect(rumqttc::Disconnect)),
            Link::V5 { lp, .. } => lp.pending.push_back(v5::Request::Disconnect),
        }
    }
}

/// rustls client config: the CA bundle (or the system's roots) and the client certificate.
pub fn tls_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, MqttError> {
    let tls_err = |path: &std::path::Path, message: String| MqttError::Tls {
        path: path.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| tls_err(ca, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(ca, e.to_string()))?;
            if certs.is_empty() {
                return Err(tls_err(ca, "no PEM certificate in the file".into()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| tls_err(ca, format!("unusable CA certificate: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls {
            path: Default::default(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots);
    match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls_err(cert, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(cert, e.to_string()))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls_err(cert, format!("certificate and key do not fit: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// First delay before reconnecting; it doubles up to [`RECONNECT_MAX`].
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// Longest delay between reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
