//! Statistics from the counter views: a region's summary (optionally as of a business time, folded from the
//! log), its children, its sectors, its grids, its enforcement totals and its monthly trend.
//!
//! Statistics are published aggregates: every role may read them, for any region.

use crate::auth::Auth;
use crate::error::{ApiError, Problem as ProblemJson};
use crate::json::Params;
use crate::routes::queries::{region_param, wait};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use rectify_domain::permissions::{Action, Target, authorize};
use rectify_domain::region::Level;
use rectify_domain::values::Sector;
use rectify_domain::{Actor, RegionCode};
use rectify_projector::{Changes, CounterKey, Counters, Days, Empty};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Region, sector, read-your-writes and time travel for statistics.
#[derive(Deserialize, IntoParams)]
pub struct StatsQuery {
    /// Region code at any level (default: the province).
    pub region: Option<String>,
    pub sector: Option<Sector>,
    /// Wait until the views include this log position.
    pub wait_for: Option<u64>,
    /// Business time: the figures as they were then, folded from the log (summary only).
    pub as_of: Option<DateTime<Utc>>,
}

/// Days from discovery to sign-off of the fixed problems.
#[derive(Serialize, ToSchema, Default)]
pub struct TimeToRectify {
    pub mean_days: Option<f64>,
    pub median_days: Option<i64>,
    pub p90_days: Option<i64>,
}

/// The counters of one region.
#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub region: String,
    pub name: String,
    pub name_en: String,
    pub sector: Option<Sector>,
    #[serde(flatten)]
    pub counters: Counters,
    /// fixed / found (0 when nothing was found).
    pub fix_rate: f64,
    /// closed on time / fixed (0 when nothing was fixed).
    pub on_time_rate: f64,
    pub time_to_rectify: TimeToRectify,
    /// The log position the figures include.
    pub position: u64,
    pub as_of: Option<DateTime<Utc>>,
}

fn ratio(a: i64, b: i64) -> f64 {
    if b > 0 { a as f64 / b as f64 } else { 0.0 }
}

/// Mean, median and p90 from the counters and the days distribution.
fn time_to_rectify(counters: &Counters, days: &Days) -> TimeToRectify {
    let total: i64 = days.values().sum();
    if total == 0 {
        return TimeToRectify::default();
    }
    let quantile = |q: f64| {
        let rank = ((total as f64) * q).ceil().max(1.0) as i64;
        let mut seen = 0;
        days.iter().find_map(|(days, fixed)| {
            seen += fixed;
            (seen >= rank).then_some(*days)
        })
    };
    TimeToRectify {
        mean_days: (counters.fixed > 0).then(|| counters.rectify_secs as f64 / counters.fixed as f64 / 86_400.0),
        median_days: quantile(0.5),
        p90_days: quantile(0.9),
    }
}

fn readable_region(state: &AppState, actor: &Actor, raw: Option<&str>) -> Result<RegionCode, ApiError> {
    let region = region_param(state, raw)?;
    authorize(actor, Action::ReadStats, Target { region, grid: None, responsible: None })?;
    Ok(region)
}

fn summary_of(
    state: &AppState,
    region: RegionCode,
    sector: Option<Sector>,
    counters: Counters,
    days: &Days,
    position: u64,
    as_of: Option<DateTime<Utc>>,
) -> Summary {
    let info = state.regions.region(region).expect("checked by region_param");
    Summary {
        region: region.to_string(),
        name: info.name_zh.clone(),
        name_en: info.name_en.clone(),
        sector,
        fix_rate: ratio(counters.fixed, counters.found),
        on_time_rate: ratio(counters.closed_on_time, counters.fixed),
        time_to_rectify: time_to_rectify(&counters, days),
        counters,
        position,
        as_of,
    }
}

/// Folds the log up to its current head, keeping only events of business time ≤ `as_of`.
async fn fold_as_of(state: &AppState, as_of: DateTime<Utc>) -> Result<(Changes, u64), ApiError> {
    let head = state.log.head().await?;
    let mut changes = Changes::default();
    let mut from = 1;
    while from <= head {
        let records = state.log.read_from(from, 4096).await?;
        let Some(last) = records.last() else { break };
        from = last.position + 1;
        for record in &records {
            for env in record.commit.events.iter().filter(|e| e.occurred_at <= as_of) {
                let Ok(()) = changes.apply(&Empty, record.position, env);
            }
        }
    }
    Ok((changes, head))
}

/// Statistics of a region: inspections, found, fixed, open, overdue, on-time, time to rectify and more.
#[utoipa::path(get, path = "/api/v1/stats/summary", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Summary), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn summary(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Summary>, ApiError> {
    let region = readable_region(&state, &actor, q.region.as_deref())?;
    let key = CounterKey::region(region).with_sector(q.sector);
    if let Some(as_of) = q.as_of {
        let (changes, head) = fold_as_of(&state, as_of).await?;
        let counters = changes.counters.get(&key).copied().unwrap_or_default();
        let days = changes.days.get(&key).cloned().unwrap_or_default();
        return Ok(Json(summary_of(&state, region, q.sector, counters, &days, head, Some(as_of))));
    }
    wait(&state, q.wait_for).await?;
    let position = state.views.applied();
    let store = state.views.store();
    let counters = store.counter(&key)?;
    let days = store.days(&key)?;
    Ok(Json(summary_of(&state, region, q.sector, counters, &days, position, None)))
}

/// Figures of several parts of a region.
#[derive(Serialize, ToSchema)]
pub struct Breakdown<T: ToSchema> {
    pub region: String,
    pub items: Vec<T>,
    pub position: u64,
}

/// The summaries of a region's children (prefectures of the province, counties of a prefecture).
#[utoipa::path(get, path = "/api/v1/stats/regions", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Breakdown<Summary>), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn regions(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Breakdown<Summary>>, ApiError> {
    let region = readable_region(&state, &actor, q.region.as_deref())?;
    wait(&state, q.wait_for).await?;
    let position = state.views.applied();
    let store = state.views.store();
    let children = state.regions.region(region).expect("checked").children.clone();
    let mut items = Vec::with_capacity(children.len());
    for child in children {
        let key = CounterKey::region(child).with_sector(q.sector);
        let days = store.days(&key)?;
        items.push(summary_of(&state, child, q.sector, store.counter(&key)?, &days, position, None));
    }
    Ok(Json(Breakdown { region: region.to_string(), items, position }))
}

/// The counters of one sector.
#[derive(Serialize, ToSchema)]
pub struct SectorFigures {
    pub sector: Sector,
    #[serde(flatten)]
    pub counters: Counters,
    pub fix_rate: f64,
}

/// A region's figures by sector.
#[utoipa::path(get, path = "/api/v1/stats/sectors", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Breakdown<SectorFigures>), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn sectors(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Breakdown<SectorFigures>>, ApiError> {
    let region = readable_region(&state, &actor, q.region.as_deref())?;
    wait(&state, q.wait_for).await?;
    let position = state.views.applied();
    let mut items = Vec::new();
    for sector in Sector::ALL {
        let counters = state.views.store().counter(&CounterKey::region(region).with_sector(Some(sector)))?;
        items.push(SectorFigures { sector, fix_rate: ratio(counters.fixed, counters.found), counters });
    }
    Ok(Json(Breakdown { region: region.to_string(), items, position }))
}

/// Cases and amounts of one kind of enforcement measure.
#[derive(Serialize, ToSchema)]
pub struct MeasureTotal {
    /// penalty, daily_penalty, seal_seizure, production_limit, detention_referral or criminal_referral.
    pub measure: &'static str,
    pub cases: i64,
    /// Fines in fen (1/100 yuan); 0 for measures without money.
    pub amount_fen: i64,
}

/// Enforcement totals of a region.
#[derive(Serialize, ToSchema)]
pub struct Enforcement {
    pub region: String,
    pub measures: Vec<MeasureTotal>,
    pub total_fines_fen: i64,
    pub position: u64,
}

/// Enforcement totals by measure type, with amounts.
#[utoipa::path(get, path = "/api/v1/stats/enforcement", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Enforcement), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn enforcement(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Enforcement>, ApiError> {
    let region = readable_region(&state, &actor, q.region.as_deref())?;
    wait(&state, q.wait_for).await?;
    let position = state.views.applied();
    let c = state.views.store().counter(&CounterKey::region(region).with_sector(q.sector))?;
    let m = |measure, cases, amount_fen| MeasureTotal { measure, cases, amount_fen };
    let measures = vec![
        m("penalty", c.penalties, c.penalty_fen),
        m("daily_penalty", c.daily_penalties, c.daily_penalty_fen),
        m("seal_seizure", c.seal_seizures, 0),
        m("production_limit", c.production_limits, 0),
        m("detention_referral", c.detention_referrals, 0),
        m("criminal_referral", c.criminal_referrals, 0),
    ];
    Ok(Json(Enforcement {
        region: region.to_string(),
        measures,
        total_fines_fen: c.penalty_fen + c.daily_penalty_fen,
        position,
    }))
}

/// The workload of one grid.
#[derive(Serialize, ToSchema)]
pub struct GridWorkload {
    pub id: String,
    pub name: String,
    pub name_en: String,
    pub officers: u32,
    pub inspections: i64,
    pub found: i64,
    pub open: i64,
    pub overdue: i64,
    pub open_per_officer: f64,
}

/// Grid workload of a county (inspections, open problems, per officer).
#[utoipa::path(get, path = "/api/v1/stats/grids", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Breakdown<GridWorkload>), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn grids(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Breakdown<GridWorkload>>, ApiError> {
    let region = readable_region(&state, &actor, q.region.as_deref())?;
    if region.level() != Level::County {
        return Err(ApiError::invalid("region", "grid workload is per county: `region` must be a county code"));
    }
    wait(&state, q.wait_for).await?;
    let position = state.views.applied();
    let mut items = Vec::new();
    for id in &state.regions.region(region).expect("checked").grids {
        let g = state.regions.grid(id).expect("grids of a region exist");
        let c = state.views.store().counter(&CounterKey::grid(id))?;
        items.push(GridWorkload {
            id: g.id.clone(),
            name: g.name_zh.clone(),
            name_en: g.name_en.clone(),
            officers: g.officers,
            inspections: c.inspections,
            found: c.found,
            open: c.open,
            overdue: c.overdue,
            open_per_officer: ratio(c.open, i64::from(g.officers)),
        });
    }
    Ok(Json(Breakdown { region: region.to_string(), items, position }))
}

/// Problems found and fixed in one month.
#[derive(Serialize, ToSchema)]
pub struct MonthFigures {
    /// `YYYY-MM`.
    pub month: String,
    pub found: i64,
    pub fixed: i64,
}

/// Found (by month of discovery) and fixed (by month of sign-off), month by month.
#[utoipa::path(get, path = "/api/v1/stats/trend", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Breakdown<MonthFigures>), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn trend(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Breakdown<MonthFigures>>, ApiError> {
    let region = readable_region(&state, &actor, q.region.as_deref())?;
    wait(&state, q.wait_for).await?;
    let position = state.views.applied();
    let items = state
        .views
        .store()
        .months(&CounterKey::region(region))?
        .into_iter()
        .map(|(month, c)| MonthFigures { month, found: c.found, fixed: c.fixed })
        .collect();
    Ok(Json(Breakdown { region: region.to_string(), items, position }))
}
