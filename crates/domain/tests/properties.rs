//! Invariants of the Problem aggregate over random histories.
//!
//! A history is a report followed by random commands from a few actors (county bureaus A and B, the city
//! bureau, the province, and the system for overdue marks), each at a random later time. Commands the domain
//! refuses are dropped and the history goes on, as a real client's would.

mod support;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rectify_domain::values::Measure;
use rectify_domain::{
    Actor, Command, CommandContext, Commit, DomainError, GENESIS_HASH, State, Status, evolve, execute,
};
use support::*;

/// A command template, completed against the state when it runs (so that dates can be relative to the
/// deadline in force).
#[derive(Debug, Clone)]
enum Op {
    Deadline {
        days: i64,
        immediate: bool,
    },
    Assign,
    Progress {
        valid: bool,
    },
    RequestExtension {
        days: i64,
        reason: bool,
    },
    ApproveExtension,
    RejectExtension {
        reason: bool,
    },
    Submit {
        evidence: usize,
        valid: bool,
    },
    Accept,
    Reject {
        reason: bool,
    },
    Reopen {
        days: Option<i64>,
    },
    Void {
        reason: bool,
    },
    MarkOverdue {
        current: bool,
    },
    List,
    Lift,
    Enforce {
        kind: u8,
        amount: u64,
        days: u32,
    },
    /// The next step of the happy path from the current state, so that histories get somewhere.
    Advance,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (-2i64..20, any::<bool>()).prop_map(|(days, immediate)| Op::Deadline { days, immediate }),
        1 => Just(Op::Assign),
        3 => prop::bool::weighted(0.8).prop_map(|valid| Op::Progress { valid }),
        4 => (-3i64..15, prop::bool::weighted(0.9)).prop_map(|(days, reason)| Op::RequestExtension { days, reason }),
        4 => Just(Op::ApproveExtension),
        2 => prop::bool::weighted(0.9).prop_map(|reason| Op::RejectExtension { reason }),
        8 => (0usize..3, prop::bool::weighted(0.9)).prop_map(|(evidence, valid)| Op::Submit { evidence, valid }),
        8 => Just(Op::Accept),
        3 => prop::bool::weighted(0.9).prop_map(|reason| Op::Reject { reason }),
        3 => prop::option::of(-2i64..20).prop_map(|days| Op::Reopen { days }),
        1 => any::<bool>().prop_map(|reason| Op::Void { reason }),
        4 => prop::bool::weighted(0.8).prop_map(|current| Op::MarkOverdue { current }),
        2 => Just(Op::List),
        2 => Just(Op::Lift),
        10 => Just(Op::Advance),
        2 => (0u8..6, 0u64..3, 0u32..3).prop_map(|(kind, amount, days)| Op::Enforce { kind, amount: amount * 50_000, days }),
    ]
}

/// The actors of the generated histories (the system is added for overdue marks).
fn actors() -> [Actor; 4] {
    [county_a(), county_b(), city(), province()]
}

/// One generated step: who (an index into [`actors`]), what, and how many hours after the previous step.
#[derive(Debug, Clone)]
struct Gen {
    actor: usize,
    op: Op,
    hours: i64,
}

fn step() -> impl Strategy<Value = Gen> {
    (prop::sample::select(vec![0usize, 0, 0, 1, 2, 2, 3, 3]), op(), 0i64..96).prop_map(|(actor, op, hours)| Gen {
        actor,
        op,
        hours,
    })
}

/// The reporter (anyone but county B, who cannot reach county A) and the steps after the report.
fn history() -> impl Strategy<Value = (usize, Vec<Gen>)> {
    (prop::sample::select(vec![0usize, 2, 3]), prop::collection::vec(step(), 0..50))
}

fn reason(present: bool) -> String {
    if present { "because".into() } else { " ".into() }
}

impl Op {
    fn command(&self, state: &State, now: DateTime<Utc>) -> Command {
        let due = state.problem().and_then(|p| p.due).unwrap_or(now);
        match self {
            Op::Deadline { days, immediate } => {
                let class = if *immediate {
                    rectify_domain::values::DeadlineClass::Immediate
                } else {
                    rectify_domain::values::DeadlineClass::TimeLimited
                };
                Command::SetDeadline { class, due: now + Duration::days(*days) }
            }
            Op::Assign => Command::Assign { responsible: responsible(Some("entity-1")) },
            Op::Progress { valid } => {
                let mut e = evidence(1);
                if !valid {
                    e.sha256.make_ascii_uppercase();
                }
                Command::ReportProgress { note: "work goes on".into(), evidence: vec![e] }
            }
            Op::RequestExtension { days, reason: r } => {
                Command::RequestExtension { reason: reason(*r), due: due + Duration::days(*days) }
            }
            Op::ApproveExtension => Command::ApproveExtension { comment: String::new() },
            Op::RejectExtension { reason: r } => Command::RejectExtension { reason: reason(*r) },
            Op::Submit { evidence: n, valid } => {
                let mut ev: Vec<_> = (0..*n as u8).map(evidence).collect();
                if !valid && let Some(e) = ev.first_mut() {
                    e.sha256.truncate(10);
                }
                Command::Submit { summary: "done".into(), evidence: ev }
            }
            Op::Accept => Command::Accept { comment: String::new() },
            Op::Reject { reason: r } => Command::Reject { reason: reason(*r) },
            Op::Reopen { days } => {
                Command::Reopen { reason: "back".into(), due: days.map(|d| now + Duration::days(d)) }
            }
            Op::Void { reason: r } => Command::Void { reason: reason(*r) },
            Op::MarkOverdue { current } => {
                Command::MarkOverdue { due: if *current { due } else { due - Duration::days(1) } }
            }
            Op::List => Command::ListSupervision { reason: "serious".into() },
            Op::Lift => Command::LiftSupervision { reason: "better".into() },
            Op::Advance => match state.problem().map(|p| p.status) {
                Some(Status::Reported) => Op::Deadline { days: 7, immediate: false }.command(state, now),
                Some(Status::Rectifying) => Op::Submit { evidence: 1, valid: true }.command(state, now),
                Some(Status::PendingAcceptance) => Op::Accept.command(state, now),
                Some(Status::Closed) => Op::Reopen { days: None }.command(state, now),
                _ => Op::Progress { valid: true }.command(state, now),
            },
            Op::Enforce { kind, amount, days } => {
                let measure = match kind {
                    0 => Measure::Penalty { amount_fen: *amount },
                    1 => Measure::DailyPenalty { days: *days, amount_fen: *amount },
                    2 => Measure::SealSeizure,
                    3 => Measure::ProductionLimit,
                    4 => Measure::DetentionReferral,
                    _ => Measure::CriminalReferral,
                };
                Command::RecordEnforcement { measure, case_no: String::new(), note: String::new() }
            }
        }
    }
}

/// What running a generated history produced.
struct Run {
    commits: Vec<Commit>,
    /// The state after every accepted commit, folded one envelope at a time (`states[0]` is the empty stream).
    states: Vec<State>,
    /// Every attempt: the state before, the context and command, and the outcome.
    attempts: Vec<(State, CommandContext, Command, Result<Commit, DomainError>)>,
}

impl Run {
    fn state(&self) -> &State {
        self.states.last().unwrap()
    }
}

fn context(actor: Actor, at: DateTime<Utc>, n: usize) -> CommandContext {
    CommandContext {
        actor,
        occurred_at: at,
        recorded_at: at,
        command_id: format!("cmd-{n}"),
        correlation_id: format!("corr-{n}"),
    }
}

fn problem_id() -> rectify_domain::AggregateId {
    rectify_domain::AggregateId::parse("P520102-prop").unwrap()
}

fn run(reporter: usize, steps: &[Gen]) -> Run {
    let mut now = day(0);
    let mut out = Run { commits: Vec::new(), states: vec![State::default()], attempts: Vec::new() };
    let report_step = (actors()[reporter].clone(), None);
    let later = steps.iter().map(|g| {
        let actor = if matches!(g.op, Op::MarkOverdue { .. }) { system() } else { actors()[g.actor].clone() };
        (actor, Some(g))
    });
    for (n, (actor, g)) in std::iter::once(report_step).chain(later).enumerate() {
        let before = out.state().clone();
        let command = match g {
            None => report().command,
            Some(g) => {
                now += Duration::hours(g.hours);
                g.op.command(&before, now)
            }
        };
        let ctx = context(actor, now, n);
        let result = execute(&problem_id(), &before, &ctx, &command);
        if let Ok(commit) = &result {
            out.states.push(commit.events.iter().fold(before.clone(), evolve));
            out.commits.push(commit.clone());
        }
        out.attempts.push((before, ctx, command, result));
    }
    out
}

proptest! {
    // Failing cases are kept next to this file (the default looks for a lib.rs, which tests/ lacks).
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn version_counts_the_events((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        let envelopes: Vec<_> = r.commits.iter().flat_map(|c| &c.events).collect();
        prop_assert_eq!(r.state().version, envelopes.len() as u64);
        for (i, e) in envelopes.iter().enumerate() {
            prop_assert_eq!(e.version, i as u64 + 1);
            prop_assert_eq!(&e.event_id, &format!("P520102-prop/{}", i + 1));
        }
    }

    #[test]
    fn the_hash_chain_verifies((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        let mut prev = GENESIS_HASH.to_owned();
        for commit in &r.commits {
            prop_assert_eq!(commit.verify_chain(&prev), Ok(()));
            prev = commit.last_hash().to_owned();
        }
        prop_assert_eq!(&r.state().last_hash, &prev);
    }

    #[test]
    fn altering_any_byte_of_an_event_payload_breaks_the_chain(
        (reporter, steps) in history(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        new in any::<u8>(),
    ) {
        let r = run(reporter, &steps);
        let i = which.index(r.commits.len());
        let (commit, prev) = (&r.commits[i], if i == 0 { GENESIS_HASH } else { r.commits[i - 1].last_hash() });
        let bytes = commit.encode();
        // The payload of the commit's (only) event, located in the stored bytes.
        let payload = serde_json::to_vec(&commit.events[0].event).unwrap();
        let start = bytes.windows(payload.len()).position(|w| w == payload).expect("payload is stored verbatim");
        let k = start + at.index(payload.len());
        prop_assume!(bytes[k] != new);
        let mut tampered = bytes.clone();
        tampered[k] = new;
        match Commit::decode(&tampered) {
            // Not even an event any more.
            Err(_) => {}
            // A byte that does not change the meaning (e.g. the name of a defaulted field holding its
            // default): the canonical bytes, and so the hash, are the same.
            Ok(decoded) if decoded == *commit => {}
            Ok(decoded) => prop_assert!(decoded.verify_chain(prev).is_err(), "undetected: {}", String::from_utf8_lossy(&tampered)),
        }
    }

    #[test]
    fn a_closed_problem_accepts_no_progress((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        for (before, ctx, command, result) in &r.attempts {
            if before.problem().is_some_and(|p| p.status == Status::Closed) && matches!(command, Command::ReportProgress { .. }) {
                prop_assert!(result.is_err(), "progress accepted on a closed problem by {}", ctx.actor.id);
            }
        }
        // And whoever tries, with a perfectly good report, at any closed point of the history.
        for state in r.states.iter().filter(|s| s.problem().is_some_and(|p| p.status == Status::Closed)) {
            for actor in actors().into_iter().chain([officer()]) {
                let ctx = context(actor, day(100), 0);
                let command = Command::ReportProgress { note: "more".into(), evidence: vec![evidence(9)] };
                let result = execute(&problem_id(), state, &ctx, &command);
                prop_assert!(result.is_err());
            }
        }
    }

    #[test]
    fn who_reported_or_submitted_never_decides((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        for (before, ctx, command, result) in &r.attempts {
            let Some(p) = before.problem() else { continue };
            if matches!(command, Command::Accept { .. } | Command::Reject { .. }) && result.is_ok() {
                prop_assert_ne!(&ctx.actor.id, &p.reported_by);
                prop_assert_ne!(Some(&ctx.actor.id), p.submitted_by.as_ref());
            }
        }
        // And at every point awaiting acceptance, both are refused outright.
        for state in &r.states {
            let Some(p) = state.problem().filter(|p| p.status == Status::PendingAcceptance) else { continue };
            let deciders = [county_a(), county_a2(), city(), province()];
            for actor in deciders.into_iter().filter(|a| a.id == p.reported_by || Some(&a.id) == p.submitted_by.as_ref()) {
                for command in [Command::Accept { comment: String::new() }, Command::Reject { reason: "no".into() }] {
                    let ctx = context(actor.clone(), day(100), 0);
                    let result = execute(&problem_id(), state, &ctx, &command);
                    prop_assert!(matches!(result, Err(DomainError::SeparationOfDuties(_))), "{:?}", result);
                }
            }
        }
    }

    #[test]
    fn replay_equals_the_incremental_state((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        let envelopes: Vec<_> = r.commits.iter().flat_map(|c| &c.events).collect();
        prop_assert_eq!(&State::replay(envelopes.iter().copied()), r.state());
        // Every prefix too.
        for (n, state) in r.states.iter().enumerate() {
            let upto: usize = r.commits[..n].iter().map(|c| c.events.len()).sum();
            prop_assert_eq!(&State::replay(envelopes[..upto].iter().copied()), state);
        }
    }

    #[test]
    fn commits_survive_encoding((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        for commit in &r.commits {
            // The bytes sealing wrote while hashing are the commit's serialization.
            prop_assert_eq!(commit.encode(), serde_json::to_vec(commit).unwrap());
            let decoded = Commit::decode(&commit.encode()).unwrap();
            prop_assert_eq!(&decoded, commit);
            prop_assert_eq!(decoded.encode(), commit.encode());
        }
    }

    #[test]
    fn refusals_and_acceptances_follow_the_state((reporter, steps) in history()) {
        let r = run(reporter, &steps);
        for (before, ctx, command, result) in &r.attempts {
            let Ok(commit) = result else { continue };
            let Some(p) = before.problem() else { continue };
            // County B never reaches county A's problem; only the system marks overdue.
            prop_assert_ne!(&ctx.actor.id, "county-b");
            prop_assert_eq!(matches!(command, Command::MarkOverdue { .. }), ctx.actor.id == "system");
            // Nothing but enforcement happens to a finished problem, reopen aside.
            if !p.status.is_open() {
                prop_assert!(
                    matches!(command, Command::RecordEnforcement { .. } | Command::Reopen { .. } | Command::LiftSupervision { .. }),
                    "{} on a {} problem", command.name(), p.status
                );
                prop_assert!(p.status == Status::Closed || !matches!(command, Command::Reopen { .. }), "reopened a {} problem", p.status);
            }
            // Deadlines only move later by extension.
            if let Command::ApproveExtension { .. } = command {
                let after = commit.events.iter().fold(before.clone(), evolve);
                prop_assert!(after.problem().unwrap().due > p.due);
            }
        }
        // Flags never outlive the problem's end.
        let p = r.state().problem().unwrap();
        if !p.status.is_open() {
            prop_assert!(!p.overdue && p.pending_extension.is_none());
        }
    }
}

/// Exhaustively: every single-byte change to any event payload of a full lifecycle is either undecodable,
/// meaningless, or caught by the chain.
#[test]
fn every_byte_of_every_payload_is_covered_by_the_chain() {
    let s = given(&[
        report(),
        assign(Some("entity-1")),
        deadline(day(10)),
        some_progress(),
        request_extension("rain", day(20)),
        approve_extension(),
        mark_overdue(day(20)).at(day(21)),
        list("serious"),
        enforce(Measure::DailyPenalty { days: 3, amount_fen: 20_000 }),
        some_submit(),
        reject("still leaking"),
        some_submit().by(county_a()),
        accept().by(city()),
        reopen("back", Some(day(40))),
        lift("better"),
        void("merged"),
    ]);
    let (mut caught, mut undecodable, mut meaningless) = (0, 0, 0);
    let mut prev = GENESIS_HASH.to_owned();
    for commit in &s.commits {
        let bytes = commit.encode();
        let payload = serde_json::to_vec(&commit.events[0].event).unwrap();
        let start = bytes.windows(payload.len()).position(|w| w == payload).unwrap();
        for k in start..start + payload.len() {
            for new in [bytes[k] ^ 0x01, bytes[k] ^ 0x20, b'0', b'x', b'"'] {
                if new == bytes[k] {
                    continue;
                }
                let mut tampered = bytes.clone();
                tampered[k] = new;
                match Commit::decode(&tampered) {
                    Err(_) => undecodable += 1,
                    // e.g. `2024-03-11t08:00:00z`: the same instant, so the same canonical bytes.
                    Ok(decoded) if decoded == *commit => meaningless += 1,
                    Ok(decoded) => {
                        assert!(
                            decoded.verify_chain(&prev).is_err(),
                            "undetected: {}",
                            String::from_utf8_lossy(&tampered)
                        );
                        caught += 1;
                    }
                }
            }
        }
        prev = commit.last_hash().to_owned();
    }
    eprintln!("caught {caught}, undecodable {undecodable}, meaningless {meaningless}");
    assert!(caught > 1000, "caught {caught}, undecodable {undecodable}, meaningless {meaningless}");
}

/// The generator is worth its name: over a few hundred histories every event type occurs, and so do the
/// interesting situations (closed and then reopened, refused acceptance by the reporter).
#[test]
fn histories_reach_every_event_and_state() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut lengths = Vec::new();
    for _ in 0..300 {
        let (reporter, steps) = history().new_tree(&mut runner).unwrap().current();
        let r = run(reporter, &steps);
        lengths.push(r.state().version);
        for e in r.commits.iter().flat_map(|c| &c.events) {
            *seen.entry(e.event.type_name()).or_default() += 1;
        }
        for (_, _, command, result) in &r.attempts {
            if let Err(e) = result {
                let kind = format!("{}: {}", command.name(), e).split(':').take(2).collect::<Vec<_>>().join(":");
                *refusals.entry(kind).or_default() += 1;
            }
        }
    }
    eprintln!(
        "events: {seen:#?}\nrefusals: {refusals:#?}\nmean length {}",
        lengths.iter().sum::<u64>() as f64 / lengths.len() as f64
    );
    for name in [
        "problem_reported",
        "deadline_set",
        "responsible_assigned",
        "progress_reported",
        "extension_requested",
        "extension_approved",
        "extension_rejected",
        "rectification_submitted",
        "rectification_accepted",
        "rectification_rejected",
        "problem_reopened",
        "problem_voided",
        "problem_overdue",
        "supervision_listed",
        "supervision_lifted",
        "enforcement_recorded",
    ] {
        assert!(seen.get(name).copied().unwrap_or(0) >= 5, "{name} occurs in fewer than 5 histories: {seen:?}");
    }
    assert!(refusals.keys().any(|k| k.contains("separation of duties")), "{refusals:?}");
}
