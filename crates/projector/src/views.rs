//! The views as pure folds of envelopes: the ledger (one row per problem) and counters per scope × sector.
//!
//! Counters are derived from ledger rows: each row *contributes* to the counters of its scopes, and an event
//! changes the counters by `contribution(after) - contribution(before)`. So `fixed ≤ found` and
//! `open = found - fixed` hold by construction in every scope.

use rectify_domain::event::Event;
use rectify_domain::problem::{Body, State};
use rectify_domain::values::{DeadlineClass, Sector};
use rectify_domain::{AggregateId, Envelope, RegionCode, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One row of the problem ledger: the problem's folded state and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub id: AggregateId,
    /// Log position of the commit that last changed this row.
    pub position: u64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Whether the last acceptance met the deadline in force, and the original one.
    pub closed_on_time: Option<bool>,
    pub closed_on_time_original: Option<bool>,
    pub state: State,
}

/// Figures counted per scope and sector. Signed so that deltas can be applied; never negative when stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counters {
    pub inspections: i64,
    pub found: i64,
    pub fixed: i64,
    pub open: i64,
    pub overdue: i64,
    pub voided: i64,
    pub listed: i64,
    pub immediate: i64,
    pub time_limited: i64,
    pub closed_on_time: i64,
    pub closed_late: i64,
    pub closed_on_time_original: i64,
    pub reopened: i64,
    pub extensions: i64,
    pub penalties: i64,
    pub penalty_fen: i64,
    pub daily_penalties: i64,
    pub daily_penalty_fen: i64,
    pub seal_seizures: i64,
    pub production_limits: i64,
    pub detention_referrals: i64,
    pub criminal_referrals: i64,
}

macro_rules! counters_op {
    ($name:ident, $op:tt) => {
        fn $name(&mut self, other: &Counters) {
            self.inspections $op other.inspections;
            self.found $op other.found;
            self.fixed $op other.fixed;
            self.open $op other.open;
            self.overdue $op other.overdue;
            self.voided $op other.voided;
            self.listed $op other.listed;
            self.immediate $op other.immediate;
            self.time_limited $op other.time_limited;
            self.closed_on_time $op other.closed_on_time;
            self.closed_late $op other.closed_late;
            self.closed_on_time_original $op other.closed_on_time_original;
            self.reopened $op other.reopened;
            self.extensions $op other.extensions;
            self.penalties $op other.penalties;
            self.penalty_fen $op other.penalty_fen;
            self.daily_penalties $op other.daily_penalties;
            self.daily_penalty_fen $op other.daily_penalty_fen;
            self.seal_seizures $op other.seal_seizures;
            self.production_limits $op other.production_limits;
            self.detention_referrals $op other.detention_referrals;
            self.criminal_referrals $op other.criminal_referrals;
        }
    };
}

impl Counters {
    counters_op!(add, +=);
    counters_op!(sub, -=);

    /// What one problem row contributes to the counters of its scopes (state-based figures only).
    fn contribution(row: &LedgerRow) -> Counters {
        let Some(p) = row.state.problem() else {
            return Counters::default();
        };
        let live = p.status != Status::Voided;
        let closed = p.status == Status::Closed;
        let b = |x: bool| i64::from(x);
        Counters {
            found: b(live),
            fixed: b(closed),
            open: b(p.status.is_open()),
            overdue: b(p.status.is_open() && p.overdue),
            voided: b(!live),
            listed: b(live && p.listed),
            immediate: b(live && p.deadline_class == Some(DeadlineClass::Immediate)),
            time_limited: b(live && p.deadline_class == Some(DeadlineClass::TimeLimited)),
            closed_on_time: b(closed && row.closed_on_time == Some(true)),
            closed_late: b(closed && row.closed_on_time == Some(false)),
            closed_on_time_original: b(closed && row.closed_on_time_original == Some(true)),
            ..Counters::default()
        }
    }

    /// What one event adds by itself (cumulative figures: inspections, reopenings, extensions, enforcement).
    fn of_event(event: &Event) -> Counters {
        use rectify_domain::values::Measure;
        let mut c = Counters::default();
        match event {
            Event::InspectionRecorded { .. } => c.inspections = 1,
            Event::ProblemReopened { .. } => c.reopened = 1,
            Event::ExtensionApproved { .. } => c.extensions = 1,
            Event::EnforcementRecorded { measure, .. } => match measure {
                Measure::Penalty { amount_fen } => {
                    c.penalties = 1;
                    c.penalty_fen = *amount_fen as i64;
                }
                Measure::DailyPenalty { amount_fen, .. } => {
                    c.daily_penalties = 1;
                    c.daily_penalty_fen = *amount_fen as i64;
                }
                Measure::SealSeizure => c.seal_seizures = 1,
                Measure::ProductionLimit => c.production_limits = 1,
                Measure::DetentionReferral => c.detention_referrals = 1,
                Measure::CriminalReferral => c.criminal_referrals = 1,
            },
            _ => {}
        }
        c
    }
}

/// The key of one counter row: a scope (a region code, or a grid) and a sector (`None`: all sectors).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterKey {
    pub scope: String,
    pub sector: Option<Sector>,
}

impl CounterKey {
    /// All sectors of a region.
    pub fn region(code: RegionCode) -> CounterKey {
        CounterKey { scope: code.to_string(), sector: None }
    }

    /// All sectors of a grid.
    pub fn grid(id: &str) -> CounterKey {
        CounterKey { scope: format!("grid:{id}"), sector: None }
    }

    /// The same scope, one sector.
    pub fn with_sector(mut self, sector: Option<Sector>) -> CounterKey {
        self.sector = sector;
        self
    }

    /// Stable text form used as the storage key: `<scope>|<sector or *>`.
    pub fn encode(&self) -> String {
        format!("{}|{}", self.scope, self.sector.map_or("*", |s| s.as_str()))
    }

    /// Every counter row a fact in `region`/`grid`/`sector` is counted in.
    fn all_for(region: RegionCode, grid: &str, sector: Sector) -> Vec<CounterKey> {
        let scopes = region.scopes().into_iter().map(CounterKey::region).chain([CounterKey::grid(grid)]);
        scopes.flat_map(|k| [k.clone(), k.with_sector(Some(sector))]).collect()
    }
}

/// Read access to the views as they were before the batch being applied.
pub trait ViewRead {
    /// Why a read failed.
    type Error;
    /// The ledger row of `id`, if any.
    fn ledger(&self, id: &AggregateId) -> Result<Option<LedgerRow>, Self::Error>;
    /// The counters at `key` (zero when absent).
    fn counters(&self, key: &CounterKey) -> Result<Counters, Self::Error>;
}

/// The changes a batch of envelopes makes to the views: an overlay over a [`ViewRead`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub ledger: BTreeMap<AggregateId, LedgerRow>,
    pub counters: BTreeMap<CounterKey, Counters>,
    /// Command id → (stream, version, position) for every commit in the batch.
    pub commands: BTreeMap<String, (AggregateId, u64, u64)>,
}

impl Changes {
    fn counters_at<R: ViewRead>(&mut self, base: &R, key: &CounterKey) -> Result<&mut Counters, R::Error> {
        if !self.counters.contains_key(key) {
            let current = base.counters(key)?;
            self.counters.insert(key.clone(), current);
        }
        Ok(self.counters.get_mut(key).expect("inserted above"))
    }

    /// Folds one envelope (at log `position`) into the overlay. Pure: the same envelopes over the same base
    /// always give the same changes.
    pub fn apply<R: ViewRead>(&mut self, base: &R, position: u64, env: &Envelope) -> Result<(), R::Error> {
        let before = match self.ledger.get(&env.stream) {
            Some(row) => Some(row.clone()),
            None => base.ledger(&env.stream)?,
        };
        let mut row = before.clone().unwrap_or_else(|| LedgerRow {
            id: env.stream.clone(),
            position,
            updated_at: env.occurred_at,
            closed_on_time: None,
            closed_on_time_original: None,
            state: State::default(),
        });
        row.state = rectify_domain::evolve(std::mem::take(&mut row.state), env);
        row.position = position;
        row.updated_at = env.occurred_at;
        if let Event::RectificationAccepted { on_time, on_time_original, .. } = &env.event {
            row.closed_on_time = Some(*on_time);
            row.closed_on_time_original = Some(*on_time_original);
        }
        self.commands.insert(env.command_id.clone(), (env.stream.clone(), env.version, position));

        let placement = match &row.state.body {
            Body::Problem(p) => Some((p.region, p.grid.clone(), p.sector)),
            Body::Inspection(i) => Some((i.region, i.grid.clone(), i.sector)),
            Body::Empty => None,
        };
        if let Some((region, grid, sector)) = placement {
            let mut delta = Counters::contribution(&row);
            if let Some(before) = &before {
                delta.sub(&Counters::contribution(before));
            }
            delta.add(&Counters::of_event(&env.event));
            if delta != Counters::default() {
                for key in CounterKey::all_for(region, &grid, sector) {
                    self.counters_at(base, &key)?.add(&delta);
                }
            }
        }
        // Inspections are counted but are not ledger rows.
        if matches!(row.state.body, Body::Problem(_)) {
            self.ledger.insert(env.stream.clone(), row);
        }
        Ok(())
    }
}
