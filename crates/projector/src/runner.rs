//! The projector loop: tail the log from the checkpoint, fold each ready batch, write it with its checkpoint,
//! then announce what changed (for read-your-writes waits and live feeds).

use crate::store::{StoreError, ViewStore};
use crate::views::Changes;
use futures::StreamExt;
use rectify_eventlog::{EventLog, ReadError, Record};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Most commits folded into one sled batch.
const BATCH: usize = 2048;

/// What one applied batch changed: the new checkpoint, the ledger rows and the counter rows touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub position: u64,
    pub problems: Vec<String>,
    pub counters: Vec<String>,
}

/// A projector failure.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] ReadError),
}

/// Folds the log into one [`ViewStore`] (which a rebuild may replace, see [`Projector::rebuild_beside`]).
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<RwLock<ViewStore>>,
    applied: watch::Sender<u64>,
    changes: broadcast::Sender<Arc<Applied>>,
}

/// What readers hold: the views, the applied position, and the change feed.
#[derive(Clone)]
pub struct ProjectorHandle {
    store: Arc<RwLock<ViewStore>>,
    applied: watch::Receiver<u64>,
    changes: broadcast::Sender<Arc<Applied>>,
}

impl ProjectorHandle {
    /// The views in use (a cheap handle; after a rebuild switches, new calls get the new views).
    pub fn store(&self) -> ViewStore {
        self.store.read().expect("store lock").clone()
    }

    /// The last log position the views include.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the views include `position`; false if `timeout` passed first.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await.is_ok_and(|r| r.is_ok())
    }

    /// A receiver of every batch applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Applied>> {
        self.changes.subscribe()
    }
}

impl Projector {
    /// A projector over `store`, starting from its checkpoint.
    pub fn new(log: Arc<dyn EventLog>, store: ViewStore) -> Result<(Projector, ProjectorHandle), StoreError> {
        let (applied, applied_rx) = watch::channel(store.checkpoint()?);
        let (changes, _) = broadcast::channel(1024);
        let store = Arc::new(RwLock::new(store));
        let handle = ProjectorHandle { store: store.clone(), applied: applied_rx, changes: changes.clone() };
        Ok((Projector { log, store, applied, changes }, handle))
    }

    fn store(&self) -> ViewStore {
        self.store.read().expect("store lock").clone()
    }

    /// Builds `next` from the log up to its head while readers keep using the current views, then switches
    /// readers (and this projector) to `next`. `progress` gets (position, head) after each batch.
    pub async fn rebuild_beside(
        &self,
        next: ViewStore,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, ProjectorError> {
        let (builder, _) = Projector::new(self.log.clone(), next.clone())?;
        let head = self.log.head().await?;
        builder.catch_up_to(head, |at| progress(at, head)).await?;
        let position = next.checkpoint()?;
        *self.store.write().expect("store lock") = next;
        self.applied.send_replace(position);
        let _ = self.changes.send(Arc::new(Applied { position, problems: vec![], counters: vec!["*".into()] }));
        Ok(position)
    }

    /// Folds `records` (in log order) into the views in one batch with the checkpoint.
    fn apply(&self, records: &[Record]) -> Result<Option<Arc<Applied>>, StoreError> {
        let store = self.store();
        let checkpoint = store.checkpoint()?;
        let mut changes = Changes::default();
        let mut last = checkpoint;
        for record in records.iter().filter(|r| r.position > checkpoint) {
            for env in &record.commit.events {
                changes.apply(&store, record.position, env)?;
            }
            last = record.position;
        }
        if last == checkpoint {
            return Ok(None);
        }
        store.commit(&changes, last)?;
        self.applied.send_replace(last);
        let applied = Applied {
            position: last,
            problems: changes.ledger.keys().map(|id| id.to_string()).collect(),
            counters: changes.counters.keys().map(|k| k.encode()).collect(),
        };
        let applied = Arc::new(applied);
        // Nobody listening is fine.
        let _ = self.changes.send(applied.clone());
        Ok(Some(applied))
    }

    /// Applies everything up to the log's current head, then returns it.
    pub async fn catch_up(&self) -> Result<u64, ProjectorError> {
        let head = self.log.head().await?;
        self.catch_up_to(head, |_| {}).await
    }

    /// Applies everything up to position `until` (or the head, if that is earlier), calling `progress` with
    /// the checkpoint after each batch; returns the final checkpoint.
    pub async fn catch_up_to(&self, until: u64, mut progress: impl FnMut(u64)) -> Result<u64, ProjectorError> {
        loop {
            let from = self.store().checkpoint()? + 1;
            if from > until {
                return Ok(from - 1);
            }
            let max = usize::try_from(until - from + 1).unwrap_or(usize::MAX).min(BATCH);
            let records = self.log.read_from(from, max).await?;
            if records.is_empty() {
                return Ok(from - 1);
            }
            self.apply(&records)?;
            progress(self.store().checkpoint()?);
        }
    }

    /// Follows the log until `shutdown` resolves, resuming after log errors with a backoff.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let from = match self.store().checkpoint() {
                Ok(c) => c + 1,
                Err(error) => {
                    tracing::error!(%error, "projector cannot read its checkpoint; stopping");
                    return;
                }
            };
            let mut tail = self.log.tail(from).ready_chunks(BATCH);
            loop {
                let batch = tokio::select! {
                    _ = &mut shutdown => {
                        let _ = self.store().flush().await;
                        return;
                    }
                    batch = tail.next() => batch,
                };
                let Some(items) = batch else { break };
                let mut records = Vec::with_capacity(items.len());
                let mut failure = None;
                for item in items {
                    match item {
                        Ok(r) => records.push(r),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                match self.apply(&records) {
                    Ok(Some(applied)) => {
                        let notice = serde_json::to_vec(&*applied).expect("changes serialize");
                        self.log.announce_views_changed(notice).await;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, "projector cannot write its views; stopping");
                        return;
                    }
                }
                if let Some(error) = failure {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "projector lost the log; resuming");
                    break;
                }
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
