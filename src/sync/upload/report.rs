//! The upload section of `edgerec status` ([`crate::control::report::Report`]): the backlog and
//! failures from the index, and whether uploads are configured and paused.

use serde::{Deserialize, Serialize};

use super::uploads::human_bytes;

/// The upload backlog, from the index (segments waiting, failures) and the uploader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    /// False when the config has no `[upload]` section.
    pub configured: bool,
    /// Uploads are paused (`edgerec upload --pause`, or the MQTT command).
    #[serde(default)]
    pub paused: bool,
    /// Closed segments waiting for upload, and their bytes.
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
    /// Wall-clock start of the oldest segment waiting (ms since the Unix epoch), and its
    /// age in seconds when the report was made.
    #[serde(default)]
    pub oldest_ms: Option<i64>,
    #[serde(default)]
    pub oldest_age_s: Option<u64>,
    /// Segments waiting whose last upload attempt failed.
    #[serde(default)]
    pub failing: u64,
}

impl UploadReport {
    /// The backlog of `rows` and the failures saved with the upload jobs (blocking).
    /// Whether uploads are configured and paused, and the age, come from
    /// [`UploadReport::with_state`].
    pub fn from_index(
        store: &crate::storage::store::Store,
        rows: &[crate::storage::store::SegmentRow],
    ) -> Result<UploadReport, crate::storage::store::StoreError> {
        let b = super::backlog_of(rows);
        Ok(UploadReport {
            backlog_segments: b.count,
            backlog_bytes: b.bytes,
            oldest_ms: b.oldest_ms,
            failing: super::uploads::failing(store, rows)?.len() as u64,
            ..UploadReport::default()
        })
    }

    /// Set what the index alone does not say, at wall time `now_ms`.
    pub fn with_state(mut self, configured: bool, paused: bool, now_ms: i64) -> UploadReport {
        self.configured = configured;
        self.paused = paused;
        self.oldest_age_s = self
            .oldest_ms
            .map(|o| (now_ms.saturating_sub(o).max(0) / 1000) as u64);
        self
    }

    /// The `uploads:` line of `edgerec status`.
    pub fn render(&self) -> String {
        let u = self;
        if !u.configured {
            return match u.backlog_segments {
                0 => "uploads: not configured".into(),
                n => format!("uploads: not configured ({n} segment(s) still queued from before)"),
            };
        }
        let mut line = format!(
            "uploads: {} segment(s), {} waiting",
            u.backlog_segments,
            human_bytes(u.backlog_bytes)
        );
        if let Some(age) = u.oldest_age_s {
            line.push_str(&format!(
                ", oldest recorded {} ago",
                super::uploads::human_age(age as i64 * 1000)
            ));
        }
        if u.failing > 0 {
            line.push_str(&format!(", {} failing (see `edgerec uploads`)", u.failing));
        }
        if u.paused {
            line.push_str("; paused");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uploads_line_shows_backlog_age_failures_and_pause() {
        let idx = UploadReport {
            backlog_segments: 3,
            backlog_bytes: 3 << 20,
            oldest_ms: Some(1_000),
            failing: 1,
            ..UploadReport::default()
        };
        let u = idx.clone().with_state(true, true, 7_201_000);
        assert_eq!(u.oldest_age_s, Some(7200));
        assert_eq!(
            u.render(),
            "uploads: 3 segment(s), 3.0 MiB waiting, oldest recorded 2h ago, 1 failing (see `edgerec uploads`); paused"
        );
        let u = idx.clone().with_state(true, false, 61_000);
        assert_eq!(
            u.render(),
            "uploads: 3 segment(s), 3.0 MiB waiting, oldest recorded 60s ago, 1 failing (see `edgerec uploads`)"
        );
        // Segments queued while an [upload] section existed, which is gone now.
        assert_eq!(
            idx.with_state(false, false, 0).render(),
            "uploads: not configured (3 segment(s) still queued from before)"
        );
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<UploadReport>(&json).unwrap(), u);
        // A report from an older recorder, without the newer fields, still reads.
        let old: UploadReport =
            serde_json::from_str(r#"{"configured":true,"backlog_segments":2,"backlog_bytes":10}"#)
                .unwrap();
        assert_eq!(old.backlog_segments, 2);
        assert!(!old.paused);
    }
}
