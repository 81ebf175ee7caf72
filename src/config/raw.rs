//! The config file exactly as serde reads it: every value still in the user's spelling
//! (durations and sizes as strings), so validation can name the field and echo the value.
//! The meaning of each key is documented on the validated types in `config` and in
//! `docs/config.md`.

use serde::Deserialize;

pub(crate) use super::units::{RawDuration, RawSize};

/// Top level of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// See [`super::Config::device_id`].
    pub device_id: String,
    /// See [`super::Config::storage`].
    pub storage: RawStorage,
    /// See [`super::Config::templates`].
    #[serde(default)]
    pub templates: Vec<RawTemplate>,
    /// See [`super::Config::rules`].
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// See [`super::Config::streams`].
    #[serde(default)]
    pub streams: Vec<RawStream>,
    /// See [`super::Config::log`].
    #[serde(default)]
    pub log: Option<RawLog>,
    /// See [`super::Config::ingest`].
    #[serde(default)]
    pub ingest: Option<RawIngest>,
    /// See [`super::Config::mqtt`].
    #[serde(default)]
    pub mqtt: Option<super::mqtt::RawMqtt>,
    /// See [`super::Config::upload`].
    #[serde(default)]
    pub upload: Option<super::upload::RawUpload>,
    /// See [`super::Config::callbacks`].
    #[serde(default)]
    pub callbacks: Vec<super::callbacks::RawCallback>,
    /// See [`super::Config::http`].
    #[serde(default)]
    pub http: Option<super::http::RawHttp>,
}

/// `[ingest]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngest {
    /// See [`super::IngestConfig::rtsp`].
    #[serde(default)]
    pub rtsp: Option<String>,
    /// See [`super::IngestConfig::rtmp`].
    #[serde(default)]
    pub rtmp: Option<String>,
    /// See [`super::IngestConfig::takeover`].
    #[serde(default)]
    pub takeover: bool,
    /// See [`super::IngestConfig::users`].
    #[serde(default)]
    pub users: Vec<RawIngestUser>,
    /// See [`super::IngestConfig::max_connections`].
    #[serde(default)]
    pub max_connections: Option<i64>,
    /// See [`super::IngestConfig::max_request_bytes`].
    #[serde(default)]
    pub max_request_bytes: Option<RawSize>,
    /// See [`super::IngestConfig::max_buffered_bytes`].
    #[serde(default)]
    pub max_buffered_bytes: Option<RawSize>,
    /// See [`super::IngestConfig::session_timeout`].
    #[serde(default)]
    pub session_timeout: Option<RawDuration>,
}

/// One `[[ingest.users]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngestUser {
    /// See [`super::IngestUser::user`].
    pub user: String,
    /// See [`super::IngestUser::password`].
    pub password: String,
}

/// `[storage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    /// See [`super::StorageConfig::root`].
    pub root: String,
    /// See [`super::StorageConfig::max_bytes`].
    pub max_bytes: RawSize,
    /// See [`super::StorageConfig::min_free`].
    #[serde(default)]
    pub min_free: Option<RawSize>,
    /// See [`super::StorageConfig::max_age`].
    #[serde(default)]
    pub max_age: Option<RawDuration>,
    /// See [`super::StorageConfig::retention_interval`].
    #[serde(default)]
    pub retention_interval: Option<RawDuration>,
    /// See [`super::StorageConfig::require_marker`].
    #[serde(default)]
    pub require_marker: Option<bool>,
    /// See [`super::StorageConfig::stall_timeout`].
    #[serde(default)]
    pub stall_timeout: Option<RawDuration>,
    /// See [`super::StorageConfig::fault_restart`].
    #[serde(default)]
    pub fault_restart: Option<RawDuration>,
    /// See [`super::StorageConfig::policy`].
    #[serde(default)]
    pub policy: Option<String>,
}

/// One `[[templates]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTemplate {
    /// See [`super::Template::name`].
    pub name: String,
    /// See [`super::Template::formats`].
    pub formats: Vec<String>,
    /// See [`super::Template::interval`].
    #[serde(default)]
    pub interval: Option<RawDuration>,
    /// See [`super::Template::fragment`].
    #[serde(default)]
    pub fragment: Option<RawDuration>,
    /// See [`super::Template::naming`].
    #[serde(default)]
    pub naming: Option<String>,
    /// See [`super::Template::upload`].
    #[serde(default)]
    pub upload: Option<String>,
    /// See [`super::Template::playlist_max_length`].
    #[serde(default)]
    pub playlist_max_length: Option<RawDuration>,
    /// See [`super::Template::resume_window`].
    #[serde(default)]
    pub resume_window: Option<RawDuration>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    /// See [`super::Rule::template`].
    pub template: String,
    /// See [`super::Rule::app`].
    #[serde(default)]
    pub app: Option<String>,
    /// See [`super::Rule::stream`].
    #[serde(default)]
    pub stream: Option<String>,
    /// See [`super::Rule::priority`].
    #[serde(default)]
    pub priority: i32,
}

/// One `[[streams]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStream {
    /// See [`super::StreamConfig::name`].
    pub name: String,
    /// See [`super::StreamConfig::app`].
    #[serde(default)]
    pub app: String,
    /// See [`super::StreamConfig::source`].
    pub source: String,
    /// See [`super::StreamConfig::max_bytes`].
    #[serde(default)]
    pub max_bytes: Option<RawSize>,
    /// See [`super::StreamConfig::fps_milli`].
    #[serde(default)]
    pub fps: Option<f64>,
    /// See [`super::StreamConfig::audio_pipe`].
    #[serde(default)]
    pub audio_pipe: Option<String>,
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    /// See [`super::LogConfig::level`].
    #[serde(default)]
    pub level: Option<String>,
}
