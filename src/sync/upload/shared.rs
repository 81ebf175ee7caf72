//! What every transfer task shares with the uploader task, and the helpers both use: the
//! worker ([`super::worker`]) starts transfers, [`super::segment`] and [`super::orphans`]
//! run them.

use std::sync::Arc;

use super::{Control, UploadError};
use crate::config::upload::UploadConfig;
use crate::config::Config;
use crate::storage::store::{SegmentRow, SegmentState, Store, UploadState};
use crate::sync::events::Events;
use crate::util::clock::SharedClock;

/// What every transfer task shares.
pub(super) struct Shared {
    pub cfg: Arc<Config>,
    pub up: UploadConfig,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub events: Option<Events>,
    pub control: Control,
    pub limiter: Arc<super::limiter::Limiter>,
}

/// Run blocking index work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::storage::store::StoreError> + Send + 'static,
) -> Result<T, UploadError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(UploadError::Target {
            target: String::new(),
            message: format!("index task failed: {e}"),
        }),
    }
}

/// A closed segment waiting for upload.
pub(super) fn pending(r: &SegmentRow) -> bool {
    r.state == SegmentState::Closed && matches!(r.upload, UploadState::Pending { .. })
}
