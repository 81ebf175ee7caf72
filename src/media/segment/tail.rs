//! The end of a segment that was not cut on a key frame: a B-frame stream can stop between
//! a reference frame and the B-frames shown before it.

use super::event::Sample;

/// Primary-track presentation times kept from fragments already flushed: enough to cover
/// any reordering depth (a few frames), so the last run is judged with its neighbours.
pub(super) const RECENT: usize = 32;

/// Presentation times of a run's samples (its `tfdt` plus durations plus offsets).
pub(super) fn presentation_times(tfdt: u64, samples: &[Sample]) -> Vec<i64> {
    let mut t = tfdt as i64;
    samples
        .iter()
        .map(|s| {
            let p = t + s.cts_offset as i64;
            t += s.duration as i64;
            p
        })
        .collect()
}

/// Cuts a track's last run (`tfdt`, `samples`) back to the longest decode-order prefix
/// whose presentation times leave no hole: when a B-frame stream stops between a reference
/// frame and the B-frames shown before it, those B-frames never came, and the reference
/// frame (and any B-frame that needs it) must go too. `recent` holds the presentation
/// times of the samples flushed before the run (see [`RECENT`]): a frame shown inside the
/// run's span may sit in an earlier fragment, and is no hole. Returns the decode time
/// removed from the run's end, in the track's timescale.
pub(super) fn trim_reordered_tail(tfdt: u64, samples: &mut Vec<Sample>, recent: &[i64]) -> i64 {
    if samples.len() < 2 {
        return 0;
    }
    let mut durations: Vec<u32> = samples.iter().map(|s| s.duration).collect();
    durations.sort_unstable();
    let frame = durations[durations.len() / 2] as i64;
    let pts = presentation_times(tfdt, samples);
    let complete = |m: usize| {
        let lo = pts[..m].iter().copied().min().unwrap_or(0);
        let mut p: Vec<i64> = pts[..m].iter().chain(recent).copied().collect();
        p.sort_unstable();
        // Only holes inside the run's span count: what lies before it is not ours to judge.
        p.windows(2)
            .all(|w| w[1] <= lo || w[1] - w[0] <= frame * 3 / 2)
    };
    let keep = (1..=samples.len())
        .rev()
        .find(|&m| complete(m))
        .unwrap_or(1);
    if keep == samples.len() {
        return 0;
    }
    let mut removed: i64 = samples.drain(keep..).map(|s| s.duration as i64).sum();
    // The last kept sample's duration ran up to the decode time of a dropped one, which
    // the reorderer may have pushed out past the hole: it lasts one frame now.
    if let Some(last) = samples.last_mut() {
        let d = last.duration as i64;
        if d > frame {
            removed += d - frame;
            last.duration = frame as u32;
        }
    }
    removed
}
