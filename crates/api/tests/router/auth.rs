//! Authentication: every `/api/v1` route answers 401 problem+json without a valid bearer token (and
//! appends nothing); the operational endpoints answer without one.

use crate::support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use rectify_domain::Role;
use serde_json::Value;

/// Routes that must exist (the OpenAPI document is the full list; this keeps the test from passing on an
/// empty one).
const KNOWN: [(&str, &str); 19] = [
    ("get", "/api/v1/problems"),
    ("post", "/api/v1/problems"),
    ("post", "/api/v1/inspections"),
    ("get", "/api/v1/problems/{id}"),
    ("get", "/api/v1/problems/{id}/events"),
    ("post", "/api/v1/problems/{id}/deadline"),
    ("post", "/api/v1/problems/{id}/assignment"),
    ("post", "/api/v1/problems/{id}/progress"),
    ("post", "/api/v1/problems/{id}/extension"),
    ("post", "/api/v1/problems/{id}/extension-decision"),
    ("post", "/api/v1/problems/{id}/submission"),
    ("post", "/api/v1/problems/{id}/acceptance"),
    ("post", "/api/v1/problems/{id}/reopen"),
    ("post", "/api/v1/problems/{id}/void"),
    ("post", "/api/v1/problems/{id}/supervision"),
    ("post", "/api/v1/problems/{id}/enforcement"),
    ("get", "/api/v1/stats/summary"),
    ("get", "/api/v1/regions/{code}"),
    ("get", "/api/v1/stream"),
];

/// Every (method, path template) of `/api/v1` in the OpenAPI document.
async fn api_routes(app: &App) -> Vec<(String, String)> {
    let reply = app.send(Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    let doc = reply.ok();
    let mut routes = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in
            item.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
        {
            if path.starts_with("/api/v1/") {
                routes.push((method.clone(), path.clone()));
            }
        }
    }
    for (method, path) in KNOWN {
        assert!(routes.iter().any(|(m, p)| m == method && p == path), "{method} {path} is not in the OpenAPI document");
    }
    routes
}

fn request(method: &str, path: &str, authorization: Option<&[u8]>, body: &Value) -> Request<Body> {
    let mut b = Request::builder().method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap()).uri(path);
    if let Some(value) = authorization {
        b = b.header(header::AUTHORIZATION, value);
    }
    if method == "post" {
        b.header(header::CONTENT_TYPE, "application/json").body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
    } else {
        b.body(Body::empty()).unwrap()
    }
}

#[tokio::test]
async fn every_api_route_needs_a_valid_token() {
    let app = App::start().await;
    let problem = app.problem_for("acceptance", COUNTY, GRID, "tok_nobody").await;
    let routes = api_routes(&app).await;
    assert!(routes.len() >= KNOWN.len());
    let valid = app.token(Role::Province, "520000", None);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("no Authorization header", vec![]),
        ("an unknown token", b"Bearer rfy_0000000000000000000000000000000000000000000000000000000000000000".to_vec()),
        ("an empty bearer token", b"Bearer ".to_vec()),
        ("a token without scheme", valid.clone().into_bytes()),
        ("basic credentials", b"Basic cHJvdmluY2U6c2VjcmV0".to_vec()),
        ("a token with a suffix", format!("Bearer {valid}x").into_bytes()),
        ("a truncated token", format!("Bearer {}", &valid[..valid.len() - 1]).into_bytes()),
        ("the token's stored hash", b"Bearer tok_0123456789abcdef".to_vec()),
        ("a non-ASCII token", "Bearer 令牌".as_bytes().to_vec()),
        ("two tokens", format!("Bearer {valid}, Bearer {valid}").into_bytes()),
    ];
    let head = app.head().await;
    for (method, template) in &routes {
        let path = template.replace("{id}", &problem.id).replace("{code}", "520000");
        let body = match path.rsplit('/').next().unwrap() {
            "problems" => report_body(COUNTY, GRID),
            "inspections" => inspection_body(COUNTY, GRID),
            action if method == "post" => action_body(action),
            _ => Value::Null,
        };
        for (label, authorization) in &bad {
            let authorization = (!authorization.is_empty()).then_some(authorization.as_slice());
            let reply = app.send(request(method, &path, authorization, &body)).await;
            let p = reply.problem(StatusCode::UNAUTHORIZED);
            assert_eq!(p["type"], "urn:rectify:problem:unauthorized", "{method} {path}: {label}");
            assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer", "{method} {path}: {label}");
        }
        // Authentication comes before the body is read: a garbage body without a token is still 401.
        if method == "post" {
            let garbage =
                Request::post(&path).header(header::CONTENT_TYPE, "text/plain").body(Body::from("{{{")).unwrap();
            app.send(garbage).await.problem(StatusCode::UNAUTHORIZED);
        }
    }
    assert_eq!(app.head().await, head, "an unauthenticated request appended");
    // The scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER"] {
        let reply = app
            .send(request("get", "/api/v1/stats/summary", Some(format!("{scheme} {valid}").as_bytes()), &Value::Null))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}: {}", reply.text());
    }
    // The same token, well-formed, is accepted.
    let reply = app.post(&command_path("acceptance", &problem.id), &valid, &action_body("acceptance")).await;
    assert_eq!(reply.position(), head + 1);
    app.stop().await;
}

#[tokio::test]
async fn operational_endpoints_need_no_token() {
    let app = App::start().await;
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let reply = app.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let doc = app.send(Request::get("/openapi.json").body(Body::empty()).unwrap()).await.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{doc}");
    assert_eq!(app.send(Request::get("/healthz").body(Body::empty()).unwrap()).await.text(), "ok");
    // A known route with the wrong method is a problem+json 405 that still says what is allowed.
    for (method, path) in [("GET", "/api/v1/inspections"), ("DELETE", "/api/v1/problems"), ("PUT", "/healthz")] {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let reply = app.send(request).await;
        reply.problem(StatusCode::METHOD_NOT_ALLOWED);
        assert!(reply.headers.contains_key(header::ALLOW), "{method} {path}: {:?}", reply.headers);
    }
    // An unknown route is a problem+json 404, with or without a token.
    app.send(Request::get("/api/v1/nothing-here").body(Body::empty()).unwrap()).await.problem(StatusCode::NOT_FOUND);
    app.get("/api/v2/problems", &app.admin).await.problem(StatusCode::NOT_FOUND);
    app.stop().await;
}
