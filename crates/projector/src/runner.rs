//! The projector loop: tail the log from the checkpoint, fold each ready batch, write it with its checkpoint,
//! then announce what changed (for read-your-writes waits and live feeds).

use crate::store::{StoreError, ViewStore};
use crate::views::{Changes, CounterKey, Counters, Days, LedgerRow, RowMap, ViewRead};
use futures::StreamExt;
use rectify_domain::AggregateId;
use rectify_eventlog::{EventLog, ReadError, Record};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Most commits folded into one sled batch while following the log.
const BATCH: usize = 2048;
/// Most commits folded into one sled batch while catching up (a rebuild): a problem's events are usually
/// close together in the log, so a bigger batch writes each touched row once for several of its events, and
/// the counter rows, which nearly every batch touches, are written once per batch. Bigger still (131,072)
/// wrote a quarter of the counter rows but took longer: more memory touched (system time doubled) and a
/// longer last write that nothing overlaps.
const CATCH_UP_BATCH: usize = 32_768;
/// Reads (of decoded records) a catch-up batch is folded from: reading 2,048 records at a time instead of a
/// whole batch keeps the records in memory small (a third less system time in a rebuild of 1M events).
const READS_PER_BATCH: usize = 16;
/// Ledger rows kept in memory between batches (the counter rows, far fewer, are all kept).
const LEDGER_CACHE: usize = 16_384;

/// The rows the last batches wrote, so that the next batch need not read (and decode) them from sled.
/// Only the projector writes its store, so what it wrote is what the store holds.
struct Cache {
    /// Ledger rows in two generations: when `ledger` is full it becomes `older` (and the older one is dropped),
    /// so the rows just written stay at hand, however the batches fall.
    ledger: RowMap<AggregateId, LedgerRow>,
    older: RowMap<AggregateId, LedgerRow>,
    counters: RowMap<CounterKey, Counters>,
    days: RowMap<CounterKey, Days>,
    /// The cache holds every row of the store (it started empty and nothing was dropped since): a row
    /// that is not here is not in the store either, so a fresh rebuild never reads sled. Counter rows and
    /// histograms are never dropped.
    complete_ledger: bool,
    complete_counters: bool,
}

impl Cache {
    /// A cache over a store that holds `checkpoint`.
    fn over(checkpoint: u64) -> Cache {
        let empty = checkpoint == 0;
        Cache {
            ledger: RowMap::default(),
            older: RowMap::default(),
            counters: RowMap::default(),
            days: RowMap::default(),
            complete_ledger: empty,
            complete_counters: empty,
        }
    }
}

impl Cache {
    /// Takes in what a committed batch wrote.
    /// Every row of the batch is kept (a catch-up folds the next batch while this one is being written, and
    /// reads what this one wrote from here); the older generation is dropped when the newer one is full.
    fn absorb(&mut self, changes: &Changes, capacity: usize) {
        if self.ledger.len() + changes.ledger.len() > capacity / 2 {
            self.complete_ledger &= self.older.is_empty();
            // At its full size from the start: growing moves every row, in the batch that makes it grow.
            let fresh = RowMap::with_capacity_and_hasher(capacity / 2, Default::default());
            let oldest = std::mem::replace(&mut self.older, std::mem::replace(&mut self.ledger, fresh));
            // 8,192 rows took ~4 ms to free (traced in the live projector).
            rectify_eventlog::free_elsewhere(oldest);
        }
        for (id, row) in &changes.ledger {
            self.ledger.insert(id.clone(), row.clone());
        }
        for (key, counters) in &changes.counters {
            self.counters.insert(key.clone(), *counters);
        }
        for (key, days) in &changes.days {
            self.days.insert(key.clone(), days.clone());
        }
    }
}

/// The store as seen through the cache.
struct Cached<'a> {
    store: &'a ViewStore,
    cache: &'a Cache,
}

impl ViewRead for Cached<'_> {
    type Error = StoreError;

    fn ledger(&self, id: &AggregateId) -> Result<Option<LedgerRow>, StoreError> {
        match self.cache.ledger.get(id).or_else(|| self.cache.older.get(id)) {
            Some(row) => Ok(Some(row.clone())),
            None if self.cache.complete_ledger => Ok(None),
            None => self.store.ledger_row(id),
        }
    }

    fn counters(&self, key: &CounterKey) -> Result<Counters, StoreError> {
        match self.cache.counters.get(key) {
            Some(c) => Ok(*c),
            None if self.cache.complete_counters => Ok(Counters::default()),
            None => self.store.counter(key),
        }
    }

    fn days(&self, key: &CounterKey) -> Result<Days, StoreError> {
        match self.cache.days.get(key) {
            Some(d) => Ok(d.clone()),
            None if self.cache.complete_counters => Ok(Days::new()),
            None => self.store.days(key),
        }
    }
}

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
    /// Whether the views keep the command index (only when the log has none of its own).
    index_commands: bool,
    /// Commits per batch while catching up, and ledger rows kept between batches.
    catch_up_batch: usize,
    ledger_cache: usize,
    store: Arc<RwLock<ViewStore>>,
    /// Rows of `store` written by the last batches.
    cache: Mutex<Cache>,
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
        let cache = Mutex::new(Cache::over(store.read().expect("store lock").checkpoint()?));
        let (catch_up_batch, ledger_cache) = (CATCH_UP_BATCH, LEDGER_CACHE);
        let index_commands = !log.remembers_every_command();
        Ok((Projector { log, index_commands, catch_up_batch, ledger_cache, store, cache, applied, changes }, handle))
    }

    fn store(&self) -> ViewStore {
        self.store.read().expect("store lock").clone()
    }

    /// Other batch and cache sizes than the defaults (32,768 and 16,384): small ones make tests cross batch
    /// boundaries and cache evictions with short logs.
    pub fn with_sizes(mut self, catch_up_batch: usize, ledger_cache: usize) -> Projector {
        self.catch_up_batch = catch_up_batch.max(1);
        self.ledger_cache = ledger_cache;
        self
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
        *self.cache.lock().expect("cache lock") = Cache::over(position);
        *self.store.write().expect("store lock") = next;
        self.applied.send_replace(position);
        let _ = self.changes.send(Arc::new(Applied { position, problems: vec![], counters: vec!["*".into()] }));
        Ok(position)
    }

    /// Changes with nothing folded yet.
    fn changes(&self) -> Changes {
        // A row per command is most of what a batch would write: only when the log does not answer retries.
        Changes { index_commands: self.index_commands, ..Changes::default() }
    }

    /// Folds the records after `checkpoint` into `changes`, over the store seen through the cache; returns
    /// the last position folded (`checkpoint` if none was after it).
    fn fold(
        &self,
        changes: &mut Changes,
        store: &ViewStore,
        cache: &Cache,
        checkpoint: u64,
        records: &[Record],
    ) -> Result<u64, StoreError> {
        let mut last = checkpoint;
        let base = Cached { store, cache };
        for record in records.iter().filter(|r| r.position > checkpoint) {
            for env in &record.commit.events {
                changes.apply(&base, record.position, env)?;
            }
            last = record.position;
        }
        Ok(last)
    }

    /// Tells readers that the views include `position`.
    fn announce(&self, applied: Applied) -> Arc<Applied> {
        self.applied.send_replace(applied.position);
        let applied = Arc::new(applied);
        // Nobody listening is fine.
        let _ = self.changes.send(applied.clone());
        applied
    }

    /// Folds `records` (in log order) into the views in one batch with the checkpoint.
    fn apply(&self, records: &[Record]) -> Result<Option<Arc<Applied>>, StoreError> {
        let store = self.store();
        let checkpoint = store.checkpoint()?;
        let mut cache = self.cache.lock().expect("cache lock");
        let mut changes = self.changes();
        let last = self.fold(&mut changes, &store, &cache, checkpoint, records)?;
        if last == checkpoint {
            return Ok(None);
        }
        if let Err(e) = store.commit(&changes, last) {
            // Whether any of it reached the store is unknown: read everything from the store again.
            *cache = Cache::over(u64::MAX);
            return Err(e);
        }
        cache.absorb(&changes, self.ledger_cache);
        drop(cache);
        let sorted = |mut keys: Vec<String>| {
            keys.sort_unstable();
            keys
        };
        Ok(Some(self.announce(Applied {
            position: last,
            problems: sorted(changes.ledger.keys().map(|id| id.to_string()).collect()),
            counters: sorted(changes.counters.keys().map(|k| k.encode()).collect()),
        })))
    }

    /// Applies everything up to the log's current head, then returns it.
    pub async fn catch_up(&self) -> Result<u64, ProjectorError> {
        let head = self.log.head().await?;
        self.catch_up_to(head, |_| {}).await
    }

    /// Applies everything up to position `until` (or the head, if that is earlier), calling `progress` with
    /// the checkpoint after each batch; returns the final checkpoint.
    pub async fn catch_up_to(&self, until: u64, mut progress: impl FnMut(u64)) -> Result<u64, ProjectorError> {
        let from = self.store().checkpoint()? + 1;
        if from > until {
            return Ok(from - 1);
        }
        // A reader task reads (and decodes) the next records while these are folded and written.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Record>, ReadError>>(2);
        let (log, batch) = (self.log.clone(), (self.catch_up_batch / READS_PER_BATCH).max(1));
        let reader = tokio::spawn(async move {
            let mut from = from;
            while from <= until {
                let max = usize::try_from(until - from + 1).unwrap_or(usize::MAX).min(batch);
                let records = log.read_from(from, max).await;
                let next = match &records {
                    Ok(r) if r.is_empty() => None,
                    Ok(r) => r.last().map(|r| r.position + 1),
                    Err(_) => None,
                };
                let stop = next.is_none();
                if tx.send(records).await.is_err() || stop {
                    return;
                }
                from = next.expect("checked above");
            }
        });
        // The records are folded into one batch of changes until it holds `catch_up_batch` commits; each
        // batch is written (on a blocking thread) while the next one is folded: the fold reads what the
        // batch in flight wrote from the cache, which holds all of it.
        let mut writing: Option<tokio::task::JoinHandle<Result<u64, StoreError>>> = None;
        let outcome = async {
            let store = self.store();
            let (mut checkpoint, mut written) = (from - 1, from - 1);
            let mut changes = self.changes();
            loop {
                let records = match rx.recv().await {
                    Some(records) => records?,
                    None => Vec::new(),
                };
                if !records.is_empty() {
                    let cache = self.cache.lock().expect("cache lock");
                    checkpoint = self.fold(&mut changes, &store, &cache, checkpoint, &records)?;
                }
                let full = checkpoint - written >= self.catch_up_batch as u64;
                if checkpoint > written && (full || records.is_empty()) {
                    let batch = std::mem::replace(&mut changes, self.changes());
                    self.cache.lock().expect("cache lock").absorb(&batch, self.ledger_cache);
                    if let Some(done) = writing.take() {
                        let at = done.await.expect("a view write panicked")?;
                        // A catch-up batch changes most of the views: listing every row would only cost time.
                        self.announce(Applied { position: at, problems: vec![], counters: vec!["*".into()] });
                        progress(at);
                    }
                    let (target, last) = (store.clone(), checkpoint);
                    writing = Some(tokio::task::spawn_blocking(move || target.commit(&batch, last).map(|()| last)));
                    written = checkpoint;
                }
                if records.is_empty() {
                    break;
                }
            }
            if let Some(done) = writing.take() {
                let at = done.await.expect("a view write panicked")?;
                self.announce(Applied { position: at, problems: vec![], counters: vec!["*".into()] });
                progress(at);
            }
            Ok(self.store().checkpoint()?)
        }
        .await;
        if let Some(done) = writing {
            // Failed while a write was in flight: let it finish before anyone reads the store again.
            let _ = done.await;
        }
        if outcome.is_err() {
            *self.cache.lock().expect("cache lock") = Cache::over(u64::MAX);
        }
        reader.abort();
        outcome
    }

    /// Follows the log until `shutdown` resolves, resuming after log errors with a backoff.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let from = match self.store().checkpoint() {
            Ok(c) => c + 1,
            Err(error) => {
                tracing::error!(%error, "projector cannot read its checkpoint; stopping");
                return;
            }
        };
        let mut batches = rectify_eventlog::follow(self.log.clone(), from, BATCH, "projector");
        loop {
            let records = tokio::select! {
                _ = &mut shutdown => {
                    let _ = self.store().flush().await;
                    return;
                }
                Some(records) = batches.next() => records,
            };
            match rectify_eventlog::storage_work(records.len(), || self.apply(&records)) {
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
        }
    }
}
