//! The config example from the documentation is accepted as written, the default config
//! printed for users is valid, and docs/config.md documents every key it uses.

use std::path::PathBuf;
use std::time::Duration;

use edgerec::config::{Config, MinFree, DEFAULT_TOML};
use edgerec::media::format::Format;

const EXAMPLE: &str = r#"
device_id = "edge-001"
[storage]
root = "./data"            # recordings and index
max_bytes = "2GiB"         # ring-buffer quota for all recordings
min_free = "10%"           # or "500MiB": keep this much of the filesystem free
max_age = "7d"             # optional
[[templates]]
name = "continuous"
formats = ["fmp4"]
interval = "60s"           # segment length, cut on the next key frame; at most 2h
fragment = "1s"            # a power cut loses at most about this much
naming = "{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}"
[[templates]]
name = "off"
formats = []               # a rule pointing here means: do not record
[[rules]]
template = "continuous"
stream = "*"
[[streams]]
name = "cam1"
source = "rtsp://admin:secret@192.168.1.64:554/Streaming/Channels/101"
[[streams]]
name = "demo"
source = "file:assets/sample.mp4?loop=true"
"#;

#[test]
fn documented_example_is_accepted_as_written() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(c.device_id, "edge-001");
    assert_eq!(c.storage.root, PathBuf::from("./data"));
    assert_eq!(c.storage.max_bytes, 2 << 30);
    assert_eq!(c.storage.min_free, MinFree::Percent(10.0));
    assert_eq!(c.storage.max_age, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(c.storage.retention_interval, Duration::from_secs(60));

    let t = c.template("continuous").unwrap();
    assert_eq!(t.formats, vec![Format::Fmp4]);
    assert_eq!(t.interval, Duration::from_secs(60));
    assert_eq!(t.fragment, Duration::from_secs(1));
    assert!(c.template("off").unwrap().formats.is_empty());

    assert_eq!(c.streams.len(), 2);
    for s in &c.streams {
        let t =
            edgerec::config::rules::resolve(&c, &s.app, &s.name).expect("every stream is recorded");
        assert_eq!(t.name, "continuous");
        assert_eq!(s.app, "");
        assert_eq!(s.max_bytes, None);
    }
    assert_eq!(c.log.level, "info");
}

#[test]
fn example_loads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgerec.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c, Config::from_toml_str(EXAMPLE).unwrap());
}

#[test]
fn example_names_segments_as_documented() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    let t = c.template("continuous").unwrap();
    let vars = edgerec::util::naming::NameVars {
        stream: "cam1",
        app: "",
        seq: 0,
        start_ms: 1_700_000_000_123, // 2023-11-14T22:13:20.123Z
    };
    let p = edgerec::util::naming::expand(&t.naming, &vars).unwrap();
    assert_eq!(p, PathBuf::from("cam1/2023/11/14/cam1-1700000000"));
}

#[test]
fn unknown_key_in_the_example_is_refused_with_its_line() {
    let bad = EXAMPLE.replace("max_age = \"7d\"", "max_agee = \"7d\"");
    let e = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(e.contains("max_agee"), "{e}");
    assert!(e.contains("line 7"), "{e}");
}

#[test]
fn default_config_is_valid() {
    Config::from_toml_str(DEFAULT_TOML).unwrap();
}

/// Keys set (or shown commented out) in DEFAULT_TOML, e.g. `max_bytes`.
fn keys_in(toml: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in toml.lines() {
        let l = line.trim().trim_start_matches('#').trim();
        if let Some((k, _)) = l.split_once(" = ") {
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.push(k.to_owned());
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn docs_reference_every_key_of_the_default_config() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md"))
        .expect("docs/config.md exists");
    let keys = keys_in(DEFAULT_TOML);
    assert!(keys.len() >= 15, "{keys:?}");
    for k in keys {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/config.md does not document `{k}`"
        );
    }
}

#[test]
fn config_in_the_docs_is_the_default_config() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md")).unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    assert_eq!(&doc[start..start + len], DEFAULT_TOML);
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn readme_shows_the_example_config_as_written() {
    let readme = readme();
    let start = readme.find("```toml\n").expect("a toml block in README") + "```toml\n".len();
    let len = readme[start..].find("```").unwrap();
    let block = &readme[start..start + len];
    assert_eq!(block.trim(), EXAMPLE.trim());
    Config::from_toml_str(block).unwrap();
}

#[test]
fn readme_documents_every_key_of_the_default_config() {
    let readme = readme();
    for k in keys_in(DEFAULT_TOML) {
        assert!(
            readme.contains(&format!("`{k}`")),
            "README.md does not document `{k}`"
        );
    }
}

#[test]
fn readmes_callbacks_example_is_accepted_as_written() {
    let readme = readme();
    let at = readme
        .find("```toml\n[[callbacks]]")
        .expect("a callbacks example")
        + 8;
    let len = readme[at..].find("```").unwrap();
    let c = Config::from_toml_str(&format!("{EXAMPLE}\n{}", &readme[at..at + len])).unwrap();
    assert_eq!(c.callbacks.len(), 2);
    assert_eq!(c.callbacks[1].name, "tencent-vod");
}

#[test]
fn readmes_http_example_is_accepted_as_written() {
    let readme = readme();
    let at = readme.find("```toml\n[http]").expect("an [http] example") + 8;
    let len = readme[at..].find("```").unwrap();
    let c = Config::from_toml_str(&format!("{EXAMPLE}\n{}", &readme[at..at + len])).unwrap();
    let http = c.http.expect("[http]");
    assert_eq!(http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(http.tokens.len(), 2);
}
