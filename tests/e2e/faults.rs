//! Faults of the machine under the service: a disk that fills up, a data dir that cannot be written.
//!
//! Both need a file system that misbehaves on purpose: a tiny tmpfs, and a read-only bind mount (root ignores
//! file modes). They mount with `mount(8)` and skip, saying so, where that is not allowed (not root).

use crate::api::{expect_reported, report_body, send};
use crate::app::App;
use reqwest::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COUNTY: &str = "520121";
const GRID: &str = "520121-G01";

/// A mount made by a test, lazily unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&std::ffi::OsStr]) -> bool {
        Command::new("mount").args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    }

    /// A tmpfs of `size` (e.g. `6m`) at `at`.
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        let options = format!("size={size}");
        Mount::run(&["-t".as_ref(), "tmpfs".as_ref(), "-o".as_ref(), options.as_ref(), "tmpfs".as_ref(), at.as_ref()])
            .then(|| Mount(at.to_owned()))
    }

    /// `at` bound onto itself, read-only.
    fn read_only(at: &Path) -> Option<Mount> {
        if !Mount::run(&["--bind".as_ref(), at.as_ref(), at.as_ref()]) {
            return None;
        }
        let mount = Mount(at.to_owned());
        Mount::run(&["-o".as_ref(), "remount,bind,ro".as_ref(), at.as_ref()]).then_some(mount)
    }

    fn remount(&self, options: &str) {
        let options = format!("remount,{options}");
        assert!(Mount::run(&["-o".as_ref(), options.as_ref(), self.0.as_ref()]), "mount -o {options}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs a `rectify` subcommand on a data dir, expecting success; its stdout.
fn rectify(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(crate::app::binary()).args(args).arg("--data-dir").arg(data_dir).output().unwrap();
    assert!(
        out.status.success(),
        "rectify {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_full_disk_refuses_commands_with_507_and_loses_no_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Mount::tmpfs(dir.path(), "6m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data_dir = dir.path().join("data");
    let mut app = App::spawn(data_dir.clone(), None, &[]);
    let token = app.token("county_bureau", Some(COUNTY), None);
    // Large bodies fill the disk in a few hundred commands.
    let mut body = report_body(COUNTY, GRID);
    body["description"] = Value::String("phosphogypsum seepage ".repeat(90));
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..20_000 {
        let key = format!("full-{i}");
        let answer = send(
            &app,
            Method::POST,
            "/api/v1/problems",
            Some(&token),
            Some(body.clone()),
            &[("Idempotency-Key", &key)],
        )
        .await;
        if answer.status.is_success() {
            assert_eq!(refused, 0, "a command succeeded after the disk was full: {:#}", answer.body);
            acked.push(answer.body);
            continue;
        }
        // A clear answer: the disk is full and nothing was recorded; never a 500, never a hang.
        let problem = answer.problem(507);
        assert_eq!(problem["type"], "urn:rectify:problem:insufficient-storage");
        assert!(problem["detail"].as_str().unwrap().contains("no space left on device"), "{problem:#}");
        refused += 1;
        if refused == 20 {
            break;
        }
    }
    assert_eq!(refused, 20, "the disk never filled up");
    assert!(acked.len() > 50, "only {} commands fit", acked.len());
    // Queries still answer from the views, which hold every acknowledged command: the disk filled up for new
    // commands, not for the record of old ones.
    let head = acked.iter().map(|a| a["position"].as_u64().unwrap()).max().unwrap();
    let summary = send(&app, Method::GET, &format!("/api/v1/stats/summary?wait_for={head}"), Some(&token), None, &[])
        .await
        .expect(200);
    assert_eq!(summary["found"].as_u64().unwrap() as usize, acked.len(), "the views hold every acknowledged command");
    // Room is left: the log stopped taking commands before the disk was full, so nothing that records them
    // (views, seal journal, audit records) met the full disk.
    let room = dir.path().join("room");
    std::fs::write(&room, vec![0; 256 << 10]).expect("256 KiB still free on the disk");
    std::fs::remove_file(room).unwrap();

    // Room again: a retry of a refused command is taken, once, without a restart.
    disk.remount("size=64m");
    let retried = send(
        &app,
        Method::POST,
        "/api/v1/problems",
        Some(&token),
        Some(body.clone()),
        &[("Idempotency-Key", &format!("full-{}", acked.len()))],
    )
    .await
    .expect(201);
    assert_eq!(retried["position"].as_u64(), Some(head + 1));
    acked.push(retried);

    // A restart finds every acknowledged command, no other.
    app.kill();
    app = App::spawn(data_dir.clone(), None, &[]);
    let summary =
        send(&app, Method::GET, &format!("/api/v1/stats/summary?wait_for={}", head + 1), Some(&token), None, &[])
            .await
            .expect(200);
    assert_eq!(summary["found"].as_u64().unwrap() as usize, acked.len(), "every acknowledged command, no other");
    expect_reported(&app, &token, &acked).await;
    app.terminate();
    // No corruption: the views equal a rebuild, and every commit is sealed and chained.
    assert!(rectify(&["rebuild", "--check"], &data_dir).contains("views match a rebuild"));
    rectify(&["audit", "verify"], &data_dir);
    drop(disk);
}

#[tokio::test]
async fn an_unwritable_views_dir_stops_the_service_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let mut app = App::spawn(data_dir.clone(), None, &[]);
    let token = app.token("county_bureau", Some(COUNTY), None);
    let created = send(&app, Method::POST, "/api/v1/problems", Some(&token), Some(report_body(COUNTY, GRID)), &[])
        .await
        .expect(201);
    app.terminate();

    let views = data_dir.join("views");
    let Some(read_only) = Mount::read_only(&views) else {
        eprintln!("skipped: cannot bind-mount read-only here (needs root)");
        return;
    };
    let mut child = Command::new(crate::app::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the service kept running on a read-only views dir");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "exit status {status}");
    // The message names what and where, and why.
    assert!(stderr.contains("opening the views in") && stderr.contains(&views.display().to_string()), "{stderr}");
    assert!(stderr.to_lowercase().contains("read-only file system"), "{stderr}");

    // Writable again: the service starts on the same data, which nothing damaged.
    drop(read_only);
    let app = App::spawn(data_dir.clone(), None, &[]);
    let id = created["id"].as_str().unwrap();
    send(&app, Method::GET, &format!("/api/v1/problems/{id}"), Some(&token), None, &[]).await.expect(200);
    drop(app);
    assert!(rectify(&["rebuild", "--check"], &data_dir).contains("views match a rebuild"));
}
