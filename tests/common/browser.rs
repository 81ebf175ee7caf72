//! Real players in headless Chromium (Debian's `/usr/bin/chromium`, driven by
//! `puppeteer-core`; `tests/browser/`, installed by `scripts/test-deps.sh`): a static file
//! server with byte ranges ([`StaticServer`], `tests/browser/serve.js`) and a player that
//! reports how far it got ([`play`], `tests/browser/play.js`). Generic: a URL in, the
//! player's JSON result out.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::repo;

/// `node tests/browser/serve.js DIR`: serves a directory on a loopback port until dropped.
pub struct StaticServer {
    child: Child,
    pub port: u16,
}

impl StaticServer {
    pub fn start(dir: &Path) -> StaticServer {
        let mut child = Command::new("node")
            .arg(repo().join("tests/browser/serve.js"))
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run node (scripts/test-deps.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("serve.js prints its port");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve.js said {line:?}: {e}"));
        StaticServer {
            port: v["port"].as_u64().expect("port") as u16,
            child,
        }
    }

    /// The URL of `rel` (a path under the served directory).
    pub fn url(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{rel}", self.port)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Play `url` in headless Chromium with `player` (`hls`: hls.js; `native`: the `<video>`
/// element) until its currentTime passes `seconds`; returns play.js's JSON result
/// (`ok`, `why`, `currentTime`, `errors`).
pub fn play(url: &str, player: &str, seconds: f64) -> serde_json::Value {
    let out = Command::new("node")
        .arg(repo().join("tests/browser/play.js"))
        .args([url, "--player", player, "--seconds", &seconds.to_string()])
        .args(["--timeout", "90"])
        .output()
        .expect("run node tests/browser/play.js");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "play.js: {e}; stdout {stdout}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
