//! The permission matrix: which role may do what, and over which region.
//!
//! Two checks, both needed: [`may`] (role × action, the matrix) and [`authorize`] (the matrix plus the actor's
//! reach: region, own grid, own problems).

use crate::actor::{Actor, Role};
use crate::command::Command;
use crate::error::DomainError;
use crate::region::RegionCode;

/// Everything an actor can ask for, commands and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    RecordInspection,
    ReportProblem,
    SetDeadline,
    Assign,
    ReportProgress,
    RequestExtension,
    DecideExtension,
    Submit,
    DecideAcceptance,
    Reopen,
    Void,
    MarkOverdue,
    Supervise,
    RecordEnforcement,
    /// Problems, their histories and the ledger.
    ReadProblems,
    /// Published aggregates: statistics, regions.
    ReadStats,
    /// Audit material: the whole log, proofs, exports.
    ReadAudit,
    /// Published audit material: signed checkpoints, bulletins, the public keys.
    ReadCheckpoints,
    /// Freeze a region's statistics in a dispatch bulletin (定期调度).
    IssueBulletin,
}

impl Action {
    /// Every action, in matrix order.
    pub const ALL: [Action; 19] = [
        Action::RecordInspection,
        Action::ReportProblem,
        Action::SetDeadline,
        Action::Assign,
        Action::ReportProgress,
        Action::RequestExtension,
        Action::DecideExtension,
        Action::Submit,
        Action::DecideAcceptance,
        Action::Reopen,
        Action::Void,
        Action::MarkOverdue,
        Action::Supervise,
        Action::RecordEnforcement,
        Action::ReadProblems,
        Action::ReadStats,
        Action::ReadAudit,
        Action::ReadCheckpoints,
        Action::IssueBulletin,
    ];

    /// The action a command needs.
    pub fn of(command: &Command) -> Action {
        match command {
            Command::RecordInspection { .. } => Action::RecordInspection,
            Command::ReportProblem { .. } => Action::ReportProblem,
            Command::SetDeadline { .. } => Action::SetDeadline,
            Command::Assign { .. } => Action::Assign,
            Command::ReportProgress { .. } => Action::ReportProgress,
            Command::RequestExtension { .. } => Action::RequestExtension,
            Command::ApproveExtension { .. } | Command::RejectExtension { .. } => Action::DecideExtension,
            Command::Submit { .. } => Action::Submit,
            Command::Accept { .. } | Command::Reject { .. } => Action::DecideAcceptance,
            Command::Reopen { .. } => Action::Reopen,
            Command::Void { .. } => Action::Void,
            Command::MarkOverdue { .. } => Action::MarkOverdue,
            Command::ListSupervision { .. } | Command::LiftSupervision { .. } => Action::Supervise,
            Command::RecordEnforcement { .. } => Action::RecordEnforcement,
        }
    }
}

/// The matrix: whether `role` may ever perform `action` (reach is checked by [`authorize`]).
pub fn may(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::GridOfficer => matches!(
            action,
            RecordInspection | ReportProblem | ReportProgress | Submit | ReadProblems | ReadStats | ReadCheckpoints
        ),
        Role::ResponsibleEntity => {
            matches!(action, ReportProgress | RequestExtension | Submit | ReadProblems | ReadStats | ReadCheckpoints)
        }
        Role::CountyBureau => !matches!(action, MarkOverdue | Supervise | ReadAudit),
        Role::CityBureau | Role::Province => !matches!(action, MarkOverdue | ReadAudit),
        Role::Inspector => matches!(action, ReadProblems | ReadStats | ReadAudit | ReadCheckpoints),
        Role::Public => matches!(action, ReadStats | ReadCheckpoints),
        Role::System => matches!(action, MarkOverdue),
    }
}

/// What an action is applied to: the region and grid of the problem, and who answers for it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub region: RegionCode,
    pub grid: Option<&'a str>,
    /// Actor id of the responsible entity assigned to the problem, if any.
    pub responsible: Option<&'a str>,
}

/// Checks the matrix and the actor's reach over `target`.
pub fn authorize(actor: &Actor, action: Action, target: Target<'_>) -> Result<(), DomainError> {
    if !may(actor.role, action) {
        return Err(DomainError::Forbidden(format!("role {} may not {action:?}", actor.role)));
    }
    let reaches = match actor.role {
        // Aggregates, checkpoints and bulletins are published; the inspector and the system see everything.
        _ if matches!(action, Action::ReadStats | Action::ReadCheckpoints) => true,
        Role::Inspector | Role::System => true,
        Role::ResponsibleEntity => target.responsible == Some(actor.id.as_str()),
        Role::GridOfficer => {
            actor.region.contains(target.region)
                && (action == Action::ReadProblems || actor.grid.is_none() || actor.grid.as_deref() == target.grid)
        }
        _ => actor.region.contains(target.region),
    };
    if reaches {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!("{} {} is outside the actor's reach", actor.role, actor.region)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    /// The whole matrix, written out: one row per role, `x` where allowed, in `Action::ALL` order.
    const MATRIX: [(Role, &str); 8] = [
        //                      RI RP SD As Pr RE DE Su DA Ro Vo MO Sp En rP rS rA rC IB
        (Role::GridOfficer, "   x  x  .  .  x  .  .  x  .  .  .  .  .  .  x  x  .  x  ."),
        (Role::ResponsibleEntity, ".  .  .  .  x  x  .  x  .  .  .  .  .  .  x  x  .  x  ."),
        (Role::CountyBureau, "  x  x  x  x  x  x  x  x  x  x  x  .  .  x  x  x  .  x  x"),
        (Role::CityBureau, "    x  x  x  x  x  x  x  x  x  x  x  .  x  x  x  x  .  x  x"),
        (Role::Province, "      x  x  x  x  x  x  x  x  x  x  x  .  x  x  x  x  .  x  x"),
        (Role::Inspector, "     .  .  .  .  .  .  .  .  .  .  .  .  .  .  x  x  x  x  ."),
        (Role::Public, "        .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  x  .  x  ."),
        (Role::System, "        .  .  .  .  .  .  .  .  .  .  .  x  .  .  .  .  .  .  ."),
    ];

    #[test]
    fn matrix_cell_by_cell() {
        for (role, row) in MATRIX {
            let cells: Vec<bool> = row.split_whitespace().map(|c| c == "x").collect();
            assert_eq!(cells.len(), Action::ALL.len(), "row of {role}");
            for (action, expected) in Action::ALL.into_iter().zip(cells) {
                assert_eq!(may(role, action), expected, "{role} × {action:?}");
            }
        }
    }

    fn actor(role: Role, region: &str, grid: Option<&str>) -> Actor {
        Actor { id: "a1".into(), role, region: RegionCode::parse(region).unwrap(), grid: grid.map(Into::into) }
    }

    fn target(region: &str, grid: &'static str) -> Target<'static> {
        Target { region: RegionCode::parse(region).unwrap(), grid: Some(grid), responsible: None }
    }

    #[test]
    fn bureaus_reach_their_region_and_below() {
        let t = target("520102", "520102-G01");
        assert!(authorize(&actor(Role::CountyBureau, "520102", None), SetDeadline, t).is_ok());
        assert!(authorize(&actor(Role::CountyBureau, "520103", None), SetDeadline, t).is_err());
        assert!(authorize(&actor(Role::CityBureau, "520100", None), DecideAcceptance, t).is_ok());
        assert!(authorize(&actor(Role::CityBureau, "520200", None), DecideAcceptance, t).is_err());
        assert!(authorize(&actor(Role::Province, "520000", None), Reopen, t).is_ok());
        assert!(authorize(&actor(Role::Province, "530000", None), Reopen, t).is_err());
    }

    #[test]
    fn bulletins_are_issued_by_bureaus_for_their_region_only() {
        let t = |r| Target { region: RegionCode::parse(r).unwrap(), grid: None, responsible: None };
        assert!(authorize(&actor(Role::CountyBureau, "520102", None), IssueBulletin, t("520102")).is_ok());
        assert!(authorize(&actor(Role::CountyBureau, "520102", None), IssueBulletin, t("520100")).is_err());
        assert!(authorize(&actor(Role::CityBureau, "520100", None), IssueBulletin, t("520100")).is_ok());
        assert!(authorize(&actor(Role::Province, "520000", None), IssueBulletin, t("520000")).is_ok());
        assert!(authorize(&actor(Role::Inspector, "520000", None), IssueBulletin, t("520000")).is_err());
    }

    #[test]
    fn grid_officers_write_in_their_own_grid_only() {
        let officer = actor(Role::GridOfficer, "520102", Some("520102-G01"));
        assert!(authorize(&officer, ReportProblem, target("520102", "520102-G01")).is_ok());
        assert!(authorize(&officer, ReportProblem, target("520102", "520102-G02")).is_err());
        assert!(authorize(&officer, ReadProblems, target("520102", "520102-G02")).is_ok());
        assert!(authorize(&officer, ReadProblems, target("520103", "520103-G01")).is_err());
    }

    #[test]
    fn responsible_entities_act_on_their_own_problems_only() {
        let entity = actor(Role::ResponsibleEntity, "520102", None);
        let mut t = target("520102", "520102-G01");
        assert!(authorize(&entity, Submit, t).is_err());
        t.responsible = Some("a1");
        assert!(authorize(&entity, Submit, t).is_ok());
        t.responsible = Some("someone else");
        assert!(authorize(&entity, ReportProgress, t).is_err());
    }

    #[test]
    fn inspector_reads_everything_and_writes_nothing() {
        let inspector = actor(Role::Inspector, "520000", None);
        let t = target("520102", "520102-G01");
        assert!(authorize(&inspector, ReadProblems, t).is_ok());
        assert!(authorize(&inspector, ReadAudit, t).is_ok());
        let reads = |a: &Action| matches!(a, ReadProblems | ReadStats | ReadAudit | ReadCheckpoints);
        for action in Action::ALL.into_iter().filter(|a| !reads(a)) {
            assert!(authorize(&inspector, action, t).is_err(), "{action:?}");
        }
    }

    #[test]
    fn public_reads_aggregates_checkpoints_and_bulletins_only() {
        let public = actor(Role::Public, "520000", None);
        let t = target("520102", "520102-G01");
        assert!(authorize(&public, ReadStats, t).is_ok());
        assert!(authorize(&public, ReadCheckpoints, t).is_ok());
        for action in Action::ALL.into_iter().filter(|a| !matches!(a, ReadStats | ReadCheckpoints)) {
            assert!(authorize(&public, action, t).is_err(), "{action:?}");
        }
    }
}
