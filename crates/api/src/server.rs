//! `run(listener, settings, shutdown)`: the whole service in one process — log, projector, deadline watcher
//! and HTTP API — stopped gracefully when `shutdown` resolves.

use crate::pipeline::Pipeline;
use crate::regions::Regions;
use crate::state::{AppState, Inner};
use crate::tokens::TokenStore;
use crate::watcher::{Clock, Watcher};
use anyhow::Context;
use rectify_eventlog::EventLog;
use rectify_projector::{Generations, Projector};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Which event log the service runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded log under `<data dir>/log` (one node, no server).
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
    /// Rebuild the views at start (beside the current ones, which keep serving until the switch).
    pub rebuild_views: bool,
    /// Rate limit per token and CORS origins (none of either by default).
    pub edge: crate::edge::EdgeSettings,
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
            rebuild_views: false,
            edge: Default::default(),
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

/// Builds generation `current + 1` beside the views in use, switches to it and removes the old one.
async fn rebuild_views(projector: &Projector, generations: &Generations, current: u64) -> anyhow::Result<()> {
    let next = generations.create(current + 1)?;
    tracing::info!(generation = current + 1, "rebuilding the views from the log beside the current ones");
    let mut last_report = std::time::Instant::now();
    let position = projector
        .rebuild_beside(next, |at, head| {
            if last_report.elapsed() >= Duration::from_secs(2) {
                tracing::info!(position = at, head, "rebuilding the views");
                last_report = std::time::Instant::now();
            }
        })
        .await?;
    generations.switch(current + 1)?;
    generations.remove_others(current + 1)?;
    tracing::info!(position, generation = current + 1, "views rebuilt and switched");
    Ok(())
}

/// The running parts of the service behind the router: the state handlers share, and the projector and
/// deadline watcher tasks.
pub struct Service {
    pub state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sealer_task: tokio::task::JoinHandle<()>,
    edge: Arc<crate::edge::Edge>,
}

impl Service {
    /// Opens the log and the views and starts the projector and the deadline watcher.
    pub async fn start(settings: &Settings) -> anyhow::Result<Service> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating {}", settings.data_dir.display()))?;
        let log = open_log(settings).await?;
        // Appends go through the sealer; seals what the last run left unsealed before anything else.
        let (log, audit, sealer_task) = crate::audit::start(settings, log).await?;
        let generations = Generations::new(settings.data_dir.join("views"));
        let (store, generation) = generations
            .open_current()
            .with_context(|| format!("opening the views in {}", generations.root().display()))?;
        let stale = settings.rebuild_views || !store.schema_is_current()?;
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
            audit: audit.clone(),
        }));
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let written = views.clone();
        let watcher = Watcher { pipeline, views, clock: settings.clock.clone(), root, sweeps };
        let follow = stopped(stop_rx.clone());
        let projector_task = async move {
            if stale {
                // Readers keep using the old views while the new ones are built beside them.
                if let Err(error) = rebuild_views(&projector, &generations, generation).await {
                    tracing::error!(error = format!("{error:#}"), "rebuilding the views failed; serving the old ones");
                }
            }
            projector.run(follow).await;
            // Nothing writes the views any more: once they are on disk, a power loss cannot tear them.
            let closed = async { anyhow::Ok((written.store().flush().await?, generations.close()?)) };
            if let Err(error) = closed.await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "closing the views failed; they are built again at start"
                );
            }
        };
        let tasks = vec![
            tokio::spawn(projector_task),
            tokio::spawn(audit.follow(stopped(stop_rx.clone()))),
            tokio::spawn(watcher.run(settings.overdue_interval, stopped(stop_rx))),
        ];
        Ok(Service { state, stop, tasks, sealer_task, edge: crate::edge::Edge::new(settings.edge.clone()) })
    }

    /// The router over this service's state, behind the edge (rate limit, CORS).
    pub fn router(&self) -> axum::Router {
        let edge = axum::middleware::from_fn_with_state((self.state.clone(), self.edge.clone()), crate::edge::edge);
        crate::router(self.state.clone()).layer(edge)
    }

    /// Stops the background tasks and waits for them (the projector flushes its views).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // After the watcher's last append: seal everything still unsealed.
        self.state.audit.finish().await;
        let _ = self.sealer_task.await;
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
