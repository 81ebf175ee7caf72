//! End to end: the event outbox against a real mosquitto broker. Events of segments that
//! close while the broker is down, or while the recorder is killed, all arrive (in order
//! when nothing crashed), and evictions are reported.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_mqtt/support.rs"]
mod support;

use std::collections::HashSet;

use common::*;
use mosquitto::{Broker, Sub};
use support::*;

#[test]
fn broker_down_while_segments_close_then_every_event_arrives_in_order() {
    let dir = workdir("mqtt-broker-down");
    let mut broker = Broker::start(dir.path());
    let args = broker.client_args();
    let events = Sub::start(&args, "edgerec/e2e/events/#", Some("e2e-outage"));
    let cfg = config(dir.path(), &broker.url(), "");
    let mut daemon = Daemon::start(&cfg);
    assert!(
        events.wait(S(20), |_| !first_ids(&events, &["segment.closed"])
            .is_empty()),
        "no first event; log:\n{}",
        daemon.log()
    );
    broker.stop();
    let before = first_ids(&events, &["segment.closed"]).len();
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
    let ids = closed_ids(&cfg);
    assert!(
        ids.len() >= before + 3,
        "few segments closed during the outage: {ids:?}"
    );
    let got = events.wait(S(30), |_| {
        first_ids(&events, &["segment.closed"]).len() >= ids.len()
    });
    let order = first_ids(&events, &["segment.closed"]);
    assert!(
        got,
        "events {order:?} vs closed {ids:?}; log:\n{}",
        daemon.log()
    );
    assert_eq!(order, ids, "every event, in order, none missing");
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
        events.wait(S(20), |_| !first_ids(&events, &["segment.closed"])
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
    let ids = closed_ids(&cfg);
    let kinds = ["segment.closed", "segment.recovered"];
    let got = events.wait(S(30), |_| {
        let seen: HashSet<u64> = first_ids(&events, &kinds).into_iter().collect();
        ids.iter().all(|i| seen.contains(i))
    });
    assert!(
        got,
        "closed {ids:?} vs events {:?}; log:\n{}",
        first_ids(&events, &kinds),
        daemon.log()
    );
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
    assert_eq!(
        ev["id"],
        format!("e2e-seg-{}-evicted", ev["file_id"].as_str().unwrap())
    );
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
    closed_ids(&cfg);
}
