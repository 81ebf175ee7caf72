//! Real players in headless Chromium (Debian's `/usr/bin/chromium`, driven by
//! `puppeteer-core`; `tests/browser/`, installed by `scripts/test-deps.sh`): a static file
//! server with byte ranges ([`StaticServer`], `tests/browser/serve.js`) and a player that
//! reports how far it got ([`play`], `tests/browser/play.js`); edgerec's web page opened,
//! its timeline read and a point of it played ([`open_page`], `tests/browser/page.js`). A URL
//! in, the script's JSON result out.

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
    node_json(
        "play.js",
        &[
            url,
            "--player",
            player,
            "--seconds",
            &seconds.to_string(),
            "--timeout",
            "90",
        ],
    )
}

/// Open edgerec's web page at `url` (`tests/browser/page.js`): wait for its timelines, click
/// the first recorded span, wait for the player to pass `seconds`, and save a screenshot to
/// `screenshot`. Returns page.js's JSON result (`ok`, `why`, `timelines` per stream as
/// `[{start_ms, end_ms, uploaded}]`, `states`, `playing`, `currentTime`, `errors`).
pub fn open_page(url: &str, screenshot: &Path, seconds: f64) -> serde_json::Value {
    node_json(
        "page.js",
        &[
            url,
            "--screenshot",
            screenshot.to_str().expect("a UTF-8 path"),
            "--seconds",
            &seconds.to_string(),
            "--timeout",
            "90",
        ],
    )
}

/// `node tests/browser/SCRIPT ARGS`, whose last line of output is its JSON result.
fn node_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .arg(repo().join("tests/browser").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run node tests/browser/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "{script}: {e}; stdout {stdout}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
