//! Object keys: a template such as `{device}/{stream}/{YYYY}/{MM}/{DD}/{file}` expanded for
//! one segment file, below the target's prefix. Like file naming ([`crate::util::naming`]), the
//! template and the values are checked so that a key can never climb out of the prefix:
//! no `.` or `..` component, no backslash, NUL or control character, never empty.

use std::path::Path;

use crate::util::naming::civil_from_days;

/// What a key is made of: the segment's identity and start. The uploader fills it from the
/// segment's index row.
#[derive(Clone, Copy, Debug)]
pub struct KeyFields<'a> {
    pub device: &'a str,
    pub app: &'a str,
    pub stream: &'a str,
    pub seq: u64,
    pub id: u64,
    /// The segment's start, unix milliseconds.
    pub start_ms: i64,
}

/// The key template of a target that names none.
pub const DEFAULT_KEY: &str = "{device}/{stream}/{YYYY}/{MM}/{DD}/{file}";

/// The variables a key template may use.
const VARIABLES: &str =
    "{device} {stream} {app} {YYYY} {MM} {DD} {hh} {mm} {ss} {start} {seq} {id} {file}";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Lit(String),
    Var(String),
}

/// A validated key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    tokens: Vec<Token>,
}

impl KeyTemplate {
    /// Parse and check a template: known variables, balanced braces, relative, no `.`/`..`
    /// component, and at least one of `{file}`, `{start}`, `{seq}`, `{id}` so that two
    /// segments never share a key.
    pub fn parse(t: &str) -> Result<KeyTemplate, String> {
        if t.trim().is_empty() {
            return Err("key template is empty".into());
        }
        if t.starts_with('/') {
            return Err(format!(
                "key template \"{t}\" starts with \"/\"; keys are relative to the target's prefix"
            ));
        }
        if t.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(format!(
                "key template {t:?} contains a backslash or a control character"
            ));
        }
        let mut tokens = Vec::new();
        let mut rest = t;
        while let Some(i) = rest.find(['{', '}']) {
            if rest.as_bytes()[i] == b'}' {
                return Err(format!("key template \"{t}\" has an unbalanced \"}}\""));
            }
            if i > 0 {
                tokens.push(Token::Lit(rest[..i].to_string()));
            }
            let after = &rest[i + 1..];
            let j = after
                .find('}')
                .filter(|j| !after[..*j].contains('{'))
                .ok_or_else(|| format!("key template \"{t}\" has an unbalanced \"{{\""))?;
            let name = &after[..j];
            if !VARIABLES.split(' ').any(|v| &v[1..v.len() - 1] == name) {
                return Err(format!(
                    "key template \"{t}\" uses unknown variable {{{name}}} (known: {VARIABLES})"
                ));
            }
            tokens.push(Token::Var(name.to_string()));
            rest = &after[j + 1..];
        }
        if !rest.is_empty() {
            tokens.push(Token::Lit(rest.to_string()));
        }
        for comp in t.split('/') {
            if comp == "." || comp == ".." {
                return Err(format!(
                    "key template \"{t}\" contains a \"{comp}\" component; keys must stay under the prefix"
                ));
            }
        }
        let unique = ["file", "start", "seq", "id"];
        if !tokens
            .iter()
            .any(|tok| matches!(tok, Token::Var(v) if unique.contains(&v.as_str())))
        {
            return Err(format!(
                "key template \"{t}\" must contain {{file}}, {{start}}, {{seq}} or {{id}}, \
                 or segments would overwrite each other"
            ));
        }
        Ok(KeyTemplate {
            text: t.to_string(),
            tokens,
        })
    }

    /// Whether the template uses variable `var` (`"id"` for `{id}`).
    pub fn uses(&self, var: &str) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Var(v) if v == var))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key of `file` (a path relative to the store root) of the segment described by
    /// `row`, below `prefix` (no leading or trailing `/`; may be empty).
    pub fn expand(&self, prefix: &str, row: &KeyFields<'_>, file: &Path) -> Result<String, String> {
        let file_name = file
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| format!("segment file {} has no UTF-8 name", file.display()))?;
        let secs = row.start_ms.div_euclid(1000);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let mut s = String::new();
        for tok in &self.tokens {
            match tok {
                Token::Lit(l) => s.push_str(l),
                Token::Var(v) => {
                    let value = match v.as_str() {
                        "device" => row.device.to_string(),
                        "stream" => row.stream.to_string(),
                        "app" => row.app.to_string(),
                        "YYYY" => format!("{y:04}"),
                        "MM" => format!("{m:02}"),
                        "DD" => format!("{d:02}"),
                        "hh" => format!("{:02}", sod / 3600),
                        "mm" => format!("{:02}", sod / 60 % 60),
                        "ss" => format!("{:02}", sod % 60),
                        "start" => secs.to_string(),
                        "seq" => row.seq.to_string(),
                        "id" => row.id.to_string(),
                        _ => file_name.to_string(),
                    };
                    if value.contains('/') {
                        return Err(format!("{v} value {value:?} contains \"/\""));
                    }
                    s.push_str(&value);
                }
            }
        }
        let mut parts: Vec<&str> = prefix.split('/').filter(|c| !c.is_empty()).collect();
        for comp in s.split('/').filter(|c| !c.is_empty()) {
            if comp == "." || comp == ".." || comp.chars().any(|c| c == '\\' || c.is_control()) {
                return Err(format!(
                    "key \"{s}\" contains the component {comp:?}; keys must stay under the prefix"
                ));
            }
            parts.push(comp);
        }
        if parts.len() == prefix.split('/').filter(|c| !c.is_empty()).count() {
            return Err(format!(
                "key template \"{}\" expanded to nothing",
                self.text
            ));
        }
        Ok(parts.join("/"))
    }

    /// The part of every key of `device` that is known before any segment: `prefix`, then
    /// the template's literal text and `{device}` up to the first other variable. The
    /// second value tells whether it names the device (the template starts with
    /// `{device}`, literals aside): only then is it this device's alone. For the orphan
    /// sweep, which lists incomplete uploads under it.
    pub fn fixed_prefix(&self, prefix: &str, device: &str) -> (String, bool) {
        let mut fixed = String::new();
        let mut has_device = false;
        for tok in &self.tokens {
            match tok {
                Token::Lit(l) => fixed.push_str(l),
                Token::Var(v) if v == "device" => {
                    fixed.push_str(device);
                    has_device = true;
                }
                Token::Var(_) => break,
            }
        }
        // Whole components only up to the last "/", as expand() drops empty ones.
        let (dirs, partial) = fixed.rsplit_once('/').unwrap_or(("", fixed.as_str()));
        let mut out: Vec<&str> = prefix.split('/').filter(|c| !c.is_empty()).collect();
        out.extend(dirs.split('/').filter(|c| !c.is_empty()));
        let mut s = out.join("/");
        if !s.is_empty() {
            s.push('/');
        }
        s.push_str(partial);
        (s, has_device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(stream: &'a str, app: &'a str) -> KeyFields<'a> {
        KeyFields {
            device: "edge-1",
            app,
            stream,
            seq: 7,
            id: 42,
            start_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn the_default_template_puts_device_stream_and_date_before_the_file() {
        let t = KeyTemplate::parse(DEFAULT_KEY).unwrap();
        let k = t
            .expand(
                "rec",
                &row("cam1", ""),
                Path::new("cam1/2023/cam1-1700000000.mp4"),
            )
            .unwrap();
        assert_eq!(k, "rec/edge-1/cam1/2023/11/14/cam1-1700000000.mp4");
    }

    #[test]
    fn uses_names_the_variables_of_the_template_only() {
        let t = KeyTemplate::parse("{stream}/{id}-x.mp4").unwrap();
        assert!(t.uses("id") && t.uses("stream"));
        assert!(!t.uses("seq") && !t.uses("x"));
        assert!(!KeyTemplate::parse("{stream}/{file}").unwrap().uses("id"));
    }

    #[test]
    fn an_empty_app_collapses_and_an_empty_prefix_adds_nothing() {
        let t = KeyTemplate::parse("{app}/{stream}-{seq}.mp4").unwrap();
        assert_eq!(
            t.expand("", &row("c", ""), Path::new("a.mp4")).unwrap(),
            "c-7.mp4"
        );
    }

    #[test]
    fn templates_that_could_escape_or_collide_are_refused() {
        for bad in [
            "../{file}",
            "/{file}",
            "a/./{file}",
            "{stream}",
            "{nope}/{file}",
            "{file",
            "a\\{file}",
            "",
        ] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_fixed_prefix_names_the_device_only_when_the_template_starts_with_it() {
        let t = KeyTemplate::parse(DEFAULT_KEY).unwrap();
        assert_eq!(
            t.fixed_prefix("rec", "edge-1"),
            ("rec/edge-1/".into(), true)
        );
        let t = KeyTemplate::parse("cams/{device}-{stream}/{file}").unwrap();
        assert_eq!(t.fixed_prefix("", "e"), ("cams/e-".into(), true));
        let t = KeyTemplate::parse("{stream}/{device}/{file}").unwrap();
        assert_eq!(t.fixed_prefix("a/b", "e"), ("a/b/".into(), false));
        assert_eq!(t.fixed_prefix("", "e"), (String::new(), false));
        // Every key the template makes starts with it.
        let t = KeyTemplate::parse("x//{device}/{seq}").unwrap();
        let (p, _) = t.fixed_prefix("rec", "edge-1");
        let k = t.expand("rec", &row("c", ""), Path::new("f.mp4")).unwrap();
        assert!(k.starts_with(&p), "{k} does not start with {p}");
    }

    #[test]
    fn a_value_that_would_climb_out_is_refused_at_expansion() {
        let t = KeyTemplate::parse("{app}/{file}").unwrap();
        assert!(t.expand("p", &row("c", ".."), Path::new("f.mp4")).is_err());
    }
}
