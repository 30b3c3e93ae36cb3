//! The embedded audit store: audit records in the log's file, numbered apart from the commits (from 1, no
//! gaps). Appends go through the log's writer, which numbers them and makes them durable with the same
//! write and flush as the commits of its batch; only flushed records are read.

use super::{AuditRequest, EmbeddedLog, Kind, Request, closed};
use crate::{AppendError, AuditEntry, ReadError};
use rectify_domain::audit::AuditRecord;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

impl EmbeddedLog {
    pub(super) async fn append_audit_record(&self, record: &AuditRecord) -> Result<u64, AppendError> {
        let bytes = record.encode();
        super::fits(&[], bytes.len())?;
        let (reply, answer) = oneshot::channel();
        let request = Request::Audit(AuditRequest { bytes, reply });
        self.inner.requests.send(request).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    pub(super) fn read_audit_records(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError> {
        let shared = &self.inner.shared;
        let head = self.audit_published();
        let locs = shared.index.read().expect("not poisoned").audit.range(from, head, max);
        let records = crate::storage_work(locs.len(), || shared.read_bodies(Kind::Audit, &locs))?;
        Ok(records
            .into_iter()
            .map(|(position, body)| AuditEntry { position, record: AuditRecord::decode(&body) })
            .collect())
    }

    pub(super) fn audit_published(&self) -> u64 {
        self.inner.shared.audit_published.load(Ordering::Acquire)
    }
}
