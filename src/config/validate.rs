//! From the raw, as-written config to the typed [`Config`], naming the field of each error.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::util::glob::Glob;

use super::raw::{RawConfig, RawDuration, RawIngest, RawSize, RawStorage, RawStream, RawTemplate};
use super::size::{parse_min_free, parse_size, MinFree};
use super::{
    Config, ConfigError, IngestConfig, IngestUser, LogConfig, Rule, StorageConfig, StreamConfig,
    Template, DEFAULT_FAULT_RESTART, DEFAULT_FRAGMENT, DEFAULT_INTERVAL, DEFAULT_NAMING,
    DEFAULT_PLAYLIST_MAX, DEFAULT_RETENTION_INTERVAL, DEFAULT_STALL_TIMEOUT, MAX_INTERVAL,
    MAX_PLAYLIST, MAX_RESUME_WINDOW, MIN_FRAGMENT, MIN_INTERVAL,
};
use crate::config::format::Format;

type Result<T> = std::result::Result<T, ConfigError>;

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, message))
}

pub(super) fn validate(raw: RawConfig) -> Result<Config> {
    check_identifier("device_id", &raw.device_id, false)?;
    let storage = storage(&raw.storage)?;

    let mut templates = Vec::with_capacity(raw.templates.len());
    let mut names = HashSet::new();
    for (i, t) in raw.templates.iter().enumerate() {
        let t = template(&format!("templates[{i}]"), t)?;
        if !names.insert(t.name.clone()) {
            return err(
                format!("templates[{i}].name"),
                format!("duplicate template name \"{}\"", t.name),
            );
        }
        templates.push(t);
    }

    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if !names.contains(&r.template) {
            return err(
                format!("{path}.template"),
                format!(
                    "no template is named \"{}\" (defined: {})",
                    r.template,
                    quoted_list(templates.iter().map(|t| t.name.as_str()))
                ),
            );
        }
        for (key, glob) in [("app", &r.app), ("stream", &r.stream)] {
            if let Some(g) = glob {
                Glob::new(g).map_err(|e| {
                    ConfigError::invalid(format!("{path}.{key}"), format!("invalid glob: {e}"))
                })?;
            }
        }
        rules.push(Rule {
            template: r.template.clone(),
            app: r.app.clone(),
            stream: r.stream.clone(),
            priority: r.priority,
        });
    }

    let mut streams = Vec::with_capacity(raw.streams.len());
    let mut stream_names = HashSet::new();
    for (i, s) in raw.streams.iter().enumerate() {
        let s = stream(&format!("streams[{i}]"), s)?;
        if !stream_names.insert(s.name.clone()) {
            return err(
                format!("streams[{i}].name"),
                format!("duplicate stream name \"{}\"", s.name),
            );
        }
        streams.push(s);
    }

    let log = match &raw.log {
        None => LogConfig::default(),
        Some(l) => match &l.level {
            None => LogConfig::default(),
            Some(level) => {
                level
                    .parse::<tracing_subscriber::filter::Targets>()
                    .map_err(|e| {
                        ConfigError::invalid(
                            "log.level",
                            format!(
                                "invalid filter \"{level}\": {e} \
                                 (use e.g. \"info\" or \"info,edgerec::storage::store=debug\")"
                            ),
                        )
                    })?;
                LogConfig {
                    level: level.clone(),
                }
            }
        },
    };

    let ingest = match &raw.ingest {
        None => IngestConfig::default(),
        Some(i) => ingest(i)?,
    };

    let mqtt = match &raw.mqtt {
        None => None,
        Some(m) => Some(super::mqtt::validate(m, &raw.device_id)?),
    };

    let uses: Vec<(String, String)> = (raw.templates.iter().enumerate())
        .filter_map(|(i, t)| Some((format!("templates[{i}].upload"), t.upload.clone()?)))
        .collect();
    let upload = super::upload::validate(raw.upload.as_ref(), &uses)?;
    let callbacks = super::callbacks::validate(&raw.callbacks)?;
    let http = raw.http.as_ref().map(super::http::validate).transpose()?;

    Ok(Config {
        device_id: raw.device_id,
        storage,
        templates,
        rules,
        streams,
        log,
        ingest,
        mqtt,
        upload,
        callbacks,
        http,
    })
}

fn ingest(i: &RawIngest) -> Result<IngestConfig> {
    let d = IngestConfig::default();
    let addr = |field: &str, v: &Option<String>| -> Result<Option<std::net::SocketAddr>> {
        match v {
            None => Ok(None),
            Some(s) => s.trim().parse().map(Some).map_err(|_| {
                ConfigError::invalid(
                    field,
                    format!("\"{s}\" is not an address:port (e.g. \"0.0.0.0:8554\")"),
                )
            }),
        }
    };
    let rtsp = addr("ingest.rtsp", &i.rtsp)?;
    let rtmp = addr("ingest.rtmp", &i.rtmp)?;
    if rtsp.is_some() && rtsp == rtmp {
        return err("ingest.rtmp", "must not be the same address as ingest.rtsp");
    }
    let mut users = Vec::with_capacity(i.users.len());
    for (n, u) in i.users.iter().enumerate() {
        let field = format!("ingest.users[{n}].user");
        if u.user.is_empty() || u.user.contains([':', '"']) || u.user.chars().any(char::is_control)
        {
            return err(
                field,
                "must not be empty or contain ':', '\"' or control characters",
            );
        }
        if users.iter().any(|x: &IngestUser| x.user == u.user) {
            return err(field, format!("duplicate user \"{}\"", u.user));
        }
        users.push(IngestUser {
            user: u.user.clone(),
            password: u.password.clone(),
        });
    }
    let max_connections = match i.max_connections {
        None => d.max_connections,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            return err(
                "ingest.max_connections",
                format!("{n} must be between 1 and 10000"),
            )
        }
    };
    let bounded_size = |field: &str, v: &Option<RawSize>, def: usize, min: u64, max: u64| match v {
        None => Ok(def),
        Some(v) => {
            let b = size(field, v)?;
            if b < min || b > max {
                return err(
                    field,
                    format!("\"{v}\" must be between {min} and {max} bytes"),
                );
            }
            Ok(b as usize)
        }
    };
    let max_request_bytes = bounded_size(
        "ingest.max_request_bytes",
        &i.max_request_bytes,
        d.max_request_bytes,
        4 << 10,
        16 << 20,
    )?;
    let max_buffered_bytes = bounded_size(
        "ingest.max_buffered_bytes",
        &i.max_buffered_bytes,
        d.max_buffered_bytes,
        64 << 10,
        1 << 30,
    )?;
    let session_timeout = match &i.session_timeout {
        None => d.session_timeout,
        Some(v) => {
            let t = duration("ingest.session_timeout", v)?;
            if t < Duration::from_secs(1) || t > Duration::from_secs(3600) {
                return err(
                    "ingest.session_timeout",
                    format!("\"{v}\" must be between 1s and 1h"),
                );
            }
            t
        }
    };
    Ok(IngestConfig {
        rtsp,
        rtmp,
        takeover: i.takeover,
        users,
        max_connections,
        max_request_bytes,
        max_buffered_bytes,
        session_timeout,
    })
}

fn quoted_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|s| format!("\"{s}\"")).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Names that end up in file names: not empty (unless `allow_empty`), no path separators,
/// no `..`, no NUL or other control characters.
fn check_identifier(field: &str, s: &str, allow_empty: bool) -> Result<()> {
    if s.is_empty() {
        if allow_empty {
            return Ok(());
        }
        return err(field, "must not be empty");
    }
    if s.contains(['/', '\\']) {
        return err(field, format!("\"{s}\" must not contain \"/\" or \"\\\""));
    }
    if s.contains("..") || s == "." {
        return err(
            field,
            format!("\"{s}\" must not contain \"..\" or be \".\""),
        );
    }
    if s.chars().any(char::is_control) {
        return err(
            field,
            format!("{s:?} must not contain NUL or other control characters"),
        );
    }
    Ok(())
}

fn duration(field: &str, s: &RawDuration) -> Result<Duration> {
    let s = &s.0;
    humantime::parse_duration(s.trim()).map_err(|e| {
        ConfigError::invalid(
            field,
            format!("invalid duration \"{s}\": {e} (use e.g. \"60s\", \"500ms\", \"7d\")"),
        )
    })
}

fn size(field: &str, v: &RawSize) -> Result<u64> {
    match v {
        RawSize::Int(i) => u64::try_from(*i)
            .map_err(|_| ConfigError::invalid(field, format!("size {i} must not be negative"))),
        RawSize::Str(s) => parse_size(s).map_err(|m| ConfigError::invalid(field, m)),
    }
}

fn storage(s: &RawStorage) -> Result<StorageConfig> {
    if s.root.trim().is_empty() {
        return err("storage.root", "must not be empty");
    }
    if s.root.contains('\0') {
        return err("storage.root", "must not contain NUL");
    }
    let max_bytes = size("storage.max_bytes", &s.max_bytes)?;
    if max_bytes == 0 {
        return err(
            "storage.max_bytes",
            "must be more than 0 (e.g. \"2GiB\"), or nothing could be recorded",
        );
    }
    let min_free = match &s.min_free {
        None => MinFree::default(),
        Some(RawSize::Str(v)) => {
            parse_min_free(v).map_err(|m| ConfigError::invalid("storage.min_free", m))?
        }
        Some(v @ RawSize::Int(_)) => MinFree::Bytes(size("storage.min_free", v)?),
    };
    let max_age = match &s.max_age {
        None => None,
        Some(v) => {
            let d = duration("storage.max_age", v)?;
            if d < Duration::from_secs(1) {
                return err(
                    "storage.max_age",
                    format!("\"{v}\" is below the minimum of 1s; remove the key to keep segments regardless of age"),
                );
            }
            Some(d)
        }
    };
    let retention_interval = match &s.retention_interval {
        None => DEFAULT_RETENTION_INTERVAL,
        Some(v) => {
            let d = duration("storage.retention_interval", v)?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
                return err(
                    "storage.retention_interval",
                    format!("\"{v}\" must be between 1s and 1day"),
                );
            }
            d
        }
    };
    let bounded = |key: &str, v: &Option<RawDuration>, default: Duration, min: u64, max: u64| {
        let Some(v) = v else { return Ok(default) };
        let d = duration(key, v)?;
        if d < Duration::from_secs(min) || d > Duration::from_secs(max) {
            return err(key, format!("\"{v}\" must be between {min}s and {max}s"));
        }
        Ok(d)
    };
    let stall_timeout = bounded(
        "storage.stall_timeout",
        &s.stall_timeout,
        DEFAULT_STALL_TIMEOUT,
        1,
        600,
    )?;
    let fault_restart = bounded(
        "storage.fault_restart",
        &s.fault_restart,
        DEFAULT_FAULT_RESTART,
        1,
        86_400,
    )?;
    Ok(StorageConfig {
        root: PathBuf::from(&s.root),
        max_bytes,
        min_free,
        max_age,
        retention_interval,
        require_marker: s.require_marker.unwrap_or(true),
        stall_timeout,
        fault_restart,
        policy: super::upload::policy(s.policy.as_deref())?,
    })
}

fn template(path: &str, t: &RawTemplate) -> Result<Template> {
    check_identifier(&format!("{path}.name"), &t.name, false)?;
    let mut formats = Vec::with_capacity(t.formats.len());
    for (i, f) in t.formats.iter().enumerate() {
        let field = format!("{path}.formats[{i}]");
        let f = Format::parse(f).map_err(|m| ConfigError::invalid(&field, m))?;
        if formats.contains(&f) {
            return err(field, format!("format \"{}\" is listed twice", f.name()));
        }
        formats.push(f);
    }
    let interval = match &t.interval {
        None => DEFAULT_INTERVAL,
        Some(v) => {
            let field = format!("{path}.interval");
            let d = duration(&field, v)?;
            if d > MAX_INTERVAL {
                return err(field, format!("{v} exceeds the maximum of 2h"));
            }
            if d < MIN_INTERVAL {
                return err(field, format!("{v} is below the minimum of 1s"));
            }
            d
        }
    };
    let fragment = match &t.fragment {
        None => DEFAULT_FRAGMENT.min(interval),
        Some(v) => {
            let field = format!("{path}.fragment");
            let d = duration(&field, v)?;
            if d < MIN_FRAGMENT {
                return err(field, format!("{v} is below the minimum of 100ms"));
            }
            if d > interval {
                return err(
                    field,
                    format!(
                        "{v} exceeds the template's interval of {}",
                        humantime::format_duration(interval)
                    ),
                );
            }
            d
        }
    };
    let naming = t
        .naming
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMING.to_owned());
    crate::util::naming::validate_template(&naming)
        .map_err(|m| ConfigError::invalid(format!("{path}.naming"), m))?;
    let playlist_max_length = match &t.playlist_max_length {
        None => DEFAULT_PLAYLIST_MAX.max(interval),
        Some(v) => {
            let field = format!("{path}.playlist_max_length");
            let d = duration(&field, v)?;
            if d > MAX_PLAYLIST {
                return err(field, format!("{v} exceeds the maximum of 24h"));
            }
            if d < interval {
                return err(
                    field,
                    format!(
                        "{v} is below the template's interval of {}",
                        humantime::format_duration(interval)
                    ),
                );
            }
            d
        }
    };
    let resume_window = match &t.resume_window {
        None => Duration::ZERO,
        Some(v) => {
            let field = format!("{path}.resume_window");
            let d = duration(&field, v)?;
            if d > MAX_RESUME_WINDOW {
                return err(field, format!("{v} exceeds the maximum of 30m"));
            }
            d
        }
    };
    Ok(Template {
        name: t.name.clone(),
        formats,
        interval,
        fragment,
        naming,
        upload: t.upload.clone(),
        playlist_max_length,
        resume_window,
    })
}

fn stream(path: &str, s: &RawStream) -> Result<StreamConfig> {
    check_identifier(&format!("{path}.name"), &s.name, false)?;
    check_identifier(&format!("{path}.app"), &s.app, true)?;
    let spec = crate::config::source::SourceSpec::parse(&s.source)
        .map_err(|m| ConfigError::invalid(format!("{path}.source"), m))?;
    let is_pipe = matches!(spec, crate::config::source::SourceSpec::Pipe { .. });
    let fps_milli = match s.fps {
        None => None,
        Some(_) if !is_pipe => {
            return err(format!("{path}.fps"), "only pipe: sources take an fps hint")
        }
        Some(f) if !(0.1..=1000.0).contains(&f) => {
            return err(
                format!("{path}.fps"),
                format!("{f} must be between 0.1 and 1000"),
            )
        }
        Some(f) => Some((f * 1000.0).round() as u32),
    };
    let audio_pipe = match &s.audio_pipe {
        None => None,
        Some(_) if !is_pipe => {
            return err(
                format!("{path}.audio_pipe"),
                "only pipe: sources take an audio command",
            )
        }
        Some(c) if c.trim().is_empty() => {
            return err(format!("{path}.audio_pipe"), "must not be empty")
        }
        Some(c) => Some(c.trim().to_owned()),
    };
    let max_bytes = match &s.max_bytes {
        None => None,
        Some(v) => {
            let field = format!("{path}.max_bytes");
            let b = size(&field, v)?;
            if b == 0 {
                return err(
                    field,
                    "must be more than 0; remove the key for no per-stream quota",
                );
            }
            Some(b)
        }
    };
    Ok(StreamConfig {
        name: s.name.clone(),
        app: s.app.clone(),
        source: s.source.clone(),
        max_bytes,
        fps_milli,
        audio_pipe,
    })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
