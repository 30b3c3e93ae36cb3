//! The embedded audit store: a second sled tree, `rectify_audit`, in the same database as the log.
//!
//! Key: position (u64 big-endian, from 1, no gaps); value: [`AuditRecord::encode`] bytes. Appends go through
//! the log's writer, which numbers them and makes them durable with the same flush as the commits of its
//! batch (one fsync for both); only flushed records are read.

use super::{AuditRequest, EmbeddedLog, Request, closed, storage_read};
use crate::{AppendError, AuditEntry, ReadError};
use rectify_domain::audit::AuditRecord;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// The sled tree that holds the audit store.
pub(super) const TREE: &str = "rectify_audit";

/// The audit tree and its last flushed position (the writer publishes it; readers see nothing past it).
#[derive(Clone)]
pub(super) struct AuditTree {
    pub(super) tree: sled::Tree,
    pub(super) published: Arc<AtomicU64>,
}

impl AuditTree {
    /// Opens the tree in `db` and finds its head.
    pub(super) fn open(db: &sled::Db) -> Result<AuditTree, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let head = match tree.last()? {
            Some((k, _)) => <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        Ok(AuditTree { tree, published: Arc::new(AtomicU64::new(head)) })
    }
}

impl EmbeddedLog {
    pub(super) async fn append_audit_record(&self, record: &AuditRecord) -> Result<u64, AppendError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Audit(AuditRequest { bytes: record.encode(), reply });
        self.inner.requests.send(request).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
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
