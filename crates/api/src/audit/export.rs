//! `rectify audit export`: JSON Lines of a problem, a region or the whole log that an inspector verifies
//! offline, with `rectify audit check-export` or any tool that speaks SHA-256, RFC 9162 and Ed25519.
//!
//! Lines, in order (`type` names each):
//! - `header`: format, selection, the log size the export was made at;
//! - `trust`: the trust file's keys (check them against keys obtained independently);
//! - `checkpoint`: the signed tree head at that size (if the data dir holds the writer key);
//! - `commit`: position, envelopes (with hashes), leaf hash and its RFC 9162 inclusion proof;
//! - `seal`: every seal covering an exported commit, with its audit position.

use super::keys;
use crate::server::{Backend, Settings, open_log};
use anyhow::Context;
use rectify_domain::audit::merkle::Nodes;
use rectify_domain::audit::signed::commit_leaf;
use rectify_domain::audit::{AuditRecord, Checkpoint, MemoryTree, Seal, Trust, merkle};
use rectify_domain::hex_text;
use rectify_domain::{AggregateId, Envelope, GENESIS_HASH, RegionCode};
use rectify_eventlog::{EventLog, Record};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::Arc;

/// Which commits to export.
#[derive(Debug, Clone)]
pub enum Selection {
    Problem(AggregateId),
    Region(RegionCode),
    All,
}

impl Selection {
    fn keeps(&self, r: &Record) -> bool {
        match self {
            Selection::Problem(id) => r.commit.stream() == id,
            Selection::Region(region) => region.contains(r.commit.stream().county()),
            Selection::All => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Selection::Problem(id) => format!("problem {id}"),
            Selection::Region(r) => format!("region {r}"),
            Selection::All => "all".into(),
        }
    }
}

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header { format: String, selection: String, size: u64 },
    Trust(Trust),
    Checkpoint(Checkpoint),
    Commit { position: u64, leaf: String, proof: Vec<String>, events: Vec<Envelope> },
    Seal { audit_position: u64, seal: Seal },
}

/// Writes the export of `selection` to `out`; returns how many commits it holds.
pub async fn export(settings: &Settings, selection: &Selection, out: &mut dyn Write) -> anyhow::Result<usize> {
    let (log, embedded): (Arc<dyn EventLog>, Option<rectify_eventlog::EmbeddedLog>) = match &settings.backend {
        Backend::Embedded => {
            let dir = settings.data_dir.join("log");
            let log = rectify_eventlog::EmbeddedLog::open(&dir)
                .with_context(|| format!("opening {} (is the service still running?)", dir.display()))?;
            (Arc::new(log.clone()), Some(log))
        }
        Backend::Nats { .. } => (open_log(settings).await?, None),
    };
    let head = log.head().await?;
    let mut tree = MemoryTree::default();
    let mut chosen = Vec::new();
    let mut from = 1;
    while from <= head {
        let records = log.read_from(from, 4096).await?;
        let Some(last) = records.last().map(|r| r.position) else { break };
        for r in records.into_iter().filter(|r| r.position <= head) {
            while tree.size() + 1 < r.position {
                tree.push([0; 32]);
            }
            tree.push(commit_leaf(r.position, &r.commit));
            if selection.keeps(&r) {
                chosen.push(r);
            }
        }
        from = last + 1;
    }
    let size = tree.size();
    let positions: HashSet<u64> = chosen.iter().map(|r| r.position).collect();
    let mut seals = Vec::new();
    let audit_head = log.audit_head().await?;
    let mut from = 1;
    while from <= audit_head {
        let entries = log.read_audit(from, 1024).await?;
        let Some(last) = entries.last().map(|e| e.position) else { break };
        for e in entries {
            if let Ok(AuditRecord::Seal(seal)) = e.record
                && seal.entries.iter().any(|x| positions.contains(&x.position))
            {
                seals.push((e.position, seal));
            }
        }
        from = last + 1;
    }
    drop(log);
    if let Some(log) = embedded {
        log.close().await;
    }

    let mut write = |line: &Line| -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    write(&Line::Header { format: "rectify-audit-export-v1".into(), selection: selection.describe(), size })?;
    let trust_file = keys::trust_path(&settings.data_dir);
    let trust = if trust_file.exists() { keys::read_trust(&trust_file)? } else { Trust::default() };
    write(&Line::Trust(trust))?;
    if let Some(key) = keys::load_current(&settings.data_dir)? {
        write(&Line::Checkpoint(Checkpoint::sign(&key, size, &tree.root(), (settings.clock)())))?;
    }
    let count = chosen.len();
    for r in chosen {
        let proof = merkle::inclusion_proof(&tree, r.position - 1, size).expect("within the tree");
        write(&Line::Commit {
            position: r.position,
            leaf: hex_text::encode(commit_leaf(r.position, &r.commit)),
            proof: proof.iter().map(hex_text::encode).collect(),
            events: r.commit.events,
        })?;
    }
    for (audit_position, seal) in seals {
        write(&Line::Seal { audit_position, seal })?;
    }
    out.flush()?;
    Ok(count)
}

/// Checks an export offline: the checkpoint's signature, every event's hash and chain (streams exported
/// from their first event), every leaf and inclusion proof against the checkpoint, and that a valid seal
/// covers every commit with its leaf. `trust` overrides the export's own trust line (recommended: an
/// export cannot vouch for itself). Returns the problems found, first bad first.
pub fn check_export(input: impl BufRead, trust: Option<Trust>) -> anyhow::Result<(usize, Vec<String>)> {
    let mut own_trust = None;
    let mut checkpoint = None;
    let mut commits = Vec::new();
    let mut seals = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line).with_context(|| format!("line {} is not an export line", n + 1))? {
            Line::Header { .. } => {}
            Line::Trust(t) => own_trust = Some(t),
            Line::Checkpoint(c) => checkpoint = Some(c),
            Line::Commit { position, leaf, proof, events } => commits.push((position, leaf, proof, events)),
            Line::Seal { audit_position, seal } => seals.push((audit_position, seal)),
        }
    }
    let trust = trust.or(own_trust).unwrap_or_default();
    let mut problems = Vec::new();
    let checkpoint = checkpoint.context("the export holds no checkpoint")?;
    if let Err(e) = trust.check_checkpoint(&checkpoint) {
        problems.push(format!("the checkpoint's signature does not count: {e}"));
    }
    let root = checkpoint.root_hash().context("the checkpoint's root is not hex")?;
    let mut sealed: HashMap<u64, Vec<String>> = HashMap::new();
    for (at, seal) in &seals {
        match trust.check_seal(seal) {
            Ok(()) => seal.entries.iter().for_each(|e| sealed.entry(e.position).or_default().push(e.leaf.clone())),
            Err(e) => problems.push(format!("seal {at} does not count: {e}")),
        }
    }
    let mut heads: HashMap<String, (u64, String)> = HashMap::new();
    for (position, leaf, proof, events) in &commits {
        let commit = rectify_domain::Commit::new(events.clone());
        let first = events.first().map(|e| e.event_id.clone()).unwrap_or_default();
        for e in events {
            let (version, prev) = heads.get(e.stream.as_str()).cloned().unwrap_or((0, GENESIS_HASH.to_owned()));
            if e.compute_hash() != e.hash {
                problems.push(format!("event {} at position {position}: content does not match its hash", e.event_id));
            } else if e.prev_hash != prev || e.version != version + 1 {
                problems.push(format!("event {} at position {position}: breaks its stream's chain", e.event_id));
            }
            heads.insert(e.stream.as_str().to_owned(), (e.version, e.hash.clone()));
        }
        let computed = commit_leaf(*position, &commit);
        if hex_text::encode(computed) != *leaf {
            problems.push(format!("event {first} at position {position}: the leaf does not match the events"));
        }
        let proof: Option<Vec<_>> = proof.iter().map(|h| rectify_domain::audit::signed::decode_hash(h)).collect();
        let included =
            proof.is_some_and(|p| merkle::verify_inclusion(&computed, position - 1, checkpoint.size, &p, &root));
        if !included {
            problems.push(format!("event {first} at position {position}: not included in the checkpoint's tree"));
        }
        if !sealed.get(position).is_some_and(|leaves| leaves.iter().all(|l| *l == hex_text::encode(computed))) {
            problems.push(format!("event {first} at position {position}: not covered by a valid seal with its leaf"));
        }
    }
    Ok((commits.len(), problems))
}
