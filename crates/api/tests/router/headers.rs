//! `Idempotency-Key` (a repeat answers with the first answer, byte for byte, and appends nothing) and
//! `If-Match` (a stale version is 409; the current one is accepted and the answer carries the new ETag).

use crate::support::*;
use axum::http::{HeaderValue, StatusCode, header};
use rectify_domain::Role;
use serde_json::{Value, json};

/// `request` with `name: value` added.
fn with_header(
    mut request: axum::http::Request<axum::body::Body>,
    name: &'static str,
    value: &str,
) -> axum::http::Request<axum::body::Body> {
    request.headers_mut().insert(name, HeaderValue::from_str(value).unwrap());
    request
}

async fn post_keyed(app: &App, path: &str, token: &str, key: &str, body: &Value) -> Reply {
    app.send(with_header(post_json(path, token, body), "idempotency-key", key)).await
}

#[tokio::test]
async fn a_repeated_command_returns_the_first_answer_and_appends_nothing() {
    let app = App::start().await;
    let p = app.problem_for("progress", COUNTY, GRID, "tok_nobody").await;
    let path = command_path("progress", &p.id);
    let first = post_keyed(&app, &path, &app.admin, "progress-1", &action_body("progress")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    // The state moves on in between.
    let admin = app.admin.clone();
    app.act(&admin, &p.id, "progress", json!({"note": "second visit"})).await;
    app.act(&admin, &p.id, "void", action_body("void")).await;
    let head = app.head().await;
    // The same key, the same body: the first answer, although progress on a voided problem is refused now.
    let again = post_keyed(&app, &path, &app.admin, "progress-1", &action_body("progress")).await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body, "byte-identical answer");
    assert_eq!(again.headers.get(header::ETAG), first.headers.get(header::ETAG));
    // The same key with another body is still the first command: the key is the command id.
    let other = post_keyed(&app, &path, &app.admin, "progress-1", &json!({"note": "different"})).await;
    assert_eq!((other.status, &other.body), (first.status, &first.body));
    assert_eq!(app.head().await, head, "a repeat appended");
    // The history holds the command once.
    let history = app.get(&format!("/api/v1/problems/{}/events", p.id), &app.admin).await.ok();
    let keyed = history
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["events"].as_array().unwrap())
        .filter(|e| e["command_id"] == "progress-1")
        .count();
    assert_eq!(keyed, 1, "{history}");
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_report_returns_the_same_problem() {
    let app = App::start().await;
    let body = report_body(COUNTY, GRID);
    let first = post_keyed(&app, "/api/v1/problems", &app.admin, "report-once", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let admin = app.admin.clone();
    app.act(&admin, &id, "deadline", action_body("deadline")).await;
    let head = app.head().await;
    for _ in 0..3 {
        let again = post_keyed(&app, "/api/v1/problems", &app.admin, "report-once", &body).await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.body, first.body, "byte-identical answer");
        assert_eq!(again.json()["id"], id.as_str());
    }
    assert_eq!(app.head().await, head, "a repeat appended");
    let ledger = app.get(&format!("/api/v1/problems?wait_for={head}"), &app.admin).await.ok();
    assert_eq!(ledger["items"].as_array().unwrap().len(), 1, "{ledger}");
    // Inspections too.
    let inspection = inspection_body(COUNTY, GRID);
    let first = post_keyed(&app, "/api/v1/inspections", &app.admin, "inspect-once", &inspection).await;
    let again = post_keyed(&app, "/api/v1/inspections", &app.admin, "inspect-once", &inspection).await;
    assert_eq!((first.status, &first.body), (again.status, &again.body));
    assert_eq!(app.head().await, head + 1);
    app.stop().await;
}

/// A key is one actor's: another actor sending the same key gets no answer to a command it could not
/// have sent (here: the public role reporting a problem), and nothing is appended.
#[tokio::test]
async fn another_actors_key_is_not_answered() {
    let app = App::start().await;
    let body = report_body(COUNTY, GRID);
    let first = post_keyed(&app, "/api/v1/problems", &app.admin, "shared-key", &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let head = app.head().await;
    let public = app.token(Role::Public, "520000", None);
    let county = app.token(Role::CountyBureau, COUNTY, None);
    for token in [&public, &county] {
        let reply = post_keyed(&app, "/api/v1/problems", token, "shared-key", &body).await;
        reply.invalid(StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key");
    }
    assert_eq!(app.head().await, head);
    // Its owner still gets the first answer.
    let again = post_keyed(&app, "/api/v1/problems", &app.admin, "shared-key", &body).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    app.stop().await;
}

/// The deadline watcher's command ids must not be reachable with an Idempotency-Key: otherwise whoever
/// acts on a problem can pre-empt the id of the watcher's next `overdue` command (`overdue:<id>:v<version>`)
/// and keep the problem from ever being marked overdue.
#[tokio::test]
async fn a_client_key_cannot_preempt_the_deadline_watcher() {
    let app = App::start_with(|s| s.overdue_interval = std::time::Duration::from_millis(20)).await;
    // Reported (v1), assigned (v2); the deadline comes next, already passed.
    let p = app.problem_for("deadline", COUNTY, GRID, "tok_nobody").await;
    let admin = app.admin.clone();
    let keyed = |version: u64| format!("overdue:{}:v{version}", p.id);
    let past = json!({"class": "time_limited", "due": days(-1)});
    let reply = post_keyed(&app, &command_path("deadline", &p.id), &admin, &keyed(3), &past).await;
    reply.invalid(StatusCode::BAD_REQUEST, "Idempotency-Key");
    // Nor any key in the service's namespace.
    let reply = post_keyed(&app, &command_path("deadline", &p.id), &admin, "overdue:", &past).await;
    reply.invalid(StatusCode::BAD_REQUEST, "Idempotency-Key");
    app.act(&admin, &p.id, "deadline", past).await;
    let problem = app.eventually(&p.id, |p| p["overdue"] == true).await;
    assert_eq!(problem["version"], 4);
    app.stop().await;
}

#[tokio::test]
async fn if_match_guards_the_version() {
    let app = App::start().await;
    let p = app.report(COUNTY, GRID).await;
    let admin = app.admin.clone();
    app.act(&admin, &p.id, "assignment", json!({"unit": "Kailin"})).await;
    let read = app.get(&format!("/api/v1/problems/{}", p.id), &app.admin).await;
    assert_eq!(read.headers[header::ETAG], "\"2\"");
    assert_eq!(read.json()["version"], 2);
    let path = command_path("deadline", &p.id);
    let head = app.head().await;
    for stale in ["\"1\"", "\"0\"", "\"3\"", "W/\"1\""] {
        let reply =
            app.send(with_header(post_json(&path, &app.admin, &action_body("deadline")), "if-match", stale)).await;
        let problem = reply.problem(StatusCode::CONFLICT);
        assert_eq!(problem["type"], "urn:rectify:problem:version-conflict", "{stale}: {problem}");
        assert!(reply.headers.get(header::ETAG).is_none());
    }
    assert_eq!(app.head().await, head, "a stale command appended");
    let reply =
        app.send(with_header(post_json(&path, &app.admin, &action_body("deadline")), "if-match", "\"2\"")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers[header::ETAG], "\"3\"");
    assert_eq!(reply.json()["version"], 3);
    // A weak validator names the same version.
    let progress = command_path("progress", &p.id);
    let reply =
        app.send(with_header(post_json(&progress, &app.admin, &action_body("progress")), "if-match", "W/\"3\"")).await;
    assert_eq!((reply.status, &reply.headers[header::ETAG]), (StatusCode::OK, &HeaderValue::from_static("\"4\"")));
    let read = app.get(&format!("/api/v1/problems/{}", p.id), &app.admin).await;
    assert_eq!(read.headers[header::ETAG], "\"4\"");
    // A new problem is at version 0.
    let body = report_body(COUNTY, GRID);
    let reply = app.send(with_header(post_json("/api/v1/problems", &app.admin, &body), "if-match", "\"1\"")).await;
    reply.problem(StatusCode::CONFLICT);
    let reply = app.send(with_header(post_json("/api/v1/problems", &app.admin, &body), "if-match", "\"0\"")).await;
    assert_eq!((reply.status, &reply.headers[header::ETAG]), (StatusCode::CREATED, &HeaderValue::from_static("\"1\"")));
    app.stop().await;
}
