//! The roots of the Merkle index's finished chunks, kept in `DATA/audit/merkle-chunks` so that a restart
//! need not read and hash the whole log again (at a million commits that read was a third of the service's
//! memory). It is a cache of what the log says, and checkpoints are signed over it, so it is checked before
//! it is used: each root is stored with a check (40 bytes a chunk, in order) and the roots are kept up to
//! the first record that is torn or fails its check (a flipped bit anywhere); the last kept chunk is
//! recomputed from the log and the file is dropped when it does not match (another log's file). `audit
//! verify` never uses it.

use rectify_domain::audit::Hash;
use rectify_domain::audit::merkle::{ChunkedTree, perfect_root};
use rectify_domain::audit::signed::commit_leaf;
use rectify_eventlog::{EventLog, ReadError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// Bytes of one record: the root, then its check.
const RECORD: usize = 40;

/// The record of chunk `chunk`'s root: the root and the first 8 bytes of SHA-256(chunk number ‖ root).
fn record(chunk: u64, root: &Hash) -> [u8; RECORD] {
    let check = Sha256::new().chain_update(chunk.to_be_bytes()).chain_update(root).finalize();
    let mut out = [0; RECORD];
    out[..32].copy_from_slice(root);
    out[32..].copy_from_slice(&check[..RECORD - 32]);
    out
}

/// The roots of `bytes` up to the first record that is torn or fails its check.
fn checked_roots(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(RECORD)
        .zip(0..)
        .map_while(|(stored, chunk)| {
            let root: Hash = stored[..32].try_into().expect("32 bytes");
            (record(chunk, &root) == stored).then_some(root)
        })
        .collect()
}

/// The file, open for appending the roots of chunks as they finish.
pub struct ChunkFile {
    path: PathBuf,
    /// None once a write failed: the file then stops where it was, which a restart handles.
    file: Option<File>,
    /// Roots in the file.
    kept: u64,
}

impl ChunkFile {
    /// The tree of the kept roots that match `log`, and the file to add more to. When the log cannot be
    /// read to check them, the tree starts empty and the file is left as it is for the next start.
    pub async fn open(path: PathBuf, log: &dyn EventLog, bits: u32) -> (ChunkFile, ChunkedTree) {
        let mut roots = checked_roots(&std::fs::read(&path).unwrap_or_default());
        if let Err(error) = ChunkFile::match_log(&mut roots, log, bits).await {
            tracing::warn!(%error, path = %path.display(), "cannot check the kept Merkle chunks; indexing the log anew");
            return (ChunkFile { path, file: None, kept: 0 }, ChunkedTree::resume(bits, []));
        }
        let file = ChunkFile::write(&path, &roots)
            .inspect_err(|error| tracing::warn!(%error, path = %path.display(), "cannot keep Merkle chunks"))
            .ok();
        let tree = ChunkedTree::resume(bits, roots.iter().copied());
        (ChunkFile { path, file, kept: tree.finished() }, tree)
    }

    /// Drops the roots past the log's head, and all of them when the last one is not the log's.
    async fn match_log(roots: &mut Vec<Hash>, log: &dyn EventLog, bits: u32) -> Result<(), ReadError> {
        roots.truncate((log.head().await? >> bits) as usize);
        if let Some(last) = roots.len().checked_sub(1) {
            let first = (last as u64) << bits;
            if perfect_root(&leaves(log, first + 1, first + (1 << bits)).await?) != roots[last] {
                tracing::warn!("the kept Merkle chunks do not match the log; indexing it anew");
                roots.clear();
            }
        }
        Ok(())
    }

    /// Rewrites the file with `roots` when it holds anything else (a torn, damaged or stale tail), and opens
    /// it for appending.
    fn write(path: &PathBuf, roots: &[Hash]) -> std::io::Result<File> {
        if std::fs::metadata(path).map_or(0, |m| m.len()) != (roots.len() * RECORD) as u64 {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, records(0, roots))?;
            std::fs::rename(&tmp, path)?;
        }
        std::fs::OpenOptions::new().create(true).append(true).open(path)
    }

    /// Appends the roots of the chunks `tree` finished since the last call.
    pub fn record(&mut self, tree: &ChunkedTree) {
        let Some(file) = &mut self.file else { return };
        let roots: Vec<Hash> = (self.kept..tree.finished()).filter_map(|c| tree.chunk_root(c)).collect();
        if roots.is_empty() {
            return;
        }
        match file.write_all(&records(self.kept, &roots)) {
            Ok(()) => self.kept += roots.len() as u64,
            Err(error) => {
                tracing::warn!(%error, path = %self.path.display(), "cannot keep Merkle chunks; a restart reads the log");
                self.file = None;
            }
        }
    }
}

/// The records of `roots`, the first being chunk `first`'s.
fn records(first: u64, roots: &[Hash]) -> Vec<u8> {
    roots.iter().zip(first..).flat_map(|(root, chunk)| record(chunk, root)).collect()
}

/// The leaf hashes of positions `first..=last`, as the audit index computes them (zeros for a gap).
pub async fn leaves(log: &dyn EventLog, first: u64, last: u64) -> Result<Vec<Hash>, ReadError> {
    let mut out = vec![[0; 32]; (last + 1 - first) as usize];
    let mut next = first;
    while next <= last {
        let records = log.read_from(next, (last + 1 - next) as usize).await?;
        let Some(end) = records.last().map(|r| r.position) else {
            let reason = "indexed for audit but no longer in the log".to_owned();
            return Err(ReadError::Corrupt { position: next, reason });
        };
        for record in records.iter().filter(|r| r.position <= last) {
            out[(record.position - first) as usize] = commit_leaf(record.position, &record.commit);
        }
        next = end + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::data;
    use rectify_eventlog::EmbeddedLog;

    fn roots(tree: &ChunkedTree) -> Vec<Hash> {
        (0..tree.finished()).filter_map(|c| tree.chunk_root(c)).collect()
    }

    #[tokio::test]
    async fn kept_chunks_resume_the_tree_and_damaged_or_foreign_roots_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        let places = data::places(&crate::regions::Regions::guizhou());
        for i in 0..150 {
            log.append(&data::new_problem_commit(&places, "k", i), 0).await.unwrap();
        }
        let path = dir.path().join("merkle-chunks");
        let (mut file, mut tree) = ChunkFile::open(path.clone(), &log, 6).await;
        assert_eq!(tree.size(), 0);
        for leaf in leaves(&log, 1, 150).await.unwrap() {
            tree.push(leaf);
            file.record(&tree);
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80, "two finished chunks of 64");

        let (_, resumed) = ChunkFile::open(path.clone(), &log, 6).await;
        assert_eq!((resumed.size(), roots(&resumed)), (128, roots(&tree)));
        let kept = std::fs::read(&path).unwrap();
        let reopen = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let (path, log) = (path.clone(), log.clone());
            async move {
                let (_, resumed) = ChunkFile::open(path.clone(), &log, 6).await;
                (resumed.size(), std::fs::metadata(&path).unwrap().len())
            }
        };

        // A torn last write is cut off; the roots before it are kept.
        assert_eq!(reopen(&[&kept[..], &[7; 5]].concat()).await, (128, 80));
        // A flipped bit in a root or in its check: the roots before it are kept, it and the rest indexed anew.
        for (at, kept_roots) in [(3, 0), (35, 0), (40 + 17, 1), (40 + 39, 1)] {
            let mut bytes = kept.clone();
            bytes[at] ^= 1;
            assert_eq!(reopen(&bytes).await, (64 * kept_roots, 40 * kept_roots), "bit flipped in byte {at}");
        }
        // Roots with valid checks that are not the log's (another log's file) are not trusted.
        let other = records(0, &[[1; 32], [2; 32]]);
        assert_eq!(reopen(&other).await, (0, 0));
        // Past the log's head: dropped.
        let longer = [&kept[..], &records(2, &[[3; 32]])].concat();
        assert_eq!(reopen(&longer).await, (128, 80));
    }
}
