//! Test harness shared by the end-to-end tests (`e2e/`) and the crates' integration tests.
//!
//! [`NatsServer`] runs a real `nats-server` with JetStream on a free loopback port and its own store
//! directory, and kills it and removes the directory when dropped. The binary is `$NATS_SERVER_BIN` if set,
//! else `nats-server` from `PATH`. The server's log goes to a file in its directory (shown when it fails to
//! start) unless `RECTIFY_TEST_LOG` is set, in which case it is written to the test's stderr.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A `nats-server -js` owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    bin: OsString,
    args: Vec<OsString>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts the default binary with JetStream and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with(binary(), &[])
    }

    /// Starts `bin` with JetStream and `extra_args` (e.g. `-c some.conf`) and waits until it accepts
    /// connections.
    pub fn start_with(bin: impl Into<OsString>, extra_args: &[&str]) -> NatsServer {
        let dir = tempfile::Builder::new().prefix("rectify-nats-").tempdir().expect("create temp dir for nats-server");
        let port = free_port();
        let store = dir.path().join("store");
        let mut args: Vec<OsString> = vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
            "-sd".into(),
            store.into(),
        ];
        if !logging() {
            args.extend(["-l".into(), dir.path().join("server.log").into()]);
        }
        args.extend(extra_args.iter().map(OsString::from));
        let mut server = NatsServer { bin: bin.into(), args, port, dir, child: None };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port (stays the same across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the JetStream store (and the log file when logs are quiet).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL, as a crash would; its store is kept for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The version of the binary this server runs, e.g. `(2, 9, 10)`.
    pub fn version(&self) -> (u64, u64, u64) {
        version_of(&self.bin)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).stdin(Stdio::null());
        if !logging() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {:?}: {e} (set NATS_SERVER_BIN)", self.bin));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Retries short connection attempts until the server greets with its `INFO` line. The server opens
    /// its client port only after JetStream (and any stored stream) is up, so a greeting means ready.
    fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        loop {
            if greets(addr) {
                return;
            }
            let child = self.child.as_mut().expect("spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!("nats-server exited with {status} before accepting connections\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!("nats-server did not accept connections on {addr} within {START_TIMEOUT:?}\n{}", self.log());
            }
            // A refused connection returns at once: back off a little so the loop does not spin.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_else(|_| "(no server log)".into())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // The TempDir field removes the store after this.
        self.stop();
    }
}

/// The `nats-server` binary the harness runs: `$NATS_SERVER_BIN`, else `nats-server` from `PATH`.
pub fn binary() -> OsString {
    std::env::var_os("NATS_SERVER_BIN").unwrap_or_else(|| "nats-server".into())
}

/// Runs `bin --version` and parses `nats-server: v2.9.10` into `(2, 9, 10)`.
pub fn version_of(bin: impl AsRef<std::ffi::OsStr>) -> (u64, u64, u64) {
    let out = Command::new(bin.as_ref()).arg("--version").output().expect("run nats-server --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    parse_version(&text).unwrap_or_else(|| panic!("unexpected `nats-server --version` output: {text:?}"))
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u64>());
    Some((parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?))
}

/// Whether server logs should be shown (`RECTIFY_TEST_LOG` is set).
pub fn logging() -> bool {
    std::env::var_os("RECTIFY_TEST_LOG").is_some()
}

/// A port that was free a moment ago (the OS picks it for port 0).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// Connects once and reads the server's first line; true if it is a NATS `INFO`.
fn greets(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// The default binary's version (see [`version_of`]).
pub fn version() -> (u64, u64, u64) {
    version_of(binary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.9.10\n"), Some((2, 9, 10)));
        assert_eq!(parse_version("nats-server: v2.15.1-beta"), Some((2, 15, 1)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start();
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(greets(addr));
        server.stop();
        assert!(!greets(addr));
        server.restart();
        assert!(greets(addr));
        let dir = server.dir().to_owned();
        drop(server);
        assert!(!dir.exists());
    }
}
