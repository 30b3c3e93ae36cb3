//! Crashes of the service itself: SIGKILL while commands are being applied, then restart. Acknowledged
//! commands survive, and the views equal a rebuild from the log.

use crate::api::{expect_reported, report_body, send};
use crate::app::App;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";

/// Sends commands from 16 concurrent clients until the service dies; returns the acknowledged answers.
async fn load_until_killed(app: &mut App, token: &str, kill_after: usize) -> Vec<Value> {
    let url = app.url.clone();
    let http = reqwest::Client::new();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = futures::stream::iter(0..).map(|i: usize| {
        let (http, url, token, acked) = (http.clone(), url.clone(), token.to_owned(), acked.clone());
        async move {
            let res = http
                .post(format!("{url}/api/v1/problems"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("crash-{i}"))
                .json(&report_body(COUNTY, GRID))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    // Read the body before taking the lock: a guard held across an await blocks the runtime.
                    let answer = r.json::<Value>().await.unwrap();
                    acked.lock().unwrap().push(answer);
                    true
                }
                // Connection refused or reset: the service is gone.
                _ => false,
            }
        }
    });
    let mut answers = requests.buffer_unordered(16);
    let mut killed = false;
    while let Some(alive) = answers.next().await {
        if !killed && acked.lock().unwrap().len() >= kill_after {
            app.kill();
            killed = true;
        }
        if killed && !alive {
            break;
        }
    }
    drop(answers);
    acked.lock().unwrap().clone()
}

/// A SIGTERM as soon as the service says where it listens (a supervisor restarting it quickly; under load,
/// before the server ran) stops it through its shutdown — seals written, views flushed — instead of by the
/// signal's default action (most likely what once left a commit unsealed in the audit test's restart).
#[tokio::test]
async fn a_sigterm_right_after_start_is_a_clean_stop() {
    for _ in 0..3 {
        let status = App::start().terminate();
        assert!(status.success(), "ended by {status:?}, not by its shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_then_restart_keeps_every_ack_and_views_equal_a_rebuild() {
    let mut app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let acked = load_until_killed(&mut app, &token, 1500).await;
    assert!(acked.len() >= 1500);

    // Restart on the same data dir: every acknowledged problem is there, and the views catch up.
    let data_dir = app.data_dir.clone();
    let keep_dir = std::mem::replace(&mut app, App::spawn(data_dir.clone(), None, &[]));
    let head = acked.iter().map(|a| a["position"].as_u64().unwrap()).max().unwrap();
    expect_reported(&app, &token, acked.iter().step_by(97)).await;
    let s = send(
        &app,
        Method::GET,
        &format!("/api/v1/stats/summary?region={COUNTY}&wait_for={head}"),
        Some(&token),
        None,
        &[],
    )
    .await
    .expect(200);
    assert!(s["found"].as_u64().unwrap() as usize >= acked.len());
    // A retry of an acknowledged command after the crash gets its first answer.
    let first = &acked[0];
    let key = format!("crash-{}", 0);
    let again = send(
        &app,
        Method::POST,
        "/api/v1/problems",
        Some(&token),
        Some(report_body(COUNTY, GRID)),
        &[("Idempotency-Key", &key)],
    )
    .await
    .expect(201);
    assert!(again == *first || acked.contains(&again), "a retried key returned a new answer: {again}");

    app.kill();
    drop(keep_dir);
    let check =
        Command::new(crate::app::binary()).args(["rebuild", "--check", "--data-dir"]).arg(&data_dir).output().unwrap();
    assert!(check.status.success(), "views differ from a rebuild: {}", String::from_utf8_lossy(&check.stderr));
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("views match a rebuild"), "{out}");
}

/// Reports `n` problems in the county; the position of the last.
async fn report_problems(app: &App, token: &str, n: usize) -> u64 {
    let mut last = json!(null);
    for _ in 0..n {
        last = send(app, Method::POST, "/api/v1/problems", Some(token), Some(report_body(COUNTY, GRID)), &[])
            .await
            .expect(201);
    }
    last["position"].as_u64().unwrap()
}

#[tokio::test]
async fn views_are_rebuilt_beside_the_old_ones_on_request() {
    let mut app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let pos = report_problems(&app, &token, 50).await;
    let before = send(&app, Method::GET, &format!("/api/v1/stats/summary?wait_for={pos}"), Some(&token), None, &[])
        .await
        .expect(200);
    app.kill();
    let data_dir = app.data_dir.clone();
    let _keep = std::mem::replace(&mut app, App::spawn(data_dir.clone(), None, &["--rebuild-views"]));
    let after = send(&app, Method::GET, &format!("/api/v1/stats/summary?wait_for={pos}"), Some(&token), None, &[])
        .await
        .expect(200);
    assert_eq!(before["found"], after["found"]);
    assert_eq!(after["found"], 50);
    // The switch happened: generation 2 is in use and generation 1 is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let switched = || {
        std::fs::read_to_string(data_dir.join("views/CURRENT")).unwrap().trim() == "2"
            && !data_dir.join("views/gen-1").exists()
    };
    while !switched() {
        assert!(std::time::Instant::now() < deadline, "the rebuilt views were never switched in");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A power loss while the views were open (their `OPEN` file names an earlier boot): the views, whose writes
/// do not wait for the disk, are not trusted; the service starts an empty generation and folds the whole log
/// into it. A clean stop leaves nothing to distrust.
#[tokio::test]
async fn views_open_when_the_machine_went_down_are_built_again_from_the_log() {
    let mut app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let pos = report_problems(&app, &token, 20).await;
    let summary = format!("/api/v1/stats/summary?wait_for={pos}");
    send(&app, Method::GET, &summary, Some(&token), None, &[]).await.expect(200);
    let data_dir = app.data_dir.clone();
    let open = data_dir.join("views/OPEN");
    app.terminate();
    assert!(!open.exists(), "a clean stop leaves the views marked open");

    let _keep = std::mem::replace(&mut app, App::spawn(data_dir.clone(), None, &[]));
    send(&app, Method::GET, &summary, Some(&token), None, &[]).await.expect(200);
    app.kill();
    assert!(open.exists(), "a killed service leaves its views marked open");
    std::fs::write(&open, "an-earlier-boot\n").unwrap();

    // A check (also what `audit verify` runs on the views) reports such views and leaves them as they are.
    let check =
        Command::new(crate::app::binary()).args(["rebuild", "--check", "--data-dir"]).arg(&data_dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success() && stderr.contains("open when the machine went down"), "{stderr}");
    assert!(data_dir.join("views/gen-1").exists() && open.exists());

    let _keep = std::mem::replace(&mut app, App::spawn(data_dir.clone(), None, &[]));
    let after = send(&app, Method::GET, &summary, Some(&token), None, &[]).await.expect(200);
    assert_eq!(after["found"], 20);
    assert_eq!(std::fs::read_to_string(data_dir.join("views/CURRENT")).unwrap().trim(), "2");
    assert!(!data_dir.join("views/gen-1").exists());
}

/// `rectify rebuild --check` on a data dir whose views were altered behind the projector's back: it fails and
/// names the row, and leaves the views as they were.
#[tokio::test]
async fn rebuild_check_names_a_view_row_that_is_not_the_fold_of_the_log() {
    let mut app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let pos = report_problems(&app, &token, 5).await;
    send(&app, Method::GET, &format!("/api/v1/stats/summary?wait_for={pos}"), Some(&token), None, &[])
        .await
        .expect(200);
    app.terminate();
    let data_dir = app.data_dir.clone();

    // One more problem found in the province than the log holds.
    let province = rectify_projector::CounterKey::region(rectify_domain::RegionCode::parse("520000").unwrap());
    {
        let (views, _) = rectify_projector::Generations::new(data_dir.join("views")).open_current().unwrap();
        let mut changes = rectify_projector::Changes::default();
        let mut counters = views.counter(&province).unwrap();
        counters.found += 1;
        changes.counters.insert(province.clone(), counters);
        views.commit(&changes, views.checkpoint().unwrap()).unwrap();
        views.flush().await.unwrap();
    }
    let check =
        || Command::new(crate::app::binary()).args(["rebuild", "--check", "--data-dir"]).arg(&data_dir).output();
    // sled lets go of its directory lock shortly after the handle above is dropped.
    let mut out = check().unwrap();
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("lock") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        out = check().unwrap();
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a check passed over altered views: {stderr}");
    assert!(stderr.contains("views differ from a rebuild") && stderr.contains("c:520000|*"), "{stderr}");
    // The check removed its rebuild and left the altered views in use.
    assert_eq!(std::fs::read_to_string(data_dir.join("views/CURRENT")).unwrap().trim(), "1");
}
