//! The local HTTP API (`[http]`, issue 15 item 2): live777's record endpoints, status,
//! segments, the event log's replay and Prometheus metrics, over hyper 1. Documented for
//! users in `docs/http.md`.
//!
//! The cores are pure and tested on their own: [`route`] (method and path to an endpoint
//! and the scope it needs; stream names that look like paths are refused), [`auth`] (bearer
//! tokens, constant-time), [`query`] (parameters, each error naming its parameter) and
//! [`metrics`] (the exposition text). [`api`] runs the endpoints through the same fleet
//! commands as MQTT and the control socket; [`playlist`] finds a stream's HLS playlist;
//! [`server`] alone touches sockets.
//!
//! [`playback`] serves the playback planners' playlists, cuts and recorded files with
//! `Range` and `ETag`, streamed through [`body::Body`].
//!
//! [`page`] is the web page at `/` and the hls.js it loads, carried in the binary.

pub mod api;
pub mod auth;
pub mod body;
pub mod metrics;
pub mod page;
pub mod playback;
pub mod playlist;
pub mod query;
pub mod route;
pub mod server;

pub use api::Api;
pub use metrics::Counters;
