//! One endpoint's delivery task: read the log from the endpoint's cursor, POST each event
//! it wants, strictly in order (the head blocks the ones after it), move the cursor after a
//! 2xx, wait as [`Delivery`] decides after anything else.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::core::{Answer, Delivery, Next};
use super::format;
use super::state::{self, Record};
use crate::config::callbacks::{standard_key, CallbackConfig, CallbackFormat};
use crate::storage::store::StoreError;
use crate::sync::events::{Event, EventKind, Events};
use crate::util::clock::SharedClock;

/// How often an idle endpoint looks at the log even without a wake-up.
const IDLE_LOOK: Duration = Duration::from_secs(5);
/// Events read from the log at once.
const BATCH: usize = 32;

/// Everything one endpoint's task needs.
#[derive(Clone)]
pub struct Endpoint {
    pub cfg: CallbackConfig,
    pub events: Events,
    pub clock: SharedClock,
    pub client: reqwest::Client,
    pub cancel: CancellationToken,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::CommitFailed(format!("index task failed: {e}"))))
}

impl Endpoint {
    fn consumer(&self) -> String {
        state::consumer_name(&self.cfg.name)
    }

    /// Sleep `d`, or return false when cancelled.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.cancel.cancelled() => false,
        }
    }

    /// Until cancelled: deliver, or (once disabled) wait.
    pub async fn run(self) {
        let seed = state::record_key(&self.cfg.name) ^ self.clock.wall_ms() as u64;
        let mut delivery = Delivery::new(self.cfg.retry_initial, self.cfg.retry_max, seed);
        let mut wake = self.events.subscribe();
        let key = match self.cfg.format {
            CallbackFormat::Standard => standard_key(&self.cfg.secret).ok(),
            CallbackFormat::Tencent => None,
        };
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let (events, consumer) = (self.events.clone(), self.consumer());
            let batch = blocking(move || {
                let from = events.cursor(&consumer)?;
                events.pending(from, BATCH)
            })
            .await;
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    warn!(callback = %self.cfg.name, error = %e, "callback: cannot read the event log");
                    if !self.pause(IDLE_LOOK).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(IDLE_LOOK) => {}
                    _ = self.cancel.cancelled() => return,
                }
                continue;
            }
            // Events the filter passes over move the cursor with the next delivery, or at
            // the end of the batch: one commit, not one per event.
            let mut skipped = None;
            for (seq, event) in batch {
                if !self.cfg.wants(event.kind.as_str()) {
                    skipped = Some(seq + 1);
                    continue;
                }
                if let Some(next) = skipped.take() {
                    self.advance(next).await;
                }
                match self
                    .deliver(&mut delivery, key.as_deref(), seq, &event)
                    .await
                {
                    Some(true) => self.advance(seq + 1).await,
                    Some(false) => {
                        // Disabled: hold until shutdown; the next start leaves it out.
                        self.cancel.cancelled().await;
                        return;
                    }
                    None => return,
                }
            }
            if let Some(next) = skipped {
                self.advance(next).await;
            }
        }
    }

    /// Attempts until delivered (`Some(true)`), disabled (`Some(false)`) or cancelled.
    async fn deliver(
        &self,
        delivery: &mut Delivery,
        key: Option<&[u8]>,
        seq: u64,
        event: &Event,
    ) -> Option<bool> {
        loop {
            let answer = tokio::select! {
                a = self.attempt(key, seq, event) => a,
                // A request under way at shutdown: the event is sent again at the next start.
                _ = self.cancel.cancelled() => return None,
            };
            match delivery.after(&answer, self.clock.wall_ms()) {
                Next::Delivered => {
                    let now = self.clock.wall_ms();
                    self.update(false, move |r| {
                        r.failures = 0;
                        r.delivered_ms = Some(now);
                    })
                    .await;
                    return Some(true);
                }
                Next::Retry { after, error } => {
                    let (now, failures) = (self.clock.wall_ms(), delivery.failures());
                    if failures == 1 || failures % 10 == 0 {
                        warn!(callback = %self.cfg.name, event = %event.id, error = %error,
                            retry_in = ?after, failures, "callback: not delivered; retrying");
                    }
                    self.update(false, move |r| {
                        r.failures = failures;
                        r.last_error = Some((now, error));
                    })
                    .await;
                    if !self.pause(after).await {
                        return None;
                    }
                }
                Next::Disable { error } => {
                    self.disable(error).await;
                    return Some(false);
                }
            }
        }
    }

    /// One POST of `event`.
    async fn attempt(&self, key: Option<&[u8]>, seq: u64, event: &Event) -> Answer {
        let device = self.events.device();
        let now_s = self.clock.wall_ms().div_euclid(1000);
        let mut rq = self
            .client
            .post(&self.cfg.url)
            .timeout(self.cfg.timeout)
            .header("content-type", "application/json");
        let body = match self.cfg.format {
            CallbackFormat::Standard => {
                let body = crate::sync::events::payload(device, event, Some(seq));
                if let Some(k) = key {
                    rq = rq
                        .header("webhook-id", &event.id)
                        .header("webhook-timestamp", now_s.to_string())
                        .header(
                            "webhook-signature",
                            format::standard_signature(k, &event.id, now_s, &body),
                        );
                }
                body
            }
            CallbackFormat::Tencent => {
                match format::tencent_body(event, &self.cfg.secret, now_s) {
                    Some(b) => b,
                    // Not a finished-file event: `wants` keeps these away.
                    None => {
                        return Answer::Status {
                            code: 204,
                            retry_after: None,
                        }
                    }
                }
            }
        };
        match rq.body(body).send().await {
            Ok(resp) => Answer::Status {
                code: resp.status().as_u16(),
                retry_after: resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
            Err(e) => Answer::Failed(error_text(&e)),
        }
    }

    /// Move the cursor past `next - 1` (volatile: a crash sends it again).
    async fn advance(&self, next: u64) {
        let (events, consumer) = (self.events.clone(), self.consumer());
        if let Err(e) = blocking(move || events.advance(&consumer, next)).await {
            warn!(callback = %self.cfg.name, error = %e, "callback: cannot move the cursor; events will be sent again");
        }
    }

    /// Change the stored record (volatile unless `durable`).
    async fn update(&self, durable: bool, f: impl FnOnce(&mut Record) + Send + 'static) {
        let (store, name) = (self.events.store().clone(), self.cfg.name.clone());
        let r = blocking(move || {
            let mut r = state::load(&store, &name)?.unwrap_or_default();
            f(&mut r);
            store.aux_commit(vec![r.op()], None, durable)
        })
        .await;
        if let Err(e) = r {
            warn!(callback = %self.cfg.name, error = %e, "callback: cannot store its state");
        }
    }

    /// 410: disabled durably, with `callback.alarm` in the same commit.
    async fn disable(&self, error: String) {
        warn!(callback = %self.cfg.name, url = %self.cfg.url, error = %error,
            "callback: disabled; change its config to enable it again");
        let (events, name, url) = (
            self.events.clone(),
            self.cfg.name.clone(),
            self.cfg.url.clone(),
        );
        let now = self.clock.wall_ms();
        let r = blocking(move || {
            let store = events.store().clone();
            let mut r = state::load(&store, &name)?.unwrap_or_default();
            r.disabled = Some((now, error.clone()));
            r.last_error = Some((now, error.clone()));
            let body = serde_json::json!({
                "alarm": "callback_disabled",
                "callback": name,
                "url": url,
                "error": error,
            });
            let mut ops = vec![r.op()];
            ops.extend(events.ops(EventKind::CallbackAlarm, events.fresh_id(), now, body));
            store.aux_commit(ops, None, true)
        })
        .await;
        if let Err(e) = r {
            warn!(callback = %self.cfg.name, error = %e, "callback: cannot store that it is disabled");
        } else {
            info!(callback = %self.cfg.name, "callback.alarm raised");
        }
    }
}

/// The error and its causes, on one line.
fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The client every endpoint shares: rustls (ring), http and https.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Keep `ep` running: a task that ends early (a panic) is started again after a pause.
pub async fn supervise(ep: Endpoint) {
    let mut restarts = crate::util::backoff::Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(60),
        state::record_key(&ep.cfg.name),
    );
    let ep = Arc::new(ep);
    loop {
        let run = tokio::spawn((*ep).clone().run());
        match run.await {
            Ok(()) => return,
            Err(e) => {
                warn!(callback = %ep.cfg.name, error = %e, "callback: delivery task failed; restarting");
                if !ep.pause(restarts.next_delay()).await {
                    return;
                }
            }
        }
    }
}
