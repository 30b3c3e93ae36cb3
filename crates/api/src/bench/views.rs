//! Workloads 3, 6 and 7 on one embedded log of N events (whole problem lifecycles over the real counties,
//! grids and sectors), laid out as a service's data dir:
//!
//! - 6: cold load of one aggregate for a command (`Pipeline::load`: the views' state checked against the
//!   log's stream head, else its stream read and folded) after reopening the log and the views, with N/100
//!   events in the log (a copy of the log kept when it held that many) beside N: the cost must not grow
//!   with the log;
//! - 3: a projector rebuild of the N events into fresh views, against an ordered replay of the stored
//!   bytes into sled batches of the projector's size;
//! - 7: peak RSS (VmHWM) of the real `rectify serve` on that data dir once ready and queried, restarted
//!   (as a service usually starts: its audit index kept), against the same on an empty data dir.

use super::data::{self, GROUP};
use super::{Bench, Row, Target};
use anyhow::Context;
use rectify_domain::problem::State;
use rectify_domain::{AggregateId, evolve};
use rectify_eventlog::{EmbeddedLog, EventLog};
use rectify_projector::{Generations, Projector};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Appends problem lifecycles to a log, one step of a group of problems at a time.
struct Builder {
    run: String,
    places: Arc<Vec<data::Place>>,
    group: u64,
    /// Next (group, step) to append.
    at: (u64, usize),
    /// State and last position of every stream of the current group.
    states: HashMap<AggregateId, (State, u64)>,
    problems: Vec<AggregateId>,
    events: u64,
}

impl Builder {
    fn new(bench: &Bench) -> Builder {
        Builder {
            run: format!("{}h", bench.run),
            places: Arc::new(bench.places.clone()),
            group: (bench.events / 64).clamp(16, GROUP as u64),
            at: (0, 0),
            states: HashMap::new(),
            problems: Vec::new(),
            events: 0,
        }
    }

    /// Appends steps until the log holds at least `target` events.
    async fn fill(&mut self, log: &EmbeddedLog, target: u64, done: &AtomicU64) -> anyhow::Result<()> {
        while self.events < target {
            let (g, step) = self.at;
            let mut tasks = Vec::new();
            for i in g * self.group..(g + 1) * self.group {
                let commands = data::lifecycle_step(&self.places, &self.run, i, step).expect("steps 0..=5");
                if step == 0 {
                    self.problems.push(commands.last().expect("a report").0.clone());
                }
                let mut streams: Vec<(AggregateId, State, u64)> = commands
                    .iter()
                    .map(|(id, ..)| {
                        let (state, last) = self.states.remove(id).unwrap_or_default();
                        (id.clone(), state, last)
                    })
                    .collect();
                streams.dedup_by(|a, b| a.0 == b.0);
                let (log, run) = (log.clone(), self.run.clone());
                tasks.push(tokio::spawn(async move {
                    let appended = commands.len() as u64;
                    for (n, (id, actor, command, at)) in commands.into_iter().enumerate() {
                        let slot = streams.iter_mut().find(|s| s.0 == id).expect("listed above");
                        let commit = data::commit(&id, &slot.1, &actor, &command, format!("{run}-{i}-{step}-{n}"), at);
                        let appended = log.append(&commit, slot.2).await?;
                        slot.1 = commit.events.iter().fold(std::mem::take(&mut slot.1), evolve);
                        slot.2 = appended.position;
                    }
                    anyhow::Ok((streams, appended))
                }));
            }
            for task in tasks {
                let (streams, appended) = task.await.context("a builder task panicked")??;
                self.events += appended;
                for (id, state, last) in streams {
                    self.states.insert(id, (state, last));
                }
            }
            done.store(self.events.min(target), Ordering::Relaxed);
            self.at = if step == 5 {
                self.states.clear();
                (g + 1, 0)
            } else {
                (g, step + 1)
            };
        }
        Ok(())
    }
}

/// Copies directory `from` (a closed log or views) into `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let into = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &into)?;
        } else {
            std::fs::copy(entry.path(), into)?;
        }
    }
    Ok(())
}

/// Opens the log of `dir`.
fn open_log(dir: &Path) -> anyhow::Result<EmbeddedLog> {
    Ok(EmbeddedLog::open(dir)?)
}

/// The pipeline's load of one aggregate for a command (the views' state when they include the stream's last
/// commit, else the stream read and folded), over a log and its views.
struct Loads {
    log: EmbeddedLog,
    pipeline: crate::pipeline::Pipeline,
    /// Distinct problems (a repeat would find its pages cached), picked at random.
    picks: Vec<AggregateId>,
}

impl Loads {
    /// Catches the views of `views` up with the log of `log_dir`, then opens both again (no sled cache of
    /// their own yet) under a pipeline, and picks `samples` of `problems` by a seeded shuffle.
    async fn open(log_dir: &Path, views: &Path, problems: &[AggregateId], samples: usize) -> anyhow::Result<Loads> {
        let open = || async {
            let log = open_log(log_dir)?;
            let (store, _) = Generations::new(views).open_current()?;
            let (projector, handle) = Projector::new(Arc::new(log.clone()), store.clone())?;
            anyhow::Ok((log, store, projector, handle))
        };
        let (log, store, projector, _) = open().await?;
        projector.catch_up().await?;
        store.flush().await?;
        drop((projector, store));
        log.close().await;

        let (log, _, projector, views) = open().await?;
        drop(projector);
        let pipeline = crate::pipeline::Pipeline::new(Arc::new(log.clone()), views);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut order: Vec<usize> = (0..problems.len()).collect();
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let picks = order.iter().take(samples).map(|&i| problems[i].clone()).collect();
        Ok(Loads { log, pipeline, picks })
    }

    /// The mean time of one load, over the picks.
    async fn pass(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        for id in &self.picks {
            let (state, _) = self.pipeline.load(id).await.map_err(|e| anyhow::anyhow!("loading {id}: {e}"))?;
            anyhow::ensure!(state.version > 0, "{id} has no events");
        }
        Ok(started.elapsed() / self.picks.len().max(1) as u32)
    }

    async fn close(self) {
        drop(self.pipeline);
        self.log.close().await;
    }
}

/// Workload 6 on a small and a large log: the first pass over freshly opened logs and views (nothing
/// cached), then the median of five more over the same problems (their pages cached: what is left is the
/// lookup itself), small and large alternating so that a machine whose speed drifts does not favour one
/// (a pass takes a few milliseconds).
async fn cold_loads(small: &Loads, large: &Loads) -> anyhow::Result<[(Duration, Duration); 2]> {
    let first = [small.pass().await?, large.pass().await?];
    let mut warm = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        warm[0].push(small.pass().await?);
        warm[1].push(large.pass().await?);
    }
    Ok([0, 1].map(|i| {
        warm[i].sort();
        (first[i], warm[i][warm[i].len() / 2])
    }))
}

/// Peak RSS in MB of `rectify serve` on `data_dir` after it is ready, has indexed `head` commits for audit
/// and answered a few queries.
async fn serve_peak_rss(data_dir: &Path, head: u64) -> anyhow::Result<f64> {
    use std::io::{BufRead, BufReader};
    let token = crate::tokens::add(
        data_dir,
        rectify_domain::Role::Inspector,
        crate::regions::Regions::guizhou().root,
        None,
        "bench",
    )?;
    // sled lets go of the views' lock shortly after their last handle is dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exe = std::env::current_exe().context("the rectify binary")?;
    let mut child = std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("spawning rectify serve")?;
    let result = async {
        let mut first = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut first)?;
        let url = first.trim().strip_prefix("listening on ").context("no address from rectify serve")?.to_owned();
        let client = reqwest::Client::new();
        let get = |path: String| {
            let (client, token, url) = (client.clone(), token.clone(), url.clone());
            async move { client.get(format!("{url}{path}")).bearer_auth(token).send().await.map(|r| r.status()) }
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        let size = if head > 0 { format!("?size={head}") } else { String::new() };
        loop {
            let ready = get("/readyz".into()).await.is_ok_and(|s| s.is_success())
                && get(format!("/api/v1/audit/checkpoint{size}")).await.is_ok_and(|s| s.is_success());
            if ready {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "rectify serve was not ready within 10 minutes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for path in [
            "/api/v1/stats/summary",
            "/api/v1/stats/regions",
            "/api/v1/stats/sectors",
            "/api/v1/stats/trend",
            "/api/v1/problems?limit=100",
            "/api/v1/problems?status=closed&limit=100",
        ] {
            for _ in 0..5 {
                get(path.into()).await?;
            }
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")?;
        Ok(kb / 1024.0)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Workloads 3, 6 and 7.
pub async fn run(
    bench: &Bench,
    rebuild: bool,
    cold: bool,
    rss: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Row>> {
    let data_dir = bench.dir.join("w3");
    let log_dir = data_dir.join("log");
    let total = bench.events;
    let small = (total / 100).max(50);
    let samples = 1000;
    let mut rows = Vec::new();
    let mut builder = Builder::new(bench);

    let log = open_log(&log_dir)?;
    let ticker = bench.ticker(&format!("building a log of {small} events"), small);
    builder.fill(&log, small, &ticker.count).await?;
    ticker.finish();
    log.close().await;
    // Workload 6 compares this log with the large one it grows into: keep a copy.
    let small_dir = bench.dir.join("w6-small");
    let small_problems = builder.problems.len();
    if cold {
        copy_dir(&log_dir, &small_dir.join("log"))?;
    }

    let log = open_log(&log_dir)?;
    let ticker = bench.ticker(&format!("building a log of {total} events"), total);
    builder.fill(&log, total, &ticker.count).await?;
    ticker.finish();
    let events = builder.events;
    let head = log.head().await?;
    log.close().await;
    drop(builder.states);
    if rebuild {
        let log = open_log(&log_dir)?;
        let ticker = bench.ticker("3 raw replay + sled batch write", head);
        let (replayed, raw) = {
            let (log, into, count) = (log.clone(), bench.dir.join("w3-replay"), ticker.count.clone());
            tokio::task::spawn_blocking(move || {
                rectify_eventlog::baseline::embedded_replay_write(&log, &into, 2048, &count)
            })
            .await?
            .map_err(anyhow::Error::msg)?
        };
        ticker.finish();
        anyhow::ensure!(replayed == head, "replayed {replayed} commits of {head}");
        let _ = std::fs::remove_dir_all(bench.dir.join("w3-replay"));

        let generations = Generations::new(data_dir.join("views"));
        let (store, _) = generations.open_current()?;
        let (projector, _) = Projector::new(Arc::new(log.clone()), store.clone())?;
        let ticker = bench.ticker("3 projector rebuild", head);
        let started = Instant::now();
        let count = ticker.count.clone();
        let position = projector.catch_up_to(head, |at| count.store(at, Ordering::Relaxed)).await?;
        let elapsed = started.elapsed();
        ticker.finish();
        anyhow::ensure!(position == head, "the projector stopped at {position} of {head}");
        store.flush().await?;
        drop((projector, store));
        log.close().await;
        let per_sec = |d: Duration| events as f64 / d.as_secs_f64().max(1e-9);
        rows.push(Row::new(
            "3",
            format!("projector rebuild of {events} events into fresh views"),
            per_sec(elapsed),
            "events/s",
            "ordered replay of the stored bytes + sled batch writes of 2048",
            per_sec(raw),
            Target::RatioAndFigureAtLeast(0.5, 100_000.0),
        ));
    } else if rss {
        // The service would otherwise spend its start building the views.
        let log = open_log(&log_dir)?;
        let (store, _) = Generations::new(data_dir.join("views")).open_current()?;
        let (projector, _) = Projector::new(Arc::new(log.clone()), store.clone())?;
        projector.catch_up_to(head, |_| {}).await?;
        store.flush().await?;
        drop((projector, store));
        log.close().await;
    }

    if cold {
        let few =
            Loads::open(&small_dir.join("log"), &small_dir.join("views"), &builder.problems[..small_problems], samples)
                .await?;
        let many = Loads::open(&log_dir, &data_dir.join("views"), &builder.problems, samples).await?;
        let [(small_cold, small_warm), (big_cold, big_warm)] = cold_loads(&few, &many).await?;
        few.close().await;
        many.close().await;
        let _ = std::fs::remove_dir_all(&small_dir);
        rows.push(Row::new(
            "6a",
            format!(
                "aggregate load for a command (the views' ledger row, current as the views include the log's head), log and views just opened, {events} events in the log ({samples} distinct problems, ~6 events each)"
            ),
            big_cold.as_secs_f64() * 1e6,
            "µs",
            format!("the same with {small} events in the log"),
            small_cold.as_secs_f64() * 1e6,
            Target::None,
        ));
        rows.push(Row::new(
            "6b",
            format!(
                "aggregate load, the same problems again (sled pages cached; median of 5 passes, alternating with the small log's), {events} events in the log"
            ),
            big_warm.as_secs_f64() * 1e6,
            "µs",
            format!("the same with {small} events in the log"),
            small_warm.as_secs_f64() * 1e6,
            Target::RatioBelow(2.0),
        ));
    }

    if rss {
        eprintln!("  7 peak RSS of rectify serve (empty, then with {events} events)…");
        let empty = bench.dir.join("w7-empty");
        std::fs::create_dir_all(&empty)?;
        match serve_peak_rss(&empty, 0).await {
            Ok(baseline) => {
                // The first start after the import indexes the whole log for audit and keeps the index's
                // chunks; a restart (the usual start) reads only those.
                let first = serve_peak_rss(&data_dir, head).await?;
                notes.push(format!(
                    "row 7: the first start on the imported log (audit index built by reading the whole log) peaked at {first:.0} MB"
                ));
                let figure = serve_peak_rss(&data_dir, head).await?;
                rows.push(Row::new(
                    "7",
                    format!("peak RSS of rectify serve with {events} events in its views (restarted, ready, queried)"),
                    figure,
                    "MB",
                    "the same with an empty log",
                    baseline,
                    Target::Below(300.0),
                ));
            }
            Err(e) => {
                notes.push(format!("row 7 skipped: cannot run `rectify serve` from this executable: {e:#}"));
                rows.push(Row::skipped("7", "peak RSS of rectify serve", "see note"));
            }
        }
    }
    Ok(rows)
}
