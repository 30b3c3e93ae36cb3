//! `rectify bench`: each workload next to its raw baseline, measured in the same run with the same message
//! sizes and concurrency, printed as one table (or JSON with `--json`); progress goes to stderr.
//!
//! 1. command pipeline on JetStream vs pipelined acked publishes of the same bytes ([`log`]);
//! 2. command pipeline on the embedded log vs its durable append of the same commits ([`log`]);
//! 3. projector rebuild of N events vs an ordered replay of the stored bytes into sled batches ([`views`]);
//! 4. HTTP commands: throughput and latency at a fixed offered rate vs a no-op handler ([`http`]);
//! 5. read-your-writes lag (accepted → visible in the summary) vs reading the summary ([`http`]);
//! 6. cold load of one aggregate with N events in the log vs with N/100 ([`views`]);
//! 7. peak RSS of `rectify serve` with N events in its views vs with none ([`views`]).
//!
//! Without `--nats`, JetStream rows run on a nats-server started here (from `NATS_SERVER_BIN` or `PATH`) on
//! a free port with a temporary store; with neither, they are skipped with a note.

pub mod data;
pub mod http;
pub mod log;
pub mod views;

use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What `rectify bench` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Run the JetStream rows against this server (default: start a nats-server if one is installed).
    #[arg(long, env = "RECTIFY_NATS")]
    pub nats: Option<String>,
    /// Events in the log for the rebuild, cold-load and memory rows; the other workloads scale with it
    /// (pipelines N/10 commands, HTTP N/50 and N/100 requests, the small log for cold loads N/100).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Commands (publishes, requests) in flight.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Offered rate of the HTTP latency and read-your-writes rows, commands per second (open loop).
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Only these workloads (e.g. `--only 1,2`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<u32>,
    /// Scratch directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the scratch directory (its `w3` is a data dir with N events that `rectify serve` can open).
    #[arg(long)]
    pub keep: bool,
}

/// What every workload shares.
pub struct Bench {
    pub events: u64,
    pub concurrency: usize,
    pub rate: u64,
    /// Unique per run: ids, command ids and stream names of this run carry it.
    pub run: String,
    pub dir: PathBuf,
    pub places: Vec<data::Place>,
}

impl Bench {
    /// Commands of the pipeline workloads.
    pub fn commands(&self) -> u64 {
        (self.events / 10).max(50)
    }

    /// Prints progress of a phase of `total` steps to stderr every second until [`Ticker::finish`].
    pub fn ticker(&self, label: &str, total: u64) -> Ticker {
        Ticker::start(label, total)
    }
}

/// A progress line on stderr.
pub struct Ticker {
    pub count: Arc<AtomicU64>,
    label: String,
    total: u64,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    fn start(label: &str, total: u64) -> Ticker {
        let count = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (c, l) = (count.clone(), label.to_owned());
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                let n = c.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                eprint!("\r  {l}: {n}/{total} ({rate:.0}/s)      ");
                let _ = std::io::stderr().flush();
            }
        });
        Ticker { count, label: label.to_owned(), total, started, task }
    }

    /// Ends the progress line with the elapsed time.
    pub fn finish(self) {
        self.task.abort();
        let n = self.count.load(Ordering::Relaxed);
        eprintln!(
            "\r  {}: {n}/{} in {:.2} s                ",
            self.label,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// What a row promises.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// figure / baseline ≥ x.
    RatioAtLeast(f64),
    /// figure / baseline ≥ x and figure ≥ y.
    RatioAndFigureAtLeast(f64, f64),
    /// figure < x.
    Below(f64),
    /// figure / baseline < x (a cost that must not grow).
    RatioBelow(f64),
    None,
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(r) => format!("ratio ≥ {r:.2}"),
            Target::RatioAndFigureAtLeast(r, f) => format!("ratio ≥ {r:.2}, ≥ {} {unit}", thousands(f)),
            Target::Below(x) => format!("< {} {unit}", number(x)),
            Target::RatioBelow(r) => format!("ratio < {r:.1}"),
            Target::None => String::new(),
        }
    }

    fn met(self, figure: f64, ratio: f64) -> Option<bool> {
        match self {
            Target::RatioAtLeast(r) => Some(ratio >= r),
            Target::RatioAndFigureAtLeast(r, f) => Some(ratio >= r && figure >= f),
            Target::Below(x) => Some(figure < x),
            Target::RatioBelow(r) => Some(ratio < r),
            Target::None => None,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub name: String,
    pub figure: f64,
    pub unit: String,
    pub baseline: f64,
    pub baseline_name: String,
    /// figure / baseline.
    pub ratio: f64,
    pub target: String,
    pub met: Option<bool>,
    /// Why the row was not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Row {
    pub fn new(
        workload: &str,
        name: impl Into<String>,
        figure: f64,
        unit: &str,
        baseline_name: impl Into<String>,
        baseline: f64,
        target: Target,
    ) -> Row {
        let ratio = if baseline > 0.0 { figure / baseline } else { 0.0 };
        Row {
            workload: workload.into(),
            name: name.into(),
            figure,
            unit: unit.into(),
            baseline,
            baseline_name: baseline_name.into(),
            ratio,
            target: target.describe(unit),
            met: target.met(figure, ratio),
            skipped: None,
        }
    }

    fn skipped(workload: &str, name: &str, why: &str) -> Row {
        Row {
            workload: workload.into(),
            name: name.into(),
            figure: 0.0,
            unit: String::new(),
            baseline: 0.0,
            baseline_name: String::new(),
            ratio: 0.0,
            target: String::new(),
            met: None,
            skipped: Some(why.into()),
        }
    }
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

/// A figure with sensible precision: thousands separators for big ones, decimals for small ones.
fn number(x: f64) -> String {
    if x.abs() >= 100.0 {
        thousands(x)
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The machine the bench ran on, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_mb: u64,
    pub cpu: String,
    pub nats_server: Option<String>,
}

fn machine(nats_server: Option<String>) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    Machine { cores: std::thread::available_parallelism().map_or(1, |n| n.get()), memory_mb, cpu, nats_server }
}

/// A nats-server this bench started, killed (and its store removed) on drop.
struct OwnNats {
    child: Child,
    url: String,
    version: String,
    _dir: tempfile::TempDir,
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `NATS_SERVER_BIN`, else `nats-server` on `PATH`.
fn find_nats_server() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("nats-server")).find(|p| p.is_file())
}

fn start_nats(bin: &std::path::Path) -> anyhow::Result<OwnNats> {
    use anyhow::Context;
    let dir = tempfile::Builder::new().prefix("rectify-bench-nats-").tempdir()?;
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("nats-server: ").to_owned())
        .unwrap_or_default();
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("store"))
        .arg("-l")
        .arg(dir.path().join("server.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let own = OwnNats { child, url: format!("nats://127.0.0.1:{port}"), version, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let greeted = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("INFO ")
        });
        if greeted {
            return Ok(own);
        }
        anyhow::ensure!(Instant::now() < deadline, "nats-server did not accept connections within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets the next workload start on a quiet disk: removes a finished workload's files and waits for the
/// kernel to write back what is still dirty, so that a row's fsyncs do not wait behind the rows before it.
fn settle(done: &std::path::Path) {
    let _ = std::fs::remove_dir_all(done);
    let _ = Command::new("sync").status();
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub events: u64,
    pub concurrency: usize,
    pub rate: u64,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    /// The table (Markdown, so it can be pasted into the README as it is).
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| # | workload | figure | baseline (same run) | ratio | target |\n");
        out.push_str("|---|---|---:|---|---:|---|\n");
        for r in &self.rows {
            if let Some(why) = &r.skipped {
                out.push_str(&format!("| {} | {} | skipped | {why} | | |\n", r.workload, r.name));
                continue;
            }
            let met = match r.met {
                Some(true) => " ✓",
                Some(false) => " ✗",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} {} | {} {}: {} | {:.2} | {}{met} |\n",
                r.workload,
                r.name,
                number(r.figure),
                r.unit,
                number(r.baseline),
                r.unit,
                r.baseline_name,
                r.ratio,
                r.target
            ));
        }
        out.push_str(&format!(
            "\n{} cores ({}), {} MB RAM; nats-server {}; N = {} events, {} in flight, {} commands/s offered.\n",
            self.machine.cores,
            self.machine.cpu,
            self.machine.memory_mb,
            self.machine.nats_server.as_deref().unwrap_or("none"),
            thousands(self.events as f64),
            self.concurrency,
            self.rate
        ));
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }
}

/// Runs the bench and prints the report.
pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    // Progress owns stderr: only errors are logged unless RUST_LOG says otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let scratch = match &options.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new().prefix("rectify-bench-").tempdir_in(d)?
        }
        None => tempfile::Builder::new().prefix("rectify-bench-").tempdir()?,
    };
    let run = ulid::Ulid::new().to_string().to_lowercase()[16..].to_owned();
    let bench = Bench {
        events: options.events.max(100),
        concurrency: options.concurrency.max(1),
        rate: options.rate.max(1),
        run,
        dir: scratch.path().to_owned(),
        places: data::places(&crate::regions::Regions::guizhou()),
    };
    let wanted = |w: u32| options.only.is_empty() || options.only.contains(&w);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    eprintln!(
        "rectify bench: N = {} events, {} in flight, scratch in {}",
        bench.events,
        bench.concurrency,
        bench.dir.display()
    );

    let mut own = None;
    let mut nats_version = None;
    let url = match &options.nats {
        Some(url) => Some(url.clone()),
        None if wanted(1) => match find_nats_server() {
            Some(bin) => match start_nats(&bin) {
                Ok(server) => {
                    eprintln!("started {} ({}) at {}", bin.display(), server.version, server.url);
                    nats_version = Some(server.version.clone());
                    let url = server.url.clone();
                    own = Some(server);
                    Some(url)
                }
                Err(e) => {
                    notes.push(format!("JetStream rows skipped: could not start {}: {e:#}", bin.display()));
                    None
                }
            },
            None => {
                notes.push(
                    "JetStream rows skipped: no nats-server on PATH (set NATS_SERVER_BIN or pass --nats URL)".into(),
                );
                None
            }
        },
        None => None,
    };
    if wanted(1) {
        match &url {
            Some(url) => {
                if nats_version.is_none() {
                    nats_version = Some(format!("at {url}"));
                }
                rows.extend(log::jetstream(&bench, url).await?);
            }
            None => rows.push(Row::skipped("1", "command pipeline, JetStream", "no nats-server (see note)")),
        }
    }
    drop(own);
    settle(&bench.dir.join("w1"));
    if wanted(2) {
        rows.extend(log::embedded(&bench).await?);
    }
    if wanted(4) || wanted(5) {
        rows.extend(http::run(&bench, wanted(4), wanted(5), &mut notes).await?);
        settle(&bench.dir.join("w4"));
    }
    if wanted(3) || wanted(6) || wanted(7) {
        rows.extend(views::run(&bench, wanted(3), wanted(6), wanted(7), &mut notes).await?);
    }
    rows.sort_by(|a, b| a.workload.cmp(&b.workload));

    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(nats_version),
        events: bench.events,
        concurrency: bench.concurrency,
        rate: bench.rate,
        rows,
        notes,
    };
    if options.keep {
        eprintln!("kept {}", scratch.keep().display());
    }
    let mut out = std::io::stdout().lock();
    if options.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    out.flush()?;
    Ok(())
}
