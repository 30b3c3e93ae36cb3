//! The HTTP surface: `router(state)` wires every route; handlers live in `commands` and `queries`.

pub mod audit;
pub mod commands;
pub mod dashboard;
pub mod metrics;
pub mod queries;
pub mod stats;

use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use utoipa::OpenApi;

/// The OpenAPI description, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Rectify API", description = "Environmental problems from inspection to sign-off (整改销号), event-sourced."),
    paths(
        commands::report, commands::inspect, commands::deadline, commands::assignment, commands::progress,
        commands::extension, commands::extension_decision, commands::submission, commands::acceptance,
        commands::reopen, commands::void, commands::supervision, commands::enforcement,
        queries::problem, queries::history, queries::ledger, stats::summary, stats::regions, stats::sectors, stats::enforcement, stats::grids, stats::trend, queries::region, queries::stream,
        audit::checkpoint, audit::keys, audit::inclusion, audit::consistency, audit::seal, audit::issue, audit::bulletin,
        healthz, readyz, metrics::metrics,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the views have caught up with the log as it was at start.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, description = "catching up")))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let applied = state.views.applied();
    match state.log.head().await {
        Ok(head) if applied >= head.min(state.ready_at) => (StatusCode::OK, format!("ready at position {applied}")),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, format!("catching up: views at {applied} of {}", state.ready_at)),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::NotFound("no such route".into())
}

/// A known route asked with another method (axum still adds the `Allow` header).
async fn method_not_allowed() -> crate::error::ApiError {
    crate::error::ApiError::MethodNotAllowed
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    use commands::*;
    let api = Router::new()
        .route("/problems", post(report).get(queries::ledger))
        .route("/inspections", post(inspect))
        .route("/problems/{id}", get(queries::problem))
        .route("/problems/{id}/events", get(queries::history))
        .route("/problems/{id}/deadline", post(deadline))
        .route("/problems/{id}/assignment", post(assignment))
        .route("/problems/{id}/progress", post(progress))
        .route("/problems/{id}/extension", post(extension))
        .route("/problems/{id}/extension-decision", post(extension_decision))
        .route("/problems/{id}/submission", post(submission))
        .route("/problems/{id}/acceptance", post(acceptance))
        .route("/problems/{id}/reopen", post(reopen))
        .route("/problems/{id}/void", post(void))
        .route("/problems/{id}/supervision", post(supervision))
        .route("/problems/{id}/enforcement", post(enforcement))
        .route("/stats/summary", get(stats::summary))
        .route("/stats/regions", get(stats::regions))
        .route("/stats/sectors", get(stats::sectors))
        .route("/stats/enforcement", get(stats::enforcement))
        .route("/stats/grids", get(stats::grids))
        .route("/stats/trend", get(stats::trend))
        .route("/regions/{code}", get(queries::region))
        .route("/stream", get(queries::stream))
        .route("/audit/checkpoint", get(audit::checkpoint))
        .route("/audit/keys", get(audit::keys))
        .route("/audit/proof/inclusion", get(audit::inclusion))
        .route("/audit/proof/consistency", get(audit::consistency))
        .route("/audit/seals/{position}", get(audit::seal))
        .route("/bulletins", post(audit::issue))
        .route("/bulletins/{id}", get(audit::bulletin));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(dashboard::dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(crate::json::MAX_BODY))
        .with_state(state)
}
