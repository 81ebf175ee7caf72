//! The connection to the broker: rumqttc options from the config (MQTT 5 or 3.1.1, rustls
//! TLS with a CA and an optional client certificate, credentials, a persistent session,
//! the Last Will) and [`Link`], one face for both protocol versions.
//!
//! The connection is split in two: [`Link`] queues requests (publish, subscribe,
//! disconnect) on rumqttc's request channel, in order, without waiting; [`Loop`] is the
//! event loop, polled by exactly one future that is never dropped half-way (rumqttc's
//! `poll` is not safe to cancel while it writes). After a connection error the loop's own
//! retransmission queue is emptied: rumqttc never resends anything of ours. The publisher
//! resends unacknowledged events from the outbox instead, so the outbox stays the one
//! record of what was delivered (see [`super::publisher`]); nothing is queued while
//! disconnected, so no stale request can go out after a reconnect.

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
    /// SUBACK: a subscription is in place.
    Subscribed,
    /// Anything else (pings, SUBACK, ...).
    Other,
}

/// Room in rumqttc's request channel: the publisher's window plus replies and status.
const REQUESTS: usize = 512;

/// The request side of a connection, either protocol version.
#[derive(Clone)]
pub enum Link {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The event loop of a connection, either protocol version.
pub enum Loop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// How a connection presents itself to the broker.
pub struct Session<'a> {
    /// The Last Will: topic and payload (retained, QoS 1).
    pub will: Option<(&'a str, Vec<u8>)>,
    /// Keep the session (subscriptions, queued messages) while away; else a clean one.
    pub persistent: bool,
}

impl Link {
    /// Options, requests and event loop for the recorder's connection to `cfg`: a
    /// persistent session, with the `offline` status `will` as its Last Will on
    /// `status_topic`. Nothing connects until the first [`Loop::poll`].
    pub fn new(
        cfg: &MqttConfig,
        status_topic: &str,
        will: Vec<u8>,
    ) -> Result<(Link, Loop), MqttError> {
        Link::with_session(
            cfg,
            Session {
                will: Some((status_topic, will)),
                persistent: true,
            },
        )
    }

    /// [`Link::new`] with any [`Session`] (`edgerec ctl` uses a clean one without a will).
    pub fn with_session(cfg: &MqttConfig, session: Session<'_>) -> Result<(Link, Loop), MqttError> {
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
                    .set_clean_session(!session.persistent)
                    .set_inflight(INFLIGHT)
                    .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET);
                if let Some((topic, will)) = session.will {
                    o.set_last_will(rumqttc::LastWill::new(topic, will, QoS::AtLeastOnce, true));
                }
                if let Some(u) = &cfg.username {
                    o.set_credentials(u, cfg.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, lp) = rumqttc::AsyncClient::new(o, REQUESTS);
                (Link::V4(client), Loop::V4(Box::new(lp)))
            }
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
                o.set_keep_alive(cfg.keepalive)
                    .set_clean_start(!session.persistent)
                    .set_outgoing_inflight_upper_limit(INFLIGHT)
                    .set_max_packet_size(Some(MAX_INCOMING_PACKET as u32));
                if session.persistent {
                    o.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
                }
                if let Some((topic, will)) = session.will {
                    o.set_last_will(v5::mqttbytes::v5::LastWill::new(
                        topic,
                        will,
                        v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                }
                if let Some(u) = &cfg.username {
                    o.set_credentials(u, cfg.password.clone().unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, lp) = v5::AsyncClient::new(o, REQUESTS);
                (Link::V5(client), Loop::V5(Box::new(lp)))
            }
        })
    }

    /// Queue a PUBLISH (QoS 1 when `reliable`, else QoS 0). Each queued one is reported
    /// back as [`Net::Sent`], in queue order. False when it could not be queued.
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        reliable: bool,
        retain: bool,
        correlation: Option<Vec<u8>>,
    ) -> bool {
        match self {
            Link::V4(c) => {
                let qos = if reliable {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload).is_ok()
            }
            Link::V5(c) => {
                use v5::mqttbytes::v5::PublishProperties;
                let qos = if reliable {
                    v5::mqttbytes::QoS::AtLeastOnce
                } else {
                    v5::mqttbytes::QoS::AtMostOnce
                };
                let props = PublishProperties {
                    correlation_data: correlation.map(Into::into),
                    payload_format_indicator: Some(1),
                    content_type: Some("application/json".into()),
                    ..PublishProperties::default()
                };
                c.try_publish_with_properties(topic, qos, retain, payload, props)
                    .is_ok()
            }
        }
    }

    /// Queue a command request at QoS 1: on MQTT 5 with `response_topic` and
    /// `correlation`; on 3.1.1 those cannot be carried (the payload's `request_id` is).
    pub fn request(
        &self,
        topic: &str,
        payload: Vec<u8>,
        response_topic: &str,
        correlation: Vec<u8>,
    ) -> bool {
        match self {
            Link::V4(c) => c
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_ok(),
            Link::V5(c) => {
                let props = v5::mqttbytes::v5::PublishProperties {
                    response_topic: Some(response_topic.to_string()),
                    correlation_data: Some(correlation.into()),
                    content_type: Some("application/json".into()),
                    ..Default::default()
                };
                c.try_publish_with_properties(
                    topic,
                    v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload,
                    props,
                )
                .is_ok()
            }
        }
    }

    /// Queue a SUBSCRIBE at QoS 1.
    pub fn subscribe(&self, filter: &str) -> bool {
        match self {
            Link::V4(c) => c.try_subscribe(filter, QoS::AtLeastOnce).is_ok(),
            Link::V5(c) => c
                .try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce)
                .is_ok(),
        }
    }

    /// Queue a DISCONNECT (a clean one: the broker does not publish the Last Will).
    pub fn disconnect(&self) {
        let _ = match self {
            Link::V4(c) => c.try_disconnect().is_ok(),
            Link::V5(c) => c.try_disconnect().is_ok(),
        };
    }
}

impl Loop {
    /// Next thing that happened; connects first when not connected. After an error, call
    /// again (after a backoff) to reconnect.
    pub async fn poll(&mut self) -> Result<Net, String> {
        match self {
            Loop::V4(lp) => {
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
                    Ok(Event::Incoming(Packet::SubAck(_))) => Ok(Net::Subscribed),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Net::Sent(pkid)),
                    Ok(_) => Ok(Net::Other),
                    Err(e) => {
                        lp.pending.clear();
                        Err(e.to_string())
                    }
                }
            }
            Loop::V5(lp) => {
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
                    Ok(Event::Incoming(Packet::SubAck(_))) => Ok(Net::Subscribed),
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
