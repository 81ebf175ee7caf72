//! # edgerec
//!
//! An edge video recorder: cameras (RTSP pull), board-camera pipes, files and pushed streams
//! (RTSP/RTMP) go into rotating, crash-safe fMP4 segments on local storage, which is kept as
//! a ring buffer.
//!
//! # Layout
//!
//! The folders are the layers. Media flows one way through them, and control sits beside
//! the pipeline:
//!
//! ```text
//!   app       daemon wiring, CLI, status rendering
//!    |
//!   control   commands, record tasks, MQTT, local socket, HTTP API, status report
//!    |
//!   pipeline  one supervised recorder task per stream, the supervisor
//!    |
//!   sync      upload queue -> object store; event log (MQTT and webhooks, a cursor each)
//!    |
//!   storage   store (files, fsync, index, recovery) -> retention; storage guard
//!    |
//!   media     source (rtsp pull | push | pipe | file) --Frame--> segment (pure)
//!    |                 --SegmentEvent--> sinks -> format (fMP4, MP4, FLV, ADTS)
//!   config    the TOML config, templates and rules
//!    |
//!   util      clock, backoff, glob, naming, redact, sd_notify, pace
//! ```
//!
//! Imports only go down: a module may use its own layer and the ones under it. A lower layer
//! that must tell a higher one something gets a handle (a channel, a watch, a trait object)
//! from the wiring place. `scripts/check-layers.py` (in `make lint` and `make test`) fails
//! on an import that goes up or a new import cycle between files; the few that remain from
//! before the layers existed are listed in `scripts/layers-baseline.txt`, to be removed.
//!
//! - [`util`]: leaf utilities.
//! - [`config`]: the TOML config, validation with the field's path, templates and rules.
//! - [`media`]: frames, sources, push ingest, the pure segmenter, formats, sinks, stream
//!   health.
//! - [`storage`]: the segment writer, the redb index and the durability protocol (read
//!   [`storage::store`]'s docs), retention (the pure eviction policy and the pass that
//!   applies it) and the storage guard.
//! - [`sync`]: offline-first upload of closed segments to S3-compatible or local targets
//!   (durable queue in the index, resumable multipart, bandwidth cap, windows), the
//!   event log in the index (written with the state change it reports), and webhooks
//!   that deliver it to HTTP endpoints, each with its own cursor.
//! - [`pipeline`]: one supervised task per stream gluing source, segmenter and sinks; the
//!   supervisor starts and stops them at runtime.
//! - [`control`]: what the fleet commands do (MQTT, `edgerec command` and the local socket
//!   call the same code), record tasks and their scheduler, the MQTT connection, topic
//!   contract and telemetry (see `docs/mqtt.md`), the local HTTP API (`docs/http.md`), and
//!   the status report.
//! - [`app`]: starts everything, handles signals, shuts down in order; the command line.
//!
//! Who deletes: retention deletes segments to keep the ring buffer in bounds, and the
//! uploader deletes a segment's file after a verified upload when its target says
//! `delete_after_upload`; both go through the store's durable delete
//! ([`storage::store`]), so the index and the files agree after a crash.

pub mod app;
pub mod config;
pub mod control;
pub mod media;
pub mod pipeline;
pub mod storage;
pub mod sync;
pub mod util;
