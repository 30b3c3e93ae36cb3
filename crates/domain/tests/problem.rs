//! Behaviour of the Problem and Inspection aggregates, as given/when/then cases through `execute`.
//!
//! `given(history).when(command).then(events)` / `.then_err(refusal)`; steps default to their usual actor
//! (officers report and submit, the system marks overdue, the city supervises, county A's bureau does the
//! rest) and to a clock starting at `day(0)`. Unless said otherwise the deadline is `day(10)`.

mod support;

use rectify_domain::values::{DeadlineClass, Measure, Sector, Source};
use rectify_domain::{Command, CommandContext, DomainError, Event, State, Status, decide};
use support::Refusal::*;
use support::*;

fn problem(state: &State) -> &rectify_domain::problem::Problem {
    state.problem().expect("the stream holds a problem")
}

/// `steps` followed by `more`.
fn and(mut steps: Vec<Step>, more: impl IntoIterator<Item = Step>) -> Vec<Step> {
    steps.extend(more);
    steps
}

mod inspection {
    use super::*;

    #[test]
    fn is_recorded() {
        given(&[]).when(inspect()).then(&[Event::InspectionRecorded {
            region: region(COUNTY_A),
            grid: GRID_A.into(),
            sector: Sector::PhosphorusChemical,
            source: source(),
            problems_found: 2,
            notes: "tailings seepage".into(),
        }]);
    }

    #[test]
    fn is_recorded_once() {
        given(&[inspect()]).when(inspect()).then_err(InvalidState);
    }

    #[test]
    fn region_must_match_the_id() {
        given(&[]).on("I520103-x").when(inspect()).then_err(Invalid("region"));
    }

    #[test]
    fn needs_a_grid() {
        let mut step = inspect();
        let Command::RecordInspection { grid, .. } = &mut step.command else { unreachable!() };
        grid.clear();
        given(&[]).when(step.by(county_a())).then_err(Invalid("grid"));
    }

    #[test]
    fn needs_a_problem_id_for_problem_commands() {
        given(&[inspect()]).when(deadline(day(10))).then_err(NotFound);
        given(&[]).on("P520102-x").when(inspect()).then_err(NotFound);
        given(&[]).on("I520102-x").when(report()).then_err(NotFound);
    }

    #[test]
    fn is_written_by_officers_and_bureaus_only() {
        given(&[]).when(inspect().by(county_a())).then_ok();
        given(&[]).when(inspect().by(province())).then_ok();
        given(&[]).when(inspect().by(officer_other_grid())).then_err(Forbidden);
        given(&[]).when(inspect().by(county_b())).then_err(Forbidden);
        given(&[]).when(inspect().by(inspector())).then_err(Forbidden);
        given(&[]).when(inspect().by(public())).then_err(Forbidden);
    }
}

mod report {
    use super::*;

    #[test]
    fn opens_a_problem() {
        let s = given(&[]).when(report()).then(&[reported()]);
        let p = problem(&s);
        assert_eq!((p.status, p.reported_by.as_str(), p.reported_at), (Status::Reported, "officer-a", day(0)));
        assert_eq!((s.version, p.due, p.overdue, p.listed), (1, None, false, false));
    }

    #[test]
    fn keeps_the_inspection_it_came_from() {
        let mut step = report();
        let Command::ReportProblem { inspection, .. } = &mut step.command else { unreachable!() };
        *inspection = Some("I520102-x".into());
        let mut expected = reported();
        let Event::ProblemReported { inspection, .. } = &mut expected else { unreachable!() };
        *inspection = Some("I520102-x".into());
        given(&[]).when(step).then(&[expected]);
    }

    #[test]
    fn accepts_a_source_without_credit_code() {
        let src = Source { credit_code: String::new(), ..source() };
        given(&[]).when(report_with(COUNTY_A, "smoke", src)).then_ok();
    }

    #[test]
    fn refuses_a_region_that_is_not_a_county() {
        given(&[]).when(report_with("520100", "smoke", source())).then_err(Invalid("region"));
        given(&[]).when(report_with("520000", "smoke", source())).then_err(Invalid("region"));
    }

    #[test]
    fn refuses_a_region_other_than_the_ids_county() {
        given(&[]).when(report_with(COUNTY_B, "smoke", source())).then_err(Invalid("region"));
        given(&[]).on("P520103-x").when(report()).then_err(Invalid("region"));
    }

    #[test]
    fn refuses_an_empty_description() {
        given(&[]).when(report_with(COUNTY_A, "", source())).then_err(Invalid("description"));
        given(&[]).when(report_with(COUNTY_A, " \n\t", source())).then_err(Invalid("description"));
        given(&[]).when(report_with(COUNTY_A, &"x".repeat(10_001), source())).then_err(Invalid("description"));
        given(&[]).when(report_with(COUNTY_A, &"x".repeat(10_000), source())).then_ok();
    }

    #[test]
    fn refuses_a_bad_credit_code() {
        for bad in [
            "91520100MA6DK7XQ3",
            "91520100MA6DK7XQ3BB",
            "91520100-MA6DK7XQ3",
            "91520100MA6DK7XQ 3",
            "9152010０MA6DK7XQ",
        ] {
            let src = Source { credit_code: bad.into(), ..source() };
            given(&[]).when(report_with(COUNTY_A, "smoke", src)).then_err(Invalid("source.credit_code"));
        }
    }

    #[test]
    fn refuses_a_source_without_name() {
        let src = Source { name: " ".into(), ..source() };
        given(&[]).when(report_with(COUNTY_A, "smoke", src)).then_err(Invalid("source.name"));
    }

    #[test]
    fn refuses_an_empty_grid() {
        let mut step = report();
        let Command::ReportProblem { grid, .. } = &mut step.command else { unreachable!() };
        grid.clear();
        given(&[]).when(step.by(county_a())).then_err(Invalid("grid"));
    }

    #[test]
    fn happens_once() {
        given(&[report()]).when(report()).then_err(InvalidState);
        given(&[report()]).when(inspect()).then_err(NotFound);
    }

    #[test]
    fn is_open_to_officers_of_the_grid_and_bureaus_above_it() {
        for actor in [officer(), county_a(), city(), province()] {
            given(&[]).when(report().by(actor)).then_ok();
        }
        for actor in [officer_other_grid(), county_b(), other_city(), entity(), inspector(), public(), system()] {
            given(&[]).when(report().by(actor)).then_err(Forbidden);
        }
    }

    #[test]
    fn checks_the_region_in_the_pure_decide_too() {
        let ctx = CommandContext {
            actor: county_a(),
            occurred_at: day(0),
            recorded_at: day(0),
            command_id: "c".into(),
            correlation_id: "c".into(),
        };
        let mut step = report();
        let Command::ReportProblem { region: r, .. } = &mut step.command else { unreachable!() };
        *r = region("520100");
        let err = decide(&State::default(), &ctx, &step.command).unwrap_err();
        assert_eq!(err, DomainError::invalid("region", "must be a county-level code"));
    }
}

#[test]
fn commands_on_a_missing_problem_are_not_found() {
    given(&[]).when(deadline(day(10))).then_err(NotFound);
    given(&[]).when(some_progress().by(county_a())).then_err(NotFound);
    // An officer's reach depends on the problem's grid, which a missing problem does not have.
    given(&[]).when(some_progress().by(officer())).then_err(Forbidden);
    given(&[]).when(void("dup")).then_err(NotFound);
    given(&[]).when(mark_overdue(day(10)).at(day(11))).then_err(NotFound);
}

mod set_deadline {
    use super::*;

    #[test]
    fn starts_rectification() {
        let s = given(&[report()])
            .when(deadline(day(10)))
            .then(&[Event::DeadlineSet { class: DeadlineClass::TimeLimited, due: day(10) }]);
        let p = problem(&s);
        assert_eq!((p.status, p.due, p.original_due), (Status::Rectifying, Some(day(10)), Some(day(10))));
        assert_eq!(p.deadline_class, Some(DeadlineClass::TimeLimited));
    }

    #[test]
    fn may_be_immediate() {
        given(&[report()])
            .when(immediate(day(0)))
            .then(&[Event::DeadlineSet { class: DeadlineClass::Immediate, due: day(0) }]);
    }

    #[test]
    fn refuses_a_due_date_before_discovery() {
        given(&[report()]).when(deadline(day(-1))).then_err(Invalid("due"));
        given(&[report().at(day(3))]).when(deadline(day(2))).then_err(Invalid("due"));
    }

    #[test]
    fn is_set_only_on_a_reported_problem() {
        given(&rectifying()).when(deadline(day(12))).then_err(InvalidState);
        given(&pending()).when(deadline(day(12))).then_err(InvalidState);
        given(&closed()).when(deadline(day(12))).then_err(InvalidState);
        given(&voided()).when(deadline(day(12))).then_err(InvalidState);
    }

    #[test]
    fn is_set_by_bureaus_of_the_region() {
        given(&[report()]).when(deadline(day(10)).by(city())).then_ok();
        given(&[report()]).when(deadline(day(10)).by(province())).then_ok();
        given(&[report()]).when(deadline(day(10)).by(county_b())).then_err(Forbidden);
        given(&[report()]).when(deadline(day(10)).by(other_city())).then_err(Forbidden);
        given(&[report()]).when(deadline(day(10)).by(officer())).then_err(Forbidden);
        given(&[report()]).when(deadline(day(10)).by(inspector())).then_err(Forbidden);
        given(&[report()]).when(deadline(day(10)).by(public())).then_err(Forbidden);
    }
}

mod assign {
    use super::*;

    #[test]
    fn names_who_must_fix_it() {
        let s = given(&[report()])
            .when(assign(Some("entity-1")))
            .then(&[Event::ResponsibleAssigned { responsible: responsible(Some("entity-1")) }]);
        assert_eq!(problem(&s).responsible, Some(responsible(Some("entity-1"))));
    }

    #[test]
    fn works_in_every_open_state_only() {
        given(&rectifying()).when(assign(None)).then_ok();
        given(&pending()).when(assign(None)).then_ok();
        given(&closed()).when(assign(None)).then_err(InvalidState);
        given(&voided()).when(assign(None)).then_err(InvalidState);
    }

    #[test]
    fn needs_a_unit() {
        let mut step = assign(None);
        let Command::Assign { responsible } = &mut step.command else { unreachable!() };
        responsible.unit = "  ".into();
        given(&[report()]).when(step).then_err(Invalid("responsible.unit"));
    }

    #[test]
    fn is_a_bureau_decision() {
        given(&[report()]).when(assign(None).by(officer())).then_err(Forbidden);
        given(&[report()]).when(assign(None).by(county_b())).then_err(Forbidden);
        given(&[report()]).when(assign(None).by(entity())).then_err(Forbidden);
    }

    #[test]
    fn lets_the_assigned_entity_act_on_the_problem() {
        given(&rectifying()).when(some_progress().by(entity())).then_err(Forbidden);
        given(&and(rectifying(), [assign(Some("someone-else"))]))
            .when(some_progress().by(entity()))
            .then_err(Forbidden);
        let assigned = and(rectifying(), [assign(Some("entity-1"))]);
        given(&assigned).when(some_progress().by(entity())).then_ok();
        given(&assigned).when(request_extension("flood", day(20)).by(entity())).then_ok();
        given(&assigned).when(some_submit().by(entity())).then_ok();
        given(&and(assigned.clone(), [some_submit()])).when(accept().by(entity())).then_err(Forbidden);
        given(&assigned).when(void("dup").by(entity())).then_err(Forbidden);
    }
}

mod progress {
    use super::*;

    #[test]
    fn is_reported_with_evidence() {
        let s = given(&rectifying())
            .when(some_progress())
            .then(&[Event::ProgressReported { note: "sludge removed".into(), evidence: vec![evidence(1)] }]);
        assert_eq!(problem(&s).evidence, vec![evidence(1)]);
    }

    #[test]
    fn accumulates_evidence() {
        let s = given(&and(rectifying(), [some_progress()]))
            .when(progress("pipe replaced", vec![evidence(3), evidence(4)]))
            .then_ok();
        assert_eq!(problem(&s).evidence, vec![evidence(1), evidence(3), evidence(4)]);
    }

    #[test]
    fn may_come_without_evidence_and_before_a_deadline() {
        given(&[report()]).when(progress("site visited", vec![])).then_ok();
    }

    #[test]
    fn is_refused_when_pending_closed_or_voided() {
        given(&pending()).when(some_progress()).then_err(InvalidState);
        given(&closed()).when(some_progress()).then_err(InvalidState);
        given(&voided()).when(some_progress()).then_err(InvalidState);
    }

    #[test]
    fn needs_a_note() {
        given(&rectifying()).when(progress("", vec![])).then_err(Invalid("note"));
    }

    #[test]
    fn refuses_a_bad_sha256() {
        let cases = ["AB".repeat(32), "ab".repeat(31), "ab".repeat(33), "g".repeat(64), String::new()];
        for sha256 in cases {
            let e = rectify_domain::values::Evidence { sha256, ..evidence(1) };
            given(&rectifying()).when(progress("x", vec![evidence(1), e])).then_err(Invalid("evidence.sha256"));
        }
    }

    #[test]
    fn refuses_a_bad_media_type_or_uri() {
        let e = rectify_domain::values::Evidence { media_type: "jpeg".into(), ..evidence(1) };
        given(&rectifying()).when(progress("x", vec![e])).then_err(Invalid("evidence.media_type"));
        let e = rectify_domain::values::Evidence { uri: "".into(), ..evidence(1) };
        given(&rectifying()).when(progress("x", vec![e])).then_err(Invalid("evidence.uri"));
    }

    #[test]
    fn is_reported_from_within_the_region_and_grid() {
        given(&rectifying()).when(some_progress().by(county_a())).then_ok();
        given(&rectifying()).when(some_progress().by(city())).then_ok();
        given(&rectifying()).when(some_progress().by(officer_other_grid())).then_err(Forbidden);
        given(&rectifying()).when(some_progress().by(county_b())).then_err(Forbidden);
        given(&rectifying()).when(some_progress().by(inspector())).then_err(Forbidden);
        given(&rectifying()).when(some_progress().by(public())).then_err(Forbidden);
        given(&rectifying()).when(some_progress().by(system())).then_err(Forbidden);
    }
}

mod extension {
    use super::*;

    fn requested() -> Vec<Step> {
        and(rectifying(), [request_extension("heavy rain", day(20))])
    }

    #[test]
    fn is_requested_with_a_reason_and_a_later_date() {
        let s = given(&rectifying())
            .when(request_extension("heavy rain", day(20)))
            .then(&[Event::ExtensionRequested { reason: "heavy rain".into(), due: day(20) }]);
        assert_eq!(problem(&s).pending_extension, Some(day(20)));
        assert_eq!(problem(&s).due, Some(day(10)), "not moved before approval");
    }

    #[test]
    fn needs_a_reason() {
        given(&rectifying()).when(request_extension("", day(20))).then_err(Invalid("reason"));
        given(&rectifying()).when(request_extension("   ", day(20))).then_err(Invalid("reason"));
    }

    #[test]
    fn may_only_move_the_deadline_later() {
        given(&rectifying()).when(request_extension("rain", day(10))).then_err(Invalid("due"));
        given(&rectifying()).when(request_extension("rain", day(9))).then_err(Invalid("due"));
        given(&rectifying()).when(request_extension("rain", day(10) + chrono::Duration::seconds(1))).then_ok();
    }

    #[test]
    fn one_may_be_pending_at_a_time() {
        given(&requested()).when(request_extension("more rain", day(30))).then_err(InvalidState);
        given(&and(requested(), [reject_extension("no")])).when(request_extension("more rain", day(30))).then_ok();
        given(&and(requested(), [approve_extension()])).when(request_extension("more rain", day(30))).then_ok();
    }

    #[test]
    fn is_requested_only_while_rectifying() {
        given(&[report()]).when(request_extension("rain", day(20))).then_err(InvalidState);
        given(&pending()).when(request_extension("rain", day(20))).then_err(InvalidState);
        given(&closed()).when(request_extension("rain", day(20))).then_err(InvalidState);
        given(&voided()).when(request_extension("rain", day(20))).then_err(InvalidState);
    }

    #[test]
    fn approval_moves_the_deadline_and_counts() {
        let s = given(&requested()).when(approve_extension()).then(&[Event::ExtensionApproved {
            previous_due: day(10),
            due: day(20),
            comment: "granted".into(),
        }]);
        let p = problem(&s);
        assert_eq!((p.due, p.original_due, p.extensions, p.pending_extension), (Some(day(20)), Some(day(10)), 1, None));
    }

    #[test]
    fn approvals_add_up() {
        let twice = and(requested(), [approve_extension(), request_extension("still raining", day(30))]);
        let s = given(&twice).when(approve_extension()).then(&[Event::ExtensionApproved {
            previous_due: day(20),
            due: day(30),
            comment: "granted".into(),
        }]);
        assert_eq!((problem(&s).extensions, problem(&s).original_due), (2, Some(day(10))));
    }

    #[test]
    fn approval_clears_overdue() {
        let overdue = and(rectifying(), [mark_overdue(day(10)).at(day(11)), request_extension("rain", day(20))]);
        let s = given(&overdue).when(approve_extension()).then_ok();
        assert!(!problem(&s).overdue);
    }

    #[test]
    fn rejection_needs_a_reason_and_keeps_the_deadline() {
        given(&requested()).when(reject_extension(" ")).then_err(Invalid("reason"));
        let s = given(&requested())
            .when(reject_extension("not justified"))
            .then(&[Event::ExtensionRejected { reason: "not justified".into() }]);
        let p = problem(&s);
        assert_eq!((p.due, p.extensions, p.pending_extension), (Some(day(10)), 0, None));
    }

    #[test]
    fn is_decided_only_when_pending() {
        given(&rectifying()).when(approve_extension()).then_err(InvalidState);
        given(&rectifying()).when(reject_extension("no")).then_err(InvalidState);
        given(&and(requested(), [approve_extension()])).when(approve_extension()).then_err(InvalidState);
        given(&and(requested(), [reject_extension("no")])).when(reject_extension("no")).then_err(InvalidState);
    }

    #[test]
    fn is_dropped_when_the_problem_closes_or_is_voided() {
        let s = given(&and(requested(), [some_submit()])).when(accept()).then_ok();
        assert_eq!(problem(&s).pending_extension, None);
        given(&and(requested(), [some_submit(), accept()])).when(approve_extension()).then_err(InvalidState);
        given(&and(requested(), [void("dup")])).when(approve_extension()).then_err(InvalidState);
    }

    #[test]
    fn may_still_be_decided_while_pending_acceptance() {
        given(&and(requested(), [some_submit()])).when(approve_extension()).then_ok();
    }

    #[test]
    fn is_decided_by_bureaus_of_the_region() {
        given(&requested()).when(approve_extension().by(city())).then_ok();
        given(&requested()).when(approve_extension().by(county_b())).then_err(Forbidden);
        given(&requested()).when(approve_extension().by(officer())).then_err(Forbidden);
        given(&requested()).when(reject_extension("no").by(entity())).then_err(Forbidden);
        given(&rectifying()).when(request_extension("rain", day(20)).by(officer())).then_err(Forbidden);
        given(&rectifying()).when(request_extension("rain", day(20)).by(county_b())).then_err(Forbidden);
    }
}

mod submit {
    use super::*;

    #[test]
    fn asks_for_acceptance() {
        let s = given(&rectifying()).when(some_submit()).then(&[Event::RectificationSubmitted {
            summary: "outfall sealed, treatment plant running".into(),
            evidence: vec![evidence(2)],
        }]);
        let p = problem(&s);
        assert_eq!((p.status, p.submitted_by.as_deref()), (Status::PendingAcceptance, Some("officer-a")));
        assert_eq!(p.evidence, vec![evidence(2)]);
    }

    #[test]
    fn needs_evidence() {
        given(&rectifying()).when(submit("done", vec![])).then_err(Invalid("evidence"));
        let bad = rectify_domain::values::Evidence { sha256: "nope".into(), ..evidence(2) };
        given(&rectifying()).when(submit("done", vec![bad])).then_err(Invalid("evidence.sha256"));
    }

    #[test]
    fn needs_a_summary() {
        given(&rectifying()).when(submit("", vec![evidence(2)])).then_err(Invalid("summary"));
    }

    #[test]
    fn is_made_only_while_rectifying() {
        given(&[report()]).when(some_submit()).then_err(InvalidState);
        given(&pending()).when(some_submit()).then_err(InvalidState);
        given(&closed()).when(some_submit()).then_err(InvalidState);
        given(&voided()).when(some_submit()).then_err(InvalidState);
    }

    #[test]
    fn is_made_from_within_the_region_and_grid() {
        given(&rectifying()).when(some_submit().by(county_a())).then_ok();
        given(&rectifying()).when(some_submit().by(officer_other_grid())).then_err(Forbidden);
        given(&rectifying()).when(some_submit().by(county_b())).then_err(Forbidden);
        given(&rectifying()).when(some_submit().by(inspector())).then_err(Forbidden);
    }
}

mod acceptance {
    use super::*;

    fn accepted(on_time: bool, on_time_original: bool) -> Event {
        Event::RectificationAccepted { comment: "verified on site".into(), on_time, on_time_original }
    }

    #[test]
    fn closes_the_problem() {
        let s = given(&pending()).when(accept().at(day(5))).then(&[accepted(true, true)]);
        let p = problem(&s);
        assert_eq!((p.status, p.closed_at), (Status::Closed, Some(day(5))));
    }

    #[test]
    fn on_the_deadline_is_on_time() {
        given(&pending()).when(accept().at(day(10))).then(&[accepted(true, true)]);
    }

    #[test]
    fn after_the_deadline_is_late() {
        given(&pending()).when(accept().at(day(11))).then(&[accepted(false, false)]);
    }

    #[test]
    fn within_an_extension_is_on_time_but_not_by_the_original_deadline() {
        let extended =
            vec![report(), deadline(day(10)), request_extension("rain", day(20)), approve_extension(), some_submit()];
        given(&extended).when(accept().at(day(15))).then(&[accepted(true, false)]);
        given(&extended).when(accept().at(day(21))).then(&[accepted(false, false)]);
    }

    #[test]
    fn clears_overdue() {
        let late = and(rectifying(), [mark_overdue(day(10)).at(day(11)), some_submit()]);
        let s = given(&late).when(accept()).then(&[accepted(false, false)]);
        assert!(!problem(&s).overdue);
    }

    #[test]
    fn is_decided_only_when_pending() {
        for history in [vec![report()], rectifying(), closed(), voided()] {
            given(&history).when(accept()).then_err(InvalidState);
            given(&history).when(reject("not fixed")).then_err(InvalidState);
        }
    }

    #[test]
    fn the_reporter_may_not_decide() {
        let reported_by_county = vec![report().by(county_a()), deadline(day(10)), some_submit()];
        given(&reported_by_county).when(accept()).then_err(SeparationOfDuties);
        given(&reported_by_county).when(reject("not fixed")).then_err(SeparationOfDuties);
        given(&reported_by_county).when(accept().by(county_a2())).then_ok();
    }

    #[test]
    fn the_submitter_may_not_decide() {
        let submitted_by_county = and(rectifying(), [some_submit().by(county_a())]);
        given(&submitted_by_county).when(accept()).then_err(SeparationOfDuties);
        given(&submitted_by_county).when(reject("not fixed")).then_err(SeparationOfDuties);
        given(&submitted_by_county).when(accept().by(city())).then_ok();
    }

    #[test]
    fn separation_of_duties_holds_for_the_city_and_province_too() {
        let by_city = vec![report().by(city()), deadline(day(10)), some_submit().by(province())];
        given(&by_city).when(accept().by(city())).then_err(SeparationOfDuties);
        given(&by_city).when(accept().by(province())).then_err(SeparationOfDuties);
        given(&by_city).when(accept().by(county_a())).then_ok();
    }

    #[test]
    fn rejection_needs_a_reason() {
        given(&pending()).when(reject("")).then_err(Invalid("reason"));
    }

    #[test]
    fn rejection_sends_it_back_to_rectifying() {
        let s = given(&pending())
            .when(reject("outfall still leaking"))
            .then(&[Event::RectificationRejected { reason: "outfall still leaking".into() }]);
        let p = problem(&s);
        assert_eq!((p.status, p.submitted_by.as_deref()), (Status::Rectifying, None));
    }

    #[test]
    fn after_rejection_it_is_resubmitted_and_accepted() {
        let rejected = and(pending(), [reject("still leaking"), some_progress(), some_submit()]);
        given(&rejected).when(accept()).then_ok();
    }

    #[test]
    fn is_decided_by_bureaus_of_the_region() {
        given(&pending()).when(accept().by(city())).then_ok();
        given(&pending()).when(accept().by(province())).then_ok();
        for actor in [county_b(), other_city(), officer(), entity(), inspector(), public(), system()] {
            given(&pending()).when(accept().by(actor.clone())).then_err(Forbidden);
            given(&pending()).when(reject("no").by(actor)).then_err(Forbidden);
        }
    }
}

mod reopen {
    use super::*;

    #[test]
    fn sends_a_closed_problem_back_to_rectifying() {
        let s = given(&closed())
            .when(reopen("pollution is back", None))
            .then(&[Event::ProblemReopened { reason: "pollution is back".into(), due: None }]);
        let p = problem(&s);
        assert_eq!((p.status, p.closed_at, p.reopened, p.due), (Status::Rectifying, None, 1, Some(day(10))));
    }

    #[test]
    fn may_set_a_new_deadline_not_in_the_past() {
        let s = given(&closed()).when(reopen("back", Some(day(30))).at(day(20))).then_ok();
        assert_eq!((problem(&s).due, problem(&s).original_due), (Some(day(30)), Some(day(10))));
        given(&closed()).when(reopen("back", Some(day(19))).at(day(20))).then_err(Invalid("due"));
    }

    #[test]
    fn needs_a_reason() {
        given(&closed()).when(reopen("", None)).then_err(Invalid("reason"));
    }

    #[test]
    fn is_only_for_closed_problems() {
        for history in [vec![report()], rectifying(), pending(), voided()] {
            given(&history).when(reopen("back", None)).then_err(InvalidState);
        }
    }

    #[test]
    fn allows_progress_again() {
        let reopened = and(closed(), [reopen("back", Some(day(30)))]);
        given(&reopened).when(some_progress()).then_ok();
        given(&and(reopened.clone(), [some_submit()])).when(accept()).then_ok();
    }

    #[test]
    fn counts_every_rebound() {
        let twice = and(closed(), [reopen("back", None), some_submit(), accept(), reopen("back again", None)]);
        assert_eq!(problem(&given(&twice).state).reopened, 2);
    }

    #[test]
    fn is_a_bureau_decision() {
        given(&closed()).when(reopen("back", None).by(officer())).then_err(Forbidden);
        given(&closed()).when(reopen("back", None).by(county_b())).then_err(Forbidden);
        given(&closed()).when(reopen("back", None).by(province())).then_ok();
    }
}

mod void {
    use super::*;

    #[test]
    fn ends_an_open_problem() {
        for history in [vec![report()], rectifying(), pending()] {
            let s =
                given(&history).when(void("duplicate")).then(&[Event::ProblemVoided { reason: "duplicate".into() }]);
            assert_eq!(problem(&s).status, Status::Voided);
            assert!(!problem(&s).status.is_open());
        }
    }

    #[test]
    fn needs_a_reason() {
        given(&[report()]).when(void("")).then_err(Invalid("reason"));
    }

    #[test]
    fn is_only_for_open_problems() {
        given(&closed()).when(void("dup")).then_err(InvalidState);
        given(&voided()).when(void("dup")).then_err(InvalidState);
    }

    #[test]
    fn clears_overdue_and_pending_extension() {
        let history = and(rectifying(), [mark_overdue(day(10)).at(day(11)), request_extension("rain", day(20))]);
        let s = given(&history).when(void("not a problem")).then_ok();
        assert_eq!((problem(&s).overdue, problem(&s).pending_extension), (false, None));
    }

    #[test]
    fn is_a_bureau_decision() {
        given(&[report()]).when(void("dup").by(officer())).then_err(Forbidden);
        given(&[report()]).when(void("dup").by(county_b())).then_err(Forbidden);
        given(&[report()]).when(void("dup").by(city())).then_ok();
    }
}

mod overdue {
    use super::*;

    #[test]
    fn is_marked_once_the_deadline_passed() {
        let s = given(&rectifying())
            .when(mark_overdue(day(10)).at(day(11)))
            .then(&[Event::ProblemOverdue { due: day(10) }]);
        assert!(problem(&s).overdue);
        assert_eq!(problem(&s).status, Status::Rectifying, "overdue is a flag, not a state");
    }

    #[test]
    fn is_marked_while_pending_acceptance_too() {
        given(&pending()).when(mark_overdue(day(10)).at(day(11))).then_ok();
    }

    #[test]
    fn is_not_marked_before_the_deadline_passed() {
        given(&rectifying()).when(mark_overdue(day(10)).at(day(10))).then_err(Invalid("due"));
        given(&rectifying()).when(mark_overdue(day(10)).at(day(9))).then_err(Invalid("due"));
    }

    #[test]
    fn is_marked_only_for_the_deadline_in_force() {
        given(&rectifying()).when(mark_overdue(day(9)).at(day(11))).then_err(Invalid("due"));
        let extended = and(rectifying(), [request_extension("rain", day(20)), approve_extension()]);
        given(&extended).when(mark_overdue(day(10)).at(day(11))).then_err(Invalid("due"));
        given(&extended).when(mark_overdue(day(20)).at(day(21))).then_ok();
    }

    #[test]
    fn is_marked_only_once() {
        given(&and(rectifying(), [mark_overdue(day(10)).at(day(11))]))
            .when(mark_overdue(day(10)).at(day(12)))
            .then_err(InvalidState);
    }

    #[test]
    fn may_be_marked_again_for_an_extended_deadline() {
        let history = and(
            rectifying(),
            [mark_overdue(day(10)).at(day(11)), request_extension("rain", day(20)), approve_extension()],
        );
        given(&history).when(mark_overdue(day(20)).at(day(21))).then(&[Event::ProblemOverdue { due: day(20) }]);
    }

    #[test]
    fn needs_a_deadline_and_an_unfinished_problem() {
        given(&[report()]).when(mark_overdue(day(10)).at(day(11))).then_err(InvalidState);
        given(&closed()).when(mark_overdue(day(10)).at(day(11))).then_err(InvalidState);
        given(&voided()).when(mark_overdue(day(10)).at(day(11))).then_err(InvalidState);
    }

    #[test]
    fn is_marked_by_the_system_only() {
        for actor in [county_a(), city(), province(), officer(), inspector(), public()] {
            given(&rectifying()).when(mark_overdue(day(10)).at(day(11)).by(actor)).then_err(Forbidden);
        }
    }
}

mod supervision {
    use super::*;

    fn listed() -> Vec<Step> {
        vec![report(), list("major river pollution")]
    }

    #[test]
    fn lists_a_problem() {
        let s = given(&[report()])
            .when(list("major river pollution"))
            .then(&[Event::SupervisionListed { reason: "major river pollution".into() }]);
        assert!(problem(&s).listed);
    }

    #[test]
    fn lifts_a_listing() {
        let s = given(&listed()).when(lift("fixed")).then(&[Event::SupervisionLifted { reason: "fixed".into() }]);
        assert!(!problem(&s).listed);
    }

    #[test]
    fn is_for_the_city_and_province_only() {
        given(&[report()]).when(list("x").by(province())).then_ok();
        given(&listed()).when(lift("x").by(province())).then_ok();
        for actor in [county_a(), other_city(), officer(), inspector(), public(), system()] {
            given(&[report()]).when(list("x").by(actor.clone())).then_err(Forbidden);
            given(&listed()).when(lift("x").by(actor)).then_err(Forbidden);
        }
    }

    #[test]
    fn lists_open_problems_once() {
        given(&listed()).when(list("again")).then_err(InvalidState);
        given(&closed()).when(list("x")).then_err(InvalidState);
        given(&voided()).when(list("x")).then_err(InvalidState);
        given(&pending()).when(list("x")).then_ok();
    }

    #[test]
    fn lifts_only_what_is_listed() {
        given(&[report()]).when(lift("x")).then_err(InvalidState);
        given(&and(listed(), [lift("x")])).when(lift("x")).then_err(InvalidState);
        given(&and(listed(), [deadline(day(10)), some_submit(), accept()])).when(lift("closed")).then_ok();
    }

    #[test]
    fn needs_a_reason() {
        given(&[report()]).when(list("")).then_err(Invalid("reason"));
        given(&listed()).when(lift("")).then_err(Invalid("reason"));
    }
}

mod enforcement {
    use super::*;

    fn recorded(measure: Measure) -> Event {
        Event::EnforcementRecorded { measure, case_no: "GZ-2024-001".into(), note: String::new() }
    }

    #[test]
    fn records_a_penalty_in_fen() {
        let fine = Measure::Penalty { amount_fen: 5_000_000 };
        let s = given(&rectifying()).when(enforce(fine.clone())).then(&[recorded(fine)]);
        assert_eq!(problem(&s).enforcement_measures, 1);
    }

    #[test]
    fn records_a_daily_penalty() {
        let daily = Measure::DailyPenalty { days: 1, amount_fen: 100 };
        given(&rectifying()).when(enforce(daily.clone())).then(&[recorded(daily)]);
    }

    #[test]
    fn records_measures_without_money() {
        for m in [Measure::SealSeizure, Measure::ProductionLimit, Measure::DetentionReferral, Measure::CriminalReferral]
        {
            given(&rectifying()).when(enforce(m.clone())).then(&[recorded(m)]);
        }
    }

    #[test]
    fn refuses_a_penalty_of_nothing() {
        given(&rectifying()).when(enforce(Measure::Penalty { amount_fen: 0 })).then_err(Invalid("measure.amount_fen"));
        given(&rectifying())
            .when(enforce(Measure::DailyPenalty { days: 3, amount_fen: 0 }))
            .then_err(Invalid("measure.amount_fen"));
    }

    #[test]
    fn refuses_a_daily_penalty_of_no_days() {
        given(&rectifying())
            .when(enforce(Measure::DailyPenalty { days: 0, amount_fen: 100 }))
            .then_err(Invalid("measure.days"));
    }

    #[test]
    fn counts_measures_and_applies_after_closing_but_not_after_voiding() {
        let s = given(&and(closed(), [enforce(Measure::SealSeizure)]))
            .when(enforce(Measure::Penalty { amount_fen: 1 }))
            .then_ok();
        assert_eq!(problem(&s).enforcement_measures, 2);
        given(&voided()).when(enforce(Measure::SealSeizure)).then_err(InvalidState);
    }

    #[test]
    fn is_a_bureau_measure() {
        given(&rectifying()).when(enforce(Measure::SealSeizure).by(province())).then_ok();
        for actor in [county_b(), officer(), entity(), inspector(), public(), system()] {
            given(&rectifying()).when(enforce(Measure::SealSeizure).by(actor)).then_err(Forbidden);
        }
    }

    #[test]
    fn money_is_an_integer_on_the_wire() {
        let json = serde_json::to_string(&Measure::DailyPenalty { days: 2, amount_fen: 12_345 }).unwrap();
        assert_eq!(json, r#"{"kind":"daily_penalty","days":2,"amount_fen":12345}"#);
        assert!(serde_json::from_str::<Measure>(r#"{"kind":"penalty","amount_fen":123.45}"#).is_err());
        assert!(serde_json::from_str::<Measure>(r#"{"kind":"penalty","amount_fen":-1}"#).is_err());
    }
}

mod writers {
    use super::*;

    /// One valid command per action on a problem in the right state for it.
    fn every_write() -> Vec<(Vec<Step>, Step)> {
        vec![
            (vec![report()], deadline(day(10))),
            (vec![report()], assign(None)),
            (rectifying(), some_progress()),
            (rectifying(), request_extension("rain", day(20))),
            (and(rectifying(), [request_extension("rain", day(20))]), approve_extension()),
            (and(rectifying(), [request_extension("rain", day(20))]), reject_extension("no")),
            (rectifying(), some_submit()),
            (pending(), accept()),
            (pending(), reject("no")),
            (closed(), reopen("back", None)),
            (vec![report()], void("dup")),
            (rectifying(), mark_overdue(day(10)).at(day(11))),
            (vec![report()], list("x")),
            (vec![report(), list("x")], lift("x")),
            (vec![report()], enforce(Measure::SealSeizure)),
        ]
    }

    #[test]
    fn inspectors_and_the_public_write_nothing() {
        for actor in [inspector(), public()] {
            given(&[]).when(report().by(actor.clone())).then_err(Forbidden);
            given(&[]).when(inspect().by(actor.clone())).then_err(Forbidden);
            for (history, step) in every_write() {
                given(&history).when(step.by(actor.clone())).then_err(Forbidden);
            }
        }
    }

    #[test]
    fn another_countys_bureau_writes_nothing_here() {
        for (history, step) in every_write() {
            given(&history).when(step.by(county_b())).then_err(Forbidden);
        }
    }

    #[test]
    fn another_prefectures_city_bureau_writes_nothing_here() {
        for (history, step) in every_write() {
            given(&history).when(step.by(other_city())).then_err(Forbidden);
        }
    }

    #[test]
    fn the_province_writes_everything_but_overdue_marks() {
        for (history, step) in every_write() {
            let overdue = matches!(step.command, Command::MarkOverdue { .. });
            let when = given(&history).when(step.by(province()));
            if overdue {
                when.then_err(Forbidden);
            } else {
                when.then_ok();
            }
        }
    }

    #[test]
    fn forbidden_comes_before_any_other_refusal() {
        given(&closed()).when(some_progress().by(county_b())).then_err(Forbidden);
        given(&rectifying()).when(void("").by(inspector())).then_err(Forbidden);
    }
}

mod envelope {
    use super::*;
    use rectify_domain::GENESIS_HASH;

    #[test]
    fn carries_the_context_of_its_command() {
        let s = given(&[report().at(day(2)).by(county_a())]);
        let e = &s.commits[0].events[0];
        assert_eq!(
            (e.event_id.as_str(), e.stream.as_str(), e.version, e.schema),
            ("P520102-test1/1", "P520102-test1", 1, 1)
        );
        assert_eq!((e.occurred_at, e.recorded_at), (day(2), day(2) + chrono::Duration::seconds(5)));
        assert_eq!(
            (e.actor.clone(), e.command_id.as_str(), e.correlation_id.as_str()),
            (county_a(), "cmd-1", "corr-1")
        );
        assert_eq!((e.prev_hash.as_str(), e.hash.clone()), (GENESIS_HASH, e.compute_hash()));
    }

    #[test]
    fn chains_a_whole_lifecycle() {
        let s = given(&and(
            closed(),
            [reopen("back", None), some_progress(), some_submit(), reject("no"), void("gave up")],
        ));
        let envelopes: Vec<_> = s.envelopes().collect();
        assert_eq!(envelopes.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
        let mut prev = GENESIS_HASH.to_owned();
        for commit in &s.commits {
            assert_eq!(commit.verify_chain(&prev), Ok(()));
            prev = commit.last_hash().to_owned();
        }
        assert_eq!(s.state.last_hash, prev);
        assert_eq!(State::replay(envelopes), s.state);
    }

    #[test]
    fn a_refused_command_seals_nothing() {
        let mut s = given(&closed());
        assert!(s.run(some_progress()).is_err());
        assert_eq!(s.commits.len(), 4);
    }
}
