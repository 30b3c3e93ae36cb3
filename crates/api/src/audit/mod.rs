//! Audit for inspectors, the I/O side: the writer's key and trust file ([`keys`]), sealing of appended
//! commits ([`sealer`]), the Merkle index behind checkpoints and proofs (here), dispatch bulletins
//! ([`bulletin`]), and the `rectify audit` commands ([`verify`], [`export`]).
//!
//! The pure parts (tree, proofs, canonical bytes, the verification fold) are `rectify_domain::audit`.
//!
//! The index is in memory: the roots of aligned chunks of 64 commits (a [`ChunkedTree`], ~1 MB per million
//! commits; a proof reads the leaves of the one to three chunks it needs again from the log), kept on disk
//! as they finish ([`chunks`]) and brought up to date at start by tailing the log like the projector does,
//! and which seal covers each position. It is derived from the log and never trusted by a verifier: proofs
//! are checked against signed checkpoints, and `audit verify` recomputes everything.

pub mod bulletin;
mod chunks;
pub mod cli;
pub mod export;
pub mod keys;
pub mod sealer;
pub mod verify;

use crate::server::Settings;
use crate::watcher::Clock;
use futures::StreamExt;
use rectify_domain::audit::merkle::{ChunkedTree, Nodes, WithChunks};
use rectify_domain::audit::signed::commit_leaf;
use rectify_domain::audit::{AuditRecord, Checkpoint, Hash, SigningKey, merkle};
use rectify_eventlog::{EventLog, ReadError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

pub use sealer::{Sealer, SealingLog};

/// Commits per chunk of the Merkle index: 2^6.
const CHUNK_BITS: u32 = 6;

/// What the index knows.
struct Index {
    tree: ChunkedTree,
    /// Where finished chunks are kept for the next start.
    chunk_file: chunks::ChunkFile,
    /// Position → audit position of the (first) seal covering it.
    sealed: SealRuns,
    /// Bulletin id → audit position.
    bulletins: HashMap<String, u64>,
    /// Audit records indexed so far.
    audit_seen: u64,
}

/// Which seal covers each position, as runs of consecutive positions covered by the same seal: a seal
/// covers the commits one writer appended within a few milliseconds, mostly neighbours, so a million sealed
/// commits take a few thousand runs instead of a million map entries (~40 MB).
#[derive(Default, Debug)]
struct SealRuns {
    /// First position of a run → (its last position, the seal's audit position).
    runs: std::collections::BTreeMap<u64, (u64, u64)>,
}

impl SealRuns {
    /// The seal covering `position`, if any.
    fn get(&self, position: u64) -> Option<u64> {
        let (_, &(last, seal)) = self.runs.range(..=position).next_back()?;
        (position <= last).then_some(seal)
    }

    /// Records that `seal` covers `position`, unless an earlier seal already does (the first one counts).
    fn insert(&mut self, position: u64, seal: u64) {
        if self.get(position).is_some() {
            return;
        }
        let mut start = position;
        let mut last = position;
        if let Some((&s, &(l, before))) = self.runs.range(..position).next_back()
            && l + 1 == position
            && before == seal
        {
            start = s;
        }
        if let Some(&(l, after)) = self.runs.get(&(position + 1))
            && after == seal
        {
            self.runs.remove(&(position + 1));
            last = l;
        }
        self.runs.insert(start, (last, seal));
    }
}

/// The audit side of a running service: the writer's key, the sealer and the Merkle index.
pub struct Audit {
    log: Arc<dyn EventLog>,
    key: SigningKey,
    clock: Clock,
    sealer: Sealer,
    index: RwLock<Index>,
    size: watch::Sender<u64>,
    /// Serializes refreshes of the audit part of the index.
    refreshing: tokio::sync::Mutex<()>,
    trust_path: std::path::PathBuf,
}

/// Starts sealing on `log` (recovering what the last run left unsealed) and returns the log to append
/// through, the audit state, and the sealer's task (to await after [`Audit::finish`]).
pub async fn start(
    settings: &Settings,
    log: Arc<dyn EventLog>,
) -> anyhow::Result<(Arc<dyn EventLog>, Arc<Audit>, tokio::task::JoinHandle<()>)> {
    let (sealer, key, task) = Sealer::start(settings, log.clone()).await?;
    let sealing: Arc<dyn EventLog> = Arc::new(SealingLog::new(log.clone(), sealer.clone()));
    let kept = settings.data_dir.join("audit").join("merkle-chunks");
    let (chunk_file, tree) = chunks::ChunkFile::open(kept, &*log, CHUNK_BITS).await;
    let size = watch::channel(tree.size()).0;
    let audit = Arc::new(Audit {
        log,
        key,
        clock: settings.clock.clone(),
        sealer,
        index: RwLock::new(Index {
            tree,
            chunk_file,
            sealed: SealRuns::default(),
            bulletins: HashMap::new(),
            audit_seen: 0,
        }),
        size,
        refreshing: tokio::sync::Mutex::new(()),
        trust_path: keys::trust_path(&settings.data_dir),
    });
    Ok((sealing, audit, task))
}

impl Audit {
    /// Seals what is still unsealed and stops the sealer (after the last append).
    pub async fn finish(&self) {
        self.sealer.finish().await;
    }

    /// The trust file of this data dir.
    pub fn trust(&self) -> anyhow::Result<rectify_domain::audit::Trust> {
        keys::read_trust(&self.trust_path)
    }

    /// The writer's signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Commits in the Merkle index.
    pub fn size(&self) -> u64 {
        *self.size.borrow()
    }

    /// Waits until the index holds `size` commits; false after `timeout`.
    pub async fn wait_for(&self, size: u64, timeout: Duration) -> bool {
        let mut rx = self.size.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s >= size)).await.is_ok_and(|r| r.is_ok())
    }

    /// Follows the log into the index until `shutdown` resolves.
    pub async fn follow(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut batches = rectify_eventlog::follow(self.log.clone(), self.size() + 1, 1024, "audit index");
        loop {
            let records = tokio::select! {
                _ = &mut shutdown => return,
                Some(records) = batches.next() => records,
            };
            let mut index = self.index.write().expect("index lock");
            for record in records {
                // Only a damaged log has gaps; keep leaf numbers equal to positions.
                for _ in index.tree.size() + 1..record.position {
                    index.tree.push([0; 32]);
                }
                index.tree.push(commit_leaf(record.position, &record.commit));
            }
            let Index { tree, chunk_file, .. } = &mut *index;
            chunk_file.record(tree);
            self.size.send_replace(tree.size());
        }
    }

    /// Reads audit records appended since the last refresh (by any process) into the index.
    pub async fn refresh(&self) -> Result<(), ReadError> {
        let _guard = self.refreshing.lock().await;
        loop {
            let from = self.index.read().expect("index lock").audit_seen + 1;
            let entries = self.log.read_audit(from, 1024).await?;
            let Some(last) = entries.last().map(|e| e.position) else { return Ok(()) };
            let mut index = self.index.write().expect("index lock");
            for e in entries {
                match e.record {
                    Ok(AuditRecord::Seal(seal)) => {
                        for entry in seal.entries {
                            index.sealed.insert(entry.position, e.position);
                        }
                    }
                    Ok(AuditRecord::Bulletin(b)) => {
                        index.bulletins.insert(b.id.clone(), e.position);
                    }
                    Err(_) => {}
                }
            }
            index.audit_seen = last;
        }
    }

    /// The audit position of the seal covering `position`, if one is indexed.
    pub fn seal_of(&self, position: u64) -> Option<u64> {
        self.index.read().expect("index lock").sealed.get(position)
    }

    /// The audit position of bulletin `id`, if indexed.
    pub fn bulletin_at(&self, id: &str) -> Option<u64> {
        self.index.read().expect("index lock").bulletins.get(id).copied()
    }

    /// Computes `f` over the Merkle index, with the leaves of the finished chunks it needs read again from
    /// the log.
    async fn over_tree<T>(&self, f: impl Fn(&WithChunks) -> T) -> Result<T, ReadError> {
        let mut loaded = HashMap::new();
        loop {
            let missing = {
                let index = self.index.read().expect("index lock");
                let view = index.tree.with(&loaded);
                let answer = f(&view);
                let missing = view.missing();
                if missing.is_empty() {
                    return Ok(answer);
                }
                missing.into_iter().map(|chunk| (chunk, index.tree.chunk_leaves(chunk))).collect::<Vec<_>>()
            };
            for (chunk, leaves) in missing {
                loaded.insert(chunk, chunks::leaves(&*self.log, leaves.start + 1, leaves.end).await?);
            }
        }
    }

    /// The root of the first `size` commits, if the index holds them.
    pub async fn root(&self, size: u64) -> Result<Option<Hash>, ReadError> {
        if size > self.size() {
            return Ok(None);
        }
        self.over_tree(|tree| Some(merkle::root(tree, size))).await
    }

    /// The leaf hash of `position`.
    pub async fn leaf(&self, position: u64) -> Result<Option<Hash>, ReadError> {
        if position == 0 || position > self.size() {
            return Ok(None);
        }
        self.over_tree(|tree| Some(tree.node(0, position - 1))).await
    }

    /// A checkpoint of the first `size` commits, signed now.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<Checkpoint>, ReadError> {
        let root = self.root(size).await?;
        Ok(root.map(|root| Checkpoint::sign(&self.key, size, &root, (self.clock)())))
    }

    /// RFC 9162 inclusion proof of `position` in the tree of `size` commits.
    pub async fn inclusion(&self, position: u64, size: u64) -> Result<Option<Vec<Hash>>, ReadError> {
        let Some(index) = position.checked_sub(1) else { return Ok(None) };
        self.over_tree(|tree| merkle::inclusion_proof(tree, index, size)).await
    }

    /// RFC 9162 consistency proof between the trees of `from` and `to` commits.
    pub async fn consistency(&self, from: u64, to: u64) -> Result<Option<Vec<Hash>>, ReadError> {
        self.over_tree(|tree| merkle::consistency_proof(tree, from, to)).await
    }

    /// Appends a record to the audit store and indexes it.
    pub async fn append(&self, record: &AuditRecord) -> Result<u64, rectify_eventlog::AppendError> {
        let at = self.log.append_audit(record).await?;
        // Best effort: a failed refresh only delays the index until the next one.
        let _ = self.refresh().await;
        Ok(at)
    }

    /// The log the index follows.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::SealRuns;
    use std::collections::HashMap;

    #[test]
    fn seal_runs_answer_like_a_map_of_first_seals() {
        // Positions sealed out of order, some twice, by interleaved seals.
        let inserts = [(5, 1), (6, 1), (4, 1), (8, 2), (7, 1), (7, 3), (10, 2), (9, 2), (1, 4), (3, 5), (2, 5), (6, 9)];
        let (mut runs, mut map) = (SealRuns::default(), HashMap::new());
        for (position, seal) in inserts {
            runs.insert(position, seal);
            map.entry(position).or_insert(seal);
            for p in 0..12 {
                assert_eq!(runs.get(p), map.get(&p).copied(), "position {p} after sealing {position}");
            }
        }
        // 1 | 2–3 | 4–7 | 8–10
        assert_eq!(runs.runs.len(), 4, "{runs:?}");
    }
}
