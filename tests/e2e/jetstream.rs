//! The service on NATS JetStream, against a real nats-server started for each test.

use crate::api::{Answer, report_body, send, submission_body};
use crate::app::App;
use futures::StreamExt;
use rectify_tests::NatsServer;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";

/// Every message on the stream, as (subject, decoded JSON), read by an independent client.
async fn stream_messages(url: &str) -> Vec<(String, Value)> {
    let client = async_nats::connect(url).await.expect("independent client connects");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("RECTIFY_EVENTS").await.expect("stream exists");
    let last = stream.info().await.expect("stream info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let msg = stream.get_raw_message(seq).await.expect("message by sequence");
        out.push((msg.subject.to_string(), serde_json::from_slice(&msg.payload).expect("a commit is JSON")));
    }
    out
}

async fn post(app: &App, path: &str, token: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
    send(app, Method::POST, path, Some(token), Some(body), headers).await
}

#[tokio::test]
async fn lifecycle_on_jetstream_and_events_on_documented_subjects() {
    let nats = NatsServer::start();
    let app = App::start_nats(&nats.url());
    crate::lifecycle::lifecycle(&app).await;

    let messages = stream_messages(&nats.url()).await;
    assert!(messages.len() >= 7, "the lifecycle appended its commands: {}", messages.len());
    for (subject, commit) in &messages {
        let first = &commit["events"][0];
        let id = first["stream"].as_str().expect("stream id");
        let county = &id[1..7];
        let prefecture = format!("{}00", &county[..4]);
        assert_eq!(subject, &format!("rectify.events.{prefecture}.{county}.{id}"));
    }
}

#[tokio::test]
async fn conflicting_writers_get_one_winner_per_version() {
    let nats = NatsServer::start();
    let app = App::start_nats(&nats.url());
    let token = app.token("county_bureau", Some(COUNTY), None);
    let id = post(&app, "/api/v1/problems", &token, report_body(COUNTY, GRID), &[]).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/problems/{id}/progress");
    for version in 1..=5u64 {
        let if_match = format!("\"{version}\"");
        let answers = futures::future::join_all((0..20).map(|i| {
            let body = json!({"note": format!("writer {i}")});
            let headers = [("If-Match", if_match.as_str())];
            let (app, path, token) = (&app, &path, &token);
            async move { post(app, path, token, body, &headers).await }
        }))
        .await;
        let mut by_status: HashMap<u16, usize> = HashMap::new();
        for a in &answers {
            *by_status.entry(a.status.as_u16()).or_default() += 1;
            if a.status == 409 {
                assert_eq!(a.content_type, "application/problem+json");
            }
        }
        assert_eq!(by_status.get(&200), Some(&1), "version {version}: {by_status:?}");
        assert_eq!(by_status.get(&409), Some(&19), "version {version}: {by_status:?}");
    }
    let messages = stream_messages(&nats.url()).await;
    assert_eq!(messages.len(), 6, "one report and one progress per version");
}

#[tokio::test]
async fn a_thousand_retries_of_one_key_append_one_message() {
    let nats = NatsServer::start();
    let app = App::start_nats(&nats.url());
    let token = app.token("county_bureau", Some(COUNTY), None);
    let id = post(&app, "/api/v1/problems", &token, report_body(COUNTY, GRID), &[]).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        &app,
        &format!("/api/v1/problems/{id}/deadline"),
        &token,
        json!({"class": "immediate", "due": "2021-05-01T00:00:00Z"}),
        &[],
    )
    .await
    .expect(200);
    let path = format!("/api/v1/problems/{id}/submission");
    let headers = [("Idempotency-Key", "retry-me")];
    let answers: Vec<Value> = futures::stream::iter(0..1000)
        .map(|_| {
            let (app, path, token) = (&app, &path, &token);
            async move { post(app, path, token, submission_body(), &headers).await.expect(200) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(answers.iter().all(|a| *a == answers[0]), "every retry gets the first answer");
    assert_eq!(answers[0]["version"], 3);
    let messages = stream_messages(&nats.url()).await;
    assert_eq!(messages.len(), 3, "report, deadline and exactly one submission");
}

/// Each 2xx answer of the load: (problem id, version, position).
type Acked = (String, u64, u64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_nats_mid_load_loses_and_doubles_nothing() {
    let mut nats = NatsServer::start();
    let mut app = App::start_nats(&nats.url());
    let token = app.token("province", None, None);

    // Clients keep reporting problems and setting deadlines, retrying each command with its key after a
    // failure, until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Acked>::new()));
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (url, token, stop, acked, failures) =
                (app.url.clone(), token.clone(), stop.clone(), acked.clone(), failures.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let key = format!("load-{c}-{n}");
                    // Up to 50 tries of the same command with the same key: a retried command never doubles.
                    for _ in 0..50 {
                        let res = http
                            .post(format!("{url}/api/v1/problems"))
                            .bearer_auth(&token)
                            .header("Idempotency-Key", &key)
                            .json(&report_body(COUNTY, GRID))
                            .send()
                            .await;
                        match res {
                            Ok(r) if r.status().is_success() => {
                                let v: Value = r.json().await.unwrap();
                                acked.lock().unwrap().push((
                                    v["id"].as_str().unwrap().to_owned(),
                                    v["version"].as_u64().unwrap(),
                                    v["position"].as_u64().unwrap(),
                                ));
                                break;
                            }
                            Ok(r) => {
                                assert_eq!(r.status(), 503, "only unavailability is expected");
                                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                            Err(e) => panic!("the service itself must not fail: {e}"),
                        }
                    }
                }
            })
        })
        .collect();

    let wait_for_acks = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            while acked.lock().unwrap().len() < n {
                assert!(tokio::time::Instant::now() < deadline, "load stalled below {n} acks");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_acks(200).await;
    nats.stop(); // SIGKILL
    let during = failures.load(std::sync::atomic::Ordering::Relaxed);
    let before_restart = acked.lock().unwrap().len();
    // Let clients hit the dead server for a moment, then bring it back.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while failures.load(std::sync::atomic::Ordering::Relaxed) < during + 8 {
        assert!(tokio::time::Instant::now() < deadline, "no client noticed the server was gone");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Views keep being served while the log is gone.
    send(&app, Method::GET, "/api/v1/stats/summary", Some(&token), None, &[]).await.expect(200);
    nats.restart();
    wait_for_acks(before_restart + 200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    // Every acknowledged command is on the stream exactly once.
    let acked = acked.lock().unwrap().clone();
    let messages = stream_messages(&nats.url()).await;
    let mut seen = HashSet::new();
    for (_, commit) in &messages {
        let first = &commit["events"][0];
        assert!(seen.insert(first["command_id"].as_str().unwrap().to_owned()), "a command was appended twice");
    }
    let on_stream: HashSet<(String, u64)> = messages
        .iter()
        .flat_map(|(_, c)| c["events"].as_array().unwrap().iter())
        .map(|e| (e["stream"].as_str().unwrap().to_owned(), e["version"].as_u64().unwrap()))
        .collect();
    for (id, version, _) in &acked {
        assert!(on_stream.contains(&(id.clone(), *version)), "acknowledged {id} v{version} is missing");
    }

    // The views caught up with everything, and equal a rebuild from the stream.
    let max = acked.iter().map(|a| a.2).max().unwrap();
    let summary = send(&app, Method::GET, &format!("/api/v1/stats/summary?wait_for={max}"), Some(&token), None, &[])
        .await
        .expect(200);
    assert_eq!(summary["found"].as_u64().unwrap() as usize, messages.len());
    app.kill();
    let check = std::process::Command::new(crate::app::binary())
        .args(["rebuild", "--check", "--nats", &nats.url(), "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "views differ from a rebuild: {}", String::from_utf8_lossy(&check.stderr));
}
