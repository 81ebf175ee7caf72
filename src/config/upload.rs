//! `[upload]` and `[[upload.targets]]`: where closed segments are uploaded, and how gently.
//! Also `storage.policy`, which decides what retention does with segments not uploaded yet.
//!
//! Raw and validated structs live together here so the upload section is one file; the
//! shared config files only name the fields. Secrets (`secret_access_key`) never appear in
//! `Debug` output or errors.

use std::path::PathBuf;

use serde::Deserialize;

use super::size::parse_size;
use super::units::RawSize;
use super::ConfigError;
use crate::util::object_key::KeyTemplate;
use crate::util::windows::Window;

/// Default `upload.part_size`: files above it go as multipart uploads.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// Smallest `upload.part_size` (S3's minimum part size).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest `upload.part_size` (S3's maximum part size).
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Default object key template of a target.
pub use crate::util::object_key::DEFAULT_KEY;

/// `[upload]` as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpload {
    #[serde(default)]
    pub bandwidth: Option<String>,
    #[serde(default)]
    pub windows: Vec<String>,
    #[serde(default)]
    pub concurrency: Option<i64>,
    #[serde(default)]
    pub part_size: Option<RawSize>,
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub delete_after_upload: bool,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
}

/// One `[[upload.targets]]` as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub virtual_hosted: bool,
    #[serde(default)]
    pub checksum: bool,
}

/// Which pending segment goes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadOrder {
    /// The oldest recording first (default).
    #[default]
    OldestFirst,
    /// The newest recording first, then the older ones (catching up after an outage).
    NewestFirst,
}

/// `[upload]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadConfig {
    /// Upload rate cap in bytes per second, all transfers together; `None` = no cap.
    pub bandwidth: Option<u64>,
    /// Local-time windows uploads are confined to; empty = any time.
    pub windows: Vec<Window>,
    /// Transfers at once (default 1).
    pub concurrency: usize,
    /// Multipart part size; files above it go as multipart uploads (default 8 MiB).
    pub part_size: u64,
    /// Which pending segment goes first.
    pub order: UploadOrder,
    /// Delete a segment's local files once uploaded and verified.
    pub delete_after_upload: bool,
    /// Named targets that templates refer to with `upload = "name"`.
    pub targets: Vec<UploadTarget>,
}

impl UploadConfig {
    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&UploadTarget> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// Where a target's objects go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// An S3-compatible bucket, keys under `prefix` (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
    /// A local directory: absolute, or relative to the working directory.
    File { dir: PathBuf },
}

/// `[[upload.targets]]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadTarget {
    /// Unique name templates refer to.
    pub name: String,
    /// The URL as written (`s3://bucket/prefix`, `file:///dir` or `file:dir`).
    pub url: String,
    /// Parsed from `url`.
    pub kind: TargetKind,
    /// S3 endpoint (`https://host[:port]`); `None` = AWS S3 for `region`.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Object key template, relative to the URL's prefix.
    pub key: KeyTemplate,
    /// Access key id from the config (else `AWS_ACCESS_KEY_ID` or `credentials_file`).
    pub access_key_id: Option<String>,
    /// Secret key from the config; never logged.
    pub secret_access_key: Option<String>,
    /// An AWS-style credentials file (`[default]` with `aws_access_key_id`...).
    pub credentials_file: Option<PathBuf>,
    /// Allow `http://` endpoints (a LAN MinIO, a test server).
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`https://bucket.endpoint/key`), needed by Aliyun OSS
    /// and recommended for Tencent COS; path style (`https://endpoint/bucket/key`) otherwise.
    pub virtual_hosted: bool,
    /// Send a SHA-256 checksum with every part or object (AWS S3, MinIO) for the service to
    /// verify.
    pub checksum: bool,
}

impl std::fmt::Debug for UploadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadTarget")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("key", &self.key.as_str())
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("credentials_file", &self.credentials_file)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("checksum", &self.checksum)
            .finish()
    }
}

/// `storage.policy`: what retention does when only segments not yet uploaded are left over
/// a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoragePolicy {
    /// Delete the oldest anyway, logging an `evicted_unsynced` record (default).
    #[default]
    DeleteOldest,
    /// Keep them, stop starting new segments and raise an alarm until space frees.
    DenyNew,
}

type Result<T> = std::result::Result<T, ConfigError>;

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, message))
}

/// Parse `storage.policy`.
pub(crate) fn policy(v: Option<&str>) -> Result<StoragePolicy> {
    match v {
        None | Some("delete_oldest") => Ok(StoragePolicy::DeleteOldest),
        Some("deny_new") => Ok(StoragePolicy::DenyNew),
        Some(other) => err(
            "storage.policy",
            format!("unknown policy \"{other}\" (use \"delete_oldest\" or \"deny_new\")"),
        ),
    }
}

/// Parse a rate: `"2Mbit/s"`, `"500kbit/s"` (bits, 1000-based) or a size per second
/// (`"1MiB/s"`, `"250kB/s"`). Returns bytes per second.
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let body = t
        .strip_suffix("/s")
        .ok_or_else(|| format!("invalid rate \"{s}\": end it with \"/s\" (e.g. \"2Mbit/s\")"))?
        .trim();
    let lower = body.to_ascii_lowercase();
    let bits = [
        ("gbit", 1_000_000_000u64),
        ("mbit", 1_000_000),
        ("kbit", 1_000),
        ("bit", 1),
    ];
    let bps = if let Some((unit, mul)) = bits.iter().find(|(u, _)| lower.ends_with(u)) {
        let num = lower[..lower.len() - unit.len()].trim();
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid rate \"{s}\": \"{num}\" is not a number"))?;
        if !n.is_finite() || n <= 0.0 {
            return Err(format!("invalid rate \"{s}\": must be positive"));
        }
        (n * *mul as f64 / 8.0) as u64
    } else {
        parse_size(body).map_err(|e| format!("invalid rate \"{s}\": {e}"))?
    };
    if bps < 1024 {
        return Err(format!("rate \"{s}\" is below the minimum of 1KiB/s"));
    }
    Ok(bps)
}

/// Validate `[upload]`. `template_uploads` are `(field, target name)` of every template's
/// `upload` key, checked against the targets.
pub(crate) fn validate(
    raw: Option<&RawUpload>,
    template_uploads: &[(String, String)],
) -> Result<Option<UploadConfig>> {
    let Some(raw) = raw else {
        if let Some((field, name)) = template_uploads.first() {
            return err(
                field.clone(),
                format!("names upload target \"{name}\", but there is no [upload] section"),
            );
        }
        return Ok(None);
    };
    let bandwidth = match &raw.bandwidth {
        None => None,
        Some(b) => Some(parse_rate(b).map_err(|m| ConfigError::invalid("upload.bandwidth", m))?),
    };
    let mut windows = Vec::with_capacity(raw.windows.len());
    for (i, w) in raw.windows.iter().enumerate() {
        windows.push(
            Window::parse(w)
                .map_err(|m| ConfigError::invalid(format!("upload.windows[{i}]"), m))?,
        );
    }
    let concurrency = match raw.concurrency {
        None => 1,
        Some(n) if (1..=16).contains(&n) => n as usize,
        Some(n) => {
            return err(
                "upload.concurrency",
                format!("{n} must be between 1 and 16"),
            )
        }
    };
    let part_size = match &raw.part_size {
        None => DEFAULT_PART_SIZE,
        Some(v) => {
            let b = match v {
                RawSize::Int(i) if *i >= 0 => *i as u64,
                RawSize::Int(i) => return err("upload.part_size", format!("{i} is negative")),
                RawSize::Str(s) => {
                    parse_size(s).map_err(|m| ConfigError::invalid("upload.part_size", m))?
                }
            };
            if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&b) {
                return err(
                    "upload.part_size",
                    format!("\"{v}\" must be between 5MiB and 5GiB (S3's part size limits)"),
                );
            }
            b
        }
    };
    let order = match raw.order.as_deref() {
        None | Some("oldest_first") => UploadOrder::OldestFirst,
        Some("newest_first") => UploadOrder::NewestFirst,
        Some(o) => {
            return err(
                "upload.order",
                format!("unknown order \"{o}\" (use \"oldest_first\" or \"newest_first\")"),
            )
        }
    };
    let mut targets: Vec<UploadTarget> = Vec::with_capacity(raw.targets.len());
    for (i, t) in raw.targets.iter().enumerate() {
        let t = target(&format!("upload.targets[{i}]"), t)?;
        if targets.iter().any(|x| x.name == t.name) {
            return err(
                format!("upload.targets[{i}].name"),
                format!("duplicate target name \"{}\"", t.name),
            );
        }
        targets.push(t);
    }
    for (field, name) in template_uploads {
        if !targets.iter().any(|t| &t.name == name) {
            let known: Vec<String> = targets.iter().map(|t| format!("\"{}\"", t.name)).collect();
            return err(
                field.clone(),
                format!(
                    "no upload target is named \"{name}\" (defined: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }
    Ok(Some(UploadConfig {
        bandwidth,
        windows,
        concurrency,
        part_size,
        order,
        delete_after_upload: raw.delete_after_upload,
        targets,
    }))
}

fn target(path: &str, t: &RawTarget) -> Result<UploadTarget> {
    let name = t.name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
        return err(
            format!("{path}.name"),
            "must not be empty or contain quotes or control characters",
        );
    }
    let url_field = format!("{path}.url");
    let kind = if let Some(rest) = t.url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['@', ':', '?', '#']) {
            return err(
                url_field,
                format!("\"{}\" needs a bucket: s3://BUCKET[/prefix]", t.url),
            );
        }
        let prefix = prefix.trim_matches('/');
        check_prefix(&url_field, prefix)?;
        TargetKind::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }
    } else if let Some(rest) = t.url.strip_prefix("file:") {
        TargetKind::File {
            dir: file_target_dir(&url_field, &t.url, rest)?,
        }
    } else {
        return err(
            url_field,
            format!(
                "\"{}\" is not a target URL (use s3://bucket/prefix, file:///dir or file:dir)",
                crate::util::redact::redact_url(&t.url)
            ),
        );
    };
    let endpoint = match &t.endpoint {
        None => None,
        Some(e) => {
            let field = format!("{path}.endpoint");
            let u = url::Url::parse(e).map_err(|_| {
                ConfigError::invalid(
                    &field,
                    format!("\"{e}\" is not a URL (https://host[:port])"),
                )
            })?;
            match u.scheme() {
                "https" => {}
                "http" if t.allow_http => {}
                "http" => {
                    return err(
                        field,
                        format!("\"{e}\" is plain http: set allow_http = true to allow it"),
                    )
                }
                s => return err(field, format!("scheme \"{s}\" is not http or https")),
            }
            if !u.username().is_empty() || u.password().is_some() {
                return err(
                    field,
                    "must not carry credentials; use access_key_id/secret_access_key",
                );
            }
            Some(e.trim_end_matches('/').to_string())
        }
    };
    if matches!(kind, TargetKind::File { .. }) && endpoint.is_some() {
        return err(
            format!("{path}.endpoint"),
            "a file:// target has no endpoint",
        );
    }
    let key = KeyTemplate::parse(t.key.as_deref().unwrap_or(DEFAULT_KEY))
        .map_err(|m| ConfigError::invalid(format!("{path}.key"), m))?;
    if t.access_key_id.is_some() != t.secret_access_key.is_some() {
        return err(
            format!("{path}.secret_access_key"),
            "access_key_id and secret_access_key go together",
        );
    }
    Ok(UploadTarget {
        name: name.to_string(),
        url: t.url.clone(),
        kind,
        endpoint,
        region: t
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".to_string()),
        key,
        access_key_id: t.access_key_id.clone(),
        secret_access_key: t.secret_access_key.clone(),
        credentials_file: t.credentials_file.as_ref().map(PathBuf::from),
        allow_http: t.allow_http,
        virtual_hosted: t.virtual_hosted,
        checksum: t.checksum,
    })
}

/// The directory of a `file:` target, written like a `file:` source: `file:///abs/dir` or
/// `file:/abs/dir` (absolute), `file:rel/dir` (relative to the working directory, as the
/// demo's `file:uploads`). `rest` is what follows `file:`.
fn file_target_dir(field: &str, url: &str, rest: &str) -> Result<PathBuf> {
    let path = if let Some(abs) = rest.strip_prefix("//") {
        if !abs.starts_with('/') {
            return err(
                field,
                format!("\"{url}\" names a host; use file:///absolute/dir or file:relative/dir"),
            );
        }
        abs
    } else {
        rest
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() || (path.starts_with('/') && trimmed.trim_matches('/').is_empty()) {
        return err(field, format!("\"{url}\" names no directory"));
    }
    check_prefix(field, trimmed.trim_start_matches('/'))?;
    Ok(PathBuf::from(if path.starts_with('/') {
        path
    } else {
        trimmed
    }))
}

/// A URL prefix is a plain relative path: no `.`/`..` components, no backslash or NUL.
fn check_prefix(field: &str, prefix: &str) -> Result<()> {
    if prefix
        .split('/')
        .any(|c| c == "." || c == ".." || c.contains(['\\', '\0']))
    {
        return err(
            field,
            format!("prefix \"{prefix}\" must not contain \".\" or \"..\" components"),
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
