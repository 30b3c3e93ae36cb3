//! The role × command × region matrix over HTTP, cell by cell. Each cell runs one command with one role's
//! token on a problem the admin brought into the state the command needs, inside or outside the role's
//! reach; only authorization differs between cells. The expected answer comes from the domain's
//! `authorize` (matrix plus reach) and must also agree with the table written out below.

use crate::support::*;
use axum::http::StatusCode;
use rectify_domain::Role;
use rectify_domain::permissions::{Action, Target, authorize};
use serde_json::{Value, json};

/// Every command endpoint, in table order.
const ENDPOINTS: [&str; 13] = [
    "problems",
    "inspections",
    "deadline",
    "assignment",
    "progress",
    "extension",
    "extension-decision",
    "submission",
    "acceptance",
    "reopen",
    "void",
    "supervision",
    "enforcement",
];

/// Who may do what inside their reach, written out by hand (`x`: 2xx, `.`: 403). Outside their reach no
/// role may do anything.
const INSIDE: [(Role, &str); 7] = [
    //                         Pr In De As Pg Ex ED Su Ac Ro Vo Sp En
    (Role::GridOfficer, "       x  x  .  .  x  .  .  x  .  .  .  .  ."),
    (Role::ResponsibleEntity, " .  .  .  .  x  x  .  x  .  .  .  .  ."),
    (Role::CountyBureau, "      x  x  x  x  x  x  x  x  x  x  x  .  x"),
    (Role::CityBureau, "        x  x  x  x  x  x  x  x  x  x  x  x  x"),
    (Role::Province, "          x  x  x  x  x  x  x  x  x  x  x  x  x"),
    (Role::Inspector, "         .  .  .  .  .  .  .  .  .  .  .  .  ."),
    (Role::Public, "            .  .  .  .  .  .  .  .  .  .  .  .  ."),
];

fn table(role: Role, endpoint: &str) -> bool {
    let row = INSIDE.iter().find(|(r, _)| *r == role).expect("a row per role").1;
    let column = ENDPOINTS.iter().position(|e| *e == endpoint).expect("a column per endpoint");
    row.split_whitespace().nth(column).expect("a cell") == "x"
}

/// The action an endpoint needs.
fn action(endpoint: &str) -> Action {
    match endpoint {
        "problems" => Action::ReportProblem,
        "inspections" => Action::RecordInspection,
        "deadline" => Action::SetDeadline,
        "assignment" => Action::Assign,
        "progress" => Action::ReportProgress,
        "extension" => Action::RequestExtension,
        "extension-decision" => Action::DecideExtension,
        "submission" => Action::Submit,
        "acceptance" => Action::DecideAcceptance,
        "reopen" => Action::Reopen,
        "void" => Action::Void,
        "supervision" => Action::Supervise,
        "enforcement" => Action::RecordEnforcement,
        other => panic!("no endpoint {other}"),
    }
}

fn body(endpoint: &str, county: &str, grid: &str) -> Value {
    match endpoint {
        "problems" => report_body(county, grid),
        "inspections" => inspection_body(county, grid),
        action => action_body(action),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Inside,
    Outside,
}

/// The token each role acts with on `side`. Tokens are bound below the province (county 520102, its grid
/// G01, prefecture 520100), so that a problem in Liupanshui is outside; the province's "outside" token is
/// Yunnan's (530000), since every Guizhou problem is inside Guizhou.
fn tokens(app: &App, side: Side, entity: &str) -> Vec<(Role, String)> {
    vec![
        (Role::GridOfficer, app.token(Role::GridOfficer, COUNTY, Some(GRID))),
        (Role::ResponsibleEntity, entity.to_owned()),
        (Role::CountyBureau, app.token(Role::CountyBureau, COUNTY, None)),
        (Role::CityBureau, app.token(Role::CityBureau, "520100", None)),
        (Role::Province, app.token(Role::Province, if side == Side::Inside { "520000" } else { "530000" }, None)),
        (Role::Inspector, app.token(Role::Inspector, "520000", None)),
        (Role::Public, app.token(Role::Public, "520000", None)),
    ]
}

/// Runs every (role, side) cell of one endpoint.
async fn cell_by_cell(endpoint: &str) {
    let app = App::start().await;
    let entity = app.token(Role::ResponsibleEntity, COUNTY, None);
    let entity_id = app.actor(&entity).id;
    let creates = matches!(endpoint, "problems" | "inspections");
    let mut allowed = 0;
    for side in [Side::Inside, Side::Outside] {
        // Inside: the county and grid of the tokens, assigned to the responsible entity under test.
        let (county, grid, responsible) = match side {
            Side::Inside => (COUNTY, GRID, entity_id.as_str()),
            Side::Outside => (FAR_COUNTY, FAR_GRID, "tok_someone_else"),
        };
        // A refused command leaves the problem as it was, so the next role reuses it.
        let mut fresh: Option<Built> = None;
        for (role, token) in tokens(&app, side, &entity) {
            let cell = format!("{role} × {endpoint} × {side:?}");
            let problem = match (creates, fresh.take()) {
                (true, _) => None,
                (false, Some(p)) => Some(p),
                (false, None) => Some(app.problem_for(endpoint, county, grid, responsible).await),
            };
            let target = Target {
                region: region(county),
                grid: Some(grid),
                responsible: if creates { None } else { Some(responsible) },
            };
            let expected = authorize(&app.actor(&token), action(endpoint), target).is_ok();
            assert_eq!(
                expected,
                side == Side::Inside && table(role, endpoint),
                "{cell}: the table and the domain disagree"
            );
            let path = command_path(endpoint, problem.as_ref().map_or("", |p| p.id.as_str()));
            let head = app.head().await;
            let reply = app.post(&path, &token, &body(endpoint, county, grid)).await;
            if expected {
                let status = if creates { StatusCode::CREATED } else { StatusCode::OK };
                assert_eq!(reply.status, status, "{cell}: {}", reply.text());
                assert_eq!(reply.position(), head + 1, "{cell}");
                allowed += 1;
            } else {
                let p = reply.problem(StatusCode::FORBIDDEN);
                assert_eq!(p["type"], "urn:rectify:problem:forbidden", "{cell}");
                assert_eq!(app.head().await, head, "{cell}: a refused command appended");
                fresh = problem;
            }
        }
    }
    let column: usize = INSIDE.iter().filter(|(r, _)| table(*r, endpoint)).count();
    assert_eq!(allowed, column, "{endpoint}: every allowed cell was exercised");
    app.stop().await;
}

#[tokio::test]
async fn report_problem() {
    cell_by_cell("problems").await;
}

#[tokio::test]
async fn record_inspection() {
    cell_by_cell("inspections").await;
}

#[tokio::test]
async fn deadline() {
    cell_by_cell("deadline").await;
}

#[tokio::test]
async fn assignment() {
    cell_by_cell("assignment").await;
}

#[tokio::test]
async fn progress() {
    cell_by_cell("progress").await;
}

#[tokio::test]
async fn extension() {
    cell_by_cell("extension").await;
}

#[tokio::test]
async fn extension_decision() {
    cell_by_cell("extension-decision").await;
}

#[tokio::test]
async fn submission() {
    cell_by_cell("submission").await;
}

#[tokio::test]
async fn acceptance() {
    cell_by_cell("acceptance").await;
}

#[tokio::test]
async fn reopen() {
    cell_by_cell("reopen").await;
}

#[tokio::test]
async fn void() {
    cell_by_cell("void").await;
}

#[tokio::test]
async fn supervision() {
    cell_by_cell("supervision").await;
}

#[tokio::test]
async fn enforcement() {
    cell_by_cell("enforcement").await;
}

/// Spot checks written without the domain's help, for the reach rules the matrix does not show.
#[tokio::test]
async fn reach_spot_checks() {
    let app = App::start().await;
    let officer = app.token(Role::GridOfficer, COUNTY, Some(GRID));
    let other_grid = app.problem_for("progress", COUNTY, OTHER_GRID, "tok_nobody").await;
    let own_grid = app.problem_for("progress", COUNTY, GRID, "tok_nobody").await;
    let head = app.head().await;
    // A grid officer writes in its own grid only, but reads its whole county.
    app.post(&command_path("progress", &other_grid.id), &officer, &action_body("progress"))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.post("/api/v1/problems", &officer, &report_body(COUNTY, OTHER_GRID)).await.problem(StatusCode::FORBIDDEN);
    app.post("/api/v1/inspections", &officer, &inspection_body(COUNTY, OTHER_GRID))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert_eq!(app.head().await, head);
    assert_eq!(app.get(&format!("/api/v1/problems/{}", other_grid.id), &officer).await.status, StatusCode::OK);
    assert_eq!(
        app.post(&command_path("progress", &own_grid.id), &officer, &action_body("progress")).await.status,
        StatusCode::OK
    );

    // A responsible entity acts on the problems assigned to it, not on its county's others.
    let entity = app.token(Role::ResponsibleEntity, COUNTY, None);
    let head = app.head().await;
    app.post(&command_path("progress", &own_grid.id), &entity, &action_body("progress"))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.get(&format!("/api/v1/problems/{}", own_grid.id), &entity).await.problem(StatusCode::FORBIDDEN);
    assert_eq!(app.head().await, head);
    let entity_id = app.actor(&entity).id;
    let admin = app.admin.clone();
    app.act(&admin, &own_grid.id, "assignment", json!({"unit": "Kailin", "actor_id": entity_id})).await;
    assert_eq!(
        app.post(&command_path("progress", &own_grid.id), &entity, &action_body("progress")).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get(&format!("/api/v1/problems/{}", own_grid.id), &entity).await.status, StatusCode::OK);

    // Bureaus reach their region and below, not a neighbour's.
    let neighbour = app.token(Role::CountyBureau, "520103", None);
    let other_city = app.token(Role::CityBureau, "520200", None);
    let city = app.token(Role::CityBureau, "520100", None);
    let head = app.head().await;
    for token in [&neighbour, &other_city] {
        app.post(&command_path("void", &other_grid.id), token, &action_body("void"))
            .await
            .problem(StatusCode::FORBIDDEN);
        app.get(&format!("/api/v1/problems/{}", other_grid.id), token).await.problem(StatusCode::FORBIDDEN);
    }
    // A county bureau may not list for supervision (挂牌督办) even in its own county; its city may.
    let county = app.token(Role::CountyBureau, COUNTY, None);
    app.post(&command_path("supervision", &other_grid.id), &county, &action_body("supervision"))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert_eq!(app.head().await, head);
    assert_eq!(
        app.post(&command_path("supervision", &other_grid.id), &city, &action_body("supervision")).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

/// Who reported a problem or submitted its rectification may not accept or reject it.
#[tokio::test]
async fn separation_of_duties_on_acceptance() {
    let app = App::start().await;
    let reporter = app.token(Role::CountyBureau, COUNTY, None);
    let submitter = app.token(Role::CountyBureau, COUNTY, None);
    let reviewer = app.token(Role::CountyBureau, COUNTY, None);
    let reply = app.post("/api/v1/problems", &reporter, &report_body(COUNTY, GRID)).await;
    let id = reply.ok()["id"].as_str().unwrap().to_owned();
    app.act(&reporter, &id, "deadline", action_body("deadline")).await;
    app.act(&submitter, &id, "submission", action_body("submission")).await;
    let head = app.head().await;
    let reject = json!({"decision": "reject", "comment": "the ditch is not lined"});
    for token in [&reporter, &submitter] {
        for decision in [action_body("acceptance"), reject.clone()] {
            let p = app.post(&command_path("acceptance", &id), token, &decision).await.problem(StatusCode::FORBIDDEN);
            assert!(p["detail"].as_str().unwrap().contains("separation of duties"), "{p}");
        }
    }
    assert_eq!(app.head().await, head);
    // A rejection clears the submitter; whoever submits next is the one barred.
    app.act(&reviewer, &id, "acceptance", reject).await;
    app.act(&reviewer, &id, "submission", action_body("submission")).await;
    app.post(&command_path("acceptance", &id), &reviewer, &action_body("acceptance"))
        .await
        .problem(StatusCode::FORBIDDEN);
    let last = app.act(&submitter, &id, "acceptance", action_body("acceptance")).await;
    assert_eq!(last, app.head().await);
    assert_eq!(app.read(&id).await["status"], "closed");
    app.stop().await;
}
