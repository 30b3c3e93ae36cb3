//! Secrets stay out of the logs: bearer tokens (good and bad) and evidence URIs carrying signatures never
//! appear in what the service writes to stderr, even with `RUST_LOG=debug` on NATS — neither as sent nor
//! base64-encoded (the NATS client's debug output shows message payloads that way).

use crate::api::{Answer, report_body, send};
use crate::app::App;
use base64::Engine;
use rand::RngCore;
use rectify_tests::NatsServer;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Every way `secret` could be written base64-encoded (at each alignment), minus the edges that depend on
/// what precedes and follows it.
fn base64_forms(secret: &str) -> Vec<String> {
    (0..3)
        .map(|pad| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}{secret}", "x".repeat(pad)));
            encoded[4..encoded.len() - 4].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn tokens_and_signed_evidence_uris_never_reach_the_logs_even_at_debug() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    // Tokens are made before the service starts, the way an operator would.
    let token = {
        let out = Command::new(crate::app::binary())
            .args(["token", "add", "--role", "county_bureau", "--region", COUNTY, "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let mut app = App::spawn_stderr(data_dir, None, &["--nats", &nats.url()], &[("RUST_LOG", "debug")], stderr);

    let signature = random_hex(32);
    let credential = format!("AKIA{}", random_hex(8).to_uppercase());
    let uri = format!(
        "https://evidence.example/kaiyang/1.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}\
         &X-Amz-Signature={signature}"
    );
    let evidence = json!([{"sha256": "ab".repeat(32), "media_type": "image/jpeg", "uri": uri}]);
    let post = |path: String, token: String, body: Value| {
        let app = &app;
        async move { send(app, Method::POST, &path, Some(&token), Some(body), &[]).await }
    };
    let id = post("/api/v1/problems".into(), token.clone(), report_body(COUNTY, GRID)).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = |action: &str| format!("/api/v1/problems/{id}/{action}");
    post(at("deadline"), token.clone(), json!({"class": "immediate", "due": "2031-05-01T00:00:00Z"})).await.expect(200);
    post(at("progress"), token.clone(), json!({"note": "lined", "evidence": evidence})).await.expect(200);
    // Refusals that echo input: bad evidence next to the URI, a wrong state, a made-up token.
    let bad = json!({"note": "x", "evidence": [{"sha256": "zz", "media_type": "image/jpeg", "uri": uri}]});
    let answer: Answer = post(at("progress"), token.clone(), bad).await;
    assert_eq!(answer.status, 422, "{:#}", answer.body);
    post(at("submission"), token.clone(), json!({"summary": "done", "evidence": evidence})).await.expect(200);
    post(at("submission"), token.clone(), json!({"summary": "again", "evidence": evidence})).await.problem(409);
    let made_up = format!("rfy_{}", random_hex(32));
    post(at("progress"), made_up.clone(), json!({"note": "x", "evidence": evidence})).await.problem(401);
    // Reads that carry the URI back out of the log (and through the NATS client).
    let history = send(&app, Method::GET, &format!("{}/events", at("").trim_end_matches('/')), Some(&token), None, &[])
        .await
        .expect(200);
    assert!(history.to_string().contains(&signature), "the history does hold the URI");
    send(&app, Method::GET, &format!("/api/v1/problems/{id}"), Some(&token), None, &[]).await.expect(200);

    app.terminate();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("DEBUG"), "the service logged at debug level");
    let mut secrets = vec![token.clone(), made_up.clone(), signature.clone(), credential.clone()];
    secrets.extend(base64_forms(&signature));
    secrets.extend(base64_forms(&token));
    for secret in &secrets {
        let at = logged.find(secret.as_str());
        assert!(at.is_none(), "a secret is in the log: …{}…", &logged[at.unwrap().saturating_sub(300)..][..400]);
    }
}
