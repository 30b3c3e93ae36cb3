//! Workloads 1 and 2: the command pipeline (decide, envelope, hash chain, seal journal and signature,
//! append with the expected position) on distinct new problems, against the raw append of the same
//! commits' bytes — pipelined acked JetStream publishes, and the embedded log's durable append.

use super::data::{self, Place};
use super::{Bench, Row, Target};
use crate::pipeline::Pipeline;
use crate::server::Settings;
use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use rectify_domain::{AggregateId, Command, CommandContext, Commit};
use rectify_eventlog::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use rectify_projector::{Projector, ViewStore};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The write side of a service without HTTP: the log wrapped by the sealer, and the pipeline over it.
pub struct Stack {
    pub pipeline: Pipeline,
    audit: Arc<crate::audit::Audit>,
    sealer: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// Starts sealing on `log` (keys and journal in `dir`) and builds a pipeline over it.
    pub async fn start(dir: &Path, log: Arc<dyn EventLog>) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(dir)?;
        let settings = Settings::new(dir);
        let (sealing, audit, sealer) = crate::audit::start(&settings, log).await?;
        let store = ViewStore::open(&dir.join("views"))?;
        let (_, views) = Projector::new(sealing.clone(), store)?;
        Ok(Stack { pipeline: Pipeline::new(sealing, views), audit, sealer })
    }

    /// Seals what is left and stops the sealer.
    pub async fn stop(self) {
        self.audit.finish().await;
        let _ = self.sealer.await;
    }
}

type Prepared = (AggregateId, CommandContext, Command);

fn prepare(places: &[Place], run: &str, n: u64) -> Vec<Prepared> {
    (0..n).map(|i| data::new_problem(places, run, i)).collect()
}

/// Runs `commands` through `pipeline`, `in_flight` at a time (each on its own task, so deciding and hashing
/// spread over the cores, as in the service), driven from a task of the runtime as the service's connections
/// are. Returns the elapsed time.
pub async fn run_pipeline(
    pipeline: &Pipeline,
    commands: Vec<Prepared>,
    in_flight: usize,
    done: &Arc<AtomicU64>,
) -> anyhow::Result<Duration> {
    let (pipeline, done) = (pipeline.clone(), done.clone());
    let driver = tokio::spawn(async move {
        let started = Instant::now();
        let mut running = futures::stream::iter(commands)
            .map(|(id, ctx, command)| {
                let pipeline = pipeline.clone();
                tokio::spawn(async move { pipeline.run(&id, &ctx, &command, None).await })
            })
            .buffer_unordered(in_flight.max(1));
        while let Some(outcome) = running.next().await {
            let accepted = outcome.context("a pipeline task panicked")?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
            anyhow::ensure!(!accepted.duplicate, "a fresh command was answered as a duplicate");
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(started.elapsed())
    });
    driver.await.context("the pipeline driver panicked")?
}

/// Appends pre-built `commits` (each the first of its stream) to `log`, `in_flight` at a time.
async fn run_raw_appends(
    log: &EmbeddedLog,
    commits: Vec<Commit>,
    in_flight: usize,
    done: &AtomicU64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut running = futures::stream::iter(commits)
        .map(|commit| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&commit, 0).await })
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(outcome) = running.next().await {
        outcome.context("an append task panicked")??;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(started.elapsed())
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Rounds of workloads 1 and 2: a raw round, then a pipeline round, and again. On shared cores the
/// machine's speed drifts by a fifth within a minute (and a disk's flush latency more), so each pipeline
/// round is compared with the raw round just before it, and the row is the round whose ratio is the median.
const ROUNDS: usize = 5;

/// The median round by ratio of `rounds` (pipeline, raw), and the rounds as text, in the order measured.
fn median_round(mut rounds: Vec<(f64, f64)>) -> ((f64, f64), String) {
    let listed: Vec<String> = rounds.iter().map(|(p, r)| format!("{:.1}k/{:.1}k", p / 1000.0, r / 1000.0)).collect();
    rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    (rounds[rounds.len() / 2], listed.join(" "))
}

/// Workload 2: the embedded log.
pub async fn embedded(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let n = bench.commands();
    let c = bench.concurrency;
    let (mut rounds, mut bytes) = (Vec::new(), 0);
    for round in 1..=ROUNDS {
        let root = bench.dir.join(format!("w2-{round}"));
        let run = format!("{}{round}", bench.run);
        let commits: Vec<Commit> =
            (0..n).map(|i| data::new_problem_commit(&bench.places, &format!("{run}r"), i)).collect();
        bytes = commits.iter().map(|c| c.encode().len()).sum::<usize>() / n.max(1) as usize;
        let log = EmbeddedLog::open(&root.join("raw")).context("opening the raw embedded log")?;
        let ticker = bench.ticker(&format!("2 raw embedded durable append, round {round}"), n);
        let raw = run_raw_appends(&log, commits, c, &ticker.count).await?;
        ticker.finish();
        log.close().await;

        let log = EmbeddedLog::open(&root.join("pipeline/log")).context("opening the embedded log")?;
        let stack = Stack::start(&root.join("pipeline"), Arc::new(log.clone())).await?;
        let commands = prepare(&bench.places, &format!("{run}p"), n);
        let ticker = bench.ticker(&format!("2 command pipeline on the embedded log, round {round}"), n);
        let piped = run_pipeline(&stack.pipeline, commands, c, &ticker.count).await?;
        ticker.finish();
        stack.stop().await;
        log.close().await;
        super::settle(&root);
        rounds.push((rate(n, piped), rate(n, raw)));
    }
    let ((figure, baseline), listed) = median_round(rounds);
    Ok(vec![Row::new(
        "2",
        format!(
            "command pipeline, embedded log ({n} new problems, {c} in flight; the median of {ROUNDS} rounds by ratio, \
             pipeline/raw: {listed})"
        ),
        figure,
        "commands/s",
        format!("EmbeddedLog::append of the same commits (~{bytes} B each), in the round before"),
        baseline,
        Target::RatioAtLeast(0.5),
    )])
}

/// Workload 1: JetStream (`url`).
pub async fn jetstream(bench: &Bench, url: &str) -> anyhow::Result<Vec<Row>> {
    let n = bench.commands();
    let c = bench.concurrency;
    // (pipeline, raw) commands per second, in the order measured.
    let (mut rounds, mut bytes) = (Vec::new(), 0);
    for round in 1..=ROUNDS {
        let (raw, size) = jetstream_raw(bench, url, round).await?;
        rounds.push((jetstream_pipeline(bench, url, round).await?, raw));
        bytes = size;
    }
    let ((figure, baseline), listed) = median_round(rounds);
    Ok(vec![Row::new(
        "1",
        format!(
            "command pipeline, JetStream ({n} new problems, {c} in flight; the median of {ROUNDS} rounds by ratio, \
             pipeline/raw: {listed})"
        ),
        figure,
        "commands/s",
        format!("pipelined acked publish of the same bytes (~{bytes} B each), in the round before"),
        baseline,
        Target::RatioAtLeast(0.5),
    )])
}

/// One round of the raw baseline: the pipeline's own commit bytes, on the subjects the log would use.
/// Returns the rate and the mean message size.
async fn jetstream_raw(bench: &Bench, url: &str, round: usize) -> anyhow::Result<(f64, usize)> {
    let n = bench.commands();
    let run = format!("{}{round}", bench.run);
    let raw_prefix = format!("rectify_bench.{run}.raw");
    let messages: Vec<(String, Bytes)> = (0..n)
        .map(|i| {
            let commit = data::new_problem_commit(&bench.places, &format!("{run}r"), i);
            let id = commit.stream();
            let county = id.county();
            (format!("{raw_prefix}.{}.{county}.{id}", county.prefecture()), Bytes::from(commit.encode()))
        })
        .collect();
    let bytes: usize = messages.iter().map(|(_, p)| p.len()).sum();
    let raw_stream = format!("RECTIFY_BENCH_RAW_{}", run.to_uppercase());
    let ticker = bench.ticker(&format!("1 raw JetStream acked publish, round {round}"), n);
    let raw = rectify_eventlog::baseline::jetstream_publish(
        url,
        &raw_stream,
        &raw_prefix,
        messages,
        bench.concurrency,
        &ticker.count,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    ticker.finish();
    Ok((rate(n, raw), bytes / n.max(1) as usize))
}

/// One round of the pipeline, on streams of its own. Returns the rate.
async fn jetstream_pipeline(bench: &Bench, url: &str, round: usize) -> anyhow::Result<f64> {
    let n = bench.commands();
    let run = format!("{}{round}", bench.run);
    let (tag, prefix) = (run.to_uppercase(), format!("rectify_bench.{run}"));
    let config = JetStreamConfig {
        url: url.to_owned(),
        stream: format!("RECTIFY_BENCH_{tag}"),
        subject_prefix: format!("{prefix}.events"),
        audit_stream: format!("RECTIFY_BENCH_AUDIT_{tag}"),
        audit_subject_prefix: format!("{prefix}.audit"),
        ..Default::default()
    };
    let streams = [config.stream.clone(), config.audit_stream.clone()];
    let outcome = async {
        let log = JetStreamLog::connect(config).await.context("connecting to JetStream")?;
        let stack = Stack::start(&bench.dir.join(format!("w1-{round}")), Arc::new(log)).await?;
        let commands = prepare(&bench.places, &format!("{run}p"), n);
        let ticker = bench.ticker(&format!("1 command pipeline on JetStream, round {round}"), n);
        let piped = run_pipeline(&stack.pipeline, commands, bench.concurrency, &ticker.count).await;
        ticker.finish();
        stack.stop().await;
        piped
    }
    .await;
    rectify_eventlog::baseline::delete_streams(url, &streams).await;
    Ok(rate(n, outcome?))
}
