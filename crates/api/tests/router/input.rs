//! Hostile and malformed input on every command endpoint: each is refused with the right status, as
//! problem+json naming the field at fault, never a 500, and nothing is appended to the log.

use crate::support::*;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Value, json};

/// What a refusal must say about `field`.
#[derive(Debug, Clone)]
enum Field {
    Absent,
    Named(String),
}

/// One hostile request against one endpoint.
struct Case {
    label: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Vec<u8>,
    status: StatusCode,
    field: Field,
}

impl Case {
    fn json(label: impl Into<String>, body: &Value, status: StatusCode, field: Field) -> Case {
        Case::raw(label, serde_json::to_vec(body).unwrap(), status, field)
    }

    fn raw(label: impl Into<String>, body: impl Into<Vec<u8>>, status: StatusCode, field: Field) -> Case {
        Case {
            label: label.into(),
            content_type: Some("application/json"),
            headers: vec![],
            body: body.into(),
            status,
            field,
        }
    }

    /// A 422 naming `field`.
    fn invalid(label: impl Into<String>, body: &Value, field: &str) -> Case {
        Case::json(label, body, StatusCode::UNPROCESSABLE_ENTITY, named(field))
    }
}

fn named(field: &str) -> Field {
    Field::Named(field.to_owned())
}

/// `body` with the value at JSON pointer `at` set (the parent must exist).
fn set(mut body: Value, at: &str, value: Value) -> Value {
    let (parent, key) = at.rsplit_once('/').expect("a pointer");
    match body.pointer_mut(parent).expect("the parent exists") {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => {
            let at: usize = key.parse().expect("an index");
            if at == items.len() { items.push(value) } else { items[at] = value }
        }
        other => panic!("cannot set {at} in {other}"),
    }
    body
}

/// `body` without the value at JSON pointer `at`.
fn without(mut body: Value, at: &str) -> Value {
    let (parent, key) = at.rsplit_once('/').expect("a pointer");
    body.pointer_mut(parent).and_then(Value::as_object_mut).expect("an object").remove(key);
    body
}

/// The fields of an endpoint's body: (name, required).
fn fields(endpoint: &str) -> &'static [(&'static str, bool)] {
    match endpoint {
        "problems" => &[
            ("region", true),
            ("grid", true),
            ("sector", true),
            ("source", true),
            ("severity", true),
            ("description", true),
            ("discovered_at", true),
            ("inspection", false),
        ],
        "inspections" => &[
            ("region", true),
            ("grid", true),
            ("sector", true),
            ("source", true),
            ("inspected_at", true),
            ("problems_found", false),
            ("notes", false),
        ],
        "deadline" => &[("class", true), ("due", true), ("occurred_at", false)],
        "assignment" => &[("unit", true), ("person", false), ("actor_id", false), ("occurred_at", false)],
        "progress" => &[("note", true), ("evidence", false), ("occurred_at", false)],
        "extension" => &[("reason", true), ("due", true), ("occurred_at", false)],
        "extension-decision" => &[("decision", true), ("comment", false), ("occurred_at", false)],
        "submission" => &[("summary", true), ("evidence", true), ("occurred_at", false)],
        "acceptance" => &[("decision", true), ("comment", false), ("occurred_at", false)],
        "reopen" => &[("reason", true), ("due", false), ("occurred_at", false)],
        "void" => &[("reason", true), ("occurred_at", false)],
        "supervision" => &[("decision", true), ("reason", true), ("occurred_at", false)],
        "enforcement" => &[("measure", true), ("case_no", false), ("note", false), ("occurred_at", false)],
        other => panic!("no endpoint {other}"),
    }
}

/// The business-time field of an endpoint's body.
fn time_field(endpoint: &str) -> &'static str {
    match endpoint {
        "problems" => "discovered_at",
        "inspections" => "inspected_at",
        _ => "occurred_at",
    }
}

fn valid_body(endpoint: &str) -> Value {
    match endpoint {
        "problems" => report_body(COUNTY, GRID),
        "inspections" => inspection_body(COUNTY, GRID),
        action => action_body(action),
    }
}

/// The cases every endpoint shares: syntax, media type, size, headers, shape of the body.
fn common_cases(endpoint: &str) -> Vec<Case> {
    let valid = valid_body(endpoint);
    let valid_bytes = serde_json::to_vec(&valid).unwrap();
    let bad = StatusCode::BAD_REQUEST;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let mut cases = vec![
        Case::raw("truncated JSON", &valid_bytes[..valid_bytes.len() / 2], bad, Field::Absent),
        Case::raw("not JSON at all", "region=520102&grid=x", bad, Field::Absent),
        Case::raw("empty body", "", bad, Field::Absent),
        Case::raw("single quotes", "{'reason': 'x'}", bad, Field::Absent),
        Case::raw("trailing garbage after a valid body", [&valid_bytes[..], b" {}"].concat(), bad, Field::Absent),
        Case::raw("NUL bytes", b"\0\0\0".to_vec(), bad, Field::Absent),
        Case::raw(
            "invalid UTF-8 in a string",
            [format!("{{\"{}\":\"", fields(endpoint)[0].0).as_bytes(), b"\xff\xfe\"}"].concat(),
            bad,
            Field::Absent,
        ),
        Case::json("an array instead of an object", &json!([valid.clone()]), unprocessable, Field::Absent),
        Case::raw(
            "a field given twice",
            {
                let (name, value) = valid.as_object().unwrap().iter().next().unwrap();
                let mut bytes = format!("{{\"{name}\":{value},").into_bytes();
                bytes.extend_from_slice(&valid_bytes[1..]);
                bytes
            },
            unprocessable,
            named(valid.as_object().unwrap().keys().next().unwrap()),
        ),
        Case::json("null instead of an object", &Value::Null, unprocessable, Field::Absent),
        Case::json("a string instead of an object", &json!("void"), unprocessable, Field::Absent),
        Case::json(
            "the values as a positional array",
            &Value::Array(valid.as_object().unwrap().values().cloned().collect()),
            unprocessable,
            Field::Absent,
        ),
        Case::invalid("an unknown field", &set(valid.clone(), "/admin", json!(true)), "admin"),
        Case::invalid(
            "an unknown field after valid ones",
            &set(valid.clone(), "/zzz_injected", json!("x")),
            "zzz_injected",
        ),
        Case::invalid(
            "a business time in the future",
            &set(valid.clone(), &format!("/{}", time_field(endpoint)), json!(days(1))),
            time_field(endpoint),
        ),
        Case::invalid(
            "a business time that is not a time",
            &set(valid.clone(), &format!("/{}", time_field(endpoint)), json!("yesterday")),
            time_field(endpoint),
        ),
    ];
    for (field, required) in fields(endpoint) {
        if *required {
            cases.push(Case::invalid(format!("missing {field}"), &without(valid.clone(), &format!("/{field}")), field));
            cases.push(Case::invalid(
                format!("null {field}"),
                &set(valid.clone(), &format!("/{field}"), Value::Null),
                field,
            ));
        }
        cases.push(Case::invalid(
            format!("boolean {field}"),
            &set(valid.clone(), &format!("/{field}"), json!(true)),
            field,
        ));
        // An object where a value belongs: structs report their first missing field instead.
        let at = match *field {
            "source" => "source.name",
            "measure" => "measure.kind",
            other => other,
        };
        cases.push(Case::invalid(
            format!("object {field}"),
            &set(valid.clone(), &format!("/{field}"), json!({"$ne": null})),
            at,
        ));
        cases.push(Case::invalid(
            format!("numeric {field}"),
            &set(valid.clone(), &format!("/{field}"), json!(-1)),
            field,
        ));
    }
    // Media type: the body is fine, its label is not.
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonx"), None] {
        cases.push(Case {
            label: format!("content-type {ct:?}"),
            content_type: ct,
            headers: vec![],
            body: valid_bytes.clone(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: Field::Absent,
        });
    }
    // Over 1 MiB, even as valid JSON.
    let mut huge = valid.clone();
    huge["description"] = json!("x".repeat(1 << 20));
    cases.push(Case::json("a body over 1 MiB", &huge, StatusCode::PAYLOAD_TOO_LARGE, Field::Absent));
    // Headers.
    for (name, value, label) in [
        ("if-match", HeaderValue::from_static("abc"), "If-Match not a number"),
        ("if-match", HeaderValue::from_static("\"-1\""), "If-Match negative"),
        ("if-match", HeaderValue::from_static("\"1.5\""), "If-Match fractional"),
        ("if-match", HeaderValue::from_static("\"99999999999999999999999\""), "If-Match overflowing"),
        ("if-match", HeaderValue::from_bytes("\"版本\"".as_bytes()).unwrap(), "If-Match not ASCII"),
        ("idempotency-key", HeaderValue::from_static(""), "empty Idempotency-Key"),
        ("idempotency-key", HeaderValue::from_str(&"k".repeat(129)).unwrap(), "Idempotency-Key too long"),
        ("idempotency-key", HeaderValue::from_static("a key"), "Idempotency-Key with a space"),
        ("idempotency-key", HeaderValue::from_bytes("键".as_bytes()).unwrap(), "Idempotency-Key not ASCII"),
        ("x-correlation-id", HeaderValue::from_bytes(b"\xff").unwrap(), "X-Correlation-Id not ASCII"),
    ] {
        let field = match name {
            "if-match" => "If-Match",
            "idempotency-key" => "Idempotency-Key",
            _ => "X-Correlation-Id",
        };
        cases.push(Case {
            label: label.into(),
            content_type: Some("application/json"),
            headers: vec![(name, value)],
            body: valid_bytes.clone(),
            status: bad,
            field: named(field),
        });
    }
    cases
}

/// Cases particular to one endpoint: enum values, nested fields, and the domain's own checks.
fn specific_cases(endpoint: &str) -> Vec<Case> {
    let v = valid_body(endpoint);
    let hash_cases = |v: &Value| {
        vec![
            Case::invalid("a short hash", &set(v.clone(), "/evidence/0/sha256", json!("abc")), "evidence.sha256"),
            Case::invalid(
                "an uppercase hash",
                &set(v.clone(), "/evidence/0/sha256", json!("AB".repeat(32))),
                "evidence.sha256",
            ),
            Case::invalid(
                "a hash that is not hex",
                &set(v.clone(), "/evidence/0/sha256", json!("zz".repeat(32))),
                "evidence.sha256",
            ),
            Case::invalid(
                "a hash of 65 digits",
                &set(v.clone(), "/evidence/0/sha256", json!(format!("{}a", "ab".repeat(32)))),
                "evidence.sha256",
            ),
            Case::invalid("a numeric hash", &set(v.clone(), "/evidence/0/sha256", json!(1234)), "evidence[0].sha256"),
            Case::invalid("evidence without a hash", &without(v.clone(), "/evidence/0/sha256"), "evidence[0].sha256"),
            Case::invalid(
                "second evidence without a uri",
                &set(v.clone(), "/evidence/1", json!({"sha256": "cd".repeat(32), "media_type": "image/png"})),
                "evidence[1].uri",
            ),
            Case::invalid(
                "a media type without a slash",
                &set(v.clone(), "/evidence/0/media_type", json!("jpeg")),
                "evidence.media_type",
            ),
            Case::invalid("a blank uri", &set(v.clone(), "/evidence/0/uri", json!(" ")), "evidence.uri"),
            Case::invalid("evidence not a list", &set(v.clone(), "/evidence", json!(evidence())), "evidence"),
        ]
    };
    let placement_cases = |v: &Value| {
        vec![
            Case::invalid("a prefecture as region", &set(v.clone(), "/region", json!("520100")), "region"),
            Case::invalid("a malformed region", &set(v.clone(), "/region", json!("52O1O2")), "region"),
            Case::invalid("a region outside the data", &set(v.clone(), "/region", json!("110101")), "region"),
            Case::invalid("a numeric region", &set(v.clone(), "/region", json!(520102)), "region"),
            Case::invalid("a grid of another county", &set(v.clone(), "/grid", json!(FAR_GRID)), "grid"),
            Case::invalid("an unknown grid", &set(v.clone(), "/grid", json!("520102-G9999")), "grid"),
            Case::invalid("an unknown sector", &set(v.clone(), "/sector", json!("nuclear")), "sector"),
            Case::invalid("a sector in the wrong case", &set(v.clone(), "/sector", json!("Baijiu")), "sector"),
            Case::invalid("a numeric source name", &set(v.clone(), "/source/name", json!(7)), "source.name"),
            Case::invalid("a source without a name", &set(v.clone(), "/source", json!({})), "source.name"),
            Case::invalid("a blank source name", &set(v.clone(), "/source/name", json!("  ")), "source.name"),
            Case::invalid(
                "a bad credit code",
                &set(v.clone(), "/source/credit_code", json!("91-520000")),
                "source.credit_code",
            ),
            Case::invalid("a source that is a string", &set(v.clone(), "/source", json!("Kailin")), "source"),
        ]
    };
    match endpoint {
        "problems" => {
            let mut cases = placement_cases(&v);
            cases.extend([
                Case::invalid("an unknown severity", &set(v.clone(), "/severity", json!("apocalyptic")), "severity"),
                Case::invalid("a blank description", &set(v.clone(), "/description", json!(" \n ")), "description"),
                Case::invalid(
                    "a description over 10000 bytes",
                    &set(v.clone(), "/description", json!("x".repeat(10_001))),
                    "description",
                ),
            ]);
            cases
        }
        "inspections" => {
            let mut cases = placement_cases(&v);
            cases.extend([
                Case::invalid(
                    "negative problems_found",
                    &set(v.clone(), "/problems_found", json!(-1)),
                    "problems_found",
                ),
                Case::invalid(
                    "problems_found over u32",
                    &set(v.clone(), "/problems_found", json!(1u64 << 33)),
                    "problems_found",
                ),
                Case::invalid(
                    "fractional problems_found",
                    &set(v.clone(), "/problems_found", json!(1.5)),
                    "problems_found",
                ),
            ]);
            cases
        }
        "deadline" => vec![
            Case::invalid("an unknown class", &set(v.clone(), "/class", json!("someday")), "class"),
            Case::invalid("a due date before discovery", &set(v.clone(), "/due", json!(days(-30))), "due"),
            Case::invalid("a due date without zone", &set(v.clone(), "/due", json!("2030-01-01T00:00:00")), "due"),
        ],
        "assignment" => vec![
            Case::invalid("a blank unit", &set(v.clone(), "/unit", json!("")), "unit"),
            Case::invalid("a numeric person", &set(v.clone(), "/person", json!(5)), "person"),
        ],
        "progress" => {
            let mut cases = hash_cases(&v);
            cases.push(Case::invalid("a blank note", &set(v.clone(), "/note", json!("")), "note"));
            cases
        }
        "extension" => vec![
            Case::invalid("a blank reason", &set(v.clone(), "/reason", json!(" ")), "reason"),
            Case::invalid("a due date earlier than the deadline", &set(v.clone(), "/due", json!(days(5))), "due"),
        ],
        "extension-decision" => vec![
            Case::invalid("an unknown decision", &set(v.clone(), "/decision", json!("maybe")), "decision"),
            Case::invalid("a rejection without comment", &json!({"decision": "reject"}), "comment"),
            Case::invalid(
                "a rejection with a blank comment",
                &json!({"decision": "reject", "comment": "  "}),
                "comment",
            ),
        ],
        "submission" => {
            let mut cases = hash_cases(&v);
            cases.extend([
                Case::invalid("no evidence", &set(v.clone(), "/evidence", json!([])), "evidence"),
                Case::invalid("a blank summary", &set(v.clone(), "/summary", json!("")), "summary"),
            ]);
            cases
        }
        "acceptance" => vec![
            Case::invalid("an unknown decision", &set(v.clone(), "/decision", json!("ACCEPT")), "decision"),
            Case::invalid("a rejection without comment", &json!({"decision": "reject"}), "comment"),
            Case::invalid("a rejection with a blank comment", &json!({"decision": "reject", "comment": ""}), "comment"),
        ],
        "reopen" => vec![
            Case::invalid("a blank reason", &set(v.clone(), "/reason", json!("")), "reason"),
            Case::invalid("a new deadline in the past", &set(v.clone(), "/due", json!(days(-1))), "due"),
        ],
        "void" => vec![Case::invalid("a blank reason", &set(v.clone(), "/reason", json!("\t")), "reason")],
        "supervision" => vec![
            Case::invalid("an unknown decision", &set(v.clone(), "/decision", json!("escalate")), "decision"),
            Case::invalid("a blank reason", &set(v.clone(), "/reason", json!("")), "reason"),
        ],
        "enforcement" => vec![
            Case::invalid("an unknown measure", &set(v.clone(), "/measure/kind", json!("fine")), "measure.kind"),
            Case::invalid(
                "a measure without kind",
                &set(v.clone(), "/measure", json!({"amount_fen": 1})),
                "measure.kind",
            ),
            Case::invalid(
                "a penalty without amount",
                &set(v.clone(), "/measure", json!({"kind": "penalty"})),
                "measure.amount_fen",
            ),
            // The measure is internally tagged, so serde reports a bad amount at the measure itself.
            Case::invalid(
                "an amount as a string",
                &set(v.clone(), "/measure", json!({"kind": "penalty", "amount_fen": "12"})),
                "measure",
            ),
            Case::invalid(
                "a fractional amount (money is integer fen)",
                &set(v.clone(), "/measure", json!({"kind": "penalty", "amount_fen": 99.5})),
                "measure",
            ),
            Case::invalid(
                "a negative amount",
                &set(v.clone(), "/measure", json!({"kind": "penalty", "amount_fen": -100})),
                "measure",
            ),
            Case::invalid(
                "a zero penalty",
                &set(v.clone(), "/measure", json!({"kind": "penalty", "amount_fen": 0})),
                "measure.amount_fen",
            ),
            Case::invalid(
                "a daily penalty of zero days",
                &set(v.clone(), "/measure", json!({"kind": "daily_penalty", "days": 0, "amount_fen": 100})),
                "measure.days",
            ),
            Case::invalid("a measure that is a string", &set(v.clone(), "/measure", json!("penalty")), "measure"),
            Case::invalid(
                "a penalty over ¥10 billion",
                &set(v.clone(), "/measure", json!({"kind": "penalty", "amount_fen": 1_000_000_000_001u64})),
                "measure.amount_fen",
            ),
            Case::invalid(
                "a daily penalty of u64::MAX fen",
                &set(v.clone(), "/measure", json!({"kind": "daily_penalty", "days": 3, "amount_fen": u64::MAX})),
                "measure.amount_fen",
            ),
        ],
        other => panic!("no endpoint {other}"),
    }
}

fn request(path: &str, token: &str, case: &Case) -> Request<Body> {
    let mut b =
        Request::builder().method(Method::POST).uri(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(ct) = case.content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    for (name, value) in &case.headers {
        b = b.header(*name, value.clone());
    }
    b.body(Body::from(case.body.clone())).unwrap()
}

/// Checks one refusal: status, problem+json shape, the field, and that nothing was appended.
async fn expect_refused(app: &App, path: &str, token: &str, case: &Case, head: u64) {
    let label = &case.label;
    let reply = app.send(request(path, token, case)).await;
    assert_eq!(reply.status, case.status, "{path}: {label}: {}", reply.text());
    assert_eq!(reply.content_type(), "application/problem+json", "{path}: {label}: {}", reply.text());
    let p: Value = serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{path}: {label}: {e}"));
    for key in ["type", "title", "detail"] {
        assert!(p[key].as_str().is_some_and(|s| !s.is_empty()), "{path}: {label}: `{key}` in {p}");
    }
    assert_eq!(p["status"], case.status.as_u16(), "{path}: {label}: {p}");
    match &case.field {
        Field::Absent => assert!(p.get("field").is_none(), "{path}: {label}: {p}"),
        Field::Named(f) => assert_eq!(p["field"], f.as_str(), "{path}: {label}: {p}"),
    }
    assert_eq!(app.head().await, head, "{path}: {label}: a refused command appended to the log");
}

/// Runs every hostile case against `endpoint` on a problem in the state the endpoint needs, then checks
/// that the valid body is accepted as the very next commit.
async fn hostile(endpoint: &str) {
    let app = App::start().await;
    let target = match endpoint {
        "problems" | "inspections" => String::new(),
        action => app.problem_for(action, COUNTY, GRID, "tok_nobody").await.id,
    };
    let path = command_path(endpoint, &target);
    // Not the admin: the admin reported the problem and may not decide on it.
    let token = app.token(rectify_domain::Role::Province, "520000", None);
    let head = app.head().await;
    let cases: Vec<Case> = common_cases(endpoint).into_iter().chain(specific_cases(endpoint)).collect();
    for case in &cases {
        expect_refused(&app, &path, &token, case, head).await;
    }
    if endpoint != "problems" && endpoint != "inspections" {
        // Ids that name no problem, or nothing at all.
        let inspection = app.post("/api/v1/inspections", &app.admin, &inspection_body(COUNTY, GRID)).await.ok();
        let inspection_id = inspection["id"].as_str().unwrap().to_owned();
        let head = app.head().await;
        let valid = Case::json("valid body", &valid_body(endpoint), StatusCode::NOT_FOUND, Field::Absent);
        for id in [
            "P520102-01NOSUCHPROBLEM",
            "P529999-01NOSUCHCOUNTY",
            "not-an-id",
            "P520102-",
            "P520100-abc",
            "P520102-a.b",
            "P520102-%2A",
            "p520102-abc",
            inspection_id.as_str(),
            &format!("{target}x"),
        ] {
            expect_refused(&app, &command_path(endpoint, id), &token, &valid, head).await;
        }
    }
    // The same endpoint takes the valid body as the next commit: the refusals were about the input alone.
    let head = app.head().await;
    let reply = app.post(&path, &token, &valid_body(endpoint)).await;
    assert_eq!(reply.position(), head + 1, "{path}: {}", reply.text());
    app.stop().await;
}

#[tokio::test]
async fn report_problem() {
    hostile("problems").await;
}

#[tokio::test]
async fn record_inspection() {
    hostile("inspections").await;
}

#[tokio::test]
async fn deadline() {
    hostile("deadline").await;
}

#[tokio::test]
async fn assignment() {
    hostile("assignment").await;
}

#[tokio::test]
async fn progress() {
    hostile("progress").await;
}

#[tokio::test]
async fn extension() {
    hostile("extension").await;
}

#[tokio::test]
async fn extension_decision() {
    hostile("extension-decision").await;
}

#[tokio::test]
async fn submission() {
    hostile("submission").await;
}

#[tokio::test]
async fn acceptance() {
    hostile("acceptance").await;
}

#[tokio::test]
async fn reopen() {
    hostile("reopen").await;
}

#[tokio::test]
async fn void() {
    hostile("void").await;
}

#[tokio::test]
async fn supervision() {
    hostile("supervision").await;
}

#[tokio::test]
async fn enforcement() {
    hostile("enforcement").await;
}

/// Penalties are summed into the statistics (i64 fen): an amount that cannot be summed used to panic the
/// projector (overflow), which then stopped applying the log. They are refused at the door; the largest
/// accepted fine is summed exactly.
#[tokio::test]
async fn penalty_amounts_that_would_overflow_the_totals_are_refused() {
    let app = App::start().await;
    let a = app.problem_for("enforcement", COUNTY, GRID, "tok_nobody").await;
    let path = command_path("enforcement", &a.id);
    let head = app.head().await;
    for amount in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX, 1_000_000_000_001] {
        for kind in ["penalty", "daily_penalty"] {
            let body = json!({"measure": {"kind": kind, "days": 2, "amount_fen": amount}});
            let body = if kind == "penalty" { without(body, "/measure/days") } else { body };
            app.post(&path, &app.admin, &body).await.invalid(StatusCode::UNPROCESSABLE_ENTITY, "measure.amount_fen");
        }
    }
    assert_eq!(app.head().await, head);
    let max = json!({"measure": {"kind": "penalty", "amount_fen": 1_000_000_000_000u64}});
    app.post(&path, &app.admin, &max).await.position();
    let last = app.post(&path, &app.admin, &max).await.position();
    let summary = app.get(&format!("/api/v1/stats/summary?region={COUNTY}&wait_for={last}"), &app.admin).await.ok();
    assert_eq!(summary["penalty_fen"], 2_000_000_000_000u64, "{summary}");
    assert_eq!(summary["penalties"], 2, "{summary}");
    app.stop().await;
}
