//! Audit for inspectors, end to end: `rectify audit verify` on untouched and tampered logs (the embedded
//! log's file edited offline, a forged message published straight onto NATS), proofs served by the API
//! checked by an independent RFC 9162 verifier written here, crash recovery of seals, bulletins, roles, and
//! time travel (`as_of`) against a replay of the log.

use crate::api::{Answer, report_body, send};
use crate::app::{App, binary};
use rectify_domain::audit::AuditRecord;
use rectify_domain::{Actor, AggregateId, CommandContext, Commit, Event, RegionCode, Role};
use rectify_tests::NatsServer;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";

/// One accepted command: (event id, position).
type Written = (String, u64);

async fn post(app: &App, path: &str, token: &str, body: Value) -> Answer {
    send(app, Method::POST, path, Some(token), Some(body), &[]).await
}

async fn get(app: &App, path: &str, token: &str) -> Answer {
    send(app, Method::GET, path, Some(token), None, &[]).await
}

fn written(answer: &Value) -> Written {
    (format!("{}/{}", answer["id"].as_str().unwrap(), answer["version"]), answer["position"].as_u64().unwrap())
}

/// Three problems whose commands interleave on the log: report, deadline, two progress reports each.
async fn history(app: &App, token: &str) -> Vec<Written> {
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = post(app, "/api/v1/problems", token, report_body(COUNTY, GRID)).await.expect(201);
        ids.push(a["id"].as_str().unwrap().to_owned());
        out.push(written(&a));
    }
    for id in &ids {
        let body =
            json!({"class": "time_limited", "due": "2021-09-01T00:00:00Z", "occurred_at": "2021-04-03T00:00:00Z"});
        out.push(written(&post(app, &format!("/api/v1/problems/{id}/deadline"), token, body).await.expect(200)));
    }
    for step in 1..=2 {
        for id in &ids {
            let body = json!({"note": format!("dredged {step}00 tonnes of sludge"), "evidence": []});
            out.push(written(&post(app, &format!("/api/v1/problems/{id}/progress"), token, body).await.expect(200)));
        }
    }
    out
}

/// Runs `rectify audit verify --json` with `args`; returns (exit success, report).
fn verify(args: &[&str]) -> (bool, Value) {
    let out = Command::new(binary()).args(["audit", "verify", "--json"]).args(args).output().expect("run audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("audit verify printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.success(), report["ok"] == true, "the exit code follows the report: {report:#}");
    (out.status.success(), report)
}

fn verify_dir(dir: &Path) -> (bool, Value) {
    verify(&["--data-dir", dir.to_str().unwrap()])
}

#[track_caller]
fn assert_first_bad(report: &Value, kind: &str, position: u64, event_id: &str) {
    let first = &report["first_bad"];
    assert_eq!(
        (first["kind"].as_str(), first["position"].as_u64(), first["event_id"].as_str()),
        (Some(kind), Some(position), Some(event_id)),
        "first bad event: {:#}",
        report["report"]["findings"]
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One record of the embedded log's file (layout: `crates/eventlog/src/embedded/file.rs`).
struct Stored {
    kind: u8,
    position: u64,
    body: Vec<u8>,
}

const COMMIT: u8 = 1;
const AUDIT: u8 = 2;

/// Reads the embedded log's file offline, as an operator with disk access could, hands `edit` its records,
/// and writes them back with fresh CRCs (the tampering a CRC cannot catch).
fn tamper(data_dir: &Path, edit: impl FnOnce(&mut Vec<Stored>)) {
    let path = data_dir.join("log/events.rlog");
    let bytes = std::fs::read(&path).unwrap();
    let (magic, mut rest) = bytes.split_at(8);
    let mut records = Vec::new();
    while let Some(len) = rest.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize) {
        if len == 0 {
            break;
        }
        let record = &rest[8..8 + len];
        let position = u64::from_le_bytes(record[1..9].try_into().unwrap());
        records.push(Stored { kind: record[0], position, body: record[9..].to_vec() });
        rest = &rest[8 + len..];
    }
    edit(&mut records);
    let mut out = magic.to_vec();
    for r in records {
        let mut record = vec![r.kind];
        record.extend_from_slice(&r.position.to_le_bytes());
        record.extend_from_slice(&r.body);
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&record).to_le_bytes());
        out.extend_from_slice(&record);
    }
    std::fs::write(&path, out).unwrap();
}

/// The commit at `position` among `records`.
fn commit_at(records: &mut [Stored], position: u64) -> &mut Stored {
    records.iter_mut().find(|r| r.kind == COMMIT && r.position == position).expect("the commit is there")
}

#[tokio::test]
async fn verify_passes_an_untouched_embedded_log_and_names_the_event_of_every_tampering() {
    let mut app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let log = history(&app, &token).await;
    app.terminate();
    let clean = app.data_dir.clone();
    let (ok, report) = verify_dir(&clean);
    assert!(ok, "an untouched log verifies clean: {report:#}");
    assert_eq!(report["report"]["commits"], 12);
    assert!(report["views"].as_str().unwrap().starts_with("match"), "{report:#}");

    let scratch = tempfile::tempdir().unwrap();
    let case = |name: &str| {
        let dir = scratch.path().join(name);
        copy_dir(&clean, &dir);
        dir
    };

    // 1. Edit one payload byte of a progress report (the JSON stays valid: only the note changes).
    let (event, position) = log[7].clone();
    let dir = case("edit");
    tamper(&dir, |records| {
        let body = &mut commit_at(records, position).body;
        let at = body.windows(7).position(|w| w == b"dredged").expect("the note is in the payload");
        body[at] = b'D';
    });
    let (ok, report) = verify_dir(&dir);
    assert!(!ok);
    assert_first_bad(&report, "altered", position, &event);

    // 2. Drop an event: the seal still names it.
    let (event, position) = log[4].clone();
    let dir = case("drop");
    tamper(&dir, |records| {
        commit_at(records, position);
        records.retain(|r| !(r.kind == COMMIT && r.position == position));
    });
    let (ok, report) = verify_dir(&dir);
    assert!(!ok);
    assert_first_bad(&report, "missing", position, &event);

    // 3. Reorder two commits: the first moved position names the event now found there.
    let ((_, p1), (moved, p2)) = (log[3].clone(), log[9].clone());
    let dir = case("reorder");
    tamper(&dir, |records| {
        let a = std::mem::take(&mut commit_at(records, p1).body);
        let b = std::mem::replace(&mut commit_at(records, p2).body, a);
        commit_at(records, p1).body = b;
    });
    let (ok, report) = verify_dir(&dir);
    assert!(!ok);
    let first = &report["first_bad"];
    assert_eq!(
        (first["position"].as_u64(), first["event_id"].as_str()),
        (Some(p1), Some(moved.as_str())),
        "{report:#}"
    );
    assert!(["chain_broken", "seal_mismatch"].contains(&first["kind"].as_str().unwrap()));

    // 4. Replace a seal's signature with one by a key nobody trusts, over the very same bytes.
    let dir = case("signature");
    let mut covered = None;
    tamper(&dir, |records| {
        let stored = records.iter_mut().find(|r| r.kind == AUDIT && r.position == 1).expect("a seal was stored");
        let Ok(AuditRecord::Seal(mut seal)) = AuditRecord::decode(&stored.body) else {
            panic!("the first record is a seal")
        };
        let intruder = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        use ed25519_dalek::Signer;
        seal.signature = hex::encode(intruder.sign(&seal.signed_bytes()).to_bytes());
        let first = seal.entries.iter().min_by_key(|e| e.position).unwrap();
        covered = Some((first.events[0].clone(), first.position));
        stored.body = AuditRecord::Seal(seal).encode();
    });
    let (event, position) = covered.unwrap();
    let (ok, report) = verify_dir(&dir);
    assert!(!ok);
    assert_first_bad(&report, "bad_seal", position, &event);
    assert!(
        report["report"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "unsealed" && f["position"] == position),
        "the commits of the bad seal are unauthenticated: {report:#}"
    );

    // The untouched copy still verifies: the tampering above happened on copies.
    assert!(verify_dir(&clean).0);
}

/// The commit a forger publishes: a progress report that continues `last` correctly (hash chain and all),
/// built with the public domain code any attacker has.
fn forged_after(last: &Commit) -> Commit {
    let now = chrono::Utc::now();
    let ctx = CommandContext {
        actor: Actor {
            id: "someone".into(),
            role: Role::CountyBureau,
            region: RegionCode::parse(COUNTY).unwrap(),
            grid: None,
        },
        occurred_at: now,
        recorded_at: now,
        command_id: format!("forged-{}", ulid::Ulid::new()),
        correlation_id: "forged".into(),
    };
    let event = Event::ProgressReported { note: "all fixed, trust me".into(), evidence: Vec::new() };
    Commit::seal(last.stream(), last.last_version(), last.last_hash(), &ctx, vec![event])
}

#[tokio::test]
async fn verify_on_nats_finds_a_message_forged_straight_onto_the_subject() {
    let nats = NatsServer::start();
    let mut app = App::start_nats(&nats.url());
    let token = app.token("county_bureau", Some(COUNTY), None);
    let log = history(&app, &token).await;
    app.terminate();
    let dir = app.data_dir.to_str().unwrap().to_owned();
    let (ok, report) = verify(&["--nats", &nats.url(), "--data-dir", &dir]);
    assert!(ok, "an untouched stream verifies clean: {report:#}");

    // An independent client publishes a well-formed continuation with the right headers.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("RECTIFY_EVENTS").await.unwrap();
    let id = AggregateId::parse(log[0].0.split('/').next().unwrap()).unwrap();
    let subject = format!("rectify.events.520100.{COUNTY}.{id}");
    let last = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
    let forged = forged_after(&Commit::decode(&last.payload).unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", forged.command_id());
    headers.insert("Nats-Expected-Last-Subject-Sequence", last.sequence.to_string().as_str());
    let ack = js
        .publish_with_headers(subject, headers, bytes::Bytes::from(forged.encode()))
        .await
        .unwrap()
        .await
        .expect("the server takes the forged message");

    let (ok, report) = verify(&["--nats", &nats.url(), "--data-dir", &dir, "--no-views"]);
    assert!(!ok);
    assert_first_bad(&report, "unsealed", ack.sequence, &forged.events[0].event_id);
    assert_eq!(report["report"]["findings"].as_array().unwrap().len(), 1, "only the forgery: {report:#}");
}

#[tokio::test]
async fn commits_appended_before_a_crash_are_sealed_on_restart() {
    let dir = tempfile::Builder::new().prefix("rectify-e2e-").tempdir().unwrap();
    let data = dir.path().to_owned();
    // Seals would only be made after ten minutes: everything is still unsealed when the process dies.
    let mut app = App::spawn_env(data.clone(), None, &[], &[("RECTIFY_SEAL_INTERVAL_MS", "600000")]);
    let token = app.token("county_bureau", Some(COUNTY), None);
    let log = history(&app, &token).await;
    let id = log[0].0.split('/').next().unwrap().to_owned();
    let inspector = app.token("inspector", None, None);
    let events = get(&app, &format!("/api/v1/problems/{id}/events"), &inspector).await.expect(200);
    assert!(events.as_array().unwrap().iter().all(|e| e["seal"].is_null()), "not sealed yet: {events:#}");
    app.kill();
    let (ok, report) = verify_dir(&data);
    assert!(!ok && report["first_bad"]["kind"] == "unsealed", "unsealed after the crash: {report:#}");

    // The restart seals what the journal says this writer appended, before it serves.
    let mut app = App::spawn(data.clone(), None, &[]);
    let events = get(&app, &format!("/api/v1/problems/{id}/events"), &inspector).await.expect(200);
    // (The deadline watcher may append an overdue event after the restart; that one is sealed milliseconds later.)
    let before_crash = log.iter().map(|w| w.1).max().unwrap();
    for e in events.as_array().unwrap().iter().filter(|e| e["position"].as_u64().unwrap() <= before_crash) {
        assert!(e["seal"]["signature"].is_string(), "sealed after the restart: {e:#}");
    }
    app.terminate();
    let (ok, report) = verify_dir(&data);
    assert!(ok, "{report:#}");
    drop(dir);
}

// ---- An independent RFC 9162 verifier: written here from the RFC's definitions (PATH and SUBPROOF),
// reconstructing roots recursively rather than with the RFC's iterative algorithm the service uses. ----

type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    parts.iter().for_each(|p| h.update(p));
    h.finalize().into()
}

fn node(l: &H, r: &H) -> H {
    sha(&[&[1], l, r])
}

fn largest_power_of_two_below(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root a `PATH(m, D[n])` proof leads to from `leaf`, or None if the proof has the wrong shape.
fn root_from_path(m: u64, n: u64, leaf: H, proof: &[H]) -> Option<H> {
    if n == 1 {
        return proof.is_empty().then_some(leaf);
    }
    let (last, rest) = proof.split_last()?;
    let k = largest_power_of_two_below(n);
    if m < k {
        Some(node(&root_from_path(m, k, leaf, rest)?, last))
    } else {
        Some(node(last, &root_from_path(m - k, n - k, leaf, rest)?))
    }
}

/// The (old, new) roots a `SUBPROOF(m, D[n], whole)` proves, given the old root for the `whole` base case.
fn roots_from_subproof(m: u64, n: u64, whole: bool, old_root: &H, proof: &[H]) -> Option<(H, H)> {
    if m == n {
        return if whole {
            proof.is_empty().then_some((*old_root, *old_root))
        } else {
            (proof.len() == 1).then(|| (proof[0], proof[0]))
        };
    }
    let (last, rest) = proof.split_last()?;
    let k = largest_power_of_two_below(n);
    if m <= k {
        let (old, new) = roots_from_subproof(m, k, whole, old_root, rest)?;
        Some((old, node(&new, last)))
    } else {
        let (old, new) = roots_from_subproof(m - k, n - k, false, old_root, rest)?;
        Some((node(last, &old), node(last, &new)))
    }
}

fn hashes(v: &Value) -> Vec<H> {
    v.as_array().unwrap().iter().map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap()).collect()
}

fn hash(v: &Value) -> H {
    hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

/// Checks a checkpoint's Ed25519 signature over its five lines with the key the API lists.
fn check_checkpoint(c: &Value, keys: &Value) {
    let key = keys["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == c["key_id"]).expect("the key is listed");
    let public: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(c["time"].as_str().unwrap()).unwrap().to_utc();
    let text = format!(
        "rectify checkpoint v1\n{}\n{}\n{}\n{}\n",
        c["size"],
        c["root"].as_str().unwrap(),
        time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        c["key_id"].as_str().unwrap()
    );
    let sig: [u8; 64] = hex::decode(c["signature"].as_str().unwrap()).unwrap().try_into().unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify_strict(text.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("the checkpoint's signature verifies");
}

#[tokio::test]
async fn proofs_served_by_the_api_pass_an_independent_verifier() {
    let mut app = App::start();
    let token = app.token("county_bureau", Some(COUNTY), None);
    let inspector = app.token("inspector", None, None);
    let public = app.token("public", None, None);
    let first_part = history(&app, &token).await;
    let early_size = first_part.iter().map(|w| w.1).max().unwrap();
    let early = get(&app, &format!("/api/v1/audit/checkpoint?size={early_size}"), &public).await.expect(200);
    let mut log = first_part;
    // 144 commits: the service keeps the Merkle tree in chunks of 64 and reads the leaves of finished
    // chunks again for proofs, so proofs here cross finished chunks, the unfinished one and both.
    for _ in 0..11 {
        log.extend(history(&app, &token).await);
    }
    let size = log.iter().map(|w| w.1).max().unwrap();
    assert!(size > 128, "{size} commits");
    let keys = get(&app, "/api/v1/audit/keys", &public).await.expect(200);
    let late = get(&app, &format!("/api/v1/audit/checkpoint?size={size}"), &public).await.expect(200);
    check_checkpoint(&early, &keys);
    check_checkpoint(&late, &keys);
    let root = hash(&late["root"]);

    for (event_id, position) in &log {
        let p = get(&app, &format!("/api/v1/audit/proof/inclusion?position={position}&size={size}"), &inspector)
            .await
            .expect(200);
        // The leaf is recomputed from the event hashes the problem's history shows.
        let id = event_id.split('/').next().unwrap();
        let history = get(&app, &format!("/api/v1/problems/{id}/events"), &inspector).await.expect(200);
        let entry = history.as_array().unwrap().iter().find(|e| e["position"] == *position).unwrap();
        let mut data = position.to_be_bytes().to_vec();
        for e in entry["events"].as_array().unwrap() {
            data.extend(hex::decode(e["hash"].as_str().unwrap()).unwrap());
        }
        let leaf = sha(&[&[0], &data]);
        assert_eq!(hex::encode(leaf), p["leaf_hash"].as_str().unwrap());
        assert_eq!(entry["leaf"], p["leaf_hash"]);
        assert_eq!(p["checkpoint"]["root"], late["root"]);
        assert_eq!(
            root_from_path(position - 1, size, leaf, &hashes(&p["proof"])),
            Some(root),
            "inclusion of {position}"
        );
        let mut wrong = leaf;
        wrong[0] ^= 1;
        assert_ne!(root_from_path(position - 1, size, wrong, &hashes(&p["proof"])), Some(root));
        assert!(entry["seal"]["signature"].is_string(), "each commit shows its seal: {entry:#}");
    }

    let c = get(&app, &format!("/api/v1/audit/proof/consistency?from={early_size}&to={size}"), &inspector)
        .await
        .expect(200);
    assert_eq!(c["first"]["root"], early["root"], "the same size has the same root later");
    let roots = roots_from_subproof(early_size, size, true, &hash(&early["root"]), &hashes(&c["proof"]));
    assert_eq!(roots, Some((hash(&early["root"]), root)), "the early tree is a prefix of the late one");

    // Roles: the public reads checkpoints and bulletins, not proofs; bureaus issue bulletins.
    get(&app, "/api/v1/audit/proof/inclusion?position=1", &public).await.problem(403);
    get(&app, "/api/v1/audit/proof/consistency?from=1", &token).await.problem(403);
    let bulletin = post(&app, "/api/v1/bulletins", &token, json!({"title": "2021年第1期调度"})).await.expect(201);
    assert_eq!(bulletin["position"].as_u64(), Some(size));
    assert_eq!(bulletin["stats"]["summary"]["found"], 36);
    check_checkpoint(&bulletin["checkpoint"], &keys);
    assert_eq!(bulletin["checkpoint"]["root"], late["root"]);
    let again =
        get(&app, &format!("/api/v1/bulletins/{}", bulletin["id"].as_str().unwrap()), &public).await.expect(200);
    assert_eq!(again, bulletin);
    post(&app, "/api/v1/bulletins", &inspector, json!({"title": "x"})).await.problem(403);
    post(&app, "/api/v1/bulletins", &token, json!({"region": "520100"})).await.problem(403);

    // Anyone holding the log reproduces the bulletin: verify refolds its figures.
    app.terminate();
    let (ok, report) = verify_dir(&app.data_dir);
    assert!(ok, "{report:#}");
    assert_eq!(report["report"]["bulletins"], 1);

    // An export of one problem checks offline against the trust file, and fails once a byte changes.
    let id = log[0].0.split('/').next().unwrap();
    let file = app.data_dir.join("export.jsonl");
    let run = |args: &[&str]| Command::new(binary()).args(args).output().expect("run rectify audit");
    let data = app.data_dir.to_str().unwrap();
    let out = run(&["audit", "export", "--data-dir", data, "--problem", id, "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("\"type\":\"commit\"")).count(), 4, "{text}");
    let trust = app.data_dir.join("trust.json");
    let check =
        |path: &Path| run(&["audit", "check-export", path.to_str().unwrap(), "--trust", trust.to_str().unwrap()]);
    let out = check(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let bad = app.data_dir.join("bad.jsonl");
    std::fs::write(&bad, text.replacen("dredged 100", "dredged 900", 1)).unwrap();
    let out = check(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("content does not match its hash"));
}

/// Times in 2021, `days` after 1 March.
fn day(days: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2021-03-01T08:00:00Z").unwrap().to_utc() + chrono::Duration::days(days)
}

#[tokio::test]
async fn as_of_answers_equal_a_replay_of_the_log_up_to_that_time_for_a_random_history() {
    use rand::Rng;
    let app = App::start();
    let county = app.token("county_bureau", Some(COUNTY), None);
    // A different actor of the same city accepts: nobody accepts what they reported or submitted.
    let city = app.token("city_bureau", Some("520100"), None);
    let inspector = app.token("inspector", None, None);
    let mut rng = rand::rng();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let mut t = rng.random_range(0..120);
        let mut body = report_body(COUNTY, GRID);
        body["discovered_at"] = json!(day(t));
        let id = post(&app, "/api/v1/problems", &county, body).await.expect(201)["id"].as_str().unwrap().to_owned();
        let path = |action: &str| format!("/api/v1/problems/{id}/{action}");
        let steps = rng.random_range(0..6);
        for step in 0..steps {
            t += rng.random_range(0..20);
            let at = json!(day(t));
            match step {
                0 => {
                    let class = if rng.random_bool(0.3) { "immediate" } else { "time_limited" };
                    let due = day(t + rng.random_range(1..60));
                    let body = json!({"class": class, "due": due, "occurred_at": at});
                    post(&app, &path("deadline"), &county, body).await.expect(200);
                }
                1 | 2 => {
                    let body = json!({"note": format!("step {step}"), "evidence": [], "occurred_at": at});
                    post(&app, &path("progress"), &county, body).await.expect(200);
                }
                3 => {
                    let mut body = crate::api::submission_body();
                    body["occurred_at"] = at;
                    post(&app, &path("submission"), &county, body).await.expect(200);
                }
                _ => {
                    let body = if rng.random_bool(0.7) {
                        json!({"decision": "accept", "occurred_at": at})
                    } else {
                        json!({"decision": "reject", "comment": "not yet", "occurred_at": at})
                    };
                    post(&app, &path("acceptance"), &city, body).await.expect(200);
                }
            }
        }
        ids.push(id);
    }

    // The log as the API shows it, in log order.
    let mut records: Vec<(u64, rectify_domain::Envelope)> = Vec::new();
    for id in &ids {
        let history = get(&app, &format!("/api/v1/problems/{id}/events"), &inspector).await.expect(200);
        for entry in history.as_array().unwrap() {
            for e in entry["events"].as_array().unwrap() {
                records.push((entry["position"].as_u64().unwrap(), serde_json::from_value(e.clone()).unwrap()));
            }
        }
    }
    records.sort_by_key(|(p, e)| (*p, e.version));

    let mut times: Vec<i64> = (0..6).map(|_| rng.random_range(-5..200)).collect();
    times.extend([-10, 400]);
    for t in times {
        let as_of = day(t);
        let q = as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for id in &ids {
            let replayed = rectify_domain::State::replay(
                records.iter().map(|(_, e)| e).filter(|e| e.stream.as_str() == id && e.occurred_at <= as_of),
            );
            let answer = get(&app, &format!("/api/v1/problems/{id}?as_of={q}"), &inspector).await;
            match replayed.problem() {
                None => {
                    answer.problem(404);
                }
                Some(p) => {
                    let body = answer.expect(200);
                    assert_eq!(body["version"], replayed.version, "{id} as of {q}");
                    assert_eq!(body["status"], serde_json::to_value(p.status).unwrap(), "{id} as of {q}");
                    assert_eq!(body["due"], serde_json::to_value(p.due).unwrap(), "{id} as of {q}");
                    assert_eq!(body["closed_at"], serde_json::to_value(p.closed_at).unwrap(), "{id} as of {q}");
                }
            }
        }
        let mut changes = rectify_projector::Changes::default();
        for (position, e) in records.iter().filter(|(_, e)| e.occurred_at <= as_of) {
            let Ok(()) = changes.apply(&rectify_projector::Empty, *position, e);
        }
        let key = rectify_projector::CounterKey::region(RegionCode::parse(COUNTY).unwrap());
        let expected = serde_json::to_value(changes.counters.get(&key).copied().unwrap_or_default()).unwrap();
        let summary =
            get(&app, &format!("/api/v1/stats/summary?region={COUNTY}&as_of={q}"), &inspector).await.expect(200);
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(&summary[field], value, "summary.{field} as of {q}");
        }
    }
}
