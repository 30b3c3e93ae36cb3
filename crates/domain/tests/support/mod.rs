//! The given/when/then harness shared by the domain's test binaries.
//!
//! Every history is built by running commands through [`execute`], so envelopes, versions and hashes are the
//! real ones; a given step that is refused fails the test at the caller's line.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use rectify_domain::values::{DeadlineClass, Evidence, Measure, Responsible, Sector, Severity, Source};
use rectify_domain::{Actor, AggregateId, Command, CommandContext, Commit, DomainError, Event, Role, State, execute};
use rectify_domain::{RegionCode, evolve};

/// The county most scenarios happen in, and its grid.
pub const COUNTY_A: &str = "520102";
pub const GRID_A: &str = "520102-G01";
/// A neighbouring county of the same prefecture.
pub const COUNTY_B: &str = "520103";

/// `2024-03-01T08:00Z` plus `n` days: the scenario calendar.
pub fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap() + Duration::days(n)
}

pub fn region(code: &str) -> RegionCode {
    RegionCode::parse(code).unwrap()
}

fn actor(id: &str, role: Role, code: &str, grid: Option<&str>) -> Actor {
    Actor { id: id.into(), role, region: region(code), grid: grid.map(Into::into) }
}

/// Grid officer of grid G01 in county A.
pub fn officer() -> Actor {
    actor("officer-a", Role::GridOfficer, COUNTY_A, Some(GRID_A))
}
/// Grid officer of another grid of county A.
pub fn officer_other_grid() -> Actor {
    actor("officer-a2", Role::GridOfficer, COUNTY_A, Some("520102-G02"))
}
pub fn county_a() -> Actor {
    actor("county-a", Role::CountyBureau, COUNTY_A, None)
}
/// A second official of county A's bureau.
pub fn county_a2() -> Actor {
    actor("county-a2", Role::CountyBureau, COUNTY_A, None)
}
pub fn county_b() -> Actor {
    actor("county-b", Role::CountyBureau, COUNTY_B, None)
}
/// The city bureau of Guiyang (520100), over counties A and B.
pub fn city() -> Actor {
    actor("city", Role::CityBureau, "520100", None)
}
/// The city bureau of another prefecture (Zunyi).
pub fn other_city() -> Actor {
    actor("city-zunyi", Role::CityBureau, "520300", None)
}
pub fn province() -> Actor {
    actor("province", Role::Province, "520000", None)
}
pub fn entity() -> Actor {
    actor("entity-1", Role::ResponsibleEntity, COUNTY_A, None)
}
pub fn inspector() -> Actor {
    actor("inspector", Role::Inspector, "520000", None)
}
pub fn public() -> Actor {
    actor("public", Role::Public, "520000", None)
}
pub fn system() -> Actor {
    actor("system", Role::System, "520000", None)
}

/// A well-formed piece of evidence; `n` varies its hash.
pub fn evidence(n: u8) -> Evidence {
    Evidence {
        sha256: format!("{n:02x}").repeat(32),
        media_type: "image/jpeg".into(),
        uri: format!("blob://evidence/{n}"),
    }
}

pub fn source() -> Source {
    Source { name: "Kaiyang Phosphate Co.".into(), credit_code: "91520100MA6DK7XQ3B".into() }
}

/// A command, who gives it (`None`: the usual actor for it, see [`default_actor`]) and when (`None`: the
/// scenario clock).
#[derive(Debug, Clone)]
pub struct Step {
    pub command: Command,
    pub by: Option<Actor>,
    pub at: Option<DateTime<Utc>>,
}

impl Step {
    /// Given by `actor`.
    pub fn by(mut self, actor: Actor) -> Step {
        self.by = Some(actor);
        self
    }
    /// Happening at business time `at`.
    pub fn at(mut self, at: DateTime<Utc>) -> Step {
        self.at = Some(at);
        self
    }
}

impl From<Command> for Step {
    fn from(command: Command) -> Step {
        Step { command, by: None, at: None }
    }
}

/// Who usually gives a command: officers report and submit, the system marks overdue, the city supervises,
/// county A's bureau does the rest.
pub fn default_actor(command: &Command) -> Actor {
    match command {
        Command::RecordInspection { .. }
        | Command::ReportProblem { .. }
        | Command::ReportProgress { .. }
        | Command::Submit { .. } => officer(),
        Command::MarkOverdue { .. } => system(),
        Command::ListSupervision { .. } | Command::LiftSupervision { .. } => city(),
        _ => county_a(),
    }
}

// ---- command builders: the usual valid command, to be varied with struct update or the `_with` forms ----

pub fn inspect() -> Step {
    Command::RecordInspection {
        region: region(COUNTY_A),
        grid: GRID_A.into(),
        sector: Sector::PhosphorusChemical,
        source: source(),
        problems_found: 2,
        notes: "tailings seepage".into(),
    }
    .into()
}

/// The problem every scenario starts from.
pub fn report() -> Step {
    report_with(COUNTY_A, "untreated wastewater discharged into the river", source())
}

pub fn report_with(region_code: &str, description: &str, source: Source) -> Step {
    Command::ReportProblem {
        region: region(region_code),
        grid: GRID_A.into(),
        sector: Sector::PhosphorusChemical,
        source,
        severity: Severity::Major,
        description: description.into(),
        inspection: None,
    }
    .into()
}

/// The event [`report`] becomes.
pub fn reported() -> Event {
    Event::ProblemReported {
        region: region(COUNTY_A),
        grid: GRID_A.into(),
        sector: Sector::PhosphorusChemical,
        source: source(),
        severity: Severity::Major,
        description: "untreated wastewater discharged into the river".into(),
        inspection: None,
    }
}

pub fn deadline(due: DateTime<Utc>) -> Step {
    Command::SetDeadline { class: DeadlineClass::TimeLimited, due }.into()
}
pub fn immediate(due: DateTime<Utc>) -> Step {
    Command::SetDeadline { class: DeadlineClass::Immediate, due }.into()
}
pub fn responsible(actor_id: Option<&str>) -> Responsible {
    Responsible {
        unit: "Kaiyang Phosphate Co.".into(),
        person: Some("Zhang Wei".into()),
        actor_id: actor_id.map(Into::into),
    }
}
pub fn assign(actor_id: Option<&str>) -> Step {
    Command::Assign { responsible: responsible(actor_id) }.into()
}
pub fn progress(note: &str, evidence: Vec<Evidence>) -> Step {
    Command::ReportProgress { note: note.into(), evidence }.into()
}
pub fn some_progress() -> Step {
    progress("sludge removed", vec![evidence(1)])
}
pub fn request_extension(reason: &str, due: DateTime<Utc>) -> Step {
    Command::RequestExtension { reason: reason.into(), due }.into()
}
pub fn approve_extension() -> Step {
    Command::ApproveExtension { comment: "granted".into() }.into()
}
pub fn reject_extension(reason: &str) -> Step {
    Command::RejectExtension { reason: reason.into() }.into()
}
pub fn submit(summary: &str, evidence: Vec<Evidence>) -> Step {
    Command::Submit { summary: summary.into(), evidence }.into()
}
pub fn some_submit() -> Step {
    submit("outfall sealed, treatment plant running", vec![evidence(2)])
}
pub fn accept() -> Step {
    Command::Accept { comment: "verified on site".into() }.into()
}
pub fn reject(reason: &str) -> Step {
    Command::Reject { reason: reason.into() }.into()
}
pub fn reopen(reason: &str, due: Option<DateTime<Utc>>) -> Step {
    Command::Reopen { reason: reason.into(), due }.into()
}
pub fn void(reason: &str) -> Step {
    Command::Void { reason: reason.into() }.into()
}
pub fn mark_overdue(due: DateTime<Utc>) -> Step {
    Command::MarkOverdue { due }.into()
}
pub fn list(reason: &str) -> Step {
    Command::ListSupervision { reason: reason.into() }.into()
}
pub fn lift(reason: &str) -> Step {
    Command::LiftSupervision { reason: reason.into() }.into()
}
pub fn enforce(measure: Measure) -> Step {
    Command::RecordEnforcement { measure, case_no: "GZ-2024-001".into(), note: String::new() }.into()
}

/// Histories that recur: each ends in the state its name says, deadline due `day(10)`.
pub fn rectifying() -> Vec<Step> {
    vec![report(), deadline(day(10))]
}
pub fn pending() -> Vec<Step> {
    vec![report(), deadline(day(10)), some_submit()]
}
pub fn closed() -> Vec<Step> {
    vec![report(), deadline(day(10)), some_submit(), accept()]
}
pub fn voided() -> Vec<Step> {
    vec![report(), void("duplicate of P520102-1")]
}

// ---- the harness ----

/// A stream with its history, ready for one more command.
pub struct Scenario {
    id: Option<AggregateId>,
    pub state: State,
    pub commits: Vec<Commit>,
    clock: DateTime<Utc>,
    seq: u32,
}

/// Starts a scenario from a history of commands (each must succeed).
#[track_caller]
pub fn given(steps: &[Step]) -> Scenario {
    let mut scenario = Scenario { id: None, state: State::default(), commits: Vec::new(), clock: day(0), seq: 0 };
    for step in steps {
        if let Err(e) = scenario.run(step.clone()) {
            panic!("given step {} refused: {e}", step.command.name());
        }
    }
    scenario
}

impl Scenario {
    /// Targets stream `id` instead of a fresh one of the first command's kind.
    pub fn on(mut self, id: &str) -> Scenario {
        self.id = Some(AggregateId::parse(id).expect("a valid id"));
        self
    }

    /// The stream's id (fixed by the first command).
    pub fn id(&mut self, command: &Command) -> AggregateId {
        self.id
            .get_or_insert_with(|| {
                let letter = if matches!(command, Command::RecordInspection { .. }) { 'I' } else { 'P' };
                AggregateId::parse(&format!("{letter}{COUNTY_A}-test1")).unwrap()
            })
            .clone()
    }

    fn context(&mut self, step: &Step) -> CommandContext {
        let at = step.at.unwrap_or(self.clock);
        self.clock = at + Duration::minutes(1);
        self.seq += 1;
        CommandContext {
            actor: step.by.clone().unwrap_or_else(|| default_actor(&step.command)),
            occurred_at: at,
            recorded_at: at + Duration::seconds(5),
            command_id: format!("cmd-{}", self.seq),
            correlation_id: "corr-1".into(),
        }
    }

    /// Executes one step; on success the commit is appended and folded in.
    pub fn run(&mut self, step: Step) -> Result<&Commit, DomainError> {
        let id = self.id(&step.command);
        let ctx = self.context(&step);
        let commit = execute(&id, &self.state, &ctx, &step.command)?;
        self.state = commit.events.iter().fold(std::mem::take(&mut self.state), evolve);
        self.commits.push(commit);
        Ok(self.commits.last().unwrap())
    }

    /// The command under test.
    pub fn when(self, step: Step) -> When {
        When { scenario: self, step }
    }

    /// Every envelope so far, in order.
    pub fn envelopes(&self) -> impl Iterator<Item = &rectify_domain::Envelope> {
        self.commits.iter().flat_map(|c| c.events.iter())
    }
}

/// A scenario and the command under test.
pub struct When {
    scenario: Scenario,
    step: Step,
}

/// The kind of refusal expected: the [`DomainError`] variant, and for `Invalid` the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Forbidden,
    SeparationOfDuties,
    NotFound,
    InvalidState,
    Invalid(&'static str),
}

impl Refusal {
    fn of(e: &DomainError) -> Refusal {
        match e {
            DomainError::Forbidden(_) => Refusal::Forbidden,
            DomainError::SeparationOfDuties(_) => Refusal::SeparationOfDuties,
            DomainError::NotFound(_) => Refusal::NotFound,
            DomainError::InvalidState { .. } => Refusal::InvalidState,
            DomainError::Invalid { field, .. } => Refusal::Invalid(field),
        }
    }
}

impl When {
    /// Happening at business time `at` (shorthand for `.at` on the step).
    pub fn at(mut self, at: DateTime<Utc>) -> When {
        self.step.at = Some(at);
        self
    }

    /// Expects exactly `expected` to be appended, as a well-formed continuation of the stream; returns the
    /// state after it.
    #[track_caller]
    pub fn then(self, expected: &[Event]) -> State {
        let When { mut scenario, step } = self;
        let name = step.command.name();
        let prev_version = scenario.state.version;
        let prev_hash = scenario.state.last_hash.clone();
        let commit = match scenario.run(step) {
            Ok(commit) => commit.clone(),
            Err(e) => panic!("{name} was refused: {e}"),
        };
        let events: Vec<&Event> = commit.events.iter().map(|e| &e.event).collect();
        assert_eq!(events, expected.iter().collect::<Vec<_>>(), "events of {name}");
        assert_eq!(commit.events[0].version, prev_version + 1, "{name} continues the stream");
        assert_eq!(commit.verify_chain(&prev_hash), Ok(()), "{name} continues the chain");
        scenario.state
    }

    /// Expects the command to be accepted, whatever it says; returns the state after it.
    #[track_caller]
    pub fn then_ok(self) -> State {
        let When { mut scenario, step } = self;
        let name = step.command.name();
        if let Err(e) = scenario.run(step) {
            panic!("{name} was refused: {e}");
        }
        scenario.state
    }

    /// Expects a refusal of the given kind, leaving the state untouched.
    #[track_caller]
    pub fn then_err(self, expected: Refusal) -> DomainError {
        let When { mut scenario, step } = self;
        let name = step.command.name();
        let before = scenario.state.clone();
        match scenario.run(step) {
            Ok(commit) => panic!(
                "{name} was accepted, expected {expected:?}: {:?}",
                commit.events.iter().map(|e| &e.event).collect::<Vec<_>>()
            ),
            Err(e) => {
                assert_eq!(Refusal::of(&e), expected, "refusal of {name}: {e}");
                assert_eq!(scenario.state, before, "a refused {name} leaves the state alone");
                e
            }
        }
    }
}
