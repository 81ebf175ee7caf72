//! Query strings: each endpoint's parameters read by name, so a bad or unknown one is a 400
//! naming it. Times are RFC 3339 or Unix seconds. Pure.

use std::collections::BTreeMap;

/// A bad parameter: 400 `{"error": ...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadParam {
    pub param: String,
    pub message: String,
}

impl std::fmt::Display for BadParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter {:?}: {}", self.param, self.message)
    }
}

fn bad<T>(param: &str, message: impl Into<String>) -> Result<T, BadParam> {
    Err(BadParam {
        param: param.to_string(),
        message: message.into(),
    })
}

/// The largest page `limit` may ask for.
pub const MAX_LIMIT: u64 = 1000;
/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;

/// `GET /api/streams/{stream}/segments?start&end&cursor&limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentsQuery {
    /// Segments ending at or after it (ms since the epoch).
    pub start_ms: Option<i64>,
    /// Segments starting at or before it.
    pub end_ms: Option<i64>,
    /// The `next_cursor` of the previous page: segments after that one.
    pub after_id: Option<u64>,
    pub limit: u64,
}

/// `GET /api/events?after_seq&limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// Events whose `event_seq` is greater (none: from the oldest kept).
    pub after_seq: Option<u64>,
    pub limit: u64,
}

/// `POST /api/record/{stream}?duration`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordQuery {
    /// Seconds to record (none: until stopped).
    pub duration_s: Option<f64>,
}

/// The longest range a playback request may ask for: the planners read the layout of every
/// file in it.
pub const MAX_PLAYBACK_MS: i64 = 24 * 3600 * 1000;

/// `GET /api/playback/{stream}.m3u8?start&end` and `.mp4?start&duration`: a range, and the
/// `token` the request carried in its query (players send no `Authorization` header), to
/// be put in the playlist's URIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaybackQuery {
    pub start_ms: i64,
    pub end_ms: i64,
    pub token: Option<String>,
}

/// The parameters of `query`, refusing any not in `known` and any given twice.
fn params(query: Option<&str>, known: &[&str]) -> Result<BTreeMap<String, String>, BadParam> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&k.as_ref()) {
            let expected = if known.is_empty() {
                "this endpoint takes no parameters".to_string()
            } else {
                format!("unknown parameter; expected {}", known.join(", "))
            };
            return bad(&k, expected);
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return bad(&k, "given more than once");
        }
    }
    Ok(out)
}

/// No parameters at all.
pub fn none(query: Option<&str>) -> Result<(), BadParam> {
    params(query, &[]).map(|_| ())
}

/// A time: RFC 3339 (`2026-12-07T10:00:00Z`) or Unix seconds (`1796637600`, `1796637600.5`).
pub fn time_ms(param: &str, v: &str) -> Result<i64, BadParam> {
    if let Ok(s) = v.parse::<f64>() {
        if s.is_finite() && (0.0..1e11).contains(&s) {
            return Ok((s * 1000.0).round() as i64);
        }
        return bad(param, format!("{v:?} is out of range (Unix seconds)"));
    }
    crate::control::commands::args::parse_time(v).map_or_else(
        || {
            bad(
                param,
                format!("{v:?} is not an RFC 3339 time or Unix seconds"),
            )
        },
        Ok,
    )
}

fn whole(param: &str, v: &str) -> Result<u64, BadParam> {
    v.parse::<u64>()
        .or_else(|_| bad(param, format!("{v:?} is not a whole number >= 0")))
}

fn limit(v: Option<&String>) -> Result<u64, BadParam> {
    match v {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match whole("limit", v)? {
            n @ 1..=MAX_LIMIT => Ok(n),
            _ => bad("limit", format!("must be 1 to {MAX_LIMIT}")),
        },
    }
}

/// Parameters of the segments endpoint.
pub fn segments(query: Option<&str>) -> Result<SegmentsQuery, BadParam> {
    let p = params(query, &["start", "end", "cursor", "limit"])?;
    let start_ms = p.get("start").map(|v| time_ms("start", v)).transpose()?;
    let end_ms = p.get("end").map(|v| time_ms("end", v)).transpose()?;
    if let (Some(s), Some(e)) = (start_ms, end_ms) {
        if e < s {
            return bad("end", "is before start");
        }
    }
    Ok(SegmentsQuery {
        start_ms,
        end_ms,
        after_id: p.get("cursor").map(|v| whole("cursor", v)).transpose()?,
        limit: limit(p.get("limit"))?,
    })
}

/// Parameters of the events endpoint.
pub fn events(query: Option<&str>) -> Result<EventsQuery, BadParam> {
    let p = params(query, &["after_seq", "limit"])?;
    Ok(EventsQuery {
        after_seq: p
            .get("after_seq")
            .map(|v| whole("after_seq", v))
            .transpose()?,
        limit: limit(p.get("limit"))?,
    })
}

/// Parameters of `POST /api/record/{stream}`.
pub fn record(query: Option<&str>) -> Result<RecordQuery, BadParam> {
    let p = params(query, &["duration"])?;
    let duration_s = match p.get("duration") {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s < 1e10 => Some(s),
            _ => return bad("duration", format!("{v:?} is not a number of seconds > 0")),
        },
    };
    Ok(RecordQuery { duration_s })
}

fn required<'a>(p: &'a BTreeMap<String, String>, param: &str) -> Result<&'a str, BadParam> {
    match p.get(param) {
        Some(v) => Ok(v),
        None => bad(param, "is required"),
    }
}

/// Parameters of `GET /api/playback/{stream}.m3u8`: `start` and `end` (required), `token`.
pub fn playback_m3u8(query: Option<&str>) -> Result<PlaybackQuery, BadParam> {
    let p = params(query, &["start", "end", "token"])?;
    let start_ms = time_ms("start", required(&p, "start")?)?;
    let end_ms = time_ms("end", required(&p, "end")?)?;
    if end_ms <= start_ms {
        return bad("end", "must be after start");
    }
    if end_ms - start_ms > MAX_PLAYBACK_MS {
        return bad("end", "at most 24 h after start");
    }
    Ok(PlaybackQuery {
        start_ms,
        end_ms,
        token: p.get("token").cloned(),
    })
}

/// Parameters of `GET /api/playback/{stream}.mp4`: `start` (required), `duration` (required:
/// seconds, `30` or `2.5`, or a humantime duration, `30s`, `5min`), `token`.
pub fn playback_mp4(query: Option<&str>) -> Result<PlaybackQuery, BadParam> {
    let p = params(query, &["start", "duration", "token"])?;
    let start_ms = time_ms("start", required(&p, "start")?)?;
    let d = required(&p, "duration")?;
    let duration_ms = match d.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => (s * 1000.0).round() as i64,
        Ok(_) => return bad("duration", format!("{d:?} is not a number of seconds > 0")),
        Err(_) => match humantime::parse_duration(d) {
            Ok(t) if !t.is_zero() => i64::try_from(t.as_millis()).unwrap_or(i64::MAX),
            _ => {
                return bad(
                    "duration",
                    format!("{d:?} is neither seconds (30) nor a duration (30s, 5min) > 0"),
                )
            }
        },
    };
    if duration_ms > MAX_PLAYBACK_MS {
        return bad("duration", "at most 24 h");
    }
    Ok(PlaybackQuery {
        start_ms,
        end_ms: start_ms + duration_ms.max(1),
        token: p.get("token").cloned(),
    })
}

/// Parameters of `GET /api/media/...`: only `token`.
pub fn media(query: Option<&str>) -> Result<Option<String>, BadParam> {
    Ok(params(query, &["token"])?.remove("token"))
}

/// The `token` parameter of a query, if any (for auth, before the endpoint reads the rest).
pub fn token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        assert_eq!(time_ms("start", "1700000000"), Ok(1_700_000_000_000));
        assert_eq!(time_ms("start", "1700000000.25"), Ok(1_700_000_000_250));
        assert_eq!(
            time_ms("start", "2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        let e = time_ms("start", "yesterday").unwrap_err();
        assert_eq!(e.param, "start");
        assert!(time_ms("end", "-5").is_err());
    }

    #[test]
    fn segments_parameters_are_read_and_limit_is_capped() {
        let q = segments(Some("start=1700000000&cursor=42&limit=10")).unwrap();
        assert_eq!(q.start_ms, Some(1_700_000_000_000));
        assert_eq!(q.after_id, Some(42));
        assert_eq!(q.limit, 10);
        assert_eq!(segments(None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(segments(Some("limit=1001")).unwrap_err().param, "limit");
        assert_eq!(segments(Some("limit=0")).unwrap_err().param, "limit");
        assert_eq!(segments(Some("start=20&end=10")).unwrap_err().param, "end");
        assert_eq!(segments(Some("cursor=x")).unwrap_err().param, "cursor");
    }

    #[test]
    fn unknown_or_repeated_parameters_are_named() {
        let e = events(Some("after=3")).unwrap_err();
        assert_eq!(e.param, "after");
        assert!(e.message.contains("after_seq"), "{e}");
        assert_eq!(events(Some("limit=1&limit=2")).unwrap_err().param, "limit");
        assert_eq!(none(Some("x=1")).unwrap_err().param, "x");
    }

    #[test]
    fn playback_ranges_need_start_and_an_end_after_it() {
        let q = playback_m3u8(Some("start=1700000000&end=2023-11-14T22:13:40Z")).unwrap();
        assert_eq!(
            (q.start_ms, q.end_ms),
            (1_700_000_000_000, 1_700_000_020_000)
        );
        assert_eq!(q.token, None);
        assert_eq!(
            playback_m3u8(Some("end=1700000000")).unwrap_err().param,
            "start"
        );
        assert_eq!(
            playback_m3u8(Some("start=1700000000")).unwrap_err().param,
            "end"
        );
        let e = playback_m3u8(Some("start=1700000010&end=1700000000")).unwrap_err();
        assert_eq!(e.param, "end");
        let e = playback_m3u8(Some("start=0&end=1700000000")).unwrap_err();
        assert_eq!(e.param, "end");
        assert_eq!(
            playback_m3u8(Some("start=x&end=1")).unwrap_err().param,
            "start"
        );
    }

    #[test]
    fn mp4_duration_is_seconds_or_a_humantime_duration() {
        let q = playback_mp4(Some("start=1700000000&duration=2.5")).unwrap();
        assert_eq!(q.end_ms - q.start_ms, 2500);
        let q = playback_mp4(Some("start=1700000000&duration=1min&token=abc")).unwrap();
        assert_eq!(q.end_ms - q.start_ms, 60_000);
        assert_eq!(q.token.as_deref(), Some("abc"));
        for bad in [
            "duration=0",
            "duration=-3",
            "duration=soon",
            "duration=2days",
        ] {
            let e = playback_mp4(Some(&format!("start=1700000000&{bad}"))).unwrap_err();
            assert_eq!(e.param, "duration", "{bad}");
        }
        assert_eq!(playback_mp4(Some("duration=1")).unwrap_err().param, "start");
        assert_eq!(playback_mp4(Some("start=1")).unwrap_err().param, "duration");
    }

    #[test]
    fn a_token_in_the_query_is_found_and_media_takes_nothing_else() {
        assert_eq!(token(Some("start=1&token=a%2Bb")), Some("a+b".into()));
        assert_eq!(token(Some("start=1")), None);
        assert_eq!(token(None), None);
        assert_eq!(media(Some("token=t")).unwrap(), Some("t".into()));
        assert_eq!(media(Some("path=/etc/passwd")).unwrap_err().param, "path");
    }

    #[test]
    fn record_duration_is_positive_seconds() {
        assert_eq!(record(Some("duration=30")).unwrap().duration_s, Some(30.0));
        assert_eq!(record(None).unwrap().duration_s, None);
        assert_eq!(record(Some("duration=-1")).unwrap_err().param, "duration");
        assert_eq!(record(Some("duration=soon")).unwrap_err().param, "duration");
    }
}
