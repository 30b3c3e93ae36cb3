//! `rectify audit …`: the subcommands, as a thin shell over [`super::verify`], [`super::export`] and
//! [`super::keys`].

use super::export::{Selection, check_export, export};
use super::verify::{Options, render, verify};
use crate::cli::LogArgs;
use anyhow::Context;
use clap::Subcommand;
use rectify_domain::{AggregateId, RegionCode};
use std::io::Write;
use std::path::PathBuf;

/// Audit for inspectors.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verifies the whole log: seals, chains, the Merkle tree, bulletins and the views. Exits non-zero on
    /// any finding and names the first bad event. The service must be stopped (it holds the files), unless
    /// on NATS with `--no-views`.
    Verify {
        #[command(flatten)]
        log: LogArgs,
        /// Trust file(s) besides `<data dir>/trust.json`.
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Do not compare the views with a fold of the log.
        #[arg(long)]
        no_views: bool,
    },
    /// Writes JSON Lines of a problem, a region or the whole log, verifiable offline.
    Export {
        #[command(flatten)]
        log: LogArgs,
        #[arg(long, conflicts_with_all = ["region", "all"])]
        problem: Option<String>,
        #[arg(long, conflicts_with = "all")]
        region: Option<String>,
        #[arg(long)]
        all: bool,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Checks an export offline; exits non-zero on any problem.
    CheckExport {
        file: PathBuf,
        /// Trust file to check against (default: the export's own keys, which an export cannot vouch for).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Ends the current signing key's validity now and starts a new key (service stopped).
    RotateKey {
        #[arg(long, default_value = "./data", env = "RECTIFY_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// Runs one audit subcommand; `Ok(false)` means "found problems" (exit non-zero).
pub async fn run(command: AuditCmd) -> anyhow::Result<bool> {
    match command {
        AuditCmd::Verify { log, trust, json, no_views } => {
            let settings = log.settings();
            let outcome = verify(&settings, &Options { trust, views: !no_views, progress: true }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print!("{}", render(&outcome));
            }
            Ok(outcome.ok)
        }
        AuditCmd::Export { all: false, problem: None, region: None, .. } => {
            anyhow::bail!("choose what to export: --problem ID, --region CODE or --all")
        }
        AuditCmd::Export { log, problem, region, all: _, out } => {
            let selection = match (problem, region) {
                (Some(p), _) => {
                    Selection::Problem(AggregateId::parse(&p).with_context(|| format!("bad problem id {p}"))?)
                }
                (None, Some(r)) => Selection::Region(RegionCode::parse(&r).with_context(|| format!("bad region {r}"))?),
                (None, None) => Selection::All,
            };
            let settings = log.settings();
            let count = match out {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
                    );
                    export(&settings, &selection, &mut file).await?
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    let n = export(&settings, &selection, &mut lock).await?;
                    lock.flush()?;
                    n
                }
            };
            eprintln!("exported {count} commits");
            Ok(true)
        }
        AuditCmd::CheckExport { file, trust } => {
            let trust = trust.map(|t| super::keys::read_trust(&t)).transpose()?;
            let input = std::io::BufReader::new(
                std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?,
            );
            let (commits, problems) = check_export(input, trust)?;
            if problems.is_empty() {
                println!("OK: {commits} commits, every one hashed, chained, included in the checkpoint and sealed");
            } else {
                println!("FAILED: {} problem(s) in {commits} commits", problems.len());
                for p in &problems {
                    println!("  {p}");
                }
            }
            Ok(problems.is_empty())
        }
        AuditCmd::RotateKey { data_dir } => {
            let id = super::keys::rotate(&data_dir, chrono::Utc::now())?;
            println!("new signing key {id}; the old key stays trusted for what it signed before now");
            Ok(true)
        }
    }
}
