//! Parsing a source string from the config into a [`SourceSpec`].
//!
//! Two forms are understood:
//!
//! - `rtsp://[user[:password]@]host[:port]/path[?query]`: an RTSP camera. The query key
//!   `transport` (`tcp`, the default, or `udp`) is ours and is removed before the URL goes to
//!   the camera; every other query key is the camera's and is kept.
//! - `file:PATH[?loop=BOOL&realtime=BOOL]`: an MP4 file replayed as a camera. `PATH` is
//!   relative to the working directory (`file:assets/sample.mp4`) or absolute
//!   (`file:/data/x.mp4`, also `file:///data/x.mp4`). `loop` (default `false`) restarts the
//!   file at its end; `realtime` (default `true`) paces frames like a live camera, `false`
//!   replays as fast as possible (for tests). A path cannot contain `?`.
//! - `pipe:COMMAND`: a command (run with `sh -c`) writing Annex-B H.264/H.265 to stdout,
//!   e.g. `pipe:rpicam-vid -t 0 --codec h264 --inline -o -`. Everything after `pipe:` is
//!   the command. The stream keys `fps` and `audio_pipe` add a frame-rate hint and an ADTS
//!   AAC command ([`SourceSpec::with_pipe_options`]).

use std::fmt;
use std::path::PathBuf;

use crate::util::redact::redact_url;

/// How RTP travels from an RTSP camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved in the RTSP TCP connection (works through NAT and firewalls).
    #[default]
    Tcp,
    /// Separate UDP ports (less latency, loses packets on busy networks).
    Udp,
}

/// Where a stream's frames come from, parsed from the config's source string.
///
/// `Debug` and `Display` print the [redacted](SourceSpec::redacted) form, so a spec can be
/// logged as is.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// An RTSP camera. `url` still holds the credentials (they go to retina separately) but no
    /// longer the `transport` query key.
    Rtsp { url: url::Url, transport: Transport },
    /// An MP4 file replayed as a camera.
    File {
        path: PathBuf,
        /// Restart at the end, with timestamps that keep increasing.
        looping: bool,
        /// Pace frames by their timestamps (`true`, the default) or replay as fast as
        /// possible (`false`, for tests).
        realtime: bool,
    },
    /// A command writing Annex-B video to stdout (see [`crate::media::source::pipe`]).
    Pipe {
        /// Run with `sh -c`; may contain credentials (an RTSP URL), so it is shown redacted.
        command: String,
        /// Frame-rate hint in thousandths of a frame per second (`fps = 29.97` → 29 970).
        fps_milli: Option<u32>,
        /// A second command writing ADTS AAC to stdout.
        audio: Option<String>,
    },
}

impl SourceSpec {
    /// Parses a source string (see the module docs). The error message says what is wrong
    /// and never contains the password.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        let s = s.trim();
        if let Some(cmd) = s.strip_prefix("pipe:") {
            if cmd.trim().is_empty() {
                return Err("source \"pipe:\": the command is empty".to_string());
            }
            return Ok(SourceSpec::Pipe {
                command: cmd.trim().to_string(),
                fps_milli: None,
                audio: None,
            });
        }
        if let Some(rest) = s.strip_prefix("file:") {
            return parse_file(rest);
        }
        let scheme = s
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("rtsp") => parse_rtsp(s),
            Some("rtsps") => Err(format!(
                "source \"{}\": rtsps (RTSP over TLS) is not supported; use rtsp://",
                redact_url(s)
            )),
            Some(other) => Err(format!(
                "source \"{}\": unknown scheme \"{other}\" (expected rtsp://..., file:... or pipe:...)",
                redact_url(s)
            )),
            None => Err(format!(
                "source \"{}\" is not a URL (expected rtsp://host/path or file:path/to.mp4)",
                redact_url(s)
            )),
        }
    }

    /// The spec for logs: credentials replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::Rtsp { url, transport } => {
                let base = redact_url(url.as_str());
                match transport {
                    Transport::Tcp => base,
                    Transport::Udp if url.query().is_some() => format!("{base}&transport=udp"),
                    Transport::Udp => format!("{base}?transport=udp"),
                }
            }
            SourceSpec::File {
                path,
                looping,
                realtime,
            } => {
                let mut s = format!("file:{}", path.display());
                let mut sep = '?';
                if *looping {
                    s.push(sep);
                    s.push_str("loop=true");
                    sep = '&';
                }
                if !*realtime {
                    s.push(sep);
                    s.push_str("realtime=false");
                }
                s
            }
            SourceSpec::Pipe { command, .. } => format!("pipe:{}", redact_url(command)),
        }
    }

    /// Adds the stream keys only pipe sources take: the `fps` hint and the `audio_pipe`
    /// command. Other sources are returned unchanged.
    /// `fps_milli` is in thousandths of a frame per second.
    pub fn with_pipe_options(
        self,
        fps_milli: Option<u32>,
        audio_pipe: Option<String>,
    ) -> SourceSpec {
        match self {
            SourceSpec::Pipe { command, .. } => SourceSpec::Pipe {
                command,
                fps_milli,
                audio: audio_pipe,
            },
            other => other,
        }
    }
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceSpec({})", self.redacted())
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn parse_rtsp(s: &str) -> Result<SourceSpec, String> {
    let shown = redact_url(s);
    let mut url =
        url::Url::parse(s).map_err(|e| format!("source \"{shown}\": invalid URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("source \"{shown}\": the URL has no host"));
    }
    let mut transport = Transport::Tcp;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        if k == "transport" {
            transport = match v.as_ref() {
                "tcp" => Transport::Tcp,
                "udp" => Transport::Udp,
                other => {
                    return Err(format!(
                        "source \"{shown}\": transport=\"{other}\" is not valid (use tcp or udp)"
                    ))
                }
            };
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    if url.query().is_some() {
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Ok(SourceSpec::Rtsp { url, transport })
}

fn parse_file(rest: &str) -> Result<SourceSpec, String> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    // `file:///abs` is the URL spelling of `file:/abs`; `file://host/x` is not a local path.
    let path = match path.strip_prefix("//") {
        Some(p) if p.starts_with('/') => p,
        Some(_) => {
            return Err(format!(
                "source \"file:{rest}\": a file source names a local path (file:relative/x.mp4, \
                 file:/absolute/x.mp4 or file:///absolute/x.mp4), not a host"
            ))
        }
        None => path,
    };
    if path.is_empty() {
        return Err("source \"file:\": the path is empty".to_string());
    }
    let mut looping = false;
    let mut realtime = true;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "loop" => &mut looping,
            "realtime" => &mut realtime,
            other => {
                return Err(format!(
                    "source \"file:{rest}\": unknown option \"{other}\" (known: loop, realtime)"
                ))
            }
        };
        *slot = match v {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(format!(
                    "source \"file:{rest}\": {k}=\"{v}\" is not valid (use true or false)"
                ))
            }
        };
    }
    Ok(SourceSpec::File {
        path: PathBuf::from(path),
        looping,
        realtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtsp(s: &str) -> (url::Url, Transport) {
        match SourceSpec::parse(s).unwrap() {
            SourceSpec::Rtsp { url, transport } => (url, transport),
            other => panic!("expected rtsp, got {other:?}"),
        }
    }

    #[test]
    fn rtsp_defaults_to_tcp_and_keeps_credentials_for_later() {
        let (url, t) = rtsp("rtsp://admin:pw@192.168.1.64:554/Streaming/101");
        assert_eq!(t, Transport::Tcp);
        assert_eq!(url.username(), "admin");
        assert_eq!(url.password(), Some("pw"));
        assert_eq!(url.port(), Some(554));
    }

    #[test]
    fn transport_query_key_is_removed_and_other_keys_kept() {
        let (url, t) = rtsp("rtsp://cam/live?channel=1&transport=udp&subtype=0");
        assert_eq!(t, Transport::Udp);
        assert_eq!(url.query(), Some("channel=1&subtype=0"));
        let (url, t) = rtsp("rtsp://cam/live?transport=tcp");
        assert_eq!(t, Transport::Tcp);
        assert_eq!(url.query(), None);
        assert_eq!(url.as_str(), "rtsp://cam/live");
    }

    #[test]
    fn bad_transport_value_is_refused_with_a_message() {
        let e = SourceSpec::parse("rtsp://u:secret@cam/x?transport=sctp").unwrap_err();
        assert!(e.contains("transport=\"sctp\""), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn unknown_scheme_and_non_urls_are_refused_without_leaking_passwords() {
        let e = SourceSpec::parse("http://u:secret@cam/x").unwrap_err();
        assert!(e.contains("unknown scheme \"http\""), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = SourceSpec::parse("rtsps://u:secret@cam/x").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(SourceSpec::parse("camera1").is_err());
        assert!(SourceSpec::parse("rtsp://").is_err());
    }

    #[test]
    fn redacted_hides_credentials_and_shows_transport() {
        let spec = SourceSpec::parse("rtsp://admin:pw@cam:554/x?transport=udp").unwrap();
        assert_eq!(spec.redacted(), "rtsp://***@cam:554/x?transport=udp");
        assert!(!format!("{spec:?}").contains("pw@"));
        assert!(!format!("{spec}").contains("pw@"));
        let spec = SourceSpec::parse("rtsp://cam/x?a=1").unwrap();
        assert_eq!(spec.redacted(), "rtsp://cam/x?a=1");
    }

    #[test]
    fn file_paths_relative_absolute_and_url_style() {
        let cases = [
            ("file:assets/sample.mp4", "assets/sample.mp4"),
            ("file:/abs/x.mp4", "/abs/x.mp4"),
            ("file:///abs/x.mp4", "/abs/x.mp4"),
        ];
        for (s, want) in cases {
            match SourceSpec::parse(s).unwrap() {
                SourceSpec::File {
                    path,
                    looping,
                    realtime,
                } => {
                    assert_eq!(path, PathBuf::from(want));
                    assert!(!looping);
                    assert!(realtime);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn file_options_are_parsed_and_round_trip_through_redacted() {
        let spec = SourceSpec::parse("file:a.mp4?loop=true&realtime=false").unwrap();
        assert_eq!(
            spec,
            SourceSpec::File {
                path: "a.mp4".into(),
                looping: true,
                realtime: false
            }
        );
        assert_eq!(SourceSpec::parse(&spec.redacted()).unwrap(), spec);
    }

    #[test]
    fn pipe_takes_the_whole_rest_as_the_command_and_redacts_it() {
        let spec = SourceSpec::parse("pipe:ffmpeg -i rtsp://u:pw@cam/x?a=1 -f h264 -").unwrap();
        assert_eq!(
            spec,
            SourceSpec::Pipe {
                command: "ffmpeg -i rtsp://u:pw@cam/x?a=1 -f h264 -".into(),
                fps_milli: None,
                audio: None
            }
        );
        assert_eq!(
            spec.redacted(),
            "pipe:ffmpeg -i rtsp://***@cam/x?a=1 -f h264 -"
        );
        let spec = spec.with_pipe_options(Some(29970), Some("arecord | faac".into()));
        assert!(matches!(
            spec,
            SourceSpec::Pipe {
                fps_milli: Some(29970),
                audio: Some(_),
                ..
            }
        ));
        assert!(SourceSpec::parse("pipe:  ").is_err());
    }

    #[test]
    fn file_with_unknown_option_or_bad_value_or_host_is_refused() {
        let e = SourceSpec::parse("file:a.mp4?speed=2").unwrap_err();
        assert!(e.contains("unknown option \"speed\""), "{e}");
        let e = SourceSpec::parse("file:a.mp4?loop=maybe").unwrap_err();
        assert!(e.contains("loop=\"maybe\""), "{e}");
        assert!(SourceSpec::parse("file://host/a.mp4").is_err());
        assert!(SourceSpec::parse("file:").is_err());
    }
}
