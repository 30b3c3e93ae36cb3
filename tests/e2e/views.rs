//! The read side as dashboards see it: the live SSE feed, the NATS change subject, Prometheus gauges, the
//! statistics endpoints, and the deadline watcher running in several instances.

use crate::api::{report_body, send};
use crate::app::App;
use futures::StreamExt;
use rectify_tests::NatsServer;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";

async fn report(app: &App, token: &str) -> Value {
    send(app, Method::POST, "/api/v1/problems", Some(token), Some(report_body(COUNTY, GRID)), &[]).await.expect(201)
}

#[tokio::test]
async fn an_sse_client_sees_the_counter_change_within_a_second() {
    let app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let public = app.token("public", None, None);
    let res = app.http.get(app.at("/api/v1/stream")).bearer_auth(&public).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = res.bytes_stream();
    // The feed greets first, so the subscription is in place before the command is sent.
    let mut buffer = String::new();
    while !buffer.contains("event: hello") {
        buffer.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    let sent = Instant::now();
    let position = report(&app, &token).await["position"].as_u64().unwrap();
    let wanted = format!("\"{COUNTY}|*\"");
    let seen = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let chunk = body.next().await.expect("feed open").unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            let hit = buffer.split("\n\n").filter(|e| e.contains("event: changed")).find_map(|e| {
                let data: Value = serde_json::from_str(e.split("data: ").nth(1)?.trim()).ok()?;
                (data["position"].as_u64()? >= position && e.contains(&wanted)).then_some(data)
            });
            if let Some(data) = hit {
                return data;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no change event for position {position} within a second; got {buffer}"));
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(seen["problems"], json!([]), "the public role sees counters, not problem ids");
}

#[tokio::test]
async fn statistics_and_gauges_follow_the_commands() {
    let app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let public = app.token("public", None, None);
    let id = report(&app, &token).await["id"].as_str().unwrap().to_owned();
    let path = |a: &str| format!("/api/v1/problems/{id}/{a}");
    let post = |p: String, body: Value| {
        let (app, token) = (&app, &token);
        async move { send(app, Method::POST, &p, Some(token), Some(body), &[]).await.expect(200) }
    };
    post(
        path("enforcement"),
        json!({"measure": {"kind": "penalty", "amount_fen": 12_345_600}, "case_no": "黔环罚〔2021〕1号"}),
    )
    .await;
    // Listing for joint supervision (挂牌督办) is for the city and the province.
    let city = app.token("city_bureau", Some("520100"), None);
    let listing = json!({"decision": "list", "reason": "serious"});
    send(&app, Method::POST, &path("supervision"), Some(&city), Some(listing), &[]).await.expect(200);
    let last = post(path("enforcement"), json!({"measure": {"kind": "criminal_referral"}})).await;
    let pos = last["position"].as_u64().unwrap();
    let get = |p: String| {
        let (app, public) = (&app, &public);
        async move { send(app, Method::GET, &p, Some(public), None, &[]).await.expect(200) }
    };

    let e = get(format!("/api/v1/stats/enforcement?region=520100&wait_for={pos}")).await;
    let penalty = e["measures"].as_array().unwrap().iter().find(|m| m["measure"] == "penalty").unwrap().clone();
    assert_eq!((penalty["cases"].as_i64(), penalty["amount_fen"].as_i64()), (Some(1), Some(12_345_600)));
    assert_eq!(e["total_fines_fen"], 12_345_600);

    let regions = get(format!("/api/v1/stats/regions?wait_for={pos}")).await;
    assert_eq!(regions["items"].as_array().unwrap().len(), 9, "nine prefectures");
    let guiyang = regions["items"].as_array().unwrap().iter().find(|r| r["region"] == "520100").unwrap().clone();
    assert_eq!((guiyang["found"].as_i64(), guiyang["listed"].as_i64()), (Some(1), Some(1)));

    let sectors = get(format!("/api/v1/stats/sectors?region={COUNTY}&wait_for={pos}")).await;
    let found: Vec<i64> = sectors["items"].as_array().unwrap().iter().map(|s| s["found"].as_i64().unwrap()).collect();
    assert_eq!(found.len(), 9);
    assert_eq!(found.iter().sum::<i64>(), 1);

    let grids = get(format!("/api/v1/stats/grids?region={COUNTY}&wait_for={pos}")).await;
    let g = grids["items"].as_array().unwrap().iter().find(|g| g["id"] == GRID).unwrap().clone();
    assert_eq!(g["open"], 1);
    assert!(g["officers"].as_u64().unwrap() >= 1);
    let trend = get(format!("/api/v1/stats/trend?wait_for={pos}")).await;
    assert_eq!(trend["items"], json!([{"month": "2021-04", "found": 1, "fixed": 0}]));

    let metrics = app.http.get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rectify_problems_found{region=\"520000\"} 1"), "{metrics}");
    assert!(metrics.contains("rectify_enforcement_fines_fen{region=\"520100\"} 12345600"), "{metrics}");
    assert!(metrics.contains("rectify_enforcement_referrals{region=\"520100\"} 1"), "{metrics}");
}

/// The deadline watcher's completed sweeps, from `/metrics`.
async fn sweeps(app: &App) -> u64 {
    let text = app.http.get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("rectify_watcher_sweeps_total ")).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_views_change_subject_and_one_overdue_event_with_two_instances() {
    let nats = NatsServer::start();
    let a = App::spawn_with(&["--nats", &nats.url(), "--overdue-interval", "1"]);
    let b = App::spawn_with(&["--nats", &nats.url(), "--overdue-interval", "1"]);
    let token = a.token("county_bureau", Some(COUNTY), None);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut changes = client.subscribe("rectify.views.changed").await.unwrap();
    // A request on the same connection returns after the server has registered the subscription.
    client.request("$JS.API.STREAM.NAMES", "".into()).await.unwrap();

    let created = report(&a, &token).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let notice = tokio::time::timeout(Duration::from_secs(10), changes.next()).await.expect("a notice").unwrap();
    let notice: Value = serde_json::from_slice(&notice.payload).unwrap();
    assert!(notice["position"].as_u64().unwrap() >= created["position"].as_u64().unwrap());

    // A deadline that has already passed: both instances' watchers will want to mark it.
    send(
        &a,
        Method::POST,
        &format!("/api/v1/problems/{id}/deadline"),
        Some(&token),
        Some(json!({"class": "time_limited", "due": "2021-05-01T00:00:00Z"})),
        &[],
    )
    .await
    .expect(200);
    let b_token = b.token("county_bureau", Some(COUNTY), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = send(&b, Method::GET, &format!("/api/v1/problems/{id}"), Some(&b_token), None, &[]).await.expect(200);
        if p["overdue"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the problem was never marked overdue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let both watchers sweep twice more after the mark, then count the overdue events on the stream.
    let (sa, sb) = (sweeps(&a).await, sweeps(&b).await);
    while sweeps(&a).await < sa + 2 || sweeps(&b).await < sb + 2 {
        assert!(Instant::now() < deadline + Duration::from_secs(30), "watchers stopped sweeping");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history =
        send(&a, Method::GET, &format!("/api/v1/problems/{id}/events"), Some(&token), None, &[]).await.expect(200);
    let overdue = history
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["events"].as_array().unwrap().iter())
        .filter(|e| e["event"]["type"] == "problem_overdue")
        .count();
    assert_eq!(overdue, 1, "exactly one overdue event with two watchers: {history:#}");
    let pos = history.as_array().unwrap().last().unwrap()["position"].as_u64().unwrap();
    let s = send(
        &b,
        Method::GET,
        &format!("/api/v1/stats/summary?region={COUNTY}&wait_for={pos}"),
        Some(&b_token),
        None,
        &[],
    )
    .await
    .expect(200);
    assert_eq!(s["overdue"], 1);
}
