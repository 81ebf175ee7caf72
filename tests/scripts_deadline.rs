//! `scripts/deadline.sh`, which every qemu-user run in `make test` goes through: a command
//! that hangs fails the run with exit 124 and a list of what was running; one that finishes
//! keeps its own exit status.

use std::process::Command;

fn deadline(secs: &str, script: &str) -> (i32, String) {
    let out = Command::new("scripts/deadline.sh")
        .args([secs, "the hanging step", "bash", "-c", script])
        .output()
        .expect("scripts/deadline.sh runs");
    (
        out.status.code().expect("exits, not killed"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_hung_command_fails_with_124_and_names_what_was_running() {
    // A child that would sleep far past the deadline, as a deadlocked qemu fork would wait.
    let (code, err) = deadline("2", "sleep 3600 & wait");
    assert_eq!(code, 124, "stderr: {err}");
    assert!(err.contains("'the hanging step' FAILED"), "stderr: {err}");
    assert!(
        err.contains("sleep 3600"),
        "the process list names the child: {err}"
    );
    // The whole process group was stopped: nothing of it is left.
    let left = Command::new("pgrep")
        .args(["-f", "sleep 3600"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the hung child was left running"
    );
}

#[test]
fn a_command_that_finishes_in_time_keeps_its_exit_status() {
    let (code, err) = deadline("60", "exit 7");
    assert_eq!(code, 7, "stderr: {err}");
    assert!(!err.contains("FAILED"), "stderr: {err}");
}
