//! Command endpoints: one handler per command, each turning its body into a domain command.
//!
//! Common to all: `Authorization: Bearer`, optional `Idempotency-Key` (the command id; a repeat returns
//! the first answer) and `If-Match: "<version>"` (a stale version is 409). Bodies may carry `occurred_at`
//! (business time, default now).

use crate::auth::Auth;
use crate::error::{ApiError, Problem};
use crate::json::{JsonBody, PathParam};
use crate::pipeline::Accepted;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rectify_domain::values::{DeadlineClass, Evidence, Measure, Responsible, Sector, Severity, Source};
use rectify_domain::{AggregateId, AggregateKind, Command, CommandContext, RegionCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The answer to every accepted command.
#[derive(Serialize, ToSchema)]
pub struct CommandAnswer {
    /// The problem (or inspection) id.
    pub id: String,
    /// The aggregate version after the command.
    pub version: u64,
    /// The global log position of the command's commit; pass it as `wait_for` to read your write.
    pub position: u64,
}

/// Largest accepted clock skew for business times in the future.
const FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| ApiError::bad_request(Some(name.into()), format!("`{name}` must be visible ASCII")))
        })
        .transpose()
}

/// Command ids the service makes for itself (the deadline watcher's `overdue:<id>:v<version>`): a client
/// that could send one would pre-empt the watcher's command and keep a problem from ever turning overdue.
const RESERVED_KEY_PREFIX: &str = "overdue:";

fn command_id(headers: &HeaderMap) -> Result<String, ApiError> {
    match header(headers, "Idempotency-Key")? {
        None => Ok(ulid::Ulid::new().to_string()),
        Some(key) if key.starts_with(RESERVED_KEY_PREFIX) => Err(ApiError::bad_request(
            Some("Idempotency-Key".into()),
            format!("`Idempotency-Key` must not start with `{RESERVED_KEY_PREFIX}` (reserved for the service)"),
        )),
        Some(key) if !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(key.to_owned())
        }
        Some(_) => Err(ApiError::bad_request(
            Some("Idempotency-Key".into()),
            "`Idempotency-Key` must be 1 to 128 visible ASCII characters",
        )),
    }
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = header(headers, "If-Match")? else {
        return Ok(None);
    };
    let v = value.trim().trim_start_matches("W/").trim_matches('"');
    v.parse().map(Some).map_err(|_| {
        ApiError::bad_request(Some("If-Match".into()), "`If-Match` must be a quoted version number such as \"3\"")
    })
}

fn business_time(
    field: &'static str,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let at = at.unwrap_or(now);
    if at > now + FUTURE_SKEW {
        return Err(ApiError::invalid(field, format!("`{field}` must not be in the future")));
    }
    Ok(at)
}

/// Runs one command for `actor` and renders the answer with `status`. `time_field` names the body field the
/// business time came from, for the refusal of a time in the future.
async fn dispatch(
    state: &AppState,
    actor: rectify_domain::Actor,
    headers: &HeaderMap,
    id: &AggregateId,
    (time_field, occurred_at): (&'static str, Option<DateTime<Utc>>),
    command: Command,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let command_id = command_id(headers)?;
    let correlation_id = header(headers, "X-Correlation-Id")?.map_or_else(|| command_id.clone(), str::to_owned);
    let ctx = CommandContext {
        actor,
        occurred_at: business_time(time_field, occurred_at, now)?,
        recorded_at: now,
        command_id,
        correlation_id,
    };
    let Accepted { id, version, position, .. } =
        state.pipeline.run(id, &ctx, &command, if_match(headers)?).await.map_err(wire_field)?;
    let mut response = (status, axum::Json(CommandAnswer { id: id.to_string(), version, position })).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::ETAG, format!("\"{version}\"").parse().expect("a number is a valid header"));
    Ok(response)
}

/// Names a field the domain refused as the body calls it (the assignment body flattens `responsible`).
fn wire_field(e: ApiError) -> ApiError {
    match e {
        ApiError::Invalid { status, field: Some(f), detail } if f == "responsible.unit" => {
            ApiError::Invalid { status, field: Some("unit".into()), detail: detail.replace("responsible.unit", "unit") }
        }
        other => other,
    }
}

fn problem_id(raw: &str) -> Result<AggregateId, ApiError> {
    AggregateId::parse(raw)
        .filter(|id| id.kind() == AggregateKind::Problem)
        .ok_or_else(|| ApiError::NotFound(format!("no problem {raw}")))
}

/// Checks a county code and grid against the reference data.
fn placement(state: &AppState, region: &str, grid: &str) -> Result<RegionCode, ApiError> {
    let code = RegionCode::parse(region)
        .ok_or_else(|| ApiError::invalid("region", "`region` must be a six-digit county code"))?;
    let known =
        state.regions.region(code).ok_or_else(|| ApiError::invalid("region", format!("unknown region {region}")))?;
    if known.level != rectify_domain::region::Level::County {
        return Err(ApiError::invalid("region", format!("{region} is not a county")));
    }
    match state.regions.grid(grid) {
        Some(g) if g.county == code => Ok(code),
        Some(_) => Err(ApiError::invalid("grid", format!("grid {grid} is not in {region}"))),
        None => Err(ApiError::invalid("grid", format!("unknown grid {grid}"))),
    }
}

fn new_id(kind: AggregateKind, county: RegionCode) -> AggregateId {
    AggregateId::new(kind, county, &ulid::Ulid::new().to_string()).expect("a ulid is a valid id suffix")
}

/// Body of `POST /api/v1/problems`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// County code (GB/T 2260).
    pub region: String,
    pub grid: String,
    pub sector: Sector,
    pub source: Source,
    pub severity: Severity,
    pub description: String,
    /// Business time: when the problem was found.
    pub discovered_at: DateTime<Utc>,
    /// The inspection that found it, if recorded.
    #[serde(default)]
    pub inspection: Option<String>,
}

/// Reports a newly found problem.
#[utoipa::path(post, path = "/api/v1/problems", request_body = ReportBody, tag = "commands",
    responses((status = 201, body = CommandAnswer), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ReportBody>,
) -> Result<Response, ApiError> {
    let county = placement(&state, &body.region, &body.grid)?;
    let command = Command::ReportProblem {
        region: county,
        grid: body.grid,
        sector: body.sector,
        source: body.source,
        severity: body.severity,
        description: body.description,
        inspection: body.inspection,
    };
    dispatch(
        &state,
        actor,
        &headers,
        &new_id(AggregateKind::Problem, county),
        ("discovered_at", Some(body.discovered_at)),
        command,
        StatusCode::CREATED,
    )
    .await
}

/// Body of `POST /api/v1/inspections`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionBody {
    pub region: String,
    pub grid: String,
    pub sector: Sector,
    pub source: Source,
    /// Business time: when the inspection took place.
    pub inspected_at: DateTime<Utc>,
    #[serde(default)]
    pub problems_found: u32,
    #[serde(default)]
    pub notes: String,
}

/// Records a pollution-source inspection.
#[utoipa::path(post, path = "/api/v1/inspections", request_body = InspectionBody, tag = "commands",
    responses((status = 201, body = CommandAnswer), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn inspect(
    State(state): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InspectionBody>,
) -> Result<Response, ApiError> {
    let county = placement(&state, &body.region, &body.grid)?;
    let command = Command::RecordInspection {
        region: county,
        grid: body.grid,
        sector: body.sector,
        source: body.source,
        problems_found: body.problems_found,
        notes: body.notes,
    };
    dispatch(
        &state,
        actor,
        &headers,
        &new_id(AggregateKind::Inspection, county),
        ("inspected_at", Some(body.inspected_at)),
        command,
        StatusCode::CREATED,
    )
    .await
}

/// Declares one action endpoint: its body type, fields, path and how the body becomes a command.
macro_rules! action {
    ($(#[$doc:meta])* $handler:ident, $path:literal, $body:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }, |$b:ident| $command:expr) => {
        $(#[$doc])*
        #[derive(Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $body {
            $($(#[$fdoc])* pub $field: $ty,)*
            /// Business time of the action (default: now).
            #[serde(default)]
            pub occurred_at: Option<DateTime<Utc>>,
        }

        $(#[$doc])*
        #[utoipa::path(post, path = concat!("/api/v1/problems/{id}/", $path), request_body = $body, tag = "commands",
            params(("id" = String, Path, description = "Problem id"),
                   ("If-Match" = Option<String>, Header, description = "Expected version, quoted"),
                   ("Idempotency-Key" = Option<String>, Header, description = "Command id; a repeat returns the first answer")),
            responses((status = 200, body = CommandAnswer), (status = "4XX", body = Problem, content_type = "application/problem+json")),
            security(("bearer" = [])))]
        pub async fn $handler(State(state): State<AppState>, Auth(actor): Auth, PathParam(id): PathParam, headers: HeaderMap, JsonBody($b): JsonBody<$body>) -> Result<Response, ApiError> {
            let id = problem_id(&id)?;
            let occurred_at = $b.occurred_at;
            let command: Result<Command, ApiError> = $command;
            dispatch(&state, actor, &headers, &id, ("occurred_at", occurred_at), command?, StatusCode::OK).await
        }
    };
}

/// Accept or reject.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum AcceptanceDecision {
    Accept,
    Reject,
}

/// Approve or reject.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionDecision {
    Approve,
    Reject,
}

/// List for supervision (挂牌督办) or lift the listing.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum SupervisionDecision {
    List,
    Lift,
}

action!(
    /// Sets the rectification deadline (立行立改 or 限时整改).
    deadline, "deadline", DeadlineBody { class: DeadlineClass, due: DateTime<Utc> },
    |b| Ok(Command::SetDeadline { class: b.class, due: b.due })
);
action!(
    /// Assigns the responsible unit and person.
    assignment, "assignment", AssignmentBody { unit: String, #[serde(default)] person: Option<String>,
        /// Actor id of a responsible_entity token that may act on this problem.
        #[serde(default)] actor_id: Option<String> },
    |b| Ok(Command::Assign { responsible: Responsible { unit: b.unit, person: b.person, actor_id: b.actor_id } })
);
action!(
    /// Reports rectification progress with evidence.
    progress, "progress", ProgressBody { note: String, #[serde(default)] evidence: Vec<Evidence> },
    |b| Ok(Command::ReportProgress { note: b.note, evidence: b.evidence })
);
action!(
    /// Requests a later deadline; a reason is required.
    extension, "extension", ExtensionBody { reason: String, due: DateTime<Utc> },
    |b| Ok(Command::RequestExtension { reason: b.reason, due: b.due })
);
action!(
    /// Approves or rejects the pending extension; a rejection needs a comment.
    extension_decision, "extension-decision", ExtensionDecisionBody { decision: ExtensionDecision, #[serde(default)] comment: String },
    |b| match b.decision {
        ExtensionDecision::Approve => Ok(Command::ApproveExtension { comment: b.comment }),
        ExtensionDecision::Reject if b.comment.trim().is_empty() => Err(ApiError::invalid("comment", "a rejection needs a `comment` giving the reason")),
        ExtensionDecision::Reject => Ok(Command::RejectExtension { reason: b.comment }),
    }
);
action!(
    /// Submits the rectification for acceptance, with evidence.
    submission, "submission", SubmissionBody { summary: String, evidence: Vec<Evidence> },
    |b| Ok(Command::Submit { summary: b.summary, evidence: b.evidence })
);
action!(
    /// Accepts (signs off, 销号) or rejects a submitted rectification; a rejection needs a comment.
    acceptance, "acceptance", AcceptanceBody { decision: AcceptanceDecision, #[serde(default)] comment: String },
    |b| match b.decision {
        AcceptanceDecision::Accept => Ok(Command::Accept { comment: b.comment }),
        AcceptanceDecision::Reject if b.comment.trim().is_empty() => Err(ApiError::invalid("comment", "a rejection needs a `comment` giving the reason")),
        AcceptanceDecision::Reject => Ok(Command::Reject { reason: b.comment }),
    }
);
action!(
    /// Reopens a closed problem that came back (反弹).
    reopen, "reopen", ReopenBody { reason: String, #[serde(default)] due: Option<DateTime<Utc>> },
    |b| Ok(Command::Reopen { reason: b.reason, due: b.due })
);
action!(
    /// Voids a duplicate or a non-problem.
    void, "void", VoidBody { reason: String },
    |b| Ok(Command::Void { reason: b.reason })
);
action!(
    /// Lists the problem for joint supervision (挂牌督办) or lifts the listing.
    supervision, "supervision", SupervisionBody { decision: SupervisionDecision, reason: String },
    |b| Ok(match b.decision {
        SupervisionDecision::List => Command::ListSupervision { reason: b.reason },
        SupervisionDecision::Lift => Command::LiftSupervision { reason: b.reason },
    })
);
action!(
    /// Records an enforcement measure; money in fen.
    enforcement, "enforcement", EnforcementBody { measure: Measure, #[serde(default)] case_no: String, #[serde(default)] note: String },
    |b| Ok(Command::RecordEnforcement { measure: b.measure, case_no: b.case_no, note: b.note })
);
