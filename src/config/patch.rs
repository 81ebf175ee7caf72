//! `config.set`: a JSON patch applied to the config file's TOML, validated like a file, and
//! written back atomically.
//!
//! A patch is an object with any of:
//! - `streams`, `templates`, `rules`, `callbacks`: arrays that **replace** the section
//!   (same keys as the TOML file; `[]` empties it);
//! - `retention`: an object merged into `[storage]`; only `max_bytes`, `min_free`,
//!   `max_age` and `retention_interval` (`null` removes an optional key);
//! - `upload`: an object merged into `[upload]` (`null` removes a key; `"upload": null`
//!   removes the section).
//!
//! The result is validated by [`Config::from_toml_str`], so an error names the field as
//! for a file (`templates[0].interval: ...`). Comments in the file are not kept.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use super::{Config, ConfigError};

/// Keys of `[storage]` a `retention` patch may set.
pub const RETENTION_KEYS: [&str; 4] = ["max_bytes", "min_free", "max_age", "retention_interval"];
/// The sections a patch may touch.
pub const SECTIONS: [&str; 6] = [
    "streams",
    "templates",
    "rules",
    "retention",
    "upload",
    "callbacks",
];

/// Why a patch was refused.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch itself is malformed; `field` is its path in the patch.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// The patched config does not validate.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("cannot write the config file {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> PatchError {
    PatchError::Field {
        field: field.into(),
        message: message.into(),
    }
}

fn to_toml(path: &str, v: &Value) -> Result<toml::Value, PatchError> {
    if let Some(p) = null_inside(v) {
        return Err(field(
            format!("{path}{p}"),
            "null is only allowed to remove a key of retention or upload",
        ));
    }
    toml::Value::try_from(v).map_err(|e| field(path, e.to_string()))
}

fn null_inside(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| null_inside(x).map(|p| format!("[{i}]{p}"))),
        Value::Object(m) => m
            .iter()
            .find_map(|(k, x)| null_inside(x).map(|p| format!(".{k}{p}"))),
        _ => None,
    }
}

fn merge(
    table: &mut toml::Table,
    path: &str,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    for (k, v) in patch {
        if v.is_null() {
            table.remove(k);
        } else {
            table.insert(k.clone(), to_toml(&format!("{path}.{k}"), v)?);
        }
    }
    Ok(())
}

/// Apply `patch` to the file's `table`; the new table and its validated config.
pub fn apply(
    table: &toml::Table,
    patch: &Map<String, Value>,
) -> Result<(toml::Table, Config), PatchError> {
    let mut t = table.clone();
    for (key, v) in patch {
        match key.as_str() {
            "streams" | "templates" | "rules" | "callbacks" => match v {
                Value::Array(_) => {
                    t.insert(key.clone(), to_toml(key, v)?);
                }
                _ => return Err(field(key, "expected an array (it replaces the section)")),
            },
            "retention" => {
                let Value::Object(m) = v else {
                    return Err(field(key, "expected an object"));
                };
                if let Some(k) = m.keys().find(|k| !RETENTION_KEYS.contains(&k.as_str())) {
                    return Err(field(
                        format!("retention.{k}"),
                        format!("unknown key; expected one of {}", RETENTION_KEYS.join(", ")),
                    ));
                }
                let storage = t
                    .entry("storage")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(storage) = storage else {
                    return Err(field("retention", "[storage] is not a table"));
                };
                merge(storage, "retention", m)?;
            }
            "upload" => match v {
                Value::Null => {
                    t.remove("upload");
                }
                Value::Object(m) => {
                    let up = t
                        .entry("upload")
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    let toml::Value::Table(up) = up else {
                        return Err(field("upload", "[upload] is not a table"));
                    };
                    merge(up, "upload", m)?;
                }
                _ => return Err(field(key, "expected an object or null")),
            },
            other => {
                return Err(field(
                    other,
                    format!(
                        "not a patchable section; expected one of {}",
                        SECTIONS.join(", ")
                    ),
                ))
            }
        }
    }
    let text = toml::to_string(&t).map_err(|e| field("patch", e.to_string()))?;
    let cfg = Config::from_toml_str(&text)?;
    Ok((t, cfg))
}

/// Write `text` to `path` so that a crash leaves the old file or the new one, never a
/// mix: write `path.tmp`, fsync it, rename it over `path`, fsync the directory.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), PatchError> {
    let err = |source| PatchError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> toml::Table {
        toml::from_str(super::super::DEFAULT_TOML).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_streams_patch_replaces_the_section_and_validates() {
        let (_, cfg) = apply(
            &base(),
            &obj(json!({"streams": [{"name": "cam2", "source": "rtsp://10.0.0.2/x"}]})),
        )
        .unwrap();
        assert_eq!(cfg.streams.len(), 1);
        assert_eq!(cfg.streams[0].name, "cam2");
        assert!(
            cfg.template("continuous").is_some(),
            "other sections are kept"
        );
    }

    #[test]
    fn a_callbacks_patch_replaces_the_endpoints_and_names_a_bad_field() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (_, cfg) = apply(
            &base(),
            &obj(json!({"callbacks": [{"url": "https://h.example/x", "secret": secret}]})),
        )
        .unwrap();
        assert_eq!(cfg.callbacks.len(), 1);
        assert_eq!(cfg.callbacks[0].url, "https://h.example/x");
        let e = apply(
            &base(),
            &obj(json!({"callbacks": [{"url": "file:///etc/passwd", "secret": secret}]})),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("callbacks[0].url"), "{e}");
    }

    #[test]
    fn a_retention_patch_merges_into_storage_and_null_removes() {
        let (_, cfg) = apply(
            &base(),
            &obj(json!({"retention": {"max_bytes": "1GiB", "max_age": null}})),
        )
        .unwrap();
        assert_eq!(cfg.storage.max_bytes, 1 << 30);
        assert_eq!(cfg.storage.max_age, None);
        let e = apply(&base(), &obj(json!({"retention": {"root": "/"}}))).unwrap_err();
        assert!(
            e.to_string().starts_with("retention.root: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn an_invalid_value_is_refused_with_the_config_field_path() {
        let e = apply(
            &base(),
            &obj(json!({"templates": [{"name": "t", "formats": ["fmp4"], "interval": "3h"}]})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("templates[0].interval"), "{e}");
        let e = apply(&base(), &obj(json!({"storage": {}}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("storage: not a patchable section"),
            "{e}"
        );
        let e = apply(&base(), &obj(json!({"rules": [{"template": null}]}))).unwrap_err();
        assert!(e.to_string().starts_with("rules[0].template"), "{e}");
    }

    #[test]
    fn written_config_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edgerec.toml");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, "new = 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new = 1\n");
        assert!(!dir.path().join("edgerec.toml.tmp").exists());
    }
}
