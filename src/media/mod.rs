//! The media path, free of storage: sources produce [`frame::Frame`]s, the pure
//! [`segment`]er cuts them into segment events, [`format`] encodes those into bytes, and
//! [`sink`] is where segment events go.
//!
//! May import: [`crate::util`], [`crate::config`]. Nothing here writes the index, uploads or
//! talks to a broker; a sink that needs the store is given one from above.
//!
//! - [`frame`]: the one frame type every source produces;
//! - [`codec`]: the codec toolkit: `avcC`/`hvcC` records, RFC 6381 codec strings and the
//!   SPS reader, for every source;
//! - [`source`]: RTSP pull (retina), the looping file "camera", board-camera pipes, and the
//!   channel push servers feed;
//! - [`ingest`]: the RTSP and RTMP push servers, their depacketizers, and who may publish;
//! - [`segment`]: the pure segmenter: frames in; start / fragment / close out;
//! - [`format`]: the fMP4 and progressive MP4 encoders, and the scanner recovery uses;
//! - [`sink`]: consumers of segment events;
//! - [`health`]: what each stream is doing, for status and the systemd watchdog.

pub mod codec;
pub mod format;
pub mod frame;
pub mod health;
pub mod ingest;
pub mod segment;
pub mod sink;
pub mod source;
