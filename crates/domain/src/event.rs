//! Events: the facts on the log. Field names are part of the stored format; change them only with a new
//! schema version and an upcaster in `envelope`.

use crate::region::RegionCode;
use crate::values::{DeadlineClass, Evidence, Measure, Responsible, Sector, Severity, Source};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every event of the Problem and Inspection aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    InspectionRecorded {
        region: RegionCode,
        grid: String,
        sector: Sector,
        source: Source,
        problems_found: u32,
        notes: String,
    },
    ProblemReported {
        region: RegionCode,
        grid: String,
        sector: Sector,
        source: Source,
        severity: Severity,
        description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inspection: Option<String>,
    },
    DeadlineSet {
        class: DeadlineClass,
        due: DateTime<Utc>,
    },
    ResponsibleAssigned {
        responsible: Responsible,
    },
    ProgressReported {
        note: String,
        evidence: Vec<Evidence>,
    },
    ExtensionRequested {
        reason: String,
        due: DateTime<Utc>,
    },
    ExtensionApproved {
        previous_due: DateTime<Utc>,
        due: DateTime<Utc>,
        comment: String,
    },
    ExtensionRejected {
        reason: String,
    },
    RectificationSubmitted {
        summary: String,
        evidence: Vec<Evidence>,
    },
    RectificationAccepted {
        comment: String,
        /// Whether the problem was closed by the deadline in force (`on_time`) and by the original one.
        on_time: bool,
        on_time_original: bool,
    },
    RectificationRejected {
        reason: String,
    },
    ProblemReopened {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<DateTime<Utc>>,
    },
    ProblemVoided {
        reason: String,
    },
    ProblemOverdue {
        due: DateTime<Utc>,
    },
    SupervisionListed {
        reason: String,
    },
    SupervisionLifted {
        reason: String,
    },
    EnforcementRecorded {
        measure: Measure,
        case_no: String,
        note: String,
    },
}

impl Event {
    /// The snake_case event type as stored in the envelope.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::InspectionRecorded { .. } => "inspection_recorded",
            Event::ProblemReported { .. } => "problem_reported",
            Event::DeadlineSet { .. } => "deadline_set",
            Event::ResponsibleAssigned { .. } => "responsible_assigned",
            Event::ProgressReported { .. } => "progress_reported",
            Event::ExtensionRequested { .. } => "extension_requested",
            Event::ExtensionApproved { .. } => "extension_approved",
            Event::ExtensionRejected { .. } => "extension_rejected",
            Event::RectificationSubmitted { .. } => "rectification_submitted",
            Event::RectificationAccepted { .. } => "rectification_accepted",
            Event::RectificationRejected { .. } => "rectification_rejected",
            Event::ProblemReopened { .. } => "problem_reopened",
            Event::ProblemVoided { .. } => "problem_voided",
            Event::ProblemOverdue { .. } => "problem_overdue",
            Event::SupervisionListed { .. } => "supervision_listed",
            Event::SupervisionLifted { .. } => "supervision_lifted",
            Event::EnforcementRecorded { .. } => "enforcement_recorded",
        }
    }
}
