//! The TOML config file: what to record, how, and how much disk to use.
//!
//! [`Config::from_toml_str`] parses and validates in one step; every error names the field
//! path (`templates[0].interval`) and says what is wrong. Reading goes through private
//! "raw" structs that keep the user's spelling (`"2GiB"`, `"7d"`), then `validate` turns
//! them into the typed structs below. [`DEFAULT_TOML`] is a fully commented example config,
//! and `docs/config.md` is the reference of every key.
//!
//! Paths are kept as written: a relative `storage.root` is resolved against the current
//! directory when it is used.

pub mod callbacks;
pub mod format;
pub mod http;
pub mod mqtt;
pub mod patch;
mod raw;
pub mod rules;
mod size;
pub mod source;
mod units;
pub mod upload;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use mqtt::MqttConfig;
pub use size::{parse_min_free, parse_size, MinFree};

use crate::config::format::Format;

/// A fully commented config that records the demo stream (`assets/sample.mp4`, looped) into
/// `./data`. `edgerec` prints it for users to start from; it is accepted by
/// [`Config::from_toml_str`].
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Default `naming` of a template.
pub const DEFAULT_NAMING: &str = "{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}";
/// Default segment length (`interval`) of a template.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Largest allowed `interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(2 * 3600);
/// Smallest allowed `interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default `fragment` duration of a template.
pub const DEFAULT_FRAGMENT: Duration = Duration::from_secs(1);
/// Smallest allowed `fragment`.
pub const MIN_FRAGMENT: Duration = Duration::from_millis(100);
/// Default [`Template::playlist_max_length`] (raised to `interval` when that is longer).
pub const DEFAULT_PLAYLIST_MAX: Duration = Duration::from_secs(3600);
/// Longest [`Template::playlist_max_length`].
pub const MAX_PLAYLIST: Duration = Duration::from_secs(24 * 3600);
/// Longest [`Template::resume_window`].
pub const MAX_RESUME_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Default `storage.retention_interval`.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Default `storage.stall_timeout`.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `storage.fault_restart`.
pub const DEFAULT_FAULT_RESTART: Duration = Duration::from_secs(600);
/// Default `ingest.max_connections`.
pub const DEFAULT_INGEST_MAX_CONNECTIONS: usize = 32;
/// Default `ingest.max_request_bytes`.
pub const DEFAULT_INGEST_MAX_REQUEST_BYTES: usize = 64 << 10;
/// Default `ingest.max_buffered_bytes`.
pub const DEFAULT_INGEST_MAX_BUFFERED_BYTES: usize = 16 << 20;
/// Default `ingest.session_timeout`.
pub const DEFAULT_INGEST_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole config file, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Identifies this recorder; written into every segment and (later) used in upload keys
    /// and MQTT topics. Not empty; no `/`, `\` or control characters.
    pub device_id: String,
    /// Where recordings go and how much space they may use.
    pub storage: StorageConfig,
    /// Named recording templates (`[[templates]]`), referred to by rules.
    pub templates: Vec<Template>,
    /// Which template each stream records with (`[[rules]]`). No matching rule: not recorded.
    pub rules: Vec<Rule>,
    /// The streams to pull (`[[streams]]`).
    pub streams: Vec<StreamConfig>,
    /// Logging (`[log]`, optional).
    pub log: LogConfig,
    /// Push ingest servers (`[ingest]`, optional; off by default).
    pub ingest: IngestConfig,
    /// MQTT fleet control and events (`[mqtt]`, optional; off when absent).
    pub mqtt: Option<MqttConfig>,
    /// Upload sync to object storage (`[upload]`, optional; off when absent).
    pub upload: Option<upload::UploadConfig>,
    /// Webhook endpoints the event log is delivered to (`[[callbacks]]`, optional).
    pub callbacks: Vec<callbacks::CallbackConfig>,
    /// The local HTTP API (`[http]`, optional; off when absent).
    pub http: Option<http::HttpConfig>,
}

/// `[ingest]`: servers that accept pushed streams, and their limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// Address of the RTSP push server (ANNOUNCE/RECORD); `None` = off.
    pub rtsp: Option<SocketAddr>,
    /// Address of the RTMP publish server; `None` = off.
    pub rtmp: Option<SocketAddr>,
    /// A second publisher of a live stream replaces the first (`true`) instead of being
    /// refused (`false`, the default).
    pub takeover: bool,
    /// Publish credentials; empty = anyone may publish. RTSP asks for Basic or Digest.
    pub users: Vec<IngestUser>,
    /// Open push connections at most, both servers together (default 32).
    pub max_connections: usize,
    /// Largest RTSP request (headers + body such as the SDP) or RTMP message, in bytes
    /// (default 64 KiB).
    pub max_request_bytes: usize,
    /// Bytes a publisher may be ahead of its recorder before it is disconnected
    /// (default 16 MiB).
    pub max_buffered_bytes: usize,
    /// A publisher that sends nothing for this long is disconnected (default 10 s).
    pub session_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            rtsp: None,
            rtmp: None,
            takeover: false,
            users: Vec::new(),
            max_connections: DEFAULT_INGEST_MAX_CONNECTIONS,
            max_request_bytes: DEFAULT_INGEST_MAX_REQUEST_BYTES,
            max_buffered_bytes: DEFAULT_INGEST_MAX_BUFFERED_BYTES,
            session_timeout: DEFAULT_INGEST_SESSION_TIMEOUT,
        }
    }
}

/// `[[ingest.users]]`: one publisher account.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestUser {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for IngestUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestUser")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// `[storage]`: the recordings directory and the ring-buffer limits retention enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// Directory for recordings and the index, as written (relative paths are resolved
    /// against the current directory when used).
    pub root: PathBuf,
    /// Quota for all recordings together, in bytes: oldest segments are deleted beyond it.
    pub max_bytes: u64,
    /// Space to keep free on the filesystem holding `root` (default 10 %).
    pub min_free: MinFree,
    /// Delete segments that ended longer ago than this (optional).
    pub max_age: Option<Duration>,
    /// How often retention runs besides after each closed segment (default 60 s).
    pub retention_interval: Duration,
    /// Refuse to record unless `root` holds the marker `edgerec init` writes (default
    /// true), so an unmounted SD card or SSD never fills the root filesystem.
    pub require_marker: bool,
    /// The storage watchdog: a segment write or fsync still running after this long counts
    /// as a stalled disk (default 20 s; see [`crate::storage::watchdog`]).
    pub stall_timeout: Duration,
    /// The storage watchdog: a storage condition (write errors, a stall, a read-only or
    /// full disk) that lasts this long stops feeding the systemd watchdog, so systemd
    /// restarts the recorder (default 10 min).
    pub fault_restart: Duration,
    /// What retention does when only segments not uploaded yet are over a limit (default
    /// `delete_oldest`).
    pub policy: upload::StoragePolicy,
}

/// `[[templates]]`: how to record.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Unique name that rules refer to.
    pub name: String,
    /// Formats to write; empty means "do not record".
    pub formats: Vec<Format>,
    /// Target segment length; a segment is cut on the first key frame after it, or at the
    /// next video frame once twice this passed without one (1 s..=2 h, default 60 s).
    pub interval: Duration,
    /// Fragment duration, the most a power cut can lose (100 ms..=`interval`, default 1 s).
    pub fragment: Duration,
    /// File naming template relative to `storage.root`, without extension (see
    /// [`crate::util::naming`]).
    pub naming: String,
    /// The upload target (`[[upload.targets]]` name) closed segments go to; `None` = none.
    pub upload: Option<String>,
    /// `hls`: a recording's playlist is finished and a new one begun once it lists this much
    /// media (`interval`..=24 h, default 1 h), so no playlist grows without bound.
    pub playlist_max_length: Duration,
    /// `hls`: a stream whose source ended or was lost and that comes back within this long
    /// continues the same playlist (`EXT-X-DISCONTINUITY`), also across a restart; zero
    /// (the default) finishes the playlist at once. At most 30 min.
    pub resume_window: Duration,
}

impl Template {
    /// True when this template records nothing (`formats = []`).
    pub fn is_off(&self) -> bool {
        self.formats.is_empty()
    }
}

/// `[[rules]]`: which template a stream records with (see [`crate::config::rules::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Name of the template to use.
    pub template: String,
    /// Glob on the application name; unset matches any.
    pub app: Option<String>,
    /// Glob on the stream name; unset matches any.
    pub stream: Option<String>,
    /// Breaks ties between equally specific rules; higher wins (default 0).
    pub priority: i32,
}

/// `[[streams]]`: one source to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Unique stream name, used in file names. Not empty; no `/`, `\`, `..`, NUL or
    /// control characters.
    pub name: String,
    /// Application name, matched by rules' `app` globs (default empty).
    pub app: String,
    /// Where frames come from: `rtsp://...` or `file:...`, checked with
    /// [`source::SourceSpec::parse`] (see [`source`]).
    pub source: String,
    /// Per-stream quota in bytes, enforced in addition to `storage.max_bytes` (optional).
    pub max_bytes: Option<u64>,
    /// `fps`: frame-rate hint of a `pipe:` source, in thousandths of a frame per second
    /// (`fps = 29.97` → 29 970). Timestamps follow arrival times smoothed at this rate.
    pub fps_milli: Option<u32>,
    /// `audio_pipe`: a command writing ADTS AAC to stdout, recorded with a `pipe:` source.
    pub audio_pipe: Option<String>,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or directives
    /// such as `info,edgerec::storage::store=debug`. `RUST_LOG` overrides it. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

/// Returns the config in force now (it changes with `config.set`); handed down from the
/// wiring place to the parts that resolve rules and templates at run time.
pub type LiveConfig = std::sync::Arc<dyn Fn() -> std::sync::Arc<Config> + Send + Sync>;

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, a missing key or a value of the wrong type; the
    /// message (from `toml`) shows the line and column.
    #[error("{}{message}", file_prefix(file))]
    Parse {
        /// The config file, when loaded from one.
        file: Option<PathBuf>,
        /// toml's message, with line, column and the offending key.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{}{field}: {message}", file_prefix(file))]
    Invalid {
        /// The config file, when loaded from one.
        file: Option<PathBuf>,
        /// Path of the field, e.g. `templates[0].interval`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    match file {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl ConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: None,
            field: field.into(),
            message: message.into(),
        }
    }

    fn in_file(mut self, path: &Path) -> ConfigError {
        match &mut self {
            ConfigError::Parse { file, .. } | ConfigError::Invalid { file, .. } => {
                *file = Some(path.to_owned());
            }
            ConfigError::Read { .. } => {}
        }
        self
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Parse and validate a config from TOML text.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        // toml's message echoes the offending line: never a secret's value.
        let raw: raw::RawConfig = toml::from_str(s).map_err(|e| ConfigError::Parse {
            file: None,
            message: crate::util::redact::redact_toml_error(e.to_string().trim_end()),
        })?;
        validate::validate(raw)
    }

    /// The template called `name`.
    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_is_accepted_and_records_the_demo_stream() {
        let c = Config::from_toml_str(DEFAULT_TOML).unwrap();
        assert_eq!(c.storage.root, PathBuf::from("./data"));
        let demo = c.stream("demo").expect("demo stream");
        assert_eq!(demo.source, "file:assets/sample.mp4?loop=true");
        let t = crate::config::rules::resolve(&c, &demo.app, &demo.name).expect("demo is recorded");
        assert_eq!(t.formats, vec![Format::Fmp4]);
    }

    #[test]
    fn default_toml_sets_every_key_the_parser_knows() {
        // Parsing the default with every optional key present proves none is misspelled
        // (deny_unknown_fields); here we check that each known key appears at least once.
        for key in [
            "device_id",
            "root",
            "max_bytes",
            "min_free",
            "max_age",
            "retention_interval",
            "require_marker",
            "stall_timeout",
            "fault_restart",
            "fps",
            "audio_pipe",
            "name",
            "formats",
            "interval",
            "fragment",
            "naming",
            "template",
            "app",
            "stream",
            "priority",
            "source",
            "level",
        ] {
            let commented = format!("# {key} = ");
            let set = format!("\n{key} = ");
            assert!(
                DEFAULT_TOML.contains(&set) || DEFAULT_TOML.contains(&commented),
                "DEFAULT_TOML does not mention {key}"
            );
        }
    }

    #[test]
    fn every_line_of_default_toml_that_sets_a_key_is_explained_by_a_comment() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
                continue;
            }
            let commented_above = i > 0 && lines[i - 1].trim_start().starts_with('#');
            assert!(
                l.contains('#') || commented_above,
                "line {} has no comment: {line}",
                i + 1
            );
        }
    }

    #[test]
    fn load_prefixes_errors_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edgerec.toml");
        std::fs::write(
            &p,
            "device_id = \"x\"\n[storage]\nroot = \"d\"\nmax_bytes = \"2GB!\"\n",
        )
        .unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(
            e.contains("storage.max_bytes: invalid size \"2GB!\""),
            "{e}"
        );
    }

    #[test]
    fn load_of_a_missing_file_names_it() {
        let e = Config::load(Path::new("/nonexistent/edgerec.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/edgerec.toml"));
    }

    #[test]
    fn template_and_stream_are_found_by_name() {
        let c = Config::from_toml_str(DEFAULT_TOML).unwrap();
        assert!(c.template("continuous").is_some());
        assert!(c.template("nope").is_none());
        assert!(c.template("off").unwrap().is_off());
        assert!(c.stream("nope").is_none());
    }
}
