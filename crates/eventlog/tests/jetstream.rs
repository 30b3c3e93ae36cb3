//! The JetStream backend against a real `nats-server` (one per test, from the `rectify-tests` harness):
//! what only this backend promises (subjects, headers, stream checks, outages). The backend-independent
//! contract is in `conformance.rs`.

use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rectify_domain::audit::AuditRecord;
use rectify_domain::values::{Sector, Severity, Source};
use rectify_domain::{
    Actor, AggregateId, AggregateKind, Command, CommandContext, Commit, RegionCode, Role, State, execute,
};
use rectify_eventlog::{AppendError, Appended, DiskRefusal, EventLog, JetStreamConfig, JetStreamError, JetStreamLog};
use rectify_tests::NatsServer;
use std::future::{Future, IntoFuture};
use std::time::Duration;

/// The most any single await may take before the test fails. A bound, never a sleep.
const WAIT: Duration = Duration::from_secs(10);

#[track_caller]
fn within<F: Future>(what: &'static str, f: F) -> impl Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(WAIT, f).await {
            Ok(out) => out,
            Err(_) => panic!("{what}: no answer within {WAIT:?} (at {caller})"),
        }
    }
}

fn config(server: &NatsServer) -> JetStreamConfig {
    JetStreamConfig { url: server.url(), timeout: Duration::from_secs(2), ..Default::default() }
}

async fn connect(server: &NatsServer) -> JetStreamLog {
    within("connect", JetStreamLog::connect(config(server))).await.expect("connect to the test server")
}

fn county() -> RegionCode {
    RegionCode::parse("520102").unwrap()
}

fn context() -> CommandContext {
    let at: DateTime<Utc> = "2024-05-01T08:00:00Z".parse().unwrap();
    let command_id = format!("cmd-{}", ulid::Ulid::new());
    CommandContext {
        actor: Actor { id: "bureau-520102".into(), role: Role::CountyBureau, region: county(), grid: None },
        occurred_at: at,
        recorded_at: at,
        correlation_id: command_id.clone(),
        command_id,
    }
}

/// A problem as a client sees it: its state and the position of its last commit.
struct Problem {
    id: AggregateId,
    state: State,
    position: u64,
}

impl Problem {
    fn new() -> Problem {
        let id = AggregateId::new(AggregateKind::Problem, county(), &ulid::Ulid::new().to_string()).unwrap();
        Problem { id, state: State::default(), position: 0 }
    }

    /// The report at version 0, progress reports after it, each under a fresh command id.
    fn next(&self) -> Commit {
        let command = if self.state.version == 0 {
            Command::ReportProblem {
                region: county(),
                grid: "520102-G01".into(),
                sector: Sector::Baijiu,
                source: Source { name: "某酒厂".into(), credit_code: String::new() },
                severity: Severity::Major,
                description: "废水直排".into(),
                inspection: None,
            }
        } else {
            Command::ReportProgress { note: format!("step {}", self.state.version), evidence: Vec::new() }
        };
        execute(&self.id, &self.state, &context(), &command).expect("a valid command")
    }

    fn applied(&mut self, commit: &Commit, appended: Appended) {
        self.state = commit.events.iter().fold(std::mem::take(&mut self.state), rectify_domain::evolve);
        self.position = appended.position;
    }

    async fn append_next(&mut self, log: &JetStreamLog) -> Commit {
        let commit = self.next();
        let appended = within("append", log.append(&commit, self.position)).await.expect("append");
        assert!(!appended.duplicate);
        assert_eq!(appended.version, commit.last_version());
        self.applied(&commit, appended);
        commit
    }
}

/// An independent client on the same server.
async fn raw_client(server: &NatsServer) -> async_nats::jetstream::Context {
    let client = within("raw connect", async_nats::connect(server.url())).await.expect("raw client connects");
    async_nats::jetstream::new(client)
}

#[tokio::test]
async fn append_and_read_back_in_every_way() {
    let server = NatsServer::start();
    let log = connect(&server).await;
    assert_eq!(log.head().await.unwrap(), 0);
    let (mut a, mut b) = (Problem::new(), Problem::new());
    let a1 = a.append_next(&log).await;
    let b1 = b.append_next(&log).await;
    let a2 = a.append_next(&log).await;
    assert_eq!((a.position, b.position), (3, 2), "positions are stream sequences");
    assert_eq!(log.head().await.unwrap(), 3);

    let stream = log.read_stream(&a.id).await.unwrap();
    assert_eq!(stream.iter().map(|r| (r.position, &r.commit)).collect::<Vec<_>>(), [(1, &a1), (3, &a2)]);
    assert_eq!(log.read_stream(&Problem::new().id).await.unwrap(), []);

    let all = log.read_from(0, 10).await.unwrap();
    assert_eq!(all.iter().map(|r| (r.position, &r.commit)).collect::<Vec<_>>(), [(1, &a1), (2, &b1), (3, &a2)]);
    let middle = log.read_from(2, 1).await.unwrap();
    assert_eq!(middle.iter().map(|r| r.position).collect::<Vec<_>>(), [2]);
    assert_eq!(log.read_from(4, 10).await.unwrap(), []);
    assert_eq!(log.read_from(1, 0).await.unwrap(), []);

    let mut tail = log.tail(2);
    assert_eq!(within("tail", tail.next()).await.unwrap().unwrap().commit, b1);
    assert_eq!(within("tail", tail.next()).await.unwrap().unwrap().commit, a2);
    let b2 = b.append_next(&log).await;
    let live = within("tail a new append", tail.next()).await.unwrap().unwrap();
    assert_eq!((live.position, live.commit), (4, b2));
    // A tail from past the head waits for the next append.
    let mut ahead = log.tail(5);
    let a3 = a.append_next(&log).await;
    assert_eq!(within("tail from the head", ahead.next()).await.unwrap().unwrap().commit, a3);
}

#[tokio::test]
async fn a_stale_expected_position_conflicts() {
    let server = NatsServer::start();
    let log = connect(&server).await;
    let mut p = Problem::new();
    p.append_next(&log).await;
    let stale = p.position;
    p.append_next(&log).await;
    let late = p.next();
    let err = log.append(&late, stale).await.unwrap_err();
    assert_eq!(err, AppendError::Conflict { stream: p.id.to_string(), expected: stale });
    assert_eq!(log.read_stream(&p.id).await.unwrap().len(), 2, "nothing written");
}

/// A server whose JetStream storage is exhausted refuses appends as a full disk (which the API answers with
/// 507), writes nothing of the refused commit, and keeps every acknowledged one.
#[tokio::test]
async fn a_server_out_of_storage_refuses_appends_as_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("small-store.conf");
    std::fs::write(&conf, "jetstream { max_file_store: 1MB }\n").unwrap();
    let server = NatsServer::start_with(rectify_tests::binary(), &["-c", conf.to_str().unwrap()]);
    let log = connect(&server).await;
    let mut acked = Vec::new();
    let refusal = loop {
        assert!(acked.len() < 10_000, "1 MB of storage never filled up");
        let mut p = Problem::new();
        let commit = p.next();
        match within("append", log.append(&commit, 0)).await {
            Ok(appended) => {
                p.applied(&commit, appended);
                acked.push(p);
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(refusal, AppendError::Disk { refusal: DiskRefusal::Full, .. }),
        "after {} appends: {refusal:?}",
        acked.len()
    );
    let last = acked.last().expect("some appends fit");
    assert_eq!(within("head", log.head()).await.unwrap(), last.position, "nothing of the refused commit");
    assert_eq!(within("read", log.read_stream(&last.id)).await.unwrap().len(), 1, "the last acknowledged one is there");
    // Reads go on; the audit store (on the same server) refuses as a full disk too.
    let all = within("read_from", log.read_from(1, acked.len())).await.unwrap();
    assert_eq!(all.len(), acked.len());
    let key = rectify_domain::audit::SigningKey::from_bytes(&[5; 32]);
    let seal = rectify_domain::audit::Seal::sign(&key, Utc::now(), Vec::new());
    let refused = within("append_audit", log.append_audit(&AuditRecord::Seal(seal))).await.unwrap_err();
    assert!(matches!(refused, AppendError::Disk { refusal: DiskRefusal::Full, .. }), "{refused:?}");
}

/// nats-server 2.9.10 enforces `Nats-Expected-Last-Subject-Sequence: 0` (the subject must be empty).
#[tokio::test]
async fn expected_zero_on_an_existing_stream_conflicts() {
    let server = NatsServer::start();
    let log = connect(&server).await;
    let mut p = Problem::new();
    p.append_next(&log).await;
    // A second report of the same problem, sealed as if the stream were new.
    let again = Problem { id: p.id.clone(), state: State::default(), position: 0 }.next();
    let err = log.append(&again, 0).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { expected: 0, .. }), "{err:?}");
    // And a non-zero expectation on a stream that does not exist.
    let fresh = Problem::new();
    let err = log.append(&fresh.next(), 1).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { expected: 1, .. }), "{err:?}");
    assert_eq!(log.head().await.unwrap(), 1);
}

#[tokio::test]
async fn a_command_appended_twice_is_stored_once() {
    let server = NatsServer::start();
    let log = connect(&server).await;
    let mut p = Problem::new();
    let commit = p.next();
    let first = log.append(&commit, 0).await.unwrap();
    assert!(!first.duplicate);
    let expected = Appended { duplicate: true, ..first };
    // The same process remembers it …
    assert_eq!(log.append(&commit, 0).await.unwrap(), expected);
    assert_eq!(log.find_command(commit.command_id()).await.unwrap(), Some(first));
    // … another process is answered by the server's duplicate window, with the first position and version.
    let other = connect(&server).await;
    assert_eq!(other.find_command(commit.command_id()).await.unwrap(), None, "memory is per process");
    assert_eq!(other.append(&commit, 0).await.unwrap(), expected);
    assert_eq!(other.append(&commit, 7).await.unwrap(), expected, "dedup comes before the expected check");
    p.applied(&commit, first);
    assert_eq!(log.head().await.unwrap(), 1, "one message on the stream");
    assert_eq!(log.read_stream(&p.id).await.unwrap().len(), 1);
}

/// A retry whose first ack was lost, answered with "wrong last sequence" (as 2.12+ does on one replica),
/// is recognised by the command id of the subject's last message. Here the first append carries another
/// message id, so the server's dedup cannot answer and the conflict path must.
#[tokio::test]
async fn a_conflicting_retry_of_the_last_commit_is_a_duplicate() {
    let server = NatsServer::start();
    let log = connect(&server).await;
    let p = Problem::new();
    let commit = p.next();
    let js = raw_client(&server).await;
    let headers = {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", "some-other-id");
        h
    };
    let ack = js.publish_with_headers(log.subject(&p.id), headers, commit.encode().into()).await.unwrap();
    let position = within("raw ack", ack.into_future()).await.unwrap().sequence;
    let appended = log.append(&commit, 0).await.unwrap();
    assert_eq!(appended, Appended { position, version: commit.last_version(), duplicate: true });
    // Not the last commit any more: a plain conflict.
    let mut q = Problem { id: p.id.clone(), state: State::default(), position: 0 };
    q.applied(&commit, appended);
    let next = q.next();
    q.append_next(&log).await;
    let err = connect(&server).await.append(&next, position).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { .. }), "{err:?}");
}

#[tokio::test]
async fn another_client_sees_the_commit_on_the_documented_subject() {
    let server = NatsServer::start();
    let log = connect(&server).await;
    let js = raw_client(&server).await;
    let mut sub = js.client().subscribe("rectify.events.520100.520102.>").await.unwrap();
    // `flush` only writes the SUB out; a request on the same connection returns after the server has
    // processed it, so the subscription is in place before the other connection publishes.
    js.get_stream("RECTIFY_EVENTS").await.unwrap();
    let mut p = Problem::new();
    let commit = p.append_next(&log).await;
    let subject = format!("rectify.events.520100.520102.{}", p.id);
    assert_eq!(log.subject(&p.id), subject);

    let live = within("core subscription", sub.next()).await.unwrap();
    assert_eq!(live.subject.as_str(), subject);
    assert_eq!(Commit::decode(&live.payload).unwrap(), commit);
    let headers = live.headers.expect("headers");
    assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), commit.command_id());
    assert_eq!(headers.get("Nats-Expected-Last-Subject-Sequence").unwrap().as_str(), "0");

    let stream = js.get_stream("RECTIFY_EVENTS").await.unwrap();
    let stored = stream.direct_get_last_for_subject(subject.as_str()).await.unwrap();
    assert_eq!((stored.sequence, Commit::decode(&stored.payload).unwrap()), (p.position, commit));
    let config = &stream.cached_info().config;
    assert_eq!(config.subjects, ["rectify.events.>"]);
    assert_eq!(config.storage, StorageType::File);
    assert!(config.allow_direct && config.deny_delete && config.deny_purge);
}

#[tokio::test]
async fn an_existing_stream_with_another_config_is_refused_and_left_alone() {
    let server = NatsServer::start();
    let js = raw_client(&server).await;
    let theirs = StreamConfig {
        name: "RECTIFY_EVENTS".into(),
        subjects: vec!["rectify.events.>".into()],
        storage: StorageType::Memory,
        allow_direct: true,
        deny_delete: false,
        deny_purge: true,
        ..Default::default()
    };
    js.create_stream(theirs).await.unwrap();
    let err = JetStreamLog::connect(config(&server)).await.err().expect("a mismatch is an error");
    let JetStreamError::StreamMismatch { stream, differences } = &err else { panic!("{err:?}") };
    assert_eq!(stream, "RECTIFY_EVENTS");
    assert!(differences.contains("storage") && differences.contains("deny_delete"), "{err}");
    let after = js.get_stream("RECTIFY_EVENTS").await.unwrap();
    assert_eq!(after.cached_info().config.storage, StorageType::Memory, "never updated");

    // A stream of its own, on its own prefix, beside the foreign one.
    let own =
        JetStreamConfig { stream: "RECTIFY_OTHER".into(), subject_prefix: "other.events".into(), ..config(&server) };
    let log = within("connect", JetStreamLog::connect(own)).await.unwrap();
    let mut p = Problem::new();
    p.append_next(&log).await;
    assert!(log.subject(&p.id).starts_with("other.events.520100.520102."));
    // Connecting again accepts the stream it created.
    let own =
        JetStreamConfig { stream: "RECTIFY_OTHER".into(), subject_prefix: "other.events".into(), ..config(&server) };
    within("reconnect", JetStreamLog::connect(own)).await.unwrap();
}

#[tokio::test]
async fn replicated_streams_are_refused_on_old_servers() {
    let server = NatsServer::start();
    if server.version() >= (2, 9, 21) {
        return; // Only an old server shows the refusal; a new single node would fail for want of peers.
    }
    let err = JetStreamLog::connect(JetStreamConfig { replicas: 3, ..config(&server) }).await.err().unwrap();
    assert!(matches!(&err, JetStreamError::UnsupportedServer(m) if m.contains("4320")), "{err}");
    assert!(raw_client(&server).await.get_stream("RECTIFY_EVENTS").await.is_err(), "no stream was created");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let mut server = NatsServer::start();
    server.stop();
    let err = within("connect to nothing", JetStreamLog::connect(config(&server))).await.err().unwrap();
    assert!(matches!(err, JetStreamError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_lost_server_fails_fast_and_is_used_again_after_it_returns() {
    let mut server = NatsServer::start();
    let log = connect(&server).await;
    let mut p = Problem::new();
    p.append_next(&log).await;

    server.stop();
    let commit = p.next();
    let err = within("append while the server is down", log.append(&commit, p.position)).await.unwrap_err();
    assert!(matches!(err, AppendError::Unavailable(_)), "{err:?}");
    let err = within("read while the server is down", log.read_stream(&p.id)).await.unwrap_err();
    assert!(matches!(err, rectify_eventlog::ReadError::Unavailable(_)), "{err:?}");
    assert!(matches!(within("head", log.head()).await, Err(rectify_eventlog::ReadError::Unavailable(_))));

    server.restart();
    // The client reconnects by itself; each attempt is bounded, so this loop cannot hang.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let appended = loop {
        match within("append after the restart", log.append(&commit, p.position)).await {
            Ok(appended) => break appended,
            Err(AppendError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}")
            }
            Err(e) => panic!("append after the restart: {e}"),
        }
    };
    // The append while down may have been delivered after the reconnect: either way, it is there once.
    assert_eq!(appended.version, commit.last_version());
    p.applied(&commit, Appended { duplicate: false, ..appended });
    p.append_next(&log).await;
    let stream = log.read_stream(&p.id).await.unwrap();
    assert_eq!(stream.iter().map(|r| r.commit.last_version()).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test]
async fn the_tail_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let log = connect(&server).await;
    let mut p = Problem::new();
    p.append_next(&log).await;
    let mut tail = log.tail(1);
    assert_eq!(within("tail", tail.next()).await.unwrap().unwrap().position, 1);

    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let commit = p.next();
    let commit = loop {
        match within("append after the restart", log.append(&commit, p.position)).await {
            Ok(_) => break log.read_stream(&p.id).await.unwrap().pop().unwrap(),
            Err(AppendError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {}
            Err(e) => panic!("append after the restart: {e}"),
        }
    };
    let next = loop {
        match within("tail after the restart", tail.next()).await.unwrap() {
            Ok(record) => break record,
            Err(e) => eprintln!("tail reported: {e}"),
        }
    };
    assert_eq!(next, commit, "the tail continues where it was, without repeating");
}

#[tokio::test]
async fn following_the_log_resumes_after_a_server_restart_without_repeating_or_skipping() {
    let mut server = NatsServer::start();
    let log = std::sync::Arc::new(connect(&server).await);
    let mut p = Problem::new();
    p.append_next(&log).await;
    p.append_next(&log).await;
    let mut batches = rectify_eventlog::follow(log.clone(), 1, 16, "this test");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(within("follow", batches.next()).await.unwrap().iter().map(|r| r.position));
    }

    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let commit = p.next();
    let appended = loop {
        match within("append after the restart", log.append(&commit, p.position)).await {
            Ok(appended) => break appended,
            Err(AppendError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {}
            Err(e) => panic!("append after the restart: {e}"),
        }
    };
    p.applied(&commit, Appended { duplicate: false, ..appended });
    p.append_next(&log).await;
    while seen.len() < 4 {
        seen.extend(within("follow after the restart", batches.next()).await.unwrap().iter().map(|r| r.position));
    }
    assert_eq!(seen, [1, 2, 3, 4]);
}
