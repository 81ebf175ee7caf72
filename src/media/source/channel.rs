//! A source fed from inside the process: a push server (RTSP ANNOUNCE/RECORD, RTMP
//! publish) hands frames to a [`ChannelSender`], the stream's recorder reads them from the
//! [`ChannelSource`].
//!
//! The channel is bounded by bytes, not by frame count: [`ChannelSender::send`] refuses a
//! frame once the frames waiting in the channel (their payload plus a fixed per-frame
//! overhead) exceed the limit, so a recorder that falls behind (a slow card) can never make
//! memory grow without bound; the push server closes that publisher instead.
//!
//! The stream ends when every sender is dropped (the push ended) or when the `stop` token
//! is cancelled (the publisher was taken over, or the daemon shuts down); frames already in
//! the channel are still handed out first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::media::frame::Frame;

/// Bytes a frame counts for against the limit: its payload plus the bookkeeping around it
/// (the `Frame` struct, the channel node, the `Bytes` header), so that a flood of empty
/// frames is bounded too.
pub fn frame_cost(frame: &Frame) -> usize {
    frame.data.len() + 128
}

/// Why a frame was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelSendError {
    /// The recorder is too far behind: more than `limit` bytes are waiting.
    #[error("the recorder is {buffered} bytes behind (limit {limit})")]
    Full { buffered: usize, limit: usize },
    /// The recorder is gone (its session ended).
    #[error("the recorder stopped")]
    Closed,
}

/// The producing end; cheap to clone.
#[derive(Clone, Debug)]
pub struct ChannelSender {
    tx: mpsc::UnboundedSender<Frame>,
    buffered: Arc<AtomicUsize>,
    limit: usize,
}

/// The consuming end, wrapped by [`super::Source`].
#[derive(Debug)]
pub struct ChannelSource {
    rx: mpsc::UnboundedReceiver<Frame>,
    buffered: Arc<AtomicUsize>,
    stop: CancellationToken,
    stopped: bool,
}

/// A channel holding at most about `limit_bytes` (see [`frame_cost`]); the source ends when
/// every sender is dropped or `stop` is cancelled.
pub fn channel(limit_bytes: usize, stop: CancellationToken) -> (ChannelSender, ChannelSource) {
    let (tx, rx) = mpsc::unbounded_channel();
    let buffered = Arc::new(AtomicUsize::new(0));
    (
        ChannelSender {
            tx,
            buffered: buffered.clone(),
            limit: limit_bytes,
        },
        ChannelSource {
            rx,
            buffered,
            stop,
            stopped: false,
        },
    )
}

impl ChannelSender {
    /// Queue a frame without waiting. Refused when the limit would be exceeded.
    pub fn send(&self, frame: Frame) -> Result<(), ChannelSendError> {
        let cost = frame_cost(&frame);
        let before = self.buffered.fetch_add(cost, Ordering::AcqRel);
        if before + cost > self.limit {
            self.buffered.fetch_sub(cost, Ordering::AcqRel);
            return Err(ChannelSendError::Full {
                buffered: before,
                limit: self.limit,
            });
        }
        self.tx.send(frame).map_err(|_| {
            self.buffered.fetch_sub(cost, Ordering::AcqRel);
            ChannelSendError::Closed
        })
    }

    /// Bytes currently waiting for the recorder.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// True once the consuming end is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl ChannelSource {
    /// Next frame; `None` once the push ended or was stopped (after the queued frames).
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Frame> {
        let frame = if self.stopped {
            self.rx.try_recv().ok()
        } else {
            tokio::select! {
                biased;
                f = self.rx.recv() => f,
                _ = self.stop.cancelled() => {
                    self.stopped = true;
                    self.rx.close();
                    self.rx.try_recv().ok()
                }
            }
        };
        if let Some(f) = &frame {
            self.buffered.fetch_sub(frame_cost(f), Ordering::AcqRel);
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{AudioCodec, AudioParams, StreamParams, TrackParams};
    use bytes::Bytes;

    fn frame(dts: i64, len: usize) -> Frame {
        let params = Arc::new(StreamParams {
            tracks: vec![TrackParams::Audio(AudioParams {
                codec: AudioCodec::Aac,
                sample_rate: 48_000,
                channels: 1,
                config: Bytes::from_static(&[0x11, 0x88]),
                timescale: 48_000,
                frame_samples: 1024,
            })],
        });
        Frame {
            params,
            track: 0,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::from(vec![0u8; len]),
        }
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_the_end_follows_the_last_sender() {
        let (tx, mut rx) = channel(1 << 20, CancellationToken::new());
        tx.send(frame(0, 10)).unwrap();
        tx.send(frame(1024, 10)).unwrap();
        drop(tx);
        assert_eq!(rx.next().await.unwrap().dts, 0);
        assert_eq!(rx.next().await.unwrap().dts, 1024);
        assert!(rx.next().await.is_none());
    }

    #[tokio::test]
    async fn a_sender_is_refused_beyond_the_byte_limit_and_accepted_again_once_drained() {
        let (tx, mut rx) = channel(1000, CancellationToken::new());
        tx.send(frame(0, 600)).unwrap();
        let e = tx.send(frame(1, 600)).unwrap_err();
        assert_eq!(
            e,
            ChannelSendError::Full {
                buffered: 728,
                limit: 1000
            }
        );
        assert_eq!(tx.buffered(), 728);
        rx.next().await.unwrap();
        assert_eq!(tx.buffered(), 0);
        tx.send(frame(1, 600)).unwrap();
    }

    #[tokio::test]
    async fn empty_frames_are_bounded_too() {
        let (tx, _rx) = channel(10_000, CancellationToken::new());
        let accepted = (0..1000)
            .take_while(|i| tx.send(frame(*i, 0)).is_ok())
            .count();
        assert_eq!(accepted, 10_000 / 128);
    }

    #[tokio::test]
    async fn stop_hands_out_queued_frames_then_ends_even_with_a_live_sender() {
        let stop = CancellationToken::new();
        let (tx, mut rx) = channel(1 << 20, stop.clone());
        tx.send(frame(0, 1)).unwrap();
        stop.cancel();
        assert_eq!(rx.next().await.unwrap().dts, 0);
        assert!(rx.next().await.is_none());
        assert_eq!(tx.send(frame(1, 1)), Err(ChannelSendError::Closed));
        assert!(tx.is_closed());
    }
}
