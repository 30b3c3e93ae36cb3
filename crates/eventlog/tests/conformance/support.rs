//! What the cases share: a backend under test, real commits built by the domain, and a time bound.
//!
//! Every id is fresh (a ULID suffix), so cases may share one log with each other and with earlier runs.

use chrono::{DateTime, Utc};
use rectify_domain::values::{DeadlineClass, Sector, Severity, Source};
use rectify_domain::{
    Actor, AggregateId, AggregateKind, Command, CommandContext, Commit, Event, RegionCode, Role, State, evolve, execute,
};
use rectify_eventlog::{Appended, EventLog, Record};
use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The most any single await of a case may take before the case fails. A bound, never a sleep.
pub const WAIT: Duration = Duration::from_secs(10);

/// A log to test, and whatever must outlive it (a temporary directory, a server process).
pub struct Backend {
    pub log: Arc<dyn EventLog>,
    /// Dropped after `log` (fields drop in declaration order).
    _keep: Box<dyn Any + Send>,
}

impl Backend {
    /// Wraps `log`; `keep` is dropped when the case ends.
    pub fn new(log: impl EventLog, keep: impl Any + Send) -> Backend {
        Backend { log: Arc::new(log), _keep: Box::new(keep) }
    }
}

/// Awaits `f`, failing the case with `what` if it takes longer than [`WAIT`].
#[track_caller]
pub fn within<F: Future>(what: &'static str, f: F) -> impl Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(WAIT, f).await {
            Ok(out) => out,
            Err(_) => panic!("{what}: no answer within {WAIT:?} (at {caller})"),
        }
    }
}

/// A fresh id fragment: unique across cases, runs and machines.
pub fn unique() -> String {
    ulid::Ulid::new().to_string()
}

fn county() -> RegionCode {
    RegionCode::parse("520102").expect("a county code")
}

fn instant() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T08:00:00Z").expect("an RFC 3339 instant").to_utc()
}

/// A command context for the county bureau of 520102 under a fresh command id.
pub fn context() -> CommandContext {
    let command_id = format!("cmd-{}", unique());
    CommandContext {
        actor: Actor { id: "bureau-520102".into(), role: Role::CountyBureau, region: county(), grid: None },
        occurred_at: instant(),
        recorded_at: instant(),
        correlation_id: command_id.clone(),
        command_id,
    }
}

/// One problem's stream as a client sees it: its state and the position of its last commit.
#[derive(Debug, Clone)]
pub struct Problem {
    pub id: AggregateId,
    pub state: State,
    /// The `expected` of the next append (0 before the first).
    pub position: u64,
}

impl Problem {
    /// A problem that is not on the log yet.
    pub fn new() -> Problem {
        let id = AggregateId::new(AggregateKind::Problem, county(), &format!("t{}", unique())).expect("a valid id");
        Problem { id, state: State::default(), position: 0 }
    }

    /// Runs `command` through the domain against the current state.
    pub fn execute(&self, command: Command) -> Commit {
        execute(&self.id, &self.state, &context(), &command).expect("the domain accepts the test command")
    }

    /// The report that opens the stream (valid only at version 0).
    pub fn report(&self) -> Commit {
        self.execute(Command::ReportProblem {
            region: county(),
            grid: "520102-G01".into(),
            sector: Sector::Baijiu,
            source: Source { name: "某酒厂".into(), credit_code: String::new() },
            severity: Severity::Major,
            description: "废水直排".into(),
            inspection: None,
        })
    }

    /// A progress report: always valid once reported, under a fresh command id each time.
    pub fn progress(&self) -> Commit {
        self.execute(Command::ReportProgress { note: format!("step {}", self.state.version), evidence: Vec::new() })
    }

    /// The natural next commit: the report, then a deadline, then progress reports.
    pub fn next(&self) -> Commit {
        match self.state.version {
            0 => self.report(),
            1 => self.execute(Command::SetDeadline {
                class: DeadlineClass::TimeLimited,
                due: instant() + chrono::Days::new(30),
            }),
            _ => self.progress(),
        }
    }

    /// One commit holding `n` events (the log must keep them together).
    pub fn several(&self, n: usize) -> Commit {
        let events =
            (0..n).map(|i| Event::ProgressReported { note: format!("part {i}"), evidence: Vec::new() }).collect();
        Commit::seal(&self.id, self.state.version, &self.state.last_hash, &context(), events)
    }

    /// A report whose description holds `bytes` bytes of text: beyond what the domain accepts from a client,
    /// so it is sealed directly; the log must carry it regardless.
    pub fn large_report(&self, bytes: usize) -> Commit {
        let unit = "整改问题描述 text ";
        let mut description = unit.repeat(bytes / unit.len() + 1);
        let mut end = bytes;
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        description.truncate(end);
        let event = Event::ProblemReported {
            region: county(),
            grid: "520102-G01".into(),
            sector: Sector::CountySewage,
            source: Source { name: "县污水处理厂".into(), credit_code: String::new() },
            severity: Severity::Serious,
            description,
            inspection: None,
        };
        Commit::seal(&self.id, 0, &self.state.last_hash, &context(), vec![event])
    }

    /// Folds an appended commit into this client's view.
    pub fn applied(&mut self, commit: &Commit, appended: Appended) {
        assert!(!appended.duplicate, "applied a duplicate answer");
        assert_eq!(appended.version, commit.last_version(), "the answer's version is the commit's last version");
        self.state = commit.events.iter().fold(std::mem::take(&mut self.state), evolve);
        self.position = appended.position;
    }

    /// Appends the next commit at the current position, which must succeed; returns what was stored.
    pub async fn append_next(&mut self, log: &dyn EventLog) -> Record {
        let commit = self.next();
        self.append(log, commit).await
    }

    /// Appends `commit` at the current position, which must succeed; returns what was stored.
    pub async fn append(&mut self, log: &dyn EventLog, commit: Commit) -> Record {
        let appended = within("append", log.append(&commit, self.position))
            .await
            .unwrap_or_else(|e| panic!("append to {} at {}: {e}", self.id, self.position));
        assert!(appended.position > self.position, "a stream's positions grow");
        self.applied(&commit, appended);
        Record { position: appended.position, commit }
    }
}

/// The records of `streams`, in the order given.
pub fn only(records: Vec<Record>, streams: &HashSet<AggregateId>) -> Vec<Record> {
    records.into_iter().filter(|r| streams.contains(r.commit.stream())).collect()
}

/// Asserts that `records` have consecutive positions (the log has no gaps), starting at `first` if given.
#[track_caller]
pub fn assert_consecutive(records: &[Record], first: Option<u64>) {
    if let (Some(first), Some(r)) = (first, records.first()) {
        assert_eq!(r.position, first, "the first record is at the requested position");
    }
    for pair in records.windows(2) {
        assert_eq!(pair[1].position, pair[0].position + 1, "positions are consecutive");
    }
}

/// Asserts that a stream's records form one unbroken hash chain with versions 1, 2, …
#[track_caller]
pub fn assert_chain(records: &[Record]) {
    let mut prev = rectify_domain::GENESIS_HASH.to_owned();
    let mut version = 0;
    for r in records {
        r.commit.verify_chain(&prev).unwrap_or_else(|e| panic!("broken chain at {e}"));
        assert_eq!(r.commit.events[0].version, version + 1, "versions continue");
        version = r.commit.last_version();
        prev = r.commit.last_hash().to_owned();
    }
}
