//! The harness: one service per test on a temp dir (embedded log), tokens on the same dir, requests sent
//! in-process with `oneshot`, and helpers to build problems in a given state.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use http_body_util::BodyExt;
use rectify_api::tokens::{self, TokenStore};
use rectify_api::{Service, Settings};
use rectify_domain::{Actor, RegionCode, Role};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A county of Guiyang (prefecture 520100) and one of its grids: "inside" for the test tokens.
pub const COUNTY: &str = "520102";
pub const GRID: &str = "520102-G01";
/// Another grid of the same county.
pub const OTHER_GRID: &str = "520102-G02";
/// A county of Liupanshui (prefecture 520200): "outside" for every token bound below the province.
pub const FAR_COUNTY: &str = "520201";
pub const FAR_GRID: &str = "520201-G01";

/// A running service with its data dir and a province token for setting things up.
pub struct App {
    pub service: Service,
    /// A province-wide token that sets problems up; never the token under test.
    pub admin: String,
    dir: tempfile::TempDir,
}

/// One answer, with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts a 2xx and returns the body as JSON.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert!(self.status.is_success(), "expected 2xx, got {}: {}", self.status, self.text());
        self.json()
    }

    /// `position` of a command answer.
    #[track_caller]
    pub fn position(&self) -> u64 {
        self.ok()["position"].as_u64().expect("a command answer has a position")
    }

    /// Asserts an RFC 9457 problem with `status` and returns it.
    #[track_caller]
    pub fn problem(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.content_type(), "application/problem+json", "body: {}", self.text());
        let p = self.json();
        assert!(p["type"].as_str().is_some_and(|t| t.starts_with("urn:rectify:problem:")), "{p}");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert_eq!(p["status"], status.as_u16(), "{p}");
        assert!(p["detail"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        p
    }

    /// Asserts a 422 (or `status`) naming `field`.
    #[track_caller]
    pub fn invalid(&self, status: StatusCode, field: &str) -> Value {
        let p = self.problem(status);
        assert_eq!(p["field"], field, "{p}");
        p
    }
}

/// An RFC 3339 time `days` from now (negative: in the past).
pub fn days(days: i64) -> String {
    time(Utc::now() + Duration::days(days))
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A well-formed piece of evidence.
pub fn evidence() -> Value {
    json!({"sha256": "ab".repeat(32), "media_type": "image/jpeg", "uri": "s3://evidence/1.jpg"})
}

/// A valid report body for `grid` (of `county`).
pub fn report_body(county: &str, grid: &str) -> Value {
    json!({
        "region": county,
        "grid": grid,
        "sector": "phosphorus_chemical",
        "source": {"name": "Kailin phosphogypsum yard", "credit_code": ""},
        "severity": "major",
        "description": "seepage from the phosphogypsum stack",
        "discovered_at": days(-2),
    })
}

/// A valid inspection body.
pub fn inspection_body(county: &str, grid: &str) -> Value {
    json!({
        "region": county,
        "grid": grid,
        "sector": "baijiu",
        "source": {"name": "Maotai town distillery 3"},
        "inspected_at": days(-1),
        "problems_found": 1,
        "notes": "wastewater bypass",
    })
}

/// A valid body for each action (`extension` and `reopen` deadlines are later than any set up here).
pub fn action_body(action: &str) -> Value {
    match action {
        "deadline" => json!({"class": "time_limited", "due": days(30)}),
        "assignment" => json!({"unit": "Kailin Group", "person": "Wang"}),
        "progress" => json!({"note": "drainage ditch dug", "evidence": [evidence()]}),
        "extension" => json!({"reason": "rainy season", "due": days(60)}),
        "extension-decision" => json!({"decision": "approve", "comment": "ok"}),
        "submission" => json!({"summary": "done", "evidence": [evidence()]}),
        "acceptance" => json!({"decision": "accept", "comment": "verified on site"}),
        "reopen" => json!({"reason": "seepage is back", "due": days(20)}),
        "void" => json!({"reason": "duplicate"}),
        "supervision" => json!({"decision": "list", "reason": "serious and repeated"}),
        "enforcement" => json!({"measure": {"kind": "penalty", "amount_fen": 12_000_000}, "case_no": "QJ-2021-7"}),
        "bulletins" => json!({"title": "weekly dispatch"}),
        other => panic!("no action {other}"),
    }
}

/// A request with a bearer token and a JSON body.
pub fn post_json(path: &str, token: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("serializes")))
        .expect("a valid request")
}

/// A GET with a bearer token.
pub fn get(path: &str, token: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("a valid request")
}

/// The path of a command endpoint: `problems`, `inspections` or an action on problem `id`.
pub fn command_path(endpoint: &str, id: &str) -> String {
    match endpoint {
        "problems" | "inspections" => format!("/api/v1/{endpoint}"),
        action => format!("/api/v1/problems/{id}/{action}"),
    }
}

/// A problem built by [`App::problem_in`].
#[derive(Debug, Clone)]
pub struct Built {
    pub id: String,
    pub position: u64,
}

impl App {
    /// A fresh service on a temp dir.
    pub async fn start() -> App {
        App::start_with(|_| {}).await
    }

    /// A fresh service on a temp dir, with `tune` applied to the default settings.
    pub async fn start_with(tune: impl FnOnce(&mut Settings)) -> App {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut settings = Settings::new(dir.path());
        tune(&mut settings);
        let service = Service::start(&settings).await.expect("the service starts");
        let admin = tokens::add(dir.path(), Role::Province, region("520000"), None, "setup").expect("a token");
        App { service, admin, dir }
    }

    /// Stops the projector and the watcher.
    pub async fn stop(self) {
        self.service.stop().await;
    }

    /// A new token for `role` bound to `region` (and `grid`).
    pub fn token(&self, role: Role, region_code: &str, grid: Option<&str>) -> String {
        tokens::add(self.dir.path(), role, region(region_code), grid.map(Into::into), role.as_str()).expect("a token")
    }

    /// The actor a token stands for (its id is what `assignment.actor_id` names).
    pub fn actor(&self, token: &str) -> Actor {
        TokenStore::open(self.dir.path()).authenticate(token).expect("a valid token")
    }

    /// Sends one request through a fresh router.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.service.router().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("the body is readable").to_bytes();
        Reply { status, headers, body }
    }

    /// POSTs `body` as JSON with `token`.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(post_json(path, token, body)).await
    }

    /// GETs `path` with `token`.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(get(path, token)).await
    }

    /// The log head: how many commits were appended.
    pub async fn head(&self) -> u64 {
        self.service.state.log.head().await.expect("the log answers")
    }

    /// Reports a problem in `county`/`grid` as the admin.
    pub async fn report(&self, county: &str, grid: &str) -> Built {
        let reply = self.post("/api/v1/problems", &self.admin, &report_body(county, grid)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let answer = reply.json();
        Built { id: answer["id"].as_str().expect("an id").to_owned(), position: answer["position"].as_u64().unwrap() }
    }

    /// Runs `action` on problem `id` as `token` and expects success.
    pub async fn act(&self, token: &str, id: &str, action: &str, body: Value) -> u64 {
        let reply = self.post(&command_path(action, id), token, &body).await;
        reply.position()
    }

    /// A problem in `county`/`grid`, assigned to `responsible` (an actor id), brought by the admin into the
    /// state `endpoint` needs: reported for deadline/assignment/void/supervision/enforcement/progress,
    /// rectifying for extension/submission, an extension pending for extension-decision, pending acceptance
    /// for acceptance, closed for reopen.
    pub async fn problem_for(&self, endpoint: &str, county: &str, grid: &str, responsible: &str) -> Built {
        let id = self.report(county, grid).await.id;
        let admin = self.admin.clone();
        let mut position =
            self.act(&admin, &id, "assignment", json!({"unit": "Kailin Group", "actor_id": responsible})).await;
        let rectifying = ["extension", "extension-decision", "submission", "acceptance", "reopen"];
        if rectifying.contains(&endpoint) {
            position = self.act(&admin, &id, "deadline", json!({"class": "time_limited", "due": days(30)})).await;
        }
        if endpoint == "extension-decision" {
            position = self.act(&admin, &id, "extension", json!({"reason": "rain", "due": days(45)})).await;
        }
        if ["acceptance", "reopen"].contains(&endpoint) {
            // The admin reported; a second province token submits and, for reopen, a third accepts, so that
            // separation of duties never refuses the actor under test.
            let submitter = self.token(Role::Province, "520000", None);
            position = self.act(&submitter, &id, "submission", action_body("submission")).await;
            if endpoint == "reopen" {
                let acceptor = self.token(Role::Province, "520000", None);
                position = self.act(&acceptor, &id, "acceptance", action_body("acceptance")).await;
            }
        }
        Built { id, position }
    }

    /// Polls the problem until `done` holds (the deadline watcher works in the background).
    pub async fn eventually(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let problem = self.read(id).await;
            if done(&problem) {
                return problem;
            }
            assert!(std::time::Instant::now() < deadline, "gave up waiting: {problem}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The problem as the admin reads it.
    pub async fn read(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/problems/{id}"), &self.admin).await.ok()
    }
}

pub fn region(code: &str) -> RegionCode {
    RegionCode::parse(code).expect("a region code")
}
