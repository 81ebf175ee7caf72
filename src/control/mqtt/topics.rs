//! The topic contract (`docs/mqtt.md`), pure: building every topic of one device and
//! recognising the command topics addressed to it — and only to it.

use crate::sync::events::EventKind;

/// The topics of one device: `{prefix}/{device}/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

/// Longest `request_id` accepted in a 3.1.1 reply topic.
pub const MAX_REQUEST_ID: usize = 128;

impl Topics {
    /// `prefix` and `device` are validated by the config (no wildcards, no empty levels).
    pub fn new(prefix: &str, device: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{device}"),
        }
    }

    /// `{prefix}/{device}`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Retained online/offline status (also the Last Will).
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// Retained effective config, secrets redacted.
    pub fn config(&self) -> String {
        format!("{}/config", self.base)
    }

    /// Periodic telemetry.
    pub fn telemetry(&self) -> String {
        format!("{}/telemetry", self.base)
    }

    /// Where events of `kind` go.
    pub fn event(&self, kind: EventKind) -> String {
        format!("{}/events/{}", self.base, kind.as_str())
    }

    /// The subscription for this device's commands.
    pub fn command_filter(&self) -> String {
        format!("{}/cmd/+", self.base)
    }

    /// The 3.1.1 reply topic of `request_id`, or `None` when the id cannot be a topic level
    /// (empty, too long, wildcards, `/`, control characters).
    pub fn reply(&self, request_id: &str) -> Option<String> {
        let ok = !request_id.is_empty()
            && request_id.len() <= MAX_REQUEST_ID
            && !request_id
                .chars()
                .any(|c| matches!(c, '+' | '#' | '/') || c.is_control());
        ok.then(|| format!("{}/reply/{request_id}", self.base))
    }

    /// The command name when `topic` is exactly `{prefix}/{device}/cmd/{name}` of this
    /// device; anything else (another device, a deeper or shallower topic) is `None`.
    pub fn command<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let rest = topic.strip_prefix(self.base.as_str())?;
        let name = rest.strip_prefix("/cmd/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// The device id of a `{prefix}/{device}/status` topic (for `edgerec ctl devices`).
pub fn status_device<'t>(prefix: &str, topic: &'t str) -> Option<&'t str> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let device = rest.strip_suffix("/status")?;
    (!device.is_empty() && !device.contains('/')).then_some(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Topics {
        Topics::new("fleet/a", "edge-1")
    }

    #[test]
    fn builds_every_topic_under_prefix_and_device() {
        let t = t();
        assert_eq!(t.status(), "fleet/a/edge-1/status");
        assert_eq!(t.config(), "fleet/a/edge-1/config");
        assert_eq!(t.telemetry(), "fleet/a/edge-1/telemetry");
        assert_eq!(
            t.event(EventKind::SegmentClosed),
            "fleet/a/edge-1/events/segment.closed"
        );
        assert_eq!(t.command_filter(), "fleet/a/edge-1/cmd/+");
        assert_eq!(t.reply("r-1").unwrap(), "fleet/a/edge-1/reply/r-1");
    }

    #[test]
    fn recognises_only_this_devices_command_topics() {
        let t = t();
        assert_eq!(t.command("fleet/a/edge-1/cmd/status"), Some("status"));
        assert_eq!(
            t.command("fleet/a/edge-1/cmd/record.start"),
            Some("record.start")
        );
        assert_eq!(t.command("fleet/a/edge-2/cmd/status"), None);
        assert_eq!(t.command("fleet/a/edge-10/cmd/status"), None);
        assert_eq!(t.command("fleet/a/edge-1x/cmd/status"), None);
        assert_eq!(t.command("fleet/a/edge/cmd/status"), None);
        assert_eq!(t.command("fleet/a/edge-1/cmd/"), None);
        assert_eq!(t.command("fleet/a/edge-1/cmd/a/b"), None);
        assert_eq!(t.command("fleet/a/edge-1/status"), None);
        assert_eq!(t.command("x/fleet/a/edge-1/cmd/status"), None);
    }

    #[test]
    fn refuses_request_ids_that_cannot_be_a_topic_level() {
        let t = t();
        for bad in ["", "a/b", "+", "#", "a\nb", &"x".repeat(MAX_REQUEST_ID + 1)] {
            assert_eq!(t.reply(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn finds_the_device_of_a_status_topic() {
        assert_eq!(
            status_device("edgerec", "edgerec/edge-1/status"),
            Some("edge-1")
        );
        assert_eq!(status_device("edgerec", "edgerec/a/b/status"), None);
        assert_eq!(status_device("edgerec", "other/edge-1/status"), None);
        assert_eq!(status_device("edgerec", "edgerec/edge-1/config"), None);
    }
}
