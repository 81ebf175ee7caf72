//! End to end: events that report trouble and uploads, observed on a real mosquitto broker:
//! a segment path made impossible at runtime raises `storage.alarm` (`write_error`) while
//! the other stream keeps recording; uploads to a `file://` target report
//! `segment.uploaded` and a broken target `upload.alarm`; a record task begun on a source
//! that was already failing gets its own three attempts before `error`. Every recorded file
//! is checked by ffprobe and ffmpeg.

mod common;
#[path = "peers/mosquitto.rs"]
mod mosquitto;
#[path = "e2e_mqtt/support.rs"]
mod support;

use std::path::Path;

use common::*;
use mosquitto::{Broker, Sub};
use serde_json::{json, Value};
use support::*;

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

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("edgerec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_segment_path_made_impossible_raises_a_storage_alarm_while_the_other_stream_records() {
    let dir = workdir("mqtt-write-error");
    let root = dir.path().join("data");
    let broker = Broker::start(dir.path());
    let all = Sub::start(&broker.client_args(), "edgerec/e2e/#", None);
    let src = clip(&ClipSpec::h264(6, 1));
    let src = format!("file:{}?loop=true", src.display());
    let mut t = TestConfig::new(&root);
    t.interval = "2s".into();
    // The sequence number is a directory level: a regular file where that directory must
    // go makes the segment impossible to create, even for root (ENOTDIR).
    t.naming = "{stream}/{seq}/x/{stream}-{start}".into();
    let toml = t.stream("cam", &src).stream("door", &src).to_toml();
    let cfg = write(
        dir.path(),
        &format!(
            "{toml}\n[mqtt]\nurl = \"{}\"\ntelemetry_interval = \"1s\"\n",
            broker.url()
        ),
    );
    let mut daemon = Daemon::start(&cfg);
    assert!(
        wait_closed(&cfg, &root, "door", 1, S(30)),
        "{}",
        daemon.log()
    );
    let next = segments(&cfg)
        .iter()
        .filter(|r| r.stream == "door")
        .map(|r| r.seq)
        .max()
        .unwrap()
        + 1;
    let blocked: Vec<u64> = (next..next + 3).collect();
    for seq in &blocked {
        std::fs::write(root.join(format!("door/{seq}")), b"not a directory").unwrap();
    }
    let alarms = |all: &Sub| -> Vec<Value> {
        all.json_on("edgerec/e2e/events/storage.alarm")
            .into_iter()
            .filter(|a| a["alarm"] == "write_error")
            .collect()
    };
    assert!(
        all.wait(S(30), |_| !alarms(&all).is_empty()),
        "no write_error alarm; log:\n{}",
        daemon.log()
    );
    let raised = &alarms(&all)[0];
    assert_eq!(raised["active"], true, "{raised}");
    assert_eq!(raised["stream"], "door", "{raised}");
    let path = raised["path"].as_str().unwrap();
    assert!(
        blocked.iter().any(|s| path.contains(&format!("door/{s}/"))),
        "{raised}"
    );
    assert_eq!(raised["errno"], "ENOTDIR", "{raised}");
    assert!(raised["error"].as_str().unwrap().contains(path), "{raised}");
    // The failing stream retries past the blocked paths, records again and clears it.
    assert!(
        all.wait(S(60), |_| alarms(&all).iter().any(|a| a["active"] == false)),
        "the alarm never cleared; log:\n{}",
        daemon.log()
    );
    // The session lived through it: each blocked path was one failed try, counted in the
    // alarm, which was raised once for the streak.
    let cleared = alarms(&all)
        .into_iter()
        .find(|a| a["active"] == false)
        .unwrap();
    assert!(cleared["failures"].as_u64().unwrap() >= 3, "{cleared}");
    assert_eq!(cleared["stream"], "door", "{cleared}");
    assert_eq!(
        alarms(&all).iter().filter(|a| a["active"] == true).count(),
        1,
        "raised once per streak: {:?}",
        alarms(&all)
    );
    stop_clean(&mut daemon);
    let rows = segments(&cfg);
    let cam = closed_of(&rows, "cam");
    let door = closed_of(&rows, "door");
    // The other stream never stopped: its sequence has no hole.
    let seqs: Vec<u64> = cam.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "{rows:?}");
    assert!(cam.len() >= 5, "{rows:?}");
    assert!(door.iter().any(|r| r.seq > blocked[2]), "{rows:?}");
    assert!(door.iter().all(|r| !blocked.contains(&r.seq)), "{rows:?}");
    check_files(&root, &cam);
    check_files(&root, &door);
}

#[test]
fn uploads_report_segment_uploaded_and_a_broken_target_raises_upload_alarm() {
    let dir = workdir("mqtt-upload-events");
    let root = dir.path().join("data");
    let broker = Broker::start(dir.path());
    let all = Sub::start(&broker.client_args(), "edgerec/e2e/#", None);
    let out = dir.path().join("uploads");
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"a file, not a directory").unwrap();
    let src = clip(&ClipSpec::h264(6, 1));
    let text = format!(
        r#"device_id = "e2e"

[storage]
root = "{root}"
max_bytes = "1GiB"
min_free = "1MiB"
require_marker = false

[[templates]]
name = "good"
formats = ["fmp4"]
interval = "2s"
fragment = "1s"
naming = "{{stream}}/{{stream}}-{{start}}"
upload = "good"

[[templates]]
name = "bad"
formats = ["fmp4"]
interval = "2s"
fragment = "1s"
naming = "{{stream}}/{{stream}}-{{start}}"
upload = "broken"

[[rules]]
template = "good"
stream = "cam"

[[rules]]
template = "bad"
stream = "door"

[[streams]]
name = "cam"
source = "file:{src}?loop=true"

[[streams]]
name = "door"
source = "file:{src}?loop=true"

[upload]

[[upload.targets]]
name = "good"
url = "file://{out}"
key = "{{device}}/{{stream}}/{{file}}"

[[upload.targets]]
name = "broken"
url = "file://{blocker}/sub"
key = "{{device}}/{{stream}}/{{file}}"

[mqtt]
url = "{url}"
telemetry_interval = "1s"
"#,
        root = root.display(),
        src = src.display(),
        out = out.display(),
        blocker = blocker.display(),
        url = broker.url(),
    );
    let cfg = write(dir.path(), &text);
    std::fs::create_dir_all(&out).unwrap();
    let mut daemon = Daemon::start(&cfg);
    let uploaded = "edgerec/e2e/events/segment.uploaded";
    assert!(
        all.wait(S(40), |_| !all.json_on(uploaded).is_empty()),
        "no segment.uploaded; log:\n{}",
        daemon.log()
    );
    let alarm = "edgerec/e2e/events/upload.alarm";
    assert!(
        all.wait(S(90), |_| !all.json_on(alarm).is_empty()),
        "no upload.alarm; log:\n{}",
        daemon.log()
    );
    // The door's segments wait in the upload backlog, failing, as telemetry says.
    let backlog = |t: &Value| {
        t["upload"]["backlog_segments"].as_u64() >= Some(1)
            && t["upload"]["backlog_bytes"].as_u64() > Some(0)
            && t["upload"]["failing"].as_u64() >= Some(1)
            && t["upload"]["oldest_age_s"].as_u64().is_some()
            && t["upload"]["paused"] == false
    };
    assert!(
        all.wait(S(20), |_| all
            .json_on("edgerec/e2e/telemetry")
            .iter()
            .any(backlog)),
        "{:?}",
        all.json_on("edgerec/e2e/telemetry")
    );
    let up = all.json_on(uploaded)[0].clone();
    stop_clean(&mut daemon);

    // The cloud recording callback's fields, and the copy at video_url is a valid file.
    assert_eq!(up["stream_id"], "cam", "{up}");
    assert_eq!(up["file_format"], "mp4", "{up}");
    assert!(up["end_time"].as_i64() >= up["start_time"].as_i64(), "{up}");
    let url = up["video_url"].as_str().unwrap();
    let copy = Path::new(url.strip_prefix("file://").unwrap());
    assert!(copy.starts_with(&out), "{up}");
    assert_eq!(
        std::fs::metadata(copy).unwrap().len(),
        up["file_size"].as_u64().unwrap()
    );
    assert_decodes(copy);
    let rows = segments(&cfg);
    let id: u64 = up["file_id"].as_str().unwrap().parse().unwrap();
    let row = rows.iter().find(|r| r.id == json!(id)).expect("the row");
    assert_eq!(
        up["id"],
        format!("e2e-seg-cam-{}-uploaded", row.seq),
        "{up}"
    );
    assert_eq!(up["seq"], json!(row.seq), "{up}");
    assert_eq!(md5_file(copy), md5_file(&root.join(&row.files[0].path)));

    let a = &all.json_on(alarm)[0];
    assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    assert!(a["failures"].as_u64() >= Some(1), "{a}");
    let door: Vec<u64> = closed_of(&rows, "door")
        .iter()
        .map(|r| r.id.as_u64().unwrap())
        .collect();
    assert!(door.contains(&a["segment_id"].as_u64().unwrap()), "{a}");
    check_files(&root, &closed_of(&rows, "cam"));
    check_files(&root, &closed_of(&rows, "door"));
}

#[test]
fn a_task_begun_on_an_already_failing_source_gets_its_own_three_attempts() {
    let dir = workdir("mqtt-task-attempts");
    let broker = Broker::start(dir.path());
    let replies = Replies::start(&broker.client_args());
    let all = Sub::start(&broker.client_args(), "edgerec/e2e/events/#", None);
    // A rule records a camera that refuses connections: its recorder keeps failing.
    let dead = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let toml = TestConfig::new(&dir.path().join("data"))
        .stream("dead", &dead)
        .to_toml();
    let cfg = write(
        dir.path(),
        &format!("{toml}\n[mqtt]\nurl = \"{}\"\n", broker.url()),
    );
    let mut daemon = Daemon::start(&cfg);
    let failures = |log: &str| {
        log.lines()
            .filter(|l| l.contains("stream interrupted") || l.contains("stream failed"))
            .count()
    };
    assert!(
        wait_until(S(30), || failures(&daemon.log()) >= 2),
        "{}",
        daemon.log()
    );
    let before = daemon.log().len();
    let r = replies.v5("record.start", r#"{"stream":"dead"}"#);
    assert_eq!(r["ok"], true, "{r}");
    let task = r["data"]["task_id"].as_u64().unwrap();
    let errored = || {
        all.json_on("edgerec/e2e/events/task.status")
            .into_iter()
            .find(|e| e["task_id"] == task && e["status"] == "error")
    };
    assert!(
        all.wait(S(90), |_| errored().is_some()),
        "the task never failed; log:\n{}",
        daemon.log()
    );
    // Failures the task saw: those logged after it began (its error event is stored
    // after the third one is logged).
    let seen = failures(&daemon.log()[before..]);
    assert!(
        seen >= 3,
        "the task failed after {seen} attempt(s) of its own; log:\n{}",
        daemon.log()
    );
    let e = errored().unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("3 attempts in a row"),
        "{e}"
    );
    stop_clean(&mut daemon);
}
