//! The views as pure folds of envelopes: the ledger (one row per problem) and counters.
//!
//! Counters are derived from ledger rows: each row *contributes* to a set of counter rows — per scope
//! (province, prefecture, county, grid) × sector, per scope × month (the trend) — and an event changes the
//! counters by what the row contributes after it minus what it contributed before (see [`contribute`]),
//! plus what the event adds by itself (inspections, reopenings, extensions, enforcement). So `fixed ≤ found`
//! and `open = found - fixed` hold by construction in every scope. A fixed problem's days to rectify go the
//! same way into one histogram per region × sector ([`Days`]).

use rectify_domain::event::Event;
use rectify_domain::problem::{Body, State};
use rectify_domain::values::{DeadlineClass, Sector};
use rectify_domain::{AggregateId, Envelope, RegionCode, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One row of the problem ledger: the problem's folded state and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub id: AggregateId,
    /// Log position of the commit that last changed this row.
    pub position: u64,
    #[serde(serialize_with = "rectify_domain::timestamp::serialize")]
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Whether the last acceptance met the deadline in force, and the original one.
    pub closed_on_time: Option<bool>,
    pub closed_on_time_original: Option<bool>,
    pub state: State,
}

/// Figures counted per scope and sector. Signed so that deltas can be applied; never negative when stored.
/// Absent fields read as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Sum over fixed problems of the seconds from discovery to sign-off (mean = this / fixed).
    pub rectify_secs: i64,
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
            self.rectify_secs $op other.rectify_secs;
        }
    };
}

/// Lists the fields of [`Counters`] in declaration order, for the compact stored form.
macro_rules! counters_fields {
    ($m:ident) => {
        $m! {
            inspections, found, fixed, open, overdue, voided, listed, immediate, time_limited, closed_on_time,
            closed_late, closed_on_time_original, reopened, extensions, penalties, penalty_fen, daily_penalties,
            daily_penalty_fen, seal_seizures, production_limits, detention_referrals, criminal_referrals,
            rectify_secs
        }
    };
}

macro_rules! counters_array {
    ($($f:ident),*) => {
        /// The figures in declaration order: the compact form the view store keeps (a JSON array of numbers
        /// is a tenth of the size of the object, and quicker to write and read).
        pub fn to_array(&self) -> [i64; Counters::FIELDS] {
            [$(self.$f),*]
        }

        /// The inverse of [`Counters::to_array`].
        pub fn from_array(a: [i64; Counters::FIELDS]) -> Counters {
            let [$($f),*] = a;
            Counters { $($f),* }
        }
    };
}

impl Counters {
    /// How many figures there are.
    pub const FIELDS: usize = 23;

    counters_op!(add, +=);
    counters_op!(sub, -=);
    counters_fields!(counters_array);

    /// What one problem row contributes to the plain counters of its scopes (state-based figures only).
    fn contribution(p: &Contribution) -> Counters {
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
            closed_on_time: b(closed && p.closed_on_time == Some(true)),
            closed_late: b(closed && p.closed_on_time == Some(false)),
            closed_on_time_original: b(closed && p.closed_on_time_original == Some(true)),
            rectify_secs: if closed { p.rectify_secs() } else { 0 },
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

/// The distribution of days to rectify in one region × sector: fixed problems by whole days from discovery to
/// sign-off. One row per region × sector, not one per day count: a rebuild's batch would otherwise write
/// thousands of tiny rows.
pub type Days = BTreeMap<i64, i64>;

/// Everything of a ledger row that its counter contributions depend on. Most events (assignments, progress,
/// enforcement, submissions) leave it as it was, and then the counters move only by what the event adds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contribution {
    region: RegionCode,
    grid: String,
    sector: Sector,
    status: Status,
    overdue: bool,
    listed: bool,
    deadline_class: Option<DeadlineClass>,
    closed_on_time: Option<bool>,
    closed_on_time_original: Option<bool>,
    reported_at: chrono::DateTime<chrono::Utc>,
    closed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Contribution {
    /// The row's contribution inputs; `None` for a row that is not a problem (it contributes nothing).
    fn of(row: &LedgerRow) -> Option<Contribution> {
        let p = row.state.problem()?;
        Some(Contribution {
            region: p.region,
            grid: p.grid.clone(),
            sector: p.sector,
            status: p.status,
            overdue: p.overdue,
            listed: p.listed,
            deadline_class: p.deadline_class,
            closed_on_time: row.closed_on_time,
            closed_on_time_original: row.closed_on_time_original,
            reported_at: p.reported_at,
            closed_at: p.closed_at,
        })
    }

    fn rectify_secs(&self) -> i64 {
        self.closed_at.map_or(0, |closed| (closed - self.reported_at).num_seconds().max(0))
    }
}

/// The scope of a counter row: a region (province, prefecture or county) or a grid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Region(RegionCode),
    Grid(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Region(code) => write!(f, "{code}"),
            Scope::Grid(id) => write!(f, "grid:{id}"),
        }
    }
}

/// A month of the trend: year and month (1–12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(pub i32, pub u32);

impl Month {
    /// The month `at` falls in.
    pub fn of(at: chrono::DateTime<chrono::Utc>) -> Month {
        use chrono::Datelike;
        Month(at.year(), at.month())
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not chrono's formatter: it was a tenth of a rebuild's fold.
        write!(f, "month={:04}-{:02}", self.0, self.1)
    }
}

/// The key of one counter row: a scope, a sector (`None`: all sectors) and, for the trend, a month. Plain
/// values rather than text: the fold builds, compares and hashes tens of keys per event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterKey {
    pub scope: Scope,
    pub sector: Option<Sector>,
    pub month: Option<Month>,
}

impl CounterKey {
    /// All sectors of a region.
    pub fn region(code: RegionCode) -> CounterKey {
        CounterKey { scope: Scope::Region(code), sector: None, month: None }
    }

    /// All sectors of a grid.
    pub fn grid(id: &str) -> CounterKey {
        CounterKey { scope: Scope::Grid(id.to_owned()), sector: None, month: None }
    }

    /// The same scope, one sector.
    pub fn with_sector(mut self, sector: Option<Sector>) -> CounterKey {
        self.sector = sector;
        self
    }

    /// The same scope and sector, one month.
    pub fn with_month(mut self, month: Month) -> CounterKey {
        self.month = Some(month);
        self
    }

    /// Stable text form used as the storage key: `<scope>|<sector or *>[|month=YYYY-MM]`.
    pub fn encode(&self) -> String {
        let sector = self.sector.map_or("*", |s| s.as_str());
        match &self.month {
            Some(m) => format!("{}|{sector}|{m}", self.scope),
            None => format!("{}|{sector}", self.scope),
        }
    }

    /// Every plain counter row a fact in `region`/`grid`/`sector` is counted in.
    fn all_for(region: RegionCode, grid: &str, sector: Sector) -> Vec<CounterKey> {
        let scopes = region.scopes().into_iter().map(CounterKey::region).chain([CounterKey::grid(grid)]);
        scopes.flat_map(|k| [k.clone(), k.with_sector(Some(sector))]).collect()
    }
}

/// Where plain counters go: the region's scopes and the grid, each for all sectors and for the sector.
type Placement<'a> = (RegionCode, &'a str, Sector);

/// Counter changes grouped by where they go (a placement, or a region × month of the trend), summed before
/// any counter row is touched: an event usually moves a row's contribution within the same placement, so
/// its before and after meet here instead of in every one of the rows. (A row that moved to another
/// placement changes the rows both placements share twice, which sums to the same.)
struct Delta<K>(Vec<(K, Counters)>);

impl<K: PartialEq> Delta<K> {
    fn new() -> Delta<K> {
        Delta(Vec::with_capacity(4))
    }

    fn add(&mut self, key: K, c: &Counters, negate: bool) {
        let at = match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.0.push((key, Counters::default()));
                self.0.len() - 1
            }
        };
        if negate { self.0[at].1.sub(c) } else { self.0[at].1.add(c) }
    }

    /// The non-zero sums.
    fn sums(self) -> impl Iterator<Item = (K, Counters)> {
        self.0.into_iter().filter(|(_, c)| *c != Counters::default())
    }
}

/// Adds (or, with `negate`, takes back) what one ledger row contributes: its plain counters at its placement,
/// and the trend (regions only, all sectors): found by month of discovery, fixed by month of sign-off.
fn contribute<'a>(
    p: &'a Contribution,
    negate: bool,
    plain: &mut Delta<Placement<'a>>,
    trend: &mut Delta<(RegionCode, Month)>,
) {
    plain.add((p.region, &p.grid, p.sector), &Counters::contribution(p), negate);
    if p.status != Status::Voided {
        trend.add((p.region, Month::of(p.reported_at)), &Counters { found: 1, ..Counters::default() }, negate);
    }
    if let (Status::Closed, Some(closed)) = (p.status, p.closed_at) {
        trend.add((p.region, Month::of(closed)), &Counters { fixed: 1, ..Counters::default() }, negate);
    }
}

/// The [`Days`] histograms a fixed problem is counted in (region × all sectors and × its sector), and its
/// whole days to rectify.
fn days_entries(p: &Contribution) -> Option<(i64, Vec<CounterKey>)> {
    if p.status != Status::Closed || p.closed_at.is_none() {
        return None;
    }
    let regions = p.region.scopes().into_iter().map(CounterKey::region);
    Some((p.rectify_secs() / 86_400, regions.flat_map(|k| [k.clone(), k.with_sector(Some(p.sector))]).collect()))
}

/// An entry of the deadline watcher's index: a problem whose deadline can still pass unnoticed (being
/// rectified or awaiting acceptance, not marked overdue yet), by due time, so that a sweep reads only the
/// problems that are due instead of the whole ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadlineKey {
    pub due: chrono::DateTime<chrono::Utc>,
    pub id: AggregateId,
}

impl DeadlineKey {
    /// The entry `row` needs, if any.
    pub fn of(row: &LedgerRow) -> Option<DeadlineKey> {
        let p = row.state.problem()?;
        let watched = matches!(p.status, Status::Rectifying | Status::PendingAcceptance) && !p.overdue;
        Some(DeadlineKey { due: p.due.filter(|_| watched)?, id: row.id.clone() })
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
    /// The days-to-rectify histogram at `key` (empty when absent).
    fn days(&self, key: &CounterKey) -> Result<Days, Self::Error>;
}

/// A map of view rows by key, hashed by foldhash (seeded at random per map, so keys that come from commands
/// cannot be chosen to collide).
pub type RowMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The changes a batch of envelopes makes to the views: an overlay over a [`ViewRead`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    // Hash maps: the fold looks a row up a dozen times per event, and a batch holds thousands (ordered maps
    // spent a tenth of a rebuild comparing keys); sled sorts a batch's writes itself.
    pub ledger: RowMap<AggregateId, LedgerRow>,
    pub counters: RowMap<CounterKey, Counters>,
    /// The days-to-rectify histograms the batch changed, whole (an emptied one is removed when written).
    pub days: BTreeMap<CounterKey, Days>,
    /// Command id → (stream, version, position) for every commit in the batch, if `index_commands`.
    pub commands: BTreeMap<String, (AggregateId, u64, u64)>,
    /// Whether to fill `commands` (only the projector of a log without a command index of its own needs it).
    pub index_commands: bool,
    /// Deadline index entries the batch adds (true) or removes (false); one added and removed again within
    /// the batch (a problem set a deadline and was closed) is not listed.
    pub deadlines: BTreeMap<DeadlineKey, bool>,
}

impl Changes {
    fn counters_at<R: ViewRead>(&mut self, base: &R, key: CounterKey) -> Result<&mut Counters, R::Error> {
        use std::collections::hash_map::Entry;
        Ok(match self.counters.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let current = base.counters(e.key())?;
                e.insert(current)
            }
        })
    }

    /// Adds (`present`) or removes a deadline index entry. Each call flips the entry (a key names one row, and
    /// is touched only when that row's entry changes), so flipped back within the batch it is as the store has it.
    fn flip_deadline(&mut self, key: DeadlineKey, present: bool) {
        if self.deadlines.remove(&key).is_none() {
            self.deadlines.insert(key, present);
        }
    }

    /// Moves one fixed problem into (`by` = 1) or out of (-1) the histograms of `entries`.
    fn count_days<R: ViewRead>(&mut self, base: &R, entries: (i64, Vec<CounterKey>), by: i64) -> Result<(), R::Error> {
        use std::collections::btree_map::Entry;
        let (days, keys) = entries;
        for key in keys {
            let histogram = match self.days.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let current = base.days(e.key())?;
                    e.insert(current)
                }
            };
            let n = histogram.entry(days).or_default();
            *n += by;
            if *n == 0 {
                histogram.remove(&days);
            }
        }
        Ok(())
    }

    /// Folds one envelope (at log `position`) into the overlay. Pure: the same envelopes over the same base
    /// always give the same changes.
    pub fn apply<R: ViewRead>(&mut self, base: &R, position: u64, env: &Envelope) -> Result<(), R::Error> {
        // Taken out of the overlay (or read from the base) and put back changed: no copy of the row.
        let before = match self.ledger.remove(&env.stream) {
            Some(row) => Some(row),
            // A stream's first event: no row of it can exist yet (a rebuild need not look).
            None if env.version == 1 => None,
            None => base.ledger(&env.stream)?,
        };
        let was = before.as_ref().and_then(Contribution::of);
        let deadline_was = before.as_ref().and_then(DeadlineKey::of);
        let mut row = before.unwrap_or_else(|| LedgerRow {
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
        if self.index_commands {
            self.commands.insert(env.command_id.clone(), (env.stream.clone(), env.version, position));
        }
        let deadline_is = DeadlineKey::of(&row);
        if deadline_is != deadline_was {
            if let Some(key) = deadline_was {
                self.flip_deadline(key, false);
            }
            if let Some(key) = deadline_is {
                self.flip_deadline(key, true);
            }
        }

        let is = Contribution::of(&row);
        let (mut plain, mut trend) = (Delta::new(), Delta::new());
        if is != was {
            if let Some(p) = &was {
                contribute(p, true, &mut plain, &mut trend);
            }
            if let Some(p) = &is {
                contribute(p, false, &mut plain, &mut trend);
            }
            let (days_was, days_is) = (was.as_ref().and_then(days_entries), is.as_ref().and_then(days_entries));
            if days_is != days_was {
                if let Some(entries) = days_was {
                    self.count_days(base, entries, -1)?;
                }
                if let Some(entries) = days_is {
                    self.count_days(base, entries, 1)?;
                }
            }
        }
        let by_event = Counters::of_event(&env.event);
        if by_event != Counters::default() {
            let placement = match &row.state.body {
                Body::Problem(p) => Some((p.region, p.grid.as_str(), p.sector)),
                Body::Inspection(i) => Some((i.region, i.grid.as_str(), i.sector)),
                Body::Empty => None,
            };
            if let Some(placement) = placement {
                plain.add(placement, &by_event, false);
            }
        }
        for ((region, grid, sector), d) in plain.sums() {
            for key in CounterKey::all_for(region, grid, sector) {
                self.counters_at(base, key)?.add(&d);
            }
        }
        for ((region, month), d) in trend.sums() {
            for scope in region.scopes() {
                self.counters_at(base, CounterKey::region(scope).with_month(month))?.add(&d);
            }
        }
        // Inspections are counted but are not ledger rows.
        if matches!(row.state.body, Body::Problem(_)) {
            self.ledger.insert(env.stream.clone(), row);
        }
        Ok(())
    }
}

/// Views with nothing in them: the base for folding a log from scratch in memory (time travel).
pub struct Empty;

impl ViewRead for Empty {
    type Error = std::convert::Infallible;

    fn ledger(&self, _: &AggregateId) -> Result<Option<LedgerRow>, Self::Error> {
        Ok(None)
    }

    fn counters(&self, _: &CounterKey) -> Result<Counters, Self::Error> {
        Ok(Counters::default())
    }

    fn days(&self, _: &CounterKey) -> Result<Days, Self::Error> {
        Ok(Days::new())
    }
}
