//! Shared by the MQTT end-to-end tests: a config reporting to a test broker, status and
//! reply helpers, and the segment events' ids as they arrived.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::mosquitto::{publish, request, Sub};

pub const S: fn(u64) -> Duration = Duration::from_secs;

/// A config recording a looping clip into 2 s segments, reporting to `url`.
pub fn config(dir: &Path, url: &str, mqtt_extra: &str) -> PathBuf {
    let src = clip(&ClipSpec::h264(6, 1));
    let mut t = TestConfig::new(&dir.join("data"));
    t.interval = "2s".into();
    t = t.stream("cam", &format!("file:{}?loop=true", src.display()));
    let text = format!(
        "{}\n[mqtt]\nurl = \"{url}\"\ntelemetry_interval = \"1s\"\n{mqtt_extra}\n",
        t.to_toml()
    );
    let path = dir.join("edgerec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn last_status(sub: &Sub) -> Option<serde_json::Value> {
    sub.json_on("edgerec/e2e/status").pop()
}

pub fn wait_state(sub: &Sub, state: &str, timeout: Duration) -> bool {
    sub.wait(timeout, |_| {
        last_status(sub).is_some_and(|v| v["state"] == state)
    })
}

pub fn reply(args: &[String], cmd: &str, payload: &str) -> serde_json::Value {
    let topic = format!("edgerec/e2e/cmd/{cmd}");
    let text =
        request(args, &topic, payload, 10).unwrap_or_else(|| panic!("no reply to {cmd} {payload}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply {text:?}: {e}"))
}

/// Sequence numbers of `cam`'s segment events of `kinds`, in the order each event id first
/// arrived. Checks every id is `e2e-seg-{stream}-{seq}-{fact}` (stable across crashes).
pub fn first_seqs(sub: &Sub, kinds: &[&str]) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for v in first_events(sub, kinds) {
        assert_eq!(
            v["id"].as_str().unwrap(),
            format!(
                "e2e-seg-{}-{}-{}",
                v["stream_id"].as_str().unwrap(),
                v["seq"],
                v["kind"].as_str().unwrap().trim_start_matches("segment.")
            ),
            "{v}"
        );
        if v["stream_id"] == "cam" && seen.insert(v["seq"].as_u64().unwrap()) {
            out.push(v["seq"].as_u64().unwrap());
        }
    }
    out
}

/// The events of `kinds`, each id once, in the order each id first arrived.
pub fn first_events(sub: &Sub, kinds: &[&str]) -> Vec<serde_json::Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (topic, p) in sub.messages() {
        if !kinds
            .iter()
            .any(|k| topic == format!("edgerec/e2e/events/{k}"))
        {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        if seen.insert(v["id"].as_str().unwrap().to_string()) {
            out.push(v);
        }
    }
    out
}

/// Sequence numbers of `cam`'s closed segments, each file checked by ffmpeg.
pub fn closed_seqs(cfg: &Path) -> Vec<u64> {
    let rows = segments(cfg);
    for r in &rows {
        for f in &r.files {
            assert_decodes(&cfg.parent().unwrap().join("data").join(&f.path));
        }
    }
    let mut seqs: Vec<u64> = rows
        .iter()
        .filter(|r| r.state == "closed" && r.stream == "cam")
        .map(|r| r.seq)
        .collect();
    seqs.sort();
    seqs
}

/// Command round trips through mosquitto's own clients: `mosquitto_pub` sends the request
/// (MQTT 5 with a response topic and correlation data, or 3.1.1 with a `request_id`) and an
/// MQTT 5 `mosquitto_sub` reads the reply with its correlation data.
pub struct Replies {
    sub: Sub,
    args: Vec<String>,
    n: std::sync::atomic::AtomicU64,
}

impl Replies {
    /// Listens on `e2e/replies/#` (MQTT 5 response topics) and `edgerec/e2e/reply/#`.
    pub fn start(args: &[String]) -> Replies {
        let sub = Sub::start_v5(
            args,
            &["e2e/replies/#", "edgerec/e2e/reply/#"],
            "e2e/replies/probe",
        );
        Replies {
            sub,
            args: args.to_vec(),
            n: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    fn wait_on(&self, topic: &str, timeout: Duration) -> Option<(String, serde_json::Value)> {
        let mut found = None;
        self.sub.wait(timeout, |_| {
            found = self
                .sub
                .messages_v5()
                .into_iter()
                .find(|(t, _, _)| t == topic)
                .map(|(_, c, p)| {
                    let v = serde_json::from_str(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
                    (c, v)
                });
            found.is_some()
        });
        found
    }

    /// `cmd` on `device`'s topic over MQTT 5; the reply on the response topic, whose
    /// correlation data must be the request's.
    pub fn v5_to(&self, device: &str, cmd: &str, payload: &str) -> Option<serde_json::Value> {
        let n = self.next();
        let (resp, corr) = (format!("e2e/replies/{n}"), format!("corr-{n}"));
        publish(
            &self.args,
            &format!("edgerec/{device}/cmd/{cmd}"),
            payload,
            &[
                "-V",
                "mqttv5",
                "-D",
                "publish",
                "response-topic",
                &resp,
                "-D",
                "publish",
                "correlation-data",
                &corr,
            ],
        );
        let timeout = if device == "e2e" { S(30) } else { S(3) };
        let (c, v) = self.wait_on(&resp, timeout)?;
        assert_eq!(c, corr, "the reply echoes the correlation data: {v}");
        Some(v)
    }

    /// [`Replies::v5_to`] on this test's device `e2e`.
    pub fn v5(&self, cmd: &str, payload: &str) -> serde_json::Value {
        self.v5_to("e2e", cmd, payload)
            .unwrap_or_else(|| panic!("no MQTT 5 reply to {cmd} {payload}"))
    }

    /// `cmd` over MQTT 3.1.1 with a `request_id` added to `payload` (a JSON object); the
    /// reply on `edgerec/e2e/reply/{request_id}`.
    pub fn v311(&self, cmd: &str, payload: serde_json::Value) -> serde_json::Value {
        let id = self.send_v311(cmd, payload, &[]);
        self.reply_v311(&id, S(30))
            .unwrap_or_else(|| panic!("no reply on edgerec/e2e/reply/{id} to {cmd}"))
    }

    /// Publish `cmd` over 3.1.1 with a fresh `request_id` (returned), without waiting.
    pub fn send_v311(&self, cmd: &str, mut payload: serde_json::Value, extra: &[&str]) -> String {
        let id = format!("r-{}", self.next());
        payload["request_id"] = id.clone().into();
        let mut opts = vec!["-V", "mqttv311"];
        opts.extend(extra);
        publish(
            &self.args,
            &format!("edgerec/e2e/cmd/{cmd}"),
            &payload.to_string(),
            &opts,
        );
        id
    }

    /// The reply to 3.1.1 request `id`, waiting up to `timeout`.
    pub fn reply_v311(&self, id: &str, timeout: Duration) -> Option<serde_json::Value> {
        let (c, v) = self.wait_on(&format!("edgerec/e2e/reply/{id}"), timeout)?;
        assert_eq!(c, "", "a 3.1.1 reply carries no correlation data");
        Some(v)
    }
}
