//! SETUP: which announced track a publisher sets up, over which transport, and where its
//! packets go ([`Route`]).
//!
//! A track edgerec does not record ([`super::sdp::Skipped`]: G.711, an unsupported
//! packetization...) is set up like any other and its RTP dropped. Refusing it fails the
//! whole push with every common publisher, tried with each answer:
//!
//! | SETUP answer | ffmpeg `-f rtsp` (TCP, UDP) | GStreamer `rtspclientsink` (TCP, UDP) |
//! | --- | --- | --- |
//! | 404, 415, 451, 453, 501 | exits, nothing sent | stops with an error, nothing sent |
//! | 461 Unsupported Transport | exits, nothing sent | skips the track and records the rest only when `protocols` allows one transport; by default tries the next one and stops with an error |
//! | 200, RTP dropped | records every track | records every track |
//!
//! so the publisher sends that track's RTP and the server drops it (it was named once, in
//! the ANNOUNCE's warning).

use rtsp_types::{headers, Request, Response};

use super::{refuse, response, After, Session};

/// Where the packets of an interleaved channel (or a UDP port pair) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// To the depacketizer of this recorded track.
    Track(usize),
    /// Dropped: the SETUP of this skipped track was accepted so the push goes on.
    Skipped(usize),
}

impl Session {
    pub(super) fn setup(
        &mut self,
        cseq: &str,
        req: &Request<Vec<u8>>,
        udp_ports: Option<(u16, u16)>,
    ) -> (Response<Vec<u8>>, After) {
        if self.publisher.is_none() {
            return (refuse(cseq, 455, "SETUP before ANNOUNCE"), After::Close);
        }
        let uri = req.request_uri().map(|u| u.as_str()).unwrap_or("");
        // ffmpeg appends the control to the whole ANNOUNCE URL (`/app/cam?q/streamid=0`),
        // GStreamer to its path, before the query (`/app/cam/stream=0?q`).
        let path = req.request_uri().map(|u| u.path()).unwrap_or("");
        let is = |control: &str| {
            let suffix = format!("/{control}");
            uri.ends_with(&suffix) || path.ends_with(&suffix) || uri == control
        };
        let route = match self.tracks.iter().position(|t| is(&t.control)) {
            Some(t) => Route::Track(t),
            None => match self.skipped.iter().position(|s| is(&s.control)) {
                Some(s) => Route::Skipped(s),
                None => {
                    return (
                        refuse(cseq, 404, "SETUP of a track the SDP does not announce"),
                        After::Continue,
                    )
                }
            },
        };
        let transport = req
            .header(&headers::TRANSPORT)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let Some(first) = interleaved(&transport) else {
            return match (
                crate::media::ingest::rtsp::udp::client_ports(&transport),
                udp_ports,
            ) {
                (Some(client), Some(server)) => self.setup_udp(cseq, route, client, server),
                _ => (
                    refuse(
                        cseq,
                        461,
                        "transport not supported: use RTP/AVP/TCP interleaved, or unicast \
                         RTP/AVP with client_port",
                    ),
                    After::Continue,
                ),
            };
        };
        self.channels.retain(|(_, r)| *r != route);
        if self.channels.iter().any(|(c, _)| *c == first) {
            return (
                refuse(cseq, 400, "interleaved channel already in use"),
                After::Continue,
            );
        }
        self.channels.push((first, route));
        let r = self
            .with_session(response(cseq, 200))
            .header(
                headers::TRANSPORT,
                format!(
                    "RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
                    first,
                    first.saturating_add(1)
                ),
            )
            .build(Vec::new());
        (r, After::Continue)
    }

    /// SETUP over UDP: the track's datagrams arrive as the first free even channel.
    fn setup_udp(
        &mut self,
        cseq: &str,
        route: Route,
        client: (u16, u16),
        server: (u16, u16),
    ) -> (Response<Vec<u8>>, After) {
        self.channels.retain(|(_, r)| *r != route);
        let Some(channel) = (0..=252u8)
            .step_by(2)
            .find(|c| self.channels.iter().all(|(used, _)| used != c))
        else {
            return (refuse(cseq, 453, "no channel left"), After::Continue);
        };
        self.channels.push((channel, route));
        self.udp_channel = Some(channel);
        let r = self
            .with_session(response(cseq, 200))
            .header(
                headers::TRANSPORT,
                format!(
                    "RTP/AVP/UDP;unicast;client_port={}-{};server_port={}-{};mode=record",
                    client.0, client.1, server.0, server.1
                ),
            )
            .build(Vec::new());
        (r, After::Continue)
    }

    /// Whether a recorded track is set up (RECORD needs one).
    pub(super) fn records_a_track(&self) -> bool {
        self.channels
            .iter()
            .any(|(_, r)| matches!(r, Route::Track(_)))
    }
}

/// The first interleaved channel of a TCP transport, e.g.
/// `RTP/AVP/TCP;unicast;interleaved=0-1;mode=record`.
fn interleaved(transport: &str) -> Option<u8> {
    transport.split(',').find_map(|spec| {
        let mut parts = spec.split(';').map(str::trim);
        let proto = parts.next()?;
        if !proto.eq_ignore_ascii_case("RTP/AVP/TCP") {
            return None;
        }
        parts.find_map(|p| {
            let v = p.strip_prefix("interleaved=")?;
            let first = v.split('-').next()?.trim().parse::<u8>().ok()?;
            (first < 254).then_some(first)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_channels_come_from_a_tcp_transport_only() {
        assert_eq!(
            interleaved("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record"),
            Some(2)
        );
        assert_eq!(interleaved("RTP/AVP;unicast;client_port=5000-5001"), None);
        assert_eq!(interleaved("RTP/AVP/TCP;unicast;interleaved=x"), None);
        assert_eq!(interleaved("RTP/AVP/TCP;interleaved=255-256"), None);
    }
}
