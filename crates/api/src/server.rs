//! `run(listener, settings, shutdown)`: the whole service in one process — log, projector, deadline watcher
//! and HTTP API — stopped gracefully when `shutdown` resolves.

use crate::pipeline::Pipeline;
use crate::regions::Regions;
use crate::state::{AppState, Inner};
use crate::tokens::TokenStore;
use crate::watcher::{Clock, Watcher};
use anyhow::Context;
use rectify_eventlog::EventLog;
use rectify_projector::{Projector, ViewStore};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Which event log the service runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded sled log under `<data dir>/log` (one node, no server).
    Embedded,
    /// A NATS JetStream server or cluster; `replicas` > 1 needs a cluster of nats-server ≥ 2.9.21.
    Nats { url: String, replicas: usize },
}

/// Everything `run` needs to know.
#[derive(Clone)]
pub struct Settings {
    /// Holds the embedded log, the views and the token store.
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// Longest a query waits for `wait_for`.
    pub wait_limit: Duration,
    /// How often the deadline watcher sweeps.
    pub overdue_interval: Duration,
    pub clock: Clock,
}

impl Settings {
    /// Defaults for a data dir on the embedded log.
    pub fn new(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            backend: Backend::Embedded,
            wait_limit: Duration::from_secs(10),
            overdue_interval: Duration::from_secs(60),
            clock: crate::watcher::system_clock(),
        }
    }
}

/// Opens the configured event log.
pub async fn open_log(settings: &Settings) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match &settings.backend {
        Backend::Embedded => {
            let dir = settings.data_dir.join("log");
            Arc::new(
                rectify_eventlog::EmbeddedLog::open(&dir)
                    .with_context(|| format!("opening the event log in {}", dir.display()))?,
            )
        }
        Backend::Nats { url, replicas } => {
            let config =
                rectify_eventlog::JetStreamConfig { url: url.clone(), replicas: *replicas, ..Default::default() };
            Arc::new(
                rectify_eventlog::JetStreamLog::connect(config)
                    .await
                    .with_context(|| format!("connecting to NATS JetStream at {url}"))?,
            )
        }
    })
}

/// The running parts of the service behind the router: the state handlers share, and the projector and
/// deadline watcher tasks.
pub struct Service {
    pub state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Opens the log and the views and starts the projector and the deadline watcher.
    pub async fn start(settings: &Settings) -> anyhow::Result<Service> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating {}", settings.data_dir.display()))?;
        let log = open_log(settings).await?;
        let views_dir = settings.data_dir.join("views");
        let store =
            ViewStore::open(&views_dir).with_context(|| format!("opening the views in {}", views_dir.display()))?;
        let (projector, views) = Projector::new(log.clone(), store)?;
        let ready_at = log.head().await.unwrap_or(0);
        let pipeline = Pipeline::new(log.clone(), views.clone());
        let regions = Regions::guizhou();
        let root = regions.root;
        let sweeps = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = AppState(Arc::new(Inner {
            log,
            views: views.clone(),
            pipeline: pipeline.clone(),
            tokens: TokenStore::open(&settings.data_dir),
            regions,
            ready_at,
            sweeps: sweeps.clone(),
            wait_limit: settings.wait_limit,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let watcher = Watcher { pipeline, views, clock: settings.clock.clone(), root, sweeps };
        let tasks = vec![
            tokio::spawn(projector.run(stopped(stop_rx.clone()))),
            tokio::spawn(watcher.run(settings.overdue_interval, stopped(stop_rx))),
        ];
        Ok(Service { state, stop, tasks })
    }

    /// The router over this service's state.
    pub fn router(&self) -> axum::Router {
        crate::router(self.state.clone())
    }

    /// Stops the background tasks and waits for them (the projector flushes its views).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Runs the service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Service::start(&settings).await?;
    let served = axum::serve(listener, service.router()).with_graceful_shutdown(shutdown).await;
    service.stop().await;
    served.context("serving HTTP")
}
