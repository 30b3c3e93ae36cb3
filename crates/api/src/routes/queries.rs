//! Query endpoints: problems (from the log, so always current), the ledger and statistics (from the views;
//! `wait_for=<position>` waits until the views include that position), regions, and the live feed.

use crate::auth::Auth;
use crate::error::{ApiError, Problem as ProblemJson};
use crate::json::{Params, PathParam};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::Stream;
use rectify_domain::hex_text;
use rectify_domain::permissions::{Action, Target, authorize};
use rectify_domain::problem::{Problem, State as AggState};
use rectify_domain::region::Level;
use rectify_domain::values::{DeadlineClass, Evidence, Responsible, Sector, Severity, Source};
use rectify_domain::{Actor, AggregateId, AggregateKind, RegionCode, Role, Status};
use rectify_projector::LedgerRow;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Waits (bounded) until the views include `position`.
pub(crate) async fn wait(state: &AppState, position: Option<u64>) -> Result<(), ApiError> {
    match position {
        Some(p) if !state.views.wait_for(p, state.wait_limit).await => Err(ApiError::Timeout(format!(
            "the views did not reach position {p} within {} s (they are at {})",
            state.wait_limit.as_secs(),
            state.views.applied()
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn region_param(state: &AppState, raw: Option<&str>) -> Result<RegionCode, ApiError> {
    let Some(raw) = raw else {
        return Ok(state.regions.root);
    };
    RegionCode::parse(raw)
        .filter(|c| state.regions.region(*c).is_some())
        .ok_or_else(|| ApiError::invalid("region", format!("unknown region {raw}")))
}

/// A problem as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct ProblemView {
    pub id: String,
    pub status: Status,
    pub version: u64,
    pub region: String,
    pub prefecture: String,
    pub grid: String,
    pub sector: Sector,
    pub severity: Severity,
    pub source: Source,
    pub description: String,
    pub deadline_class: Option<DeadlineClass>,
    pub original_due: Option<DateTime<Utc>>,
    pub due: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub listed: bool,
    pub under_enforcement: bool,
    pub responsible: Option<Responsible>,
    pub reported_by: String,
    pub reported_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reopened: u32,
    pub extensions: u32,
    pub evidence: Vec<Evidence>,
}

impl ProblemView {
    fn new(id: &AggregateId, version: u64, p: &Problem) -> ProblemView {
        ProblemView {
            id: id.to_string(),
            status: p.status,
            version,
            region: p.region.to_string(),
            prefecture: p.region.prefecture().to_string(),
            grid: p.grid.clone(),
            sector: p.sector,
            severity: p.severity,
            source: p.source.clone(),
            description: p.description.clone(),
            deadline_class: p.deadline_class,
            original_due: p.original_due,
            due: p.due,
            overdue: p.overdue,
            listed: p.listed,
            under_enforcement: p.enforcement_measures > 0,
            responsible: p.responsible.clone(),
            reported_by: p.reported_by.clone(),
            reported_at: p.reported_at,
            closed_at: p.closed_at,
            reopened: p.reopened,
            extensions: p.extensions,
            evidence: p.evidence.clone(),
        }
    }
}

fn target(p: &Problem) -> Target<'_> {
    Target {
        region: p.region,
        grid: Some(&p.grid),
        responsible: p.responsible.as_ref().and_then(|r| r.actor_id.as_deref()),
    }
}

/// Loads a problem's records from the log and checks the actor may read it.
async fn readable(
    state: &AppState,
    actor: &Actor,
    raw: &str,
) -> Result<(AggregateId, Vec<rectify_eventlog::Record>), ApiError> {
    let not_found = || ApiError::NotFound(format!("no problem {raw}"));
    let id = AggregateId::parse(raw).filter(|id| id.kind() == AggregateKind::Problem).ok_or_else(not_found)?;
    // Refuse by region before touching the log, so probing ids outside one's reach learns nothing.
    authorize(actor, Action::ReadProblems, Target { region: id.county(), grid: None, responsible: None }).or_else(
        |e| {
            if matches!(actor.role, Role::ResponsibleEntity | Role::GridOfficer) { Ok(()) } else { Err(e) }
        },
    )?;
    let records = state.log.read_stream(&id).await?;
    let full = AggState::replay(records.iter().flat_map(|r| &r.commit.events));
    let problem = full.problem().ok_or_else(not_found)?;
    authorize(actor, Action::ReadProblems, target(problem))?;
    Ok((id, records))
}

/// `as_of` and `wait_for` for one problem.
#[derive(Deserialize, IntoParams)]
pub struct ProblemQuery {
    /// Business time: the state as it was then.
    pub as_of: Option<DateTime<Utc>>,
    /// Read-your-writes, as on every query. A problem is folded from the log itself, which holds every
    /// acknowledged position, so the answer always includes it and nothing needs to wait.
    pub wait_for: Option<u64>,
}

/// One problem, current or as of a business time, folded from the log.
#[utoipa::path(get, path = "/api/v1/problems/{id}", tag = "queries", params(("id" = String, Path), ProblemQuery),
    responses((status = 200, body = ProblemView), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn problem(
    State(state): State<AppState>,
    Auth(actor): Auth,
    PathParam(raw): PathParam,
    Params(q): Params<ProblemQuery>,
) -> Result<Response, ApiError> {
    let (id, records) = readable(&state, &actor, &raw).await?;
    let events = records.iter().flat_map(|r| &r.commit.events).filter(|e| q.as_of.is_none_or(|t| e.occurred_at <= t));
    let s = AggState::replay(events);
    let p = s.problem().ok_or_else(|| ApiError::NotFound(format!("problem {raw} did not exist at that time")))?;
    let mut response = Json(ProblemView::new(&id, s.version, p)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, format!("\"{}\"", s.version).parse().expect("a number is a valid header"));
    Ok(response)
}

/// One commit of a problem's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    pub position: u64,
    /// The envelopes of this commit, with hashes.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<rectify_domain::Envelope>,
    /// The commit's Merkle leaf hash (hex), see `/api/v1/audit/proof/inclusion`.
    pub leaf: String,
    /// The signed seal that authenticates the commit (`null` until sealed, milliseconds after the append).
    pub seal: Option<crate::routes::audit::SealRef>,
}

/// The full history of a problem, with envelopes and hashes.
#[utoipa::path(get, path = "/api/v1/problems/{id}/events", tag = "queries", params(("id" = String, Path)),
    responses((status = 200, body = Vec<HistoryEntry>), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    Auth(actor): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let (_, records) = readable(&state, &actor, &raw).await?;
    let seals = crate::routes::audit::seal_refs(&state, records.iter().map(|r| r.position)).await?;
    let entry = |r: rectify_eventlog::Record| HistoryEntry {
        position: r.position,
        leaf: hex_text::encode(rectify_domain::audit::signed::commit_leaf(r.position, &r.commit)),
        seal: seals.get(&r.position).cloned(),
        events: r.commit.events,
    };
    Ok(Json(records.into_iter().map(entry).collect()))
}

/// Ledger filters and paging.
#[derive(Deserialize, IntoParams)]
pub struct LedgerQuery {
    /// Region at any level (default: the token's own region; the whole province for inspectors).
    pub region: Option<String>,
    pub grid: Option<String>,
    pub sector: Option<Sector>,
    pub status: Option<Status>,
    pub overdue: Option<bool>,
    pub listed: Option<bool>,
    pub class: Option<DeadlineClass>,
    /// Discovered at or after this time.
    pub reported_from: Option<DateTime<Utc>>,
    /// Discovered before this time.
    pub reported_to: Option<DateTime<Utc>>,
    /// Current deadline at or after this time.
    pub due_from: Option<DateTime<Utc>>,
    /// Current deadline before this time.
    pub due_to: Option<DateTime<Utc>>,
    /// Signed off at or after this time.
    pub closed_from: Option<DateTime<Utc>>,
    /// Signed off before this time.
    pub closed_to: Option<DateTime<Utc>>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    pub wait_for: Option<u64>,
}

/// One page of the ledger.
#[derive(Serialize, ToSchema)]
pub struct LedgerPage {
    pub items: Vec<ProblemView>,
    /// Cursor for the next page, if there may be one.
    pub next: Option<String>,
    /// The log position the views include.
    pub position: u64,
}

/// Whether `t` lies in `[from, to)`; an unbounded range accepts everything, a bounded one needs a time.
fn in_range(t: Option<DateTime<Utc>>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> bool {
    match (from, to) {
        (None, None) => true,
        _ => t.is_some_and(|t| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e)),
    }
}

fn id_prefix(region: RegionCode) -> String {
    let code = region.to_string();
    match region.level() {
        Level::Province => format!("P{}", &code[..2]),
        Level::Prefecture => format!("P{}", &code[..4]),
        Level::County => format!("P{code}"),
    }
}

const CSV_COLUMNS: &str = "id,status,version,region,grid,sector,severity,source,deadline_class,original_due,due,overdue,listed,reported_at,closed_at";

fn csv_line(v: &ProblemView) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    [
        v.id.clone(),
        v.status.as_str().into(),
        v.version.to_string(),
        v.region.clone(),
        quote(&v.grid),
        v.sector.as_str().into(),
        wire_name(&v.severity),
        quote(&v.source.name),
        v.deadline_class.as_ref().map(wire_name).unwrap_or_default(),
        time(v.original_due),
        time(v.due),
        v.overdue.to_string(),
        v.listed.to_string(),
        v.reported_at.to_rfc3339(),
        time(v.closed_at),
    ]
    .join(",")
}

/// Serde's snake_case name of a unit enum value.
fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The problem ledger (问题清单台账), filtered and paged, as JSON or CSV.
#[utoipa::path(get, path = "/api/v1/problems", tag = "queries", params(LedgerQuery),
    responses((status = 200, body = LedgerPage), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn ledger(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<LedgerQuery>,
) -> Result<Response, ApiError> {
    // Without `region`, a token bound to a region reads its own region's ledger.
    let region = match q.region.as_deref() {
        None if actor.role != Role::Inspector => actor.region,
        raw => region_param(&state, raw)?,
    };
    authorize(&actor, Action::ReadProblems, Target { region, grid: q.grid.as_deref(), responsible: None }).or_else(
        |e| {
            if actor.role == Role::ResponsibleEntity { Ok(()) } else { Err(e) }
        },
    )?;
    let limit = match q.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => {
            return Err(ApiError::invalid("limit", "`limit` must be between 1 and 1000"));
        }
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "`format` must be json or csv")),
    };
    wait(&state, q.wait_for).await?;
    let keep = |row: &LedgerRow| {
        let Some(p) = row.state.problem() else {
            return false;
        };
        authorize(&actor, Action::ReadProblems, target(p)).is_ok()
            && region.contains(p.region)
            && q.grid.as_ref().is_none_or(|g| *g == p.grid)
            && q.sector.is_none_or(|s| s == p.sector)
            && q.status.is_none_or(|s| s == p.status)
            && q.overdue.is_none_or(|o| o == (p.overdue && p.status.is_open()))
            && q.listed.is_none_or(|l| l == p.listed)
            && q.class.is_none_or(|c| Some(c) == p.deadline_class)
            && in_range(Some(p.reported_at), q.reported_from, q.reported_to)
            && in_range(p.due, q.due_from, q.due_to)
            && in_range(p.closed_at, q.closed_from, q.closed_to)
    };
    let position = state.views.applied();
    let rows = state.views.store().ledger_page(&id_prefix(region), q.after.as_deref(), limit, keep)?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.id.to_string())).flatten();
    let items: Vec<ProblemView> =
        rows.iter().filter_map(|r| r.state.problem().map(|p| ProblemView::new(&r.id, r.state.version, p))).collect();
    if csv {
        let mut body = String::from(CSV_COLUMNS);
        body.push('\n');
        for item in &items {
            body.push_str(&csv_line(item));
            body.push('\n');
        }
        let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
        if let Some(next) = next {
            response.headers_mut().insert("x-next-cursor", next.parse().expect("ids are header-safe"));
        }
        return Ok(response);
    }
    Ok(Json(LedgerPage { items, next, position }).into_response())
}

/// A child region or a grid in a region listing.
#[derive(Serialize, ToSchema)]
pub struct RegionRef {
    pub code: String,
    pub name: String,
    pub name_en: String,
}

/// A grid of a county.
#[derive(Serialize, ToSchema)]
pub struct GridRef {
    pub id: String,
    pub name: String,
    pub name_en: String,
    pub officers: u32,
}

/// A region with its children (and grids, for a county).
#[derive(Serialize, ToSchema)]
pub struct RegionView {
    pub code: String,
    pub name: String,
    pub name_en: String,
    #[schema(value_type = String)]
    pub level: Level,
    pub parent: Option<String>,
    pub children: Vec<RegionRef>,
    pub grids: Vec<GridRef>,
}

/// A region of the reference data.
#[utoipa::path(get, path = "/api/v1/regions/{code}", tag = "queries", params(("code" = String, Path)),
    responses((status = 200, body = RegionView), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn region(
    State(state): State<AppState>,
    Auth(_actor): Auth,
    PathParam(code): PathParam,
) -> Result<Json<RegionView>, ApiError> {
    let r = RegionCode::parse(&code)
        .and_then(|c| state.regions.region(c))
        .ok_or_else(|| ApiError::NotFound(format!("no region {code}")))?;
    let children = r
        .children
        .iter()
        .filter_map(|c| state.regions.region(*c))
        .map(|c| RegionRef { code: c.code.to_string(), name: c.name_zh.clone(), name_en: c.name_en.clone() })
        .collect();
    let grids = r
        .grids
        .iter()
        .filter_map(|g| state.regions.grid(g))
        .map(|g| GridRef {
            id: g.id.clone(),
            name: g.name_zh.clone(),
            name_en: g.name_en.clone(),
            officers: g.officers,
        })
        .collect();
    Ok(Json(RegionView {
        code: r.code.to_string(),
        name: r.name_zh.clone(),
        name_en: r.name_en.clone(),
        level: r.level,
        parent: r.parent.map(|p| p.to_string()),
        children,
        grids,
    }))
}

/// What changed in the views: one SSE `changed` event per applied batch.
#[derive(Serialize, ToSchema)]
pub struct ChangeEvent {
    pub position: u64,
    /// Ledger rows that changed (omitted for the public role).
    pub problems: Vec<String>,
    /// Counter rows that changed, as `<scope>|<sector or *>`.
    pub counters: Vec<String>,
}

/// One Server-Sent Event of `/api/v1/stream`, as the stream's schema describes each event.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the wire format; the events are written by axum's `Sse`
pub struct StreamEvent {
    /// `hello` (first, where the views are), `changed` (after every applied batch) or `resync` (a slow client
    /// missed batches: refetch).
    pub event: String,
    /// A `ChangeEvent` as JSON: `{"position", "problems", "counters"}`.
    pub data: String,
}

/// Server-Sent Events of view changes, for live dashboards.
#[utoipa::path(get, path = "/api/v1/stream", tag = "queries",
    responses((status = 200, description = "text/event-stream of `hello`, `changed` and `resync` events, each with a `ChangeEvent` as data", body = StreamEvent, content_type = "text/event-stream"),
        (status = "4XX", body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::BroadcastStream;
    let show_problems = actor.role != Role::Public;
    // Every event's data has the documented shape: `hello` says where the views are, `resync` that a slow
    // client missed batches and should refetch.
    let at = |views: &rectify_projector::ProjectorHandle| ChangeEvent {
        position: views.applied(),
        problems: Vec::new(),
        counters: Vec::new(),
    };
    let json = |e: &ChangeEvent| serde_json::to_string(e).expect("serializes");
    let hello = SseEvent::default().event("hello").data(json(&at(&state.views)));
    let views = state.views.clone();
    let changes = BroadcastStream::new(state.views.subscribe()).map(move |item| {
        Ok(match item {
            Ok(applied) => {
                let change = ChangeEvent {
                    position: applied.position,
                    problems: if show_problems { applied.problems.clone() } else { Vec::new() },
                    counters: applied.counters.clone(),
                };
                SseEvent::default().event("changed").data(serde_json::to_string(&change).expect("serializes"))
            }
            // A slow client missed some batches: tell it to refetch everything.
            Err(_) => SseEvent::default().event("resync").data(json(&at(&views))),
        })
    });
    Sse::new(tokio_stream::once(Ok(hello)).chain(changes)).keep_alive(KeepAlive::default())
}
