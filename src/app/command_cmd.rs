//! `edgerec command NAME [JSON]`: run a fleet command on the recorder running on this box,
//! through its control socket, and print the reply.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::control::commands::Reply;

/// Send `command NAME JSON` to the recorder on `root`; print the reply as JSON. Exit 1 when
/// the reply is an error, 3 when no recorder runs.
pub fn run(root: &Path, name: &str, json: Option<&str>) -> anyhow::Result<ExitCode> {
    let payload = json.unwrap_or("{}");
    anyhow::ensure!(
        !payload.contains('\n') && !name.contains([' ', '\n']),
        "the command name and JSON must be on one line"
    );
    let path = crate::control::socket::socket_path(root);
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("no recorder is running on {} ({e})", root.display());
            return Ok(ExitCode::from(3));
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    writeln!(s, "command {name} {payload}").context("sending the command")?;
    let mut out = String::new();
    s.read_to_string(&mut out).context("reading the reply")?;
    let reply: Reply = serde_json::from_str(&out)
        .with_context(|| format!("the recorder answered something else: {out}"))?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(if reply.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
