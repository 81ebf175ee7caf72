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
//! Not here yet: `/api/playback/{stream}.m3u8` and `.mp4` (the playback planners) and `/`
//! (the web page); [`route`] has their place and answers them 404 "not built yet".

pub mod api;
pub mod auth;
pub mod metrics;
pub mod playlist;
pub mod query;
pub mod route;
pub mod server;

pub use api::Api;
pub use metrics::Counters;
