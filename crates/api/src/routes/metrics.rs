//! `GET /metrics`: the main counters as Prometheus gauges, for the province and each prefecture, plus the
//! log and view positions. Served without a token: it holds aggregate figures only.

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rectify_projector::{CounterKey, Counters};
use std::fmt::Write;

/// A gauge: its name, help text and how to read it off the counters.
type Gauge = (&'static str, &'static str, fn(&Counters) -> i64);

/// The gauges.
const GAUGES: [Gauge; 10] = [
    ("rectify_inspections", "Pollution-source inspections recorded.", |c| c.inspections),
    ("rectify_problems_found", "Problems found (not voided).", |c| c.found),
    ("rectify_problems_fixed", "Problems rectified and signed off.", |c| c.fixed),
    ("rectify_problems_open", "Problems not yet signed off.", |c| c.open),
    ("rectify_problems_overdue", "Open problems past their deadline.", |c| c.overdue),
    ("rectify_problems_listed", "Problems listed for joint supervision.", |c| c.listed),
    ("rectify_problems_reopened", "Reopenings of closed problems.", |c| c.reopened),
    ("rectify_enforcement_penalties", "Administrative penalty cases.", |c| c.penalties + c.daily_penalties),
    ("rectify_enforcement_fines_fen", "Fines imposed, in fen.", |c| c.penalty_fen + c.daily_penalty_fen),
    ("rectify_enforcement_referrals", "Detention and criminal referrals.", |c| {
        c.detention_referrals + c.criminal_referrals
    }),
];

/// Prometheus text exposition of the gauges.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let root = state.regions.root;
    let mut regions = vec![root];
    regions.extend(state.regions.region(root).map(|r| r.children.clone()).unwrap_or_default());
    let mut figures = Vec::with_capacity(regions.len());
    for code in regions {
        match state.views.store().counter(&CounterKey::region(code)) {
            Ok(c) => figures.push((code, c)),
            Err(error) => return crate::error::ApiError::from(error).into_response(),
        }
    }
    let mut out = String::new();
    for (name, help, read) in GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (code, c) in &figures {
            let _ = writeln!(out, "{name}{{region=\"{code}\"}} {}", read(c));
        }
    }
    let _ = writeln!(
        out,
        "# HELP rectify_views_position Log position the views include.\n# TYPE rectify_views_position gauge"
    );
    let _ = writeln!(out, "rectify_views_position {}", state.views.applied());
    let sweeps = state.sweeps.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP rectify_watcher_sweeps_total Completed sweeps of the deadline watcher.\n# TYPE rectify_watcher_sweeps_total counter"
    );
    let _ = writeln!(out, "rectify_watcher_sweeps_total {sweeps}");
    if let Ok(head) = state.log.head().await {
        let _ = writeln!(
            out,
            "# HELP rectify_log_head Position of the last commit on the log.\n# TYPE rectify_log_head gauge"
        );
        let _ = writeln!(out, "rectify_log_head {head}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
