//! Push-URL record parameters (`?record=mp4|flv&record_interval=600&record_type=audio`)
//! and the names in a push URL's path: pure parsing, and how they change a template.
//!
//! Every key is ours: an unknown key or value is refused rather than ignored, so a typo
//! (`record_intreval=60`) is noticed by whoever set up the push.

use std::time::Duration;

use crate::config::{Template, MAX_INTERVAL, MIN_INTERVAL};
use crate::media::format::Format;

use super::PublishError;

/// What a push URL asks for, on top of the matched rule's template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordParams {
    /// `record=fmp4|mp4|flv|aac`: the formats to write instead of the template's.
    pub formats: Option<Vec<Format>>,
    /// `record_interval=SECONDS`: the segment length instead of the template's.
    pub interval: Option<Duration>,
    /// `record_type=audio`: record only the audio tracks.
    pub audio_only: bool,
}

fn bad(param: &str, reason: impl Into<String>) -> PublishError {
    PublishError::BadParams {
        param: param.to_owned(),
        reason: reason.into(),
    }
}

impl RecordParams {
    /// Parse a raw query string (without `?`). `%7C` for `|` and `+` for space are decoded.
    pub fn parse(query: &str) -> Result<RecordParams, PublishError> {
        let mut p = RecordParams::default();
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key.is_empty() && value.is_empty() {
                continue;
            }
            if seen.iter().any(|k| *k == key) {
                return Err(bad(&key, "given twice"));
            }
            seen.push(key.to_string());
            match key.as_ref() {
                "record" => p.formats = Some(parse_formats(&value)?),
                "record_interval" => p.interval = Some(parse_interval(&value)?),
                "record_type" => match value.as_ref() {
                    "audio" => p.audio_only = true,
                    other => {
                        return Err(bad(
                            "record_type",
                            format!("unknown value \"{other}\" (supported: audio)"),
                        ))
                    }
                },
                other => {
                    return Err(bad(
                        other,
                        "unknown parameter (supported: record, record_interval, record_type)",
                    ))
                }
            }
        }
        Ok(p)
    }

    /// The template for this push: `base` with the URL's overrides. The fragment is
    /// shortened when the interval is shorter than it.
    pub fn apply(&self, base: &Template) -> Template {
        let mut t = base.clone();
        if let Some(f) = &self.formats {
            t.formats = f.clone();
        }
        if let Some(i) = self.interval {
            t.interval = i;
            t.fragment = t.fragment.min(i);
        }
        t
    }
}

fn parse_formats(v: &str) -> Result<Vec<Format>, PublishError> {
    let mut formats = Vec::new();
    for name in v.split('|').map(str::trim) {
        if name.is_empty() {
            return Err(bad(
                "record",
                format!("empty format in \"{v}\" (use e.g. record=fmp4|mp4)"),
            ));
        }
        let f = Format::parse(name).map_err(|reason| {
            if reason.contains("not supported yet") {
                PublishError::UnsupportedFormat {
                    format: name.to_owned(),
                    reason: format!("record={name}: {reason}"),
                }
            } else {
                bad("record", reason)
            }
        })?;
        if formats.contains(&f) {
            return Err(bad("record", format!("format \"{name}\" is listed twice")));
        }
        formats.push(f);
    }
    Ok(formats)
}

fn parse_interval(v: &str) -> Result<Duration, PublishError> {
    let secs: u64 = v.trim().parse().map_err(|_| {
        bad(
            "record_interval",
            format!("\"{v}\" is not a whole number of seconds"),
        )
    })?;
    let d = Duration::from_secs(secs);
    if d < MIN_INTERVAL || d > MAX_INTERVAL {
        return Err(bad(
            "record_interval",
            format!(
                "{secs} s is out of range ({} to {} seconds)",
                MIN_INTERVAL.as_secs(),
                MAX_INTERVAL.as_secs()
            ),
        ));
    }
    Ok(d)
}

/// Splits a push URL path into `(app, stream)`: `/app/stream` or `/stream` (empty app).
/// Names end up in file names, so they must be plain: no `..`, `\`, control characters, and
/// at most two levels.
pub fn split_path(path: &str) -> Result<(String, String), PublishError> {
    let decoded = url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let parts: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    let (app, stream) = match parts.as_slice() {
        [stream] => ("", *stream),
        [app, stream] => (*app, *stream),
        [] => {
            return Err(PublishError::BadName {
                what: "stream",
                name: String::new(),
                reason: "the URL has no stream name (use /app/stream or /stream)".into(),
            })
        }
        _ => {
            return Err(PublishError::BadName {
                what: "stream",
                name: decoded.clone(),
                reason: "too many path levels (use /app/stream or /stream)".into(),
            })
        }
    };
    check_name("app", app)?;
    check_name("stream", stream)?;
    Ok((app.to_owned(), stream.to_owned()))
}

fn check_name(what: &'static str, name: &str) -> Result<(), PublishError> {
    let reason = if name == "." || name.contains("..") {
        "must not be \".\" or contain \"..\""
    } else if name.contains('\\') {
        "must not contain \"\\\""
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else if name.len() > 128 {
        "must be at most 128 bytes"
    } else {
        return Ok(());
    };
    Err(PublishError::BadName {
        what,
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            name: "t".into(),
            formats: vec![Format::Fmp4],
            interval: Duration::from_secs(60),
            fragment: Duration::from_secs(1),
            naming: crate::config::DEFAULT_NAMING.into(),
            upload: None,
            playlist_max_length: Duration::from_secs(3600),
            resume_window: Duration::ZERO,
        }
    }

    #[test]
    fn an_empty_query_changes_nothing() {
        let p = RecordParams::parse("").unwrap();
        assert_eq!(p, RecordParams::default());
        assert_eq!(p.apply(&template()), template());
    }

    #[test]
    fn record_takes_a_bar_separated_list_also_percent_encoded() {
        let p = RecordParams::parse("record=fmp4|mp4").unwrap();
        assert_eq!(p.formats, Some(vec![Format::Fmp4, Format::Mp4]));
        let p = RecordParams::parse("record=mp4%7Cfmp4").unwrap();
        assert_eq!(p.formats, Some(vec![Format::Mp4, Format::Fmp4]));
        assert_eq!(
            p.apply(&template()).formats,
            vec![Format::Mp4, Format::Fmp4]
        );
    }

    #[test]
    fn flv_and_aac_are_recording_formats_of_a_push() {
        let p = RecordParams::parse("record=mp4|flv").unwrap();
        assert_eq!(p.formats, Some(vec![Format::Mp4, Format::Flv]));
        let p = RecordParams::parse("record_type=audio&record=aac").unwrap();
        assert_eq!(p.formats, Some(vec![Format::Aac]));
        assert!(p.audio_only);
    }

    #[test]
    fn formats_not_built_yet_are_refused_as_unsupported() {
        let p = RecordParams::parse("record=mp4|hls&record_interval=5400").unwrap();
        assert_eq!(p.formats, Some(vec![Format::Mp4, Format::Hls]));
        let e = RecordParams::parse("record=mp4|dash").unwrap_err();
        assert!(matches!(&e, PublishError::UnsupportedFormat { format, .. } if format == "dash"));
        assert_eq!(e.rtsp_status(), 406);
        assert!(e.to_string().contains("not supported yet"), "{e}");
    }

    #[test]
    fn unknown_formats_keys_and_values_are_bad_requests() {
        for q in [
            "record=avi",
            "record=",
            "record=fmp4||mp4",
            "record=fmp4|fmp4",
            "record_intreval=60",
            "record_type=video",
            "record_interval=1.5",
            "record_interval=-3",
            "record_interval=7201",
            "record_interval=0",
            "record=fmp4&record=mp4",
        ] {
            let e = RecordParams::parse(q).unwrap_err();
            assert_eq!(e.rtsp_status(), 400, "{q}: {e}");
        }
        let e = RecordParams::parse("record_intreval=60").unwrap_err();
        assert!(e.to_string().contains("record_intreval"), "{e}");
    }

    #[test]
    fn record_interval_overrides_the_interval_and_caps_the_fragment() {
        let p = RecordParams::parse("record_interval=7200").unwrap();
        assert_eq!(p.apply(&template()).interval, Duration::from_secs(7200));
        let mut base = template();
        base.fragment = Duration::from_secs(5);
        let t = RecordParams::parse("record_interval=2")
            .unwrap()
            .apply(&base);
        assert_eq!(t.interval, Duration::from_secs(2));
        assert_eq!(t.fragment, Duration::from_secs(2));
    }

    #[test]
    fn record_type_audio_sets_audio_only() {
        let p = RecordParams::parse("record_type=audio&record=fmp4").unwrap();
        assert!(p.audio_only);
    }

    #[test]
    fn paths_give_app_and_stream() {
        assert_eq!(
            split_path("/live/cam9").unwrap(),
            ("live".into(), "cam9".into())
        );
        assert_eq!(split_path("/cam9").unwrap(), ("".into(), "cam9".into()));
        assert_eq!(
            split_path("/live/cam9/").unwrap(),
            ("live".into(), "cam9".into())
        );
        assert_eq!(
            split_path("/live/cam%209").unwrap(),
            ("live".into(), "cam 9".into())
        );
    }

    #[test]
    fn paths_that_could_escape_or_confuse_are_refused() {
        for p in [
            "/",
            "",
            "/a/b/c",
            "/live/..",
            "/live/%2E%2E",
            "/a%5Cb",
            "/live/a%00b",
            "/live/%2F..",
        ] {
            let e = split_path(p).unwrap_err();
            assert_eq!(e.rtsp_status(), 400, "{p}: {e}");
        }
    }
}
