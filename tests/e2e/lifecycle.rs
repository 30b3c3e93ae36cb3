//! The HTTP contract of a problem's whole life, run unchanged on each backend.

use crate::api::{report_body, send, submission_body};
use crate::app::App;
use reqwest::Method;
use serde_json::{Value, json};

const COUNTY: &str = "520121"; // 开阳县, Guiyang
const GRID: &str = "520121-G01";

async fn post(app: &App, path: &str, token: &str, body: Value, headers: &[(&str, &str)]) -> crate::api::Answer {
    send(app, Method::POST, path, Some(token), Some(body), headers).await
}

async fn get(app: &App, path: &str, token: &str) -> crate::api::Answer {
    send(app, Method::GET, path, Some(token), None, &[]).await
}

/// Runs the full lifecycle against a started app.
pub async fn lifecycle(app: &App) {
    let reporter = app.token("county_bureau", Some(COUNTY), None);
    let colleague = app.token("county_bureau", Some(COUNTY), None);
    let city = app.token("city_bureau", Some("520100"), None);
    let other_county = app.token("county_bureau", Some("520102"), None);
    let inspector = app.token("inspector", None, None);
    let public = app.token("public", None, None);

    // Report: 201 with id, version 1 and a position.
    let created = post(app, "/api/v1/problems", &reporter, report_body(COUNTY, GRID), &[]).await.expect(201);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["version"], 1);
    let p1 = created["position"].as_u64().expect("position");
    let path = |action: &str| format!("/api/v1/problems/{id}/{action}");

    // Deadline with the right If-Match; a stale one is 409 and appends nothing.
    let deadline = json!({"class": "time_limited", "due": "2021-06-30T00:00:00Z"});
    let set = post(app, &path("deadline"), &reporter, deadline.clone(), &[("If-Match", "\"1\"")]).await.expect(200);
    assert_eq!(set["version"], 2);
    assert!(set["position"].as_u64().unwrap() > p1);
    post(app, &path("deadline"), &reporter, deadline, &[("If-Match", "\"1\"")]).await.problem(409);

    // Idempotency: the same key twice gives the first answer and one event.
    let key = [("Idempotency-Key", "submit-once-1")];
    let first = post(app, &path("submission"), &reporter, submission_body(), &key).await.expect(200);
    let again = post(app, &path("submission"), &reporter, submission_body(), &key).await.expect(200);
    assert_eq!(first, again);
    assert_eq!(first["version"], 3);

    // Separation of duties: who reported or submitted may not accept; a colleague may.
    let accept = json!({"decision": "accept", "comment": "verified on site"});
    post(app, &path("acceptance"), &reporter, accept.clone(), &[]).await.problem(403);
    // Outside one's county: 403; inspectors and the public write nothing.
    post(app, &path("acceptance"), &other_county, accept.clone(), &[]).await.problem(403);
    post(app, &path("acceptance"), &inspector, accept.clone(), &[]).await.problem(403);
    post(app, &path("acceptance"), &public, accept.clone(), &[]).await.problem(403);
    // A rejection needs a comment.
    let bad = post(app, &path("acceptance"), &colleague, json!({"decision": "reject"}), &[]).await.problem(422);
    assert_eq!(bad["field"], "comment");
    post(app, &path("acceptance"), &colleague, json!({"decision": "reject", "comment": "seepage continues"}), &[])
        .await
        .expect(200);
    post(app, &path("submission"), &reporter, submission_body(), &[]).await.expect(200);
    let closed = post(app, &path("acceptance"), &colleague, accept, &[]).await.expect(200);
    assert_eq!(closed["version"], 6);

    let problem = get(app, &format!("/api/v1/problems/{id}"), &inspector).await.expect(200);
    assert_eq!(problem["status"], "closed");
    assert_eq!(problem["version"], 6);
    assert_eq!((problem["region"].as_str(), problem["grid"].as_str()), (Some(COUNTY), Some(GRID)));
    assert_eq!(problem["sector"], "phosphorus_chemical");

    // The views, read-your-writes: fixed 1, open 0 in the county, the prefecture and the province.
    let pos = closed["position"].as_u64().unwrap();
    for region in [COUNTY, "520100", "520000"] {
        let s = get(app, &format!("/api/v1/stats/summary?region={region}&wait_for={pos}"), &public).await.expect(200);
        assert_eq!(s["region"], region);
        assert!(s["found"].as_i64().unwrap() >= 1);
        assert_eq!(s["fixed"].as_i64().unwrap() + s["open"].as_i64().unwrap(), s["found"].as_i64().unwrap());
        for key in ["inspections", "overdue"] {
            assert!(s[key].is_i64(), "{key} missing in {s:#}");
        }
    }
    let county = get(app, &format!("/api/v1/stats/summary?region={COUNTY}&wait_for={pos}"), &city).await.expect(200);
    assert_eq!(
        (county["found"].as_i64(), county["fixed"].as_i64(), county["open"].as_i64()),
        (Some(1), Some(1), Some(0))
    );

    // Reopen (反弹): open again.
    let reopened = post(app, &path("reopen"), &city, json!({"reason": "seepage found again"}), &[]).await.expect(200);
    let pos = reopened["position"].as_u64().unwrap();
    let county = get(app, &format!("/api/v1/stats/summary?region={COUNTY}&wait_for={pos}"), &city).await.expect(200);
    assert_eq!((county["fixed"].as_i64(), county["open"].as_i64()), (Some(0), Some(1)));
    let problem = get(app, &format!("/api/v1/problems/{id}"), &reporter).await.expect(200);
    assert_eq!(problem["status"], "rectifying");

    // Bad input: clear 4xx naming the field, nothing appended.
    let before = get(app, &format!("/api/v1/problems/{id}"), &reporter).await.expect(200)["version"].clone();
    let mut body = report_body(COUNTY, "520102-G01");
    let e = post(app, "/api/v1/problems", &reporter, body.clone(), &[]).await.problem(422);
    assert_eq!(e["field"], "grid");
    body["region"] = json!("529999");
    body["grid"] = json!(GRID);
    assert_eq!(post(app, "/api/v1/problems", &reporter, body, &[]).await.problem(422)["field"], "region");
    let mut body = report_body(COUNTY, GRID);
    body.as_object_mut().unwrap().remove("description");
    assert_eq!(post(app, "/api/v1/problems", &reporter, body, &[]).await.problem(422)["field"], "description");
    let e = post(app, &path("deadline"), &reporter, json!({"class": "soon", "due": "2021-06-30T00:00:00Z"}), &[])
        .await
        .problem(422);
    assert_eq!(e["field"], "class");
    assert_eq!(get(app, &format!("/api/v1/problems/{id}"), &reporter).await.expect(200)["version"], before);

    // Tokens: none or a wrong one → 401; the public reads aggregates only.
    send(app, Method::GET, "/api/v1/stats/summary", None, None, &[]).await.problem(401);
    send(app, Method::GET, "/api/v1/stats/summary", Some("rfy_not_a_token"), None, &[]).await.problem(401);
    get(app, &format!("/api/v1/problems/{id}"), &public).await.problem(403);
    get(app, &format!("/api/v1/problems/{id}"), &other_county).await.problem(403);

    // Reference data and the description of the API.
    let region = get(app, &format!("/api/v1/regions/{COUNTY}"), &public).await.expect(200);
    assert_eq!(region["level"], "county");
    assert!(region["grids"].as_array().unwrap().iter().any(|g| g["id"] == GRID));
    let prefecture = get(app, "/api/v1/regions/520100", &public).await.expect(200);
    assert_eq!(prefecture["children"].as_array().unwrap().len(), 10);
    let openapi = send(app, Method::GET, "/openapi.json", None, None, &[]).await.expect(200);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for route in
        ["/api/v1/problems", "/api/v1/problems/{id}/acceptance", "/api/v1/stats/summary", "/api/v1/regions/{code}"]
    {
        assert!(openapi["paths"].get(route).is_some(), "{route} missing from /openapi.json");
    }
    assert_eq!(send(app, Method::GET, "/healthz", None, None, &[]).await.status, 200);
}

#[tokio::test]
async fn lifecycle_on_the_embedded_log() {
    let app = App::start();
    lifecycle(&app).await;
}
