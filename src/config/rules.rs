//! Which template a stream records with.
//!
//! A rule matches a stream when its `app` glob (if set) matches the stream's app and its
//! `stream` glob (if set) matches the stream's name. Among matching rules the most specific
//! wins: app and stream both set, then stream only, then app only, then a catch-all with
//! neither. Equally specific rules are ordered by higher `priority`, then by declaration
//! order. `stream = "*"` counts as "stream set": specificity is about which keys a rule sets,
//! not about how much its globs match.
//!
//! Recording is off by default: no matching rule, or a winning rule whose template has no
//! formats, means the stream is not recorded.

use crate::config::{Config, Rule, Template};
use crate::util::glob::Glob;

/// How specific a rule is: which of `app` / `stream` it sets.
fn specificity(r: &Rule) -> u8 {
    match (r.app.is_some(), r.stream.is_some()) {
        (true, true) => 3,
        (false, true) => 2,
        (true, false) => 1,
        (false, false) => 0,
    }
}

/// Whether `glob` (if set) matches `value`. Globs are validated when the config is loaded,
/// so an invalid one here (a hand-built config) simply does not match.
fn glob_matches(glob: &Option<String>, value: &str) -> bool {
    match glob {
        None => true,
        Some(g) => Glob::new(g).is_ok_and(|g| g.matches(value)),
    }
}

/// The rule that decides for `app`/`stream`, if any rule matches.
pub fn winning_rule<'a>(cfg: &'a Config, app: &str, stream: &str) -> Option<&'a Rule> {
    cfg.rules
        .iter()
        .enumerate()
        .filter(|(_, r)| glob_matches(&r.app, app) && glob_matches(&r.stream, stream))
        // Highest specificity, then highest priority, then the first declared (lowest index).
        .max_by_key(|(i, r)| (specificity(r), r.priority, std::cmp::Reverse(*i)))
        .map(|(_, r)| r)
}

/// The template `stream` of `app` records with, or `None` when it is not to be recorded
/// (no matching rule, or the winning rule's template has no formats).
pub fn resolve<'a>(cfg: &'a Config, app: &str, stream: &str) -> Option<&'a Template> {
    let rule = winning_rule(cfg, app, stream)?;
    cfg.template(&rule.template).filter(|t| !t.is_off())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with templates `a`, `b`, `c` (recording) and `off`, and the given rules
    /// as `(template, app, stream, priority)`.
    fn cfg(rules: &[(&str, Option<&str>, Option<&str>, i32)]) -> Config {
        let mut s = String::from(
            "device_id = \"d\"\n[storage]\nroot = \"r\"\nmax_bytes = \"1GiB\"\n\
             [[templates]]\nname = \"a\"\nformats = [\"fmp4\"]\n\
             [[templates]]\nname = \"b\"\nformats = [\"fmp4\"]\n\
             [[templates]]\nname = \"c\"\nformats = [\"mp4\"]\n\
             [[templates]]\nname = \"off\"\nformats = []\n",
        );
        for (t, app, stream, prio) in rules {
            s.push_str(&format!(
                "[[rules]]\ntemplate = \"{t}\"\npriority = {prio}\n"
            ));
            if let Some(a) = app {
                s.push_str(&format!("app = \"{a}\"\n"));
            }
            if let Some(st) = stream {
                s.push_str(&format!("stream = \"{st}\"\n"));
            }
        }
        Config::from_toml_str(&s).unwrap()
    }

    fn name(c: &Config, app: &str, stream: &str) -> Option<String> {
        resolve(c, app, stream).map(|t| t.name.clone())
    }

    #[test]
    fn no_rules_means_nothing_is_recorded() {
        assert_eq!(name(&cfg(&[]), "", "cam1"), None);
    }

    #[test]
    fn no_matching_rule_means_not_recorded() {
        let c = cfg(&[("a", None, Some("cam*"), 0)]);
        assert_eq!(name(&c, "", "door"), None);
        assert_eq!(name(&c, "", "cam7").as_deref(), Some("a"));
    }

    #[test]
    fn catch_all_rule_matches_everything() {
        let c = cfg(&[("a", None, None, 0)]);
        assert_eq!(name(&c, "live", "x").as_deref(), Some("a"));
        assert_eq!(name(&c, "", "y").as_deref(), Some("a"));
    }

    #[test]
    fn app_and_stream_beats_stream_only() {
        let c = cfg(&[
            ("a", None, Some("cam1"), 100),
            ("b", Some("live"), Some("cam*"), 0),
        ]);
        assert_eq!(name(&c, "live", "cam1").as_deref(), Some("b"));
        assert_eq!(name(&c, "other", "cam1").as_deref(), Some("a"));
    }

    #[test]
    fn stream_only_beats_app_only() {
        let c = cfg(&[("a", Some("live"), None, 100), ("b", None, Some("*"), 0)]);
        assert_eq!(name(&c, "live", "cam1").as_deref(), Some("b"));
    }

    #[test]
    fn app_only_beats_catch_all() {
        let c = cfg(&[("a", None, None, 100), ("b", Some("li*"), None, 0)]);
        assert_eq!(name(&c, "live", "cam1").as_deref(), Some("b"));
        assert_eq!(name(&c, "", "cam1").as_deref(), Some("a"));
    }

    #[test]
    fn higher_priority_breaks_a_specificity_tie() {
        let c = cfg(&[("a", None, Some("cam*"), 1), ("b", None, Some("*"), 5)]);
        assert_eq!(name(&c, "", "cam1").as_deref(), Some("b"));
    }

    #[test]
    fn first_declared_breaks_a_full_tie() {
        let c = cfg(&[("a", None, Some("*"), 0), ("b", None, Some("cam*"), 0)]);
        assert_eq!(name(&c, "", "cam1").as_deref(), Some("a"));
        let c = cfg(&[("b", None, Some("cam*"), 0), ("a", None, Some("*"), 0)]);
        assert_eq!(name(&c, "", "cam1").as_deref(), Some("b"));
    }

    #[test]
    fn template_without_formats_turns_recording_off() {
        let c = cfg(&[("a", None, Some("*"), 0), ("off", None, Some("door"), 1)]);
        assert_eq!(name(&c, "", "door"), None);
        assert_eq!(name(&c, "", "cam1").as_deref(), Some("a"));
        assert_eq!(winning_rule(&c, "", "door").unwrap().template, "off");
    }

    #[test]
    fn app_glob_must_match_when_set() {
        let c = cfg(&[("a", Some("live"), Some("*"), 0)]);
        assert_eq!(name(&c, "", "cam1"), None);
        assert_eq!(name(&c, "live", "cam1").as_deref(), Some("a"));
    }

    #[test]
    fn globs_support_classes_and_alternatives() {
        let c = cfg(&[("c", None, Some("{front,back}-cam[0-9]"), 0)]);
        assert_eq!(name(&c, "", "front-cam3").as_deref(), Some("c"));
        assert_eq!(name(&c, "", "side-cam3"), None);
        assert_eq!(name(&c, "", "back-camX"), None);
    }
}
