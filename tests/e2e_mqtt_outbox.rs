//! End to end: the event outbox against a real mosquitto broker. Events of segments that
//! close while the broker is down, or while the recorder is killed, all arrive, in the
//! order they were stored (`event_seq` increases with each first delivery); a full outbox
//! drops the oldest and telemetry reports how many; evictions are reported.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_mqtt/support.rs"]
mod support;

use std::collections::HashSet;

use common::*;
use mosquitto::{Broker, Sub};
use support::*;

const ALL_KINDS: [&str; 8] = [
    "segment.closed",
    "segment.uploaded",
    "segment.recovered",
    "segment.evicted",
    "task.status",
    "source.state",
    "storage.alarm",
    "upload.alarm",
];

/// Every event's first delivery came in the order the events were stored.
fn assert_stored_order(sub: &Sub) {
    let seqs: Vec<u64> = first_events(sub, &ALL_KINDS)
        .iter()
        .map(|v| v["event_seq"].as_u64().unwrap_or_else(|| panic!("{v}")))
        .collect();
    assert!(!seqs.is_empty());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of order: {seqs:?}"
    );
}

#[test]
fn broker_down_while_segments_close_then_every_event_arrives_in_order() {
    let dir = workdir("mqtt-broker-down");
    let mut broker = Broker::start(dir.path());
    let args = broker.client_args();
    let events = Sub::start(&args, "edgerec/e2e/events/#", Some("e2e-outage"));
    let cfg = config(dir.path(), &broker.url(), "");
    let mut daemon = Daemon::start(&cfg);
    assert!(
        events.wait(S(20), |_| !first_seqs(&events, &["segment.closed"])
            .is_empty()),
        "no first event; log:\n{}",
        daemon.log()
    );
    broker.stop();
    let before = first_seqs(&events, &["segment.closed"]).len();
    std::thread::sleep(S(7));
    broker.start_again();
    // The recorder reconnects on its own backoff schedule (at most 30 s apart).
    assert!(
        wait_until(S(40), || daemon.log().matches("mqtt: connected").count()
            >= 2),
        "no reconnection; log:\n{}",
        daemon.log()
    );
    std::thread::sleep(S(1));
    daemon.terminate(S(20));
    let seqs = closed_seqs(&cfg);
    assert!(
        seqs.len() >= before + 3,
        "few segments closed during the outage: {seqs:?}"
    );
    let got = events.wait(S(30), |_| {
        first_seqs(&events, &["segment.closed"]).len() >= seqs.len()
    });
    let order = first_seqs(&events, &["segment.closed"]);
    assert!(
        got,
        "events {order:?} vs closed {seqs:?}; log:\n{}",
        daemon.log()
    );
    assert_eq!(order, seqs, "every event, in order, none missing");
    assert_stored_order(&events);
}

#[test]
fn kill_9_while_the_broker_is_down_then_restart_both_and_every_event_arrives() {
    let dir = workdir("mqtt-kill9");
    let mut broker = Broker::start(dir.path());
    let args = broker.client_args();
    let events = Sub::start(&args, "edgerec/e2e/events/#", Some("e2e-kill9"));
    let cfg = config(dir.path(), &broker.url(), "");
    let mut daemon = Daemon::start(&cfg);
    assert!(
        events.wait(S(20), |_| !first_seqs(&events, &["segment.closed"])
            .is_empty()),
        "no first event; log:\n{}",
        daemon.log()
    );
    broker.stop();
    std::thread::sleep(S(6));
    daemon.kill9();
    broker.start_again();
    let mut daemon = Daemon::start(&cfg);
    std::thread::sleep(S(4));
    daemon.terminate(S(20));
    let seqs = closed_seqs(&cfg);
    let kinds = ["segment.closed", "segment.recovered"];
    let got = events.wait(S(30), |_| {
        let seen: HashSet<u64> = first_seqs(&events, &kinds).into_iter().collect();
        seqs.iter().all(|i| seen.contains(i))
    });
    assert!(
        got,
        "closed {seqs:?} vs events {:?}; log:\n{}",
        first_seqs(&events, &kinds),
        daemon.log()
    );
    // In the order stored, across the crash: the restarted recorder's events (recovery's
    // included) come after everything stored before the kill.
    assert_stored_order(&events);
}

#[test]
fn a_full_outbox_drops_the_oldest_and_telemetry_reports_the_drops() {
    let dir = workdir("mqtt-outbox-full");
    let mut broker = Broker::start(dir.path());
    let args = broker.client_args();
    // A persistent subscriber: queued telemetry (QoS 0 included) reaches it after outages.
    let all = Sub::start(&args, "edgerec/e2e/#", Some("e2e-full"));
    let cfg = config(dir.path(), &broker.url(), "outbox_capacity = 4");
    let mut daemon = Daemon::start(&cfg);
    assert!(
        all.wait(S(20), |_| !first_seqs(&all, &["segment.closed"]).is_empty()),
        "no first event; log:\n{}",
        daemon.log()
    );
    broker.stop();
    let pre = first_seqs(&all, &["segment.closed"]);
    let closed_now = || {
        segments(&cfg)
            .iter()
            .filter(|r| r.state == "closed")
            .count()
    };
    let at_stop = closed_now();
    // More events than the outbox holds while the broker is away.
    assert!(
        wait_until(S(60), || closed_now() >= at_stop + 8),
        "too few segments closed; log:\n{}",
        daemon.log()
    );
    broker.start_again();
    let dropped = |all: &Sub| -> u64 {
        all.json_on("edgerec/e2e/telemetry")
            .iter()
            .map(|t| t["outbox"]["dropped"].as_u64().unwrap())
            .sum()
    };
    assert!(
        all.wait(S(60), |_| dropped(&all) > 0),
        "no telemetry reported drops; log:\n{}",
        daemon.log()
    );
    // A few more reports: the count is reported once, not again.
    let reports = all.json_on("edgerec/e2e/telemetry").len();
    assert!(
        all.wait(S(20), |_| all.json_on("edgerec/e2e/telemetry").len()
            >= reports + 3)
    );
    daemon.terminate(S(20));
    let closed = closed_seqs(&cfg);
    assert!(
        all.wait(S(20), |_| first_seqs(&all, &["segment.closed"]).last()
            == closed.last()),
        "the newest close never arrived"
    );
    let got = first_seqs(&all, &["segment.closed"]);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted, "what arrives, arrives in order");
    let missing: Vec<u64> = closed
        .iter()
        .copied()
        .filter(|s| !got.contains(s))
        .collect();
    assert!(!missing.is_empty(), "nothing was dropped: {got:?}");
    let last_pre = *pre.last().unwrap();
    let after: Vec<u64> = got.iter().copied().filter(|s| *s > last_pre).collect();
    assert!(
        missing.iter().all(|m| *m > last_pre && *m < after[0]),
        "the oldest events of the outage were dropped: missing {missing:?}, arrived {got:?}"
    );
    assert!(
        after.len() >= 4,
        "the outbox's newest events arrived: {after:?}"
    );
    assert_eq!(
        dropped(&all),
        missing.len() as u64,
        "telemetry counts every drop, once"
    );
    assert_stored_order(&all);
}

#[test]
fn retention_evictions_are_reported_as_never_uploaded() {
    let dir = workdir("mqtt-evicted");
    let broker = Broker::start(dir.path());
    let all = Sub::start(&broker.client_args(), "edgerec/e2e/events/#", None);
    let cfg = config(dir.path(), &broker.url(), "");
    // About two 2 s segments fit: retention evicts from the third on.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_bytes = \"1GiB\"", "max_bytes = \"600KiB\"");
    std::fs::write(&cfg, text).unwrap();
    let mut daemon = Daemon::start(&cfg);
    let evicted = "edgerec/e2e/events/segment.evicted";
    assert!(
        all.wait(S(30), |_| !all.json_on(evicted).is_empty()),
        "no segment.evicted; log:\n{}",
        daemon.log()
    );
    daemon.terminate(S(20));
    let ev = &all.json_on(evicted)[0];
    assert_eq!(ev["never_uploaded"], true, "{ev}");
    assert_eq!(ev["id"], format!("e2e-seg-cam-{}-evicted", ev["seq"]));
    let path = dir
        .path()
        .join("data")
        .join(ev["files"][0]["path"].as_str().unwrap());
    assert!(!path.exists(), "{} still exists", path.display());
    let closed: Vec<String> = all
        .json_on("edgerec/e2e/events/segment.closed")
        .iter()
        .map(|c| c["file_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        closed.contains(&ev["file_id"].as_str().unwrap().to_string()),
        "evicted before its close was reported"
    );
    closed_seqs(&cfg);
}
