//! The Problem aggregate (and the one-event Inspection aggregate): `decide` turns a command into events,
//! `evolve` folds an event into the state, `execute` does both with authorization and sealing.

use crate::command::{Command, CommandContext};
use crate::envelope::{Commit, Envelope, GENESIS_HASH};
use crate::error::DomainError;
use crate::event::Event;
use crate::ids::{AggregateId, AggregateKind};
use crate::permissions::{Action, Target, authorize};
use crate::region::{Level, RegionCode};
use crate::values::{DeadlineClass, Evidence, Responsible, Sector, Severity, Source};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle states of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Reported,
    Rectifying,
    PendingAcceptance,
    Closed,
    Voided,
}

impl Status {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reported => "reported",
            Status::Rectifying => "rectifying",
            Status::PendingAcceptance => "pending_acceptance",
            Status::Closed => "closed",
            Status::Voided => "voided",
        }
    }

    /// Whether the problem still needs work (counted as open).
    pub fn is_open(self) -> bool {
        matches!(self, Status::Reported | Status::Rectifying | Status::PendingAcceptance)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem's state, as folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub region: RegionCode,
    pub grid: String,
    pub sector: Sector,
    pub source: Source,
    pub severity: Severity,
    pub description: String,
    pub status: Status,
    pub reported_by: String,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub reported_at: DateTime<Utc>,
    pub submitted_by: Option<String>,
    pub deadline_class: Option<DeadlineClass>,
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub original_due: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub due: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub listed: bool,
    pub responsible: Option<Responsible>,
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub pending_extension: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub closed_at: Option<DateTime<Utc>>,
    pub evidence: Vec<Evidence>,
    pub reopened: u32,
    pub extensions: u32,
    pub enforcement_measures: u32,
}

/// An inspection: one event, counted in the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    pub region: RegionCode,
    pub grid: String,
    pub sector: Sector,
    pub problems_found: u32,
}

/// What a stream holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Empty,
    Inspection(Inspection),
    Problem(Box<Problem>),
}

/// An aggregate's state: its version, the last hash of its chain and its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u64,
    pub last_hash: String,
    pub body: Body,
}

impl Default for State {
    fn default() -> State {
        State { version: 0, last_hash: GENESIS_HASH.to_owned(), body: Body::Empty }
    }
}

impl State {
    /// The problem, if this stream holds one.
    pub fn problem(&self) -> Option<&Problem> {
        match &self.body {
            Body::Problem(p) => Some(p),
            _ => None,
        }
    }

    /// Folds a whole history.
    pub fn replay<'a>(envelopes: impl IntoIterator<Item = &'a Envelope>) -> State {
        envelopes.into_iter().fold(State::default(), evolve)
    }
}

fn require_text(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    limit_text(field, value)?;
    Ok(())
}

/// Longest free text a command may carry in one field, in bytes.
pub const MAX_TEXT: usize = 10_000;

/// Most pieces of evidence in one command.
pub const MAX_EVIDENCE: usize = 100;

/// Largest amount of one enforcement measure: ¥10 billion. Keeps every total far from overflowing.
pub const MAX_AMOUNT_FEN: u64 = 1_000_000_000_000;

/// Optional free text: may be empty, must not be huge.
fn limit_text(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.len() > MAX_TEXT {
        return Err(DomainError::invalid(field, format!("must be at most {MAX_TEXT} bytes")));
    }
    Ok(())
}

fn check_evidence(evidence: &[Evidence]) -> Result<(), DomainError> {
    if evidence.len() > MAX_EVIDENCE {
        return Err(DomainError::invalid("evidence", format!("at most {MAX_EVIDENCE} pieces per command")));
    }
    for e in evidence {
        limit_text("evidence.uri", &e.uri)?;
        limit_text("evidence.media_type", &e.media_type)?;
        if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DomainError::invalid("evidence.sha256", "must be 64 lowercase hex digits"));
        }
        if !e.media_type.contains('/') {
            return Err(DomainError::invalid("evidence.media_type", "must be a media type such as image/jpeg"));
        }
        require_text("evidence.uri", &e.uri)?;
    }
    Ok(())
}

fn check_source(source: &Source) -> Result<(), DomainError> {
    require_text("source.name", &source.name)?;
    let code = &source.credit_code;
    if !code.is_empty() && (code.len() != 18 || !code.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(DomainError::invalid("source.credit_code", "must be empty or 18 letters and digits"));
    }
    Ok(())
}

fn check_placement(region: RegionCode, grid: &str) -> Result<(), DomainError> {
    if region.level() != Level::County {
        return Err(DomainError::invalid("region", "must be a county-level code"));
    }
    require_text("grid", grid)
}

/// Decides which events `command` produces on `state`, or why it is refused. Pure.
///
/// Reach (role and region) is checked by [`execute`]; the rules here are the aggregate's own.
pub fn decide(state: &State, ctx: &CommandContext, command: &Command) -> Result<Vec<Event>, DomainError> {
    use Command as C;
    use Status as S;
    let status_error =
        |status: Status| DomainError::InvalidState { command: command.name(), status: status.to_string() };

    let problem = match (&state.body, command) {
        (Body::Empty, C::RecordInspection { region, grid, sector, source, problems_found, notes }) => {
            check_placement(*region, grid)?;
            check_source(source)?;
            limit_text("notes", notes)?;
            return Ok(vec![Event::InspectionRecorded {
                region: *region,
                grid: grid.clone(),
                sector: *sector,
                source: source.clone(),
                problems_found: *problems_found,
                notes: notes.clone(),
            }]);
        }
        (Body::Empty, C::ReportProblem { region, grid, sector, source, severity, description, inspection }) => {
            check_placement(*region, grid)?;
            check_source(source)?;
            require_text("description", description)?;
            limit_text("inspection", inspection.as_deref().unwrap_or(""))?;
            return Ok(vec![Event::ProblemReported {
                region: *region,
                grid: grid.clone(),
                sector: *sector,
                source: source.clone(),
                severity: *severity,
                description: description.clone(),
                inspection: inspection.clone(),
            }]);
        }
        (Body::Empty, _) => return Err(DomainError::NotFound("no such problem".into())),
        (_, C::RecordInspection { .. } | C::ReportProblem { .. }) => {
            return Err(DomainError::InvalidState { command: command.name(), status: "already recorded".into() });
        }
        (Body::Inspection(_), _) => return Err(DomainError::NotFound("an inspection is not a problem".into())),
        (Body::Problem(p), _) => p,
    };

    let status = problem.status;
    let event = match command {
        C::RecordInspection { .. } | C::ReportProblem { .. } => unreachable!("handled above"),
        C::SetDeadline { class, due } => {
            if status != S::Reported {
                return Err(status_error(status));
            }
            if *due < problem.reported_at {
                return Err(DomainError::invalid("due", "must not be before the problem was discovered"));
            }
            Event::DeadlineSet { class: *class, due: *due }
        }
        C::Assign { responsible } => {
            if !status.is_open() {
                return Err(status_error(status));
            }
            require_text("responsible.unit", &responsible.unit)?;
            limit_text("responsible.person", responsible.person.as_deref().unwrap_or(""))?;
            limit_text("responsible.actor_id", responsible.actor_id.as_deref().unwrap_or(""))?;
            Event::ResponsibleAssigned { responsible: responsible.clone() }
        }
        C::ReportProgress { note, evidence } => {
            if !matches!(status, S::Reported | S::Rectifying) {
                return Err(status_error(status));
            }
            require_text("note", note)?;
            check_evidence(evidence)?;
            Event::ProgressReported { note: note.clone(), evidence: evidence.clone() }
        }
        C::RequestExtension { reason, due } => {
            if status != S::Rectifying {
                return Err(status_error(status));
            }
            require_text("reason", reason)?;
            if problem.pending_extension.is_some() {
                return Err(DomainError::InvalidState {
                    command: command.name(),
                    status: "awaiting an extension decision".into(),
                });
            }
            if problem.due.is_some_and(|current| *due <= current) {
                return Err(DomainError::invalid("due", "an extension may only move the deadline later"));
            }
            Event::ExtensionRequested { reason: reason.clone(), due: *due }
        }
        C::ApproveExtension { comment } => {
            limit_text("comment", comment)?;
            let (Some(due), Some(previous_due)) = (problem.pending_extension, problem.due) else {
                return Err(DomainError::InvalidState {
                    command: command.name(),
                    status: "without a pending extension".into(),
                });
            };
            Event::ExtensionApproved { previous_due, due, comment: comment.clone() }
        }
        C::RejectExtension { reason } => {
            if problem.pending_extension.is_none() {
                return Err(DomainError::InvalidState {
                    command: command.name(),
                    status: "without a pending extension".into(),
                });
            }
            require_text("reason", reason)?;
            Event::ExtensionRejected { reason: reason.clone() }
        }
        C::Submit { summary, evidence } => {
            if status != S::Rectifying {
                return Err(status_error(status));
            }
            require_text("summary", summary)?;
            if evidence.is_empty() {
                return Err(DomainError::invalid("evidence", "a submission needs at least one piece of evidence"));
            }
            check_evidence(evidence)?;
            Event::RectificationSubmitted { summary: summary.clone(), evidence: evidence.clone() }
        }
        C::Accept { .. } | C::Reject { .. } => {
            if status != S::PendingAcceptance {
                return Err(status_error(status));
            }
            let actor = ctx.actor.id.as_str();
            if problem.reported_by == actor {
                return Err(DomainError::SeparationOfDuties(
                    "who reported a problem may not decide on its rectification".into(),
                ));
            }
            if problem.submitted_by.as_deref() == Some(actor) {
                return Err(DomainError::SeparationOfDuties(
                    "who submitted a rectification may not decide on it".into(),
                ));
            }
            match command {
                C::Accept { comment } => Event::RectificationAccepted {
                    comment: {
                        limit_text("comment", comment)?;
                        comment.clone()
                    },
                    on_time: problem.due.is_none_or(|due| ctx.occurred_at <= due),
                    on_time_original: problem.original_due.is_none_or(|due| ctx.occurred_at <= due),
                },
                C::Reject { reason } => {
                    require_text("reason", reason)?;
                    Event::RectificationRejected { reason: reason.clone() }
                }
                _ => unreachable!("matched above"),
            }
        }
        C::Reopen { reason, due } => {
            if status != S::Closed {
                return Err(status_error(status));
            }
            require_text("reason", reason)?;
            if due.is_some_and(|due| due < ctx.occurred_at) {
                return Err(DomainError::invalid("due", "a new deadline must not be in the past"));
            }
            Event::ProblemReopened { reason: reason.clone(), due: *due }
        }
        C::Void { reason } => {
            if !status.is_open() {
                return Err(status_error(status));
            }
            require_text("reason", reason)?;
            Event::ProblemVoided { reason: reason.clone() }
        }
        C::MarkOverdue { due } => {
            if !matches!(status, S::Rectifying | S::PendingAcceptance) || problem.overdue {
                return Err(status_error(status));
            }
            if problem.due != Some(*due) {
                return Err(DomainError::invalid("due", "is not the deadline in force"));
            }
            if ctx.occurred_at <= *due {
                return Err(DomainError::invalid("due", "has not passed yet"));
            }
            Event::ProblemOverdue { due: *due }
        }
        C::ListSupervision { reason } => {
            if problem.listed || !status.is_open() {
                return Err(DomainError::InvalidState {
                    command: command.name(),
                    status: if problem.listed { "listed".into() } else { status.to_string() },
                });
            }
            require_text("reason", reason)?;
            Event::SupervisionListed { reason: reason.clone() }
        }
        C::LiftSupervision { reason } => {
            if !problem.listed {
                return Err(DomainError::InvalidState { command: command.name(), status: "not listed".into() });
            }
            require_text("reason", reason)?;
            Event::SupervisionLifted { reason: reason.clone() }
        }
        C::RecordEnforcement { measure, case_no, note } => {
            if status == S::Voided {
                return Err(status_error(status));
            }
            if let crate::values::Measure::DailyPenalty { days: 0, .. } = measure {
                return Err(DomainError::invalid("measure.days", "must be at least 1"));
            }
            if matches!(measure, crate::values::Measure::Penalty { .. } | crate::values::Measure::DailyPenalty { .. })
                && measure.amount_fen() == 0
            {
                return Err(DomainError::invalid("measure.amount_fen", "a penalty needs a positive amount"));
            }
            if measure.amount_fen() > MAX_AMOUNT_FEN {
                return Err(DomainError::invalid(
                    "measure.amount_fen",
                    format!("must be at most {MAX_AMOUNT_FEN} fen"),
                ));
            }
            limit_text("case_no", case_no)?;
            limit_text("note", note)?;
            Event::EnforcementRecorded { measure: measure.clone(), case_no: case_no.clone(), note: note.clone() }
        }
    };
    Ok(vec![event])
}

/// Folds one event into the state. Total: an event that does not fit leaves the body unchanged but still
/// advances the version and chain, so that replay never fails on a stored history.
pub fn evolve(mut state: State, env: &Envelope) -> State {
    state.version = env.version;
    state.last_hash.clone_from(&env.hash);
    match (&mut state.body, &env.event) {
        (Body::Empty, Event::InspectionRecorded { region, grid, sector, problems_found, .. }) => {
            state.body = Body::Inspection(Inspection {
                region: *region,
                grid: grid.clone(),
                sector: *sector,
                problems_found: *problems_found,
            });
        }
        (Body::Empty, Event::ProblemReported { region, grid, sector, source, severity, description, .. }) => {
            state.body = Body::Problem(Box::new(Problem {
                region: *region,
                grid: grid.clone(),
                sector: *sector,
                source: source.clone(),
                severity: *severity,
                description: description.clone(),
                status: Status::Reported,
                reported_by: env.actor.id.clone(),
                reported_at: env.occurred_at,
                submitted_by: None,
                deadline_class: None,
                original_due: None,
                due: None,
                overdue: false,
                listed: false,
                responsible: None,
                pending_extension: None,
                closed_at: None,
                evidence: Vec::new(),
                reopened: 0,
                extensions: 0,
                enforcement_measures: 0,
            }));
        }
        (Body::Problem(p), event) => apply(p, env, event),
        _ => {}
    }
    state
}

fn apply(p: &mut Problem, env: &Envelope, event: &Event) {
    match event {
        Event::InspectionRecorded { .. } | Event::ProblemReported { .. } => {}
        Event::DeadlineSet { class, due } => {
            p.status = Status::Rectifying;
            p.deadline_class = Some(*class);
            p.original_due = Some(*due);
            p.due = Some(*due);
        }
        Event::ResponsibleAssigned { responsible } => p.responsible = Some(responsible.clone()),
        Event::ProgressReported { evidence, .. } => p.evidence.extend(evidence.iter().cloned()),
        Event::ExtensionRequested { due, .. } => p.pending_extension = Some(*due),
        Event::ExtensionApproved { due, .. } => {
            p.pending_extension = None;
            p.due = Some(*due);
            p.overdue = false;
            p.extensions += 1;
        }
        Event::ExtensionRejected { .. } => p.pending_extension = None,
        Event::RectificationSubmitted { evidence, .. } => {
            p.status = Status::PendingAcceptance;
            p.submitted_by = Some(env.actor.id.clone());
            p.evidence.extend(evidence.iter().cloned());
        }
        Event::RectificationAccepted { .. } => {
            p.status = Status::Closed;
            p.closed_at = Some(env.occurred_at);
            p.overdue = false;
            p.pending_extension = None;
        }
        Event::RectificationRejected { .. } => {
            p.status = Status::Rectifying;
            p.submitted_by = None;
        }
        Event::ProblemReopened { due, .. } => {
            p.status = Status::Rectifying;
            p.closed_at = None;
            p.submitted_by = None;
            p.reopened += 1;
            if let Some(due) = due {
                p.due = Some(*due);
            }
        }
        Event::ProblemVoided { .. } => {
            p.status = Status::Voided;
            p.overdue = false;
            p.pending_extension = None;
        }
        Event::ProblemOverdue { .. } => p.overdue = true,
        Event::SupervisionListed { .. } => p.listed = true,
        Event::SupervisionLifted { .. } => p.listed = false,
        Event::EnforcementRecorded { .. } => p.enforcement_measures += 1,
    }
}

/// Authorizes, decides and seals: the whole write path of one command on one stream, without I/O.
///
/// `id` is the stream the command targets (a fresh id for a report or an inspection).
pub fn execute(
    id: &AggregateId,
    state: &State,
    ctx: &CommandContext,
    command: &Command,
) -> Result<Commit, DomainError> {
    let expected_kind = match command {
        Command::RecordInspection { .. } => AggregateKind::Inspection,
        _ => AggregateKind::Problem,
    };
    if id.kind() != expected_kind {
        return Err(DomainError::NotFound(format!("{id} is not a {expected_kind:?} id").to_lowercase()));
    }
    let target = match (command, state.problem()) {
        (Command::RecordInspection { region, grid, .. } | Command::ReportProblem { region, grid, .. }, _) => {
            if *region != id.county() {
                return Err(DomainError::invalid("region", "does not match the county of the id"));
            }
            Target { region: *region, grid: Some(grid), responsible: None }
        }
        (_, Some(p)) => Target {
            region: p.region,
            grid: Some(&p.grid),
            responsible: p.responsible.as_ref().and_then(|r| r.actor_id.as_deref()),
        },
        (_, None) => Target { region: id.county(), grid: None, responsible: None },
    };
    authorize(&ctx.actor, Action::of(command), target)?;
    let events = decide(state, ctx, command)?;
    Ok(Commit::seal(id, state.version, &state.last_hash, ctx, events))
}
