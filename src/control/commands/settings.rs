//! `config.get` and `config.set`.
//!
//! `config.set` applies a patch ([`crate::config::patch`]) to the effective config file,
//! validates it, writes it back atomically over the file the recorder was started with,
//! and applies it. Applied at once: `streams` (added, removed or changed streams start,
//! stop or restart), `templates` and `rules` (pulled streams restart with their new
//! template; pushed streams use them from their next push, since a push under way keeps the
//! template it started with), `retention` (the next retention pass uses it). After a
//! restart: `upload`, `callbacks`. The reply says which (`applied_live`, `next_push`, `after_restart`).

use serde_json::{json, Map, Value};

use super::args::{check_name, Args};
use super::reply::{code, Reply};
use super::Commands;
use crate::config::patch::{self, PatchError};

/// Sections applied live, and those that need a restart.
const LIVE: [&str; 4] = ["streams", "templates", "rules", "retention"];

/// The config as JSON with secrets hidden: credentials in URLs, and every key whose name
/// holds `password` or `secret`, and `[http]` tokens.
pub fn redacted(table: &toml::Table) -> Value {
    let mut v = serde_json::to_value(table).unwrap_or_default();
    redact(&mut v, "");
    v
}

fn redact(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                redact(x, k)
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, key)),
        Value::String(s)
            if key.contains("password") || key.contains("secret") || key == "token" =>
        {
            *s = "***".into()
        }
        Value::String(s) if matches!(key, "source" | "url" | "endpoint") => {
            *s = crate::util::redact::redact_url(s)
        }
        _ => {}
    }
}

fn section(t: &toml::Table, name: &str) -> Option<toml::Value> {
    if name == "retention" {
        let storage = t.get("storage")?.as_table()?;
        let kept: toml::Table = patch::RETENTION_KEYS
            .iter()
            .filter_map(|k| storage.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        return Some(toml::Value::Table(kept));
    }
    t.get(name).cloned()
}

/// Path-like stream and template names in a patch are `bad_name`.
fn check_patch_names(p: &Map<String, Value>) -> Result<(), Reply> {
    for sec in ["streams", "templates"] {
        if let Some(Value::Array(items)) = p.get(sec) {
            for (i, it) in items.iter().enumerate() {
                if let Some(Value::String(n)) = it.get("name") {
                    check_name(&format!("patch.{sec}[{i}].name"), n)?;
                }
            }
        }
    }
    Ok(())
}

impl Commands {
    pub(super) async fn config_get(&self, a: Args) -> Result<Reply, Reply> {
        a.finish()?;
        let t = self.inner.config_file.lock().await;
        match &t.as_ref() {
            Some((_, table)) => Ok(Reply::ok(json!({ "config": redacted(table) }))),
            None => Err(Reply::error(
                code::UNAVAILABLE,
                "the recorder was started without a config file",
            )),
        }
    }

    pub(super) async fn config_set(&self, mut a: Args) -> Result<Reply, Reply> {
        let p = a.object("patch")?;
        a.finish()?;
        check_patch_names(&p)?;
        let mut file = self.inner.config_file.lock().await;
        let Some((path, table)) = file.as_mut() else {
            return Err(Reply::error(
                code::UNAVAILABLE,
                "the recorder was started without a config file to persist to",
            ));
        };
        let (new_table, cfg) = patch::apply(table, &p).map_err(|e| match e {
            PatchError::Field { .. } => Reply::error(code::BAD_FIELD, format!("patch.{e}")),
            other => Reply::error(code::BAD_FIELD, other.to_string()),
        })?;
        let text =
            toml::to_string(&new_table).map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?;
        {
            let path = path.clone();
            tokio::task::spawn_blocking(move || patch::write_atomic(&path, &text))
                .await
                .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?
                .map_err(|e| Reply::error(code::INTERNAL, e.to_string()))?;
        }
        let changed: Vec<&str> = patch::SECTIONS
            .iter()
            .copied()
            .filter(|s| section(table, s) != section(&new_table, s))
            .collect();
        *table = new_table;
        let persisted = path.display().to_string();
        drop(file);
        let applied = self
            .sched()?
            .set_config(cfg)
            .await
            .map_err(super::record::task_error)?;
        let live: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|s| LIVE.contains(s))
            .collect();
        let restart: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|s| !LIVE.contains(s))
            .collect();
        let next_push: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|s| matches!(*s, "templates" | "rules"))
            .collect();
        let mut notes = Vec::new();
        if !next_push.is_empty() {
            notes.push(format!(
                "{}: pulled streams use them now; pushed streams from their next push (a push under way keeps its template)",
                next_push.join(" and ")
            ));
        }
        if !restart.is_empty() {
            notes.push(format!(
                "{}: takes effect after a restart of the recorder",
                restart.join(", ")
            ));
        }
        Ok(Reply::ok(json!({
            "persisted": persisted,
            "changed": changed,
            "applied_live": live,
            "next_push": next_push,
            "after_restart": restart,
            "message": notes.join("; "),
            "streams": {
                "started": applied.started,
                "stopped": applied.stopped,
                "restarted": applied.restarted,
            },
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_url_credentials_are_hidden() {
        let t: toml::Table = toml::from_str(
            "[[streams]]\nname = \"c\"\nsource = \"rtsp://admin:pw@10.0.0.1/x\"\n[upload]\nsecret_access_key = \"k\"\n",
        )
        .unwrap();
        let s = redacted(&t).to_string();
        assert!(!s.contains("pw@") && !s.contains("\"k\""), "{s}");
        assert!(s.contains("***"), "{s}");
    }

    #[test]
    fn path_like_names_in_a_patch_are_bad_names() {
        let p = json!({"streams": [{"name": "../x", "source": "file:a.mp4"}]});
        let e = check_patch_names(p.as_object().unwrap()).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("bad_name"));
    }
}
