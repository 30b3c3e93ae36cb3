//! The edge: CORS is closed unless origins are configured, and a token over its rate limit gets 429
//! problem+json before any handler runs.

use crate::support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use rectify_api::edge::RateLimit;
use rectify_domain::Role;

fn with_origin(mut request: Request<Body>, origin: &str) -> Request<Body> {
    request.headers_mut().insert(header::ORIGIN, origin.parse().unwrap());
    request
}

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
        .body(Body::empty())
        .unwrap()
}

fn cors_headers(reply: &Reply) -> Vec<String> {
    reply.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k.starts_with("access-control-")).collect()
}

#[tokio::test]
async fn cors_is_closed_by_default() {
    let app = App::start().await;
    let origin = "https://elsewhere.example";
    let reply = app.send(with_origin(get("/api/v1/stats/summary", &app.admin), origin)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(cors_headers(&reply), Vec::<String>::new(), "no CORS header without configured origins");
    let reply = app.send(preflight("/api/v1/problems", origin)).await;
    assert!(!reply.status.is_success(), "a preflight is not approved: {}", reply.status);
    assert_eq!(cors_headers(&reply), Vec::<String>::new());
    for path in ["/healthz", "/metrics", "/openapi.json", "/"] {
        let reply = app.send(with_origin(Request::builder().uri(path).body(Body::empty()).unwrap(), origin)).await;
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_exactly_the_configured_origins() {
    let allowed = "https://dashboard.example";
    let app = App::start_with(|s| s.edge.cors_origins = vec![allowed.to_owned()]).await;
    let reply = app.send(preflight("/api/v1/problems", allowed)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], allowed);
    let allow_headers = reply.headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_owned();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("idempotency-key"), "{allow_headers}");
    let reply = app.send(with_origin(get("/api/v1/stats/summary", &app.admin), allowed)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], allowed);
    // Any other origin, even a look-alike, gets nothing.
    for other in ["https://dashboard.example.evil", "http://dashboard.example", "null"] {
        let reply = app.send(with_origin(get("/api/v1/stats/summary", &app.admin), other)).await;
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{other}");
        let reply = app.send(preflight("/api/v1/problems", other)).await;
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{other}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_token_over_its_rate_limit_gets_429_and_appends_nothing() {
    let app = App::start_with(|s| s.edge.rate_limit = Some(RateLimit { per_second: 0.5, burst: 3 })).await;
    let token = app.token(Role::CountyBureau, COUNTY, None);
    for _ in 0..3 {
        app.post("/api/v1/problems", &token, &report_body(COUNTY, GRID)).await.ok();
    }
    let head = app.head().await;
    let reply = app.post("/api/v1/problems", &token, &report_body(COUNTY, GRID)).await;
    let problem = reply.problem(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem["type"], "urn:rectify:problem:rate-limited");
    let retry_after: u64 = reply.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(app.head().await, head, "a limited command is not appended");
    let reply = app.get("/api/v1/stats/summary", &token).await;
    reply.problem(StatusCode::TOO_MANY_REQUESTS);
    // Other tokens have buckets of their own; requests without a valid token are refused, not counted.
    let other = app.token(Role::CountyBureau, COUNTY, None);
    assert_eq!(app.get("/api/v1/stats/summary", &other).await.status, StatusCode::OK);
    for _ in 0..5 {
        app.get("/api/v1/stats/summary", "rfy_made_up").await.problem(StatusCode::UNAUTHORIZED);
    }
    // The limit does not reach the operational endpoints.
    let health = app.send(Request::builder().uri("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    app.stop().await;
}
