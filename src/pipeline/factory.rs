//! The one place a stream recorder is assembled: the supervisor asks it for pulled streams,
//! push ingest (through the [`PushRecorder`] handle the wiring place gives it) for pushed
//! ones. What every recorder shares lives here once: the store, the clock, the retention
//! poke, the pacer, the storage watchdog and the pipe registry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Template;
use crate::media::health::StreamStatus;
use crate::media::ingest::PushRecorder;
use crate::media::source::{PipeGroups, Source};
use crate::pipeline::recorder::StreamRecorder;
use crate::storage::store::Store;
use crate::storage::watchdog::health::StorageHealth;
use crate::sync::upload::DenyFlag;
use crate::util::clock::SharedClock;
use crate::util::clockwatch::ClockWatch;
use crate::util::pace::Pacer;

/// Builds [`StreamRecorder`]s. Cheap to clone.
#[derive(Clone)]
pub struct RecorderFactory {
    pub device: String,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    /// Poked after each closed segment so retention can run.
    pub closed: Arc<Notify>,
    /// The shared tick pulled sources are polled on (`None`: each waits on its source).
    pub pacer: Option<Pacer>,
    /// The storage watchdog every recorder reports write failures and stalls to.
    pub health: Arc<StorageHealth>,
    /// The deny flag retention raises while storage is full of segments not uploaded.
    pub deny: DenyFlag,
    /// Where pipe sources list their commands (the daemon kills them on a fast exit).
    pub pipes: PipeGroups,
    /// The watched clock: segments' time quality and boot time, and corrections of the
    /// open segment (`None`: segments carry no clock fields and read as `synced`).
    pub time: Option<Arc<ClockWatch>>,
}

impl RecorderFactory {
    /// The recorder of a pulled stream (camera, pipe, file), stopped by `cancel`.
    pub fn pulled(
        &self,
        app: &str,
        name: &str,
        template: Template,
        cancel: CancellationToken,
    ) -> StreamRecorder {
        self.build(
            app,
            name,
            template,
            cancel,
            self.pacer.clone(),
            self.pipes.clone(),
        )
    }

    /// The recorder of a pushed stream. Its session ends when its source does: on shutdown
    /// the publisher is kicked, the channel hands out what is queued, then ends, and the
    /// segment closes with everything received. Frames arrive through a channel from the
    /// push server, so there is no polling to pace, and a push runs no command.
    pub fn pushed(&self, app: &str, name: &str, template: Template) -> StreamRecorder {
        let pipes = PipeGroups::default();
        self.build(app, name, template, CancellationToken::new(), None, pipes)
    }

    fn build(
        &self,
        app: &str,
        name: &str,
        template: Template,
        cancel: CancellationToken,
        pacer: Option<Pacer>,
        pipes: PipeGroups,
    ) -> StreamRecorder {
        StreamRecorder {
            device: self.device.clone(),
            app: app.to_owned(),
            name: name.to_owned(),
            template,
            store: self.store.clone(),
            clock: self.clock.clone(),
            cancel,
            closed: self.closed.clone(),
            pacer,
            health: self.health.clone(),
            deny: self.deny.clone(),
            pipes,
            time: self.time.clone(),
        }
    }
}

impl PushRecorder for RecorderFactory {
    fn record(
        &self,
        app: &str,
        stream: &str,
        template: Template,
        source: Source,
        status: Arc<StreamStatus>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let rec = self.pushed(app, stream, template);
        Box::pin(rec.record_once_reporting(source, status))
    }
}
