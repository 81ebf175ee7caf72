//! Shared by the MQTT end-to-end tests: a config reporting to a test broker, status and
//! reply helpers, and the segment events' ids as they arrived.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::mosquitto::{request, Sub};

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

/// `file_id`s of segment events, in the order they first arrived.
pub fn first_ids(sub: &Sub, kinds: &[&str]) -> Vec<u64> {
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
        let id: u64 = v["file_id"].as_str().expect("file_id").parse().unwrap();
        assert_eq!(
            v["id"].as_str().unwrap(),
            format!(
                "e2e-seg-{id}-{}",
                v["kind"].as_str().unwrap().trim_start_matches("segment.")
            ),
            "{v}"
        );
        if seen.insert(id) {
            out.push(id);
        }
    }
    out
}

pub fn closed_ids(cfg: &Path) -> Vec<u64> {
    let rows = segments(cfg);
    for r in &rows {
        for f in &r.files {
            assert_decodes(&cfg.parent().unwrap().join("data").join(&f.path));
        }
    }
    let mut ids: Vec<u64> = rows
        .iter()
        .filter(|r| r.state == "closed")
        .map(|r| r.id.as_u64().unwrap())
        .collect();
    ids.sort();
    ids
}
