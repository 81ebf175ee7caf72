//! The SDP a publisher ANNOUNCEs: which tracks it will send, on which payload types, with
//! which codec parameters. Pure; malformed or unsupported input is a clear error.

use base64::Engine;
use bytes::Bytes;

use crate::media::frame::VideoCodec;
use crate::media::ingest::depack::{aac::Aac, opus::Opus, video::Video, Depacketizer};

/// One announced track edgerec can record.
#[derive(Debug)]
pub struct TrackDesc {
    /// `a=control` (a URL, or a suffix of the ANNOUNCE URL, e.g. `streamid=0`).
    pub control: String,
    pub payload_type: u8,
    /// e.g. `H264/90000`, for logs.
    pub encoding: String,
    pub depacketizer: Depacketizer,
}

/// What the SDP offers.
#[derive(Debug)]
pub struct Announced {
    pub tracks: Vec<TrackDesc>,
    /// Media sections that cannot be recorded (e.g. `video H263-1998/90000`).
    pub skipped: Vec<String>,
}

/// Parses an SDP body. Refuses SDP that does not parse or offers nothing recordable.
pub fn parse(body: &[u8]) -> Result<Announced, String> {
    let session = sdp_types::Session::parse(body).map_err(|e| format!("malformed SDP: {e:?}"))?;
    let mut tracks = Vec::new();
    let mut skipped = Vec::new();
    for (i, m) in session.medias.iter().enumerate() {
        let pt: u8 = match m.fmt.split_whitespace().next().and_then(|f| f.parse().ok()) {
            Some(pt) if pt < 128 => pt,
            _ => {
                skipped.push(format!("{} (format \"{}\")", m.media, m.fmt));
                continue;
            }
        };
        let attr = |name: &str, prefix: bool| -> Option<String> {
            m.attributes
                .iter()
                .filter(|a| a.attribute.eq_ignore_ascii_case(name))
                .filter_map(|a| a.value.clone())
                .find(|v| {
                    !prefix
                        || v.split_whitespace()
                            .next()
                            .and_then(|p| p.parse::<u8>().ok())
                            == Some(pt)
                })
        };
        let control = attr("control", false).unwrap_or_else(|| format!("trackID={i}"));
        let rtpmap =
            attr("rtpmap", true).and_then(|v| v.split_once(' ').map(|(_, e)| e.trim().to_owned()));
        let Some(encoding) = rtpmap else {
            skipped.push(format!("{} payload type {pt} without rtpmap", m.media));
            continue;
        };
        let fmtp = attr("fmtp", true)
            .and_then(|v| v.split_once(' ').map(|(_, p)| fmtp_pairs(p)))
            .unwrap_or_default();
        let mut enc = encoding.split('/');
        let name = enc.next().unwrap_or("").to_ascii_uppercase();
        let clock: u32 = enc.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let channels: u16 = enc.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        let depacketizer = match (m.media.as_str(), name.as_str()) {
            ("video", "H264") => video(VideoCodec::H264, &fmtp)?,
            ("video", "H265") => video(VideoCodec::H265, &fmtp)?,
            ("audio", "MPEG4-GENERIC") => Depacketizer::Aac(
                Aac::new(clock, &fmtp).map_err(|e| format!("{} track: {e}", m.media))?,
            ),
            ("audio", "OPUS") => {
                let stereo = get(&fmtp, "sprop-stereo").map(|v| v.trim() == "1");
                let ch = match stereo {
                    Some(true) => 2,
                    Some(false) => 1,
                    None => channels,
                };
                Depacketizer::Opus(Opus::new(ch))
            }
            _ => {
                skipped.push(format!("{} {encoding}", m.media));
                continue;
            }
        };
        if tracks
            .iter()
            .any(|t: &TrackDesc| t.payload_type == pt && t.control == control)
        {
            return Err(format!(
                "two media sections share payload type {pt} and control"
            ));
        }
        tracks.push(TrackDesc {
            control,
            payload_type: pt,
            encoding,
            depacketizer,
        });
    }
    if tracks.is_empty() {
        return Err(format!(
            "no track edgerec can record (H264, H265, MPEG4-GENERIC AAC, OPUS); offered: {}",
            if skipped.is_empty() {
                "nothing".to_owned()
            } else {
                skipped.join(", ")
            }
        ));
    }
    Ok(Announced { tracks, skipped })
}

fn fmtp_pairs(p: &str) -> Vec<(String, String)> {
    p.split(';')
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn get<'a>(fmtp: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fmtp.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn video(codec: VideoCodec, fmtp: &[(String, String)]) -> Result<Depacketizer, String> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(Bytes::from)
            .map_err(|_| format!("parameter set \"{s}\" is not base64"))
    };
    let mut sets = Vec::new();
    match codec {
        VideoCodec::H264 => {
            if get(fmtp, "packetization-mode").is_some_and(|m| m.trim() == "2") {
                return Err("H264 packetization-mode=2 (interleaved) is not supported".into());
            }
            for s in get(fmtp, "sprop-parameter-sets")
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.trim().is_empty())
            {
                sets.push(b64(s)?);
            }
        }
        VideoCodec::H265 => {
            if get(fmtp, "sprop-max-don-diff").is_some_and(|m| m.trim() != "0") {
                return Err("H265 with DONL (sprop-max-don-diff > 0) is not supported".into());
            }
            for key in ["sprop-vps", "sprop-sps", "sprop-pps"] {
                for s in get(fmtp, key)
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                {
                    sets.push(b64(s)?);
                }
            }
        }
    }
    Ok(Depacketizer::Video(Box::new(Video::new(codec, &sets))))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const FFMPEG_H264_AAC: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LADdoFB+wEQAAAAwBAAAAMg8UKqA==,aM4PyA==; profile-level-id=42C00D\r\n\
        a=control:streamid=0\r\n\
        m=audio 0 RTP/AVP 97\r\nb=AS:64\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
        a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1188\r\n\
        a=control:streamid=1\r\n";

    #[test]
    fn ffmpeg_h264_and_aac_announce_gives_two_tracks_with_params() {
        let a = parse(FFMPEG_H264_AAC.as_bytes()).unwrap();
        assert_eq!(a.tracks.len(), 2);
        assert_eq!(a.tracks[0].control, "streamid=0");
        assert_eq!(a.tracks[1].payload_type, 97);
        let v = a.tracks[0].depacketizer.params().unwrap();
        assert!(v.is_video());
        assert!(a.tracks[1].depacketizer.params().is_some());
    }

    #[test]
    fn unsupported_codecs_are_skipped_and_nothing_recordable_is_an_error() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                   m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n";
        let e = parse(sdp.as_bytes()).unwrap_err();
        assert!(e.contains("JPEG"), "{e}");
    }

    #[test]
    fn malformed_sdp_is_an_error() {
        assert!(parse(b"\x00\xffgarbage").is_err());
        assert!(parse(b"").is_err());
        let bad_b64 = FFMPEG_H264_AAC.replace("Z0LADdoFB", "!!!");
        assert!(parse(bad_b64.as_bytes()).is_err());
    }
}
