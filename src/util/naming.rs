//! File naming: a template such as `{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}` expanded
//! for one segment into a relative path (without extension) under the storage root.
//!
//! Variables:
//!
//! | variable | value |
//! | --- | --- |
//! | `{stream}` | stream name |
//! | `{app}` | application name (empty for pulled streams; an empty path component collapses) |
//! | `{YYYY}` `{MM}` `{DD}` | UTC date of the segment's wall-clock start, zero-padded |
//! | `{hh}` `{mm}` `{ss}` | UTC time of day of the start, zero-padded |
//! | `{start}` | start in Unix seconds |
//! | `{seq}` | the stream's segment sequence number |
//!
//! A template must contain `{stream}` and one of `{start}` / `{seq}`, so that two segments
//! never get the same name. The expanded path is checked again, so neither the template nor a
//! stream or app name can make it escape the storage root.
//!
//! Dates are computed here (Howard Hinnant's `civil_from_days`), without a date crate.

use std::path::{Component, Path, PathBuf};

/// Values for one segment's name.
#[derive(Clone, Copy, Debug)]
pub struct NameVars<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Application name; may be empty.
    pub app: &'a str,
    /// Per-stream sequence number of the segment.
    pub seq: u64,
    /// Wall-clock start of the segment, milliseconds since the Unix epoch.
    pub start_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    Stream,
    App,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Start,
    Seq,
}

impl Var {
    fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "stream" => Var::Stream,
            "app" => Var::App,
            "YYYY" => Var::Year,
            "MM" => Var::Month,
            "DD" => Var::Day,
            "hh" => Var::Hour,
            "mm" => Var::Minute,
            "ss" => Var::Second,
            "start" => Var::Start,
            "seq" => Var::Seq,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'t> {
    Lit(&'t str),
    Var(Var),
}

const VARIABLES: &str = "{stream} {app} {YYYY} {MM} {DD} {hh} {mm} {ss} {start} {seq}";

/// Split a template into literals and variables, refusing everything `validate_template` does.
fn parse(t: &str) -> Result<Vec<Token<'_>>, String> {
    if t.is_empty() {
        return Err("naming template is empty".into());
    }
    if t.contains('\0') {
        return Err("naming template contains a NUL character".into());
    }
    if t.contains('\\') {
        return Err("naming template contains \"\\\"; separate directories with \"/\"".into());
    }
    if t.starts_with('/') || Path::new(t).is_absolute() || Path::new(t).has_root() {
        return Err(format!(
            "naming template \"{t}\" is an absolute path; it must be relative to storage.root"
        ));
    }
    let mut tokens = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                tokens.push(Token::Lit(rest));
                break;
            }
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err(format!("naming template \"{t}\" has an unbalanced \"}}\""));
            }
            Some(i) => {
                if i > 0 {
                    tokens.push(Token::Lit(&rest[..i]));
                }
                let after = &rest[i + 1..];
                let end = after.find(['{', '}']);
                match end {
                    Some(j) if after.as_bytes()[j] == b'}' => {
                        let name = &after[..j];
                        let var = Var::from_name(name).ok_or_else(|| {
                            format!(
                                "naming template \"{t}\" uses unknown variable {{{name}}} \
                                 (known: {VARIABLES})"
                            )
                        })?;
                        tokens.push(Token::Var(var));
                        rest = &after[j + 1..];
                    }
                    _ => {
                        return Err(format!("naming template \"{t}\" has an unbalanced \"{{\""));
                    }
                }
            }
        }
    }
    // Literal `.` / `..` components are refused outright; components built from variables
    // are checked after expansion.
    for comp in t.split('/') {
        if comp == ".." || comp == "." {
            return Err(format!(
                "naming template \"{t}\" contains a \"{comp}\" component; \
                 names must stay inside storage.root"
            ));
        }
    }
    Ok(tokens)
}

/// Check a naming template: known variables only, balanced braces, relative, no `.`/`..`
/// component, no NUL or backslash, not empty, and containing `{stream}` plus `{start}` or
/// `{seq}` so that every segment gets its own name.
pub fn validate_template(t: &str) -> Result<(), String> {
    let tokens = parse(t)?;
    let has = |v: Var| tokens.contains(&Token::Var(v));
    if !has(Var::Stream) {
        return Err(format!(
            "naming template \"{t}\" must contain {{stream}}, or streams would overwrite each other"
        ));
    }
    if !has(Var::Start) && !has(Var::Seq) {
        return Err(format!(
            "naming template \"{t}\" must contain {{start}} or {{seq}}, \
             or segments would overwrite each other"
        ));
    }
    Ok(())
}

/// Expand a template for one segment into a relative path without extension.
///
/// Empty components (from an empty `{app}`, or `//`) collapse. The result is re-checked:
/// it is never empty, never absolute, and has only normal components (no `.`, `..`, NUL,
/// backslash); `stream` and `app` must not contain `/`, `\` or NUL.
pub fn expand(t: &str, v: &NameVars) -> Result<PathBuf, String> {
    validate_template(t)?;
    for (what, value) in [("stream", v.stream), ("app", v.app)] {
        if value.contains(['/', '\\', '\0']) {
            return Err(format!(
                "{what} name {value:?} contains \"/\", \"\\\" or NUL and cannot be used in a file name"
            ));
        }
    }
    let secs = v.start_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(t.len() + 32);
    for tok in parse(t)? {
        match tok {
            Token::Lit(l) => s.push_str(l),
            Token::Var(var) => match var {
                Var::Stream => s.push_str(v.stream),
                Var::App => s.push_str(v.app),
                Var::Year => s.push_str(&format!("{y:04}")),
                Var::Month => s.push_str(&format!("{m:02}")),
                Var::Day => s.push_str(&format!("{d:02}")),
                Var::Hour => s.push_str(&format!("{:02}", sod / 3600)),
                Var::Minute => s.push_str(&format!("{:02}", sod / 60 % 60)),
                Var::Second => s.push_str(&format!("{:02}", sod % 60)),
                Var::Start => s.push_str(&secs.to_string()),
                Var::Seq => s.push_str(&v.seq.to_string()),
            },
        }
    }
    let mut out = PathBuf::new();
    for comp in s.split('/').filter(|c| !c.is_empty()) {
        if comp == "." || comp == ".." || comp.contains(['\0', '\\']) {
            return Err(format!(
                "expanded name \"{s}\" contains the component {comp:?}; \
                 names must stay inside storage.root"
            ));
        }
        out.push(comp);
    }
    if out.as_os_str().is_empty() {
        return Err(format!("naming template \"{t}\" expanded to an empty name"));
    }
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "expanded name \"{s}\" is not a plain relative path inside storage.root"
        ));
    }
    Ok(out)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month 1..=12, day 1..=31), UTC.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`]: days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "{stream}/{YYYY}/{MM}/{DD}/{stream}-{start}";

    fn vars<'a>(stream: &'a str, app: &'a str, start_ms: i64) -> NameVars<'a> {
        NameVars {
            stream,
            app,
            seq: 42,
            start_ms,
        }
    }

    #[test]
    fn default_template_expands_to_dated_directories() {
        // 2024-02-29T23:59:59.500Z
        let p = expand(DEFAULT, &vars("cam1", "", 1_709_251_199_500)).unwrap();
        assert_eq!(p, PathBuf::from("cam1/2024/02/29/cam1-1709251199"));
    }

    #[test]
    fn every_variable_is_substituted_and_zero_padded() {
        let t = "{app}/{stream}/{YYYY}{MM}{DD}T{hh}{mm}{ss}-{start}-{seq}";
        // 2001-09-09T01:46:40Z
        let p = expand(t, &vars("s", "live", 1_000_000_000_000)).unwrap();
        assert_eq!(p, PathBuf::from("live/s/20010909T014640-1000000000-42"));
        // 1970-01-01T00:00:05Z
        let p = expand(t, &vars("s", "a", 5_000)).unwrap();
        assert_eq!(p, PathBuf::from("a/s/19700101T000005-5-42"));
    }

    #[test]
    fn times_before_1970_use_floor_division() {
        // -1 ms is 1969-12-31T23:59:59.999Z.
        let p = expand(
            "{stream}/{YYYY}-{MM}-{DD}_{hh}{mm}{ss}_{start}",
            &vars("s", "", -1),
        )
        .unwrap();
        assert_eq!(p, PathBuf::from("s/1969-12-31_235959_-1"));
    }

    #[test]
    fn empty_app_collapses_instead_of_making_an_absolute_path() {
        let p = expand("{app}/{stream}/{start}", &vars("cam1", "", 0)).unwrap();
        assert_eq!(p, PathBuf::from("cam1/0"));
        assert!(p.is_relative());
        let p = expand("{stream}/{app}/{start}", &vars("cam1", "", 0)).unwrap();
        assert_eq!(p, PathBuf::from("cam1/0"));
    }

    #[test]
    fn double_slashes_in_a_template_collapse() {
        let p = expand("{stream}//{start}/", &vars("cam1", "", 0)).unwrap();
        assert_eq!(p, PathBuf::from("cam1/0"));
    }

    #[test]
    fn template_traversal_is_refused() {
        for t in [
            "../{stream}-{start}",
            "{stream}/../../{start}",
            "{stream}/./{start}",
            "/etc/{stream}-{start}",
            "{stream}\\..\\{start}",
            "{stream}\0{start}",
        ] {
            assert!(validate_template(t).is_err(), "{t:?}");
            assert!(expand(t, &vars("cam1", "", 0)).is_err(), "{t:?}");
        }
    }

    #[test]
    fn traversal_through_stream_or_app_values_is_refused() {
        let t = "{app}/{stream}-{start}";
        for (stream, app) in [
            ("../x", ""),
            ("a/b", ""),
            ("x", ".."),
            ("x", "../.."),
            ("x", "/etc"),
            ("x", "a\\b"),
            ("x\0", ""),
        ] {
            assert!(
                expand(t, &vars(stream, app, 0)).is_err(),
                "{stream:?} {app:?}"
            );
        }
        // A component built only from a value must not become `..` or `.` either.
        assert!(expand("{app}/{stream}-{start}", &vars("s", "..", 0)).is_err());
        assert!(expand("{stream}/{app}./{start}", &vars("s", ".", 0)).is_err());
        assert!(expand("{stream}/{app}./{start}", &vars("s", "", 0)).is_err());
    }

    #[test]
    fn no_combination_of_tricky_templates_and_values_escapes_the_root() {
        let pieces = [
            "", "/", "//", ".", "..", "{app}", "{stream}", "{seq}", "-", "x",
        ];
        let values = [
            "", ".", "..", "...", "a", "a.", ".a", "/", "a/..", "\\", "c:",
        ];
        let mut accepted = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let t = format!("{a}{b}{{stream}}{c}{{start}}");
                    for app in values {
                        for stream in values {
                            let Ok(p) = expand(&t, &vars(stream, app, 0)) else {
                                continue;
                            };
                            accepted += 1;
                            assert!(p.is_relative(), "{t} {stream:?} {app:?}: {p:?}");
                            assert!(
                                p.components().all(|c| matches!(c, Component::Normal(_))),
                                "{t} {stream:?} {app:?}: {p:?}"
                            );
                            assert!(!p.to_string_lossy().contains("//"));
                        }
                    }
                }
            }
        }
        // The check is not vacuous: plenty of combinations are legitimately accepted.
        assert!(accepted > 1000, "{accepted}");
    }

    #[test]
    fn unknown_variables_are_refused_with_the_list_of_known_ones() {
        let e = validate_template("{stream}/{year}-{start}").unwrap_err();
        assert!(e.contains("{year}"), "{e}");
        assert!(e.contains("{YYYY}"), "{e}");
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        for t in [
            "{stream-{start}",
            "{stream}}-{start}",
            "{stream}/{start",
            "x}{stream}{start}",
        ] {
            let e = validate_template(t).unwrap_err();
            assert!(e.contains("unbalanced"), "{t}: {e}");
        }
    }

    #[test]
    fn empty_template_is_refused() {
        assert!(validate_template("").unwrap_err().contains("empty"));
    }

    #[test]
    fn template_must_identify_stream_and_segment() {
        assert!(validate_template("{YYYY}/{start}")
            .unwrap_err()
            .contains("{stream}"));
        assert!(validate_template("{stream}/{YYYY}")
            .unwrap_err()
            .contains("{start}"));
        assert!(validate_template("{stream}/{seq}").is_ok());
        assert!(validate_template(DEFAULT).is_ok());
    }

    #[test]
    fn civil_dates_round_trip_over_four_centuries() {
        let start = days_from_civil(1800, 1, 1);
        let end = days_from_civil(2200, 12, 31);
        let mut prev = civil_from_days(start - 1);
        for day in start..=end {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            // Each day follows the previous one.
            if d == 1 {
                assert!(m == prev.1 % 12 + 1);
            } else {
                assert_eq!((y, m, d - 1), prev);
            }
            prev = (y, m, d);
        }
    }

    #[test]
    fn known_dates_are_correct() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(2100, 3, 1) - 1),
            (2100, 2, 28)
        );
    }
}
