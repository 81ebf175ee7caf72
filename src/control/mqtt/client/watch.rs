//! What the MQTT task watches besides the connection: the live config (the retained config
//! topic). Stream states (`source.state`) and storage alarms are stored in the outbox by
//! the parts that know them (`sync::events::streams`, `sync::events::alarm`) and published
//! from there like every event.

use super::Client;

impl Client {
    /// Republish the retained config when the live config changed (`config.set`).
    pub(super) fn watch_config(&mut self) {
        let Some(live) = &self.ctx.live_config else {
            return;
        };
        let now = live();
        if !std::sync::Arc::ptr_eq(&now, &self.last_config) {
            self.config_json = crate::control::mqtt::effective_config(&now);
            self.last_config = now;
            self.publish_config();
        }
    }
}
