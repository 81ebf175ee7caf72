//! Validation errors name the field and say what is wrong (tests of `validate`).

use super::super::Config;

const BASE: &str = r#"
device_id = "edge-001"
[storage]
root = "./data"
max_bytes = "2GiB"
"#;

fn error(extra: &str) -> String {
    Config::from_toml_str(&format!("{BASE}{extra}"))
        .unwrap_err()
        .to_string()
}

fn ok(extra: &str) -> Config {
    Config::from_toml_str(&format!("{BASE}{extra}")).unwrap()
}

const TEMPLATE: &str = "[[templates]]\nname = \"t\"\nformats = [\"fmp4\"]\n";

#[test]
fn defaults_fill_optional_keys() {
    let c = ok(TEMPLATE);
    assert_eq!(c.storage.min_free, super::MinFree::Percent(10.0));
    assert_eq!(c.storage.max_age, None);
    assert_eq!(c.storage.retention_interval.as_secs(), 60);
    let t = &c.templates[0];
    assert_eq!(t.interval.as_secs(), 60);
    assert_eq!(t.fragment.as_millis(), 1000);
    assert_eq!(t.naming, super::DEFAULT_NAMING);
    assert!(t.resume_window.is_zero(), "splicing is off by default");
    assert_eq!(c.log.level, "info");
}

#[test]
fn interval_above_two_hours_is_refused_with_its_path() {
    let e = error(&format!("{TEMPLATE}interval = \"3h\"\n"));
    assert_eq!(e, "templates[0].interval: 3h exceeds the maximum of 2h");
}

#[test]
fn interval_below_one_second_is_refused() {
    let e = error(&format!("{TEMPLATE}interval = \"500ms\"\n"));
    assert!(
        e.starts_with("templates[0].interval: 500ms is below"),
        "{e}"
    );
}

#[test]
fn fragment_must_be_between_100ms_and_interval() {
    let e = error(&format!(
        "{TEMPLATE}interval = \"10s\"\nfragment = \"20s\"\n"
    ));
    assert!(e.starts_with("templates[0].fragment: 20s exceeds"), "{e}");
    let e = error(&format!("{TEMPLATE}fragment = \"50ms\"\n"));
    assert!(e.starts_with("templates[0].fragment: 50ms is below"), "{e}");
    let c = ok(&format!(
        "{TEMPLATE}interval = \"2h\"\nfragment = \"100ms\"\n"
    ));
    assert_eq!(c.templates[0].fragment.as_millis(), 100);
}

#[test]
fn bad_durations_name_the_field_and_show_an_example() {
    let e = error("max_age = \"seven days\"\n");
    assert!(
        e.starts_with("storage.max_age: invalid duration \"seven days\""),
        "{e}"
    );
    assert!(e.contains("\"7d\""), "{e}");
}

#[test]
fn bad_size_is_refused_with_an_example() {
    let toml = BASE.replace("\"2GiB\"", "\"2GB!\"");
    let e = Config::from_toml_str(&toml).unwrap_err().to_string();
    assert_eq!(
        e,
        "storage.max_bytes: invalid size \"2GB!\" (use e.g. \"2GiB\", \"500MiB\")"
    );
}

#[test]
fn sizes_may_be_plain_integers() {
    let toml = BASE.replace("\"2GiB\"", "1000000");
    let c = Config::from_toml_str(&toml).unwrap();
    assert_eq!(c.storage.max_bytes, 1_000_000);
    let e = Config::from_toml_str(&BASE.replace("\"2GiB\"", "-1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("storage.max_bytes: size -1 must not be negative"),
        "{e}"
    );
}

#[test]
fn zero_quota_is_refused() {
    let e = Config::from_toml_str(&BASE.replace("\"2GiB\"", "0"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("storage.max_bytes: must be more than 0"),
        "{e}"
    );
}

#[test]
fn min_free_accepts_a_size_or_a_percentage() {
    assert_eq!(
        ok("min_free = \"500MiB\"\n").storage.min_free,
        super::MinFree::Bytes(500 << 20)
    );
    assert_eq!(
        ok("min_free = \"5%\"\n").storage.min_free,
        super::MinFree::Percent(5.0)
    );
    let e = error("min_free = \"150%\"\n");
    assert!(e.starts_with("storage.min_free: "), "{e}");
}

#[test]
fn unknown_keys_are_refused_with_key_and_line() {
    let e = error("max_byte = 5\n");
    assert!(e.contains("max_byte"), "{e}");
    assert!(e.contains("line 6"), "{e}");
    let e = error(&format!("{TEMPLATE}intervall = \"5s\"\n"));
    assert!(e.contains("intervall"), "{e}");
}

#[test]
fn wrong_types_are_refused_with_the_line() {
    let e = error(&format!("{TEMPLATE}interval = 60\n"));
    assert!(e.contains("line 9"), "{e}");
    assert!(e.contains("interval"), "{e}");
}

#[test]
fn unknown_and_future_formats_get_format_parse_messages() {
    let e = error("[[templates]]\nname = \"t\"\nformats = [\"fmp4\", \"dash\"]\n");
    assert!(e.starts_with("templates[0].formats[1]: "), "{e}");
    assert!(e.contains("not supported yet"), "{e}");
    let e = error("[[templates]]\nname = \"t\"\nformats = [\"avi\"]\n");
    assert!(e.contains("unknown format \"avi\""), "{e}");
    let e = error("[[templates]]\nname = \"t\"\nformats = [\"mp4\", \"mp4\"]\n");
    assert!(e.starts_with("templates[0].formats[1]: "), "{e}");
}

#[test]
fn playlist_max_length_is_bounded_by_the_interval_and_a_day_and_names_its_field() {
    let hls = "[[templates]]\nname = \"t\"\nformats = [\"hls\"]\ninterval = \"10s\"\n";
    let e = error(&format!("{hls}playlist_max_length = \"5s\"\n"));
    assert!(e.starts_with("templates[0].playlist_max_length: "), "{e}");
    assert!(e.contains("below the template's interval"), "{e}");
    let e = error(&format!("{hls}playlist_max_length = \"25h\"\n"));
    assert!(e.starts_with("templates[0].playlist_max_length: "), "{e}");
}

#[test]
fn resume_window_is_off_by_default_at_most_30_minutes_and_names_its_field() {
    let hls = "[[templates]]\nname = \"t\"\nformats = [\"hls\"]\n";
    let e = error(&format!("{hls}resume_window = \"31m\"\n"));
    assert!(e.starts_with("templates[0].resume_window: "), "{e}");
    assert!(e.contains("maximum of 30m"), "{e}");
    let e = error(&format!("{hls}resume_window = \"soon\"\n"));
    assert!(e.starts_with("templates[0].resume_window: "), "{e}");
}

#[test]
fn duplicate_template_names_are_refused() {
    let e = error(&format!("{TEMPLATE}{TEMPLATE}"));
    assert_eq!(e, "templates[1].name: duplicate template name \"t\"");
}

#[test]
fn bad_naming_template_is_refused_with_its_path() {
    let e = error(&format!("{TEMPLATE}naming = \"../{{stream}}-{{start}}\"\n"));
    assert!(e.starts_with("templates[0].naming: "), "{e}");
    let e = error(&format!(
        "{TEMPLATE}naming = \"{{stream}}/{{foo}}-{{start}}\"\n"
    ));
    assert!(e.contains("{foo}"), "{e}");
}

#[test]
fn rule_naming_a_missing_template_is_refused() {
    let e = error(&format!("{TEMPLATE}[[rules]]\ntemplate = \"nope\"\n"));
    assert_eq!(
        e,
        "rules[0].template: no template is named \"nope\" (defined: \"t\")"
    );
}

#[test]
fn invalid_rule_globs_are_refused() {
    let e = error(&format!(
        "{TEMPLATE}[[rules]]\ntemplate = \"t\"\nstream = \"cam[\"\n"
    ));
    assert!(e.starts_with("rules[0].stream: invalid glob"), "{e}");
}

#[test]
fn stream_names_that_could_escape_or_break_paths_are_refused() {
    for (name, what) in [
        ("", "must not be empty"),
        ("a/b", "must not contain \"/\""),
        ("a\\\\b", "must not contain \"/\""),
        ("..", "\"..\""),
        ("x..y", "\"..\""),
        ("a\\u0000b", "NUL"),
    ] {
        let e = error(&format!(
            "[[streams]]\nname = \"ok\"\nsource = \"file:a.mp4\"\n\
             [[streams]]\nname = \"{name}\"\nsource = \"file:a.mp4\"\n"
        ));
        assert!(e.starts_with("streams[1].name: "), "{name}: {e}");
        assert!(e.contains(what), "{name}: {e}");
    }
}

#[test]
fn duplicate_stream_names_are_refused() {
    let s = "[[streams]]\nname = \"cam\"\nsource = \"file:a.mp4\"\n";
    let e = error(&format!("{s}{s}"));
    assert_eq!(e, "streams[1].name: duplicate stream name \"cam\"");
}

#[test]
fn unsupported_sources_are_refused_with_the_stream_index() {
    let e = error("[[streams]]\nname = \"cam\"\nsource = \"http://x/y\"\n");
    assert!(e.starts_with("streams[0].source: "), "{e}");
}

#[test]
fn source_errors_come_from_source_spec_and_hide_the_password() {
    let e = error("[[streams]]\nname = \"cam\"\nsource = \"rtsp://u:hunter2@cam/x?transport=carrier-pigeon\"\n");
    assert!(e.starts_with("streams[0].source: "), "{e}");
    assert!(e.contains("transport"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = error("[[streams]]\nname = \"f\"\nsource = \"file:x.mp4?loop=maybe\"\n");
    assert!(e.starts_with("streams[0].source: "), "{e}");
}

#[test]
fn per_stream_quota_is_parsed() {
    let c = ok("[[streams]]\nname = \"cam\"\nsource = \"file:a.mp4\"\nmax_bytes = \"1GiB\"\n");
    assert_eq!(c.streams[0].max_bytes, Some(1 << 30));
    assert_eq!(c.streams[0].app, "");
}

#[test]
fn device_id_must_be_a_plain_name() {
    let e = Config::from_toml_str(&BASE.replace("edge-001", "a/b"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("device_id: "), "{e}");
    let e = Config::from_toml_str(&BASE.replace("edge-001", ""))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("device_id: must not be empty"), "{e}");
}

#[test]
fn log_level_is_checked() {
    assert_eq!(ok("[log]\nlevel = \"debug\"\n").log.level, "debug");
    assert_eq!(
        ok("[log]\nlevel = \"info,edgerec::storage::store=trace\"\n")
            .log
            .level,
        "info,edgerec::storage::store=trace"
    );
    let e = error("[log]\nlevel = \"loud=[\"\n");
    assert!(e.starts_with("log.level: invalid filter"), "{e}");
}
