//! What every handler shares.

use crate::pipeline::Pipeline;
use crate::regions::Regions;
use crate::tokens::TokenStore;
use rectify_eventlog::EventLog;
use rectify_projector::ProjectorHandle;
use std::sync::Arc;
use std::time::Duration;

/// The shared state behind the router (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    pub log: Arc<dyn EventLog>,
    pub views: ProjectorHandle,
    pub pipeline: Pipeline,
    pub tokens: TokenStore,
    pub regions: Regions,
    /// The log head when the process started: ready once the views reach it.
    pub ready_at: u64,
    /// Completed sweeps of this process's deadline watcher.
    pub sweeps: Arc<std::sync::atomic::AtomicU64>,
    /// Longest a query waits for `wait_for`.
    pub wait_limit: Duration,
    /// The writer key, the sealer and the Merkle index.
    pub audit: Arc<crate::audit::Audit>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
