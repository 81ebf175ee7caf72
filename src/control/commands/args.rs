//! A command's JSON payload, read field by field so that every error names the field and
//! what was wrong with it (`bad_field`), and path-like names are refused (`bad_name`).

use serde_json::{Map, Value};

use super::reply::{code, Reply};

/// The payload's fields. Fields a command does not know are refused ([`Args::finish`]).
pub struct Args {
    map: Map<String, Value>,
    known: Vec<&'static str>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `bad_field` naming the field.
pub fn bad_field(field: &str, what: impl std::fmt::Display) -> Reply {
    Reply::error(code::BAD_FIELD, format!("field {field:?}: {what}"))
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> Reply {
    bad_field(
        field,
        format!("expected {expected}, got {}", type_name(got)),
    )
}

impl Args {
    pub fn new(map: Map<String, Value>) -> Args {
        Args {
            map,
            known: Vec::new(),
        }
    }

    fn take(&mut self, field: &'static str) -> Option<Value> {
        self.known.push(field);
        self.map.get(field).filter(|v| !v.is_null()).cloned()
    }

    /// Refuse fields the command did not ask for.
    pub fn finish(self) -> Result<(), Reply> {
        match self.map.keys().find(|k| !self.known.contains(&k.as_str())) {
            Some(k) => Err(bad_field(
                k,
                format!("unknown field; expected one of {}", self.known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    pub fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, Reply> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(field, "a string", &v)),
        }
    }

    pub fn str(&mut self, field: &'static str) -> Result<String, Reply> {
        self.opt_str(field)?
            .ok_or_else(|| bad_field(field, "missing (a string)"))
    }

    /// A stream or template name: a string that cannot be read as a path.
    pub fn opt_name(&mut self, field: &'static str) -> Result<Option<String>, Reply> {
        let name = self.opt_str(field)?;
        if let Some(n) = &name {
            check_name(field, n)?;
        }
        Ok(name)
    }

    pub fn name(&mut self, field: &'static str) -> Result<String, Reply> {
        self.opt_name(field)?
            .ok_or_else(|| bad_field(field, "missing (a string)"))
    }

    pub fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, Reply> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad_field(field, format!("expected a whole number >= 0, got {n}"))),
            Some(v) => Err(wrong_type(field, "a whole number", &v)),
        }
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, Reply> {
        self.opt_u64(field)?
            .ok_or_else(|| bad_field(field, "missing (a whole number)"))
    }

    /// A time: an RFC 3339 string (`"2026-01-02T03:04:05Z"`) or ms since the Unix epoch.
    pub fn opt_time(&mut self, field: &'static str) -> Result<Option<i64>, Reply> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().filter(|v| *v >= 0).map(Some).ok_or_else(|| {
                bad_field(field, format!("expected ms since the Unix epoch, got {n}"))
            }),
            Some(Value::String(s)) => parse_time(&s)
                .map(Some)
                .ok_or_else(|| bad_field(field, format!("{s:?} is not an RFC 3339 time"))),
            Some(v) => Err(wrong_type(
                field,
                "an RFC 3339 string or ms since the Unix epoch",
                &v,
            )),
        }
    }

    pub fn time(&mut self, field: &'static str) -> Result<i64, Reply> {
        self.opt_time(field)?
            .ok_or_else(|| bad_field(field, "missing (an RFC 3339 time or ms since the epoch)"))
    }

    /// A duration: a humantime string (`"30s"`, `"5min"`) or a number of seconds.
    pub fn opt_duration_ms(&mut self, field: &'static str) -> Result<Option<i64>, Reply> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(s) if s > 0.0 && s < 1e10 => Ok(Some((s * 1000.0) as i64)),
                _ => Err(bad_field(field, format!("expected seconds > 0, got {n}"))),
            },
            Some(Value::String(s)) => match humantime::parse_duration(&s) {
                Ok(d) if !d.is_zero() && d.as_secs() < 10_000_000_000 => {
                    Ok(Some(d.as_millis() as i64))
                }
                _ => Err(bad_field(
                    field,
                    format!("{s:?} is not a duration such as \"30s\""),
                )),
            },
            Some(v) => Err(wrong_type(field, "a duration string or seconds", &v)),
        }
    }

    /// An object (e.g. `config.set`'s `patch`).
    pub fn object(&mut self, field: &'static str) -> Result<Map<String, Value>, Reply> {
        match self.take(field) {
            None => Err(bad_field(field, "missing (an object)")),
            Some(Value::Object(m)) => Ok(m),
            Some(v) => Err(wrong_type(field, "an object", &v)),
        }
    }
}

/// RFC 3339 to ms since the Unix epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Refuse names that could be read as paths: `/`, `\`, `..`, NUL or control characters,
/// or empty.
pub fn check_name(field: &str, name: &str) -> Result<(), Reply> {
    if name.is_empty()
        || name.contains(['/', '\\'])
        || name.contains("..")
        || name.chars().any(char::is_control)
    {
        return Err(Reply::error(
            code::BAD_NAME,
            format!("field {field:?}: {name:?} is not a valid name (no /, \\, .., NUL or control characters)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Args {
        match v {
            Value::Object(m) => Args::new(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_wrong_type_names_the_field_and_both_types() {
        let e = args(json!({"stream": 5})).str("stream").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("bad_field"));
        assert_eq!(
            e.message.as_deref(),
            Some("field \"stream\": expected a string, got a number")
        );
    }

    #[test]
    fn path_like_names_are_bad_names() {
        for n in ["../x", "/", "a\\b", "a\0b", ""] {
            let e = args(json!({ "stream": n })).name("stream").unwrap_err();
            assert_eq!(e.code.as_deref(), Some("bad_name"), "{n:?}");
        }
        assert_eq!(
            args(json!({"stream": "cam1"})).name("stream").unwrap(),
            "cam1"
        );
    }

    #[test]
    fn times_are_rfc3339_or_epoch_ms() {
        let mut a = args(
            json!({"a": "2023-11-14T22:13:20.5Z", "b": 1_700_000_000_000i64, "c": "soon", "d": -1}),
        );
        assert_eq!(a.time("a").unwrap(), 1_700_000_000_500);
        assert_eq!(a.time("b").unwrap(), 1_700_000_000_000);
        assert_eq!(a.time("c").unwrap_err().code.as_deref(), Some("bad_field"));
        assert_eq!(a.time("d").unwrap_err().code.as_deref(), Some("bad_field"));
    }

    #[test]
    fn durations_are_humantime_or_seconds() {
        let mut a = args(json!({"a": "1min", "b": 2.5, "c": 0, "d": "x"}));
        assert_eq!(a.opt_duration_ms("a").unwrap(), Some(60_000));
        assert_eq!(a.opt_duration_ms("b").unwrap(), Some(2_500));
        assert!(a.opt_duration_ms("c").is_err());
        assert!(a.opt_duration_ms("d").is_err());
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let mut a = args(json!({"stream": "x", "strem": 1}));
        a.str("stream").unwrap();
        let e = a.finish().unwrap_err();
        assert!(e
            .message
            .unwrap()
            .starts_with("field \"strem\": unknown field"));
    }
}
