//! The segmenter state machine.
//!
//! Rules it keeps:
//! - A segment starts on a key frame of the primary track (the first video track, or the
//!   first track of an audio-only stream) and is cut on the first key frame at or after
//!   `interval`.
//! - Segments are capped: with no key frame by `2 × interval` (a camera with a huge GOP or
//!   intra refresh), the segment is cut at the next primary-track frame anyway, and the next
//!   segment starts on that frame, without a key frame (a warning once per such episode).
//!   Otherwise one segment would grow for as long as the source lives, and a segment being
//!   written is never evicted.
//! - Fragments close when any track's time reaches the next multiple of `fragment` (so a
//!   stalled video track does not stop them while audio flows), or earlier when they reach
//!   `max_fragment_bytes`, so memory per stream is bounded whatever the source does.
//! - A sample's duration is only known when the next sample of its track arrives, so each
//!   track keeps exactly one pending frame.
//! - New codec parameters, a timestamp that goes backwards or jumps far ahead close the
//!   segment; the next one starts on the next key frame with a fresh init section.
//! - Wall-clock start times come from one anchor per source session plus media time, so the
//!   segments of a session tile the timeline without gaps; the anchor is re-taken when the
//!   media clock drifts from the wall clock by more than [`MAX_DRIFT_MS`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::media::frame::{Frame, StreamParams, TrackParams};

use super::event::*;

/// Re-anchor wall time when media time and wall time disagree by more than this.
pub const MAX_DRIFT_MS: i64 = 2_000;
/// Secondary-track frames (audio) kept while waiting for the first key frame: about a
/// second of AAC, and never more than this many bytes.
const MAX_WAITING: usize = 64;
const MAX_WAITING_BYTES: usize = 256 * 1024;
/// A forward timestamp jump larger than this is a discontinuity.
pub const MAX_GAP: Duration = Duration::from_secs(10);
/// A segment without a key frame after `interval` is cut anyway at this many intervals.
pub const KEYLESS_CAP: u32 = 2;

/// Segmenter settings, usually from a template.
#[derive(Clone, Debug)]
pub struct SegmenterConfig {
    pub interval: Duration,
    pub fragment: Duration,
    /// Flush a fragment early once its samples reach this many bytes.
    pub max_fragment_bytes: usize,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            interval: Duration::from_secs(60),
            fragment: Duration::from_secs(1),
            max_fragment_bytes: 4 << 20,
        }
    }
}

/// Identity of the stream being segmented.
#[derive(Clone, Debug, Default)]
pub struct StreamIdentity {
    pub device: String,
    pub app: String,
    pub stream: String,
}

/// Counters for what was thrown away and why (exported in status later).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Frames before the first key frame of a segment.
    pub waiting_for_key: u64,
    /// Frames whose timestamp went backwards.
    pub backwards: u64,
}

#[derive(Debug)]
struct Open {
    params: Arc<StreamParams>,
    primary: usize,
    /// Per track: source dts at segment time 0; `None` until the track's first frame.
    base: Vec<Option<i64>>,
    /// Anchor of the segment in primary-track ticks.
    start_dts: i64,
    start_ms: i64,
    frag_seq: u32,
    frag_start_dts: i64,
    frag_bytes: usize,
    /// Per track: samples ready for the current fragment, and the tfdt of the first one.
    runs: Vec<(u64, Vec<Sample>)>,
    /// Per track: the frame whose duration is not known yet.
    pending: Vec<Option<Frame>>,
    /// Per track: last known sample duration, used for the final sample.
    last_duration: Vec<u32>,
    /// Primary-track dts just past the last completed sample.
    end_dts: i64,
    /// Presentation times of the last primary samples flushed (for the tail trim).
    recent_pts: VecDeque<i64>,
}

/// The pure segmenter: feed frames, collect events.
#[derive(Debug)]
pub struct Segmenter {
    cfg: SegmenterConfig,
    id: StreamIdentity,
    next_seq: u64,
    open: Option<Open>,
    /// (wall ms, primary dts, timescale) anchor of this source session.
    anchor: Option<(i64, i64, u32)>,
    /// Wall-clock end of the last closed segment: start times never go back before it.
    last_end_ms: i64,
    dropped: Dropped,
    /// Secondary-track frames seen while waiting for a key frame (bounded).
    waiting: VecDeque<Frame>,
    waiting_bytes: usize,
    /// The segment was just cut for want of a key frame: the next starts on any frame.
    start_anyway: bool,
    /// In a run of segments cut without key frames (ends at the next key frame).
    keyless: bool,
    keyless_episodes: u64,
}

fn rescale(v: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return v;
    }
    ((v as i128 * to as i128) / from as i128) as i64
}

fn default_duration(t: &TrackParams) -> u32 {
    match t {
        TrackParams::Audio(a) => a.frame_samples.max(1),
        // 25 fps when nothing better is known.
        TrackParams::Video(v) => (v.timescale / 25).max(1),
    }
}

impl Segmenter {
    /// `next_seq` is the sequence number the next segment gets (continue from the index).
    pub fn new(cfg: SegmenterConfig, id: StreamIdentity, next_seq: u64) -> Self {
        Segmenter {
            cfg,
            id,
            next_seq,
            open: None,
            anchor: None,
            last_end_ms: i64::MIN,
            dropped: Dropped::default(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            start_anyway: false,
            keyless: false,
            keyless_episodes: 0,
        }
    }

    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// How many times the source went `2 × interval` without a key frame, so that segments
    /// were cut without one (each run of such cuts counts once, and is logged once).
    pub fn keyless_episodes(&self) -> u64 {
        self.keyless_episodes
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Start times never go back before `end_ms` (the end of the stream's last segment
    /// recorded earlier in this boot), so that a restart after a backward clock step does
    /// not overlap what was recorded before it.
    pub fn not_before(&mut self, end_ms: i64) {
        self.last_end_ms = self.last_end_ms.max(end_ms);
    }

    /// The wall clock was corrected by `delta_ms` (a step of a clock that was not
    /// synchronized, see `docs/time.md`): move the open segment, the session's anchor and
    /// the end of the last segment with it, so that the open segment closes with its
    /// corrected start ([`SegmentClose::start_ms`]) and the next ones follow on.
    pub fn shift_time(&mut self, delta_ms: i64) {
        if let Some((w, _, _)) = &mut self.anchor {
            *w = w.saturating_add(delta_ms);
        }
        if self.last_end_ms != i64::MIN {
            self.last_end_ms = self.last_end_ms.saturating_add(delta_ms);
        }
        if let Some(open) = &mut self.open {
            open.start_ms = open.start_ms.saturating_add(delta_ms);
        }
    }

    /// Change interval/fragment; takes effect from the next segment/fragment.
    pub fn set_config(&mut self, cfg: SegmenterConfig) {
        self.cfg = cfg;
    }

    /// Feed one frame. `wall_ms` is the wall clock at arrival (used only to anchor names).
    pub fn push(&mut self, frame: Frame, wall_ms: i64, out: &mut Vec<SegmentEvent>) {
        if frame.keyframe && frame.track == Self::primary_of(&frame.params) {
            self.keyless = false;
        }
        if let Some(open) = &self.open {
            if let Some(reason) = self.must_close_before(open, &frame) {
                if reason != CloseReason::Discontinuity {
                    // The frame that ends the segment tells the last sample's duration.
                    let open = self.open.as_mut().expect("segment open");
                    Self::complete_pending(open, frame.track, frame.dts);
                }
                self.close(reason, out);
                if reason == CloseReason::Discontinuity {
                    self.anchor = None;
                }
                if reason == CloseReason::KeyFrameOverdue {
                    self.start_anyway = true;
                    self.warn_keyless();
                }
            }
        }
        if self.open.is_none() {
            if !self.can_start(&frame) {
                self.hold_while_waiting(frame);
                return;
            }
            self.start(&frame, wall_ms, out);
            self.add(frame, out);
            // Other tracks' frames that arrived before the key frame but belong after it
            // (video can reach us later than audio, e.g. after B-frame reordering).
            let start_dts = self.open.as_ref().map_or(0, |o| o.start_dts);
            let ts = self
                .open
                .as_ref()
                .map_or(1, |o| o.params.tracks[o.primary].timescale());
            for f in std::mem::take(&mut self.waiting) {
                let t = f.track_params().timescale();
                let open = self.open.as_ref().expect("segment open");
                if Arc::ptr_eq(&f.params, &open.params) && f.dts >= rescale(start_dts, ts, t) {
                    self.add(f, out);
                } else {
                    self.dropped.waiting_for_key += 1;
                }
            }
            self.waiting_bytes = 0;
            return;
        }
        self.add(frame, out);
    }

    /// Keep a few secondary-track frames while no segment is open; the oldest go first.
    fn hold_while_waiting(&mut self, frame: Frame) {
        if frame.track == Self::primary_of(&frame.params) {
            self.dropped.waiting_for_key += 1;
            return;
        }
        self.waiting_bytes += frame.data.len();
        self.waiting.push_back(frame);
        while self.waiting.len() > MAX_WAITING || self.waiting_bytes > MAX_WAITING_BYTES {
            if let Some(old) = self.waiting.pop_front() {
                self.waiting_bytes -= old.data.len();
                self.dropped.waiting_for_key += 1;
            }
        }
    }

    /// Close the open segment, if any (source ended, shutdown). The next frame starts a new
    /// session: its wall-clock anchor is taken again.
    pub fn finish(&mut self, reason: CloseReason, out: &mut Vec<SegmentEvent>) {
        self.close(reason, out);
        self.anchor = None;
        self.start_anyway = false;
        self.waiting.clear();
        self.waiting_bytes = 0;
    }

    fn primary_of(params: &StreamParams) -> usize {
        params.video_track().unwrap_or(0)
    }

    fn can_start(&self, f: &Frame) -> bool {
        f.track == Self::primary_of(&f.params) && (f.keyframe || self.start_anyway)
    }

    /// Once per run of segments cut without a key frame.
    fn warn_keyless(&mut self) {
        if std::mem::replace(&mut self.keyless, true) {
            return;
        }
        self.keyless_episodes += 1;
        let cap = self.cfg.interval * KEYLESS_CAP;
        tracing::warn!(
            stream = %self.id.stream,
            cap = ?cap,
            "no key frame for {cap:?}: cutting segments without one until a key frame comes \
             (players may show artifacts at the start of such segments; set the camera's \
             key frame interval below the template's interval)"
        );
    }

    fn must_close_before(&self, open: &Open, f: &Frame) -> Option<CloseReason> {
        if !Arc::ptr_eq(&open.params, &f.params) && *open.params != *f.params {
            return Some(CloseReason::ParamsChanged);
        }
        if let Some(p) = &open.pending[f.track] {
            let ts = f.track_params().timescale() as i64;
            if f.dts < p.dts || f.dts - p.dts > MAX_GAP.as_secs() as i64 * ts {
                return Some(CloseReason::Discontinuity);
            }
        }
        if f.track == open.primary {
            let ts = open.params.tracks[open.primary].timescale() as i128;
            let elapsed_ms = (f.dts - open.start_dts) as i128 * 1000;
            let interval = self.cfg.interval.as_millis() as i128 * ts;
            if f.keyframe && elapsed_ms >= interval {
                return Some(CloseReason::Interval);
            }
            if elapsed_ms >= interval * KEYLESS_CAP as i128 && interval > 0 {
                return Some(CloseReason::KeyFrameOverdue);
            }
        }
        None
    }

    fn start(&mut self, f: &Frame, wall_ms: i64, out: &mut Vec<SegmentEvent>) {
        let params = f.params.clone();
        let primary = f.track;
        let ts = params.tracks[primary].timescale();
        let from_anchor = match self.anchor {
            Some((aw, ad, ats)) if ats == ts => Some(aw + rescale(f.dts - ad, ts, 1000)),
            _ => None,
        };
        let start_ms = match from_anchor {
            Some(ms) if (ms - wall_ms).abs() <= MAX_DRIFT_MS => ms,
            _ => {
                // New session or drift: re-anchor on the wall clock, but never before the
                // previous segment's end, so a stream's start times only move forward.
                let ms = wall_ms.max(self.last_end_ms);
                self.anchor = Some((ms, f.dts, ts));
                ms
            }
        };
        self.start_anyway = false;
        let n = params.tracks.len();
        let mut base = vec![None; n];
        base[primary] = Some(f.dts);
        let meta = SegmentMeta {
            device: self.id.device.clone(),
            app: self.id.app.clone(),
            stream: self.id.stream.clone(),
            seq: self.next_seq,
            start_ms,
            formats: vec![],
            time_quality: None,
            boot: None,
        };
        self.next_seq += 1;
        let base_dts = (0..n)
            .map(|t| rescale(f.dts, ts, params.tracks[t].timescale()))
            .collect();
        out.push(SegmentEvent::Start(SegmentStart {
            meta,
            params: params.clone(),
            base_dts,
        }));
        self.open = Some(Open {
            last_duration: params.tracks.iter().map(default_duration).collect(),
            params,
            primary,
            base,
            start_dts: f.dts,
            start_ms,
            frag_seq: 0,
            frag_start_dts: f.dts,
            frag_bytes: 0,
            runs: (0..n).map(|_| (0, Vec::new())).collect(),
            pending: vec![None; n],
            end_dts: f.dts,
            recent_pts: VecDeque::new(),
        });
    }

    fn add(&mut self, f: Frame, out: &mut Vec<SegmentEvent>) {
        let open = self.open.as_mut().expect("segment open");
        let t = f.track;
        if open.base[t].is_none() {
            // A secondary track's time 0 is the segment start on its own clock, or its first
            // frame if that came slightly earlier (arrival order is not dts order).
            let ts_p = open.params.tracks[open.primary].timescale();
            let ts_t = open.params.tracks[t].timescale();
            let start = rescale(open.start_dts, ts_p, ts_t);
            open.base[t] = Some(start.min(f.dts));
        }
        // Boundaries sit on a fixed grid of primary-track time from the segment start, so
        // fragments average exactly `fragment` instead of drifting by a frame each time.
        // Any track's time counts: when video stalls while audio flows, fragments still
        // close on time, not only once they are `max_fragment_bytes` large.
        let ts = open.params.tracks[open.primary].timescale();
        let frag_ticks = self.cfg.fragment.as_millis() as i128 * ts as i128 / 1000;
        let at = rescale(f.dts, open.params.tracks[t].timescale(), ts);
        let due = (at - open.frag_start_dts) as i128 >= frag_ticks;
        if due || open.frag_bytes >= self.cfg.max_fragment_bytes {
            Self::complete_pending(open, t, f.dts);
            Self::flush(open, out);
            if due && frag_ticks > 0 {
                let behind = (at - open.frag_start_dts) as i128 / frag_ticks;
                open.frag_start_dts += (behind * frag_ticks) as i64;
            } else if t == open.primary {
                open.frag_start_dts = f.dts;
            }
        }
        Self::complete_pending(open, t, f.dts);
        open.pending[t] = Some(f);
    }

    /// Turn track `t`'s pending frame into a sample now that the next dts is known.
    fn complete_pending(open: &mut Open, t: usize, next_dts: i64) {
        let Some(p) = open.pending[t].take() else {
            return;
        };
        let d = (next_dts - p.dts).clamp(0, u32::MAX as i64) as u32;
        let d = if d == 0 { open.last_duration[t] } else { d };
        open.last_duration[t] = d;
        Self::append(open, t, p, d);
    }

    fn append(open: &mut Open, t: usize, p: Frame, duration: u32) {
        let base = open.base[t].unwrap_or(p.dts);
        let (tfdt, samples) = &mut open.runs[t];
        if samples.is_empty() {
            *tfdt = (p.dts - base).max(0) as u64;
        }
        open.frag_bytes += p.data.len();
        if t == open.primary {
            open.end_dts = p.dts + duration as i64;
        }
        samples.push(Sample {
            duration,
            cts_offset: (p.pts - p.dts).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            keyframe: p.keyframe,
            data: p.data,
        });
    }

    fn flush(open: &mut Open, out: &mut Vec<SegmentEvent>) {
        let (tfdt, primary) = &open.runs[open.primary];
        open.recent_pts
            .extend(super::tail::presentation_times(*tfdt, primary));
        while open.recent_pts.len() > super::tail::RECENT {
            open.recent_pts.pop_front();
        }
        let runs: Vec<TrackRun> = open
            .runs
            .iter_mut()
            .enumerate()
            .filter(|(_, (_, s))| !s.is_empty())
            .map(|(track, (tfdt, s))| TrackRun {
                track,
                base_decode_time: *tfdt,
                samples: std::mem::take(s),
            })
            .collect();
        open.frag_bytes = 0;
        if runs.is_empty() {
            return;
        }
        open.frag_seq += 1;
        out.push(SegmentEvent::Fragment(Fragment {
            sequence: open.frag_seq,
            runs,
        }));
    }

    fn close(&mut self, reason: CloseReason, out: &mut Vec<SegmentEvent>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        for t in 0..open.pending.len() {
            if let Some(p) = open.pending[t].take() {
                let d = open.last_duration[t];
                Self::append(&mut open, t, p, d);
            }
        }
        let cut_mid_stream = matches!(
            reason,
            CloseReason::Interval | CloseReason::ParamsChanged | CloseReason::KeyFrameOverdue
        );
        if !cut_mid_stream {
            // The stream stopped (not cut mid-stream, where what follows the cut goes to the
            // next segment): it may have stopped between a reference frame and the B-frames
            // shown before it. Drop such a tail rather than leave a hole.
            let (tfdt, samples) = &mut open.runs[open.primary];
            let recent: Vec<i64> = open.recent_pts.iter().copied().collect();
            open.end_dts -= super::tail::trim_reordered_tail(*tfdt, samples, &recent);
        }
        Self::flush(&mut open, out);
        let ts = open.params.tracks[open.primary].timescale();
        let duration_ms = rescale(open.end_dts - open.start_dts, ts, 1000).max(0) as u64;
        let end_ms = open.start_ms + duration_ms as i64;
        self.last_end_ms = end_ms;
        out.push(SegmentEvent::Close(SegmentClose {
            reason,
            start_ms: open.start_ms,
            duration_ms,
            end_ms,
        }));
    }
}
