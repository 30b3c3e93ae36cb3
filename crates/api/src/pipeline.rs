//! The command pipeline: idempotency, load the aggregate (from a cache of recent states, else the views'
//! state when they include the stream's last commit, else the log), authorize and decide (domain), append
//! with the expected position, and retry once on a lost race.
//!
//! The cache may be stale when other processes write to the same log; the append's expected position
//! verifies it, and any doubt (a conflict, a refusal, a version mismatch) is settled by reloading from the log.
//! The views' state is used like a cached one: a stream's commits are spread over the log, so reading them
//! all costs a page read each in a big log, while the views' row and the log's head entry are two reads (one
//! when the views include a head this process knows: the embedded log's).

use crate::error::ApiError;
use rectify_domain::problem::State;
use rectify_domain::{AggregateId, Command, CommandContext, execute};
use rectify_eventlog::{AppendError, Appended, EventLog};
use rectify_projector::ProjectorHandle;
use std::sync::{Arc, Mutex};

/// Most aggregate states kept in memory; the cache is emptied when full (simple, bounded, and a miss only
/// costs one stream read).
const CACHE_CAPACITY: usize = 100_000;

/// Recent aggregate states with the position of their last commit (foldhash, seeded per map: ids come
/// from clients).
struct Cache(Mutex<foldhash::HashMap<AggregateId, (State, u64)>>);

/// The cache's table at its full size: a table grows by moving every entry while every command waits for
/// the lock (~8 ms at 28,672 states). Its memory is touched only as states come in.
fn empty_cache() -> foldhash::HashMap<AggregateId, (State, u64)> {
    foldhash::HashMap::with_capacity_and_hasher(CACHE_CAPACITY, Default::default())
}

impl Default for Cache {
    fn default() -> Cache {
        Cache(Mutex::new(empty_cache()))
    }
}

impl Cache {
    fn get(&self, id: &AggregateId) -> Option<(State, u64)> {
        self.0.lock().expect("cache lock").get(id).cloned()
    }

    fn put(&self, id: &AggregateId, state: State, position: u64) {
        let mut map = self.0.lock().expect("cache lock");
        let full = (map.len() >= CACHE_CAPACITY).then(|| std::mem::replace(&mut *map, empty_cache()));
        map.insert(id.clone(), (state, position));
        drop(map);
        // Freeing 100,000 states took 70-100 ms (measured in a test build): not under the lock every command
        // takes, nor on the async worker this command runs on.
        if let Some(full) = full {
            rectify_eventlog::free_elsewhere(full);
        }
    }

    fn forget(&self, id: &AggregateId) {
        self.0.lock().expect("cache lock").remove(id);
    }
}

/// Whether `command` is the first of its stream (it is refused on any other).
fn creates_stream(command: &Command) -> bool {
    matches!(command, Command::ReportProblem { .. } | Command::RecordInspection { .. })
}

/// The answer to an accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: AggregateId,
    pub version: u64,
    pub position: u64,
    /// This command id was handled before; this is the first answer and nothing was appended.
    pub duplicate: bool,
}

/// A stream as the pipeline loads it for a command.
enum Loaded {
    /// Its state and the position of its last commit.
    Fresh(State, u64),
    /// It already holds the command: the first answer.
    Done(Accepted),
}

/// Runs commands against the log.
#[derive(Clone)]
pub struct Pipeline {
    log: Arc<dyn EventLog>,
    views: ProjectorHandle,
    cache: Arc<Cache>,
}

impl Pipeline {
    /// A pipeline over `log`; `views` supplies the idempotency index for command ids the log forgot.
    pub fn new(log: Arc<dyn EventLog>, views: ProjectorHandle) -> Pipeline {
        Pipeline { log, views, cache: Arc::default() }
    }

    /// The aggregate's current state and the log position of its last commit (0 if it does not exist), from
    /// the views when they include that commit, else from the log.
    pub async fn load(&self, id: &AggregateId) -> Result<(State, u64), ApiError> {
        if let Some(loaded) = self.state_in_views(id).await? {
            return Ok(loaded);
        }
        let records = self.log.read_stream(id).await?;
        let last = records.last().map_or(0, |r| r.position);
        Ok((State::replay(records.iter().flat_map(|r| &r.commit.events)), last))
    }

    /// The state the views hold for `id` and its position, if that is the position of the stream's last
    /// commit in the log (then the views folded every commit of the stream, this command's too if it is a
    /// retry, which [`Pipeline::previous`] has answered).
    async fn state_in_views(&self, id: &AggregateId) -> Result<Option<(State, u64)>, ApiError> {
        // Views that include a head this process knows without I/O include every stream's last commit (the
        // row is read after, and views only move on): no look-up of the stream's head in a big log.
        let caught_up = self.log.local_head().is_some_and(|head| self.views.applied() >= head);
        let Some(row) = self.views.store().ledger_row(id)? else { return Ok(None) };
        if caught_up {
            return Ok(Some((row.state, row.position)));
        }
        let last = self.log.last_position_of(id).await?;
        Ok((last == Some(row.position)).then_some((row.state, row.position)))
    }

    /// The log's state of `id`, unless the stream already holds `ctx`'s command: a retry that reaches another
    /// process (which neither appended it nor has it in its views yet) gets the first answer, not a refusal
    /// decided on the state the command itself produced.
    async fn load_unless_done(&self, id: &AggregateId, ctx: &CommandContext) -> Result<Loaded, ApiError> {
        let records = self.log.read_stream(id).await?;
        if let Some(done) = records.iter().find(|r| r.commit.command_id() == ctx.command_id) {
            let owner = done.commit.events.first().map(|e| e.actor.id.as_str());
            if owner.is_some_and(|owner| owner != ctx.actor.id) {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "`Idempotency-Key` was already used by another actor",
                ));
            }
            return Ok(Loaded::Done(Accepted {
                id: id.clone(),
                version: done.commit.last_version(),
                position: done.position,
                duplicate: true,
            }));
        }
        let last = records.last().map_or(0, |r| r.position);
        Ok(Loaded::Fresh(State::replay(records.iter().flat_map(|r| &r.commit.events)), last))
    }

    async fn answer(&self, appended: Appended, id: &AggregateId) -> Result<Accepted, ApiError> {
        let id = if appended.duplicate {
            // A retried command may have been sent to another id (a new problem gets a fresh id per try).
            let first = self.log.read_from(appended.position, 1).await?;
            first.first().map_or_else(|| id.clone(), |r| r.commit.stream().clone())
        } else {
            id.clone()
        };
        Ok(Accepted { id, version: appended.version, position: appended.position, duplicate: appended.duplicate })
    }

    /// The first answer to `command_id`, if it was handled before.
    pub async fn previous(&self, command_id: &str) -> Result<Option<Accepted>, ApiError> {
        if let Some(appended) = self.log.find_command(command_id).await? {
            let first = self.log.read_from(appended.position, 1).await?;
            if let Some(record) = first.first() {
                return Ok(Some(Accepted {
                    id: record.commit.stream().clone(),
                    version: appended.version,
                    position: appended.position,
                    duplicate: true,
                }));
            }
        }
        if self.log.remembers_every_command() {
            // Then the views keep no index of command ids of their own (the embedded log).
            return Ok(None);
        }
        Ok(self.views.store().command(command_id)?.map(|(id, version, position)| Accepted {
            id,
            version,
            position,
            duplicate: true,
        }))
    }

    /// Runs `command` on stream `id`. With `if_match`, the aggregate must be at that version (else 409);
    /// without it, a lost race is decided again once on the new state.
    pub async fn run(
        &self,
        id: &AggregateId,
        ctx: &CommandContext,
        command: &Command,
        if_match: Option<u64>,
    ) -> Result<Accepted, ApiError> {
        if let Some(first) = self.previous(&ctx.command_id).await? {
            // A key is its actor's: another actor must not get (or replay) someone else's answer.
            let record = self.log.read_from(first.position, 1).await?;
            let owner = record.first().and_then(|r| r.commit.events.first()).map(|e| e.actor.id.as_str());
            if owner.is_some_and(|owner| owner != ctx.actor.id) {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "`Idempotency-Key` was already used by another actor",
                ));
            }
            return Ok(first);
        }
        let (mut state, mut last, mut fresh) = match self.cache.get(id) {
            Some((state, last)) => (state, last, false),
            // A command that starts a stream is decided on an empty one without reading the log (one round
            // trip less on JetStream): the ids the API makes are new, and the append's expected position 0
            // checks it — a stream that exists is a conflict, which reloads like a stale cache does.
            None if creates_stream(command) => (State::default(), 0, false),
            None => match self.state_in_views(id).await? {
                Some((state, last)) => (state, last, false),
                None => match self.load_unless_done(id, ctx).await? {
                    Loaded::Fresh(state, last) => (state, last, true),
                    Loaded::Done(first) => return Ok(first),
                },
            },
        };
        let mut retried = false;
        loop {
            let outcome = match if_match {
                Some(expected) if expected != state.version => {
                    Err(ApiError::Conflict(format!("{id} is at version {}, not {expected}", state.version)))
                }
                _ => execute(id, &state, ctx, command).map_err(ApiError::from),
            };
            let error = match outcome {
                Ok(commit) => match self.log.append(&commit, last).await {
                    Ok(appended) => {
                        if !appended.duplicate {
                            let next = commit.events.iter().fold(state, rectify_domain::evolve);
                            self.cache.put(id, next, appended.position);
                        }
                        return self.answer(appended, id).await;
                    }
                    Err(AppendError::Conflict { .. }) if fresh && if_match.is_none() && !retried => {
                        retried = true;
                        None
                    }
                    // The log refused or failed the append itself (a full disk, an outage): deciding again
                    // would not help, and after a failed write the log's state is not one to decide on.
                    Err(e @ (AppendError::Failed(_) | AppendError::Disk { .. } | AppendError::Unavailable(_))) => {
                        self.cache.forget(id);
                        return Err(ApiError::from(e));
                    }
                    Err(e) => Some(ApiError::from(e)),
                },
                Err(e) => Some(e),
            };
            match error {
                // Decided on a cached state that may be stale: decide again on the log's.
                Some(_) if !fresh => {}
                Some(e) => {
                    self.cache.forget(id);
                    return Err(e);
                }
                None => {}
            }
            (state, last) = match self.load_unless_done(id, ctx).await? {
                Loaded::Fresh(state, last) => (state, last),
                Loaded::Done(first) => return Ok(first),
            };
            fresh = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::data;
    use rectify_domain::values::DeadlineClass;
    use rectify_eventlog::EmbeddedLog;
    use rectify_projector::{Projector, ViewStore};

    /// The state of `id` as the log alone says.
    async fn replayed(log: &EmbeddedLog, id: &AggregateId) -> (State, u64) {
        let records = log.read_stream(id).await.unwrap();
        let last = records.last().map_or(0, |r| r.position);
        (State::replay(records.iter().flat_map(|r| &r.commit.events)), last)
    }

    #[test]
    fn a_full_state_cache_starts_again_from_the_state_put_last() {
        let county = data::places(&crate::regions::Regions::guizhou())[0].county;
        let id = |n: usize| data::problem_id(county, "c", n as u64);
        let cache = Cache::default();
        for n in 0..CACHE_CAPACITY {
            cache.put(&id(n), State::default(), n as u64);
        }
        assert_eq!(cache.get(&id(CACHE_CAPACITY - 1)).map(|(_, p)| p), Some(CACHE_CAPACITY as u64 - 1), "not full yet");
        cache.put(&id(CACHE_CAPACITY), State::default(), 7);
        assert_eq!(cache.get(&id(CACHE_CAPACITY)).map(|(_, p)| p), Some(7));
        assert!(cache.get(&id(0)).is_none() && cache.get(&id(CACHE_CAPACITY - 1)).is_none(), "the full table went");
        assert_eq!(cache.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_load_uses_the_views_only_when_they_hold_the_streams_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        let store = ViewStore::open(&dir.path().join("views")).unwrap();
        let (projector, views) = Projector::new(Arc::new(log.clone()), store.clone()).unwrap();
        let writer = Pipeline::new(Arc::new(log.clone()), views.clone());
        let places = data::places(&crate::regions::Regions::guizhou());
        let (id, ctx, report) = data::new_problem(&places, "v", 1);
        writer.run(&id, &ctx, &report, None).await.unwrap();
        let next = |n: u32| CommandContext { command_id: format!("v-{n}"), ..ctx.clone() };
        let progress = || Command::ReportProgress { note: "dredging".into(), evidence: vec![] };
        let due = ctx.occurred_at + chrono::Duration::days(30);
        let deadline = Command::SetDeadline { class: DeadlineClass::TimeLimited, due };
        writer.run(&id, &next(2), &deadline, None).await.unwrap();
        projector.catch_up().await.unwrap();

        // Another process (a pipeline with nothing cached): the views hold the last commit, so they answer —
        // the same state the log gives, and not a read of the stream (a changed row would show).
        let fresh = Pipeline::new(Arc::new(log.clone()), views.clone());
        assert_eq!(fresh.load(&id).await.unwrap(), replayed(&log, &id).await);
        let (mut row, position) = (store.ledger_row(&id).unwrap().unwrap(), log.head().await.unwrap());
        row.state.version += 100;
        let mut changes = rectify_projector::Changes::default();
        changes.ledger.insert(id.clone(), row);
        store.commit(&changes, position).unwrap();
        assert_eq!(fresh.load(&id).await.unwrap().0.version, 102, "the views' state was used");

        // Another stream moves the log on: the views are behind its head, but this stream's head entry is at
        // the row's position, so the row is still used.
        let (other, other_ctx, other_report) = data::new_problem(&places, "w", 2);
        writer.run(&other, &other_ctx, &other_report, None).await.unwrap();
        assert!(views.applied() < log.head().await.unwrap());
        assert_eq!(fresh.load(&id).await.unwrap().0.version, 102, "the views' state was used");

        // The views fall behind the log: the log's state is loaded, and a command is decided on it.
        writer.run(&id, &next(3), &progress(), None).await.unwrap();
        assert_eq!(fresh.load(&id).await.unwrap(), replayed(&log, &id).await);
        let accepted = Pipeline::new(Arc::new(log.clone()), views).run(&id, &next(4), &progress(), None).await.unwrap();
        assert_eq!((accepted.version, accepted.duplicate), (4, false));
    }
}
