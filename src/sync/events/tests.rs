use super::*;

fn events(dir: &std::path::Path, cap: u64) -> Events {
    let store = Arc::new(Store::open(&dir.join("root")).unwrap());
    Events::new(store, "edge-1", true, cap).unwrap()
}

#[test]
fn emitted_events_come_back_in_order_and_go_when_acked() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events(dir.path(), 10);
    for i in 0..3 {
        ev.emit(EventKind::SourceState, i, serde_json::json!({ "n": i }))
            .unwrap();
    }
    let got = ev.pending(0, 10).unwrap();
    let bodies: Vec<&str> = got.iter().map(|(_, e)| e.body.as_str()).collect();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    let ids: std::collections::HashSet<&str> = got.iter().map(|(_, e)| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "ids are unique: {got:?}");
    ev.advance(MQTT, got[0].0 + 1).unwrap();
    assert_eq!(ev.pending(0, 10).unwrap().len(), 2);
}

#[test]
fn a_full_outbox_drops_the_oldest_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events(dir.path(), 2);
    for i in 0..5 {
        ev.emit(EventKind::StorageAlarm, i, serde_json::json!({ "n": i }))
            .unwrap();
    }
    let got = ev.pending(0, 10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1.body, r#"{"n":4}"#);
    assert_eq!(ev.dropped().unwrap(), 3);
    ev.forget_dropped(2).unwrap();
    assert_eq!(
        ev.dropped().unwrap(),
        1,
        "only what was reported is forgotten"
    );
}

#[test]
fn disabled_events_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
    let ev = Events::new(store, "edge-1", false, 10).unwrap();
    ev.emit(EventKind::UploadAlarm, 0, serde_json::json!({}))
        .unwrap();
    assert!(ev.pending(0, 10).unwrap().is_empty());
}

#[test]
fn fresh_ids_are_unique_across_threads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
    let a = Events::new(store.clone(), "edge-1", true, 10).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || (0..100).map(|_| a.fresh_id()).collect::<Vec<_>>())
        })
        .collect();
    let mut ids: std::collections::HashSet<String> = std::collections::HashSet::new();
    for t in threads {
        for id in t.join().unwrap() {
            assert!(ids.insert(id.clone()), "{id} handed out twice");
        }
    }
    // A restart (a new `Events` on the same store) draws a new run id.
    let b = Events::new(store, "edge-1", true, 10).unwrap();
    assert!(!ids.contains(&b.fresh_id()));
}

#[test]
fn events_stored_alone_are_durable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ev = events(dir.path(), 10);
    let before = ev.store().index_commits();
    ev.emit(EventKind::StorageAlarm, 1, serde_json::json!({}))
        .unwrap();
    assert_eq!(ev.store().index_commits(), before + 1, "a durable commit");
}

fn consumers(dir: &std::path::Path, names: &[&str], cap: u64) -> Events {
    let store = Arc::new(Store::open(&dir.join("root")).unwrap());
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    Events::open(store, "edge-1", &names, cap).unwrap()
}

fn emit_n(ev: &Events, n: i64) {
    for i in 0..n {
        ev.emit(EventKind::SourceState, i, serde_json::json!({ "n": i }))
            .unwrap();
    }
}

#[test]
fn an_event_stays_until_every_consumer_passed_it() {
    let dir = tempfile::tempdir().unwrap();
    let ev = consumers(dir.path(), &[MQTT, "callback:a"], 10);
    emit_n(&ev, 3);
    let keys: Vec<u64> = ev.pending(0, 10).unwrap().iter().map(|(k, _)| *k).collect();
    ev.advance(MQTT, keys[2] + 1).unwrap();
    assert_eq!(
        ev.pending(0, 10).unwrap().len(),
        3,
        "the endpoint has not passed them"
    );
    assert_eq!(ev.cursor(MQTT).unwrap(), keys[2] + 1);
    assert_eq!(ev.cursor("callback:a").unwrap(), keys[0]);
    ev.advance("callback:a", keys[1]).unwrap();
    assert_eq!(ev.pending(0, 10).unwrap().len(), 2);
    ev.advance("callback:a", keys[0]).unwrap();
    assert_eq!(
        ev.cursor("callback:a").unwrap(),
        keys[1],
        "cursors never go back"
    );
}

#[test]
fn drops_are_counted_for_each_consumer_that_had_not_passed_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let ev = consumers(dir.path(), &[MQTT, "callback:slow"], 3);
    emit_n(&ev, 3);
    let first = ev.pending(0, 10).unwrap()[0].0;
    ev.advance(MQTT, first + 3).unwrap();
    emit_n(&ev, 2);
    assert_eq!(ev.consumer_dropped("callback:slow").unwrap(), 2);
    assert_eq!(
        ev.dropped().unwrap(),
        0,
        "MQTT had passed the dropped events"
    );
    assert_eq!(ev.pending(0, 10).unwrap().len(), 3);
}

#[test]
fn a_consumer_removed_from_the_config_no_longer_pins_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ev = consumers(dir.path(), &[MQTT, "callback:gone"], 10);
    emit_n(&ev, 3);
    let next = ev.pending(0, 10).unwrap()[2].0 + 1;
    ev.advance(MQTT, next).unwrap();
    drop(ev);
    let ev = consumers(dir.path(), &[MQTT], 10);
    assert!(
        ev.pending(0, 10).unwrap().is_empty(),
        "nobody needs them any more"
    );
    assert!(ev.consumer("callback:gone").unwrap().is_none());
}

#[test]
fn a_new_consumer_starts_at_the_head_and_gets_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let ev = consumers(dir.path(), &[MQTT], 10);
    emit_n(&ev, 2);
    drop(ev);
    let ev = consumers(dir.path(), &[MQTT, "callback:new"], 10);
    emit_n(&ev, 1);
    let all = ev.pending(0, 10).unwrap();
    assert_eq!(all.len(), 3, "MQTT has not passed any");
    let mine = ev.pending(ev.cursor("callback:new").unwrap(), 10).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].1.body, r#"{"n":0}"#);
    assert_eq!(mine[0].0, all[2].0);
}

#[test]
fn the_first_consumers_of_a_log_from_before_cursors_start_at_its_oldest_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
    // An index written before consumers existed: events, no cursors.
    for i in 0..2u8 {
        let e = Event {
            id: format!("old-{i}"),
            kind: EventKind::SourceState,
            at_ms: 0,
            body: "{}".into(),
        };
        store
            .aux_commit(
                vec![AuxOp::append(AuxTable::Outbox, e.encode(), 10)],
                None,
                true,
            )
            .unwrap();
    }
    let ev = Events::new(store, "edge-1", true, 10).unwrap();
    let from = ev.cursor(MQTT).unwrap();
    assert_eq!(ev.pending(from, 10).unwrap().len(), 2);
}

#[test]
fn the_configs_event_kinds_are_the_event_kinds() {
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, crate::config::callbacks::EVENT_KINDS);
    assert_eq!(
        EventKind::parse("callback.alarm"),
        Some(EventKind::CallbackAlarm)
    );
}
