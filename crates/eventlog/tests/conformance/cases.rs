//! The cases: each takes a log that may already hold anything and may be shared with other cases running at
//! the same time. So they use fresh streams and command ids, read `head()` first and count positions from
//! there, and judge records of other streams only by the log-wide rules (order, no gaps).

use crate::support::{Problem, assert_chain, assert_consecutive, only, within};
use futures::StreamExt;
use rectify_domain::AggregateId;
use rectify_eventlog::{AppendError, EventLog, Record};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Barrier;

type Log = Arc<dyn EventLog>;

fn streams<'a>(problems: impl IntoIterator<Item = &'a Problem>) -> HashSet<AggregateId> {
    problems.into_iter().map(|p| p.id.clone()).collect()
}

async fn head(log: &Log) -> u64 {
    within("head", log.head()).await.expect("head")
}

async fn read_stream(log: &Log, id: &AggregateId) -> Vec<Record> {
    within("read_stream", log.read_stream(id)).await.expect("read_stream")
}

async fn read_from(log: &Log, from: u64, max: usize) -> Vec<Record> {
    within("read_from", log.read_from(from, max)).await.expect("read_from")
}

#[track_caller]
fn assert_conflict(result: Result<rectify_eventlog::Appended, AppendError>, id: &AggregateId, expected: u64) {
    match result {
        Err(AppendError::Conflict { stream, expected: e }) => {
            assert_eq!(stream, id.as_str(), "the conflict names the stream");
            assert_eq!(e, expected, "the conflict names the stale expectation");
        }
        other => panic!("expected a conflict on {id} at {expected}, got {other:?}"),
    }
}

/// Appended commits come back unchanged, from the stream and from the log, with single and multi-event commits.
pub async fn append_then_read_back(log: Log) {
    let before = head(&log).await;
    let mut p = Problem::new();
    let mut written = vec![p.append_next(&*log).await, p.append_next(&*log).await];
    let several = p.several(3);
    written.push(p.append(&*log, several).await);
    assert_eq!(p.state.version, 5, "a commit of three events moves the version by three");
    assert!(written[0].position > before, "new commits land after the head");

    let stream = read_stream(&log, &p.id).await;
    assert_eq!(stream, written);
    assert_chain(&stream);

    let logged = only(read_from(&log, written[0].position, usize::MAX).await, &streams([&p]));
    assert_eq!(logged, written);
    assert!(head(&log).await >= p.position, "the head covers an acknowledged append");
}

/// Unknown streams and commands read as empty, and reading past the head is not an error.
pub async fn unknown_things_read_empty(log: Log) {
    assert_eq!(read_stream(&log, &Problem::new().id).await, []);
    assert_eq!(within("find_command", log.find_command("cmd-never-appended")).await.expect("find_command"), None);
    let far = head(&log).await + 1_000_000;
    assert_eq!(read_from(&log, far, 10).await, []);
    let mut p = Problem::new();
    p.append_next(&*log).await;
    assert_eq!(read_from(&log, p.position, 0).await, [], "max 0 reads nothing");
}

/// The log names a stream's last commit without reading the stream, and nothing for an unknown one.
pub async fn last_position_is_the_streams_last_commit(log: Log) {
    let last = |id: AggregateId| {
        let log = log.clone();
        async move { within("last_position_of", log.last_position_of(&id)).await.expect("last_position_of") }
    };
    let (mut a, mut b) = (Problem::new(), Problem::new());
    assert_eq!(last(a.id.clone()).await, None);
    a.append_next(&*log).await;
    b.append_next(&*log).await;
    a.append_next(&*log).await;
    assert_eq!(last(a.id.clone()).await, Some(a.position));
    assert_eq!(last(b.id.clone()).await, Some(b.position));
    assert!(a.position > b.position);
}

/// An append that names a position the stream has moved past is refused and writes nothing.
pub async fn stale_expected_conflicts(log: Log) {
    let mut p = Problem::new();
    p.append_next(&*log).await;
    let seen = p.clone();
    p.append_next(&*log).await;

    let late = seen.next();
    assert_conflict(within("append", log.append(&late, seen.position)).await, &p.id, seen.position);
    let ahead = p.next();
    assert_conflict(within("append", log.append(&ahead, p.position + 1000)).await, &p.id, p.position + 1000);

    assert_eq!(read_stream(&log, &p.id).await.len(), 2, "a conflict writes nothing");
    for refused in [&late, &ahead] {
        let found = within("find_command", log.find_command(refused.command_id())).await.expect("find_command");
        assert_eq!(found, None, "a refused command is not remembered");
    }
    // The stream still takes the append that names its real head.
    p.append_next(&*log).await;
}

/// `expected = 0` means "the stream must not exist"; a non-zero `expected` on a new stream is stale too.
pub async fn expected_zero_only_for_new_streams(log: Log) {
    let mut p = Problem::new();
    p.append_next(&*log).await;
    let again = Problem { id: p.id.clone(), ..Problem::new() }.report();
    assert_conflict(within("append", log.append(&again, 0)).await, &p.id, 0);
    let follow_up = p.next();
    assert_conflict(within("append", log.append(&follow_up, 0)).await, &p.id, 0);
    assert_eq!(read_stream(&log, &p.id).await.len(), 1);

    let fresh = Problem::new();
    let report = fresh.report();
    assert_conflict(within("append", log.append(&report, p.position)).await, &fresh.id, p.position);
    assert_eq!(read_stream(&log, &fresh.id).await, [], "a conflict creates no stream");
}

/// The same command twice: the second answer is the first one, marked duplicate, and nothing is written.
pub async fn retried_command_is_answered_once(log: Log) {
    let p = Problem::new();
    let commit = p.report();
    let first = within("append", log.append(&commit, 0)).await.expect("first append");
    assert!(!first.duplicate);
    let head_before = head(&log).await;

    let again = within("append", log.append(&commit, 0)).await.expect("a retry is not an error");
    assert_eq!((again.position, again.version, again.duplicate), (first.position, first.version, true));

    let found = within("find_command", log.find_command(commit.command_id())).await.expect("find_command");
    let found = found.expect("the log remembers the command");
    assert_eq!((found.position, found.version), (first.position, first.version));

    assert_eq!(read_stream(&log, &p.id).await.len(), 1, "the retry wrote nothing to the stream");
    // Other cases may append meanwhile; none of what landed since may be this command.
    let head_after = head(&log).await;
    let since = read_from(&log, head_before + 1, (head_after - head_before) as usize).await;
    assert!(since.iter().all(|r| r.commit.command_id() != commit.command_id()), "the retry wrote nothing to the log");
}

/// A retry arriving after the stream moved on is still a duplicate, not a conflict: the client gets the
/// answer it missed.
pub async fn retry_after_the_stream_moved_on_is_a_duplicate(log: Log) {
    let mut p = Problem::new();
    let report = p.report();
    let first = p.append(&*log, report.clone()).await;
    let deadline_expected = p.position;
    let deadline = p.next();
    let second = p.append(&*log, deadline.clone()).await;
    p.append_next(&*log).await;

    let again = within("append", log.append(&report, 0)).await.expect("a late retry is not a conflict");
    assert_eq!((again.position, again.version, again.duplicate), (first.position, 1, true));
    let again =
        within("append", log.append(&deadline, deadline_expected)).await.expect("a late retry is not a conflict");
    assert_eq!((again.position, again.version, again.duplicate), (second.position, 2, true));
    assert_eq!(read_stream(&log, &p.id).await.len(), 3);
}

/// Many copies of one command at once: all get the same answer, exactly one of them wrote it.
pub async fn concurrent_retries_write_once(log: Log) {
    let p = Problem::new();
    let commit = Arc::new(p.report());
    let start = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (log, commit, start) = (log.clone(), commit.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                log.append(&commit, 0).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(within("append", task).await.expect("task").expect("every copy succeeds"));
    }
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1, "exactly one copy wrote: {answers:?}");
    assert!(answers.iter().all(|a| (a.position, a.version) == (answers[0].position, 1)), "{answers:?}");
    assert_eq!(read_stream(&log, &p.id).await.len(), 1);
}

/// `read_from` any position between the heads before and after some appends returns exactly the log from there.
pub async fn catch_up_from_any_position(log: Log) {
    let before = head(&log).await;
    let mut problems = [Problem::new(), Problem::new(), Problem::new()];
    let mut written = Vec::new();
    for _ in 0..4 {
        for p in &mut problems {
            written.push(p.append_next(&*log).await);
        }
    }
    let after = head(&log).await;
    assert!(after >= before + 12, "twelve appends moved the head from {before} to {after}");
    let ours = streams(&problems);

    for from in before..=after + 1 {
        let records = read_from(&log, from, (after + 1 - from) as usize + 1).await;
        assert_consecutive(&records, (from >= 1 && from <= after).then_some(from));
        assert!(records.iter().all(|r| r.position >= from.max(1)), "nothing before {from}");
        let got = only(records.into_iter().filter(|r| r.position <= after).collect(), &ours);
        let want: Vec<_> = written.iter().filter(|r| r.position >= from).cloned().collect();
        assert_eq!(got, want, "catching up from {from}");
    }
    let first = read_from(&log, 0, 1).await;
    assert_eq!(first.len(), 1, "from 0 reads from the start of the log");
}

/// `read_from` returns at most `max` records, the first ones from `from`.
pub async fn read_from_respects_max(log: Log) {
    let mut p = Problem::new();
    let mut written = Vec::new();
    for _ in 0..5 {
        written.push(p.append_next(&*log).await);
    }
    let from = written[0].position;
    for max in 1..=4 {
        let records = read_from(&log, from, max).await;
        assert_eq!(records.len(), max);
        assert_consecutive(&records, Some(from));
    }
}

/// Positions grow strictly in the order appends are acknowledged, and the log reads back in that order.
pub async fn positions_follow_append_order(log: Log) {
    let mut problems: Vec<_> = (0..5).map(|_| Problem::new()).collect();
    let mut written: Vec<Record> = Vec::new();
    for i in 0..30 {
        let record = problems[i % 5].append_next(&*log).await;
        if let Some(last) = written.last() {
            assert!(record.position > last.position, "position {} after {}", record.position, last.position);
        }
        written.push(record);
    }
    let from = written[0].position;
    let to = written.last().expect("thirty records").position;
    let records = read_from(&log, from, (to - from + 1) as usize).await;
    assert_consecutive(&records, Some(from));
    assert_eq!(records.last().map(|r| r.position), Some(to));
    assert_eq!(only(records, &streams(&problems)), written);
    for p in &problems {
        let stream = read_stream(&log, &p.id).await;
        let want: Vec<_> = written.iter().filter(|r| r.commit.stream() == &p.id).cloned().collect();
        assert_eq!(stream, want);
        assert_chain(&stream);
    }
}

/// Takes records from `tail` until `n` of `ours` arrived; each wait is bounded.
async fn take_ours(
    tail: &mut futures::stream::BoxStream<'static, Result<Record, rectify_eventlog::ReadError>>,
    ours: &HashSet<AggregateId>,
    n: usize,
) -> Vec<Record> {
    let mut got = Vec::new();
    let mut last = 0;
    while got.len() < n {
        let record = within("the tail's next record", tail.next()).await.expect("a tail never ends").expect("tail");
        assert!(record.position > last, "a tail yields positions in order");
        last = record.position;
        if ours.contains(record.commit.stream()) {
            got.push(record);
        }
    }
    got
}

/// A tail opened at the head yields what is appended after it, as it is appended.
pub async fn live_tail_yields_new_appends(log: Log) {
    let mut p = Problem::new();
    let mut tail = log.tail(head(&log).await + 1);
    let ours = streams([&p]);
    for _ in 0..3 {
        let record = p.append_next(&*log).await;
        let seen = take_ours(&mut tail, &ours, 1).await;
        assert_eq!(seen, [record], "the tail delivers each append");
    }
}

/// A tail from an old position first replays the log from there, then follows it.
pub async fn tail_catches_up_then_follows(log: Log) {
    let mut p = Problem::new();
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(p.append_next(&*log).await);
    }
    let mut tail = log.tail(written[0].position);
    let ours = streams([&p]);
    let first = within("the tail's first record", tail.next()).await.expect("a record").expect("tail");
    assert_eq!(first, written[0], "a tail starts exactly at `from`");
    let mut seen = vec![first];
    seen.extend(take_ours(&mut tail, &ours, 2).await);
    assert_eq!(seen, written);

    let waiting = tokio::spawn(async move { take_ours(&mut tail, &ours, 2).await });
    let more = vec![p.append_next(&*log).await, p.append_next(&*log).await];
    assert_eq!(within("the tail", waiting).await.expect("tail task"), more);
}

/// A commit of ~400 KB goes through append, stream read, log read and tail unchanged.
pub async fn large_envelope_round_trips(log: Log) {
    let mut p = Problem::new();
    let commit = p.large_report(400 * 1024);
    assert!(commit.encode().len() > 400 * 1024);
    let written = p.append(&*log, commit).await;
    assert_eq!(read_stream(&log, &p.id).await, std::slice::from_ref(&written));
    assert_eq!(read_from(&log, written.position, 1).await, std::slice::from_ref(&written));
    let mut tail = log.tail(written.position);
    let tailed = within("the tail", tail.next()).await.expect("a record").expect("tail");
    assert_eq!(tailed, written);
    assert_chain(&[tailed]);
    p.append_next(&*log).await;
}

/// Twenty writers race to extend one stream from the same position: one wins, nineteen conflict; again and again.
pub async fn racing_writers_on_one_stream_one_wins(log: Log) {
    const WRITERS: usize = 20;
    let mut p = Problem::new();
    p.append_next(&*log).await;
    for round in 0..5 {
        let expected = p.position;
        let start = Arc::new(Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (log, commit, start) = (log.clone(), p.progress(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let result = log.append(&commit, expected).await;
                    (commit, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for task in tasks {
            match within("append", task).await.expect("task") {
                (commit, Ok(appended)) => {
                    assert!(!appended.duplicate, "every writer has its own command id");
                    winners.push((commit, appended));
                }
                (_, result) => {
                    assert_conflict(result, &p.id, expected);
                    conflicts += 1;
                }
            }
        }
        assert_eq!((winners.len(), conflicts), (1, WRITERS - 1), "round {round}");
        let (commit, appended) = winners.pop().expect("one winner");
        p.applied(&commit, appended);
    }
    let stream = read_stream(&log, &p.id).await;
    assert_eq!(stream.len(), 6);
    assert_eq!(stream.last().map(|r| r.position), Some(p.position));
    assert_chain(&stream);
}

/// Twenty writers on twenty new streams at once all succeed, each at its own position.
pub async fn writers_on_distinct_streams_all_succeed(log: Log) {
    const WRITERS: usize = 20;
    let start = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (log, start) = (log.clone(), start.clone());
            tokio::spawn(async move {
                let mut p = Problem::new();
                start.wait().await;
                let record = p.append_next(&*log).await;
                (p, record)
            })
        })
        .collect();
    let mut positions = HashSet::new();
    for task in tasks {
        let (p, record) = within("append", task).await.expect("task");
        assert!(positions.insert(record.position), "position {} given twice", record.position);
        assert_eq!(read_stream(&log, &p.id).await, [record]);
    }
    assert_eq!(positions.len(), WRITERS);
}

/// A seal over `records`, signed by a fixed test key.
fn seal_of(records: &[Record]) -> rectify_domain::audit::AuditRecord {
    use rectify_domain::audit::{AuditRecord, Seal, SealEntry, SigningKey};
    let entries = records.iter().map(|r| SealEntry::of(r.position, &r.commit)).collect();
    AuditRecord::Seal(Seal::sign(&SigningKey::from_bytes(&[5; 32]), chrono::Utc::now(), entries))
}

/// Audit records come back unchanged, in order, at consecutive positions after the audit head, and the
/// event log's positions do not move because of them.
pub async fn audit_records_round_trip_beside_the_log(log: Log) {
    let before = within("audit_head", log.audit_head()).await.expect("audit_head");
    let mut p = Problem::new();
    let first = p.append_next(&*log).await;
    let records = [seal_of(std::slice::from_ref(&first)), seal_of(&[first.clone(), first.clone()])];
    let mut positions = Vec::new();
    for r in &records {
        positions.push(within("append_audit", log.append_audit(r)).await.expect("append_audit"));
    }
    assert!(positions[0] > before, "audit records land after the audit head");
    let second = p.append_next(&*log).await;
    assert!(second.position > first.position, "event positions are the log's own");

    let read = within("read_audit", log.read_audit(positions[0], usize::MAX)).await.expect("read_audit");
    let ours: Vec<_> = read.iter().filter(|e| positions.contains(&e.position)).collect();
    assert_eq!(ours.len(), 2);
    for (entry, record) in ours.iter().zip(&records) {
        assert_eq!(entry.record.as_ref(), Ok(record));
    }
    for pair in read.windows(2) {
        assert_eq!(pair[1].position, pair[0].position + 1, "audit positions are consecutive");
    }
    assert!(within("audit_head", log.audit_head()).await.unwrap() >= positions[1]);
    let one = within("read_audit", log.read_audit(positions[0], 1)).await.unwrap();
    assert_eq!(one.len(), 1, "max is respected");
    let far = within("read_audit", log.read_audit(positions[1] + 1_000_000, 10)).await.unwrap();
    assert_eq!(far, [], "reading past the end is empty");
}

/// Concurrent audit appends all land, each at its own position.
pub async fn concurrent_audit_appends_get_distinct_positions(log: Log) {
    let mut p = Problem::new();
    let record = p.append_next(&*log).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let log = log.clone();
            let mut records = vec![record.clone()];
            records.extend(std::iter::repeat_n(record.clone(), i));
            let seal = seal_of(&records);
            tokio::spawn(async move { within("append_audit", log.append_audit(&seal)).await.expect("append_audit") })
        })
        .collect();
    let mut positions = HashSet::new();
    for t in tasks {
        assert!(positions.insert(t.await.unwrap()), "two audit records at one position");
    }
}
