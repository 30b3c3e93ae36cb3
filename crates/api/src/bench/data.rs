//! What the bench writes: reports of distinct new problems (the pipeline workloads) and whole problem
//! lifecycles spread over the real Guizhou counties, grids and sectors (the log the projector folds).

use crate::regions::Regions;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rectify_domain::problem::State;
use rectify_domain::values::{DeadlineClass, Evidence, Measure, Responsible, Sector, Severity, Source};
use rectify_domain::{Actor, AggregateId, AggregateKind, Command, CommandContext, Commit, RegionCode, Role, execute};

/// A grid and its county.
#[derive(Debug, Clone)]
pub struct Place {
    pub county: RegionCode,
    pub grid: String,
}

/// Every grid of the reference data, in a fixed order.
pub fn places(regions: &Regions) -> Vec<Place> {
    let mut out: Vec<Place> = regions.grids().map(|g| Place { county: g.county, grid: g.id.clone() }).collect();
    out.sort_by(|a, b| a.grid.cmp(&b.grid));
    out
}

/// The county bureau that reports problems in `county` (and a second one that signs them off: whoever
/// reported may not accept).
pub fn bureau(county: RegionCode, n: u8) -> Actor {
    Actor { id: format!("bench-bureau-{county}-{n}"), role: Role::CountyBureau, region: county, grid: None }
}

/// Business time of the `i`-th fact: a minute apart from the start of 2021.
fn at(i: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).single().expect("a valid time") + Duration::minutes(i as i64)
}

pub fn context(actor: &Actor, command_id: String, occurred_at: DateTime<Utc>) -> CommandContext {
    CommandContext {
        actor: actor.clone(),
        occurred_at,
        recorded_at: Utc::now(),
        correlation_id: command_id.clone(),
        command_id,
    }
}

/// The id of problem `i` of run `run` in `county`.
pub fn problem_id(county: RegionCode, run: &str, i: u64) -> AggregateId {
    AggregateId::new(AggregateKind::Problem, county, &format!("{run}_{i}")).expect("a valid id suffix")
}

/// The description every reported problem carries (sizes stay realistic: ~900 bytes per commit).
pub const DESCRIPTION: &str = "Untreated wastewater from the phosphogypsum yard seeps into the river below the \
    outfall; the leachate collection pond is full and its liner is torn.";

/// A report of a new problem at `place`.
pub fn report(place: &Place, i: u64) -> Command {
    Command::ReportProblem {
        region: place.county,
        grid: place.grid.clone(),
        sector: Sector::ALL[(i % Sector::ALL.len() as u64) as usize],
        source: Source { name: format!("Bench Chemical Co. No. {i}"), credit_code: String::new() },
        severity: Severity::General,
        description: DESCRIPTION.into(),
        inspection: None,
    }
}

/// One report of a new problem, ready for the pipeline: (id, context, command).
pub fn new_problem(places: &[Place], run: &str, i: u64) -> (AggregateId, CommandContext, Command) {
    let place = &places[(i as usize * 7919) % places.len()];
    let id = problem_id(place.county, run, i);
    let ctx = context(&bureau(place.county, 0), format!("{run}-cmd-{i}"), at(i));
    (id, ctx, report(place, i))
}

/// The commit the pipeline would append for [`new_problem`] `i` (same bytes, same size): the raw baselines
/// write these.
pub fn new_problem_commit(places: &[Place], run: &str, i: u64) -> Commit {
    let (id, ctx, command) = new_problem(places, run, i);
    execute(&id, &State::default(), &ctx, &command).expect("a valid report")
}

fn evidence(i: u64) -> Vec<Evidence> {
    vec![Evidence {
        sha256: format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        media_type: "image/jpeg".into(),
        uri: format!("https://evidence.example/bench/{i}.jpg"),
    }]
}

/// Problems whose lifecycles advance together, one step at a time (so the log interleaves many problems,
/// as a real one does).
pub const GROUP: usize = 1024;

/// One command of a lifecycle: its stream, who sends it, what, and its business time.
pub type Planned = (AggregateId, Actor, Command, DateTime<Utc>);

/// The commands of step `step` (0..=5) of problem `i`: report (with an inspection first for every third
/// problem), deadline, assignment, progress (plus a penalty for every tenth), submission, acceptance.
/// `None` once the lifecycle is over.
pub fn lifecycle_step(places: &[Place], run: &str, i: u64, step: usize) -> Option<Vec<Planned>> {
    let place = &places[(i as usize * 7919) % places.len()];
    let id = problem_id(place.county, run, i);
    let reporter = bureau(place.county, 0);
    let decider = bureau(place.county, 1);
    // Business days vary so that months and days-to-rectify spread over many counter rows.
    let found = at(i * 5);
    let days = |d: u64| found + Duration::days(d as i64) + Duration::hours((i % 24) as i64);
    let due = days(30 + i % 60);
    let mut out = Vec::new();
    match step {
        0 => {
            if i.is_multiple_of(3) {
                let inspection = AggregateId::new(AggregateKind::Inspection, place.county, &format!("{run}_i{i}"))
                    .expect("a valid id");
                let command = Command::RecordInspection {
                    region: place.county,
                    grid: place.grid.clone(),
                    sector: Sector::ALL[(i % 9) as usize],
                    source: Source { name: format!("Bench Chemical Co. No. {i}"), credit_code: String::new() },
                    problems_found: 1,
                    notes: String::new(),
                };
                out.push((inspection, reporter.clone(), command, found));
            }
            out.push((id, reporter, report(place, i), found));
        }
        1 => {
            let class = if i.is_multiple_of(4) { DeadlineClass::Immediate } else { DeadlineClass::TimeLimited };
            out.push((id, reporter, Command::SetDeadline { class, due }, days(1)));
        }
        2 => {
            let responsible = Responsible {
                unit: format!("Bench Chemical Co. No. {i}"),
                person: Some("Zhang Wei".into()),
                actor_id: None,
            };
            out.push((id, reporter, Command::Assign { responsible }, days(2)));
        }
        3 => {
            let note = "Leachate pumped out; liner repair contracted.".to_owned();
            out.push((id.clone(), reporter.clone(), Command::ReportProgress { note, evidence: evidence(i) }, days(5)));
            if i.is_multiple_of(10) {
                let measure = Measure::Penalty { amount_fen: 1_000_000 + (i % 1000) * 100 };
                let command =
                    Command::RecordEnforcement { measure, case_no: format!("QJH-2021-{i}"), note: String::new() };
                out.push((id, reporter, command, days(6)));
            }
        }
        4 => {
            let summary = "Liner replaced, seepage stopped, river sampled clean.".to_owned();
            out.push((id, reporter, Command::Submit { summary, evidence: evidence(i + 1) }, days(10 + i % 70)));
        }
        5 => out.push((id, decider, Command::Accept { comment: String::new() }, days(12 + i % 80))),
        _ => return None,
    }
    Some(out)
}

/// Executes `command` on `state` (a bench history is always valid).
pub fn commit(
    id: &AggregateId,
    state: &State,
    actor: &Actor,
    command: &Command,
    command_id: String,
    occurred_at: DateTime<Utc>,
) -> Commit {
    let ctx = context(actor, command_id, occurred_at);
    execute(id, state, &ctx, command).unwrap_or_else(|e| panic!("bench command {} on {id}: {e}", command.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycles_are_valid() {
        let regions = Regions::guizhou();
        let places = places(&regions);
        for i in 0..40 {
            let mut states = std::collections::HashMap::<AggregateId, State>::new();
            for step in 0.. {
                let Some(commands) = lifecycle_step(&places, "t", i, step) else { break };
                for (n, (id, actor, command, at)) in commands.into_iter().enumerate() {
                    let state = states.remove(&id).unwrap_or_default();
                    let c = commit(&id, &state, &actor, &command, format!("t-{i}-{step}-{n}"), at);
                    states.insert(id, c.events.iter().fold(state, rectify_domain::evolve));
                }
            }
            let problem = states.values().find_map(|s| s.problem().cloned()).expect("a problem");
            assert_eq!(problem.status, rectify_domain::Status::Closed);
        }
    }
}
