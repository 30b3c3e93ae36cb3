//! A small typed client for the HTTP API, so tests read as the lifecycle they check.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One answer: status, content type and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// Asserts the status, with the body in the message.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {:#}", self.body);
        self.body
    }

    /// Asserts an RFC 9457 problem with `status`, returning its body.
    #[track_caller]
    pub fn problem(self, status: u16) -> Value {
        assert_eq!(self.content_type, "application/problem+json", "body {:#}", self.body);
        let body = self.expect(status);
        for key in ["type", "title", "status", "detail"] {
            assert!(body.get(key).is_some(), "problem+json without {key}: {body:#}");
        }
        assert_eq!(body["status"], status);
        body
    }
}

/// Sends one request with an optional token, JSON body and extra headers.
pub async fn send(
    app: &super::app::App,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = app.http.request(method, app.at(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("request sent");
    let status = res.status();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = res.bytes().await.expect("body read");
    Answer { status, content_type, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// Asserts that the problem of each report answer is there, at version 1 (the report and nothing else).
pub async fn expect_reported<'a>(app: &super::app::App, token: &str, answers: impl IntoIterator<Item = &'a Value>) {
    for a in answers {
        let path = format!("/api/v1/problems/{}", a["id"].as_str().expect("an answer names its problem"));
        let problem = send(app, Method::GET, &path, Some(token), None, &[]).await.expect(200);
        assert_eq!(problem["version"], 1, "{path}");
    }
}

/// A valid report body for `county`/`grid`.
pub fn report_body(county: &str, grid: &str) -> Value {
    json!({
        "region": county, "grid": grid, "sector": "phosphorus_chemical",
        "source": {"name": "Kaiyang Phosphate Co.", "credit_code": "91520121MA6DL0XXXX"},
        "severity": "major", "description": "phosphogypsum seepage into a stream",
        "discovered_at": "2021-04-02T09:30:00Z"
    })
}

/// A submission body with one piece of evidence.
pub fn submission_body() -> Value {
    json!({"summary": "seepage intercepted, pond lined", "evidence": [{
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "media_type": "image/jpeg", "uri": "https://evidence.example/kaiyang/1.jpg"}]})
}
