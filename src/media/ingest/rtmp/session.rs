//! The NetConnection / NetStream commands of a publisher, and the replies they get:
//!
//! ```text
//! connect {app}        -> Window Ack Size, Set Peer Bandwidth, Set Chunk Size, _result
//! releaseStream, FCPublish -> _result
//! createStream         -> _result(stream id)
//! publish name         -> (the caller asks the ingest) StreamBegin + onStatus Publish.Start,
//!                         or onStatus error (Publish.BadName ...) and the connection closes
//! FCUnpublish, deleteStream -> the push ends
//! ```
//!
//! Pure: commands in, reply bytes into an [`Output`], [`Event`]s out. Order is enforced:
//! anything but `connect` before `connect`, or `publish` on a stream id that
//! `createStream` never returned, is an error.

use bytes::{Bytes, BytesMut};

use super::amf::{self, Amf};
use super::chunk::{write_message, DEFAULT_CHUNK_SIZE};
use super::RtmpError;

/// Message type ids (RTMP specification 1.0, §5.4 and §7.1).
pub mod msg {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// The chunk size our replies use once connected.
const OUT_CHUNK_SIZE: usize = 4096;
/// Window and peer bandwidth we announce.
const WINDOW: u32 = 2_500_000;
/// A connection may create at most this many streams.
const MAX_STREAMS: usize = 8;

/// Bytes to send to the peer.
#[derive(Debug)]
pub struct Output {
    buf: BytesMut,
    chunk_size: usize,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl Output {
    /// A protocol control message (chunk stream 2, message stream 0).
    pub fn control(&mut self, type_id: u8, payload: &[u8]) {
        write_message(&mut self.buf, self.chunk_size, 2, type_id, 0, 0, payload);
    }

    /// An AMF0 command on message stream `stream_id`.
    pub fn command(&mut self, stream_id: u32, values: &[Amf]) {
        let csid = if stream_id == 0 { 3 } else { 5 };
        let payload = amf::encode_all(values);
        write_message(
            &mut self.buf,
            self.chunk_size,
            csid,
            msg::COMMAND_AMF0,
            stream_id,
            0,
            &payload,
        );
    }

    /// User Control event `event` with a 4-byte argument.
    pub fn user_control(&mut self, event: u16, arg: u32) {
        let mut p = event.to_be_bytes().to_vec();
        p.extend_from_slice(&arg.to_be_bytes());
        self.control(msg::USER_CONTROL, &p);
    }

    /// Bytes as they are (the handshake).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Everything written so far.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// What a command means for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The client asks to publish; answer with [`Session::accept`] or [`Session::refuse`].
    Publish {
        app: String,
        stream: String,
        /// Raw query of the publish name (or of the app when the name has none).
        query: String,
    },
    /// The publisher stopped (FCUnpublish / deleteStream / closeStream).
    Unpublish,
}

#[derive(Debug, PartialEq, Eq)]
struct Publishing {
    stream_id: u32,
    name: String,
    accepted: bool,
}

/// Command state of one connection.
#[derive(Debug, Default)]
pub struct Session {
    /// The connect's app and the query that came with it.
    app: Option<(String, String)>,
    streams: Vec<u32>,
    publishing: Option<Publishing>,
}

/// Splits `name?query`.
fn split_query(s: &str) -> (String, String) {
    match s.split_once('?') {
        Some((n, q)) => (n.to_owned(), q.to_owned()),
        None => (s.to_owned(), String::new()),
    }
}

impl Session {
    /// Message stream id media must arrive on to be recorded, once publishing is accepted.
    pub fn media_stream(&self) -> Option<u32> {
        self.publishing
            .as_ref()
            .filter(|p| p.accepted)
            .map(|p| p.stream_id)
    }

    /// A publish is waiting for [`Session::accept`] / [`Session::refuse`].
    pub fn pending(&self) -> bool {
        self.publishing.as_ref().is_some_and(|p| !p.accepted)
    }

    /// Handles one AMF0 command message sent on message stream `stream_id`.
    pub fn command(
        &mut self,
        stream_id: u32,
        payload: &[u8],
        out: &mut Output,
    ) -> Result<Option<Event>, RtmpError> {
        let values = amf::decode_all(payload).map_err(|reason| RtmpError::Amf {
            context: "a command",
            reason,
        })?;
        let name = values.first().and_then(Amf::as_str).unwrap_or_default();
        let txid = values.get(1).and_then(Amf::as_number).unwrap_or(0.0);
        if name != "connect" && self.app.is_none() {
            return Err(RtmpError::command(format!(
                "\"{name}\" before connect (the client must connect first)"
            )));
        }
        match name {
            "connect" => self.connect(txid, values.get(2), out).map(|_| None),
            "createStream" => {
                if self.streams.len() >= MAX_STREAMS {
                    return Err(RtmpError::command(format!(
                        "more than {MAX_STREAMS} createStream calls"
                    )));
                }
                let id = self.streams.last().map_or(1, |l| l + 1);
                self.streams.push(id);
                let reply = [
                    Amf::string("_result"),
                    Amf::Number(txid),
                    Amf::Null,
                    Amf::Number(f64::from(id)),
                ];
                out.command(0, &reply);
                Ok(None)
            }
            "releaseStream" | "FCPublish" | "getStreamLength" => {
                if txid != 0.0 {
                    let reply = [
                        Amf::string("_result"),
                        Amf::Number(txid),
                        Amf::Null,
                        Amf::Undefined,
                    ];
                    out.command(0, &reply);
                }
                Ok(None)
            }
            "publish" => self.publish(stream_id, values.get(3)).map(Some),
            "FCUnpublish" | "closeStream" => Ok(self.unpublish()),
            "deleteStream" => {
                let id = values.get(3).and_then(Amf::as_number).unwrap_or(-1.0);
                self.streams.retain(|&s| f64::from(s) != id);
                match &self.publishing {
                    Some(p) if f64::from(p.stream_id) == id => Ok(self.unpublish()),
                    _ => Ok(None),
                }
            }
            "play" | "play2" => Err(RtmpError::command(
                "play is not supported: edgerec only accepts publishers",
            )),
            _ => Ok(None), // _checkbw, ping and friends
        }
    }

    fn connect(&mut self, txid: f64, obj: Option<&Amf>, out: &mut Output) -> Result<(), RtmpError> {
        if self.app.is_some() {
            return Err(RtmpError::command("connect sent twice"));
        }
        let app = obj
            .and_then(|o| o.get("app"))
            .and_then(Amf::as_str)
            .ok_or_else(|| RtmpError::command("connect without an app"))?;
        let (app, query) = split_query(app.trim_end_matches('/'));
        self.app = Some((app, query));
        out.control(msg::WINDOW_ACK_SIZE, &WINDOW.to_be_bytes());
        let mut bw = WINDOW.to_be_bytes().to_vec();
        bw.push(2); // dynamic
        out.control(msg::SET_PEER_BANDWIDTH, &bw);
        out.control(msg::SET_CHUNK_SIZE, &(OUT_CHUNK_SIZE as u32).to_be_bytes());
        out.chunk_size = OUT_CHUNK_SIZE;
        let reply = [
            Amf::string("_result"),
            Amf::Number(txid),
            Amf::object([
                ("fmsVer", Amf::string("FMS/3,0,1,123")),
                ("capabilities", Amf::Number(31.0)),
            ]),
            Amf::object([
                ("level", Amf::string("status")),
                ("code", Amf::string("NetConnection.Connect.Success")),
                ("description", Amf::string("Connection succeeded.")),
                ("objectEncoding", Amf::Number(0.0)),
            ]),
        ];
        out.command(0, &reply);
        Ok(())
    }

    fn publish(&mut self, stream_id: u32, name: Option<&Amf>) -> Result<Event, RtmpError> {
        if !self.streams.contains(&stream_id) {
            return Err(RtmpError::command(format!(
                "publish on message stream {stream_id}, which createStream never returned"
            )));
        }
        if self.publishing.is_some() {
            return Err(RtmpError::command("publish while already publishing"));
        }
        let name = name
            .and_then(Amf::as_str)
            .ok_or_else(|| RtmpError::command("publish without a stream name"))?;
        let (stream, query) = split_query(name);
        let (app, app_query) = self.app.clone().unwrap_or_default();
        self.publishing = Some(Publishing {
            stream_id,
            name: name.to_owned(),
            accepted: false,
        });
        Ok(Event::Publish {
            app,
            stream,
            query: if query.is_empty() { app_query } else { query },
        })
    }

    fn unpublish(&mut self) -> Option<Event> {
        self.publishing.take().map(|_| Event::Unpublish)
    }

    /// The ingest took the publish: StreamBegin and NetStream.Publish.Start.
    pub fn accept(&mut self, out: &mut Output) {
        let Some(p) = self.publishing.as_mut() else {
            return;
        };
        p.accepted = true;
        out.user_control(0, p.stream_id); // StreamBegin
        let status = on_status(
            "status",
            "NetStream.Publish.Start",
            &format!("{} is now published", p.name),
        );
        out.command(p.stream_id, &status);
    }

    /// The ingest refused the publish: an onStatus error with `code` (e.g.
    /// `NetStream.Publish.BadName`) and the reason. The caller closes the connection.
    pub fn refuse(&mut self, code: &str, description: &str, out: &mut Output) {
        if let Some(p) = self.publishing.take() {
            out.command(p.stream_id, &on_status("error", code, description));
        }
    }
}

fn on_status(level: &str, code: &str, description: &str) -> [Amf; 4] {
    [
        Amf::string("onStatus"),
        Amf::Number(0.0),
        Amf::Null,
        Amf::object([
            ("level", Amf::string(level)),
            ("code", Amf::string(code)),
            ("description", Amf::string(description)),
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(values: &[Amf]) -> Vec<u8> {
        amf::encode_all(values)
    }

    fn connect(app: &str) -> Vec<u8> {
        cmd(&[
            Amf::string("connect"),
            Amf::Number(1.0),
            Amf::object([("app", Amf::string(app))]),
        ])
    }

    fn publish(name: &str) -> Vec<u8> {
        cmd(&[
            Amf::string("publish"),
            Amf::Number(5.0),
            Amf::Null,
            Amf::string(name),
            Amf::string("live"),
        ])
    }

    fn create(s: &mut Session, out: &mut Output) {
        let c = cmd(&[Amf::string("createStream"), Amf::Number(4.0), Amf::Null]);
        s.command(0, &c, out).unwrap();
    }

    #[test]
    fn connect_create_publish_yields_app_stream_and_query() {
        let (mut s, mut out) = (Session::default(), Output::default());
        assert_eq!(s.command(0, &connect("live"), &mut out).unwrap(), None);
        assert!(out.take().is_some());
        create(&mut s, &mut out);
        let e = s.command(1, &publish("cam8?record_interval=2"), &mut out);
        assert_eq!(
            e.unwrap(),
            Some(Event::Publish {
                app: "live".into(),
                stream: "cam8".into(),
                query: "record_interval=2".into(),
            })
        );
        assert!(s.pending() && s.media_stream().is_none());
        s.accept(&mut out);
        assert_eq!(s.media_stream(), Some(1));
        let reply = out.take().unwrap();
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("NetStream.Publish.Start"), "{text}");
    }

    #[test]
    fn query_on_the_app_is_stripped_and_used_when_the_name_has_none() {
        let (mut s, mut out) = (Session::default(), Output::default());
        s.command(0, &connect("live?record=mp4"), &mut out).unwrap();
        create(&mut s, &mut out);
        match s.command(1, &publish("cam"), &mut out).unwrap() {
            Some(Event::Publish { app, query, .. }) => {
                assert_eq!((app.as_str(), query.as_str()), ("live", "record=mp4"))
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn publish_before_connect_is_an_error() {
        let (mut s, mut out) = (Session::default(), Output::default());
        let e = s.command(1, &publish("cam"), &mut out).unwrap_err();
        assert!(e.to_string().contains("before connect"), "{e}");
    }

    #[test]
    fn publish_on_an_unknown_stream_id_is_an_error() {
        let (mut s, mut out) = (Session::default(), Output::default());
        s.command(0, &connect("live"), &mut out).unwrap();
        let e = s.command(7, &publish("cam"), &mut out).unwrap_err();
        assert!(e.to_string().contains("message stream 7"), "{e}");
    }

    #[test]
    fn refused_publish_sends_an_error_status_and_unpublish_ends_the_push() {
        let (mut s, mut out) = (Session::default(), Output::default());
        s.command(0, &connect("live"), &mut out).unwrap();
        create(&mut s, &mut out);
        s.command(1, &publish("cam"), &mut out).unwrap();
        out.take();
        s.refuse("NetStream.Publish.BadName", "already live", &mut out);
        let text = String::from_utf8_lossy(&out.take().unwrap()).into_owned();
        assert!(text.contains("BadName") && text.contains("already live"));
        assert!(!s.pending());
        s.command(1, &publish("cam2"), &mut out).unwrap();
        s.accept(&mut out);
        let del = cmd(&[
            Amf::string("deleteStream"),
            Amf::Number(0.0),
            Amf::Null,
            Amf::Number(1.0),
        ]);
        assert_eq!(
            s.command(0, &del, &mut out).unwrap(),
            Some(Event::Unpublish)
        );
        assert_eq!(s.media_stream(), None);
    }
}
