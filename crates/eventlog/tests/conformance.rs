//! The contract of [`EventLog`], checked the same way for every backend.
//!
//! The cases live in `conformance/cases.rs` as plain `async fn(Arc<dyn EventLog>)`; [`conformance_tests!`]
//! turns each into a `#[tokio::test]` for one backend:
//!
//! ```ignore
//! conformance_tests!(jetstream, || async { Backend::new(JetStreamLog::connect(..).await.unwrap(), server_guard) });
//! ```
//!
//! A case never assumes an empty log or that positions start at 1: it reads `head()` first, uses fresh
//! stream and command ids, and tolerates other cases appending to the same log at the same time. So a
//! backend may hand every case its own log or one shared log.

#[path = "conformance/cases.rs"]
mod cases;
#[path = "conformance/support.rs"]
mod support;

use rectify_eventlog::{EmbeddedLog, EventLog};
use std::sync::Arc;
use support::Backend;

/// Instantiates every case for one backend: `conformance_tests!(name, factory)`, where `factory` is a
/// closure returning a future of a [`Backend`]; each case calls it once. The cases run on a two-thread
/// runtime unless `runtime(...)` gives other `#[tokio::test]` arguments:
/// `conformance_tests!(name, runtime(flavor = "current_thread"), factory)`.
macro_rules! conformance_tests {
    (@cases $backend:ident, $runtime:tt, $factory:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test $runtime]
                async fn $case() {
                    let backend: Backend = ($factory)().await;
                    cases::$case(backend.log.clone()).await;
                }
            )*
        }
    };
    ($backend:ident, runtime($($runtime:tt)*), $factory:expr) => {
        conformance_tests!(@cases $backend, ($($runtime)*), $factory, [
            append_then_read_back,
            unknown_things_read_empty,
            last_position_is_the_streams_last_commit,
            stale_expected_conflicts,
            expected_zero_only_for_new_streams,
            retried_command_is_answered_once,
            retry_after_the_stream_moved_on_is_a_duplicate,
            concurrent_retries_write_once,
            catch_up_from_any_position,
            read_from_respects_max,
            positions_follow_append_order,
            live_tail_yields_new_appends,
            tail_catches_up_then_follows,
            large_envelope_round_trips,
            racing_writers_on_one_stream_one_wins,
            writers_on_distinct_streams_all_succeed,
            audit_records_round_trip_beside_the_log,
            concurrent_audit_appends_get_distinct_positions,
        ]);
    };
    ($backend:ident, $factory:expr) => {
        conformance_tests!($backend, runtime(flavor = "multi_thread", worker_threads = 2), $factory);
    };
}

/// A fresh embedded log in a temporary directory that lives as long as the case.
fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = EmbeddedLog::open(dir.path()).expect("open the embedded log");
    Backend::new(log, dir)
}

conformance_tests!(embedded, || async { embedded() });

// On one thread every racing task has queued its append before the writer task runs again, so the writer
// decides them inside one batch: this is what exercises the group commit's in-batch checks.
conformance_tests!(embedded_one_thread, runtime(flavor = "current_thread"), || async { embedded() });

/// A JetStream log on a nats-server of its own (from the `rectify-tests` harness), which lives as long as the
/// case and is killed and removed with it.
async fn jetstream() -> Backend {
    let server = rectify_tests::NatsServer::start();
    let config = rectify_eventlog::JetStreamConfig { url: server.url(), ..Default::default() };
    let log = rectify_eventlog::JetStreamLog::connect(config).await.expect("connect to the test nats-server");
    Backend::new(log, server)
}

conformance_tests!(jetstream, jetstream);

/// A JetStream log on a stream with 3 replicas, on a 3-node cluster (nats-server ≥ 2.10 from the harness's
/// pinned wheel, started from `deploy/cluster/`). The cases that run at the same time share one cluster (each
/// connects its own log), which stops when the last of them ends.
async fn jetstream_r3() -> Backend {
    use std::sync::{Mutex, Weak};
    static SHARED: Mutex<Weak<rectify_tests::NatsCluster>> = Mutex::new(Weak::new());
    let cluster = {
        // Held while a cluster starts (blocking, no await), so that concurrent cases start only one.
        let mut shared = SHARED.lock().expect("cluster lock");
        shared.upgrade().unwrap_or_else(|| {
            let cluster = Arc::new(rectify_tests::NatsCluster::start());
            *shared = Arc::downgrade(&cluster);
            cluster
        })
    };
    let config = rectify_eventlog::JetStreamConfig { url: cluster.urls(), replicas: 3, ..Default::default() };
    let log = rectify_eventlog::JetStreamLog::connect(config).await.expect("connect to the test cluster");
    Backend::new(log, cluster)
}

conformance_tests!(jetstream_r3, jetstream_r3);

/// What only the embedded backend promises: positions from 1 on a fresh log, and its files.
mod embedded_only {
    use super::*;
    use futures::StreamExt;
    use rectify_eventlog::{AppendError, ReadError};
    use support::{Problem, within};

    #[tokio::test]
    async fn a_fresh_log_counts_from_one_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        assert_eq!(log.head().await.unwrap(), 0);
        assert_eq!(log.read_from(0, 10).await.unwrap(), []);
        let (mut a, mut b) = (Problem::new(), Problem::new());
        for expected in 1..=6 {
            let p = if expected % 2 == 0 { &mut b } else { &mut a };
            assert_eq!(p.append_next(&log).await.position, expected);
        }
        assert_eq!(log.head().await.unwrap(), 6);
    }

    #[tokio::test]
    async fn everything_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let (mut a, mut b) = (Problem::new(), Problem::new());
        let first = a.report();
        let mut written = vec![a.append(&log, first.clone()).await];
        for _ in 0..2 {
            written.push(b.append_next(&log).await);
            written.push(a.append_next(&log).await);
        }
        let large = Problem::new();
        let mut large_stream = large.clone();
        written.push(large_stream.append(&log, large.large_report(400 * 1024)).await);
        let head = log.head().await.unwrap();
        within("close", log.close()).await;

        let log = EmbeddedLog::open(dir.path()).expect("reopen after close");
        assert_eq!(log.head().await.unwrap(), head);
        assert_eq!(log.read_from(1, 100).await.unwrap(), written);
        for p in [&a, &b, &large_stream] {
            let stream = log.read_stream(&p.id).await.unwrap();
            assert_eq!(stream.last().map(|r| r.position), Some(p.position));
            support::assert_chain(&stream);
        }
        let again = log.append(&first, 0).await.expect("a retry after reopening");
        assert_eq!((again.position, again.duplicate), (written[0].position, true));
        let found = log.find_command(first.command_id()).await.unwrap().expect("remembered across reopen");
        assert_eq!(found.position, written[0].position);
        let stale = Problem { id: a.id.clone(), ..Problem::new() }.report();
        assert!(matches!(log.append(&stale, 0).await, Err(AppendError::Conflict { .. })), "heads survive too");

        let next = a.append_next(&log).await;
        assert_eq!(next.position, head + 1, "appends continue at the next position");
        let mut tail = log.tail(head);
        let tailed: Vec<_> = within("tail", tail.by_ref().take(2).collect::<Vec<_>>()).await;
        assert_eq!(
            tailed.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [written[head as usize - 1].clone(), next]
        );
    }

    #[tokio::test]
    async fn audit_records_survive_close_and_reopen() {
        use rectify_domain::audit::{AuditRecord, Seal, SealEntry, SigningKey};
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let mut p = Problem::new();
        let r = p.append_next(&log).await;
        let seal = AuditRecord::Seal(Seal::sign(
            &SigningKey::from_bytes(&[1; 32]),
            chrono::Utc::now(),
            vec![SealEntry::of(r.position, &r.commit)],
        ));
        assert_eq!(log.append_audit(&seal).await.unwrap(), 1, "a fresh audit store counts from one");
        within("close", log.close()).await;
        let log = EmbeddedLog::open(dir.path()).unwrap();
        assert_eq!(log.audit_head().await.unwrap(), 1);
        assert_eq!(log.read_audit(1, 10).await.unwrap()[0].record, Ok(seal.clone()));
        assert_eq!(log.append_audit(&seal).await.unwrap(), 2, "appends continue after reopening");
        assert_eq!(log.head().await.unwrap(), 1, "the event log is untouched");
    }

    #[tokio::test]
    async fn closing_stops_appends_and_ends_tails() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let other = log.clone();
        let mut p = Problem::new();
        p.append_next(&log).await;
        let mut tail = log.tail(1);
        within("close", log.close()).await;
        assert!(matches!(other.append(&p.next(), p.position).await, Err(AppendError::Unavailable(_))));
        assert!(matches!(within("tail", tail.next()).await, Some(Ok(r)) if r.position == 1));
        assert!(matches!(within("tail", tail.next()).await, Some(Err(ReadError::Unavailable(_)))));
        assert!(within("tail", tail.next()).await.is_none(), "the tail ends after reporting the close");
        // Reads of what was durable still work through the remaining handle.
        assert_eq!(other.read_stream(&p.id).await.unwrap().len(), 1);
    }

    /// A log written by an earlier version (a sled database, layout in `embedded/import.rs`) is moved into
    /// the file at the first open, positions and all, and the sled files are kept aside.
    #[tokio::test]
    async fn a_sled_log_of_an_earlier_version_is_imported_at_the_first_open() {
        use rectify_domain::audit::{AuditRecord, Seal, SealEntry, SigningKey};
        let dir = tempfile::tempdir().unwrap();
        let mut p = Problem::new();
        let mut written = Vec::new();
        let seal;
        {
            let db = sled::open(dir.path()).unwrap();
            let (events, audit) = (db.open_tree("rectify_events").unwrap(), db.open_tree("rectify_audit").unwrap());
            for position in 1..=3u64 {
                let commit = p.next();
                let mut key = vec![b'c'];
                key.extend_from_slice(&position.to_be_bytes());
                events.insert(key, commit.encode()).unwrap();
                let appended =
                    rectify_eventlog::Appended { position, version: commit.last_version(), duplicate: false };
                p.applied(&commit, appended);
                written.push(rectify_eventlog::Record { position, commit });
            }
            seal = AuditRecord::Seal(Seal::sign(
                &SigningKey::from_bytes(&[1; 32]),
                chrono::Utc::now(),
                vec![SealEntry::of(1, &written[0].commit)],
            ));
            audit.insert(1u64.to_be_bytes(), seal.encode()).unwrap();
            db.flush().unwrap();
        }

        let log = EmbeddedLog::open(dir.path()).expect("open and import");
        assert_eq!(log.read_from(1, 10).await.unwrap(), written);
        assert_eq!(log.read_stream(&p.id).await.unwrap(), written);
        let first = written[0].commit.command_id();
        assert_eq!(log.find_command(first).await.unwrap().map(|a| (a.position, a.duplicate)), Some((1, true)));
        assert_eq!(log.read_audit(1, 10).await.unwrap()[0].record, Ok(seal));
        assert_eq!(p.append_next(&log).await.position, 4, "appends continue after the imported commits");
        assert!(dir.path().join("sled-imported/conf").exists() && !dir.path().join("conf").exists());
        within("close", log.close()).await;
        let log = EmbeddedLog::open(dir.path()).expect("reopen");
        assert_eq!(log.head().await.unwrap(), 4, "imported once");
    }

    /// A power loss during the last write leaves part of it on disk (zeros or stale bytes where the rest
    /// should be). That write was never acknowledged: the log opens with every commit before it, and the
    /// next append takes its position.
    #[tokio::test]
    async fn a_torn_last_write_is_dropped_and_every_commit_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let mut p = Problem::new();
        let mut written = Vec::new();
        for _ in 0..5 {
            written.push(p.append_next(&log).await);
        }
        within("close", log.close()).await;
        let whole = std::fs::read(dir.path().join("events.rlog")).unwrap();
        // Record starts, from the layout in `embedded/file.rs`: 8 bytes of magic, then `len` + 8 bytes each.
        let mut starts = vec![8];
        for _ in 0..5 {
            let at = *starts.last().unwrap();
            starts.push(at + 8 + u32::from_le_bytes(whole[at..at + 4].try_into().unwrap()) as usize);
        }
        let (last, end) = (starts[4], starts[5]);
        for (cut, fill) in [(last + 1, 0), (last + 8, 0xab), (last + 30, 0), ((last + end) / 2, 0xab), (end - 1, 0)] {
            let torn = tempfile::tempdir().unwrap();
            let mut bytes = whole.clone();
            bytes[cut..end].fill(fill);
            std::fs::write(torn.path().join("events.rlog"), &bytes).unwrap();
            let log = EmbeddedLog::open(torn.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(log.read_from(1, 10).await.unwrap(), written[..4], "cut at {cut}");
            let mut again = Problem { id: p.id.clone(), ..Problem::new() };
            for r in &written[..4] {
                let appended = rectify_eventlog::Appended {
                    position: r.position,
                    version: r.commit.last_version(),
                    duplicate: false,
                };
                again.applied(&r.commit, appended);
            }
            assert_eq!(again.append_next(&log).await.position, 5, "cut at {cut}: the position is free again");
        }
    }

    /// A commit larger than a record may be is refused before anything is written (the file could not
    /// read it back), and the log goes on.
    #[tokio::test]
    async fn a_commit_too_large_for_the_file_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let mut p = Problem::new();
        let huge = p.large_report(17 << 20);
        let refused = log.append(&huge, 0).await.unwrap_err();
        assert!(matches!(&refused, AppendError::Failed(why) if why.contains("over the log's")), "{refused:?}");
        assert_eq!(p.append_next(&log).await.position, 1, "nothing was written");
        within("close", log.close()).await;
        assert_eq!(EmbeddedLog::open(dir.path()).unwrap().head().await.unwrap(), 1);
    }

    /// Not a test: prints appends per second. `cargo test -p rectify-eventlog --release -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn throughput() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
        let sequential = 500;
        let start = std::time::Instant::now();
        let mut p = Problem::new();
        for _ in 0..sequential {
            p.append_next(&*log).await;
        }
        let rate = sequential as f64 / start.elapsed().as_secs_f64();
        println!("sequential: {rate:.0} appends/s");

        for writers in [16, 256, 1024] {
            let per_writer = 20_000 / writers;
            let start = std::time::Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|_| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut p = Problem::new();
                        for _ in 0..per_writer {
                            p.append_next(&*log).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let rate = (writers * per_writer) as f64 / start.elapsed().as_secs_f64();
            println!("{writers} concurrent writers: {rate:.0} appends/s");
        }
        let start = std::time::Instant::now();
        let head = log.head().await.unwrap();
        let mut tail = log.tail(1);
        for _ in 0..head {
            tail.next().await.unwrap().unwrap();
        }
        let rate = head as f64 / start.elapsed().as_secs_f64();
        println!("tail replay: {rate:.0} records/s");
    }
}
