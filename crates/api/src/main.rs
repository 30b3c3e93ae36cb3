//! The `rectify` binary: a thin shell over the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rectify_api::{cli::LogArgs, regions::Regions, tokens};
use rectify_domain::region::Level;
use rectify_domain::{RegionCode, Role};
use std::io::Write;
use std::path::PathBuf;

/// jemalloc: the service allocates many small short-lived values (envelopes, rows, keys) on one thread and
/// drops many of them on another; jemalloc's thread caches took a third as much of the pipeline's CPU as
/// mimalloc did (which had replaced glibc's malloc, slower still).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Rectify: environmental problems from inspection to sign-off, event-sourced.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the service (API, projector, deadline watcher).
    Serve {
        #[command(flatten)]
        log: LogArgs,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080", env = "RECTIFY_LISTEN")]
        listen: String,
        /// Seconds between deadline sweeps.
        #[arg(long, default_value_t = 60)]
        overdue_interval: u64,
        /// Rebuild the views from the log at start, beside the current ones (which keep answering queries
        /// until the new ones have caught up). Happens by itself when the view schema changed.
        #[arg(long)]
        rebuild_views: bool,
        /// Requests per second each token may make on average (429 beyond it); none by default.
        #[arg(long, env = "RECTIFY_RATE_LIMIT")]
        rate_limit: Option<f64>,
        /// Requests a token may make at once before the rate limit applies.
        #[arg(long, default_value_t = 100, env = "RECTIFY_RATE_BURST")]
        rate_burst: u32,
        /// An origin allowed to call the API from a browser (repeatable or comma-separated); none by default.
        #[arg(long, env = "RECTIFY_CORS_ORIGINS", value_delimiter = ',')]
        cors_origin: Vec<String>,
    },
    /// Builds the views anew from the log (the service must be stopped), then switches to them; with
    /// `--check`, only compares them with the current views and exits non-zero on any difference.
    Rebuild {
        #[command(flatten)]
        log: LogArgs,
        #[arg(long)]
        check: bool,
    },
    /// Audit for inspectors: verify the log, export, check an export, rotate the signing key.
    Audit {
        #[command(subcommand)]
        command: rectify_api::audit::cli::AuditCmd,
    },
    /// Runs the service with the Guizhou 2020–2022 campaign loaded (if its log is empty) and the dashboard at `/`.
    Demo(rectify_api::demo::DemoOptions),
    /// Measures each workload next to its raw baseline (JetStream, embedded log, projector, HTTP, memory).
    Bench(rectify_api::bench::BenchOptions),
    /// Manages bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Creates a token and prints it (its only line on stdout); only its hash is stored.
    Add {
        #[arg(long, default_value = "./data", env = "RECTIFY_DATA_DIR")]
        data_dir: PathBuf,
        /// grid_officer, responsible_entity, county_bureau, city_bureau, province, inspector or public.
        #[arg(long)]
        role: String,
        /// The region the token answers for (default: the province).
        #[arg(long)]
        region: Option<String>,
        /// The grid of a grid officer.
        #[arg(long)]
        grid: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
}

fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into());
    // The NATS client's debug output holds message payloads (base64), and with them evidence URIs that may
    // carry signatures: it stays at info unless RUST_LOG names it. (Tests: tests/e2e/secrets.rs.)
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("async_nats")) {
        filter = filter.add_directive("async_nats=info".parse().expect("a valid directive"));
    }
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: the server polls it only once it runs, and a signal before that (a quick restart of a
/// loaded machine) would end the process at once — mid-append, without sealing or flushing anything.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async fn received(signal: &mut Option<Signal>) {
        match signal {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! { _ = received(&mut term) => {}, _ = received(&mut interrupt) => {} }
        tracing::info!("shutting down");
    }
}

/// Checks a token's role and region against the reference data.
fn token_scope(
    role: &str,
    region: Option<&str>,
    grid: Option<String>,
) -> anyhow::Result<(Role, RegionCode, Option<String>)> {
    let role: Role = role.parse().map_err(anyhow::Error::msg)?;
    if role == Role::System {
        anyhow::bail!("the system role is the service's own and has no tokens");
    }
    let regions = Regions::guizhou();
    let region = match region {
        Some(r) => RegionCode::parse(r)
            .filter(|c| regions.region(*c).is_some())
            .with_context(|| format!("unknown region {r}"))?,
        None => regions.root,
    };
    let needed = match role {
        Role::GridOfficer | Role::ResponsibleEntity | Role::CountyBureau => Some(Level::County),
        Role::CityBureau => Some(Level::Prefecture),
        Role::Province => Some(Level::Province),
        _ => None,
    };
    if let Some(level) = needed {
        anyhow::ensure!(region.level() == level, "a {role} token needs a {level:?}-level --region, not {region}");
    }
    if let Some(g) = &grid {
        let known = regions.grid(g).with_context(|| format!("unknown grid {g}"))?;
        anyhow::ensure!(known.county == region, "grid {g} is not in {region}");
    }
    anyhow::ensure!(role != Role::GridOfficer || grid.is_some(), "a grid_officer token needs --grid");
    Ok((role, region, grid))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { log, listen, overdue_interval, rebuild_views, rate_limit, rate_burst, cors_origin } => {
            init_logging();
            let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
            let mut settings = log.settings();
            settings.overdue_interval = std::time::Duration::from_secs(overdue_interval.max(1));
            settings.rebuild_views = rebuild_views;
            anyhow::ensure!(rate_limit.is_none_or(|r| r > 0.0), "--rate-limit must be positive");
            anyhow::ensure!(!cors_origin.iter().any(|o| o == "*"), "--cors-origin takes origins, not `*`");
            settings.edge = rectify_api::edge::EdgeSettings {
                rate_limit: rate_limit.map(|per_second| rectify_api::edge::RateLimit { per_second, burst: rate_burst }),
                cors_origins: cors_origin,
            };
            let shutdown = shutdown_signal();
            let addr = listener.local_addr()?;
            println!("listening on http://{addr}");
            std::io::stdout().flush()?;
            rectify_api::run(listener, settings, shutdown).await
        }
        Cmd::Rebuild { log, check } => {
            init_logging();
            let settings = log.settings();
            let outcome = rectify_api::rebuild::rebuild(&settings, check).await?;
            match outcome.first_difference {
                Some(diff) => anyhow::bail!("the views differ from a rebuild at position {}: {diff}", outcome.position),
                None if check => {
                    println!("views match a rebuild at position {} ({} entries)", outcome.position, outcome.entries)
                }
                None => println!("views rebuilt to position {} ({} entries)", outcome.position, outcome.entries),
            }
            Ok(())
        }
        Cmd::Audit { command } => {
            if !rectify_api::audit::cli::run(command).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Demo(options) => rectify_api::demo::run(options, shutdown_signal()).await,
        Cmd::Bench(options) => rectify_api::bench::run(options).await,
        Cmd::Token { command: TokenCmd::Add { data_dir, role, region, grid, name } } => {
            let (role, region, grid) = token_scope(&role, region.as_deref(), grid)?;
            let token = tokens::add(&data_dir, role, region, grid, &name)?;
            println!("{token}");
            Ok(())
        }
    }
}
