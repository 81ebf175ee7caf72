//! End to end: fleet commands through a real mosquitto broker, with mosquitto's own clients
//! as the fleet side: `mosquitto_pub` sends each request (MQTT 5 with a response topic and
//! correlation data, or 3.1.1 with a `request_id`) and `mosquitto_sub` reads the reply.
//! Covers `status`, `record.start` → segments → `record.stop` → the task's events,
//! `config.set` (persisted, live, and for the next push), `retention.run`, bad input,
//! another device's topic, and a 3.1.1 device with a password, a custom client id and a
//! persistent session answering a command sent while it was offline (also through
//! `edgerec ctl --protocol v3.1.1`). Every recorded file is checked by ffprobe and ffmpeg.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_mqtt/support.rs"]
mod support;

use std::path::{Path, PathBuf};

use common::*;
use mosquitto::{Broker, Sub};
use serde_json::{json, Value};
use support::*;

/// Streams `cam` and `door` (looping clips) that no rule records, 2 s segments; MQTT to
/// `url` with `mqtt_extra`; `extra` appended to the file.
fn setup(dir: &Path, url: &str, mqtt_extra: &str, extra: &str) -> PathBuf {
    let src = clip(&ClipSpec::h264(6, 1));
    let src = format!("file:{}?loop=true", src.display());
    let mut t = TestConfig::new(&dir.join("data"));
    t.interval = "2s".into();
    t.retention_interval = "1h".into();
    let toml = t
        .stream("cam", &src)
        .stream("door", &src)
        .to_toml()
        .replace("stream = \"*\"", "stream = \"nothing\"");
    let text = format!(
        "{toml}\n{extra}\n[mqtt]\nurl = \"{url}\"\ntelemetry_interval = \"1s\"\n{mqtt_extra}\n"
    );
    let path = dir.join("edgerec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn ok_data(r: &Value) -> &Value {
    assert_eq!(r["ok"], true, "{r}");
    &r["data"]
}

fn code(r: &Value) -> &str {
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    r["code"].as_str().unwrap()
}

fn check_files(root: &Path, rows: &[&SegmentRow]) {
    assert!(!rows.is_empty());
    for r in rows {
        for f in &r.files {
            let p = root.join(&f.path);
            assert!(probe(&p).stream("video").is_some(), "{}", p.display());
            assert_decodes(&p);
        }
    }
}

#[test]
fn status_record_start_stop_config_set_and_retention_run_through_mosquitto_clients() {
    let dir = workdir("mqtt-commands");
    let root = dir.path().join("data");
    let broker = Broker::start(dir.path());
    let args = broker.client_args();
    let replies = Replies::start(&args);
    let all = Sub::start(&args, "edgerec/e2e/#", None);
    let cfg = setup(dir.path(), &broker.url(), "", "");
    let mut daemon = Daemon::start(&cfg);
    assert!(wait_state(&all, "online", S(20)), "log:\n{}", daemon.log());

    // status, MQTT 5 and 3.1.1.
    let st = replies.v5("status", "{}");
    assert_eq!(ok_data(&st)["device_id"], "e2e");
    assert_eq!(ok_data(&st)["recording"], json!({}), "no rule records");
    let st = replies.v311("status", json!({}));
    assert_eq!(ok_data(&st)["version"], env!("CARGO_PKG_VERSION"));

    // record.start (MQTT 5) → segments → record.stop (3.1.1) → completed.
    let started = replies.v5("record.start", r#"{"stream":"door"}"#);
    let task = ok_data(&started)["task_id"].as_u64().unwrap();
    assert_eq!(ok_data(&started)["status"], "in_progress");
    assert_eq!(
        ok_data(&replies.v5("status", "{}"))["recording"],
        json!({"door": "t"})
    );
    assert!(
        wait_closed(&cfg, &root, "door", 2, S(30)),
        "log:\n{}",
        daemon.log()
    );
    let stopped = replies.v311("record.stop", json!({ "task_id": task }));
    assert_eq!(ok_data(&stopped)["tasks"][0]["status"], "completed");
    let rows = segments(&cfg);
    let door = closed_of(&rows, "door");
    check_files(&root, &door);
    assert!(
        rows.iter()
            .all(|r| r.stream != "door" || r.state == "closed"),
        "the recorder stopped with the task: {rows:?}"
    );
    // The task's events: in progress, then completed counting every file, the last
    // segment (closed when the recorder stopped) included.
    let statuses = || -> Vec<Value> {
        all.json_on("edgerec/e2e/events/task.status")
            .into_iter()
            .filter(|e| e["task_id"] == task)
            .collect()
    };
    assert!(
        all.wait(S(10), |_| statuses().len() >= 2),
        "{:?}",
        statuses()
    );
    let ev = statuses();
    assert_eq!(ev[0]["status"], "in_progress", "{ev:?}");
    assert_eq!(ev[1]["status"], "completed", "{ev:?}");
    assert_eq!(ev[1]["previous_status"], "in_progress");
    assert_eq!(ev[1]["task_kind"], "real_time", "{}", ev[1]);
    let files: usize = door.iter().map(|r| r.files.len()).sum();
    let bytes: u64 = door.iter().map(|r| r.bytes).sum();
    assert_eq!(ev[1]["files"], files as u64, "{}", ev[1]);
    assert_eq!(ev[1]["bytes"], bytes, "{}", ev[1]);

    // Bad input over MQTT: each gets its code.
    for (cmd, payload, want) in [
        ("record.start", r#"{"stream":"nope"}"#, "no_such_stream"),
        (
            "record.start",
            r#"{"stream":"door","template":"nope"}"#,
            "no_such_template",
        ),
        ("record.start", r#"{"stream":"../x"}"#, "bad_name"),
        (
            "task.create",
            r#"{"stream":"door","start_time":2000000000000,"end_time":1999999999000}"#,
            "bad_time_range",
        ),
    ] {
        assert_eq!(code(&replies.v5(cmd, payload)), want, "{cmd} {payload}");
    }
    let r = replies.v311("record.start", json!({"stream": "../x"}));
    assert_eq!(code(&r), "bad_name");
    // Another device's topic: no reply, and nothing done here.
    assert_eq!(
        replies.v5_to("e2e2", "record.start", r#"{"stream":"cam"}"#),
        None
    );
    let tasks = replies.v5("task.list", "{}");
    assert_eq!(ok_data(&tasks)["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(ok_data(&replies.v5("status", "{}"))["recording"], json!({}));

    // config.set: persisted, applied live, the retained config follows.
    let set = replies.v5("config.set", r#"{"patch":{"retention":{"max_age":"1s"}}}"#);
    let d = ok_data(&set);
    assert_eq!(d["persisted"], cfg.display().to_string());
    assert_eq!(d["applied_live"], json!(["retention"]));
    assert_eq!(d["after_restart"], json!([]));
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("1s"));
    assert!(
        all.wait(S(10), |_| all
            .json_on("edgerec/e2e/config")
            .last()
            .is_some_and(|c| c["storage"]["max_age"] == "1s")),
        "{:?}",
        all.json_on("edgerec/e2e/config")
    );
    // retention.run: nothing records and no pass is due for an hour, so this pass is the
    // one that deletes the door's segments (all older than 1 s), and says so.
    let run = replies.v5("retention.run", "{}");
    let deleted = ok_data(&run)["deleted"].as_array().unwrap().clone();
    let mut ids: Vec<u64> = deleted.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    ids.sort();
    let mut want: Vec<u64> = door.iter().map(|r| r.id.as_u64().unwrap()).collect();
    want.sort();
    assert_eq!(ids, want, "{run}");
    assert!(deleted.iter().all(|d| d["stream"] == "door"
        && d["reason"] == "storage.max_age"
        && d["bytes"].as_u64() > Some(0)));
    assert_eq!(ok_data(&run)["freed_bytes"].as_u64(), Some(bytes), "{run}");
    for r in &door {
        assert!(!root.join(&r.files[0].path).exists());
    }
    assert!(closed_of(&segments(&cfg), "door").is_empty());

    // Telemetry: CPU, memory, disk and the upload backlog.
    let t = all
        .json_on("edgerec/e2e/telemetry")
        .pop()
        .expect("telemetry");
    assert!(t["process"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{t}");
    assert!(t["process"]["rss_bytes"].as_u64().unwrap() > 1 << 20, "{t}");
    assert!(t["disk"]["total_bytes"].as_u64() > t["disk"]["free_bytes"].as_u64());
    assert_eq!(t["upload"]["backlog_segments"], 0, "{t}");
    assert_eq!(t["upload"]["backlog_bytes"], 0, "{t}");
    assert!(t["temperature"].is_array(), "{t}");
    stop_clean(&mut daemon);
}

#[test]
fn a_v311_device_with_a_password_answers_a_command_sent_while_it_was_offline() {
    let dir = workdir("mqtt-v311-session");
    let broker = Broker::start_with_password(dir.path(), "edge", "s3cret");
    let mut args = broker.client_args();
    args.extend(["-u", "edge", "-P", "s3cret"].map(String::from));
    let replies = Replies::start(&args);
    let status = Sub::start(&args, "edgerec/e2e/status", None);
    let extra =
        "protocol = \"v3.1.1\"\nusername = \"edge\"\npassword = \"s3cret\"\nclient_id = \"box-17\"";
    let cfg = setup(dir.path(), &broker.url(), extra, "");
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_state(&status, "online", S(20)),
        "log:\n{}\nbroker:\n{}",
        daemon.log(),
        broker.log()
    );
    assert!(
        broker.log().contains("New client connected") && broker.log().contains("as box-17"),
        "the custom client id: {}",
        broker.log()
    );
    let st = replies.v311("status", json!({}));
    assert_eq!(ok_data(&st)["device_id"], "e2e");
    // The fleet CLI on 3.1.1: request_id only, reply on reply/{request_id}.
    let url = broker.url();
    let ctl = |extra: &[&str]| {
        let mut a = vec![
            "ctl",
            "--broker",
            &url,
            "--protocol",
            "v3.1.1",
            "--username",
            "edge",
            "--password",
            "s3cret",
            "e2e",
        ];
        a.extend(extra);
        cli(&a, dir.path())
    };
    let out = ctl(&["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\"device_id\":\"e2e\""), "{out:?}");
    let out = ctl(&["record.start", r#"{"stream":"nope"}"#]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("no_such_stream"), "{out:?}");
    let bad = cli(
        &[
            "ctl",
            "--broker",
            &broker.url(),
            "--protocol",
            "v4",
            "e2e",
            "status",
        ],
        dir.path(),
    );
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("--protocol"), "{bad:?}");
    // A wrong password is refused by the broker.
    let wrong = std::process::Command::new("mosquitto_pub")
        .args(broker.client_args())
        .args(["-u", "edge", "-P", "nope", "-t", "x", "-m", "y"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());

    // Offline: a QoS 1 command waits in the device's persistent session.
    stop_clean(&mut daemon);
    assert!(wait_state(&status, "offline", S(10)));
    let id = replies.send_v311("record.start", json!({"stream": "door"}), &[]);
    assert_eq!(replies.reply_v311(&id, S(2)), None, "nobody is there");
    let mut daemon = Daemon::start(&cfg);
    let r = replies.reply_v311(&id, S(30)).unwrap_or_else(|| {
        panic!(
            "the queued command was not answered; log:\n{}",
            daemon.log()
        )
    });
    let task = ok_data(&r)["task_id"].as_u64().unwrap();
    let root = dir.path().join("data");
    assert!(wait_closed(&cfg, &root, "door", 1, S(30)));
    let stop = replies.v311("record.stop", json!({ "task_id": task }));
    assert_eq!(ok_data(&stop)["tasks"][0]["status"], "completed");
    check_files(&root, &closed_of(&segments(&cfg), "door"));
    stop_clean(&mut daemon);
}

/// `ffmpeg -re -i clip -c copy -f flv URL`; whether it succeeded, and what it said.
fn push(clip: &Path, url: &str) -> (bool, String) {
    let mut child = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let status = wait_timeout(&mut child, S(60));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status.is_some_and(|s| s.success()), err)
}

#[test]
fn config_set_templates_and_rules_apply_to_the_next_push_without_a_restart() {
    let dir = workdir("mqtt-config-push");
    let root = dir.path().join("data");
    let broker = Broker::start(dir.path());
    let replies = Replies::start(&broker.client_args());
    let port = free_port();
    let ingest = format!("[ingest]\nrtmp = \"127.0.0.1:{port}\"\n");
    let cfg = setup(dir.path(), &broker.url(), "", &ingest);
    let mut daemon = Daemon::start(&cfg);
    assert!(wait_until(S(20), || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let clip = clip(&ClipSpec::h264(6, 1));
    let url = format!("rtmp://127.0.0.1:{port}/live/pushed");
    // No rule records `pushed` yet: the push is refused.
    let (ok, _) = push(&clip, &url);
    assert!(!ok, "a push no rule records was accepted");

    let patch = json!({"patch": {
        "templates": [
            {"name": "t", "formats": ["fmp4"], "interval": "2s", "fragment": "1s",
             "naming": "{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}"},
            {"name": "both", "formats": ["fmp4", "mp4"], "interval": "3s", "fragment": "1s",
             "naming": "{stream}/{stream}-{seq}"},
        ],
        "rules": [{"template": "both", "stream": "pushed"}],
    }});
    let set = replies.v5("config.set", &patch.to_string());
    let d = ok_data(&set);
    assert_eq!(d["applied_live"], json!(["templates", "rules"]), "{set}");
    assert_eq!(d["next_push"], json!(["templates", "rules"]), "{set}");
    assert_eq!(d["after_restart"], json!([]), "{set}");
    assert!(
        d["message"].as_str().unwrap().contains("next push"),
        "{set}"
    );

    // The next push records with the new rule and template: both formats, 3 s segments.
    let (ok, err) = push(&clip, &url);
    assert!(ok, "ffmpeg push failed: {err}\nlog:\n{}", daemon.log());
    assert!(
        wait_closed(&cfg, &root, "pushed", 2, S(20)),
        "{:?}\nlog:\n{}",
        segments(&cfg),
        daemon.log()
    );
    let rows = segments(&cfg);
    let pushed = closed_of(&rows, "pushed");
    for r in &pushed {
        let formats: Vec<&str> = r.files.iter().map(|f| f.format.as_str()).collect();
        assert_eq!(formats, ["fmp4", "mp4"], "{r:?}");
        assert!(r.files[0].path.starts_with("pushed/pushed-"), "{r:?}");
    }
    assert!(
        (2500..=3600).contains(&pushed[0].duration_ms),
        "3 s segments: {pushed:?}"
    );
    check_files(&root, &pushed);
    stop_clean(&mut daemon);
}
