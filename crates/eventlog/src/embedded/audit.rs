//! The embedded audit store: a second sled tree, `rectify_audit`, in the same database as the log.
//!
//! Key: position (u64 big-endian, from 1, no gaps); value: [`AuditRecord::encode`] bytes. Appends are
//! serialized by a lock, flushed before they are acknowledged, and only flushed records are read.

use super::{EmbeddedLog, storage_read};
use crate::{AppendError, AuditEntry, ReadError};
use rectify_domain::audit::AuditRecord;
use std::sync::atomic::{AtomicU64, Ordering};

/// The sled tree that holds the audit store.
pub(super) const TREE: &str = "rectify_audit";

/// The audit tree and its writer's state.
pub(super) struct AuditTree {
    pub(super) tree: sled::Tree,
    /// Held while appending; the next position.
    next: tokio::sync::Mutex<u64>,
    /// The last flushed position: readers see nothing past it.
    published: AtomicU64,
}

impl AuditTree {
    /// Opens the tree in `db` and finds its head.
    pub(super) fn open(db: &sled::Db) -> Result<AuditTree, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let head = match tree.last()? {
            Some((k, _)) => <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        Ok(AuditTree { tree, next: tokio::sync::Mutex::new(head + 1), published: AtomicU64::new(head) })
    }
}

impl EmbeddedLog {
    pub(super) async fn append_audit_record(&self, record: &AuditRecord) -> Result<u64, AppendError> {
        let audit = &self.inner.audit;
        let mut next = audit.next.lock().await;
        let position = *next;
        let failed = |e: sled::Error| AppendError::Failed(format!("sled: {e}"));
        audit.tree.insert(position.to_be_bytes(), record.encode()).map_err(failed)?;
        *next += 1;
        // A failed flush leaves the record in the tree, not known to be durable; the next append flushes it.
        audit.tree.flush_async().await.map_err(|e| AppendError::Failed(format!("sled flush failed: {e}")))?;
        audit.published.store(position, Ordering::Release);
        Ok(position)
    }

    pub(super) fn read_audit_records(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError> {
        let audit = &self.inner.audit;
        let head = audit.published.load(Ordering::Acquire);
        let from = from.max(1);
        if max == 0 || from > head {
            return Ok(Vec::new());
        }
        audit
            .tree
            .range(from.to_be_bytes()..=head.to_be_bytes())
            .take(max)
            .map(|entry| {
                let (k, v) = entry.map_err(storage_read)?;
                let position = <[u8; 8]>::try_from(k.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| ReadError::Corrupt { position: from, reason: format!("malformed audit key {k:?}") })?;
                Ok(AuditEntry { position, record: AuditRecord::decode(&v) })
            })
            .collect()
    }

    pub(super) fn audit_published(&self) -> u64 {
        self.inner.audit.published.load(Ordering::Acquire)
    }
}
