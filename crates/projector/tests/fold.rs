//! Views are a pure fold of the log: live views, built batch by batch while commands arrive, equal a fresh
//! rebuild of the same log; and the counters keep their invariants in every scope.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rectify_domain::values::{DeadlineClass, Evidence, Measure, Sector, Severity, Source};
use rectify_domain::{Actor, AggregateId, AggregateKind, Command, CommandContext, RegionCode, Role, execute};
use rectify_eventlog::{EmbeddedLog, EventLog};
use rectify_projector::{CounterKey, Counters, Projector, ViewStore};
use std::collections::HashMap;
use std::sync::Arc;

const COUNTIES: [&str; 4] = ["520102", "520121", "520302", "520402"];

fn actor(id: &str) -> Actor {
    Actor { id: id.into(), role: Role::Province, region: RegionCode::parse("520000").unwrap(), grid: None }
}

fn evidence() -> Vec<Evidence> {
    vec![Evidence { sha256: "ab".repeat(32), media_type: "image/jpeg".into(), uri: "https://e.example/1".into() }]
}

/// A random command for an existing problem: usually the next step of its lifecycle, sometimes any command
/// (most of those are refused, which is part of the mix).
fn random_command(rng: &mut StdRng, at: DateTime<Utc>, state: &rectify_domain::State) -> Command {
    use rectify_domain::Status::*;
    let due = at + Duration::days(rng.random_range(-30..90));
    let status = state.problem().map(|p| p.status);
    let pending_extension = state.problem().is_some_and(|p| p.pending_extension.is_some());
    let step = match status {
        _ if rng.random_bool(0.25) => rng.random_range(0..14),
        Some(Reported) => 0,
        Some(Rectifying) if pending_extension => [3, 3, 4][rng.random_range(0..3)],
        Some(Rectifying) => [1, 2, 5, 5, 5][rng.random_range(0..5)],
        Some(PendingAcceptance) => [7, 7, 9][rng.random_range(0..3)],
        Some(Closed) => [10, 13, 13][rng.random_range(0..3)],
        _ => rng.random_range(0..14),
    };
    match step {
        0 => Command::SetDeadline {
            class: if rng.random_bool(0.3) { DeadlineClass::Immediate } else { DeadlineClass::TimeLimited },
            due,
        },
        1 => Command::ReportProgress { note: "progress".into(), evidence: evidence() },
        2 => Command::RequestExtension { reason: "rain".into(), due: due + Duration::days(60) },
        3 => Command::ApproveExtension { comment: String::new() },
        4 => Command::RejectExtension { reason: "no".into() },
        5 | 6 => Command::Submit { summary: "done".into(), evidence: evidence() },
        7 | 8 => Command::Accept { comment: String::new() },
        9 => Command::Reject { reason: "not yet".into() },
        10 => Command::Reopen { reason: "came back".into(), due: None },
        11 => Command::Void { reason: "duplicate".into() },
        12 => Command::ListSupervision { reason: "serious".into() },
        _ => Command::RecordEnforcement {
            measure: match rng.random_range(0..6) {
                0 => Measure::Penalty { amount_fen: rng.random_range(1..10_000_000) },
                1 => {
                    Measure::DailyPenalty { days: rng.random_range(1..30), amount_fen: rng.random_range(1..10_000_000) }
                }
                2 => Measure::SealSeizure,
                3 => Measure::ProductionLimit,
                4 => Measure::DetentionReferral,
                _ => Measure::CriminalReferral,
            },
            case_no: "X-1".into(),
            note: String::new(),
        },
    }
}

/// Appends `n` random commands (reports, inspections and actions on earlier problems) to `log`.
async fn random_history(log: &dyn EventLog, seed: u64, n: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut problems: Vec<AggregateId> = Vec::new();
    let mut states: HashMap<AggregateId, (rectify_domain::State, u64)> = HashMap::new();
    let start = Utc.with_ymd_and_hms(2020, 3, 20, 0, 0, 0).unwrap();
    let mut appended = 0;
    for i in 0..n {
        let at = start + Duration::hours(i as i64);
        let county = RegionCode::parse(COUNTIES[rng.random_range(0..COUNTIES.len())]).unwrap();
        let grid = format!("{county}-G0{}", rng.random_range(1..4));
        let sector = Sector::ALL[rng.random_range(0..Sector::ALL.len())];
        let source = Source { name: "a source".into(), credit_code: String::new() };
        let (id, command) = match rng.random_range(0..16) {
            0 => (
                AggregateId::new(AggregateKind::Inspection, county, &format!("i{i}")).unwrap(),
                Command::RecordInspection {
                    region: county,
                    grid,
                    sector,
                    source,
                    problems_found: 1,
                    notes: String::new(),
                },
            ),
            1 | 2 => (
                AggregateId::new(AggregateKind::Problem, county, &format!("p{i}")).unwrap(),
                Command::ReportProblem {
                    region: county,
                    grid,
                    sector,
                    source,
                    severity: Severity::General,
                    description: "found".into(),
                    inspection: None,
                },
            ),
            _ if problems.is_empty() => continue,
            _ => {
                let id = problems[rng.random_range(0..problems.len())].clone();
                let state = states.get(&id).map(|s| s.0.clone()).unwrap_or_default();
                (id, random_command(&mut rng, at, &state))
            }
        };
        // Two province officers, so that separation of duties lets one accept what the other reported.
        let who = if rng.random_bool(0.5) { "province-a" } else { "province-b" };
        let ctx = CommandContext {
            actor: actor(who),
            occurred_at: at,
            recorded_at: at,
            command_id: format!("cmd-{seed}-{i}"),
            correlation_id: format!("cmd-{seed}-{i}"),
        };
        let (state, last) = states.get(&id).cloned().unwrap_or_default();
        let Ok(commit) = execute(&id, &state, &ctx, &command) else { continue };
        let done = log.append(&commit, last).await.expect("append");
        let next = commit.events.iter().fold(state, rectify_domain::evolve);
        if matches!(command, Command::ReportProblem { .. }) {
            problems.push(id.clone());
        }
        states.insert(id, (next, done.position));
        appended += 1;
    }
    appended
}

/// The counter key of a region, all sectors.
fn region(code: &str) -> CounterKey {
    CounterKey::region(RegionCode::parse(code).expect("a region code"))
}

fn counters(store: &ViewStore) -> Vec<(String, Counters)> {
    store
        .dump()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("c:"))
        .map(|(k, v)| (k, serde_json::from_value(v).unwrap()))
        .collect()
}

/// Folds a random history live (while it is written) and from scratch, and compares.
async fn live_equals_rebuild(log: Arc<dyn EventLog>, dir: &std::path::Path) {
    let live = ViewStore::open(&dir.join("live")).unwrap();
    let (projector, handle) = Projector::new(log.clone(), live.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(projector.run(async move {
        let _ = stopped.await;
    }));

    // The projector folds while the history is being written, in whatever batches it happens to see.
    let appended = random_history(&*log, 7, 4000).await;
    assert!(appended > 1500, "the mix should mostly be accepted commands, got {appended}");
    let head = log.head().await.unwrap();
    assert!(handle.wait_for(head, std::time::Duration::from_secs(60)).await, "live views did not catch up");
    let _ = stop.send(());
    running.await.unwrap();

    let rebuilt = ViewStore::open(&dir.join("rebuilt")).unwrap();
    let (fresh, _) = Projector::new(log.clone(), rebuilt.clone()).unwrap();
    assert_eq!(fresh.catch_up().await.unwrap(), head);
    assert_eq!(live.checkpoint().unwrap(), rebuilt.checkpoint().unwrap());
    let (a, b) = (live.dump().unwrap(), rebuilt.dump().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "live and rebuilt views differ");
    }
    // The command index: a row per commit, unless the log keeps one itself.
    let indexed = a.iter().filter(|(k, _)| k.starts_with("i:")).count() as u64;
    assert_eq!(indexed, if log.remembers_every_command() { 0 } else { head }, "command rows");
    // The deadline index lists exactly the rows whose deadline the watcher still has to look at, by due time.
    let rows = live.ledger_page("", None, usize::MAX, |_| true).unwrap();
    let watched: Vec<_> = rows.iter().filter_map(rectify_projector::DeadlineKey::of).collect();
    assert!(watched.len() > 10 && watched.len() < rows.len(), "{} of {} rows watched", watched.len(), rows.len());
    let start = Utc.with_ymd_and_hms(2020, 3, 20, 0, 0, 0).unwrap();
    for days in [0, 30, 120, 240, 100_000] {
        let now = start + Duration::days(days);
        let mut expected: Vec<_> = watched.iter().filter(|k| k.due < now).cloned().collect();
        expected.sort();
        let listed = live.due_before(now).unwrap();
        assert_eq!(listed, expected.into_iter().map(|k| k.id).collect::<Vec<_>>(), "due before {now}");
    }
    let all = counters(&live);
    // The mix exercised the interesting paths, so the comparison above compared something.
    let province = &all.iter().find(|(k, _)| k == "c:520000|*").expect("province counters").1;
    assert!(
        province.fixed > 0 && province.voided > 0 && province.reopened > 0 && province.extensions > 0,
        "{province:?}"
    );
    assert!(province.inspections > 0 && province.penalty_fen > 0 && province.listed > 0 && province.closed_late > 0);
    // The trend and the distribution add up to the plain counters.
    let facet_sum = |prefix: &str, f: fn(&Counters) -> i64| -> i64 {
        all.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, c)| f(c)).sum()
    };
    assert_eq!(facet_sum("c:520000|*|month=", |c| c.found), province.found);
    assert_eq!(facet_sum("c:520000|*|month=", |c| c.fixed), province.fixed);
    // The days-to-rectify histogram is the distribution the ledger rows give.
    let mut expected = rectify_projector::Days::new();
    for p in rows.iter().filter_map(|r| r.state.problem()) {
        if let (rectify_domain::Status::Closed, Some(closed)) = (p.status, p.closed_at) {
            *expected.entry((closed - p.reported_at).num_seconds().max(0) / 86_400).or_default() += 1;
        }
    }
    assert!(expected.len() > 1, "the mix closed problems after different numbers of days: {expected:?}");
    assert_eq!(live.days(&region("520000")).unwrap(), expected);
    assert_eq!(expected.values().sum::<i64>(), province.fixed);
    let plain = all.iter().filter(|(k, _)| k.matches('|').count() == 1);
    for (key, c) in plain {
        assert!(c.fixed <= c.found, "{key}: fixed > found in {c:?}");
        assert_eq!(c.open, c.found - c.fixed, "{key}: open != found - fixed in {c:?}");
        assert!(c.overdue <= c.open && c.listed <= c.found, "{key}: {c:?}");
        assert_eq!(c.closed_on_time + c.closed_late, c.fixed, "{key}: {c:?}");
        assert!(c.immediate + c.time_limited <= c.found, "{key}: {c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_views_equal_a_rebuild_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    live_equals_rebuild(log, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_views_equal_a_rebuild_on_jetstream() {
    let nats = rectify_tests::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = rectify_eventlog::JetStreamConfig { url: nats.url(), ..Default::default() };
    let log = Arc::new(rectify_eventlog::JetStreamLog::connect(config).await.unwrap());
    live_equals_rebuild(log, dir.path()).await;
}

#[tokio::test]
async fn province_counts_equal_the_sum_of_its_prefectures_and_counties() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    random_history(&*log, 11, 1500).await;
    let store = ViewStore::open(&dir.path().join("views")).unwrap();
    let (projector, _) = Projector::new(log, store.clone()).unwrap();
    projector.catch_up().await.unwrap();
    let get = |scope: &str| store.counter(&region(scope)).unwrap();
    let province = get("520000");
    let sum = |scopes: &[&str]| scopes.iter().map(|s| get(s).found).sum::<i64>();
    assert!(province.found > 0);
    assert_eq!(province.found, sum(&["520100", "520300", "520400"]));
    assert_eq!(province.found, sum(&COUNTIES));
    let by_sector: i64 =
        Sector::ALL.iter().map(|s| store.counter(&region("520000").with_sector(Some(*s))).unwrap().found).sum();
    assert_eq!(province.found, by_sector);
    assert_eq!(province.inspections, sum_inspections(&store));
}

fn sum_inspections(store: &ViewStore) -> i64 {
    COUNTIES.iter().map(|c| store.counter(&region(c)).unwrap().inspections).sum()
}

/// A catch-up in many small batches (each written while the next is folded) with a ledger cache that keeps
/// dropping rows builds exactly the views of one batch folded at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_across_batches_and_cache_evictions_equals_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    random_history(&*log, 23, 3000).await;
    let head = log.head().await.unwrap();

    let whole = ViewStore::open(&dir.path().join("whole")).unwrap();
    let (projector, _) = Projector::new(log.clone(), whole.clone()).unwrap();
    assert_eq!(projector.with_sizes(1 << 20, 1 << 20).catch_up().await.unwrap(), head);

    // Some of these views existed before (a checkpoint ≠ 0): the cache is then not complete and reads sled.
    let pieces = ViewStore::open(&dir.path().join("pieces")).unwrap();
    let (first, _) = Projector::new(log.clone(), pieces.clone()).unwrap();
    first.with_sizes(13, 7).catch_up_to(head / 3, |_| {}).await.unwrap();
    let (rest, _) = Projector::new(log.clone(), pieces.clone()).unwrap();
    assert_eq!(rest.with_sizes(45, 5).catch_up().await.unwrap(), head);

    let (a, b) = (whole.dump().unwrap(), pieces.dump().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "views built in pieces differ from one batch");
    }
}
