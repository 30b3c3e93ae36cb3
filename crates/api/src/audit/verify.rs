//! `rectify audit verify`: checks every seal signature against the trust file, every event hash and stream
//! chain, that every commit is sealed with its current leaf, recomputes the Merkle tree, reproduces every
//! bulletin's figures, and compares the views with a fresh fold of the log (`rebuild --check`).
//!
//! The checks themselves are `rectify_domain::audit::LogVerifier`; this module feeds it from the log.

use super::bulletin;
use crate::regions::Regions;
use crate::server::{Backend, Settings, open_log};
use anyhow::Context;
use rectify_domain::RegionCode;
use rectify_domain::audit::{AuditRecord, Finding, FindingKind, LogVerifier, Report, Trust};
use rectify_eventlog::{EventLog, ReadError};
use rectify_projector::Changes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to verify and how.
pub struct Options {
    /// Trust files beside `DATA/trust.json` (which is used when it exists).
    pub trust: Vec<PathBuf>,
    /// Compare the views with a fold of the log (needs the views of the data dir, service stopped).
    pub views: bool,
    /// Print progress to stderr.
    pub progress: bool,
}

/// The verification's result.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub ok: bool,
    /// The first finding in log order: the first bad event.
    pub first_bad: Option<Finding>,
    pub report: Report,
    /// Key ids of the trust file.
    pub trusted_keys: Vec<String>,
    /// What the comparison of the views found (`None` if not asked).
    pub views: Option<String>,
}

/// Loads `DATA/trust.json` (if present) and every extra trust file.
pub fn load_trust(settings: &Settings, extra: &[PathBuf]) -> anyhow::Result<Trust> {
    let mut trust = Trust::default();
    let own = super::keys::trust_path(&settings.data_dir);
    if own.exists() {
        trust.merge(super::keys::read_trust(&own)?);
    }
    for path in extra {
        trust.merge(super::keys::read_trust(path)?);
    }
    anyhow::ensure!(
        !trust.keys.is_empty(),
        "no trusted keys: {} does not exist and no --trust file was given",
        own.display()
    );
    Ok(trust)
}

/// A bulletin to reproduce: its position, region and figures.
struct Frozen {
    id: String,
    position: u64,
    region: Option<RegionCode>,
    stats: serde_json::Value,
}

/// Runs the whole verification.
pub async fn verify(settings: &Settings, options: &Options) -> anyhow::Result<Outcome> {
    let trust = load_trust(settings, &options.trust)?;
    let trusted_keys = trust.keys.iter().map(|k| k.key_id.clone()).collect();
    let (log, embedded): (Arc<dyn EventLog>, Option<rectify_eventlog::EmbeddedLog>) = match &settings.backend {
        Backend::Embedded => {
            let dir = settings.data_dir.join("log");
            anyhow::ensure!(dir.exists(), "no embedded log at {}", dir.display());
            let log = rectify_eventlog::EmbeddedLog::open(&dir)
                .with_context(|| format!("opening {} (is the service still running?)", dir.display()))?;
            (Arc::new(log.clone()), Some(log))
        }
        Backend::Nats { .. } => (open_log(settings).await?, None),
    };
    let mut verifier = LogVerifier::new(trust.clone());
    let mut frozen = Vec::new();

    let audit_head = log.audit_head().await?;
    let mut from = 1;
    while from <= audit_head {
        let entries = log.read_audit(from, 1024).await?;
        let Some(last) = entries.last().map(|e| e.position) else { break };
        for e in entries {
            if let Ok(AuditRecord::Bulletin(b)) = &e.record
                && trust.check_bulletin(b).is_ok()
            {
                frozen.push(Frozen {
                    id: b.id.clone(),
                    position: b.position,
                    region: RegionCode::parse(&b.region),
                    stats: b.stats.clone(),
                });
            }
            verifier.audit_record(e.position, e.record);
        }
        from = last + 1;
    }

    let head = log.head().await?;
    let regions = Regions::guizhou();
    let mut by_position: BTreeMap<u64, Vec<Frozen>> = BTreeMap::new();
    for f in frozen {
        by_position.entry(f.position).or_default().push(f);
    }
    let mut fold = (!by_position.is_empty()).then(Changes::default);
    let mut bulletin_findings = Vec::new();
    let mut check_frozen = |position: u64, fold: &Option<Changes>| {
        for f in by_position.remove(&position).unwrap_or_default() {
            let ours = f.region.map(|r| bulletin::stats(fold.as_ref().expect("folding"), &regions, r));
            if ours.as_ref() != Some(&f.stats) {
                bulletin_findings.push(Finding {
                    position: Some(f.position),
                    event_id: None,
                    kind: FindingKind::BadBulletin,
                    detail: format!(
                        "bulletin {}: its figures differ from a fold of the log up to position {}",
                        f.id, f.position
                    ),
                });
            }
        }
    };
    check_frozen(0, &fold);

    let started = Instant::now();
    let mut shown = Instant::now();
    let mut from = 1;
    while from <= head {
        let max = usize::try_from(head - from + 1).unwrap_or(usize::MAX).min(4096);
        let records = match log.read_from(from, max).await {
            Ok(records) => records,
            Err(ReadError::Corrupt { position, reason }) if position >= from => {
                // Take what precedes the bad commit, then step over it.
                let before =
                    if position > from { log.read_from(from, (position - from) as usize).await? } else { Vec::new() };
                for r in &before {
                    verifier.commit(r.position, &r.commit);
                }
                verifier.undecodable(position, &reason);
                from = position + 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = records.last().map(|r| r.position) else { break };
        for r in &records {
            verifier.commit(r.position, &r.commit);
            if let Some(fold) = fold.as_mut() {
                bulletin::apply(fold, r);
            }
            check_frozen(r.position, &fold);
        }
        from = last + 1;
        if options.progress && shown.elapsed() >= Duration::from_millis(500) {
            let rate = (last as f64) / started.elapsed().as_secs_f64().max(1e-3);
            eprint!("\raudit verify: {last}/{head} commits ({rate:.0}/s)   ");
            let _ = std::io::stderr().flush();
            shown = Instant::now();
        }
    }
    if options.progress && head > 0 {
        eprintln!("\raudit verify: {head}/{head} commits checked            ");
    }
    let (mut report, _) = verifier.finish(head);
    report.findings.extend(bulletin_findings);

    drop(log);
    if let Some(log) = embedded {
        log.close().await;
    }
    let views = if options.views {
        let difference = match crate::rebuild::rebuild(settings, true).await {
            Ok(outcome) => match outcome.first_difference {
                Some(diff) => Err(format!("differ at position {}: {diff}", outcome.position)),
                None => Ok(format!(
                    "match a fold of the log at position {} ({} entries)",
                    outcome.position, outcome.entries
                )),
            },
            // A log the fold cannot get through differs from any views built on it.
            Err(error) => Err(format!("cannot be compared with a fold of the log: {error:#}")),
        };
        Some(match difference {
            Ok(text) => text,
            Err(text) => {
                report.findings.push(Finding {
                    position: None,
                    event_id: None,
                    kind: FindingKind::ViewsDiffer,
                    detail: format!("the views {text}"),
                });
                text
            }
        })
    } else {
        None
    };
    report.findings.sort_by_key(|f| f.position.unwrap_or(u64::MAX));
    Ok(Outcome { ok: report.is_clean(), first_bad: report.first_bad().cloned(), report, trusted_keys, views })
}

/// The human report.
pub fn render(outcome: &Outcome) -> String {
    let r = &outcome.report;
    let mut out = format!(
        "audit verify: {} commits ({} events in {} streams), {} valid seals, {} bulletins, {} trusted keys\n\
         Merkle root over {} commits: {}\n",
        r.commits,
        r.events,
        r.streams,
        r.seals,
        r.bulletins,
        outcome.trusted_keys.len(),
        r.size,
        r.root
    );
    if let Some(v) = &outcome.views {
        out.push_str(&format!("views: {v}\n"));
    }
    match &outcome.first_bad {
        None => out.push_str("OK: every event is sealed, chained and unaltered\n"),
        Some(first) => {
            let place = match (first.position, &first.event_id) {
                (Some(p), Some(e)) => format!("event {e} at position {p}"),
                (Some(p), None) => format!("position {p}"),
                (None, Some(e)) => format!("event {e}"),
                (None, None) => "the audit store or the views".into(),
            };
            out.push_str(&format!("FAILED: {} finding(s); first bad: {place}\n", r.findings.len()));
            for f in r.findings.iter().take(50) {
                out.push_str(&format!(
                    "  [{}] {}\n",
                    serde_json::to_value(f.kind).unwrap().as_str().unwrap_or("?"),
                    f.detail
                ));
            }
            if r.findings.len() > 50 {
                out.push_str(&format!("  … and {} more\n", r.findings.len() - 50));
            }
        }
    }
    out
}
