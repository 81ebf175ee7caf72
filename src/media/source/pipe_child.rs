//! The processes behind a `pipe:` source: starting a command in its own process group,
//! logging its stderr, noticing its exit, and stopping it so that nothing outlives edgerec.
//!
//! A command is stopped with SIGTERM to its group, then SIGKILL after [`KILL_GRACE`] if
//! anything in the group is still there. [`PipeSource::stop`](super::pipe::PipeSource::stop)
//! hands back the keeper threads doing that, so a session (and so the daemon's shutdown)
//! waits until every process is reaped; the process never exits with a command that
//! ignores SIGTERM left behind. [`PipeGroups`] lists the live groups for the one exit that
//! cannot wait: the second signal, which SIGKILLs them all at once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn, Span};

use super::SourceError;
use crate::util::redact::redact_url;

/// Time between SIGTERM and SIGKILL when a command is stopped.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Stderr lines logged per 10 s window; the rest are counted.
pub const STDERR_LINES_PER_WINDOW: u32 = 20;

/// The process groups of the running pipe commands. Cloned handles share one list; the
/// daemon owns one and hands it to every stream it starts.
#[derive(Clone, Debug, Default)]
pub struct PipeGroups {
    live: Arc<Mutex<HashSet<libc::pid_t>>>,
}

impl PipeGroups {
    fn lock(&self) -> MutexGuard<'_, HashSet<libc::pid_t>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many commands are running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no command is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SIGKILL every running command's process group (an exit that cannot wait for the
    /// keepers). Returns how many groups were signalled.
    pub fn kill_all(&self) -> usize {
        let live = self.lock();
        for pgid in live.iter() {
            // SAFETY: kill(2) on a group we started, whose leader is not reaped yet (the
            // keeper reaps it only while holding this lock, and forgets it at once).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        live.len()
    }
}

/// Owns a running command. Dropping it stops the command's process group in the background;
/// [`Keeper::stop`] returns the thread doing it, to wait on.
pub(super) struct Keeper {
    stop: Option<std_mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Start stopping the command; the returned thread ends once every process of its group
    /// is gone and the leader is reaped.
    pub(super) fn stop(mut self) -> Option<JoinHandle<()>> {
        self.stop.take();
        self.thread.take()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The keeper thread sees the channel close and stops the group.
        self.stop.take();
    }
}

/// What runs the command's stdout, on a thread of its own.
pub(super) type Reader = Box<dyn FnOnce(Box<dyn Read + Send>) + Send>;
/// Told why the command ended by itself (the last stderr line included).
pub(super) type OnExit = Box<dyn FnOnce(String) + Send>;

/// Start `sh -c command` in a process group of its own, with a reader thread on its
/// stdout, a logger on its stderr and a keeper (see the module docs). Threads log in the
/// caller's span.
pub(super) fn spawn(
    command: &str,
    reader: Reader,
    on_exit: OnExit,
    groups: &PipeGroups,
) -> Result<Keeper, SourceError> {
    let shown = redact_url(command);
    let mut child = {
        // Registered before anyone could kill_all without it, under the lock.
        let mut live = groups.lock();
        let child = Command::new("/bin/sh")
            .args(["-c", command])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SourceError::Pipe {
                command: shown.clone(),
                reason: format!("cannot start /bin/sh: {e}"),
            })?;
        live.insert(child.id() as libc::pid_t);
        child
    };
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let span = Span::current();
    let last_line = Arc::new(Mutex::new(String::new()));
    let thread = |name: &str| std::thread::Builder::new().name(format!("edgerec-pipe-{name}"));
    let s = span.clone();
    let started = thread("out").spawn(move || {
        let _e = s.enter();
        reader(Box::new(stdout));
    });
    let s = span.clone();
    let last = last_line.clone();
    let started = started.and_then(|_| {
        thread("err").spawn(move || {
            let _e = s.enter();
            log_stderr(stderr, &last);
        })
    });
    let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
    let (groups, groups_left) = (groups.clone(), groups.clone());
    let pgid = child.id() as libc::pid_t;
    let keeping = started.and_then(|_| {
        let shown = shown.clone();
        thread("keep").spawn(move || {
            let _e = span.enter();
            keep(&mut child, &groups, stop_rx, on_exit, &shown, &last_line);
        })
    });
    match keeping {
        Ok(handle) => Ok(Keeper {
            stop: Some(stop_tx),
            thread: Some(handle),
        }),
        Err(e) => {
            // No keeper: stop the command here rather than leave it running.
            let mut live = groups_left.lock();
            // SAFETY: kill(2) on the group we just started; its leader is not reaped.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            live.remove(&pgid);
            Err(SourceError::Pipe {
                command: shown,
                reason: format!("cannot start a thread: {e}"),
            })
        }
    }
}

/// Reap the leader if it exited; on exit, SIGKILL what it left in its group and forget the
/// group, all under the groups' lock (so `kill_all` never signals a reaped group).
fn reap(child: &mut Child, groups: &PipeGroups) -> Option<std::process::ExitStatus> {
    let mut live = groups.lock();
    let status = child.try_wait().ok().flatten()?;
    let pgid = child.id() as libc::pid_t;
    // Whatever the shell started and left behind goes too. The group outlives its reaped
    // leader only while members remain, so its id is still ours.
    // SAFETY: kill(2) on our own child's process group; a group with no members left makes
    // this a no-op (ESRCH).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    live.remove(&pgid);
    Some(status)
}

/// Waits for the child to exit (reporting it) or for the source to stop it (SIGTERM, then
/// SIGKILL after [`KILL_GRACE`]), and reaps it.
fn keep(
    child: &mut Child,
    groups: &PipeGroups,
    stop: std_mpsc::Receiver<()>,
    on_exit: OnExit,
    shown: &str,
    last_line: &Mutex<String>,
) {
    let pgid = child.id() as libc::pid_t;
    // Until the source is stopped (the channel disconnects): watch for an exit.
    while let Err(std_mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(200))
    {
        if let Some(status) = reap(child, groups) {
            let last = last_line.lock().map(|l| l.clone()).unwrap_or_default();
            on_exit(if last.is_empty() {
                format!("the command exited ({status})")
            } else {
                format!("the command exited ({status}); it said: {last}")
            });
            return;
        }
    }
    // The leader is not reaped yet, so its pid (the group id) cannot have been reused.
    // SAFETY: kill(2) on our own child's process group; no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if reap(child, groups).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    warn!(command = %shown, "pipe command ignored SIGTERM; killing it");
    {
        let mut live = groups.lock();
        // SAFETY: as above; the leader is still not reaped.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        // Killed: nothing left for `kill_all` to do, and the leader is reaped next.
        live.remove(&pgid);
    }
    let _ = child.wait();
}

/// Logs the command's stderr line by line, rate-limited, keeping the last line.
fn log_stderr(err: impl Read, last: &Mutex<String>) {
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u32);
    for line in BufReader::new(err).split(b'\n') {
        let Ok(line) = line else { return };
        let text = redact_url(String::from_utf8_lossy(&line).trim_end());
        if text.trim().is_empty() {
            continue;
        }
        if window.elapsed() >= Duration::from_secs(10) {
            if dropped > 0 {
                warn!(
                    lines = dropped,
                    "pipe command: stderr lines not logged (rate limit)"
                );
            }
            window = Instant::now();
            (logged, dropped) = (0, 0);
        }
        if logged < STDERR_LINES_PER_WINDOW {
            logged += 1;
            info!(target: "edgerec::pipe", "command: {text}");
        } else {
            dropped += 1;
        }
        if let Ok(mut l) = last.lock() {
            *l = text.chars().take(300).collect();
        }
    }
}
