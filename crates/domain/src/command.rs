//! Commands: what an actor asks for. Everything from outside (time, ids, actor) travels with them.

use crate::actor::Actor;
use crate::region::RegionCode;
use crate::values::{DeadlineClass, Evidence, Measure, Responsible, Sector, Severity, Source};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who asks, when, and under which ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandContext {
    pub actor: Actor,
    /// Business time: when the fact happened in the world.
    pub occurred_at: DateTime<Utc>,
    /// Recording time: when the service took the command.
    pub recorded_at: DateTime<Utc>,
    /// The idempotency key; a retried command carries the same id.
    pub command_id: String,
    pub correlation_id: String,
}

/// Every command of the Problem and Inspection aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    RecordInspection {
        region: RegionCode,
        grid: String,
        sector: Sector,
        source: Source,
        /// How many problems this inspection found (reported separately, one command each).
        problems_found: u32,
        #[serde(default)]
        notes: String,
    },
    ReportProblem {
        region: RegionCode,
        grid: String,
        sector: Sector,
        source: Source,
        severity: Severity,
        description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inspection: Option<String>,
    },
    SetDeadline {
        class: DeadlineClass,
        due: DateTime<Utc>,
    },
    Assign {
        responsible: Responsible,
    },
    ReportProgress {
        note: String,
        evidence: Vec<Evidence>,
    },
    RequestExtension {
        reason: String,
        due: DateTime<Utc>,
    },
    ApproveExtension {
        #[serde(default)]
        comment: String,
    },
    RejectExtension {
        reason: String,
    },
    Submit {
        summary: String,
        evidence: Vec<Evidence>,
    },
    Accept {
        #[serde(default)]
        comment: String,
    },
    Reject {
        reason: String,
    },
    Reopen {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<DateTime<Utc>>,
    },
    Void {
        reason: String,
    },
    MarkOverdue {
        /// The deadline that passed; a command for an outdated deadline is refused.
        due: DateTime<Utc>,
    },
    ListSupervision {
        reason: String,
    },
    LiftSupervision {
        reason: String,
    },
    RecordEnforcement {
        measure: Measure,
        #[serde(default)]
        case_no: String,
        #[serde(default)]
        note: String,
    },
}

impl Command {
    /// The snake_case command name (the permission matrix and metrics use it).
    pub fn name(&self) -> &'static str {
        match self {
            Command::RecordInspection { .. } => "record_inspection",
            Command::ReportProblem { .. } => "report_problem",
            Command::SetDeadline { .. } => "set_deadline",
            Command::Assign { .. } => "assign",
            Command::ReportProgress { .. } => "report_progress",
            Command::RequestExtension { .. } => "request_extension",
            Command::ApproveExtension { .. } => "approve_extension",
            Command::RejectExtension { .. } => "reject_extension",
            Command::Submit { .. } => "submit",
            Command::Accept { .. } => "accept",
            Command::Reject { .. } => "reject",
            Command::Reopen { .. } => "reopen",
            Command::Void { .. } => "void",
            Command::MarkOverdue { .. } => "mark_overdue",
            Command::ListSupervision { .. } => "list_supervision",
            Command::LiftSupervision { .. } => "lift_supervision",
            Command::RecordEnforcement { .. } => "record_enforcement",
        }
    }
}
