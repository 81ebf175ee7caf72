//! What `edgerec run` does while the guard refuses its data directory: it stays up and
//! waits for the marker instead of exiting (under systemd an exit would restart it every few
//! seconds, and a fleet manager would see nothing but a device gone quiet).
//!
//! - The refusal is an alarm: an error in the log (repeated every [`LOG_EVERY`] while it
//!   lasts) and the systemd status line. With `[mqtt]`, the daemon also runs the refusal
//!   client beside this wait (`control::mqtt::refusal`: a `storage.alarm` and the `online`
//!   status with `"recording": false`, published straight to the broker, since the outbox
//!   lives under the refused root) and ends it with how the wait ended.
//! - systemd is told READY (with a `STATUS=refused: ...` line) and the watchdog is fed, so
//!   the unit is up and explains itself in `systemctl status` rather than being killed.
//! - The marker is looked for every [`RECHECK`]; when `edgerec init` ran or the disk got
//!   mounted, the recorder starts by itself. SIGTERM or SIGINT end the wait cleanly.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use super::{check, GuardError};
use crate::config::Config;
use crate::util::clock::SharedClock;
use crate::util::notify::Notifier;

/// How often the marker is looked for.
pub const RECHECK: Duration = Duration::from_secs(5);
/// How often the refusal is logged again while it lasts.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// How the wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The data directory is usable now: record.
    Marked,
    /// A signal asked the recorder to stop.
    Stopped,
}

/// The guard refused `root` with `first`: raise the alarm, then wait until the directory
/// passes the guard or a signal arrives.
pub async fn until_marked(
    cfg: &Config,
    clock: &SharedClock,
    notifier: &Notifier,
    first: &GuardError,
) -> std::io::Result<Waited> {
    let root = cfg.storage.root.clone();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    error!(alarm = "storage_guard", error = %first, recheck_s = RECHECK.as_secs(), "not recording; waiting for the data directory");
    notifier.ready(&format!("refused: {first}"));
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    let mut watchdog = tokio::time::interval(
        notifier
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(3600)),
    );
    let mut logged = clock.now();
    let end = loop {
        tokio::select! {
            _ = sigterm.recv() => break Waited::Stopped,
            _ = sigint.recv() => break Waited::Stopped,
            _ = watchdog.tick(), if notifier.watchdog_interval().is_some() => notifier.watchdog(),
            _ = recheck.tick() => {
                let (root, require, device, now) = (
                    root.clone(),
                    cfg.storage.require_marker,
                    cfg.device_id.clone(),
                    clock.wall_ms(),
                );
                let r = tokio::task::spawn_blocking(move || check(&root, require, &device, now)).await;
                match r {
                    Ok(Ok(_)) => break Waited::Marked,
                    Ok(Err(e)) => {
                        if clock.now().saturating_duration_since(logged) >= LOG_EVERY {
                            logged = clock.now();
                            error!(alarm = "storage_guard", error = %e, "still not recording; waiting for the data directory");
                        }
                        notifier.status(&format!("refused: {e}"));
                    }
                    Err(e) => error!(error = %e, "storage guard check failed"),
                }
            }
        }
    };
    match end {
        Waited::Marked => {
            info!(data = %root.display(), "the data directory passes the storage guard now; starting")
        }
        Waited::Stopped => info!("stopped while waiting for the data directory"),
    }
    Ok(end)
}
