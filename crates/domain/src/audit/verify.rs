//! The verification of a whole log, as a pure fold: feed it the audit store (seals, bulletins), then every
//! commit in log order, then finish; it reports every finding in log order and the recomputed tree.
//!
//! What it checks, for every position 1..=head:
//! - the commit is there (no gap) and decodes;
//! - each event's hash matches its content, follows its stream's previous event (`prev_hash`) and version;
//! - a seal with a valid signature of a trusted key (within the key's validity) covers the position with
//!   the same leaf hash: a commit nobody trusted sealed was not written by the service (forged), and one whose
//!   leaf differs from the sealed one was edited, moved or replaced after it was sealed;
//! - no valid seal covers a position past the head (the log was cut);
//! - every bulletin's checkpoint matches the recomputed tree at its size.

use super::merkle::{Hash, MemoryTree, Nodes, root};
use super::signed::{AuditRecord, Bulletin, Seal, Trust, commit_leaf, decode_hash};
use crate::envelope::{Commit, GENESIS_HASH};
use crate::hex_text;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What is wrong at one place of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A position between 1 and the head holds nothing.
    Missing,
    /// A stored commit does not decode.
    Undecodable,
    /// An event's content does not match its hash.
    Altered,
    /// An event does not follow its stream's previous event (hash or version).
    ChainBroken,
    /// No valid seal of a trusted key covers the commit.
    Unsealed,
    /// A valid seal covers the position with another leaf: the commit was changed, moved or replaced.
    SealMismatch,
    /// A seal whose signature does not count (bad signature, unknown key, outside the key's validity).
    BadSeal,
    /// A valid seal covers a position past the head: commits were cut off the end.
    Truncated,
    /// An audit store record that does not decode.
    BadRecord,
    /// A bulletin whose signature or checkpoint does not match the log.
    BadBulletin,
    /// The views differ from a fold of the log (found outside this module).
    ViewsDiffer,
}

/// One finding: where, which event, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The log position concerned, if one is.
    pub position: Option<u64>,
    /// The event concerned: from the log, or from the seal that covered the position.
    pub event_id: Option<String>,
    pub kind: FindingKind,
    pub detail: String,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The head: how many positions were checked.
    pub size: u64,
    /// The recomputed Merkle root over the head (hex).
    pub root: String,
    pub commits: u64,
    pub events: u64,
    pub streams: u64,
    pub seals: u64,
    pub bulletins: u64,
    /// Every finding, in log order (findings without a position last).
    pub findings: Vec<Finding>,
}

impl Report {
    /// The first finding in log order.
    pub fn first_bad(&self) -> Option<&Finding> {
        self.findings.first()
    }

    /// No finding at all.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// What a valid seal said about one position.
#[derive(Debug, Clone)]
struct Sealed {
    leaf: String,
    events: Vec<String>,
    /// The seal's position in the audit store.
    seal: u64,
}

/// The verification in progress. Feed [`LogVerifier::audit_record`] for the whole audit store first, then
/// [`LogVerifier::commit`] / [`LogVerifier::undecodable`] in log order, then [`LogVerifier::finish`].
pub struct LogVerifier {
    trust: Trust,
    sealed: BTreeMap<u64, Vec<Sealed>>,
    bulletins: Vec<(u64, Bulletin)>,
    /// Last version and hash of each stream.
    streams: HashMap<String, (u64, String)>,
    tree: MemoryTree,
    next: u64,
    commits: u64,
    events: u64,
    seals: u64,
    findings: Vec<Finding>,
}

impl LogVerifier {
    /// A verifier that trusts the keys of `trust`.
    pub fn new(trust: Trust) -> LogVerifier {
        LogVerifier {
            trust,
            sealed: BTreeMap::new(),
            bulletins: Vec::new(),
            streams: HashMap::new(),
            tree: MemoryTree::default(),
            next: 1,
            commits: 0,
            events: 0,
            seals: 0,
            findings: Vec::new(),
        }
    }

    fn find(&mut self, position: Option<u64>, event_id: Option<String>, kind: FindingKind, detail: String) {
        self.findings.push(Finding { position, event_id, kind, detail });
    }

    /// One record of the audit store at `at` (or why it did not decode).
    pub fn audit_record(&mut self, at: u64, record: Result<AuditRecord, String>) {
        match record {
            Ok(AuditRecord::Seal(seal)) => self.seal(at, seal),
            Ok(AuditRecord::Bulletin(b)) => {
                if let Err(e) = self.trust.check_bulletin(&b) {
                    let detail = format!("bulletin {} (audit record {at}): {e}", b.id);
                    self.find(Some(b.position), None, FindingKind::BadBulletin, detail);
                } else {
                    self.bulletins.push((at, *b));
                }
            }
            Err(reason) => {
                self.find(None, None, FindingKind::BadRecord, format!("audit record {at} does not decode: {reason}"))
            }
        }
    }

    fn seal(&mut self, at: u64, seal: Seal) {
        if let Err(e) = self.trust.check_seal(&seal) {
            let first = seal.entries.iter().min_by_key(|e| e.position);
            let (lo, hi) = (
                seal.entries.iter().map(|e| e.position).min().unwrap_or(0),
                seal.entries.iter().map(|e| e.position).max().unwrap_or(0),
            );
            let detail = format!(
                "seal {at} by key {} does not count: {e}; the {} commit(s) it claims to cover (positions {lo}..={hi}) \
                 are not authenticated by it",
                seal.key_id,
                seal.entries.len()
            );
            let position = first.map(|e| e.position);
            let event = first.and_then(|e| e.events.first().cloned());
            self.find(position, event, FindingKind::BadSeal, detail);
            return;
        }
        self.seals += 1;
        for e in seal.entries {
            self.sealed.entry(e.position).or_default().push(Sealed { leaf: e.leaf, events: e.events, seal: at });
        }
    }

    fn sealed_event(&self, position: u64) -> Option<String> {
        self.sealed.get(&position).and_then(|s| s.first()).and_then(|s| s.events.first().cloned())
    }

    /// Reports positions from the next expected one up to (not including) `position` as missing.
    fn gap_until(&mut self, position: u64) {
        while self.next < position {
            let p = self.next;
            let event = self.sealed_event(p);
            let said = event.as_deref().map(|e| format!(" (sealed as event {e})")).unwrap_or_default();
            self.find(Some(p), event, FindingKind::Missing, format!("position {p} is missing from the log{said}"));
            // Keeps the tree's indices equal to positions; the root cannot match anyway.
            self.tree.push([0; 32]);
            self.next += 1;
        }
    }

    /// The commit stored at `position`.
    pub fn commit(&mut self, position: u64, commit: &Commit) {
        if position < self.next {
            let id = commit.events.first().map(|e| e.event_id.clone());
            self.find(Some(position), id, FindingKind::Missing, format!("position {position} was read twice"));
            return;
        }
        self.gap_until(position);
        self.next = position + 1;
        self.commits += 1;
        let mut chain_finding = None;
        for e in &commit.events {
            self.events += 1;
            let (version, last) =
                self.streams.get(e.stream.as_str()).cloned().unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
            let problem = if e.compute_hash() != e.hash {
                Some((FindingKind::Altered, "its content does not match its hash (edited after it was written)".into()))
            } else if e.prev_hash != last {
                Some((
                    FindingKind::ChainBroken,
                    format!(
                        "its prev_hash does not match the hash of the stream's previous event (version {version}): \
                         an event before it was dropped, moved or altered"
                    ),
                ))
            } else if e.version != version + 1 {
                Some((FindingKind::ChainBroken, format!("version {} does not follow version {version}", e.version)))
            } else {
                None
            };
            if let (Some((kind, why)), None) = (problem, &chain_finding) {
                chain_finding =
                    Some((e.event_id.clone(), kind, format!("event {} at position {position}: {why}", e.event_id)));
            }
            self.streams.insert(e.stream.as_str().to_owned(), (e.version, e.hash.clone()));
        }
        if let Some((id, kind, detail)) = chain_finding {
            self.find(Some(position), Some(id), kind, detail);
        }

        let leaf = commit_leaf(position, commit);
        self.tree.push(leaf);
        let first_id = commit.events.first().map(|e| e.event_id.clone());
        let leaf_hex = hex_text::encode(leaf);
        match self.sealed.get(&position) {
            None => {
                let detail = format!(
                    "event {} at position {position} is not covered by any valid seal of a trusted key: it was not \
                     written by a trusted writer (forged or injected)",
                    first_id.as_deref().unwrap_or("?")
                );
                self.find(Some(position), first_id, FindingKind::Unsealed, detail);
            }
            Some(seals) => {
                if let Some(s) = seals.iter().find(|s| s.leaf != leaf_hex) {
                    let detail = format!(
                        "position {position} holds {:?} but seal {} says it held {:?} with another leaf: the commit \
                         was changed, moved or replaced after it was sealed",
                        commit.events.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
                        s.seal,
                        s.events
                    );
                    let event = first_id.or_else(|| s.events.first().cloned());
                    self.find(Some(position), event, FindingKind::SealMismatch, detail);
                }
            }
        }
    }

    /// The commit at `position` exists but does not decode.
    pub fn undecodable(&mut self, position: u64, reason: &str) {
        if position < self.next {
            return;
        }
        self.gap_until(position);
        self.next = position + 1;
        let event = self.sealed_event(position);
        let said = event.as_deref().map(|e| format!(" (sealed as event {e})")).unwrap_or_default();
        let detail = format!("the commit at position {position}{said} does not decode: {reason}");
        self.find(Some(position), event, FindingKind::Undecodable, detail);
        self.tree.push([0; 32]);
    }

    /// Ends the verification at `head` (the log's last position).
    pub fn finish(mut self, head: u64) -> (Report, MemoryTree) {
        self.gap_until(head + 1);
        let size = self.tree.size();
        let cut: Vec<(u64, Option<String>, u64)> = self
            .sealed
            .range(size + 1..)
            .map(|(p, s)| (*p, s.first().and_then(|s| s.events.first().cloned()), s[0].seal))
            .collect();
        for (p, event, seal) in cut {
            let detail = format!("seal {seal} covers position {p}, but the log ends at {size}: commits were cut off");
            self.find(Some(p), event, FindingKind::Truncated, detail);
        }
        let bulletins = self.bulletins.len() as u64;
        for (at, b) in std::mem::take(&mut self.bulletins) {
            let ours: Option<Hash> = (b.position <= size).then(|| root(&self.tree, b.position));
            if b.checkpoint.size != b.position || ours.is_none() || b.checkpoint.root_hash() != ours {
                let detail = format!(
                    "bulletin {} (audit record {at}) froze the log at position {} with root {}, which the log does \
                     not reproduce",
                    b.id, b.position, b.checkpoint.root
                );
                self.find(Some(b.position), None, FindingKind::BadBulletin, detail);
            }
        }
        self.findings.sort_by_key(|f| f.position.unwrap_or(u64::MAX));
        let report = Report {
            size,
            root: hex_text::encode(self.tree.root()),
            commits: self.commits,
            events: self.events,
            streams: self.streams.len() as u64,
            seals: self.seals,
            bulletins,
            findings: self.findings,
        };
        (report, self.tree)
    }
}

/// Checks a checkpoint's root text against a recomputed root.
pub fn same_root(text: &str, root: &Hash) -> bool {
    decode_hash(text).as_ref() == Some(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::signed::{SealEntry, TrustedKey};
    use crate::{Actor, AggregateId, CommandContext, Event, RegionCode, Role};
    use chrono::{DateTime, Utc};
    use ed25519_dalek::SigningKey;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn ctx(n: usize) -> CommandContext {
        CommandContext {
            actor: Actor {
                id: "a".into(),
                role: Role::CountyBureau,
                region: RegionCode::parse("520102").unwrap(),
                grid: None,
            },
            occurred_at: at("2024-05-01T08:00:00Z"),
            recorded_at: at("2024-05-01T08:00:00Z"),
            command_id: format!("c{n}"),
            correlation_id: format!("c{n}"),
        }
    }

    /// A log of `n` commits alternating between two streams, as (position, commit).
    fn log(n: usize) -> Vec<(u64, Commit)> {
        let ids = [AggregateId::parse("P520102-a").unwrap(), AggregateId::parse("P520102-b").unwrap()];
        let mut heads = [(0, GENESIS_HASH.to_owned()), (0, GENESIS_HASH.to_owned())];
        (0..n)
            .map(|i| {
                let s = i % 2;
                let event = Event::ProgressReported { note: format!("note {i}"), evidence: Vec::new() };
                let c = Commit::seal(&ids[s], heads[s].0, &heads[s].1, &ctx(i), vec![event]);
                heads[s] = (c.last_version(), c.last_hash().to_owned());
                (i as u64 + 1, c)
            })
            .collect()
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn trust() -> Trust {
        Trust { keys: vec![TrustedKey::new(&key().verifying_key(), at("2024-01-01T00:00:00Z"), "")] }
    }

    /// Seals of three commits each, as the writer makes them.
    fn seals(log: &[(u64, Commit)]) -> Vec<AuditRecord> {
        log.chunks(3)
            .map(|chunk| {
                let entries = chunk.iter().map(|(p, c)| SealEntry::of(*p, c)).collect();
                AuditRecord::Seal(Seal::sign(&key(), at("2024-05-01T08:00:01Z"), entries))
            })
            .collect()
    }

    /// Verifies `log` (with `head` = its last position) against `seals`.
    fn verify(log: &[(u64, Commit)], seals: &[AuditRecord], head: u64) -> Report {
        let mut v = LogVerifier::new(trust());
        for (i, s) in seals.iter().enumerate() {
            v.audit_record(i as u64 + 1, Ok(s.clone()));
        }
        for (p, c) in log {
            v.commit(*p, c);
        }
        v.finish(head).0
    }

    #[track_caller]
    fn assert_first(report: &Report, kind: FindingKind, position: u64, event: &str) {
        let first = report.first_bad().unwrap_or_else(|| panic!("no finding: {report:?}"));
        assert_eq!(
            (first.kind, first.position, first.event_id.as_deref()),
            (kind, Some(position), Some(event)),
            "{first:?}"
        );
    }

    #[test]
    fn an_untouched_log_is_clean_and_its_root_is_the_tree_of_its_leaves() {
        let l = log(10);
        let r = verify(&l, &seals(&l), 10);
        assert!(r.is_clean(), "{:?}", r.findings);
        let tree = MemoryTree::from_leaves(l.iter().map(|(p, c)| commit_leaf(*p, c)));
        assert_eq!(r.root, hex_text::encode(tree.root()));
        assert_eq!((r.size, r.commits, r.events, r.streams, r.seals), (10, 10, 10, 2, 4));
    }

    #[test]
    fn an_edited_payload_is_named() {
        let mut l = log(10);
        let s = seals(&l);
        l[4].1.events[0].event = Event::ProgressReported { note: "note X".into(), evidence: Vec::new() };
        let r = verify(&l, &s, 10);
        assert_first(&r, FindingKind::Altered, 5, "P520102-a/3");
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_seal_and_the_chain() {
        let mut l = log(10);
        let s = seals(&l);
        let e = &mut l[4].1.events[0];
        e.event = Event::ProgressReported { note: "note X".into(), evidence: Vec::new() };
        e.hash = e.compute_hash();
        let r = verify(&l, &s, 10);
        assert_first(&r, FindingKind::SealMismatch, 5, "P520102-a/3");
        assert!(r.findings.iter().any(|f| f.kind == FindingKind::ChainBroken && f.position == Some(7)));
    }

    #[test]
    fn a_dropped_commit_is_named_from_its_seal() {
        let mut l = log(10);
        let s = seals(&l);
        l.remove(3);
        let r = verify(&l, &s, 10);
        assert_first(&r, FindingKind::Missing, 4, "P520102-b/2");
        assert!(
            r.findings
                .iter()
                .any(|f| f.kind == FindingKind::ChainBroken && f.event_id.as_deref() == Some("P520102-b/3"))
        );
    }

    #[test]
    fn a_cut_tail_is_found_by_the_seals() {
        let l = log(10);
        let s = seals(&l);
        let r = verify(&l[..8], &s, 8);
        assert_first(&r, FindingKind::Truncated, 9, "P520102-a/5");
    }

    #[test]
    fn reordered_commits_are_named() {
        let mut l = log(10);
        let s = seals(&l);
        let (a, b) = (l[2].1.clone(), l[6].1.clone());
        l[2].1 = b;
        l[6].1 = a;
        let r = verify(&l, &s, 10);
        assert_first(&r, FindingKind::ChainBroken, 3, "P520102-a/4");
        assert!(r.findings.iter().any(|f| f.kind == FindingKind::SealMismatch && f.position == Some(3)));
    }

    #[test]
    fn a_forged_commit_that_chains_correctly_is_unsealed() {
        let mut l = log(10);
        let s = seals(&l);
        let last = &l[8].1;
        let forged = Commit::seal(
            last.stream(),
            last.last_version(),
            last.last_hash(),
            &ctx(99),
            vec![Event::ProgressReported { note: "forged".into(), evidence: Vec::new() }],
        );
        l.push((11, forged));
        let r = verify(&l, &s, 11);
        assert_first(&r, FindingKind::Unsealed, 11, "P520102-a/6");
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    }

    #[test]
    fn a_replaced_signature_unseals_what_it_covered() {
        let l = log(10);
        let mut s = seals(&l);
        let AuditRecord::Seal(seal) = &mut s[1] else { unreachable!() };
        seal.signature = Seal::sign(&SigningKey::from_bytes(&[8; 32]), seal.sealed_at, seal.entries.clone()).signature;
        let r = verify(&l, &s, 10);
        assert_first(&r, FindingKind::BadSeal, 4, "P520102-b/2");
        let unsealed: Vec<_> =
            r.findings.iter().filter(|f| f.kind == FindingKind::Unsealed).map(|f| f.position).collect();
        assert_eq!(unsealed, [Some(4), Some(5), Some(6)]);
    }

    #[test]
    fn an_undecodable_commit_is_named_from_its_seal() {
        let l = log(4);
        let s = seals(&l);
        let mut v = LogVerifier::new(trust());
        for (i, r) in s.iter().enumerate() {
            v.audit_record(i as u64 + 1, Ok(r.clone()));
        }
        v.commit(1, &l[0].1);
        v.undecodable(2, "expected value");
        v.commit(3, &l[2].1);
        v.commit(4, &l[3].1);
        let (r, _) = v.finish(4);
        assert_first(&r, FindingKind::Undecodable, 2, "P520102-b/1");
    }
}
