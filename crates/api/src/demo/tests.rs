//! The scenario keeps its promises: the Guizhou parameters are self-consistent, a generated plan is valid for
//! the domain and folds to exactly its figures, and a small scenario loaded through the real pipeline shows
//! exactly those figures in the views and the statistics endpoints.

use super::*;
use crate::watcher::Watcher;
use rectify_domain::problem::State;
use rectify_domain::region::Level;
use rectify_domain::{Command, RegionCode, execute};
use rectify_projector::{Changes, Counters, Empty};
use std::collections::{BTreeSet, HashMap};

fn small() -> Params {
    Params::guizhou().scaled(0.02).expect("a valid scaled scenario")
}

#[test]
fn the_guizhou_parameters_are_the_published_figures_and_add_up() {
    let params = Params::guizhou();
    let f = params.figures().unwrap();
    // The published figures.
    assert_eq!((f.inspections, f.found, f.fixed, f.open), (37_833, 10_836, 10_245, 591));
    assert_eq!(f.found, f.fixed + f.open);
    assert_eq!(f.listed, 115);
    assert_eq!(f.penalties, 2_710);
    assert!(f.penalty_fen >= 272_000_000 * 100, "fines of ¥272M or more");
    assert_eq!(f.daily_penalties, 3);
    assert!(f.daily_penalty_fen >= 5_600_000 * 100, "daily penalties of ¥5.6M or more");
    assert_eq!((f.seal_seizures, f.production_limits, f.detention_referrals, f.criminal_referrals), (63, 16, 158, 28));
    assert_eq!(params.period.start.to_string(), "2020-03-20");
    assert_eq!(params.period.end.to_string(), "2022-05-31");
    // What follows from them.
    assert_eq!(f.immediate + f.time_limited + f.open_reported, f.found, "every problem but the newest has a deadline");
    assert_eq!(f.closed_on_time + f.closed_late, f.fixed);
    assert!(f.open_reported + f.open_pending <= f.open);
    assert!(f.overdue <= f.open - f.open_reported);
    assert!(f.extensions <= f.extension_requests && f.extension_requests <= f.time_limited);
    assert!(f.immediate <= f.fixed);
    let shares = |v: &[f64]| (v.iter().sum::<f64>() - 1.0).abs() < 1e-9;
    assert!(shares(&params.sectors.values().copied().collect::<Vec<_>>()), "sector shares add up to 1");
    assert!(shares(&[params.severity.general, params.severity.major, params.severity.serious]));
    assert_eq!(params.sectors.len(), 9, "a share for each of the nine sectors");
    let regions = Regions::guizhou();
    for p in regions.all().filter(|r| r.level == Level::Prefecture) {
        assert!(params.prefectures.contains_key(&p.code.to_string()), "a weight for {}", p.code);
    }
}

#[test]
fn scaling_keeps_the_shape_and_the_identities() {
    for scale in [0.005, 0.02, 0.1, 0.5, 1.0] {
        let f = Params::guizhou().scaled(scale).unwrap().figures().unwrap();
        assert_eq!(f.found, f.fixed + f.open, "at {scale}");
        assert!(f.inspections >= f.found);
    }
    assert!(Params::guizhou().scaled(0.0).is_err());
    assert!(Params::guizhou().scaled(1.5).is_err());
    let bad = GUIZHOU_2020.replace("fixed = 10_245", "fixed = 20_000");
    assert!(Params::parse(&bad).unwrap_err().to_string().contains("exceeds"), "fixed > found is refused");
    let unknown = GUIZHOU_2020.replace("[period]", "colour = \"green\"\n[period]");
    assert!(Params::parse(&unknown).is_err(), "unknown keys are refused");
}

use scenario::GUIZHOU_2020;

/// Runs every step through the domain (authorize, decide, seal) and the view fold, in memory; panics on a
/// refusal. Returns the folded views.
fn fold(plan: &Plan) -> Changes {
    let mut states: HashMap<u32, State> = HashMap::new();
    let mut changes = Changes::default();
    for (position, step) in plan.steps.iter().enumerate() {
        let id = &plan.streams[step.stream as usize];
        let state = states.entry(step.stream).or_default();
        assert_eq!(state.version, u64::from(step.seq), "steps of {id} in order");
        let ctx = plan.context(step, plan.as_of);
        let commit = execute(id, state, &ctx, &step.command)
            .unwrap_or_else(|e| panic!("{} refused on {id} at {}: {e}", step.command.name(), step.at));
        for env in &commit.events {
            *state = rectify_domain::evolve(std::mem::take(state), env);
            let Ok(()) = changes.apply(&Empty, position as u64 + 1, env);
        }
    }
    changes
}

fn province(changes: &Changes) -> Counters {
    changes.counters.get(&CounterKey::region(RegionCode::parse("520000").unwrap())).copied().unwrap_or_default()
}

#[test]
fn a_small_plan_is_valid_for_the_domain_and_folds_to_its_figures() {
    let plan = generate(&small(), &Regions::guizhou()).unwrap();
    let changes = fold(&plan);
    assert_eq!(province(&changes), plan.expected);
    assert_eq!(plan.expected.found as u64, plan.figures.found);
    // The same seed, the same plan; another seed, another.
    let again = generate(&small(), &Regions::guizhou()).unwrap();
    assert_eq!(again.streams, plan.streams);
    assert_eq!(
        again.steps.iter().map(|s| (s.at, s.actor)).collect::<Vec<_>>(),
        plan.steps.iter().map(|s| (s.at, s.actor)).collect::<Vec<_>>()
    );
    let mut other = small();
    other.seed += 1;
    assert_ne!(generate(&other, &Regions::guizhou()).unwrap().streams, plan.streams);
}

#[test]
fn the_full_guizhou_plan_is_valid_and_spread_over_the_province() {
    let params = Params::guizhou();
    let regions = Regions::guizhou();
    let plan = generate(&params, &regions).unwrap();
    // `generate` checks its bookkeeping against the figures; here the commands themselves are counted.
    let count = |f: &dyn Fn(&Command) -> bool| plan.steps.iter().filter(|s| f(&s.command)).count() as u64;
    let f = &plan.figures;
    assert_eq!(count(&|c| matches!(c, Command::RecordInspection { .. })), f.inspections);
    assert_eq!(count(&|c| matches!(c, Command::ReportProblem { .. })), f.found + f.voided);
    assert_eq!(count(&|c| matches!(c, Command::Accept { .. })), f.fixed + f.reopened);
    assert_eq!(count(&|c| matches!(c, Command::ListSupervision { .. })), f.listed);
    assert_eq!(count(&|c| matches!(c, Command::Reopen { .. })), f.reopened);
    assert_eq!(count(&|c| matches!(c, Command::ApproveExtension { .. })), f.extensions);
    let fines: u64 = plan
        .steps
        .iter()
        .filter_map(|s| match &s.command {
            Command::RecordEnforcement { measure: m @ rectify_domain::values::Measure::Penalty { .. }, .. } => {
                Some(m.amount_fen())
            }
            _ => None,
        })
        .sum();
    assert_eq!(fines, f.penalty_fen);
    // Business times inside the period, in order; every prefecture and county has problems, nearly every
    // grid has inspections.
    let start = plan.steps.first().unwrap().at;
    assert!(start >= chrono::DateTime::parse_from_rfc3339("2020-03-19T16:00:00Z").unwrap());
    assert!(plan.steps.iter().all(|s| s.at <= plan.as_of));
    assert!(plan.steps.windows(2).all(|w| w[0].at <= w[1].at));
    let counties: BTreeSet<RegionCode> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.command {
            Command::ReportProblem { region, .. } => Some(*region),
            _ => None,
        })
        .collect();
    assert_eq!(counties.len(), 88);
    assert_eq!(counties.iter().map(|c| c.prefecture()).collect::<BTreeSet<_>>().len(), 9);
    let grids: BTreeSet<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.command {
            Command::RecordInspection { grid, .. } => Some(grid.as_str()),
            _ => None,
        })
        .collect();
    assert!(grids.len() >= 1_850, "inspections in {} of 1,894 grids", grids.len());
    // Separation of duties holds for every decision (the fold would refuse it otherwise).
    let changes = fold(&plan);
    assert_eq!(province(&changes), plan.expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_scenario_loads_through_the_pipeline_to_exactly_its_figures() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let params = small();
    let plan = Arc::new(generate(&params, &Regions::guizhou()).unwrap());
    let clock = ScenarioClock::new(plan.steps[0].at - chrono::Duration::days(1), plan.as_of);
    let mut settings = Settings::new(dir.path());
    settings.clock = clock.clock();
    let service = Service::start(&settings).await.unwrap();
    let mut seen = 0;
    let loaded = load::load(&service.state.pipeline, plan.clone(), 64, |n| seen = n).await.unwrap();
    assert_eq!((loaded.appended, loaded.repeated, seen), (plan.steps.len() as u64, 0, plan.steps.len() as u64));
    let head = service.state.log.head().await.unwrap();
    assert!(service.state.views.wait_for(head, Duration::from_secs(60)).await);
    let root = RegionCode::parse("520000").unwrap();
    assert_eq!(service.state.views.store().counter(&CounterKey::region(root)).unwrap(), plan.expected);

    // The deadline watcher, now on the scenario's clock, finds nothing the plan has not marked already.
    clock.start();
    let watcher = Watcher {
        pipeline: service.state.pipeline.clone(),
        views: service.state.views.clone(),
        clock: clock.clock(),
        root,
        sweeps: Arc::default(),
    };
    assert_eq!(watcher.sweep().await, 0);

    // A second load of the same plan repeats every command and appends nothing.
    let again = load::load(&service.state.pipeline, plan.clone(), 64, |_| {}).await.unwrap();
    assert_eq!((again.appended, again.repeated), (0, plan.steps.len() as u64));
    assert_eq!(service.state.log.head().await.unwrap(), head);

    // And the statistics endpoints say the same as the parameters.
    let token = crate::tokens::add(dir.path(), Role::Inspector, root, None, "test").unwrap();
    let get = |path: &str| {
        let request = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty());
        let router = service.router();
        async move {
            let response = router.oneshot(request.unwrap()).await.unwrap();
            assert_eq!(response.status(), 200);
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let summary = get("/api/v1/stats/summary?region=520000").await;
    let f = &plan.figures;
    for (field, value) in [
        ("inspections", f.inspections),
        ("found", f.found),
        ("fixed", f.fixed),
        ("open", f.open),
        ("overdue", f.overdue),
        ("listed", f.listed),
        ("voided", f.voided),
        ("immediate", f.immediate),
        ("time_limited", f.time_limited),
        ("closed_late", f.closed_late),
        ("reopened", f.reopened),
        ("extensions", f.extensions),
    ] {
        assert_eq!(summary[field], value, "summary.{field}");
    }
    let enforcement = get("/api/v1/stats/enforcement?region=520000").await;
    let measure = |kind: &str| {
        enforcement["measures"].as_array().unwrap().iter().find(|m| m["measure"] == kind).cloned().unwrap()
    };
    assert_eq!(measure("penalty")["cases"], f.penalties);
    assert_eq!(measure("penalty")["amount_fen"], f.penalty_fen);
    assert_eq!(measure("daily_penalty")["cases"], f.daily_penalties);
    assert_eq!(measure("daily_penalty")["amount_fen"], f.daily_penalty_fen);
    assert_eq!(measure("seal_seizure")["cases"], f.seal_seizures);
    assert_eq!(measure("production_limit")["cases"], f.production_limits);
    assert_eq!(measure("detention_referral")["cases"], f.detention_referrals);
    assert_eq!(measure("criminal_referral")["cases"], f.criminal_referrals);
    let listed = get("/api/v1/problems?listed=true&limit=1000").await;
    assert_eq!(listed["items"].as_array().unwrap().len() as u64, f.listed);
    let overdue = get("/api/v1/problems?overdue=true&limit=1000").await;
    assert_eq!(overdue["items"].as_array().unwrap().len() as u64, f.overdue);

    // The dashboard itself needs no token.
    let page = service.router().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers().contains_key("content-security-policy"));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_step_stops_the_load_and_is_the_error_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = generate(&small(), &Regions::guizhou()).unwrap();
    // One sign-off by the problem's own reporter: separation of duties refuses it.
    let k = plan.steps.iter().position(|s| matches!(s.command, Command::Accept { .. })).unwrap();
    let (stream, seq) = (plan.steps[k].stream, plan.steps[k].seq);
    plan.steps[k].actor = plan.steps.iter().find(|s| s.stream == stream && s.seq == 0).unwrap().actor;
    let refused = plan.command_id(&plan.steps[k]);
    let id = plan.streams[stream as usize].clone();
    let clock = ScenarioClock::new(plan.steps[0].at - chrono::Duration::days(1), plan.as_of);
    let mut settings = Settings::new(dir.path());
    settings.clock = clock.clock();
    let service = Service::start(&settings).await.unwrap();
    let error = load::load(&service.state.pipeline, Arc::new(plan), 64, |_| {}).await.unwrap_err();
    assert!(!error.is::<load::Skipped>(), "the refusal is reported, not a step skipped after it: {error:#}");
    assert!(format!("{error:#}").contains(&refused), "{error:#}");
    // Nothing after the refused step reached its stream.
    assert_eq!(service.state.log.read_stream(&id).await.unwrap().len() as u32, seq);
    service.stop().await;
}
