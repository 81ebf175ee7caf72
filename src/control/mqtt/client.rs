//! The MQTT task: one loop owning the connection. Everything it does is driven from here so
//! the order of publishes on the wire is the order they were decided in.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::MqttConfig;
use crate::control::commands::{code, Commands, Reply};
use crate::util::backoff::Backoff;

use super::conn::{Link, Loop, Net, RECONNECT_MAX, RECONNECT_MIN};
use super::publisher::{self, Window, WINDOW};
use super::route::{self, ReplyTo, Route};
use super::topics::Topics;
use super::Context;

mod watch;

/// Requests from the rest of the recorder.
pub enum Control {
    /// Republish the retained effective config.
    Config(serde_json::Value),
}

/// How often the outbox and the live config are looked at even without a wake-up.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How long a clean disconnect may take at shutdown.
const GOODBYE: Duration = Duration::from_secs(3);

fn status_payload(state: &str, ctx: &Context, reason: Option<&str>) -> Vec<u8> {
    let now = ctx.clock.wall_ms();
    let mut v = serde_json::json!({
        "state": state,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": (now - ctx.started_ms).max(0) / 1000,
        "at_ms": now,
    });
    if let Some(r) = reason {
        v["reason"] = r.into();
    }
    v.to_string().into_bytes()
}

/// How often an unusable TLS setup (a missing or bad CA, certificate or key file) is
/// tried again: recording goes on meanwhile, and a provisioning step may fix the files.
const TLS_RETRY: Duration = Duration::from_secs(30);

/// The MQTT task for `cfg`: builds the connection (retrying while its TLS files are
/// unusable, with an error in the log each time) and runs it until `stop`.
pub async fn run(
    cfg: MqttConfig,
    ctx: Context,
    control: mpsc::UnboundedReceiver<Control>,
    stop: CancellationToken,
) {
    let topics = Topics::new(&cfg.prefix, &ctx.config.device_id);
    // The Last Will: the broker publishes it when we vanish without a DISCONNECT.
    let will = serde_json::json!({
        "state": "offline",
        "version": env!("CARGO_PKG_VERSION"),
        "reason": "connection lost",
    })
    .to_string()
    .into_bytes();
    let (link, lp) = loop {
        match Link::new(&cfg, &topics.status(), will.clone()) {
            Ok(l) => break l,
            Err(e) => {
                error!(alarm = "mqtt", error = %e, retry_in_s = TLS_RETRY.as_secs(), "mqtt: cannot set up the connection; events wait in the outbox");
                tokio::select! {
                    _ = tokio::time::sleep(TLS_RETRY) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    Client {
        last_config: ctx.config.clone(),
        commands: ctx.commands.clone(),
        config_json: super::effective_config(&ctx.config),
        cfg,
        topics,
        ctx,
        link,
        window: Window::new(WINDOW),
        connected: false,
    }
    .run(lp, control, stop)
    .await
}

struct Client {
    cfg: MqttConfig,
    ctx: Context,
    topics: Topics,
    link: Link,
    window: Window,
    connected: bool,
    commands: Option<Commands>,
    config_json: serde_json::Value,
    /// The config last published on the config topic.
    last_config: std::sync::Arc<crate::config::Config>,
}

impl Client {
    async fn run(
        mut self,
        mut lp: Loop,
        mut control: mpsc::UnboundedReceiver<Control>,
        stop: CancellationToken,
    ) {
        let seed = self.ctx.clock.wall_ms() as u64 ^ u64::from(std::process::id());
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX, seed);
        let (reply_tx, mut replies) = mpsc::unbounded_channel::<(ReplyTo, Reply)>();
        let mut telemetry = tokio::time::interval(self.cfg.telemetry_interval);
        telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let events = self.ctx.events.clone();
        info!(broker = %self.cfg.url, client_id = %self.cfg.client_id, "mqtt: connecting");
        'run: loop {
            // One poll future lives until it completes: everything else happens beside it.
            let polled = {
                let poll = lp.poll();
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        r = &mut poll => break r,
                        _ = stop.cancelled() => break 'run,
                        Some((to, reply)) = replies.recv() => self.reply(&to, &reply),
                        _ = events.produced() => self.fill().await,
                        _ = look.tick() => self.look().await,
                        _ = telemetry.tick() => self.telemetry().await,
                        Some(c) = control.recv() => match c {
                            Control::Config(v) => {
                                self.config_json = v;
                                self.publish_config();
                            }
                        },
                    }
                }
            };
            match polled {
                Ok(net) => {
                    let was = self.connected;
                    self.on_net(net, &reply_tx, &mut backoff).await;
                    if self.connected && !was {
                        // A first report right after (re)connecting.
                        telemetry.reset_immediately();
                    }
                }
                Err(e) => {
                    if std::mem::take(&mut self.connected) {
                        warn!(error = %e, "mqtt: connection lost; events wait in the outbox");
                    } else {
                        debug!(error = %e, "mqtt: cannot connect");
                    }
                    self.window.reset();
                    let delay = backoff.next_delay();
                    if backoff.attempts() == 3 {
                        warn!(broker = %self.cfg.url, error = %e, "mqtt: broker unreachable; retrying with backoff");
                    }
                    let until = tokio::time::Instant::now() + delay;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = stop.cancelled() => break 'run,
                            _ = look.tick() => self.look().await,
                        }
                    }
                }
            }
        }
        self.goodbye(&mut lp).await;
    }

    /// The periodic look: the live config, the outbox. (The disk is the
    /// storage watchdog's, which runs without MQTT too.)
    async fn look(&mut self) {
        self.watch_config();
        self.fill().await;
    }

    async fn on_net(
        &mut self,
        net: Net,
        reply_tx: &mpsc::UnboundedSender<(ReplyTo, Reply)>,
        backoff: &mut Backoff,
    ) {
        match net {
            Net::Connected { session_present } => {
                info!(broker = %self.cfg.url, session_present, "mqtt: connected");
                self.connected = true;
                backoff.reset();
                self.window.reset();
                self.link.subscribe(&self.topics.command_filter());
                let online = status_payload("online", &self.ctx, None);
                self.publish_other(&self.topics.status(), online, true, true);
                self.publish_config();
                self.fill().await;
            }
            Net::Sent(pkid) => self.window.numbered(pkid),
            Net::Acked(pkid) => {
                if self.window.acked(pkid).is_some() {
                    let events = self.ctx.events.clone();
                    let next = self.window.passed().unwrap_or(0);
                    let mqtt = crate::sync::events::MQTT;
                    match tokio::task::spawn_blocking(move || events.advance(mqtt, next)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!(error = %e, "mqtt: cannot move the cursor past delivered events; they will be sent again")
                        }
                        Err(e) => warn!(error = %e, "mqtt: outbox task failed"),
                    }
                    self.fill().await;
                }
            }
            Net::Message(msg) => match route::route(&self.topics, &msg, self.cfg.max_payload) {
                Route::Ignore => {
                    debug!(topic = %msg.topic, "mqtt: ignoring a message not addressed to this device")
                }
                Route::Refuse {
                    name,
                    reply_to,
                    reply,
                } => {
                    warn!(command = %name, bytes = msg.payload.len(), "mqtt: command refused: {}", reply.message.as_deref().unwrap_or(""));
                    match reply_to {
                        Some(to) => self.reply(&to, &reply),
                        None => {
                            warn!(command = %name, "mqtt: no response topic or request_id: cannot reply")
                        }
                    }
                }
                Route::Run {
                    name,
                    payload,
                    reply_to,
                } => {
                    info!(command = %name, "mqtt: command");
                    if reply_to.is_none() {
                        info!(command = %name, "mqtt: the command has no response topic or request_id: its reply is not sent");
                    }
                    let commands = self.commands.clone();
                    let tx = reply_tx.clone();
                    tokio::spawn(async move {
                        let reply = match commands {
                            Some(c) => c.handle(&name, &payload).await,
                            None => Reply::error(
                                code::UNAVAILABLE,
                                "this recorder runs no command handler",
                            ),
                        };
                        if let Some(to) = reply_to {
                            let _ = tx.send((to, reply));
                        }
                    });
                }
            },
            Net::Subscribed | Net::Other => {}
        }
    }

    /// Publish something that is not an outbox event; false when it could not be queued.
    fn publish_other(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        reliable: bool,
        retain: bool,
    ) -> bool {
        if self.link.publish(topic, payload, reliable, retain, None) {
            self.window.sending_other();
            true
        } else {
            warn!(topic, "mqtt: request queue full; a message is dropped");
            false
        }
    }

    fn reply(&mut self, to: &ReplyTo, reply: &Reply) {
        if !self.connected {
            warn!(topic = %to.topic, "mqtt: not connected; a command reply is lost");
            return;
        }
        if self.link.publish(
            &to.topic,
            reply.to_bytes(),
            true,
            false,
            to.correlation.clone(),
        ) {
            self.window.sending_other();
        } else {
            warn!(topic = %to.topic, "mqtt: request queue full; a command reply is lost");
        }
    }

    fn publish_config(&mut self) {
        if self.connected {
            let body = self.config_json.to_string().into_bytes();
            self.publish_other(&self.topics.config(), body, true, true);
        }
    }

    /// Publish outbox events, oldest first, while the window has room.
    async fn fill(&mut self) {
        if !self.connected || self.window.room() == 0 {
            return;
        }
        let (events, scan) = (self.ctx.events.clone(), self.window.scan_len());
        let from = self.window.read_from();
        let got = match tokio::task::spawn_blocking(move || {
            let from = match from {
                Some(f) => f,
                None => events.cursor(crate::sync::events::MQTT)?,
            };
            events.pending(from, scan)
        })
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                warn!(error = %e, "mqtt: cannot read the outbox");
                return;
            }
            Err(_) => return,
        };
        let device = self.ctx.config.device_id.clone();
        for (key, event) in got {
            if self.window.in_flight(key) {
                continue;
            }
            if self.window.room() == 0 {
                break;
            }
            let topic = self.topics.event(event.kind);
            if !self.link.publish(
                &topic,
                publisher::payload(&device, &event, Some(key)),
                true,
                false,
                None,
            ) {
                // Queue full: the next fill resumes from this event.
                break;
            }
            self.window.sending(key);
        }
    }

    async fn telemetry(&mut self) {
        if !self.connected {
            return;
        }
        let (store, events) = (self.ctx.store.clone(), self.ctx.events.clone());
        let live = crate::control::report::Live {
            board: self.ctx.board.clone(),
            pid: std::process::id(),
            started_ms: self.ctx.started_ms,
            storage: None,
            clock: self.ctx.time.clone(),
        };
        let device = self.ctx.config.device_id.clone();
        let quota = self.last_config.storage.max_bytes;
        let (now, wall) = (self.ctx.clock.now(), self.ctx.clock.wall_ms());
        let report = tokio::task::spawn_blocking(move || {
            super::telemetry::gather(&store, &live, &events, &device, quota, now, wall)
        })
        .await;
        let Ok((v, dropped)) = report else { return };
        let t = self.topics.telemetry();
        // The drop count is forgotten only once a report carrying it was handed over.
        if self.publish_other(&t, v.to_string().into_bytes(), false, false) && dropped > 0 {
            let events = self.ctx.events.clone();
            let r = tokio::task::spawn_blocking(move || events.forget_dropped(dropped)).await;
            if let Ok(Err(e)) = r {
                warn!(error = %e, "mqtt: cannot lower the outbox's dropped count; it is reported again");
            }
        }
    }

    /// At shutdown: `offline`, retained, then a clean DISCONNECT (no Last Will).
    async fn goodbye(&mut self, lp: &mut Loop) {
        if !self.connected {
            return;
        }
        let deadline = tokio::time::Instant::now() + GOODBYE;
        // Deliver what the last segment closes produced, within the deadline.
        self.fill().await;
        while self.window.room() < WINDOW {
            match tokio::time::timeout_at(deadline, lp.poll()).await {
                Ok(Ok(Net::Sent(pkid))) => self.window.numbered(pkid),
                Ok(Ok(Net::Acked(pkid))) => {
                    if self.window.acked(pkid).is_some() {
                        let events = self.ctx.events.clone();
                        let next = self.window.passed().unwrap_or(0);
                        let mqtt = crate::sync::events::MQTT;
                        let _ =
                            tokio::task::spawn_blocking(move || events.advance(mqtt, next)).await;
                        self.fill().await;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => break,
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let offline = status_payload("offline", &self.ctx, Some("shutdown"));
        self.publish_other(&self.topics.status(), offline, true, true);
        self.link.disconnect();
        while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, lp.poll()).await {}
        info!("mqtt: disconnected");
    }
}
