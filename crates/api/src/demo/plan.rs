//! The generator: scenario parameters and the region reference data become a plan — every command of the
//! campaign with its actor and business time, in business-time order. Pure and deterministic for a seed.
//!
//! Counts come out exactly: the generator first decides *which* problems are fixed, open, late, reopened,
//! listed, penalised …, then builds each problem's history so that it ends the way it was decided, and only
//! then places it in time. Every history is valid for the domain as it is (no refusal on the way).

use super::names;
use super::rng::{Rng, apportion};
use super::scenario::{Figures, Params};
use crate::regions::Regions;
use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use rectify_domain::hex_text;
use rectify_domain::region::Level;
use rectify_domain::values::{DeadlineClass, Evidence, Measure, Responsible, Sector, Severity, Source};
use rectify_domain::{Actor, AggregateId, AggregateKind, Command, CommandContext, RegionCode, Role};
use rectify_projector::Counters;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// One command of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    /// Business time.
    pub at: DateTime<Utc>,
    /// Index into [`Plan::streams`].
    pub stream: u32,
    /// The stream's version before this command (each command appends one event).
    pub seq: u32,
    /// Index into [`Plan::actors`].
    pub actor: u32,
    pub command: Command,
}

/// A whole generated campaign.
#[derive(Debug, Clone)]
pub struct Plan {
    pub streams: Vec<AggregateId>,
    pub actors: Vec<Actor>,
    /// In business-time order; the steps of one stream in their own order.
    pub steps: Vec<Step>,
    /// What the parameters promise.
    pub figures: Figures,
    /// The province counters the views must show once the plan is loaded.
    pub expected: Counters,
    /// The end of the last business day: the time the figures are as of.
    pub as_of: DateTime<Utc>,
}

impl Plan {
    /// The command id of a step: derived from the stream and version, so a reload of the same plan is a
    /// series of idempotent repeats. Overdue marks use the deadline watcher's own key.
    pub fn command_id(&self, step: &Step) -> String {
        let id = &self.streams[step.stream as usize];
        match step.command {
            Command::MarkOverdue { .. } => format!("overdue:{id}:v{}", step.seq),
            _ => format!("demo:{id}:{}", step.seq),
        }
    }

    /// The context a step runs in, recorded at `recorded_at`.
    pub fn context(&self, step: &Step, recorded_at: DateTime<Utc>) -> CommandContext {
        let id = &self.streams[step.stream as usize];
        CommandContext {
            actor: self.actors[step.actor as usize].clone(),
            occurred_at: step.at,
            recorded_at,
            command_id: self.command_id(step),
            correlation_id: format!("demo:{id}"),
        }
    }
}

/// How a problem stands at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Closed,
    Reported,
    Rectifying,
    Pending,
}

/// One found problem while it is being decided.
#[derive(Debug, Clone)]
struct Prob {
    grid: usize,
    fate: Fate,
    overdue: bool,
    late: bool,
    reopened: bool,
    rejected: bool,
    /// Some(approved) when an extension was asked for.
    extension: Option<bool>,
    listed: bool,
    class: Option<DeadlineClass>,
    severity: Severity,
    sector: Sector,
    measures: Vec<Measure>,
    /// Index of its finding inspection.
    group: usize,
    /// Day of discovery (0 = the first day of the period).
    d0: i64,
}

/// What happens to a problem on one day (days are absolute once placed).
#[derive(Debug, Clone)]
enum Act {
    Report,
    Deadline { class: DeadlineClass, due: i64 },
    Assign,
    Progress(u32),
    ExtRequest { due: i64 },
    ExtDecision { approved: bool },
    Submit(u32),
    Reject,
    Accept,
    Reopen { due: i64 },
    Overdue { due: i64 },
    List,
    Measure(usize),
    Void,
}

/// (day, first thing that day, what).
type Timeline = Vec<(i64, bool, Act)>;

struct GridInfo {
    id: String,
    county: RegionCode,
    prefecture: RegionCode,
    officers: u32,
    weight: f64,
    county_short: String,
}

/// Day ↔ time in Asia/Shanghai.
struct Calendar {
    start: chrono::NaiveDate,
    tz: FixedOffset,
}

impl Calendar {
    fn at(&self, day: i64, minute: i64) -> DateTime<Utc> {
        let date = self.start + Duration::days(day);
        let naive = date.and_time(NaiveTime::MIN) + Duration::minutes(minute);
        self.tz.from_local_datetime(&naive).single().expect("a fixed offset has no gaps").with_timezone(&Utc)
    }

    /// A deadline: the end of its day.
    fn due(&self, day: i64) -> DateTime<Utc> {
        self.at(day + 1, 0) - Duration::seconds(1)
    }
}

fn evidence(id: &AggregateId, n: u32) -> Evidence {
    let uri = format!("evidence://demo/{id}/{n}.jpg");
    Evidence { sha256: hex_text::encode(Sha256::digest(uri.as_bytes())), media_type: "image/jpeg".into(), uri }
}

/// Builds actors once and hands out their indices.
#[derive(Default)]
struct Actors {
    list: Vec<Actor>,
    index: HashMap<String, u32>,
}

impl Actors {
    fn get(&mut self, id: String, role: Role, region: RegionCode, grid: Option<&str>) -> u32 {
        if let Some(i) = self.index.get(&id) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.list.push(Actor { id: id.clone(), role, region, grid: grid.map(str::to_owned) });
        self.index.insert(id, i);
        i
    }
}

/// Generates the plan of `params` over `regions`.
pub fn generate(params: &Params, regions: &Regions) -> anyhow::Result<Plan> {
    let figures = params.figures()?;
    let root = regions.root;
    let rng = Rng::new(params.seed);
    let cal =
        Calendar { start: params.period.start, tz: FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset") };
    let last = (params.period.end - params.period.start).num_days();
    let enforcement_from = (params.period.enforcement_from - params.period.start).num_days();
    let as_of = cal.due(last);

    // Grids, weighted by their prefecture and officers (with a seeded jitter).
    for code in params.prefectures.keys() {
        let known =
            RegionCode::parse(code).and_then(|c| regions.region(c)).is_some_and(|r| r.level == Level::Prefecture);
        ensure!(known, "prefectures: {code} is not a prefecture of the reference data");
    }
    let mut jitter = rng.fork("grids");
    let mut grids: Vec<GridInfo> = regions
        .grids()
        .map(|g| {
            let county = regions.region(g.county).expect("grids name known counties");
            GridInfo {
                id: g.id.clone(),
                county: g.county,
                prefecture: g.county.prefecture(),
                officers: g.officers.max(1),
                weight: f64::from(g.officers.max(1)) * jitter.uniform(0.4, 1.6),
                county_short: names::short(&county.name_zh),
            }
        })
        .collect();
    ensure!(!grids.is_empty(), "the reference data has no grids");
    let prefectures: Vec<RegionCode> = regions.all().filter(|r| r.level == Level::Prefecture).map(|r| r.code).collect();
    let pref_weight = |p: RegionCode| params.prefectures.get(&p.to_string()).copied().unwrap_or(1.0);
    let grids_of = |grids: &[GridInfo], p: RegionCode| -> Vec<usize> {
        (0..grids.len()).filter(|i| grids[*i].prefecture == p).collect()
    };
    let allocate = |grids: &[GridInfo], total: u64| -> Vec<u64> {
        let mut per_grid = vec![0; grids.len()];
        let per_pref = apportion(total, &prefectures.iter().map(|p| pref_weight(*p)).collect::<Vec<_>>());
        for (p, n) in prefectures.iter().zip(per_pref) {
            let members = grids_of(grids, *p);
            let parts = apportion(n, &members.iter().map(|i| grids[*i].weight).collect::<Vec<_>>());
            for (i, k) in members.into_iter().zip(parts) {
                per_grid[i] = k;
            }
        }
        per_grid
    };
    for g in &mut grids {
        g.weight *= pref_weight(g.prefecture);
    }

    // 1. Where the found problems are.
    let found = figures.found as usize;
    let mut probs: Vec<Prob> = Vec::with_capacity(found);
    for (grid, n) in allocate(&grids, figures.found).into_iter().enumerate() {
        for _ in 0..n {
            probs.push(Prob {
                grid,
                fate: Fate::Rectifying,
                overdue: false,
                late: false,
                reopened: false,
                rejected: false,
                extension: None,
                listed: false,
                class: None,
                severity: Severity::General,
                sector: Sector::Other,
                measures: Vec::new(),
                group: 0,
                d0: 0,
            });
        }
    }
    let all: Vec<usize> = (0..found).collect();

    // 2. How each ends: exactly `fixed` closed, then reported / pending / rectifying, some of them overdue.
    let mut r = rng.fork("fates");
    let mut order = all.clone();
    r.shuffle(&mut order);
    let (fixed, reported, pending) =
        (figures.fixed as usize, figures.open_reported as usize, figures.open_pending as usize);
    for (k, &i) in order.iter().enumerate() {
        probs[i].fate = match k {
            k if k < fixed => Fate::Closed,
            k if k < fixed + reported => Fate::Reported,
            k if k < fixed + reported + pending => Fate::Pending,
            _ => Fate::Rectifying,
        };
    }
    let idx = |probs: &[Prob], f: &dyn Fn(&Prob) -> bool| -> Vec<usize> {
        all.iter().copied().filter(|i| f(&probs[*i])).collect()
    };
    let scheduled_open = idx(&probs, &|p| matches!(p.fate, Fate::Rectifying | Fate::Pending));
    for i in choose(&mut r, &scheduled_open, |_| 1.0, figures.overdue, "overdue problems")? {
        probs[i].overdue = true;
    }

    // 3. Severity and sector, exact by share; sectors lean towards their prefectures.
    let mut r = rng.fork("severity");
    let sev = &params.severity;
    let counts = apportion(figures.found, &[sev.general, sev.major, sev.serious]);
    let mut severities: Vec<Severity> = [Severity::General, Severity::Major, Severity::Serious]
        .into_iter()
        .zip(counts)
        .flat_map(|(s, n)| std::iter::repeat_n(s, n as usize))
        .collect();
    r.shuffle(&mut severities);
    for (p, s) in probs.iter_mut().zip(severities) {
        p.severity = s;
    }
    let mut r = rng.fork("sectors");
    let sectors: Vec<(Sector, f64)> = params.sectors.iter().map(|(s, w)| (*s, *w)).collect();
    let counts = apportion(figures.found, &sectors.iter().map(|s| s.1).collect::<Vec<_>>());
    let mut by_count: Vec<(u64, Sector)> = counts.iter().copied().zip(sectors.iter().map(|s| s.0)).collect();
    by_count.sort();
    let affinity = |sector: Sector, pref: RegionCode| {
        params.sector_affinity.get(&sector).and_then(|m| m.get(&pref.to_string())).copied().unwrap_or(1.0)
    };
    let mut pool = all.clone();
    for (n, sector) in by_count {
        let chosen = r
            .sample(&pool, |i| affinity(sector, grids[probs[i].grid].prefecture).max(1e-6), n as usize)
            .context("assigning sectors")?;
        for &i in &chosen {
            probs[i].sector = sector;
        }
        pool.retain(|i| chosen.binary_search(i).is_err());
    }

    // 4. Deadlines: the immediate ones are among the fixed; open problems with a deadline are time-limited.
    let mut r = rng.fork("lifecycle");
    let closed = idx(&probs, &|p| p.fate == Fate::Closed);
    let immediate_weight = |p: &Prob| match p.severity {
        Severity::General => 1.5,
        Severity::Major => 1.0,
        Severity::Serious => 0.3,
    };
    let immediate = choose(&mut r, &closed, |i| immediate_weight(&probs[i]), figures.immediate, "immediate")?;
    for p in probs.iter_mut().filter(|p| p.fate != Fate::Reported) {
        p.class = Some(DeadlineClass::TimeLimited);
    }
    for i in immediate {
        probs[i].class = Some(DeadlineClass::Immediate);
    }
    for i in choose(&mut r, &closed, |_| 1.0, figures.closed_late, "late sign-offs")? {
        probs[i].late = true;
    }
    for i in choose(&mut r, &closed, |_| 1.0, figures.reopened, "reopenings")? {
        probs[i].reopened = true;
    }
    let rejected_closed = super::scenario::share_of(closed.len() as u64, params.rates.rejected_share);
    for i in choose(&mut r, &closed, |_| 1.0, rejected_closed, "rejections")? {
        probs[i].rejected = true;
    }
    let rejected_open = super::scenario::share_of(scheduled_open.len() as u64, params.rates.rejected_share);
    for i in choose(&mut r, &scheduled_open, |_| 1.0, rejected_open, "rejections")? {
        probs[i].rejected = true;
    }
    let extendable =
        idx(&probs, &|p| p.class == Some(DeadlineClass::TimeLimited) && (p.fate == Fate::Closed || !p.overdue));
    let mut requests = choose(&mut r, &extendable, |_| 1.0, figures.extension_requests, "extension requests")?;
    r.shuffle(&mut requests);
    for (k, i) in requests.into_iter().enumerate() {
        probs[i].extension = Some((k as u64) < figures.extensions);
    }
    let with_deadline = idx(&probs, &|p| p.fate != Fate::Reported);
    let severity_weight = |p: &Prob, general: f64, major: f64, serious: f64| match p.severity {
        Severity::General => general,
        Severity::Major => major,
        Severity::Serious => serious,
    };
    let listed = choose(
        &mut r,
        &with_deadline,
        |i| severity_weight(&probs[i], 0.3, 3.0, 8.0) * if probs[i].fate == Fate::Closed { 1.0 } else { 1.5 },
        figures.listed,
        "listed problems",
    )?;
    for i in listed {
        probs[i].listed = true;
    }

    // 5. Finding inspections: problems of one grid, sector and kind of ending found together at one source.
    let mut r = rng.fork("groups");
    let mut keyed: BTreeMap<(usize, Sector, u8), Vec<usize>> = BTreeMap::new();
    for (i, p) in probs.iter().enumerate() {
        let kind = match p.fate {
            Fate::Closed => 0,
            Fate::Reported => 2,
            _ => 1,
        };
        keyed.entry((p.grid, p.sector, kind)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (_, mut members) in keyed {
        r.shuffle(&mut members);
        let mut rest = &members[..];
        while !rest.is_empty() {
            let size = (r.weighted(&params.activity.problems_per_finding_inspection) + 1).min(rest.len());
            groups.push(rest[..size].to_vec());
            rest = &rest[size..];
        }
    }
    ensure!(
        groups.len() as u64 <= figures.inspections,
        "{} finding inspections are needed but totals.inspections is {}",
        groups.len(),
        figures.inspections
    );
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            probs[i].group = g;
        }
    }

    // 6. Histories. Fixed problems: shape first (relative days), then a discovery day that fits the period.
    let mut r = rng.fork("timelines");
    let rate = -params.activity.decay_per_year.ln() / 365.0;
    let mut timelines: Vec<Timeline> = vec![Vec::new(); found];
    for &i in &closed {
        timelines[i] = closed_timeline(&mut r, &probs[i], params);
    }
    let span = |t: &Timeline| t.iter().map(|e| e.0).max().unwrap_or(0);
    for members in &groups {
        let first = &probs[members[0]];
        let d0 = match first.fate {
            Fate::Closed => {
                let longest = members.iter().map(|i| span(&timelines[*i])).max().unwrap_or(0);
                ensure!(
                    longest <= last,
                    "a fixed problem's history needs {longest} days but the period has {last}: shorten [days]"
                );
                r.decaying_day(last - longest, rate)
            }
            Fate::Reported => r.range((last - 10).max(0), last),
            _ => (last - 10).max(0) - r.decaying_day((last - 10).max(0), 1.0 / params.activity.open_recency_days),
        };
        for &i in members {
            probs[i].d0 = d0;
        }
    }
    for (i, p) in probs.iter().enumerate() {
        match p.fate {
            Fate::Closed => timelines[i].iter_mut().for_each(|e| shift(e, p.d0)),
            _ => timelines[i] = open_timeline(&mut r, p, params, last),
        }
    }

    // 7. Enforcement (recorded from `enforcement_from` on), by the city bureau.
    let mut r = rng.fork("enforcement");
    let e = &params.enforcement;
    let recent = |p: &Prob| if p.d0 + 90 >= enforcement_from { 2.0 } else { 1.0 };
    let penalised = choose(
        &mut r,
        &with_deadline,
        |i| severity_weight(&probs[i], 1.0, 3.0, 6.0) * recent(&probs[i]),
        e.penalty_cases,
        "penalty cases",
    )?;
    let fines = amounts(&mut r, e.penalty_cases, e.penalty_total_yuan, e.penalty_min_yuan, e.penalty_spread);
    for (&i, yuan) in penalised.iter().zip(fines) {
        probs[i].measures.push(Measure::Penalty { amount_fen: yuan * 100 });
    }
    let has_penalty = |p: &Prob| p.measures.iter().any(|m| matches!(m, Measure::Penalty { .. }));
    let daily = choose(
        &mut r,
        &with_deadline,
        |i| if has_penalty(&probs[i]) { if probs[i].listed { 50.0 } else { 5.0 } } else { 0.1 },
        e.daily_penalty_cases,
        "daily penalties",
    )?;
    let days: Vec<i64> = daily.iter().map(|_| r.within(e.daily_penalty_days)).collect();
    // A yuan each, the rest by days: every daily penalty has a positive amount and the total is exact.
    let spare = e.daily_penalty_total_yuan - daily.len() as u64;
    let shares = apportion(spare, &days.iter().map(|d| *d as f64).collect::<Vec<_>>());
    for ((&i, days), yuan) in daily.iter().zip(days).zip(shares) {
        probs[i].measures.push(Measure::DailyPenalty { days: days as u32, amount_fen: (yuan + 1) * 100 });
    }
    for (n, measure, weights) in [
        (e.seal_seizure, Measure::SealSeizure, (1.0, 2.0, 4.0)),
        (e.production_limit, Measure::ProductionLimit, (1.0, 2.0, 4.0)),
        (e.detention_referral, Measure::DetentionReferral, (0.2, 2.0, 6.0)),
        (e.criminal_referral, Measure::CriminalReferral, (0.05, 1.0, 8.0)),
    ] {
        let chosen = choose(
            &mut r,
            &with_deadline,
            |i| {
                let p = &probs[i];
                severity_weight(p, weights.0, weights.1, weights.2) * if has_penalty(p) { 3.0 } else { 1.0 }
            },
            n,
            measure.kind(),
        )?;
        for i in chosen {
            probs[i].measures.push(measure.clone());
        }
    }
    for (i, p) in probs.iter().enumerate() {
        for (k, _) in p.measures.iter().enumerate() {
            let day = (p.d0 + r.range(3, 60)).max(enforcement_from + r.range(0, 150)).min(last).max(p.d0);
            timelines[i].push((day, false, Act::Measure(k)));
        }
    }

    // 8. Duplicates, reported again a few days later and voided.
    let mut r = rng.fork("duplicates");
    let mut originals = idx(&probs, &|p| p.fate == Fate::Closed && p.d0 + 20 <= last);
    if (originals.len() as u64) < figures.voided {
        originals = closed.clone();
    }
    let originals = choose(&mut r, &originals, |_| 1.0, figures.voided, "duplicates")?;
    let mut duplicates: Vec<(usize, Timeline)> = Vec::new();
    for o in originals {
        let day = (probs[o].d0 + r.range(0, 5)).min(last);
        let void = (day + r.range(1, 7)).min(last);
        duplicates.push((o, vec![(day, false, Act::Report), (void, false, Act::Void)]));
    }

    // 9. Materialise: ids, actors, sources, times, commands.
    let mut r = rng.fork("materialise");
    let mut actors = Actors::default();
    let system = actors.get("system:deadline-watcher".into(), Role::System, root, None);
    let province = actors.get("demo:province".into(), Role::Province, root, None);
    let mut streams: Vec<AggregateId> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut expected = Counters::default();
    let new_id = |r: &mut Rng, kind: AggregateKind, county: RegionCode, at: DateTime<Utc>| {
        let random = (u128::from(r.next_u64()) << 64 | u128::from(r.next_u64())) & ((1u128 << 80) - 1);
        let ulid = ulid::Ulid::from_parts(at.timestamp_millis() as u64, random);
        AggregateId::new(kind, county, &ulid.to_string()).expect("a ulid is a valid suffix")
    };
    let officer = |actors: &mut Actors, r: &mut Rng, g: &GridInfo| {
        let k = r.range(1, i64::from(g.officers));
        actors.get(format!("demo:officer:{}:{k}", g.id), Role::GridOfficer, g.county, Some(&g.id))
    };
    let bureau = |actors: &mut Actors, county: RegionCode, desk: &str| {
        actors.get(format!("demo:county:{county}:{desk}"), Role::CountyBureau, county, None)
    };
    let city =
        |actors: &mut Actors, pref: RegionCode| actors.get(format!("demo:city:{pref}"), Role::CityBureau, pref, None);
    let push = |steps: &mut Vec<Step>, stream: usize, seq: &mut u32, at, actor, command| {
        steps.push(Step { at, stream: stream as u32, seq: *seq, actor, command });
        *seq += 1;
    };

    // Finding inspections (one source each), then their problems.
    struct Placed {
        id: AggregateId,
        source: Source,
        entity: u32,
        reporter: u32,
        lister: u32,
    }
    let mut placed: Vec<Option<Placed>> = (0..found).map(|_| None).collect();
    let mut case_seq: HashMap<(RegionCode, i32, &'static str), u32> = HashMap::new();
    for members in &groups {
        let p0 = &probs[members[0]];
        let g = &grids[p0.grid];
        let name = names::source(&mut r, p0.sector, &g.county_short);
        let source = Source { name: name.clone(), credit_code: names::credit_code(&mut r, &g.county.to_string()) };
        let at = cal.at(p0.d0, 8 * 60 + r.range(0, 25));
        let inspector = if r.chance(params.rates.county_reported_share) {
            bureau(&mut actors, g.county, "inspection")
        } else {
            officer(&mut actors, &mut r, g)
        };
        let inspection = new_id(&mut r, AggregateKind::Inspection, g.county, at);
        streams.push(inspection.clone());
        let mut seq = 0;
        push(
            &mut steps,
            streams.len() - 1,
            &mut seq,
            at,
            inspector,
            Command::RecordInspection {
                region: g.county,
                grid: g.id.clone(),
                sector: p0.sector,
                source: source.clone(),
                problems_found: members.len() as u32,
                notes: format!("现场检查发现问题 {} 个 — {} problem(s) found on site", members.len(), members.len()),
            },
        );
        expected.inspections += 1;
        let entity = actors.get(format!("demo:entity:{}", source.credit_code), Role::ResponsibleEntity, g.county, None);
        for &i in members {
            let p = &probs[i];
            let reporter = if r.chance(params.rates.county_reported_share) {
                bureau(&mut actors, g.county, "inspection")
            } else {
                officer(&mut actors, &mut r, g)
            };
            let lister =
                if r.chance(params.rates.province_listed_share) { province } else { city(&mut actors, g.prefecture) };
            let id = new_id(&mut r, AggregateKind::Problem, g.county, cal.at(p.d0, 8 * 60 + 30));
            placed[i] = Some(Placed { id, source: source.clone(), entity, reporter, lister });
        }
        for &i in members {
            let p = &probs[i];
            let pl = placed[i].as_ref().expect("placed above");
            streams.push(pl.id.clone());
            let stream = streams.len() - 1;
            let timeline = order_timeline(std::mem::take(&mut timelines[i]));
            let times = times_of(&mut r, &cal, &timeline);
            let mut seq = 0;
            let mut report_at = None;
            let mut original_due = None;
            let mut due_in_force = None;
            let mut last_accept = None;
            let acceptor =
                if p.listed { city(&mut actors, g.prefecture) } else { bureau(&mut actors, g.county, "acceptance") };
            let deciding = bureau(&mut actors, g.county, "inspection");
            for ((_, _, act), at) in timeline.iter().zip(times) {
                let (actor, command) = match act {
                    Act::Report => {
                        report_at = Some(at);
                        (
                            pl.reporter,
                            Command::ReportProblem {
                                region: g.county,
                                grid: g.id.clone(),
                                sector: p.sector,
                                source: pl.source.clone(),
                                severity: p.severity,
                                description: names::description(&mut r, p.sector, p.severity),
                                inspection: Some(inspection.to_string()),
                            },
                        )
                    }
                    Act::Deadline { class, due } => {
                        original_due = Some(cal.due(*due));
                        due_in_force = original_due;
                        (deciding, Command::SetDeadline { class: *class, due: cal.due(*due) })
                    }
                    Act::Assign => (
                        deciding,
                        Command::Assign {
                            responsible: Responsible {
                                unit: pl.source.name.clone(),
                                person: Some(names::person(&mut r)),
                                actor_id: Some(actors.list[pl.entity as usize].id.clone()),
                            },
                        },
                    ),
                    Act::Progress(n) => (
                        pl.entity,
                        Command::ReportProgress {
                            note: match n {
                                0 => "已完成整改方案编制 — rectification plan drawn up".into(),
                                _ => "整改工程已完工过半 — works more than half done".into(),
                            },
                            evidence: vec![evidence(&pl.id, *n)],
                        },
                    ),
                    Act::ExtRequest { due } => (
                        pl.entity,
                        Command::RequestExtension {
                            reason: "工程量大，需延期完成 — the works take longer than planned".into(),
                            due: cal.due(*due),
                        },
                    ),
                    Act::ExtDecision { approved: true } => {
                        expected.extensions += 1;
                        let pending = timeline.iter().find_map(|(_, _, a)| match a {
                            Act::ExtRequest { due } => Some(*due),
                            _ => None,
                        });
                        due_in_force = pending.map(|d| cal.due(d));
                        (deciding, Command::ApproveExtension { comment: "同意延期 — extension approved".into() })
                    }
                    Act::ExtDecision { approved: false } => (
                        deciding,
                        Command::RejectExtension {
                            reason: "延期理由不充分 — the reason does not justify more time".into(),
                        },
                    ),
                    Act::Submit(n) => (
                        pl.entity,
                        Command::Submit {
                            summary: "已按要求完成整改 — rectified as required".into(),
                            evidence: vec![evidence(&pl.id, 10 + n)],
                        },
                    ),
                    Act::Reject => (
                        acceptor,
                        Command::Reject {
                            reason: "整改不到位，需补充材料 — incomplete: more evidence needed".into()
                        },
                    ),
                    Act::Accept => {
                        last_accept = Some(at);
                        (
                            acceptor,
                            Command::Accept {
                                comment: "现场核查合格，同意销号 — verified on site, signed off".into()
                            },
                        )
                    }
                    Act::Reopen { due } => {
                        expected.reopened += 1;
                        due_in_force = Some(cal.due(*due));
                        (
                            bureau(&mut actors, g.county, "acceptance"),
                            Command::Reopen {
                                reason: "复查发现问题反弹 — the problem came back at re-inspection".into(),
                                due: Some(cal.due(*due)),
                            },
                        )
                    }
                    Act::Overdue { due } => (system, Command::MarkOverdue { due: cal.due(*due) }),
                    Act::List => (
                        pl.lister,
                        Command::ListSupervision {
                            reason: "问题严重，列入挂牌督办 — serious: listed for joint supervision".into(),
                        },
                    ),
                    Act::Measure(k) => {
                        let measure = p.measures[*k].clone();
                        count_measure(&mut expected, &measure);
                        let year = at.with_timezone(&cal.tz).year();
                        let kind = match measure {
                            Measure::Penalty { .. } => "罚",
                            Measure::DailyPenalty { .. } => "按日罚",
                            Measure::SealSeizure => "封",
                            Measure::ProductionLimit => "限",
                            _ => "移",
                        };
                        let n = case_seq.entry((g.prefecture, year, kind)).or_insert(0);
                        *n += 1;
                        let pref = regions.region(g.prefecture).map(|x| names::short(&x.name_zh)).unwrap_or_default();
                        (
                            city(&mut actors, g.prefecture),
                            Command::RecordEnforcement {
                                case_no: format!("{pref}环{kind}〔{year}〕{n}号"),
                                note: measure_note(&measure).into(),
                                measure,
                            },
                        )
                    }
                    Act::Void => unreachable!("duplicates are placed below"),
                };
                push(&mut steps, stream, &mut seq, at, actor, command);
            }
            // What this problem adds to the province counters.
            expected.found += 1;
            match p.fate {
                Fate::Closed => {
                    let (report_at, accept) = (report_at.expect("reported"), last_accept.expect("accepted"));
                    expected.fixed += 1;
                    let on_time = due_in_force.is_none_or(|d| accept <= d);
                    expected.closed_on_time += i64::from(on_time);
                    expected.closed_late += i64::from(!on_time);
                    expected.closed_on_time_original += i64::from(original_due.is_none_or(|d| accept <= d));
                    expected.rectify_secs += (accept - report_at).num_seconds().max(0);
                }
                _ => {
                    expected.open += 1;
                    expected.overdue += i64::from(p.overdue);
                }
            }
            expected.listed += i64::from(p.listed);
            match p.class {
                Some(DeadlineClass::Immediate) => expected.immediate += 1,
                Some(DeadlineClass::TimeLimited) => expected.time_limited += 1,
                None => {}
            }
        }
    }

    // Inspections that found nothing, spread like the rest.
    let empty = figures.inspections - groups.len() as u64;
    for (gi, n) in allocate(&grids, empty).into_iter().enumerate() {
        let g = &grids[gi];
        for _ in 0..n {
            let day = r.decaying_day(last, rate);
            let weights: Vec<f64> = sectors.iter().map(|(s, w)| w * affinity(*s, g.prefecture)).collect();
            let sector = sectors[r.weighted(&weights)].0;
            let source = Source {
                name: names::source(&mut r, sector, &g.county_short),
                credit_code: names::credit_code(&mut r, &g.county.to_string()),
            };
            let at = cal.at(day, 8 * 60 + 30 + r.range(0, 8 * 60));
            let inspector = if r.chance(params.rates.county_reported_share) {
                bureau(&mut actors, g.county, "inspection")
            } else {
                officer(&mut actors, &mut r, g)
            };
            streams.push(new_id(&mut r, AggregateKind::Inspection, g.county, at));
            let mut seq = 0;
            let command = Command::RecordInspection {
                region: g.county,
                grid: g.id.clone(),
                sector,
                source,
                problems_found: 0,
                notes: "现场检查未发现问题 — no problem found".into(),
            };
            push(&mut steps, streams.len() - 1, &mut seq, at, inspector, command);
            expected.inspections += 1;
        }
    }

    // Duplicates: reported by another look at the same source, voided by the county.
    for (o, timeline) in duplicates {
        let p = &probs[o];
        let g = &grids[p.grid];
        let original = placed[o].as_ref().expect("every found problem is placed");
        let times = times_of(&mut r, &cal, &timeline);
        let id = new_id(&mut r, AggregateKind::Problem, g.county, times[0]);
        streams.push(id);
        let stream = streams.len() - 1;
        let mut seq = 0;
        let reporter = officer(&mut actors, &mut r, g);
        let report = Command::ReportProblem {
            region: g.county,
            grid: g.id.clone(),
            sector: p.sector,
            source: original.source.clone(),
            severity: p.severity,
            description: names::description(&mut r, p.sector, p.severity),
            inspection: None,
        };
        push(&mut steps, stream, &mut seq, times[0], reporter, report);
        let void = Command::Void {
            reason: format!("重复上报，与 {} 为同一问题 — duplicate of {}", original.id, original.id),
        };
        push(&mut steps, stream, &mut seq, times[1], bureau(&mut actors, g.county, "acceptance"), void);
        expected.voided += 1;
    }

    steps.sort_by(|a, b| a.at.cmp(&b.at).then(a.stream.cmp(&b.stream)).then(a.seq.cmp(&b.seq)));
    let plan = Plan { streams, actors: actors.list, steps, figures, expected, as_of };
    check(&plan)?;
    Ok(plan)
}

/// The plan keeps the promise of its parameters.
fn check(plan: &Plan) -> anyhow::Result<()> {
    let (f, e) = (&plan.figures, &plan.expected);
    let pairs = [
        ("inspections", f.inspections, e.inspections),
        ("found", f.found, e.found),
        ("fixed", f.fixed, e.fixed),
        ("open", f.open, e.open),
        ("overdue", f.overdue, e.overdue),
        ("voided", f.voided, e.voided),
        ("listed", f.listed, e.listed),
        ("immediate", f.immediate, e.immediate),
        ("time_limited", f.time_limited, e.time_limited),
        ("closed_on_time", f.closed_on_time, e.closed_on_time),
        ("closed_late", f.closed_late, e.closed_late),
        ("reopened", f.reopened, e.reopened),
        ("extensions", f.extensions, e.extensions),
        ("penalties", f.penalties, e.penalties),
        ("penalty_fen", f.penalty_fen, e.penalty_fen),
        ("daily_penalties", f.daily_penalties, e.daily_penalties),
        ("daily_penalty_fen", f.daily_penalty_fen, e.daily_penalty_fen),
        ("seal_seizures", f.seal_seizures, e.seal_seizures),
        ("production_limits", f.production_limits, e.production_limits),
        ("detention_referrals", f.detention_referrals, e.detention_referrals),
        ("criminal_referrals", f.criminal_referrals, e.criminal_referrals),
    ];
    for (name, promised, planned) in pairs {
        if promised as i64 != planned {
            bail!("the generated plan has {planned} {name}, the parameters promise {promised}");
        }
    }
    Ok(())
}

fn count_measure(c: &mut Counters, m: &Measure) {
    match m {
        Measure::Penalty { amount_fen } => {
            c.penalties += 1;
            c.penalty_fen += *amount_fen as i64;
        }
        Measure::DailyPenalty { amount_fen, .. } => {
            c.daily_penalties += 1;
            c.daily_penalty_fen += *amount_fen as i64;
        }
        Measure::SealSeizure => c.seal_seizures += 1,
        Measure::ProductionLimit => c.production_limits += 1,
        Measure::DetentionReferral => c.detention_referrals += 1,
        Measure::CriminalReferral => c.criminal_referrals += 1,
    }
}

fn measure_note(m: &Measure) -> &'static str {
    match m {
        Measure::Penalty { .. } => "行政处罚决定 — administrative penalty decision",
        Measure::DailyPenalty { .. } => "按日连续处罚 — daily continuous penalty",
        Measure::SealSeizure => "查封扣押设施设备 — facilities sealed and seized",
        Measure::ProductionLimit => "责令限制生产、停产整治 — production limited / stopped",
        Measure::DetentionReferral => "移送公安机关行政拘留 — referred for administrative detention",
        Measure::CriminalReferral => "涉嫌环境犯罪移送司法 — referred for criminal prosecution",
    }
}

/// Exactly `n` of `candidates`, weighted; an error naming `what` if there are not enough.
fn choose(
    rng: &mut Rng,
    candidates: &[usize],
    weight: impl Fn(usize) -> f64,
    n: u64,
    what: &str,
) -> anyhow::Result<Vec<usize>> {
    rng.sample(candidates, weight, n as usize)
        .with_context(|| format!("the scenario asks for {n} {what} but only {} problems qualify", candidates.len()))
}

/// `cases` fines adding up to exactly `total` yuan, each at least `min`, log-normally spread, in whole
/// thousands of yuan where the total allows.
fn amounts(rng: &mut Rng, cases: u64, total: u64, min: u64, spread: f64) -> Vec<u64> {
    if cases == 0 {
        return Vec::new();
    }
    let weights: Vec<f64> = (0..cases).map(|_| (spread * rng.normal()).exp()).collect();
    let spare = total - cases * min;
    let mut parts: Vec<u64> = apportion(spare / 1000, &weights).into_iter().map(|k| min + k * 1000).collect();
    parts[0] += spare % 1000;
    parts
}

fn shift(e: &mut (i64, bool, Act), by: i64) {
    e.0 += by;
    match &mut e.2 {
        Act::Deadline { due, .. } | Act::ExtRequest { due } | Act::Reopen { due } | Act::Overdue { due } => *due += by,
        _ => {}
    }
}

/// Sorts by day, the watcher's overdue marks first thing in the day, otherwise in the order of pushing.
fn order_timeline(mut t: Timeline) -> Timeline {
    t.sort_by_key(|e| (e.0, !e.1));
    t
}

/// Business times of an ordered timeline: overdue marks just after midnight (the watcher), the rest in
/// office hours, in order within a day.
fn times_of(rng: &mut Rng, cal: &Calendar, t: &[(i64, bool, Act)]) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(t.len());
    let mut day = i64::MIN;
    let (mut early, mut office) = (0, 0);
    for (d, first, _) in t {
        if *d != day {
            (day, early, office) = (*d, 0, 0);
        }
        let minute = if *first {
            early += 1;
            early * 3
        } else {
            office += 1;
            8 * 60 + 30 + (office - 1) * 35 + rng.range(0, 20)
        };
        out.push(cal.at(*d, minute.min(23 * 60 + 58)));
    }
    out
}

/// A fixed problem's history in days relative to its discovery: deadline, maybe an extension, progress,
/// submissions (one maybe rejected), sign-off on time or late, maybe reopened and signed off again.
fn closed_timeline(r: &mut Rng, p: &Prob, params: &Params) -> Timeline {
    let d = &params.days;
    let mut t: Timeline = vec![(0, false, Act::Report)];
    let dd = r.range(0, 1);
    let class = p.class.expect("fixed problems have a deadline");
    let due0 = dd
        + r.within(match class {
            DeadlineClass::Immediate => d.immediate,
            DeadlineClass::TimeLimited => d.time_limited,
        });
    t.push((dd, false, Act::Deadline { class, due: due0 }));
    t.push((dd, false, Act::Assign));
    let mut due = due0;
    let mut cursor = dd;
    if let Some(approved) = p.extension {
        let q = dd + (((due0 - dd) as f64 * 0.3) as i64).max(1);
        let decided = (q + r.range(1, 3)).min(due0 - 1).max(q);
        let extended = due0 + r.within(d.extension);
        t.push((q, false, Act::ExtRequest { due: extended }));
        t.push((decided, false, Act::ExtDecision { approved }));
        if approved {
            due = extended;
        }
        cursor = decided;
    }
    let late_first = p.late && !p.reopened;
    let a1 = if late_first {
        due + r.within(d.late)
    } else {
        let lo = dd + ((due - dd) as f64 * 0.35).ceil() as i64;
        r.range(lo.max(cursor + 1), due.max(cursor + 1))
    };
    if p.listed {
        t.push((dd + (a1 - dd) / 5, false, Act::List));
    }
    lifecycle_to_acceptance(r, &mut t, p, params, cursor, a1, true);
    if late_first {
        t.push((due + 1, true, Act::Overdue { due }));
    }
    t.push((a1, false, Act::Accept));
    if p.reopened {
        let reopened = a1 + r.within(d.reopen_after);
        let due2 = reopened + r.within(d.reopen_due);
        t.push((reopened, false, Act::Reopen { due: due2 }));
        let a2 = if p.late { due2 + r.within(d.late) } else { r.range(reopened + 1, due2) };
        let submitted = (a2 - r.within(d.decision)).max(reopened);
        t.push((submitted, false, Act::Submit(1)));
        if p.late {
            t.push((due2 + 1, true, Act::Overdue { due: due2 }));
        }
        t.push((a2, false, Act::Accept));
    }
    t
}

/// Progress reports and submissions between `cursor` and an acceptance on day `until` (a rejected first
/// submission when there is room for it).
fn lifecycle_to_acceptance(
    r: &mut Rng,
    t: &mut Timeline,
    p: &Prob,
    params: &Params,
    cursor: i64,
    until: i64,
    progress: bool,
) {
    let d = &params.days;
    let last_submission = (until - r.within(d.decision)).max(cursor);
    let first_submission = if p.rejected && until - cursor >= 3 {
        let s1 = cursor + (until - cursor) * 2 / 5;
        let rejected = (s1 + 1).min(until - 1);
        (s1, Some((rejected, r.range(rejected, last_submission.max(rejected)))))
    } else {
        (last_submission, None)
    };
    if progress && p.class == Some(DeadlineClass::TimeLimited) {
        let n = r.within(d.progress_reports);
        for k in 0..n {
            let day = cursor + (first_submission.0 - cursor) * (k + 1) / (n + 1);
            t.push((day, false, Act::Progress(k as u32)));
        }
    }
    t.push((first_submission.0, false, Act::Submit(0)));
    if let Some((rejected, resubmitted)) = first_submission.1 {
        t.push((rejected, false, Act::Reject));
        t.push((resubmitted, false, Act::Submit(1)));
    }
}

/// An open problem's history up to the last day, in absolute days.
fn open_timeline(r: &mut Rng, p: &Prob, params: &Params, last: i64) -> Timeline {
    let d = &params.days;
    let d0 = p.d0;
    let mut t: Timeline = vec![(d0, false, Act::Report)];
    if p.fate == Fate::Reported {
        return t;
    }
    let dd = (d0 + r.range(0, 1)).min(last);
    let mut due = dd + r.within(d.time_limited);
    if p.overdue {
        if due > last - 2 {
            due = dd + (((last - 2 - dd) as f64 * r.uniform(0.3, 0.9)) as i64).max(1);
        }
    } else {
        due = due.max(last + r.within(d.open_due_after_end));
    }
    t.push((dd, false, Act::Deadline { class: DeadlineClass::TimeLimited, due }));
    t.push((dd, false, Act::Assign));
    let mut cursor = dd;
    if let Some(approved) = p.extension {
        let q = r.range(dd + 1, (last - 3).max(dd + 1));
        let decided = (q + r.range(1, 3)).min(last);
        t.push((q, false, Act::ExtRequest { due: due + r.within(d.extension) }));
        t.push((decided, false, Act::ExtDecision { approved }));
        cursor = decided;
    }
    if p.listed {
        t.push((r.range(dd, last), false, Act::List));
    }
    if p.overdue {
        t.push((due + 1, true, Act::Overdue { due }));
    }
    let submitted = r.range(cursor, last);
    let n = r.within(d.progress_reports);
    for k in 0..n {
        t.push((cursor + (submitted - cursor) * (k + 1) / (n + 1), false, Act::Progress(k as u32)));
    }
    match (p.fate, p.rejected) {
        (Fate::Pending, false) => t.push((submitted, false, Act::Submit(0))),
        (Fate::Pending, true) => {
            t.push((submitted, false, Act::Submit(0)));
            let rejected = r.range(submitted, last);
            t.push((rejected, false, Act::Reject));
            t.push((r.range(rejected, last), false, Act::Submit(1)));
        }
        (_, true) => {
            t.push((submitted, false, Act::Submit(0)));
            t.push((r.range(submitted, last), false, Act::Reject));
        }
        _ => {}
    }
    t
}
