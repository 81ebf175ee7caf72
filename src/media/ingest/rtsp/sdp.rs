//! The SDP a publisher ANNOUNCEs: which tracks it will send, on which payload types, with
//! which codec parameters. Pure.
//!
//! A media section edgerec cannot record (another codec, a static payload type such as
//! G.711 `PCMU`, a packetization or codec configuration it does not read) is kept as a
//! [`Skipped`] track with the reason: its SETUP is still accepted, so publishers carry on
//! with the tracks that are recorded (see `session`). Only an SDP that does not parse, or
//! offers nothing recordable, is refused.

use base64::Engine;
use bytes::Bytes;

use crate::media::frame::VideoCodec;
use crate::media::ingest::depack::{aac::Aac, latm::Latm, opus::Opus, video::Video, Depacketizer};

/// The codecs a push may carry, for messages.
pub const RECORDED: &str = "H264, H265, AAC (MPEG4-GENERIC or MP4A-LATM), OPUS";

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

/// One announced track edgerec will not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `a=control`, as for [`TrackDesc::control`]: its SETUP is accepted and its RTP dropped.
    pub control: String,
    /// What it is, e.g. `audio PCMU/8000`.
    pub track: String,
    /// Why it is not recorded.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.track, self.reason)
    }
}

/// What the SDP offers.
#[derive(Debug)]
pub struct Announced {
    pub tracks: Vec<TrackDesc>,
    /// Media sections that cannot be recorded.
    pub skipped: Vec<Skipped>,
}

/// Encoding names of the static RTP/AVP payload types (RFC 3551 §6), which come without
/// an `a=rtpmap`.
fn static_encoding(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU/8000",
        3 => "GSM/8000",
        4 => "G723/8000",
        5 => "DVI4/8000",
        6 => "DVI4/16000",
        7 => "LPC/8000",
        8 => "PCMA/8000",
        9 => "G722/8000",
        10 => "L16/44100/2",
        11 => "L16/44100",
        12 => "QCELP/8000",
        13 => "CN/8000",
        14 => "MPA/90000",
        15 => "G728/8000",
        16 => "DVI4/11025",
        17 => "DVI4/22050",
        18 => "G729/8000",
        25 => "CelB/90000",
        26 => "JPEG/90000",
        28 => "nv/90000",
        31 => "H261/90000",
        32 => "MPV/90000",
        33 => "MP2T/90000",
        34 => "H263/90000",
        _ => return None,
    })
}

/// Parses an SDP body. Refuses SDP that does not parse or offers nothing recordable.
pub fn parse(body: &[u8]) -> Result<Announced, String> {
    let session = sdp_types::Session::parse(body).map_err(|e| format!("malformed SDP: {e:?}"))?;
    let mut tracks = Vec::new();
    let mut skipped = Vec::new();
    for (i, m) in session.medias.iter().enumerate() {
        let attr = |name: &str, pt: Option<u8>| -> Option<String> {
            m.attributes
                .iter()
                .filter(|a| a.attribute.eq_ignore_ascii_case(name))
                .filter_map(|a| a.value.clone())
                .find(|v| {
                    pt.is_none()
                        || v.split_whitespace()
                            .next()
                            .and_then(|p| p.parse::<u8>().ok())
                            == pt
                })
        };
        let control = attr("control", None).unwrap_or_else(|| format!("trackID={i}"));
        let mut skip = |track: String, reason: &str| {
            skipped.push(Skipped {
                control: control.clone(),
                track,
                reason: reason.to_owned(),
            })
        };
        let pt: u8 = match m.fmt.split_whitespace().next().and_then(|f| f.parse().ok()) {
            Some(pt) if pt < 128 => pt,
            _ => {
                skip(
                    format!("{} format \"{}\"", m.media, m.fmt),
                    "not an RTP payload type",
                );
                continue;
            }
        };
        let rtpmap = attr("rtpmap", Some(pt))
            .and_then(|v| v.split_once(' ').map(|(_, e)| e.trim().to_owned()))
            .or_else(|| static_encoding(pt).map(str::to_owned));
        let Some(encoding) = rtpmap else {
            skip(
                format!("{} payload type {pt}", m.media),
                "no a=rtpmap names its codec",
            );
            continue;
        };
        let what = format!("{} {encoding}", m.media);
        let fmtp = attr("fmtp", Some(pt))
            .and_then(|v| v.split_once(' ').map(|(_, p)| fmtp_pairs(p)))
            .unwrap_or_default();
        let mut enc = encoding.split('/');
        let name = enc.next().unwrap_or("").to_ascii_uppercase();
        let clock: u32 = enc.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let channels: u16 = enc.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        let depacketizer = match (m.media.as_str(), name.as_str()) {
            ("video", "H264") => video(VideoCodec::H264, &fmtp),
            ("video", "H265") => video(VideoCodec::H265, &fmtp),
            ("audio", "MPEG4-GENERIC") => Aac::new(clock, &fmtp).map(Depacketizer::Aac),
            ("audio", "MP4A-LATM") => Latm::new(clock, &fmtp)
                .map(Depacketizer::Latm)
                .map_err(|e| e.to_string()),
            ("audio", "OPUS") => {
                let stereo = get(&fmtp, "sprop-stereo").map(|v| v.trim() == "1");
                let ch = match stereo {
                    Some(true) => 2,
                    Some(false) => 1,
                    None => channels,
                };
                Ok(Depacketizer::Opus(Opus::new(ch)))
            }
            _ => Err(format!("not a codec edgerec records ({RECORDED})")),
        };
        let depacketizer = match depacketizer {
            Ok(d) => d,
            Err(reason) => {
                skip(what, &reason);
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
        let offered: Vec<String> = skipped.iter().map(Skipped::to_string).collect();
        return Err(format!(
            "no track edgerec can record ({RECORDED}); offered: {}",
            if offered.is_empty() {
                "nothing".to_owned()
            } else {
                offered.join(", ")
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
        assert!(
            e.contains("video JPEG/90000 (not a codec edgerec records"),
            "{e}"
        );
    }

    #[test]
    fn malformed_sdp_is_an_error_and_a_malformed_track_is_skipped_with_its_reason() {
        assert!(parse(b"\x00\xffgarbage").is_err());
        assert!(parse(b"").is_err());
        let bad_b64 = FFMPEG_H264_AAC.replace("Z0LADdoFB", "!!!");
        let a = parse(bad_b64.as_bytes()).unwrap();
        assert_eq!(a.tracks.len(), 1);
        assert_eq!(a.skipped[0].control, "streamid=0");
        assert!(
            a.skipped[0].reason.contains("not base64"),
            "{:?}",
            a.skipped
        );
    }

    #[test]
    fn ffmpeg_pcmu_has_a_static_payload_type_and_is_skipped_by_name_with_its_control() {
        // ffmpeg -c:v copy -c:a pcm_mulaw -f rtsp: `m=audio 0 RTP/AVP 0`, no rtpmap.
        let a = parse(include_bytes!("testdata/ffmpeg-h264-pcmu.sdp")).unwrap();
        assert_eq!(a.tracks.len(), 1);
        assert_eq!(a.tracks[0].encoding, "H264/90000");
        assert_eq!(a.skipped.len(), 1);
        assert_eq!(a.skipped[0].control, "streamid=1");
        assert_eq!(a.skipped[0].track, "audio PCMU/8000");
        assert!(a.skipped[0]
            .to_string()
            .starts_with("audio PCMU/8000 (not a codec"));
    }

    #[test]
    fn gstreamer_pcmu_is_skipped_and_its_h264_kept() {
        // rtspclientsink with mulawenc: the audio section comes first, as stream=1.
        let a = parse(include_bytes!("testdata/gstreamer-pcmu-h264.sdp")).unwrap();
        assert_eq!(a.tracks.len(), 1);
        assert_eq!(
            (a.tracks[0].control.as_str(), a.tracks[0].payload_type),
            ("stream=0", 98)
        );
        assert_eq!(a.skipped[0].control, "stream=1");
        assert_eq!(a.skipped[0].track, "audio PCMU/8000");
    }

    #[test]
    fn mp4a_latm_from_ffmpeg_and_gstreamer_is_recorded_as_aac() {
        use crate::media::frame::{AudioCodec, TrackParams};
        for (sdp, audio, asc) in [
            (
                &include_bytes!("../depack/testdata/ffmpeg-latm.sdp")[..],
                1,
                &[0x11, 0x88][..],
            ),
            (
                &include_bytes!("../depack/testdata/gstreamer-latm.sdp")[..],
                0,
                &[0x11, 0x88, 0x56, 0xe5, 0x00][..],
            ),
        ] {
            let a = parse(sdp).unwrap();
            assert_eq!(a.tracks.len(), 2);
            assert!(a.skipped.is_empty());
            let Some(TrackParams::Audio(p)) = a.tracks[audio].depacketizer.params() else {
                panic!("no audio params: {:?}", a.tracks[audio]);
            };
            assert_eq!(p.codec, AudioCodec::Aac);
            assert_eq!(
                (p.sample_rate, p.channels, p.timescale),
                (48_000, 1, 48_000)
            );
            assert_eq!(&p.config[..], asc);
        }
    }

    #[test]
    fn an_unsupported_latm_config_skips_the_track_with_the_reason() {
        let sdp = FFMPEG_H264_AAC
            .replace("MPEG4-GENERIC/48000/1", "MP4A-LATM/48000/1")
            .replace(
                "profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1188",
                "cpresent=0;config=400823103fc0",
            );
        let a = parse(sdp.as_bytes()).unwrap();
        assert_eq!(a.tracks.len(), 1);
        assert!(
            a.skipped[0].reason.contains("unsupported LATM"),
            "{:?}",
            a.skipped
        );
        let no_config = sdp.replace(";config=400823103fc0", "");
        let a = parse(no_config.as_bytes()).unwrap();
        assert!(
            a.skipped[0].reason.contains("no config="),
            "{:?}",
            a.skipped
        );
    }
}
