//! The roots of the Merkle index's finished chunks, kept in `DATA/audit/merkle-chunks` (32 bytes each, in
//! order) so that a restart need not read and hash the whole log again (at a million commits that read
//! was a third of the service's memory). It is a cache of what the log says: at start the last kept chunk
//! is recomputed from the log and the file is dropped when it does not match; `audit verify` never uses it.

use rectify_domain::audit::Hash;
use rectify_domain::audit::merkle::{ChunkedTree, perfect_root};
use rectify_domain::audit::signed::commit_leaf;
use rectify_eventlog::{EventLog, ReadError};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// The file, open for appending the roots of chunks as they finish.
pub struct ChunkFile {
    path: PathBuf,
    /// None once a write failed: the file then stops where it was, which a restart handles.
    file: Option<File>,
    /// Roots in the file.
    kept: u64,
}

impl ChunkFile {
    /// The tree of the kept roots that match `log`, and the file to add more to.
    pub async fn open(path: PathBuf, log: &dyn EventLog, bits: u32) -> (ChunkFile, ChunkedTree) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let mut roots: Vec<Hash> = bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        roots.truncate((log.head().await.unwrap_or(0) >> bits) as usize);
        if let Some(last) = roots.len().checked_sub(1) {
            let first = (last as u64) << bits;
            let again = leaves(log, first + 1, first + (1 << bits)).await;
            if !again.is_ok_and(|leaves| perfect_root(&leaves) == roots[last]) {
                tracing::warn!(path = %path.display(), "the kept Merkle chunks do not match the log; indexing it anew");
                roots.clear();
            }
        }
        let file = ChunkFile::write(&path, &roots)
            .inspect_err(|error| tracing::warn!(%error, path = %path.display(), "cannot keep Merkle chunks"))
            .ok();
        let tree = ChunkedTree::resume(bits, roots.iter().copied());
        (ChunkFile { path, file, kept: tree.finished() }, tree)
    }

    /// Rewrites the file with `roots` when it holds anything else (a torn or stale tail), and opens it
    /// for appending.
    fn write(path: &PathBuf, roots: &[Hash]) -> std::io::Result<File> {
        if std::fs::metadata(path).map_or(0, |m| m.len()) != roots.len() as u64 * 32 {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, roots.concat())?;
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
        match file.write_all(&roots.concat()) {
            Ok(()) => self.kept += roots.len() as u64,
            Err(error) => {
                tracing::warn!(%error, path = %self.path.display(), "cannot keep Merkle chunks; a restart reads the log");
                self.file = None;
            }
        }
    }
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
    async fn kept_chunks_resume_the_tree_and_a_file_that_does_not_match_the_log_is_dropped() {
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
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64, "two finished chunks of 64");

        let (_, resumed) = ChunkFile::open(path.clone(), &log, 6).await;
        assert_eq!((resumed.size(), roots(&resumed)), (128, roots(&tree)));

        // A torn last write is cut off; the roots before it are kept.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[7; 5]).unwrap();
        let (_, resumed) = ChunkFile::open(path.clone(), &log, 6).await;
        assert_eq!((resumed.size(), std::fs::metadata(&path).unwrap().len()), (128, 64));

        // Roots that are not the log's (another log's file, an edited byte) are not trusted.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let (_, resumed) = ChunkFile::open(path.clone(), &log, 6).await;
        assert_eq!((resumed.size(), std::fs::metadata(&path).unwrap().len()), (0, 0));
    }
}
