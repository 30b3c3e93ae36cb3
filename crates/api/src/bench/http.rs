//! Workloads 4 and 5: commands over HTTP to the real router (the whole service: embedded log, sealer,
//! projector, watcher) served on 127.0.0.1:0, with keep-alive connections.
//!
//! - throughput: `concurrency` requests in flight, closed loop;
//! - latency at a fixed offered rate, open loop: requests start on schedule whatever the answers do, and
//!   each is timed from its start to its answer;
//! - read-your-writes: for every tenth command of the open loop, the time from its answer to a summary that
//!   includes it (`GET /stats/summary?wait_for=<position>`), next to the time of the same summary read
//!   once it is there.
//!
//! The baseline of the command rows is the same client, bodies and connections against a handler that only
//! reads the body and answers a `CommandAnswer`-shaped JSON.

use super::{Bench, Row, Target};
use crate::server::{Service, Settings};
use anyhow::Context;

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn body(bench: &Bench, i: u64) -> Vec<u8> {
    let place = &bench.places[(i as usize * 7919) % bench.places.len()];
    serde_json::to_vec(&serde_json::json!({
        "region": place.county.to_string(),
        "grid": place.grid,
        "sector": rectify_domain::values::Sector::ALL[(i % 9) as usize],
        "source": {"name": format!("Bench Chemical Co. No. {i}"), "credit_code": ""},
        "severity": "general",
        "description": super::data::DESCRIPTION,
        "discovered_at": "2021-04-02T09:30:00Z",
    }))
    .expect("json")
}

/// Where requests go.
#[derive(Clone)]
struct Endpoint {
    url: String,
    token: String,
}

async fn post(client: &reqwest::Client, to: &Endpoint, body: Vec<u8>) -> anyhow::Result<u64> {
    let response = client
        .post(&to.url)
        .bearer_auth(&to.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    anyhow::ensure!(status.is_success(), "HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    let answer: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(answer["position"].as_u64().unwrap_or(0))
}

/// Closed loop: `n` requests, `in_flight` at a time; requests per second.
async fn throughput(
    client: &reqwest::Client,
    to: &Endpoint,
    bodies: Vec<Vec<u8>>,
    in_flight: usize,
    done: &AtomicU64,
) -> anyhow::Result<f64> {
    let n = bodies.len();
    let started = Instant::now();
    let mut running = futures::stream::iter(bodies).map(|b| post(client, to, b)).buffer_unordered(in_flight.max(1));
    while let Some(r) = running.next().await {
        r?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// What an open-loop run measured.
#[derive(Default)]
struct OpenLoop {
    latencies: Vec<Duration>,
    /// (answer → summary including it, the same summary read again).
    ryw: Vec<(Duration, Duration)>,
}

/// Open loop at `rate` per second. With `summary` (a URL to which `wait_for=<position>` is appended), every
/// tenth answer is followed by the read-your-writes measurement.
async fn open_loop(
    client: &reqwest::Client,
    to: &Endpoint,
    bodies: Vec<Vec<u8>>,
    rate: u64,
    summary: Option<String>,
    done: &Arc<AtomicU64>,
) -> anyhow::Result<OpenLoop> {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let due = started + interval * i as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let (client, to, done, summary) = (client.clone(), to.clone(), done.clone(), summary.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let position = post(&client, &to, body).await?;
            let answered = Instant::now();
            let latency = answered - sent;
            done.fetch_add(1, Ordering::Relaxed);
            let mut ryw = None;
            if let Some(summary) = summary.filter(|_| i % 10 == 0) {
                let url = format!("{summary}&wait_for={position}");
                let read = |url: String| {
                    let (client, token) = (client.clone(), to.token.clone());
                    async move {
                        let r = client.get(url).bearer_auth(token).send().await?;
                        let status = r.status();
                        let bytes = r.bytes().await?;
                        anyhow::ensure!(status.is_success(), "summary: HTTP {status}");
                        let s: serde_json::Value = serde_json::from_slice(&bytes)?;
                        anyhow::ensure!(s["position"].as_u64() >= Some(position), "the summary missed the write");
                        Ok(())
                    }
                };
                read(url.clone()).await?;
                let visible = answered.elapsed();
                let again = Instant::now();
                read(url).await?;
                ryw = Some((visible, again.elapsed()));
            }
            anyhow::Ok((latency, ryw))
        }));
    }
    let mut out = OpenLoop::default();
    for task in tasks {
        let (latency, ryw) = task.await.context("a request task panicked")??;
        out.latencies.push(latency);
        out.ryw.extend(ryw);
    }
    Ok(out)
}

/// The `q` quantile (0..1) in milliseconds.
fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1000.0
}

/// The baseline server: reads the body, answers a small JSON.
async fn raw_server() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let counter = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/raw",
        axum::routing::post(move |body: bytes::Bytes| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                let id = format!("P520102-{}", body.len());
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(serde_json::json!({"id": id, "version": 1, "position": n})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/raw", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

/// Workloads 4 (`throughput_and_latency`) and 5 (`ryw`); a note gives the log's slowest flush during the
/// open loop, since with answers that wait for the flush a slow disk is a slow answer.
pub async fn run(
    bench: &Bench,
    throughput_and_latency: bool,
    ryw: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Row>> {
    let dir = bench.dir.join("w4");
    let settings = Settings::new(&dir);
    let service = Service::start(&settings).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(
        axum::serve(listener, service.router())
            .with_graceful_shutdown(async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|s| *s).await;
            })
            .into_future(),
    );
    let (raw_url, raw_task) = raw_server().await?;

    let place = &bench.places[0];
    let token = crate::tokens::add(
        &dir,
        rectify_domain::Role::Province,
        crate::regions::Regions::guizhou().root,
        None,
        "bench",
    )?;
    let service_to = Endpoint { url: format!("http://{addr}/api/v1/problems"), token: token.clone() };
    let raw_to = Endpoint { url: raw_url, token };
    let summary = format!("http://{addr}/api/v1/stats/summary?region={}", place.county);
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(bench.concurrency.max(64)).tcp_nodelay(true).build()?;
    let c = bench.concurrency;
    let mut next = 0u64;
    let mut bodies = |n: u64| {
        let out: Vec<Vec<u8>> = (next..next + n).map(|i| body(bench, i)).collect();
        next += n;
        out
    };
    let mut rows = Vec::new();

    // Warm both up (connections, caches, the views' first rows).
    for to in [&raw_to, &service_to] {
        throughput(&client, to, bodies(200), 16, &AtomicU64::new(0)).await?;
    }

    if throughput_and_latency {
        let n = (bench.events / 50).max(200);
        let ticker = bench.ticker("4 raw HTTP throughput", n);
        let raw = throughput(&client, &raw_to, bodies(n), c, &ticker.count).await?;
        ticker.finish();
        let ticker = bench.ticker("4 HTTP commands throughput", n);
        let figure = throughput(&client, &service_to, bodies(n), c, &ticker.count).await?;
        ticker.finish();
        rows.push(Row::new(
            "4a",
            format!("HTTP commands, throughput ({n} reports, {c} keep-alive connections)"),
            figure,
            "commands/s",
            "no-op POST handler, same client and bodies",
            raw,
            Target::None,
        ));
    }

    let m = (bench.events / 100).max(200);
    let rate = bench.rate;
    let ticker = bench.ticker(&format!("4 raw HTTP at {rate}/s"), m);
    let mut raw = open_loop(&client, &raw_to, bodies(m), rate, None, &ticker.count).await?;
    ticker.finish();
    let label = if ryw { "4/5 HTTP commands + read-your-writes" } else { "4 HTTP commands" };
    let ticker = bench.ticker(&format!("{label} at {rate}/s"), m);
    service.state.log.take_slowest_flush();
    let mut measured = open_loop(&client, &service_to, bodies(m), rate, ryw.then_some(summary), &ticker.count).await?;
    ticker.finish();
    if let Some(slowest) = service.state.log.take_slowest_flush() {
        notes.push(format!(
            "rows 4b–5b: the log's slowest fdatasync during the open loop of commands took {:.1} ms",
            slowest.as_secs_f64() * 1e3
        ));
    }

    if throughput_and_latency {
        for (id, q, name, target) in [
            ("4b", 0.5, "p50", Target::None),
            ("4c", 0.99, "p99", Target::Below(5.0)),
            ("4d", 0.999, "p999", Target::None),
        ] {
            rows.push(Row::new(
                id,
                format!("HTTP command latency {name} at {rate}/s offered (open loop, {m} reports)"),
                quantile_ms(&mut measured.latencies, q),
                "ms",
                "no-op POST handler at the same rate",
                quantile_ms(&mut raw.latencies, q),
                target,
            ));
        }
    }
    if ryw {
        let (mut lag, mut read): (Vec<Duration>, Vec<Duration>) = measured.ryw.into_iter().unzip();
        for (id, q, name, target) in [("5a", 0.5, "p50", Target::None), ("5b", 0.99, "p99", Target::Below(20.0))] {
            rows.push(Row::new(
                id,
                format!("read-your-writes lag {name}: answer → summary includes it ({} samples)", lag.len()),
                quantile_ms(&mut lag, q),
                "ms",
                "the same summary read once it is there",
                quantile_ms(&mut read, q),
                target,
            ));
        }
    }

    let _ = stop.send(true);
    let _ = server.await;
    raw_task.abort();
    service.stop().await;
    Ok(rows)
}
