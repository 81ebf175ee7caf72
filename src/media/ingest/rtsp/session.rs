//! One RTSP publisher connection's protocol state: requests in, responses out; interleaved
//! RTP in, frames to the [`Publisher`]. No socket I/O here (the connection loop in
//! `conn` does it), so the request handling can be fed arbitrary input in tests.

use std::net::SocketAddr;
use std::sync::Arc;

use rtsp_types::{headers, Method, Request, Response, StatusCode, Version};
use tracing::{info, warn};

mod setup;

use setup::Route;

use super::auth;
use super::sdp::{self, Skipped, TrackDesc};
use crate::media::frame::{Frame, StreamParams};
use crate::media::ingest::depack::Rtp;
use crate::media::ingest::{params, Ingest, Protocol, PublishError, PublishRequest, Publisher};
use crate::media::source::interleave::Interleave;
use crate::media::source::reorder::DtsFromPts;

const PUBLIC: &str = "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
/// Malformed or unexpected packets tolerated before the connection is closed.
const MAX_BAD_PACKETS: u32 = 500;

/// What the connection loop does after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// Send the response, then close (TEARDOWN, or a refusal that ends the session).
    Close,
}

/// Protocol state of one connection.
pub struct Session {
    ingest: Ingest,
    peer: SocketAddr,
    id: String,
    nonce: String,
    authed: bool,
    tracks: Vec<TrackDesc>,
    /// Announced tracks that are not recorded: set up, and their RTP dropped.
    skipped: Vec<Skipped>,
    /// Interleaved RTP channel (or a UDP pair's stand-in) -> where its packets go.
    channels: Vec<(u8, Route)>,
    publisher: Option<Publisher>,
    recording: bool,
    params: Option<Arc<StreamParams>>,
    /// Decode times for video: RTP carries presentation times only, and pushed streams
    /// (ffmpeg, OBS) often have B-frames. One window per track, made on first use.
    reorder: Vec<DtsFromPts<Frame>>,
    /// Audio held until the video (delayed by `reorder`) reaches its time.
    interleave: Interleave,
    bad_packets: u32,
    warned: bool,
    /// The channel the last SETUP assigned to UDP datagrams, for the connection loop.
    udp_channel: Option<u8>,
}

fn response(cseq: &str, status: u16) -> rtsp_types::ResponseBuilder {
    Response::builder(Version::V1_0, StatusCode::from(status))
        .header(headers::CSEQ, cseq.to_owned())
        .header(headers::SERVER, "edgerec")
}

/// A refusal with the reason as a plain-text body (ffmpeg shows the status line; curl and
/// logs show the body).
fn refuse(cseq: &str, status: u16, reason: &str) -> Response<Vec<u8>> {
    response(cseq, status)
        .header(headers::CONTENT_TYPE, "text/plain")
        .build(format!("{reason}\r\n").into_bytes())
}

impl Session {
    pub fn new(ingest: Ingest, peer: SocketAddr, id: String) -> Session {
        let nonce = auth::nonce(&format!("{peer}/{id}"));
        Session {
            authed: ingest.users().is_empty(),
            ingest,
            peer,
            id,
            nonce,
            tracks: Vec::new(),
            skipped: Vec::new(),
            reorder: Vec::new(),
            interleave: Interleave::default(),
            channels: Vec::new(),
            publisher: None,
            recording: false,
            params: None,
            bad_packets: 0,
            warned: false,
            udp_channel: None,
        }
    }

    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref()
    }

    /// Handle one request.
    pub fn handle(&mut self, req: &Request<Vec<u8>>) -> (Response<Vec<u8>>, After) {
        let (resp, after, _) = self.handle_with_udp(req, None);
        (resp, after)
    }

    /// Handle one request; a SETUP asking for UDP transport may take `udp_ports`, the
    /// server's (RTP, RTCP) ports the connection bound for it. Returns the channel its
    /// datagrams are to be handed to [`Session::data`] as, when the SETUP took them.
    pub fn handle_with_udp(
        &mut self,
        req: &Request<Vec<u8>>,
        udp_ports: Option<(u16, u16)>,
    ) -> (Response<Vec<u8>>, After, Option<u8>) {
        let (resp, after) = self.dispatch(req, udp_ports);
        (resp, after, self.udp_channel.take())
    }

    fn dispatch(
        &mut self,
        req: &Request<Vec<u8>>,
        udp_ports: Option<(u16, u16)>,
    ) -> (Response<Vec<u8>>, After) {
        let cseq = req
            .header(&headers::CSEQ)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| "0".into());
        let method = req.method().clone();
        if !self.authed && !matches!(method, Method::Options) {
            let ok = req.header(&headers::AUTHORIZATION).is_some_and(|a| {
                auth::check(
                    a.as_str(),
                    method_name(&method),
                    &self.nonce,
                    self.ingest.users(),
                )
            });
            if !ok {
                let [digest, _basic] = auth::challenges(&self.nonce);
                let r = response(&cseq, 401)
                    .header(headers::WWW_AUTHENTICATE, digest)
                    .build(Vec::new());
                return (r, After::Continue);
            }
            self.authed = true;
        }
        match method {
            Method::Options => (
                response(&cseq, 200)
                    .header(headers::PUBLIC, PUBLIC)
                    .build(Vec::new()),
                After::Continue,
            ),
            Method::Announce => self.announce(&cseq, req),
            Method::Setup => self.setup(&cseq, req, udp_ports),
            Method::Record => {
                if self.publisher.is_none() || !self.records_a_track() {
                    return (
                        refuse(
                            &cseq,
                            455,
                            "RECORD before ANNOUNCE and SETUP of a recorded track",
                        ),
                        After::Close,
                    );
                }
                self.recording = true;
                info!(peer = %self.peer, "recording");
                (
                    self.with_session(response(&cseq, 200)).build(Vec::new()),
                    After::Continue,
                )
            }
            Method::Teardown => (response(&cseq, 200).build(Vec::new()), After::Close),
            Method::GetParameter | Method::SetParameter => (
                self.with_session(response(&cseq, 200)).build(Vec::new()),
                After::Continue,
            ),
            _ => (
                response(&cseq, 405)
                    .header(headers::ALLOW, PUBLIC)
                    .build(Vec::new()),
                After::Continue,
            ),
        }
    }

    fn with_session(&self, b: rtsp_types::ResponseBuilder) -> rtsp_types::ResponseBuilder {
        let timeout = self.ingest.limits().session_timeout.as_secs().max(1);
        b.header(headers::SESSION, format!("{};timeout={timeout}", self.id))
    }

    fn announce(&mut self, cseq: &str, req: &Request<Vec<u8>>) -> (Response<Vec<u8>>, After) {
        if self.publisher.is_some() {
            return (refuse(cseq, 455, "already announced"), After::Close);
        }
        let Some(url) = req.request_uri() else {
            return (
                refuse(cseq, 400, "ANNOUNCE needs an rtsp:// URL"),
                After::Close,
            );
        };
        let (app, stream) = match params::split_path(url.path()) {
            Ok(v) => v,
            Err(e) => return (refuse(cseq, e.rtsp_status(), &e.to_string()), After::Close),
        };
        let announced = match sdp::parse(req.body()) {
            Ok(a) => a,
            Err(reason) => {
                warn!(peer = %self.peer, stream = %stream, %reason, "ANNOUNCE refused");
                return (refuse(cseq, 415, &reason), After::Close);
            }
        };
        let tracks = &announced.tracks;
        let publish = PublishRequest {
            protocol: Protocol::Rtsp,
            app,
            stream,
            query: url.query().unwrap_or("").to_owned(),
            peer: self.peer,
            codecs: Some((
                tracks.iter().find_map(|t| t.depacketizer.video_codec()),
                tracks.iter().find_map(|t| t.depacketizer.audio_codec()),
            )),
        };
        // `record_type=audio` needs an audio track; check before publishing.
        if let Ok(p) = crate::media::ingest::RecordParams::parse(&publish.query) {
            let has_audio = announced.tracks.iter().any(|t| !t.depacketizer.is_video());
            if p.audio_only && !has_audio {
                let e = PublishError::NoTracks {
                    reason: "record_type=audio but the stream has no supported audio track".into(),
                };
                return (refuse(cseq, e.rtsp_status(), &e.to_string()), After::Close);
            }
        }
        match self.ingest.publish(publish.clone()) {
            Ok(p) => {
                for s in &announced.skipped {
                    warn!(
                        stream = %publish.stream,
                        track = %s,
                        "track not recorded: its SETUP is accepted and its RTP dropped"
                    );
                }
                p.set_skipped(announced.skipped.iter().map(Skipped::to_string).collect());
                self.publisher = Some(p);
                self.tracks = announced.tracks;
                self.skipped = announced.skipped;
                (response(cseq, 200).build(Vec::new()), After::Continue)
            }
            Err(e) => {
                warn!(peer = %self.peer, stream = %publish.stream, error = %e, "publisher refused");
                (refuse(cseq, e.rtsp_status(), &e.to_string()), After::Close)
            }
        }
    }

    /// One interleaved packet (or UDP datagram, on the channel its SETUP assigned).
    /// Err = close the connection with this reason.
    pub fn data(&mut self, channel: u8, packet: &[u8]) -> Result<(), String> {
        if !self.recording {
            return Ok(());
        }
        let track = match self.channels.iter().find(|(c, _)| *c == channel) {
            Some(&(_, Route::Track(track))) => track,
            // A track that is not recorded (named once, at ANNOUNCE).
            Some((_, Route::Skipped(_))) => return Ok(()),
            None => {
                // RTCP on the odd channels is expected and ignored.
                if channel % 2 == 0 {
                    self.bad(format!("RTP on channel {channel}, which no SETUP assigned"))?;
                }
                return Ok(());
            }
        };
        let rtp = match Rtp::parse(packet) {
            Ok(r) => r,
            Err(e) => return self.bad(e.to_string()),
        };
        let desc = &mut self.tracks[track];
        if rtp.payload_type != desc.payload_type {
            let m = format!(
                "payload type {} on a track announced with {}",
                rtp.payload_type, desc.payload_type
            );
            return self.bad(m);
        }
        if let Err(e) = desc.depacketizer.push(&rtp) {
            self.bad(e.to_string())?;
        }
        while let Some(unit) = self.tracks[track].depacketizer.pull() {
            let Some(params) = self.stream_params() else {
                continue; // a video track has no parameter sets yet
            };
            let video = params.tracks[track].is_video();
            let mut frame = Frame {
                params,
                track,
                dts: unit.pts,
                pts: unit.pts,
                keyframe: unit.keyframe,
                data: unit.data,
            };
            let Some(p) = self.publisher.as_mut() else {
                continue;
            };
            if !video {
                if let Some(f) = self.interleave.audio(frame) {
                    p.send(f).map_err(|e| e.to_string())?;
                }
                continue;
            }
            if self.reorder.len() <= track {
                self.reorder.resize_with(track + 1, DtsFromPts::default);
            }
            let Some((dts, pts, f)) = self.reorder[track].push(frame.pts, frame) else {
                continue;
            };
            frame = Frame { dts, pts, ..f };
            for a in self.interleave.before_video(&frame) {
                p.send(a).map_err(|e| e.to_string())?;
            }
            p.send(frame).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Params of all tracks, or `None` while one is unknown. A new `Arc` only on change.
    fn stream_params(&mut self) -> Option<Arc<StreamParams>> {
        let tracks: Option<Vec<_>> = self
            .tracks
            .iter()
            .map(|t| t.depacketizer.params())
            .collect();
        let tracks = tracks?;
        match &self.params {
            Some(p) if p.tracks == tracks => {}
            _ => self.params = Some(Arc::new(StreamParams { tracks })),
        }
        self.params.clone()
    }

    /// End of the push (TEARDOWN, a closed or dead connection, a timeout): hands the video
    /// frames still held for their decode times, and the audio held beside them, to the
    /// recorder, so the last frames of a stream with B-frames are not lost.
    fn flush(&mut self) {
        let Some(p) = self.publisher.as_mut() else {
            return;
        };
        for window in &mut self.reorder {
            while let Some((dts, pts, f)) = window.drain() {
                let video = Frame { dts, pts, ..f };
                for a in self.interleave.before_video(&video) {
                    if p.send(a).is_err() {
                        return;
                    }
                }
                if p.send(video).is_err() {
                    return;
                }
            }
        }
        while let Some(a) = self.interleave.drain() {
            if p.send(a).is_err() {
                return;
            }
        }
    }

    fn bad(&mut self, reason: String) -> Result<(), String> {
        self.bad_packets += 1;
        if !self.warned {
            warn!(peer = %self.peer, %reason, "bad RTP from publisher (dropped)");
            self.warned = true;
        }
        if self.bad_packets > MAX_BAD_PACKETS {
            return Err(format!("too many bad packets; last: {reason}"));
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.flush();
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Announce => "ANNOUNCE",
        Method::Setup => "SETUP",
        Method::Record => "RECORD",
        Method::Teardown => "TEARDOWN",
        Method::GetParameter => "GET_PARAMETER",
        Method::SetParameter => "SET_PARAMETER",
        Method::Options => "OPTIONS",
        Method::Describe => "DESCRIBE",
        Method::Play => "PLAY",
        Method::Pause => "PAUSE",
        Method::Redirect => "REDIRECT",
        Method::PlayNotify => "PLAY_NOTIFY",
        Method::Extension(s) => s,
    }
}
