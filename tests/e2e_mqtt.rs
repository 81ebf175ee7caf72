//! End to end: the recorder against a real mosquitto broker on loopback, with mosquitto's
//! own clients (`mosquitto_sub`, `mosquitto_pub`, `mosquitto_rr`) and `edgerec ctl` as the
//! fleet side: the retained status and Last Will, command round trips and bad input,
//! telemetry, `source.state`, and mTLS with certificates made by the test. The outbox across
//! broker outages and kill -9 is `e2e_mqtt_outbox.rs`.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_mqtt/support.rs"]
mod support;

use common::*;
use mosquitto::{publish, request, Broker, Certs, Sub};
use support::*;

#[test]
fn status_commands_bad_input_ctl_events_and_telemetry_over_mqtt5() {
    let dir = workdir("mqtt-round-trips");
    let broker = Broker::start(dir.path());
    let args = broker.client_args();
    let all = Sub::start(&args, "edgerec/e2e/#", None);
    let cfg = config(dir.path(), &broker.url(), "max_payload = \"1KiB\"");
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_state(&all, "online", S(15)),
        "no online status; log:\n{}",
        daemon.log()
    );
    let online = last_status(&all).unwrap();
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        online["uptime_s"].is_u64() && online["at_ms"].is_i64(),
        "{online}"
    );

    // Commands over MQTT 5: reply on the response topic.
    let ok = reply(&args, "ping", "{}");
    assert_eq!(ok["ok"], true, "{ok}");
    let bad = reply(&args, "status", "{not json");
    assert_eq!(
        (bad["ok"].clone(), bad["code"].clone()),
        (false.into(), "bad_json".into()),
        "{bad}"
    );
    let unknown = reply(&args, "no.such.command", "{}");
    assert_eq!(unknown["code"], "unknown_command", "{unknown}");
    let types = reply(&args, "record.stop", r#"{"stream": 5}"#);
    assert_eq!(types["code"], "bad_field", "{types}");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    let too_large = reply(&args, "config.set", &big);
    assert_eq!(too_large["code"], "payload_too_large", "{too_large}");
    assert!(too_large["message"].as_str().unwrap().contains("1024"));
    // Another device's topic, and a deeper topic, are never answered.
    assert_eq!(request(&args, "edgerec/e2e2/cmd/ping", "{}", 2), None);
    assert_eq!(request(&args, "edgerec/e2e/cmd/ping/x", "{}", 2), None);

    // MQTT 3.1.1 style: the reply goes to reply/{request_id}.
    publish(
        &args,
        "edgerec/e2e/cmd/ping",
        r#"{"request_id":"r-311"}"#,
        &["-V", "mqttv311"],
    );
    assert!(
        all.wait(S(10), |m| m.iter().any(|(t, p)| t
            == "edgerec/e2e/reply/r-311"
            && p.contains("\"ok\":true"))),
        "no reply on reply/r-311: {:?}",
        all.messages()
    );

    // The fleet side CLI.
    let out = cli(
        &["ctl", "--broker", &broker.url(), "e2e", "ping"],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\"ok\":true"), "{out:?}");
    let out = cli(
        &["ctl", "--broker", &broker.url(), "e2e", "nope"],
        dir.path(),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("unknown_command"), "{out:?}");
    let out = cli(&["ctl", "--broker", &broker.url(), "devices"], dir.path());
    assert_eq!(out.code, 0, "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("e2e "))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("online"), "{line}");

    // Events: closed segments, with the callback fields; the stream connected.
    assert!(
        all.wait(S(20), |_| all
            .json_on("edgerec/e2e/events/segment.closed")
            .len()
            >= 2),
        "no segment.closed events; log:\n{}",
        daemon.log()
    );
    let ev = &all.json_on("edgerec/e2e/events/segment.closed")[0];
    assert_eq!(ev["stream_id"], "cam");
    assert_eq!(ev["device"], "e2e");
    assert_eq!(ev["file_format"], "mp4");
    assert_eq!(ev["files"][0]["format"], "fmp4");
    assert!(
        ev["file_size"].as_u64().unwrap() > 0 && ev["end_ms"].as_i64() > ev["start_ms"].as_i64(),
        "{ev}"
    );
    let path = dir
        .path()
        .join("data")
        .join(ev["files"][0]["path"].as_str().unwrap());
    assert_decodes(&path);
    let states = all.json_on("edgerec/e2e/events/source.state");
    assert!(
        states
            .iter()
            .any(|s| s["stream_id"] == "cam" && s["state"] == "connected"),
        "{states:?}"
    );

    // Telemetry and the retained effective config.
    let tel = all.json_on("edgerec/e2e/telemetry");
    let t = tel.last().expect("telemetry");
    assert!(t["process"]["rss_bytes"].as_u64().unwrap() > 0, "{t}");
    assert!(t["disk"]["free_bytes"].as_u64().unwrap() > 0, "{t}");
    assert!(t["outbox"]["dropped"].is_u64(), "{t}");
    assert!(
        tel.iter().any(|t| t["streams"]["recording"] == 1),
        "{tel:?}"
    );
    let conf = all.json_on("edgerec/e2e/config");
    assert_eq!(conf.last().expect("config")["device_id"], "e2e");
    // config.set over MQTT: persisted, and the retained config follows.
    let set = reply(
        &args,
        "config.set",
        r#"{"patch":{"retention":{"max_age":"3d"}}}"#,
    );
    assert_eq!(set["ok"], true, "{set}");
    assert!(
        all.wait(S(10), |_| all
            .json_on("edgerec/e2e/config")
            .last()
            .is_some_and(|c| c["storage"]["max_age"] == "3days")),
        "config topic not republished: {:?}",
        all.json_on("edgerec/e2e/config")
    );
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("3d"));

    // A clean shutdown says offline (retained), and delivered every closed segment.
    daemon.terminate(S(20));
    assert!(wait_state(&all, "offline", S(5)), "{:?}", all.messages());
    assert_eq!(last_status(&all).unwrap()["reason"], "shutdown");
    let seqs = closed_seqs(&cfg);
    assert!(
        all.wait(S(10), |_| first_seqs(&all, &["segment.closed"]) == seqs),
        "closed {seqs:?} vs events {:?}",
        first_seqs(&all, &["segment.closed"])
    );
}

#[test]
fn the_last_will_marks_a_killed_recorder_offline() {
    let dir = workdir("mqtt-will");
    let broker = Broker::start(dir.path());
    let sub = Sub::start(&broker.client_args(), "edgerec/e2e/status", None);
    let cfg = config(dir.path(), &broker.url(), "keepalive = \"5s\"");
    let mut daemon = Daemon::start(&cfg);
    assert!(wait_state(&sub, "online", S(15)), "log:\n{}", daemon.log());
    daemon.kill9();
    assert!(wait_state(&sub, "offline", S(15)), "{:?}", sub.messages());
    assert_eq!(last_status(&sub).unwrap()["reason"], "connection lost");
    for r in segments(&cfg) {
        for f in &r.files {
            assert_decodes(&dir.path().join("data").join(&f.path));
        }
    }
}

#[test]
fn mutual_tls_with_generated_certificates_over_mqtt_3_1_1() {
    let dir = workdir("mqtt-mtls");
    let certs = Certs::generate(&dir.path().join("pki"));
    let broker = Broker::start_mtls(dir.path(), &certs);
    let mut args = broker.client_args();
    for (flag, p) in [
        ("--cafile", &certs.ca),
        ("--cert", &certs.client_cert),
        ("--key", &certs.client_key),
    ] {
        args.push(flag.into());
        args.push(p.display().to_string());
    }
    let all = Sub::start(&args, "edgerec/e2e/#", None);
    let extra = format!(
        "protocol = \"v3.1.1\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let cfg = config(dir.path(), &broker.url(), &extra);
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_state(&all, "online", S(15)),
        "log:\n{}\nbroker:\n{}",
        daemon.log(),
        broker.log()
    );
    publish(
        &args,
        "edgerec/e2e/cmd/ping",
        r#"{"request_id":"tls-1"}"#,
        &[],
    );
    assert!(
        all.wait(S(10), |m| m.iter().any(|(t, p)| t
            == "edgerec/e2e/reply/tls-1"
            && p.contains("\"ok\":true"))),
        "{:?}",
        all.messages()
    );
    // `edgerec ctl` over mTLS (MQTT 5) reaches a 3.1.1 device through its request_id.
    let (ca, cert, key) = (
        certs.ca.display().to_string(),
        certs.client_cert.display().to_string(),
        certs.client_key.display().to_string(),
    );
    let out = cli(
        &[
            "ctl",
            "--broker",
            &broker.url(),
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "e2e",
            "ping",
        ],
        dir.path(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\"ok\":true"), "{out:?}");
    // Without a client certificate the broker refuses the connection.
    let no_cert = std::process::Command::new("mosquitto_pub")
        .args(broker.client_args())
        .args(["--cafile", certs.ca.to_str().unwrap(), "-t", "x", "-m", "y"])
        .output()
        .unwrap();
    assert!(
        !no_cert.status.success(),
        "a client without a certificate got in"
    );
    assert!(
        all.wait(S(15), |_| !all
            .json_on("edgerec/e2e/events/segment.closed")
            .is_empty()),
        "no events over TLS"
    );
    daemon.terminate(S(20));
    assert!(wait_state(&all, "offline", S(5)), "{:?}", all.messages());
    closed_seqs(&cfg);
}

#[test]
fn unusable_tls_files_never_stop_recording() {
    let dir = workdir("mqtt-bad-tls");
    let missing = dir.path().join("missing-ca.pem");
    let cfg = config(
        dir.path(),
        "mqtts://127.0.0.1:1",
        &format!("ca = \"{}\"", missing.display()),
    );
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_until(S(20), || dir.path().join("data/index.redb").exists()
            && segments(&cfg).iter().any(|r| r.state == "closed")),
        "nothing recorded; log:\n{}",
        daemon.log()
    );
    daemon.terminate(S(20));
    let log = daemon.log();
    assert!(log.contains("cannot set up the connection"), "{log}");
    assert!(log.contains("missing-ca.pem"), "{log}");
    closed_seqs(&cfg);
}

#[test]
fn a_camera_that_goes_away_is_reported_connected_then_lost() {
    let dir = workdir("mqtt-source-state");
    let broker = Broker::start(dir.path());
    let all = Sub::start(
        &broker.client_args(),
        "edgerec/e2e/events/source.state",
        None,
    );
    let src = clip(&ClipSpec::h264(6, 1));
    let camera = RtspPeer::start(&[("cam", src.as_path())]);
    let mut t = TestConfig::new(&dir.path().join("data"));
    t.interval = "2s".into();
    t = t.stream("cam", &camera.url("cam"));
    let cfg = dir.path().join("edgerec.toml");
    std::fs::write(
        &cfg,
        format!("{}\n[mqtt]\nurl = \"{}\"\n", t.to_toml(), broker.url()),
    )
    .unwrap();
    let mut daemon = Daemon::start(&cfg);
    let states = |all: &Sub| -> Vec<String> {
        all.json_on("edgerec/e2e/events/source.state")
            .iter()
            .filter(|s| s["stream_id"] == "cam")
            .map(|s| s["state"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        all.wait(S(20), |_| states(&all).contains(&"connected".to_string())),
        "{:?}; log:\n{}",
        states(&all),
        daemon.log()
    );
    drop(camera);
    assert!(
        all.wait(S(20), |_| states(&all).contains(&"lost".to_string())),
        "{:?}; log:\n{}",
        states(&all),
        daemon.log()
    );
    daemon.terminate(S(20));
    let got = states(&all);
    let connected = got.iter().position(|s| s == "connected").unwrap();
    let lost = got.iter().position(|s| s == "lost").unwrap();
    assert!(connected < lost, "{got:?}");
    closed_seqs(&cfg);
}
