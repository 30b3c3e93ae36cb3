//! The JetStream audit store: stream `RECTIFY_AUDIT` on subjects `rectify.audit.>`, beside the event
//! stream, with the same guarantees (file storage, deny delete and purge, no limits, checked at connect).
//!
//! - A seal is published on `rectify.audit.seal.<key id>`, a bulletin on `rectify.audit.bulletin.<id>`;
//!   the payload is [`AuditRecord::encode`], `Nats-Msg-Id` the record's kind and signature prefix, so a
//!   retried publish is stored once.
//! - The position of a record is its stream sequence; reads go to the stream leader one message at a time
//!   (audit records are few: one seal per few milliseconds of writes).

use super::{
    Inner, JetStreamConfig, JetStreamError, differences, is_unavailable, placement_pending, read_error, store_full,
    stream_config,
};
use crate::{AppendError, AuditEntry, ReadError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::{self, ErrorCode};
use rectify_domain::audit::AuditRecord;

/// The audit stream's configuration: the event stream's, on its own name and subjects.
pub(super) fn audit_stream_config(config: &JetStreamConfig) -> stream::Config {
    let mut c = stream_config(config);
    c.name = config.audit_stream.clone();
    c.subjects = vec![format!("{}.>", config.audit_subject_prefix)];
    c
}

/// Finds the audit stream, creating it if missing, and refuses one with another configuration.
pub(super) async fn ensure_stream(
    context: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<Stream, JetStreamError> {
    let wanted = audit_stream_config(config);
    let overlaps = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."));
    if overlaps(&config.audit_subject_prefix, &config.subject_prefix) || wanted.name == config.stream {
        return Err(JetStreamError::InvalidConfig(format!(
            "the audit stream {} on `{}.>` must differ from the event stream {} on `{}.>`",
            wanted.name, config.audit_subject_prefix, config.stream, config.subject_prefix
        )));
    }
    let unavailable =
        |e: &dyn std::fmt::Display| JetStreamError::Unavailable { url: config.url.clone(), reason: e.to_string() };
    let stream = match context.get_stream(&wanted.name).await {
        Ok(stream) => stream,
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                match context.create_stream(wanted.clone()).await {
                    Ok(stream) => stream,
                    // Another process may have created it meanwhile.
                    Err(create) => context.get_stream(&wanted.name).await.map_err(|_| {
                        if is_unavailable(&create) || placement_pending(&create) {
                            unavailable(&create)
                        } else {
                            JetStreamError::Failed(format!("creating stream {}: {create}", wanted.name))
                        }
                    })?,
                }
            }
            _ if is_unavailable(&e) => return Err(unavailable(&e)),
            _ => return Err(JetStreamError::Failed(format!("looking up stream {}: {e}", wanted.name))),
        },
    };
    let differences = differences(&stream.cached_info().config, &wanted);
    if !differences.is_empty() {
        return Err(JetStreamError::StreamMismatch { stream: wanted.name, differences: differences.join("; ") });
    }
    Ok(stream)
}

impl Inner {
    fn audit_subject(&self, record: &AuditRecord) -> (String, String) {
        let prefix = &self.config.audit_subject_prefix;
        match record {
            AuditRecord::Seal(s) => {
                (format!("{prefix}.seal.{}", s.key_id), format!("seal:{}", &s.signature[..s.signature.len().min(32)]))
            }
            AuditRecord::Bulletin(b) => (format!("{prefix}.bulletin.{}", b.id), format!("bulletin:{}", b.id)),
        }
    }

    pub(super) async fn append_audit(&self, record: &AuditRecord) -> Result<u64, AppendError> {
        let (subject, id) = self.audit_subject(record);
        let payload: bytes::Bytes = record.encode().into();
        // Retried within the timeout while the stream has no leader (just created, or an election on a
        // cluster): the message id makes a retry of a stored record a duplicate, answered with its position.
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut pause = std::time::Duration::from_millis(25);
        loop {
            let message = PublishMessage::build().payload(payload.clone()).message_id(id.as_str());
            let publish = async {
                let ack = self.context.send_publish(subject.clone(), message).await?;
                ack.await
            };
            let error = match tokio::time::timeout_at(deadline, publish).await {
                Err(_) => return Err(AppendError::Unavailable(self.unavailable("appending an audit record"))),
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(e)) if !is_unavailable(&e) => return Err(AppendError::storage(store_full(&e), e.to_string())),
                Ok(Err(e)) => e,
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(AppendError::Unavailable(error.to_string()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
        }
    }

    pub(super) async fn audit_head(&self) -> Result<u64, ReadError> {
        let info = self
            .bounded(self.audit.get_info())
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("reading the audit head")))?
            .map_err(|e| read_error("reading the audit head", &e))?;
        Ok(info.state.last_sequence)
    }

    pub(super) async fn read_audit(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError> {
        let head = self.audit_head().await?;
        let from = from.max(1);
        let mut out = Vec::new();
        let mut position = from;
        while position <= head && out.len() < max {
            let msg = self
                .bounded(self.audit.get_raw_message(position))
                .await
                .ok_or_else(|| ReadError::Unavailable(self.unavailable("reading an audit record")))?
                .map_err(|e| read_error("reading an audit record", &e))?;
            out.push(AuditEntry { position: msg.sequence, record: AuditRecord::decode(&msg.payload) });
            position = msg.sequence + 1;
        }
        Ok(out)
    }
}
