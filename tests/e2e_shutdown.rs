//! End to end: shutdown. A `pipe:` command that ignores SIGTERM is still gone when
//! `edgerec run` exits (cleanly, or on the second signal); the second signal exits at once
//! with the documented code, and the next start recovers the segment it tore; the writer
//! thread logs inside the stream's span.
//!
//! The pipe command stands in for a board's camera encoder that ignores SIGTERM: a shell
//! that traps it, running ffmpeg (Annex-B H.264 to stdout, real time) and then waiting in
//! `sleep` (which inherits the ignored SIGTERM), so only SIGKILL ends the group.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// The recorder's exit code on a second signal (README "Shutdown").
const FAST_EXIT_CODE: i32 = 130;

/// A pipe command that ignores SIGTERM, tagged with `marker` so the test can find it.
fn stubborn_pipe(marker: &str) -> String {
    format!(
        "pipe:trap '' TERM; ffmpeg -v error -nostdin -re -f lavfi \
         -i testsrc2=size=320x240:rate=25 -c:v libx264 -preset ultrafast -g 25 -f h264 -; \
         while :; do sleep 1; done # {marker}"
    )
}

fn config(dir: &Path, source: &str) -> PathBuf {
    TestConfig {
        interval: "60s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&dir.join("data"))
    }
    .stream("cam", source)
    .write(&dir.join("edgerec.toml"))
}

/// `(pid, process group, state)` of every process, from `/proc/*/stat`.
fn processes() -> Vec<(i32, i32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(state), Some(pgrp)) = (f.first(), f.get(2).and_then(|p| p.parse().ok())) {
            out.push((pid, pgrp, state.chars().next().unwrap_or('?')));
        }
    }
    out
}

/// The pid of the shell running the command tagged `marker` (its process group id).
fn shell_of(marker: &str) -> Option<i32> {
    processes().into_iter().find_map(|(pid, _, _)| {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.starts_with("/bin/sh") && cmd.contains(marker)).then_some(pid)
    })
}

/// Live (not zombie) processes of group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|&(_, g, state)| g == pgid && state != 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Starts the recorder on a stubborn pipe, waits until its working file holds `fragments`
/// complete fragments; returns the daemon, the pipe's process group and the working file.
fn record_stubborn(dir: &Path, cfg: &Path, marker: &str) -> (Daemon, i32, PathBuf) {
    let root = dir.join("data");
    let daemon = Daemon::start(cfg);
    let mut part = None;
    let writing = wait_until(Duration::from_secs(60), || {
        part = part_files(&root).first().map(|p| root.join(p));
        part.as_ref().is_some_and(|p| complete_fragments(p).0 >= 2)
    });
    assert!(writing, "no fragments written; log:\n{}", daemon.log());
    let pgid = shell_of(marker).unwrap_or_else(|| panic!("pipe command not found"));
    assert!(!group_members(pgid).is_empty());
    (daemon, pgid, part.unwrap())
}

#[test]
fn a_pipe_command_that_ignores_sigterm_is_killed_before_the_recorder_exits() {
    let dir = workdir("shutdown_pipe");
    let marker = dir.path().display().to_string();
    let cfg = config(dir.path(), &stubborn_pipe(&marker));
    let (mut daemon, pgid, _) = record_stubborn(dir.path(), &cfg, &marker);

    let log = strip_ansi(&stop_clean(&mut daemon));
    assert!(log.contains("ignored SIGTERM; killing it"), "log:\n{log}");
    // The recorder has exited: nothing of the command may be left. (A process killed a
    // moment ago may still be on its way out, hence the wait; a survivor never goes.)
    let gone = wait_until(Duration::from_secs(10), || group_members(pgid).is_empty());
    assert!(gone, "left behind: {:?}; log:\n{log}", group_members(pgid));

    // The segment was closed cleanly and plays.
    let root = dir.path().join("data");
    let rows = segments(&cfg);
    let cam = closed_of(&rows, "cam");
    assert_eq!(cam.len(), 1, "{rows:?}");
    assert!(!cam[0].recovered);
    let path = root.join(&cam[0].files[0].path);
    assert_eq!(
        probe(&path).stream("video").map(|v| v.width),
        Some(Some(320))
    );
    assert_decodes(&path);
}

#[test]
fn a_second_sigterm_exits_at_once_killing_pipe_commands_and_the_next_start_recovers() {
    let dir = workdir("shutdown_twice");
    let marker = dir.path().display().to_string();
    let cfg = config(dir.path(), &stubborn_pipe(&marker));
    let root = dir.path().join("data");
    let (mut daemon, pgid, part) = record_stubborn(dir.path(), &cfg, &marker);

    signal(daemon.pid(), libc::SIGTERM);
    // The first signal's shutdown waits for the stubborn command (SIGKILL comes only after
    // a grace period), with the segment still open: the second signal lands in it.
    let stopping = wait_until(Duration::from_secs(20), || {
        daemon.log().contains("shutting down")
    });
    assert!(stopping, "log:\n{}", daemon.log());
    let status = daemon.terminate(Duration::from_secs(20));
    let log = strip_ansi(&daemon.log());
    assert_eq!(status.code(), Some(FAST_EXIT_CODE), "log:\n{log}");
    assert!(log.contains("second signal: exiting now"), "log:\n{log}");
    let gone = wait_until(Duration::from_secs(10), || group_members(pgid).is_empty());
    assert!(gone, "left behind: {:?}; log:\n{log}", group_members(pgid));
    assert!(part.exists(), "the open segment is left torn, for recovery");

    // The next start recovers it (then records on; stopped cleanly here).
    let mut daemon = Daemon::start(&cfg);
    let recovered = wait_until(Duration::from_secs(60), || {
        root.join("control.sock").exists() && segments(&cfg).iter().any(|r| r.recovered)
    });
    assert!(recovered, "log:\n{}", daemon.log());
    stop_clean(&mut daemon);
    let rows = segments(&cfg);
    assert_index_matches_disk(&root, &rows);
    let torn = rows.iter().find(|r| r.recovered).unwrap();
    let path = root.join(&torn.files[0].path);
    let p = probe(&path);
    assert_eq!(p.stream("video").map(|v| v.width), Some(Some(320)), "{p:?}");
    assert!(p.duration >= 0.9, "two fragments of 0.5 s or more: {p:?}");
    assert_decodes(&path);
    assert_eq!(part_files(&root), Vec::<String>::new());
}

#[test]
fn the_writer_thread_logs_inside_the_stream_span() {
    let dir = workdir("shutdown_span");
    let clip = clip(&ClipSpec::h264(4, 1));
    let cfg = TestConfig {
        interval: "2s".into(),
        ..TestConfig::new(&dir.path().join("data"))
    }
    .stream(
        "spanned",
        &format!("file:{}?realtime=false", clip.display()),
    )
    .write(&dir.path().join("edgerec.toml"));
    // `segment started` is logged by the store sink, on the stream's writer thread.
    let mut daemon = Daemon::start_env(&cfg, &[("RUST_LOG", "info,edgerec::media::sink=debug")]);
    let started = wait_until(Duration::from_secs(60), || {
        daemon.log().contains("source ended")
    });
    assert!(started, "log:\n{}", daemon.log());
    let log = strip_ansi(&stop_clean(&mut daemon));
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("segment started"))
        .collect();
    assert!(lines.len() >= 2, "log:\n{log}");
    for l in lines {
        assert!(l.contains("stream{name=spanned}"), "{l}");
    }
    let root = dir.path().join("data");
    for row in closed_of(&segments(&cfg), "spanned") {
        assert_decodes(&root.join(&row.files[0].path));
    }
}
