//! Scale-out on a 3-node JetStream cluster (nats-server 2.15.1, `deploy/cluster/*.conf`, stream with 3
//! replicas): two `rectify serve` processes, each with its own projector and views, share the stream.
//!
//! Every fault test ends the same way: every command answered 2xx is on the stream exactly once (by its
//! command id, at the position it was answered with), and each process's views equal a rebuild from the
//! stream (`rectify rebuild --check`).

use crate::api::{report_body, send, submission_body};
use crate::app::App;
use rectify_tests::NatsCluster;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";
const STREAM: &str = "RECTIFY_EVENTS";

/// `rectify serve` on the cluster with a replicated stream.
fn serve(nats: &NatsCluster, extra: &[&str]) -> App {
    let urls = nats.urls();
    let mut args = vec!["--nats", urls.as_str(), "--replicas", "3"];
    args.extend_from_slice(extra);
    App::spawn_with(&args)
}

/// Restarts a killed process on its data dir.
fn serve_again(nats: &NatsCluster, data_dir: &Path, extra: &[&str]) -> App {
    let urls = nats.urls();
    let mut args = vec!["--nats", urls.as_str(), "--replicas", "3"];
    args.extend_from_slice(extra);
    App::spawn(data_dir.to_owned(), None, &args)
}

/// A token made on the first process and valid on all: the token file is copied to every data dir, as a
/// deployment distributes it (the same actor behind every process, so a retry may go to any of them).
fn shared_token(apps: &[&App], role: &str, region: Option<&str>) -> String {
    let token = apps[0].token(role, region, None);
    for app in &apps[1..] {
        std::fs::copy(apps[0].data_dir.join("tokens.jsonl"), app.data_dir.join("tokens.jsonl")).unwrap();
    }
    token
}

/// Every message on the stream as (position, decoded commit), read by an independent client.
async fn stream_messages(nats: &NatsCluster) -> Vec<(u64, Value)> {
    let urls: Vec<String> = (0..nats.len()).filter(|i| nats.is_running(*i)).map(|i| nats.url(i)).collect();
    let client = async_nats::connect(urls).await.expect("independent client connects");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(STREAM).await.expect("stream exists");
    let info = stream.info().await.expect("stream info").clone();
    assert_eq!(info.config.num_replicas, 3, "the stream is replicated");
    let mut out = Vec::new();
    for seq in 1..=info.state.last_sequence {
        let msg = stream.get_raw_message(seq).await.expect("message by sequence");
        out.push((seq, serde_json::from_slice(&msg.payload).expect("a commit is JSON")));
    }
    out
}

/// The command id of a commit.
fn command_id(commit: &Value) -> &str {
    commit["events"][0]["command_id"].as_str().expect("an event has a command id")
}

/// One 2xx answer: the Idempotency-Key it was sent with and the answer.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    id: String,
    version: u64,
    position: u64,
}

/// Checks that every acknowledged command is on the stream exactly once, where it was answered to be, and
/// that no command is on it twice. Returns the stream.
async fn assert_exactly_once(nats: &NatsCluster, acked: &[Acked]) -> Vec<(u64, Value)> {
    let messages = stream_messages(nats).await;
    let mut by_key: HashMap<&str, Vec<(u64, &Value)>> = HashMap::new();
    for (position, commit) in &messages {
        by_key.entry(command_id(commit)).or_default().push((*position, commit));
    }
    let doubled: Vec<_> = by_key.iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| *k).collect();
    assert!(doubled.is_empty(), "commands appended more than once: {doubled:?}");
    for a in acked {
        let Some(found) = by_key.get(a.key.as_str()) else {
            panic!("acknowledged command {} ({} v{}) is not on the stream", a.key, a.id, a.version);
        };
        let (position, commit) = found[0];
        assert_eq!(position, a.position, "{} answered with another position", a.key);
        let last = commit["events"].as_array().unwrap().last().unwrap();
        assert_eq!((last["stream"].as_str().unwrap(), last["version"].as_u64().unwrap()), (a.id.as_str(), a.version));
    }
    messages
}

/// Waits until `app`'s views include `position`, then checks the number of problems found.
async fn assert_views_caught_up(app: &App, token: &str, position: u64, found: usize) {
    let summary = send(app, Method::GET, &format!("/api/v1/stats/summary?wait_for={position}"), Some(token), None, &[])
        .await
        .expect(200);
    assert_eq!(summary["found"].as_u64().unwrap() as usize, found, "{summary:#}");
}

/// Runs `rectify rebuild --check` on a stopped process's data dir: its views equal a fold of the stream.
fn assert_views_equal_a_rebuild(nats: &NatsCluster, data_dir: &Path) {
    let check = std::process::Command::new(crate::app::binary())
        .args(["rebuild", "--check", "--nats", &nats.urls(), "--replicas", "3", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "views differ from a rebuild: {}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("views match a rebuild"));
}

/// A client of every process: it sends each command until it gets a 2xx, with the same Idempotency-Key
/// every time, each try through the next process (as a load balancer retrying elsewhere would) after a 503,
/// a timeout or a refused connection.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
    token: Arc<str>,
    /// Tries that got no 2xx.
    failures: Arc<AtomicUsize>,
}

impl Client {
    fn new(urls: Vec<String>, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            urls: Arc::new(urls),
            token: token.into(),
            failures: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }

    /// POSTs `body` to `path` from process `first` on until acknowledged; `timeout(try)` bounds each try.
    async fn until_acked(
        &self,
        first: usize,
        path: &str,
        key: &str,
        body: &Value,
        timeout: impl Fn(usize) -> Duration,
    ) -> Acked {
        let deadline = Instant::now() + Duration::from_secs(120);
        for attempt in 0.. {
            assert!(Instant::now() < deadline, "{key} was never acknowledged");
            let url = &self.urls[(first + attempt) % self.urls.len()];
            let res = self
                .http
                .post(format!("{url}{path}"))
                .bearer_auth(&*self.token)
                .header("Idempotency-Key", key)
                .timeout(timeout(attempt))
                .json(body)
                .send()
                .await;
            let status = match res {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => {
                        return Acked {
                            key: key.to_owned(),
                            id: v["id"].as_str().unwrap().to_owned(),
                            version: v["version"].as_u64().unwrap(),
                            position: v["position"].as_u64().unwrap(),
                        };
                    }
                    // The answer was cut off (timeout while reading): as good as lost.
                    Err(_) => None,
                },
                Ok(r) => Some(r.status().as_u16()),
                // Timed out, refused or reset: the client cannot tell whether the command was applied.
                Err(_) => None,
            };
            if let Some(status) = status {
                assert!(matches!(status, 503 | 504), "{key}: only unavailability is expected, got {status}");
            }
            self.failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        unreachable!()
    }
}

/// Clients that keep reporting problems and setting their deadlines through every process, each command
/// retried with its key until acknowledged, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(tag: &str, urls: Vec<String>, token: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let client = Client::new(urls, token);
        let tasks = (0..clients)
            .map(|c| {
                let (tag, client, stop, acked) = (tag.to_owned(), client.clone(), stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let patient = |_| Duration::from_secs(30);
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("{tag}-{c}-{n}");
                        let report =
                            client.until_acked(c, "/api/v1/problems", &key, &report_body(COUNTY, GRID), patient).await;
                        let path = format!("/api/v1/problems/{}/deadline", report.id);
                        let body = json!({"class": "time_limited", "due": "2031-05-01T00:00:00Z"});
                        let deadline =
                            client.until_acked(c + 1, &path, &format!("{key}-deadline"), &body, patient).await;
                        acked.lock().unwrap().extend([report, deadline]);
                    }
                })
            })
            .collect();
        Load { stop, acked, client, tasks }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for_acks(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acked() < n {
            assert!(Instant::now() < deadline, "load stalled at {} of {n} acks", self.acked());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients after their current command; the acknowledged commands and the failed tries.
    async fn stop(self) -> (Vec<Acked>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load client failed");
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.client.failures())
    }
}

/// Runs a blocking harness call (a node restart waits for health) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_stream_leader_under_load_loses_and_doubles_nothing() {
    let mut nats = blocking(NatsCluster::start);
    let mut a = serve(&nats, &[]);
    let mut b = serve(&nats, &[]);
    let token = shared_token(&[&a, &b], "province", None);
    let load = Load::start("leader", vec![a.url.clone(), b.url.clone()], &token, 8);

    load.wait_for_acks(150).await;
    let leader = blocking(|| nats.stream_leader(STREAM));
    nats.kill(leader); // SIGKILL
    let at_kill = load.acked();
    // Commands go on under a newly elected leader, with the old one still dead.
    load.wait_for_acks(at_kill + 150).await;
    let next = blocking(|| nats.stream_leader(STREAM));
    assert_ne!(next, leader, "a new leader was elected");
    blocking(|| nats.restart(leader));
    let at_restart = load.acked();
    load.wait_for_acks(at_restart + 50).await;
    let (acked, _) = load.stop().await;

    let messages = assert_exactly_once(&nats, &acked).await;
    let reports = messages.iter().filter(|(_, c)| c["events"][0]["event"]["type"] == "problem_reported").count();
    let head = messages.len() as u64;
    for app in [&a, &b] {
        assert_views_caught_up(app, &token, head, reports).await;
    }
    // Stopped gracefully, every commit is sealed by the process that wrote it: the whole audit passes,
    // including the views of process a.
    a.terminate();
    b.terminate();
    let verify = std::process::Command::new(crate::app::binary())
        .args(["audit", "verify", "--nats", &nats.urls(), "--replicas", "3", "--data-dir"])
        .arg(&a.data_dir)
        .arg("--trust")
        .arg(b.data_dir.join("trust.json"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    for app in [&a, &b] {
        assert_views_equal_a_rebuild(&nats, &app.data_dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_api_process_mid_load_loses_and_doubles_nothing() {
    let nats = blocking(NatsCluster::start);
    let mut a = serve(&nats, &[]);
    let b = serve(&nats, &[]);
    let token = shared_token(&[&a, &b], "province", None);
    let load = Load::start("api", vec![a.url.clone(), b.url.clone()], &token, 8);

    load.wait_for_acks(150).await;
    a.kill(); // SIGKILL: requests in flight on a are lost to their clients, which retry on b.
    let at_kill = load.acked();
    load.wait_for_acks(at_kill + 150).await;
    let (acked, failures) = load.stop().await;
    assert!(failures > 0, "some clients saw a die");

    // a comes back on its data dir: its views catch up, and it seals what it appended before the kill.
    let data_dir = a.data_dir.clone();
    let keep = std::mem::replace(&mut a, serve_again(&nats, &data_dir, &[]));
    let messages = assert_exactly_once(&nats, &acked).await;
    let reports = messages.iter().filter(|(_, c)| c["events"][0]["event"]["type"] == "problem_reported").count();
    let head = messages.len() as u64;
    for app in [&a, &b] {
        assert_views_caught_up(app, &token, head, reports).await;
    }
    a.kill();
    drop(keep);
    drop(b);
    assert_views_equal_a_rebuild(&nats, &data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_retrying_after_timeouts_through_both_processes_gets_each_command_once() {
    let nats = blocking(NatsCluster::start);
    let a = serve(&nats, &[]);
    let b = serve(&nats, &[]);
    let token = shared_token(&[&a, &b], "province", None);
    let client = Client::new(vec![a.url.clone(), b.url.clone()], &token);
    // Each try gives up after 2 ms, 6 ms, 10 ms, …: far shorter than a replicated fsynced append at first, so
    // most commands are sent again while the first try is still being applied, through the other process.
    let impatient = |attempt: usize| Duration::from_millis(2 + 4 * attempt as u64);
    let lifecycles = futures::future::join_all((0..6).map(|c| {
        let client = &client;
        async move {
            let mut acked = Vec::new();
            for n in 0..4 {
                let key = format!("impatient-{c}-{n}");
                let report =
                    client.until_acked(c, "/api/v1/problems", &key, &report_body(COUNTY, GRID), impatient).await;
                let id = report.id.clone();
                acked.push(report);
                let steps = [
                    ("deadline", json!({"class": "time_limited", "due": "2031-05-01T00:00:00Z"})),
                    ("progress", json!({"note": "drainage dug"})),
                    ("submission", submission_body()),
                ];
                for (i, (action, body)) in steps.into_iter().enumerate() {
                    let path = format!("/api/v1/problems/{id}/{action}");
                    let key = format!("{key}-{action}");
                    let a = client.until_acked(c + i, &path, &key, &body, impatient).await;
                    assert_eq!(a.version, i as u64 + 2, "{key}: one version per command");
                    acked.push(a);
                }
            }
            acked
        }
    }))
    .await;
    let acked: Vec<Acked> = lifecycles.into_iter().flatten().collect();
    let retries = client.failures();
    assert!(retries >= 24, "the clients were meant to time out often, retried only {retries} times");

    let messages = assert_exactly_once(&nats, &acked).await;
    assert_eq!(messages.len(), 6 * 4 * 4, "one commit per command, none lost and none doubled");
    // A retry long after the fact, through either process, still gets the first answer.
    for (app, first) in [(&a, &acked[0]), (&b, &acked[4])] {
        let answer = send(
            app,
            Method::POST,
            "/api/v1/problems",
            Some(&token),
            Some(report_body(COUNTY, GRID)),
            &[("Idempotency-Key", &first.key)],
        )
        .await
        .expect(201);
        assert_eq!(first.version, 1);
        assert_eq!(
            (answer["id"].as_str(), answer["position"].as_u64()),
            (Some(first.id.as_str()), Some(first.position))
        );
    }
    for app in [&a, &b] {
        assert_views_caught_up(app, &token, messages.len() as u64, 6 * 4).await;
    }
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writers_through_two_processes_get_one_winner_per_version() {
    let nats = blocking(NatsCluster::start);
    let a = serve(&nats, &[]);
    let b = serve(&nats, &[]);
    let token = shared_token(&[&a, &b], "county_bureau", Some(COUNTY));
    let created = send(&a, Method::POST, "/api/v1/problems", Some(&token), Some(report_body(COUNTY, GRID)), &[])
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/problems/{id}/progress");
    for version in 1..=5u64 {
        let if_match = format!("\"{version}\"");
        let answers = futures::future::join_all((0..20).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let body = json!({"note": format!("writer {i}")});
            let (path, token, if_match) = (&path, &token, &if_match);
            async move { send(app, Method::POST, path, Some(token), Some(body), &[("If-Match", if_match)]).await }
        }))
        .await;
        let mut by_status: HashMap<u16, usize> = HashMap::new();
        for answer in &answers {
            *by_status.entry(answer.status.as_u16()).or_default() += 1;
            if answer.status == 409 {
                assert_eq!(answer.content_type, "application/problem+json");
            }
        }
        assert_eq!(by_status.get(&200), Some(&1), "version {version}: {by_status:?}");
        assert_eq!(by_status.get(&409), Some(&19), "version {version}: {by_status:?}");
    }
    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 6, "one report and one progress per version");
    let versions: Vec<u64> = messages.iter().map(|(_, c)| c["events"][0]["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
}

/// The deadline watcher's completed sweeps, from `/metrics`.
async fn sweeps(app: &App) -> u64 {
    let text = app.http.get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("rectify_watcher_sweeps_total ")).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_watchers_of_both_processes_mark_each_problem_overdue_once() {
    let nats = blocking(NatsCluster::start);
    let a = serve(&nats, &["--overdue-interval", "1"]);
    let b = serve(&nats, &["--overdue-interval", "1"]);
    let token = shared_token(&[&a, &b], "county_bureau", Some(COUNTY));
    let mut ids = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        let created = send(app, Method::POST, "/api/v1/problems", Some(&token), Some(report_body(COUNTY, GRID)), &[])
            .await
            .expect(201);
        let id = created["id"].as_str().unwrap().to_owned();
        // A deadline that has already passed: both watchers want to mark it.
        let body = json!({"class": "time_limited", "due": "2021-05-01T00:00:00Z"});
        send(app, Method::POST, &format!("/api/v1/problems/{id}/deadline"), Some(&token), Some(body), &[])
            .await
            .expect(200);
        ids.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let p = send(&b, Method::GET, &format!("/api/v1/problems/{id}"), Some(&token), None, &[]).await.expect(200);
            if p["overdue"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "{id} was never marked overdue");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Both watchers sweep twice more after the last mark, then the stream is counted.
    let (sa, sb) = (sweeps(&a).await, sweeps(&b).await);
    while sweeps(&a).await < sa + 2 || sweeps(&b).await < sb + 2 {
        assert!(Instant::now() < deadline + Duration::from_secs(30), "a watcher stopped sweeping");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = stream_messages(&nats).await;
    let mut overdue: HashMap<String, usize> = HashMap::new();
    for (_, commit) in &messages {
        for e in commit["events"].as_array().unwrap() {
            if e["event"]["type"] == "problem_overdue" {
                *overdue.entry(e["stream"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    for id in &ids {
        assert_eq!(overdue.get(id), Some(&1), "{id} must be marked overdue exactly once: {overdue:?}");
    }
    assert_eq!(overdue.len(), ids.len());
    let head = messages.len() as u64;
    for app in [&a, &b] {
        let s = send(
            app,
            Method::GET,
            &format!("/api/v1/stats/summary?region={COUNTY}&wait_for={head}"),
            Some(&token),
            None,
            &[],
        )
        .await
        .expect(200);
        assert_eq!(s["overdue"], ids.len());
    }
}
