//! Property test of every request body: random JSON mutations of valid bodies (extreme numbers and dates,
//! wrong types, missing, extra and huge fields, truncated or corrupted bytes, hostile headers) sent to every
//! command endpoint through the real router. Never a 5xx, never a panic; every refusal is problem+json; and
//! whatever was accepted still folds: the views catch up with the log afterwards.

#[allow(dead_code)]
#[path = "router/support.rs"]
mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rectify_tests::json::{at_path, paths};
use serde_json::{Value, json};
use support::*;

/// Every command endpoint (and the bulletin) with a valid body.
const ENDPOINTS: [&str; 14] = [
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
    "bulletins",
];

fn valid_body(endpoint: &str) -> Value {
    match endpoint {
        "problems" => report_body(COUNTY, GRID),
        "inspections" => inspection_body(COUNTY, GRID),
        "bulletins" => json!({"region": COUNTY, "title": "weekly dispatch"}),
        action => action_body(action),
    }
}

/// Values that break assumptions.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!("+262142-12-31T23:59:59Z")),
        Just(json!("-0001-01-01T00:00:00Z")),
        Just(json!("1970-01-01T00:00:00Z")),
        Just(json!("2021-02-30T00:00:00+25:00")),
        Just(json!("\u{0}\u{202e}\u{feff}")),
        Just(json!("x".repeat(70_000))),
        Just(json!("[".repeat(40) + &"]".repeat(40))),
        Just(serde_json::from_str::<Value>(&("[".repeat(100) + &"]".repeat(100))).unwrap()),
        Just(json!({"kind": "penalty", "amount_fen": u64::MAX})),
        Just(json!({"kind": "daily_penalty", "days": u32::MAX, "amount_fen": i64::MAX})),
        Just(json!([{"sha256": "ab".repeat(32), "media_type": "image/jpeg", "uri": "javascript:alert(1)"}])),
        "\\PC{0,40}".prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
    ]
}

/// One change to a body.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(prop::sample::Index, Value),
    Remove(prop::sample::Index),
    AddField(prop::sample::Index, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        5 => (any::<prop::sample::Index>(), hostile_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => (any::<prop::sample::Index>(), "[a-z_]{1,12}", hostile_value()).prop_map(|(i, k, v)| Mutation::AddField(i, k, v)),
    ]
}

fn apply(value: &mut Value, mutation: &Mutation) {
    let all = paths(value);
    match mutation {
        Mutation::Replace(at, new) => *at_path(value, at.get(all.as_slice()).as_slice()) = new.clone(),
        Mutation::Remove(at) => {
            if let Some((last, parent)) = at.get(all.as_slice()).split_last() {
                match at_path(value, parent) {
                    Value::Object(map) => drop(map.remove(last)),
                    Value::Array(items) => drop(items.remove(last.parse::<usize>().expect("an index"))),
                    _ => {}
                }
            }
        }
        Mutation::AddField(at, key, new) => {
            if let Value::Object(map) = at_path(value, at.get(all.as_slice()).as_slice()) {
                map.insert(key.clone(), new.clone());
            }
        }
    }
}

/// How the serialized body is damaged after the JSON mutations, if at all.
#[derive(Debug, Clone)]
enum Bytes {
    Intact,
    Truncated(prop::sample::Index),
    Overwritten(prop::sample::Index, u8),
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        6 => Just(Bytes::Intact),
        1 => any::<prop::sample::Index>().prop_map(Bytes::Truncated),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Bytes::Overwritten(i, b)),
    ]
}

/// Hostile values for the command headers (`None`: header absent).
fn header_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some("\"18446744073709551615\"".to_owned())),
        1 => Just(Some("W/\"-1\"".to_owned())),
        1 => Just(Some("overdue:P520102-x:v1".to_owned())),
        1 => "[ -~]{0,200}".prop_map(Some),
    ]
}

#[test]
fn mutated_bodies_of_every_command_never_get_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = runtime.block_on(App::start());
    // One problem per action, brought into the state its action needs; mutations that are accepted move it on,
    // and later cases then meet other states, which is fine: every state must refuse cleanly.
    let mut targets = Vec::new();
    for endpoint in ENDPOINTS {
        let path = match endpoint {
            "problems" | "inspections" | "bulletins" => format!("/api/v1/{endpoint}"),
            action => {
                let built = runtime.block_on(app.problem_for(action, COUNTY, GRID, "tok_nobody"));
                command_path(action, &built.id)
            }
        };
        targets.push((path, valid_body(endpoint)));
    }
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1500);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (
        any::<prop::sample::Index>(),
        proptest::collection::vec(mutation(), 0..4),
        bytes(),
        header_value(),
        header_value(),
    );
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let result = runner.run(&strategy, |(which, mutations, damage, key, if_match)| {
        let (path, valid) = which.get(&targets);
        let mut body = valid.clone();
        for m in &mutations {
            apply(&mut body, m);
        }
        let mut raw = serde_json::to_vec(&body).unwrap();
        match damage {
            Bytes::Intact => {}
            Bytes::Truncated(at) => raw.truncate(at.index(raw.len())),
            Bytes::Overwritten(at, b) => {
                let i = at.index(raw.len());
                raw[i] = b;
            }
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key.as_deref() {
            request = request.header("Idempotency-Key", k);
        }
        if let Some(m) = if_match.as_deref() {
            request = request.header("If-Match", m);
        }
        let Ok(request) = request.body(Body::from(raw)) else {
            return Ok(()); // a header value the HTTP library itself refuses never reaches the service
        };
        let reply = runtime.block_on(app.send(request));
        *statuses.lock().unwrap().entry(reply.status.as_u16()).or_default() += 1;
        let shown = || {
            format!(
                "{path} {}: {}",
                serde_json::to_string(&body).unwrap().chars().take(300).collect::<String>(),
                reply.text()
            )
        };
        if reply.status.is_server_error() {
            return Err(TestCaseError::fail(format!("{} for {}", reply.status, shown())));
        }
        if !reply.status.is_success() {
            prop_assert_eq!(reply.content_type(), "application/problem+json", "{}", shown());
            let problem = reply.json();
            prop_assert_eq!(&problem["status"], &json!(reply.status.as_u16()), "{}", shown());
            prop_assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", shown());
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let statuses = statuses.into_inner().unwrap();
    eprintln!("answers by status: {statuses:?}");
    assert!(statuses.keys().any(|s| *s < 300), "some mutated bodies are still valid and accepted");
    // Everything accepted folds into the views: the projector is alive and caught up.
    let head = runtime.block_on(app.head());
    let reply = runtime.block_on(app.get(&format!("/api/v1/stats/summary?wait_for={head}"), &app.admin));
    assert_eq!(reply.status, StatusCode::OK, "the views did not catch up: {}", reply.text());
    runtime.block_on(app.stop());
}
