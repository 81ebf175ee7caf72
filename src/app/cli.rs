//! The `edgerec` command line. This is the binary's edge: errors become messages and exit
//! codes here (`anyhow` is allowed only here and in tests).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::storage::store::{SegmentRow, Store, StoreError};
use crate::util::clock::{Clock, SharedClock, SystemClock};

/// edgerec: an edge video recorder for cameras and pushed streams.
#[derive(Parser, Debug)]
#[command(name = "edgerec", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Record every stream the config selects until SIGTERM/SIGINT.
    Run {
        /// Config file (TOML).
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
    },
    /// Prepare the data directory: create `storage.root` and write its marker
    /// (`.edgerec-root`), which `run` requires unless `storage.require_marker = false`.
    Init {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
    },
    /// Show what the recorder is doing: streams, disk, segments, upload backlog. Asks the
    /// running recorder, or reads the index when none runs.
    Status {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file without recording.
    Check {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
    },
    /// Config helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCmd,
    },
    /// Index maintenance (run while the recorder is stopped).
    Index {
        #[command(subcommand)]
        what: IndexCmd,
    },
    /// Show the upload backlog (count, bytes, oldest age), failing jobs (attempts, last
    /// error, next retry) and the transfer under way. Asks the running recorder, or reads
    /// the index when none runs.
    Uploads {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Upload control: `--now` drains the backlog (ignoring windows and pause), showing
    /// progress, and exits 0 once it is empty; `--pause` stops uploading (a transfer under
    /// way stops at its next part boundary) until `--resume`. The pause survives restarts;
    /// with no recorder running it is written to the index.
    Upload {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
        /// Drain the backlog now.
        #[arg(long, conflicts_with_all = ["pause", "resume"])]
        now: bool,
        /// Pause uploads.
        #[arg(long, conflicts_with = "resume")]
        pause: bool,
        /// Resume paused uploads.
        #[arg(long)]
        resume: bool,
        /// With --now: give up (exit 1) if the backlog is not drained within this long,
        /// e.g. "10min".
        #[arg(long, requires = "now")]
        timeout: Option<String>,
    },
    /// List recorded segments from the index (asks the running recorder, or reads the
    /// index when none runs).
    Segments {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fleet side: send a command to a device over MQTT and print its reply
    /// (`ctl DEVICE COMMAND [JSON]`), or list devices and whether they are online
    /// (`ctl devices`). Needs no config file.
    Ctl(crate::control::mqtt::ctl::CtlArgs),
    /// Export a recording: one MP4 cut on key frames, or an HLS VOD playlist of byte ranges.
    Export(crate::app::export::ExportArgs),
    /// Run a fleet command (docs/commands.md) on the running recorder through its control
    /// socket and print the JSON reply; exit 1 if the reply is an error.
    #[command(name = "command")]
    Cmd {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
        /// Command name, e.g. `record.start`.
        name: String,
        /// The command's JSON payload (default `{}`).
        json: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a commented default config.
    Default,
}

#[derive(Subcommand, Debug)]
pub enum IndexCmd {
    /// Rebuild the index from the segment files alone.
    Rebuild {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
    },
    /// Check, changing nothing, that the index and the segment files agree (recorder
    /// stopped). Exit 1 on damage: the index names a file that is missing or has another
    /// size. What a crash leaves for the next start's recovery is listed as pending.
    Check {
        #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Loads the config; every [`crate::config::ConfigError`] already names the file once.
fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let cfg = load(&config)?;
            init_logging(&cfg.log.level);
            // One async thread is plenty: per stream it only parses RTP and segments
            // frames. File writes run on each stream's writer thread.
            let rt = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(8)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let clock: SharedClock = Arc::new(SystemClock);
            rt.block_on(crate::app::daemon::run_from_file(cfg, Some(config), clock))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { config } => {
            let cfg = load(&config)?;
            let root = &cfg.storage.root;
            let (marker, new) =
                crate::storage::guard::init(root, &cfg.device_id, SystemClock.wall_ms())?;
            if new {
                println!(
                    "{}: initialised for device {} (marker id {})",
                    root.display(),
                    marker.device_id,
                    marker.id
                );
            } else {
                println!(
                    "{}: already initialised (device {}, marker id {})",
                    root.display(),
                    marker.device_id,
                    marker.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, json } => {
            let cfg = load(&config)?;
            status(&cfg, json)
        }
        Command::Check { config } => {
            let cfg = load(&config)?;
            let recorded = cfg
                .streams
                .iter()
                .filter(|s| crate::config::rules::resolve(&cfg, &s.app, &s.name).is_some())
                .count();
            println!(
                "{}: ok ({} stream(s), {recorded} recorded, data in {})",
                config.display(),
                cfg.streams.len(),
                cfg.storage.root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            what: ConfigCmd::Default,
        } => {
            print!("{}", config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            what: IndexCmd::Rebuild { config },
        } => {
            let cfg = load(&config)?;
            check_root(&cfg)?;
            let (store, damaged) =
                Store::open_for_rebuild(&cfg.storage.root, Arc::new(SystemClock))?;
            // Rows rebuilt for a template with an upload target are queued again, as the
            // closing commit queues them when recording; not when a target's keys use
            // `{id}`, which a rebuild renumbers (new keys, or another segment's old key).
            let store = Arc::new(store);
            let by_id: Vec<&str> = cfg
                .upload
                .iter()
                .flat_map(|u| &u.targets)
                .filter(|t| t.key.uses("id"))
                .map(|t| t.name.as_str())
                .collect();
            let queue = if by_id.is_empty() {
                crate::sync::upload::Uploads::register(&cfg, &store, Arc::new(SystemClock))
            } else {
                None
            };
            let mut report = store.rebuild_index()?;
            if queue.is_none() {
                report.queued = None;
            }
            if !by_id.is_empty() {
                eprintln!(
                    "warning: no segment was queued for upload: the keys of target(s) {} use {{id}}, which a rebuild renumbers",
                    by_id.join(", ")
                );
            }
            report.damaged_index = damaged;
            println!("{}: {report}", cfg.storage.root.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            what: IndexCmd::Check { config, json },
        } => {
            let cfg = load(&config)?;
            check_root(&cfg)?;
            let report = Store::check(&cfg.storage.root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}: {report}", cfg.storage.root.display());
            }
            Ok(if report.damage.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Uploads { config, json } => {
            let cfg = load(&config)?;
            crate::app::upload_cmd::uploads(
                &cfg.storage.root,
                cfg.upload.is_some(),
                || open_existing(&cfg),
                json,
                SystemClock.wall_ms(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload {
            config,
            now,
            pause,
            resume,
            timeout,
        } => {
            let cfg = load(&config)?;
            if pause || resume {
                crate::app::upload_cmd::set_paused(
                    &cfg.storage.root,
                    cfg.upload.is_some(),
                    || open_existing(&cfg),
                    pause,
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::ensure!(
                now,
                "nothing to do: use `edgerec upload --now`, `--pause` or `--resume`"
            );
            let timeout = timeout
                .map(|t| humantime::parse_duration(&t))
                .transpose()
                .context("--timeout")?;
            crate::app::upload_cmd::upload_now(&cfg.storage.root, timeout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl(args) => crate::control::mqtt::ctl::main(args),
        Command::Export(args) => {
            let cfg = load(&args.config)?;
            let rows = segment_rows(&cfg)?;
            crate::app::export::run(&args, &cfg.storage.root, &rows)
        }
        Command::Cmd { config, name, json } => {
            let cfg = load(&config)?;
            crate::app::command_cmd::run(&cfg.storage.root, &name, json.as_deref())
        }
        Command::Segments {
            config,
            stream,
            json,
        } => {
            let cfg = load(&config)?;
            let rows: Vec<_> = segment_rows(&cfg)?
                .into_iter()
                .filter(|r| stream.as_deref().is_none_or(|s| r.stream == s))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:>6} {:>14} {:>9} {:>11} {:<8} {:<9} path",
                    "stream", "seq", "start_ms", "dur_ms", "bytes", "state", "time"
                );
                for r in rows {
                    println!(
                        "{:<16} {:>6} {:>14} {:>9} {:>11} {:<8} {:<9} {}",
                        r.stream,
                        r.seq,
                        r.start_ms,
                        r.duration_ms,
                        r.bytes,
                        format!("{:?}", r.state).to_lowercase(),
                        r.time_quality.as_str(),
                        r.files
                            .first()
                            .map(|f| f.path.display().to_string())
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every row, from the running recorder (it holds the index) or else from the index.
fn segment_rows(cfg: &Config) -> anyhow::Result<Vec<SegmentRow>> {
    Ok(match ask_or_open(cfg, "segments")? {
        Local::Answer(answer) => serde_json::from_str(&answer)
            .with_context(|| format!("unexpected answer from the running recorder: {answer}"))?,
        Local::Index(store) => store.segments()?,
    })
}

/// Opens the store of a stopped recorder for reading or maintenance, without creating the
/// data directory and, with `storage.require_marker`, only if `edgerec init` marked it: an
/// unmounted disk's mount point is left untouched (see [`crate::storage::guard`]).
/// What [`ask_or_open`] got: the running recorder's answer, or the index when none runs.
enum Local {
    Answer(String),
    Index(Store),
}

/// How long a command waits for a recorder that holds the index but does not listen yet.
const STARTING: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks the running recorder `req` over its socket; when none listens, opens the index. A
/// recorder that is starting holds the index (recovery, the first retention pass) before
/// its socket listens: then the socket is asked again until it answers, for [`STARTING`].
fn ask_or_open(cfg: &Config, req: &str) -> anyhow::Result<Local> {
    let deadline = std::time::Instant::now() + STARTING;
    loop {
        if let Some(answer) = crate::control::socket::request(&cfg.storage.root, req)? {
            return Ok(Local::Answer(answer));
        }
        check_root(cfg)?;
        match Store::open(&cfg.storage.root) {
            Ok(store) => return Ok(Local::Index(store)),
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn open_existing(cfg: &Config) -> anyhow::Result<Store> {
    check_root(cfg)?;
    Ok(Store::open(&cfg.storage.root)?)
}

/// The data directory exists and, with `storage.require_marker`, is marked.
fn check_root(cfg: &Config) -> anyhow::Result<()> {
    use crate::storage::guard::GuardError;
    let root = &cfg.storage.root;
    if !root.is_dir() {
        return Err(GuardError::Missing { root: root.clone() }.into());
    }
    if cfg.storage.require_marker && crate::storage::guard::read(root)?.is_none() {
        return Err(GuardError::Unmarked { root: root.clone() }.into());
    }
    Ok(())
}

/// `edgerec status`: the running recorder's report, or the index's when none runs.
fn status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let root = &cfg.storage.root;
    let local = if root.is_dir() {
        Some(ask_or_open(cfg, "status")?)
    } else {
        // A recorder may still answer (it was started before the directory went away).
        crate::control::socket::request(root, "status")?.map(Local::Answer)
    };
    let report: crate::control::report::Report = match local {
        Some(Local::Answer(answer)) => serde_json::from_str(&answer)
            .with_context(|| format!("unexpected answer from the running recorder: {answer}"))?,
        None => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"running": false, "root": root.display().to_string(), "error": "the data directory does not exist"})
                );
            } else {
                println!(
                    "no recorder is running, and the data directory {} does not exist (not mounted? run `edgerec init`)",
                    root.display()
                );
            }
            return Ok(ExitCode::from(3));
        }
        Some(Local::Index(store)) => {
            let mut r = crate::control::report::build_report(
                &store,
                None,
                &cfg.device_id,
                cfg.storage.max_bytes,
                SystemClock.now(),
            )?;
            r.uploads = r.uploads.with_state(
                cfg.upload.is_some(),
                crate::sync::upload::paused_in(&store)?,
                SystemClock.wall_ms(),
            );
            r.callbacks = crate::sync::webhooks::aged(r.callbacks, SystemClock.wall_ms());
            r
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::app::status::render(&report));
    }
    // Like `systemctl status`: 0 when recording, 3 when not running.
    Ok(if report.running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn init_logging(level: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `RUST_LOG` wins over `log.level`; both are `target=level` directives (validated for
    // `log.level`; an unusable `RUST_LOG` falls back to it).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .or_else(|| level.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(filter)
        .init();
}
