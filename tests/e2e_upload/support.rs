//! Helpers for the upload tests: moto's S3 server (tests/peers/s3_server.py in the venv
//! scripts/moto-venv.sh makes), raw HTTP to the peer's control endpoints, configs with
//! `[upload]`. The TCP proxy that resets connections is in proxy.rs.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgerec::storage::store::{SegmentRow, SegmentState, UploadState};

use crate::common::{self, free_port, TestConfig};

/// moto's S3 server (or an HTML-answering impostor) on a loopback port; killed on drop.
pub struct S3Peer {
    child: Option<Child>,
    pub port: u16,
    /// With [`PeerOptions::auth`]: the key id and secret moto accepts.
    pub credentials: Option<(String, String)>,
}

/// How to start an [`S3Peer`].
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    pub buckets: Vec<String>,
    /// A fixed port (to restart a stopped peer where the recorder expects it).
    pub port: Option<u16>,
    /// Journal of stored objects that outlives the peer (see s3_server.py).
    pub journal: Option<PathBuf>,
    /// moto checks every request's signature.
    pub auth: bool,
}

impl S3Peer {
    pub fn start(buckets: &[&str]) -> S3Peer {
        S3Peer::start_with(&PeerOptions {
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            ..PeerOptions::default()
        })
    }

    pub fn start_with(o: &PeerOptions) -> S3Peer {
        let mut args: Vec<String> = Vec::new();
        for b in &o.buckets {
            args.push("--bucket".into());
            args.push(b.clone());
        }
        if let Some(j) = &o.journal {
            args.push("--journal".into());
            args.push(j.display().to_string());
        }
        if o.auth {
            args.push("--auth".into());
        }
        S3Peer::spawn(&args, o.port)
    }

    pub fn html() -> S3Peer {
        S3Peer::spawn(&["--html".to_string()], None)
    }

    fn spawn(extra: &[String], port: Option<u16>) -> S3Peer {
        let port = port.unwrap_or_else(free_port);
        let mut child = Command::new(common::peer_python())
            .arg(common::repo().join("tests/peers/s3_server.py"))
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the S3 peer");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        );
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.first(),
            Some(&"ready"),
            "S3 peer did not start: {line}"
        );
        let credentials = (words.len() == 4).then(|| (words[2].to_string(), words[3].to_string()));
        assert!(
            common::wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "S3 peer not listening"
        );
        S3Peer {
            child: Some(child),
            port,
            credentials,
        }
    }

    /// Stop the server (its data is gone; the journal stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(self.port, path)
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (st, body) = self.get(path);
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Every S3 request the server saw.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.json("/_edgerec/stats")["requests"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Start a multipart upload of `key` (as a client killed after it would have); returns
    /// its upload id.
    pub fn create_multipart(&self, bucket: &str, key: &str) -> String {
        let v = self.json(&format!(
            "/_edgerec/create_multipart?bucket={bucket}&key={key}"
        ));
        assert_eq!(v["status"], 200, "{v}");
        v["upload_id"].as_str().unwrap().to_string()
    }

    /// `(upload id, part number)` of the UploadPart requests the server answered 200, in
    /// arrival order.
    pub fn parts_acked(&self) -> Vec<(String, u64)> {
        self.requests()
            .iter()
            .filter(|r| r["method"] == "PUT" && r["status"] == 200)
            .filter_map(|r| {
                let q = r["query"].as_str().unwrap_or("");
                Some((upload_id(q)?, part_number(q)?))
            })
            .collect()
    }

    /// Successful PUTs (objects and parts) per path.
    pub fn puts_per_path(&self) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for r in self.requests() {
            let q = r["query"].as_str().unwrap_or("");
            if r["method"] == "PUT" && r["status"] == 200 && !q.contains("uploadId") {
                *m.entry(r["path"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            if r["method"] == "POST" && r["status"] == 200 && q.contains("uploadId") {
                *m.entry(r["path"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        m
    }

    /// Incomplete multipart uploads (ListMultipartUploads).
    pub fn open_multipart_uploads(&self, bucket: &str) -> Vec<serde_json::Value> {
        self.json(&format!("/_edgerec/uploads?bucket={bucket}"))["uploads"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn create_bucket(&self, bucket: &str) {
        let v = self.json(&format!("/_edgerec/create?bucket={bucket}"));
        assert_eq!(v["status"], 200, "{v}");
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let v = self.json(&format!("/_edgerec/keys?bucket={bucket}"));
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (st, body) = self.get(&format!("/_edgerec/object?bucket={bucket}&key={key}"));
        (st == 200).then_some(body)
    }
}

impl Drop for S3Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The objects a peer's journal recorded as stored: `(bucket, key, md5)`, in order.
pub fn journal(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["bucket"].as_str().unwrap().to_string(),
                v["key"].as_str().unwrap().to_string(),
                v["md5"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn upload_id(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("uploadId="))
        .map(str::to_string)
}

fn part_number(query: &str) -> Option<u64> {
    if !query.contains("uploadId=") {
        return None;
    }
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("partNumber="))
        .and_then(|n| n.parse().ok())
}

/// GET over a fresh connection; (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, all[split + 4..].to_vec())
}

/// The config text of `base` with every segment uploaded to target "vod", `upload` being
/// the `[upload]` section's extra keys and `target` the target's keys.
/// Configs for one big segment: stream `big` replays `src` once, fast, into a 60 s segment
/// under `root`, uploaded with the `[upload]` settings `upload` to the target `target`.
/// Returns (recording, upload only): the second has no stream, for a restart that only
/// finishes the upload.
pub fn big_segment_configs(
    root: &Path,
    src: &Path,
    upload: &str,
    target: &str,
) -> (String, String) {
    let mut base = TestConfig::new(root);
    base.interval = "60s".into();
    let recording = base
        .clone()
        .stream("big", &format!("file:{}?realtime=false", src.display()));
    (
        config_with_upload(&recording, upload, target, None),
        config_with_upload(&base, upload, target, None),
    )
}

pub fn config_with_upload(
    base: &TestConfig,
    upload: &str,
    target: &str,
    policy: Option<&str>,
) -> String {
    let mut t = base.to_toml();
    t = t.replacen("\n[[rules]]", "upload = \"vod\"\n\n[[rules]]", 1);
    if let Some(p) = policy {
        t = t.replacen(
            "require_marker",
            &format!("policy = \"{p}\"\nrequire_marker"),
            1,
        );
    }
    t += &format!("\n[upload]\n{upload}\n[[upload.targets]]\nname = \"vod\"\n{target}\n");
    t
}

/// `edgerec upload --now [--timeout T]` for `config`.
pub fn upload_now(config: &Path, timeout: &str) -> common::CliOutput {
    common::cli(
        &[
            "upload",
            "--now",
            "--config",
            config.to_str().unwrap(),
            "--timeout",
            timeout,
        ],
        config.parent().unwrap(),
    )
}

/// A local-time window that excludes the present (it opens in two hours).
pub fn window_not_now() -> String {
    let m = edgerec::util::windows::local_minute(edgerec::util::clock::Clock::wall_ms(
        &edgerec::util::clock::SystemClock,
    ));
    let start = (m + 120) % 1440;
    let end = (m + 180) % 1440;
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

/// The S3 target keys for the peer at `endpoint`.
pub fn s3_target(endpoint: &str, bucket: &str, key: &str) -> String {
    format!(
        "url = \"s3://{bucket}/rec\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nkey = \"{key}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing-secret-never-logged\"\nallow_http = true\n"
    )
}

pub fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("edgerec.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Waits until `pred` holds for the index rows (asked through the running recorder).
pub fn wait_rows(
    config: &Path,
    timeout: Duration,
    mut pred: impl FnMut(&[SegmentRow]) -> bool,
) -> Vec<SegmentRow> {
    let start = Instant::now();
    let text = std::fs::read_to_string(config).unwrap();
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("root = "))
        .map(|r| PathBuf::from(r.trim_matches('"')))
        .unwrap();
    // The recorder creates the data directory as it starts.
    common::wait_until(timeout, || root.join("index.redb").exists());
    loop {
        // While a recorder starts, the index may be locked before its socket answers.
        let rows = try_rows(config).unwrap_or_default();
        if !rows.is_empty() && pred(&rows) {
            return rows;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out; rows: {:#?}\nlog:\n{}",
                rows.iter()
                    .map(|r| (r.id, &r.state, &r.upload))
                    .collect::<Vec<_>>(),
                std::fs::read_to_string(config.parent().unwrap().join("edgerec.log"))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The index rows, as the library's type (`edgerec segments --json`).
pub fn rows(config: &Path) -> Vec<SegmentRow> {
    try_rows(config).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_rows(config: &Path) -> Result<Vec<SegmentRow>, String> {
    let out = common::cli(
        &["segments", "--config", config.to_str().unwrap(), "--json"],
        config.parent().unwrap(),
    );
    if out.code != 0 {
        return Err(format!("edgerec segments failed: {}", out.stderr));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("segments --json ({e}): {}", out.stdout))
}

pub fn closed(rows: &[SegmentRow]) -> Vec<&SegmentRow> {
    rows.iter()
        .filter(|r| r.state == SegmentState::Closed)
        .collect()
}

pub fn all_uploaded(rows: &[SegmentRow]) -> bool {
    let c = closed(rows);
    !c.is_empty()
        && c.iter()
            .all(|r| matches!(r.upload, UploadState::Uploaded { .. }))
}

pub fn url_of(r: &SegmentRow) -> Option<&str> {
    match &r.upload {
        UploadState::Uploaded { url, .. } => Some(url),
        _ => None,
    }
}

/// An H.264 + AAC clip of about `frames` frames of 1280x720 noise at a high bitrate
/// (about 1.4 MB per frame), key frame every 10 frames: a quick way to a big segment.
pub fn noise_clip(dir: &Path, frames: u32) -> PathBuf {
    noise_clip_sized(dir, frames, "1280x720")
}

/// [`noise_clip`] at another frame size (`"320x240"`: about 110 kB per frame).
pub fn noise_clip_sized(dir: &Path, frames: u32, size: &str) -> PathBuf {
    let out = dir.join(format!("noise-{frames}-{size}.mp4"));
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "nullsrc=s={size}:r=25,geq=lum='random(1)*255':cb=128:cr=128"
        ))
        .args(["-f", "lavfi", "-i", "sine=f=440:r=48000"])
        .args(["-frames:v", &frames.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "4",
            "-g",
            "10",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg noise clip failed");
    out
}
