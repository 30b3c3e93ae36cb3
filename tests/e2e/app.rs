//! Runs the real `rectify` binary: builds it once, starts it on port 0 with a temp data dir, reads the
//! address it prints, and kills it on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The `rectify` binary, built (once per test process) by the same cargo that runs the tests.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "rectify-api", "--bin", "rectify"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the rectify binary failed");
        // tests run from <target>/debug/deps/e2e-<hash>; the binary is in <target>/debug.
        let exe = std::env::current_exe().expect("test executable path");
        let bin = exe.parent().and_then(Path::parent).expect("target dir").join("rectify");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
}

/// One running `rectify serve`.
pub struct App {
    pub url: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    child: Child,
    pub http: reqwest::Client,
}

impl App {
    /// Starts `rectify serve` on the embedded log in a fresh data dir.
    pub fn start() -> App {
        let dir = tempfile::Builder::new().prefix("rectify-e2e-").tempdir().expect("temp dir");
        let data_dir = dir.path().to_owned();
        App::spawn(data_dir, Some(dir), &[])
    }

    /// Starts `rectify serve` on NATS at `url`, with its own data dir for views and tokens.
    pub fn start_nats(url: &str) -> App {
        let dir = tempfile::Builder::new().prefix("rectify-e2e-").tempdir().expect("temp dir");
        let data_dir = dir.path().to_owned();
        App::spawn(data_dir, Some(dir), &["--nats", url])
    }

    /// Starts `rectify serve` in a fresh data dir with extra arguments.
    pub fn spawn_with(extra: &[&str]) -> App {
        let dir = tempfile::Builder::new().prefix("rectify-e2e-").tempdir().expect("temp dir");
        let data_dir = dir.path().to_owned();
        App::spawn(data_dir, Some(dir), extra)
    }

    /// Starts `rectify serve` on an existing data dir (to restart after a kill).
    pub fn spawn(data_dir: PathBuf, dir: Option<tempfile::TempDir>, extra: &[&str]) -> App {
        App::spawn_env(data_dir, dir, extra, &[])
    }

    /// [`App::spawn`] with extra environment variables for the service.
    pub fn spawn_env(data_dir: PathBuf, dir: Option<tempfile::TempDir>, extra: &[&str], env: &[(&str, &str)]) -> App {
        let stderr = if std::env::var_os("RECTIFY_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        App::spawn_stderr(data_dir, dir, extra, env, stderr)
    }

    /// [`App::spawn_env`] with the service's stderr (its log) going to `stderr`.
    pub fn spawn_stderr(
        data_dir: PathBuf,
        dir: Option<tempfile::TempDir>,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> App {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            .env("RUST_LOG", std::env::var("RECTIFY_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn rectify serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut first).expect("read address line");
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        App { url, data_dir, _dir: dir, child, http: reqwest::Client::new() }
    }

    /// Creates a token with `rectify token add` and returns it.
    pub fn token(&self, role: &str, region: Option<&str>, grid: Option<&str>) -> String {
        let mut cmd = Command::new(binary());
        cmd.args(["token", "add", "--role", role, "--data-dir"]).arg(&self.data_dir);
        if let Some(r) = region {
            cmd.args(["--region", r]);
        }
        if let Some(g) = grid {
            cmd.args(["--grid", g]);
        }
        let out = cmd.output().expect("run rectify token add");
        assert!(out.status.success(), "token add failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert_eq!(stdout.lines().count(), 1, "token add prints exactly one line");
        stdout.trim().to_owned()
    }

    /// Stops the process with SIGTERM and waits for it: a graceful shutdown (in-flight requests finish, the
    /// views are flushed, every appended commit is sealed).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("wait for the service")
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `<url><path>`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}
