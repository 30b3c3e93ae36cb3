//! `rectify demo`: the service on the embedded log with the Guizhou campaign loaded through the real command
//! path, and the dashboard at `/`.
//!
//! - [`scenario`]: the parameters (`scenarios/guizhou-2020.toml`, built in) and the figures they promise;
//! - [`plan`]: the generator, parameters → every command with its actor and business time;
//! - [`load`]: runs a plan through [`Pipeline::run`](crate::pipeline::Pipeline::run), many problems at once.
//!
//! The deadline watcher runs on a scenario clock: before the campaign while it loads (so it marks nothing
//! the plan does not), then from the end of the campaign's last day onwards, so the figures stay those of
//! 2022-05-31 while the demo runs.

pub mod load;
pub mod names;
pub mod plan;
pub mod rng;
pub mod scenario;

#[cfg(test)]
mod tests;

pub use plan::{Plan, Step, generate};
pub use scenario::{Figures, Params};

use crate::regions::Regions;
use crate::server::{Service, Settings};
use crate::watcher::Clock;
use anyhow::Context;
use chrono::{DateTime, Utc};
use rectify_domain::Role;
use rectify_projector::CounterKey;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What `rectify demo` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Holds the embedded log, the views and the tokens; the scenario is loaded only if its log is empty.
    #[arg(long, default_value = "./demo-data", env = "RECTIFY_DEMO_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Overrides the scenario's seed (the same seed gives the same history).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Multiplies every count by this factor (0 < F ≤ 1), e.g. 0.02 for a quick look.
    #[arg(long)]
    pub scale: Option<f64>,
    /// Another scenario file instead of the built-in scenarios/guizhou-2020.toml.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Commands in flight while loading.
    #[arg(long, default_value_t = load::CONCURRENCY)]
    pub concurrency: usize,
}

impl DemoOptions {
    /// The parameters these options select.
    pub fn params(&self) -> anyhow::Result<Params> {
        let mut params = match &self.scenario {
            Some(path) => Params::load(path)?,
            None => Params::guizhou(),
        };
        if let Some(seed) = self.seed {
            params.seed = seed;
        }
        if let Some(scale) = self.scale {
            params = params.scaled(scale)?;
        }
        Ok(params)
    }
}

/// The watcher's clock in a demo: a time before the campaign until [`ScenarioClock::start`], then the end of
/// the campaign plus the time since.
#[derive(Clone)]
pub struct ScenarioClock {
    started: Arc<OnceLock<Instant>>,
    before: DateTime<Utc>,
    as_of: DateTime<Utc>,
}

impl ScenarioClock {
    /// A clock for a campaign that starts after `before` and is as of `as_of`.
    pub fn new(before: DateTime<Utc>, as_of: DateTime<Utc>) -> ScenarioClock {
        ScenarioClock { started: Arc::default(), before, as_of }
    }

    /// The clock to hand to the service.
    pub fn clock(&self) -> Clock {
        let this = self.clone();
        Arc::new(move || match this.started.get() {
            None => this.before,
            Some(t) => this.as_of + chrono::Duration::from_std(t.elapsed()).unwrap_or_default(),
        })
    }

    /// From now on the clock runs from `as_of`.
    pub fn start(&self) {
        let _ = self.started.set(Instant::now());
    }
}

/// Log lines at `warn` unless `RUST_LOG` says otherwise (the progress bar shares the terminal).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Written into the data dir once a load has finished, so that a restart serves at once.
const MARKER: &str = "demo-loaded.json";

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// What to do with the log found in the data dir.
enum Start {
    Load,
    Resume,
    Loaded,
    Foreign,
}

async fn start_kind(service: &Service, plan: &Plan, data_dir: &Path) -> anyhow::Result<Start> {
    if service.state.log.head().await? == 0 {
        return Ok(Start::Load);
    }
    if data_dir.join(MARKER).exists() {
        return Ok(Start::Loaded);
    }
    let first = plan.steps.first().map(|s| plan.command_id(s));
    match first {
        Some(id) if service.state.log.find_command(&id).await?.is_some() => Ok(Start::Resume),
        _ => Ok(Start::Foreign),
    }
}

/// Runs the demo until `shutdown` resolves: service, dashboard, and the scenario loaded if the log is empty.
pub async fn run(options: DemoOptions, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    init_logging();
    let started = Instant::now();
    let params = options.params()?;
    let regions = Regions::guizhou();
    let plan = Arc::new(generate(&params, &regions)?);
    let before = plan.steps.first().map_or(plan.as_of, |s| s.at) - chrono::Duration::days(1);
    let clock = ScenarioClock::new(before, plan.as_of);
    let mut settings = Settings::new(&options.data_dir);
    settings.clock = clock.clock();
    let listener =
        tokio::net::TcpListener::bind(&options.listen).await.with_context(|| format!("binding {}", options.listen))?;
    let addr = listener.local_addr()?;
    let service = Service::start(&settings).await?;
    // A read-only token for the dashboard: an inspector reads everything (ledger, histories) and writes nothing.
    let token = crate::tokens::add(&options.data_dir, Role::Inspector, regions.root, None, "demo dashboard")?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let mut http_stop = stopped.clone();
    let server = tokio::spawn(
        axum::serve(listener, service.router())
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .into_future(),
    );
    say(format!("listening on http://{addr}"));
    say(format!("dashboard: http://{addr}/#token={token}"));
    say(format!("read-only token (role inspector, whole province): {token}"));

    let kind = start_kind(&service, &plan, &options.data_dir).await?;
    let mut load_summary = String::new();
    if matches!(kind, Start::Load | Start::Resume) {
        let total = plan.steps.len() as u64;
        eprintln!(
            "{} {} ({} commands: {} inspections, {} problems) into {}",
            if matches!(kind, Start::Resume) { "resuming" } else { "loading" },
            params.name_en,
            thousands(total as i64),
            thousands(plan.figures.inspections as i64),
            thousands((plan.figures.found + plan.figures.voided) as i64),
            options.data_dir.display()
        );
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar:.cyan/blue} {human_pos}/{human_len} commands · {rate} · ETA {eta}",
            )
            .expect("a valid template")
            .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", thousands(state.per_sec() as i64));
            })
            .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        let mut interrupted = stopped.clone();
        let loading = load::load(&service.state.pipeline, plan.clone(), options.concurrency, |n| bar.set_position(n));
        let loaded = tokio::select! {
            loaded = loading => loaded,
            _ = interrupted.wait_for(|s| *s) => {
                bar.abandon();
                eprintln!("interrupted: the next `rectify demo` on {} resumes the load", options.data_dir.display());
                let _ = server.await;
                service.stop().await;
                return Ok(());
            }
        };
        bar.finish_and_clear();
        let loaded = loaded?;
        let head = service.state.log.head().await?;
        if !service.state.views.wait_for(head, Duration::from_secs(600)).await {
            anyhow::bail!("the views did not catch up with the log (position {head}) within 10 minutes");
        }
        let secs = loaded.elapsed.as_secs_f64();
        load_summary = format!(
            " — loaded {} commands in {secs:.1} s ({} commands/s){}",
            thousands(loaded.appended as i64),
            thousands(((loaded.appended + loaded.repeated) as f64 / secs.max(1e-9)) as i64),
            if loaded.repeated > 0 {
                format!(", {} already there", thousands(loaded.repeated as i64))
            } else {
                String::new()
            }
        );
        let marker = serde_json::json!({
            "scenario": params.name_en, "seed": params.seed, "scale": options.scale,
            "commands": total, "position": head, "loaded_at": Utc::now(),
        });
        std::fs::write(options.data_dir.join(MARKER), serde_json::to_vec_pretty(&marker)?)
            .with_context(|| format!("writing {}", options.data_dir.join(MARKER).display()))?;
    } else if matches!(kind, Start::Foreign) {
        eprintln!(
            "the log in {} holds other data: serving it as it is, without loading the scenario",
            options.data_dir.display()
        );
    }
    clock.start();
    let as_of = plan.as_of;
    let c = service.state.views.store().counter(&CounterKey::region(regions.root))?;
    // The plan is not needed while the demo serves.
    drop(plan);
    say(format!(
        "ready in {:.1} s: {} inspections, {} problems found, {} fixed, {} open, {} overdue, {} listed (as of {}){load_summary}",
        started.elapsed().as_secs_f64(),
        thousands(c.inspections),
        thousands(c.found),
        thousands(c.fixed),
        thousands(c.open),
        thousands(c.overdue),
        thousands(c.listed),
        as_of.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("valid")).format("%Y-%m-%d"),
    ));
    let served = server.await.context("the HTTP server task")?;
    service.stop().await;
    served.context("serving HTTP")
}
