//! Each endpoint's durable state beside its cursor: whether a 410 disabled it, its last
//! error, and what it is (name, url, format, fingerprint), in the index's `callbacks` table
//! under a hash of its name. The status report and telemetry read it from the index, so
//! `edgerec status` shows it with or without a running recorder.

use serde::{Deserialize, Serialize};

use crate::config::callbacks::{CallbackConfig, CallbackFormat};
use crate::storage::store::{AuxOp, AuxTable, Store, StoreError};
use crate::sync::events::{Event, MQTT};

/// The event-log consumer name of the endpoint named `name`.
pub fn consumer_name(name: &str) -> String {
    format!("callback:{name}")
}

/// The `callbacks` table key of the endpoint named `name` (FNV-1a, 64 bits).
pub fn record_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One endpoint's stored state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub url: String,
    pub format: String,
    /// [`CallbackConfig::fingerprint`] of the config it was last run with.
    pub fingerprint: String,
    /// Since when (wall ms) and why it is disabled (a 410).
    pub disabled: Option<(i64, String)>,
    /// When (wall ms) and what the last failed attempt got.
    pub last_error: Option<(i64, String)>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// When (wall ms) the last event was delivered.
    pub delivered_ms: Option<i64>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a record encodes")
    }

    pub fn op(&self) -> AuxOp {
        AuxOp::put(AuxTable::Callbacks, record_key(&self.name), self.encode())
    }
}

/// The stored state of the endpoint named `name` (blocking).
pub fn load(store: &Store, name: &str) -> Result<Option<Record>, StoreError> {
    Ok(store
        .aux_get(AuxTable::Callbacks, record_key(name))?
        .and_then(|v| postcard::from_bytes(&v).ok()))
}

fn format_name(f: CallbackFormat) -> &'static str {
    match f {
        CallbackFormat::Standard => "standard",
        CallbackFormat::Tencent => "tencent",
    }
}

/// At start (blocking, durable): bring the records in line with the config. An endpoint
/// whose config changed (its fingerprint) is enabled again and its last error forgotten;
/// records of endpoints no longer configured are removed. Returns each endpoint's record,
/// in config order; the ones with `disabled` get no task and no cursor.
pub fn prepare(store: &Store, cfgs: &[CallbackConfig]) -> Result<Vec<Record>, StoreError> {
    let mut ops = Vec::new();
    let mut out = Vec::new();
    for c in cfgs {
        let fp = c.fingerprint();
        let mut r = load(store, &c.name)?.unwrap_or_default();
        if r.fingerprint != fp {
            r = Record {
                delivered_ms: r.delivered_ms,
                ..Record::default()
            };
        }
        r.name = c.name.clone();
        r.url = c.url.clone();
        r.format = format_name(c.format).into();
        r.fingerprint = fp;
        ops.push(r.op());
        out.push(r);
    }
    let keep: Vec<u64> = cfgs.iter().map(|c| record_key(&c.name)).collect();
    for (k, _) in store.aux_scan(AuxTable::Callbacks, 0, usize::MAX)? {
        if !keep.contains(&k) {
            ops.push(AuxOp::remove(AuxTable::Callbacks, k));
        }
    }
    store.aux_commit(ops, None, true)?;
    Ok(out)
}

/// The event-log consumers for this run: MQTT when configured, and every endpoint not
/// disabled.
pub fn consumers(mqtt: bool, records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = mqtt.then(|| MQTT.to_string()).into_iter().collect();
    out.extend(
        records
            .iter()
            .filter(|r| r.disabled.is_none())
            .map(|r| consumer_name(&r.name)),
    );
    out
}

/// One endpoint in `edgerec status --json` and the MQTT telemetry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub name: String,
    pub url: String,
    pub format: String,
    /// Events in the log not yet passed (delivered or skipped by the filter).
    pub lag_events: u64,
    /// When the oldest of them was stored (wall ms).
    pub oldest_at_ms: Option<i64>,
    /// Its age in seconds (filled by [`aged`] where the wall clock is known).
    pub oldest_age_s: Option<i64>,
    /// Events the log's capacity dropped before this endpoint passed them.
    pub dropped: u64,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Consecutive failed attempts (0 when the last one delivered).
    pub failures: u32,
    pub delivered_ms: Option<i64>,
}

/// `list` with the age of each endpoint's oldest undelivered event at wall time `now_ms`.
pub fn aged(mut list: Vec<EndpointStatus>, now_ms: i64) -> Vec<EndpointStatus> {
    for e in &mut list {
        e.oldest_age_s = e.oldest_at_ms.map(|at| (now_ms - at).max(0) / 1000);
    }
    list
}

/// Every configured endpoint's status from the index (blocking; ages: see [`aged`]).
pub fn status(store: &Store) -> Result<Vec<EndpointStatus>, StoreError> {
    let consumers = store.aux_consumers(AuxTable::Outbox)?;
    let mut out = Vec::new();
    for (_, v) in store.aux_scan(AuxTable::Callbacks, 0, usize::MAX)? {
        let Ok(r) = postcard::from_bytes::<Record>(&v) else {
            continue;
        };
        let c = consumers.iter().find(|c| c.name == consumer_name(&r.name));
        let (mut lag, mut oldest, dropped) = (0, None, c.map_or(0, |c| c.dropped));
        if let Some(c) = c {
            let pending = store.aux_scan(AuxTable::Outbox, c.cursor, usize::MAX)?;
            lag = pending.len() as u64;
            oldest = pending
                .first()
                .and_then(|(_, v)| Event::decode(v))
                .map(|e| e.at_ms);
        }
        out.push(EndpointStatus {
            name: r.name,
            url: r.url,
            format: r.format,
            lag_events: lag,
            oldest_at_ms: oldest,
            oldest_age_s: None,
            dropped,
            disabled: r.disabled.is_some(),
            disabled_reason: r.disabled.map(|d| d.1),
            last_error: r.last_error.as_ref().map(|e| e.1.clone()),
            last_error_ms: r.last_error.map(|e| e.0),
            failures: r.failures,
            delivered_ms: r.delivered_ms,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfgs(secret: &str, names: &[&str]) -> Vec<CallbackConfig> {
        let mut t =
            String::from("device_id = \"d\"\n[storage]\nroot = \"/tmp/x\"\nmax_bytes = \"1GiB\"\n");
        for n in names {
            t += &format!(
                "[[callbacks]]\nname = \"{n}\"\nurl = \"http://127.0.0.1:9/{n}\"\nsecret = \"{secret}\"\n"
            );
        }
        Config::from_toml_str(&t).unwrap().callbacks
    }

    const A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const B: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn a_disabled_endpoint_stays_disabled_until_its_config_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let recs = prepare(&store, &cfgs(A, &["x", "y"])).unwrap();
        assert_eq!(consumers(true, &recs), ["mqtt", "callback:x", "callback:y"]);
        let mut x = recs[0].clone();
        x.disabled = Some((5, "HTTP 410 Gone".into()));
        store.aux_commit(vec![x.op()], None, true).unwrap();

        let recs = prepare(&store, &cfgs(A, &["x", "y"])).unwrap();
        assert!(recs[0].disabled.is_some(), "a restart keeps it disabled");
        assert_eq!(
            consumers(false, &recs),
            ["callback:y"],
            "and gives it no cursor"
        );

        let recs = prepare(&store, &cfgs(B, &["x", "y"])).unwrap();
        assert!(recs[0].disabled.is_none(), "a new secret enables it again");
    }

    #[test]
    fn an_endpoint_removed_from_the_config_loses_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        prepare(&store, &cfgs(A, &["x", "y"])).unwrap();
        prepare(&store, &cfgs(A, &["y"])).unwrap();
        assert!(load(&store, "x").unwrap().is_none());
        let names: Vec<String> = status(&store)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["y"]);
    }
}
