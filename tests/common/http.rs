//! The local HTTP API from a client's side: `curl -i` ([`curl`], [`curl_args`]) parsed into
//! an [`Answer`], and a daemon started with `[http]` and waited for until it listens
//! ([`start`]). Not re-exported: the HTTP tests say `use common::http::*`.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::process::{wait_until, Daemon};

/// One answer: status, headers (lower-case names), body (as text, lossy, and as bytes).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -i` of `method` on `path`, with `token` as a bearer and `body` as data.
pub fn curl(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut args: Vec<String> = Vec::new();
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b].map(String::from));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl_args(port, method, path, &args)
}

/// `curl -i` of `method` on `path` with more curl arguments (`-H "Range: bytes=0-9"`).
pub fn curl_args(port: u16, method: &str, path: &str, args: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--path-as-is",
            "--max-time",
            "20",
            "-X",
            method,
        ])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run curl");
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no HTTP answer to {method} {path}: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let bytes = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

/// `edgerec run` on `cfg`, once its HTTP API listens on `port`.
pub fn start(cfg: &Path, port: u16) -> Daemon {
    let d = Daemon::start(cfg);
    let up = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the HTTP API never listened; log:\n{}", d.log());
    d
}
