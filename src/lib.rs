//! # edgerec
//!
//! An edge video recorder: cameras (RTSP pull), board-camera pipes, files and pushed streams
//! (RTSP/RTMP) go into rotating, crash-safe fMP4 segments on local storage, which is kept as
//! a ring buffer.
//!
//! # Layout
//!
//! Data flows one way, and the modules follow it:
//!
//! ```text
//! source (rtsp pull | push | pipe | file) --Frame--> segment (pure) --SegmentEvent--> sink → format
//!                                                                               |
//!                                 store (files, fsync, index, recovery)  <------+
//!                                     |
//!                                 retention (the only code that deletes)
//! ```
//!
//! - [`frame`]: the one frame type every source produces.
//! - [`ingest`]: the RTSP and RTMP push servers, their depacketizers, and who may publish.
//! - [`source`]: RTSP pull (retina), the looping file "camera", board-camera command pipes
//!   (`pipe:`) and the channel push servers feed.
//! - [`segment`]: the pure segmenter: frames in; start / fragment / close out.
//! - [`format`]: fMP4 and progressive MP4 encoders, and the scanner recovery uses.
//! - [`store`]: the segment writer, the redb index and the durability protocol (read its docs).
//! - [`retention`]: the pure eviction policy (uploaded segments first), and the pass that
//!   applies it.
//! - [`upload`]: offline-first upload sync of closed segments to S3-compatible or local
//!   targets (durable queue in the index, resumable multipart, bandwidth cap, windows).
//! - [`sink`]: consumers of segment events; the fMP4 store sink now, more formats later.
//! - [`recorder`]: one supervised task per stream gluing source, segmenter and sinks;
//!   [`supervisor`]: the recorders by stream name, started and stopped at runtime.
//! - [`tasks`]: record tasks (real-time and scheduled) and their scheduler;
//!   [`commands`]: what the fleet commands do (MQTT and `edgerec command` call it).
//! - [`events`]: the event outbox in the index (written with the state change it reports);
//!   [`mqtt`]: the broker connection, topic contract, outbox publishing, command transport,
//!   telemetry and `edgerec ctl` (see `docs/mqtt.md`).
//! - [`daemon`]: starts everything, handles signals, shuts down in order.
//! - [`pace`]: the shared tick streams poll their sources on; [`control`]: the local socket
//!   `edgerec segments`/`status` use; [`backoff`]: capped exponential backoff.
//! - [`guard`]: the storage guard (the `edgerec init` marker, and the alarm and wait while
//!   it refuses); [`status`]: per-stream health
//!   for `edgerec status` and the watchdog; [`notify`]: systemd's sd_notify.
//! - [`config`], [`rules`], [`glob`], [`naming`]: the TOML config, template/rule matching
//!   (with the rules' shell-style globs), file naming.
//! - [`cli`]: the `edgerec` command line.
//! - [`clock`]: injected wall and monotonic time.

pub mod backoff;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod format;
pub mod frame;
pub mod glob;
pub mod guard;
pub mod ingest;
pub mod mqtt;
pub mod naming;
pub mod notify;
pub mod pace;
pub mod recorder;
pub mod redact;
pub mod retention;
pub mod rules;
pub mod segment;
pub mod sink;
pub mod source;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod tasks;
pub mod upload;
