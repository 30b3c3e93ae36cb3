//! The NATS JetStream backend: one stream (`RECTIFY_EVENTS`), one subject per aggregate, one message per
//! commit.
//!
//! - Subject: `<prefix>.<prefecture>.<county>.<aggregate id>`, e.g.
//!   `rectify.events.520100.520102.P520102-01J9Z`; the payload is [`Commit::encode`].
//! - Position: the message's stream sequence. `expected` is sent as `Nats-Expected-Last-Subject-Sequence`
//!   (0 for a new stream: enforced by a single 2.9.10 server, verified by this crate's tests), so the server
//!   decides concurrency; the command id is `Nats-Msg-Id`, so the server drops a retried command within its
//!   duplicate window (2 minutes by default) and answers with the first sequence.
//! - Reads of one aggregate and of the conflict check go to the stream leader (`STREAM.MSG.GET`), not to
//!   direct gets, which a lagging replica may answer: a command decided on a read must see the last write.
//!   Log-order reads and the tail use named ordered consumers (unnamed ones leak on nats-server 2.9.10).
//! - Every call but the tail is bounded by [`JetStreamConfig::timeout`] (an append that finds a duplicate
//!   or a conflict makes one more bounded read) and answers `Unavailable` when the server does not answer in
//!   time; the client keeps reconnecting by itself, so calls succeed again once it is back, and the tail
//!   reopens its consumer after every reconnection.
//! - `find_command` knows only the commands this process appended: JetStream has no index by message id.
//! - The audit store (seals, bulletins) is a second stream, `RECTIFY_AUDIT`; see [`audit`].
//! - Servers: replicas > 1 is refused before nats-server 2.9.21 (issue #4320); before 2.10 a warning says
//!   that files are fsynced only every 2 minutes.

mod audit;

use crate::{AppendError, Appended, AuditEntry, DiskRefusal, EventLog, ReadError, Record};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectErrorKind, ConnectOptions};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Future, StreamExt};
use rectify_domain::audit::AuditRecord;
use rectify_domain::{AggregateId, Commit};
use std::collections::VecDeque;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How to reach the server and which stream to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Server URL(s), e.g. `nats://127.0.0.1:4222` (comma-separated for a cluster).
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// Subject prefix; the stream holds `<prefix>.>`.
    pub subject_prefix: String,
    /// Stream replicas (1, or 3 for a cluster on nats-server ≥ 2.9.21).
    pub replicas: usize,
    /// Bound on every call: a server that does not answer within it is `Unavailable`.
    pub timeout: Duration,
    /// The audit store's stream (seals, bulletins).
    pub audit_stream: String,
    /// The audit stream holds `<audit prefix>.>`.
    pub audit_subject_prefix: String,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "RECTIFY_EVENTS".into(),
            subject_prefix: "rectify.events".into(),
            replicas: 1,
            timeout: Duration::from_secs(3),
            audit_stream: "RECTIFY_AUDIT".into(),
            audit_subject_prefix: "rectify.audit".into(),
        }
    }
}

/// Why [`JetStreamLog::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JetStreamError {
    /// The configuration cannot work (bad names, replicas out of range).
    #[error("invalid JetStream configuration: {0}")]
    InvalidConfig(String),
    /// The server did not answer in time.
    #[error("NATS server at {url} unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// The stream exists with settings the log cannot rely on. It is never changed automatically.
    #[error(
        "stream {stream} exists with a configuration the event log cannot use: {differences}; \
         it is never updated automatically: fix it by hand or configure another stream name"
    )]
    StreamMismatch { stream: String, differences: String },
    /// The server is too old for the requested setup.
    #[error("{0}")]
    UnsupportedServer(String),
    /// Any other failure.
    #[error("JetStream failure: {0}")]
    Failed(String),
}

/// How many command ids [`JetStreamLog::find_command`] remembers.
const REMEMBERED_COMMANDS: usize = 65_536;
/// `read_from` gets fewer records than this one by one from the stream leader, and more through an ordered
/// consumer: creating a consumer is a cluster-wide operation (the meta leader's), which on a busy 3-node
/// cluster took longer than the 3 s timeout, where a few gets answer at once.
const DIRECT_READS: u64 = 16;

/// The JetStream event log. Cheap to share behind an `Arc`; every call is independent.
pub struct JetStreamLog {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    context: jetstream::Context,
    stream: Stream,
    /// The audit store's stream.
    audit: Stream,
    config: JetStreamConfig,
    /// Unique per process (from the client's NUID), so consumer names never collide across processes.
    consumer_prefix: String,
    consumer_serial: AtomicU64,
    /// Counts (re)connections: a tail reopens its consumer after each, since a restarted server has
    /// lost it (ordered consumers live in memory) and the client would only notice after ~15 s.
    connections: watch::Sender<u64>,
    commands: Mutex<CommandMemory>,
}

impl JetStreamLog {
    /// Connects, checks the server version and creates the stream if missing or checks it if present.
    /// The client reconnects by itself later; only this first contact must succeed within the timeout.
    pub async fn connect(config: JetStreamConfig) -> Result<JetStreamLog, JetStreamError> {
        validate(&config)?;
        let unavailable = |reason: String| JetStreamError::Unavailable { url: config.url.clone(), reason };
        let (connections, _) = watch::channel(0u64);
        // Retry the first connection within the timeout (the server may be starting too); once connected,
        // the client reconnects by itself, forever, whenever the server comes back.
        let deadline = Instant::now() + config.timeout;
        let client = loop {
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            // A cluster is given as comma-separated URLs; the client also learns the other nodes from them.
            let urls: Vec<&str> = config.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            match client_options(&config, connections.clone(), remaining).connect(urls.as_slice()).await {
                Ok(client) => break client,
                Err(e) => match e.kind() {
                    ConnectErrorKind::ServerParse => {
                        return Err(JetStreamError::InvalidConfig(format!("NATS url {:?}: {e}", config.url)));
                    }
                    ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                        return Err(JetStreamError::Failed(format!("connecting to {}: {e}", config.url)));
                    }
                    _ if Instant::now() + CONNECT_PAUSE < deadline => tokio::time::sleep(CONNECT_PAUSE).await,
                    _ => return Err(unavailable(e.to_string())),
                },
            }
        };
        let context = jetstream::ContextBuilder::new().timeout(config.timeout).build(client.clone());
        // Creating a replicated stream waits for the cluster (and, while several processes start at once, for
        // each other's creation): keep trying for a while before giving up.
        let deadline = Instant::now() + config.timeout.max(STARTUP_WAIT);
        let (stream, audit) = loop {
            match ensure_streams(&client, &context, &config).await {
                Err(JetStreamError::Unavailable { reason, .. }) if Instant::now() < deadline => {
                    tracing::debug!(%reason, "JetStream not ready yet; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other?,
            }
        };

        let inbox = client.new_inbox();
        let consumer_prefix = format!("rectify_{}", inbox.rsplit('.').next().unwrap_or("x"));
        Ok(JetStreamLog {
            inner: Arc::new(Inner {
                client,
                context,
                stream,
                audit,
                config,
                consumer_prefix,
                consumer_serial: AtomicU64::new(0),
                connections,
                commands: Mutex::new(CommandMemory::default()),
            }),
        })
    }

    /// The subject a stream's commits are published on.
    pub fn subject(&self, stream: &AggregateId) -> String {
        self.inner.subject(stream)
    }

    /// The server version reported when the client (re)connected, e.g. `2.9.10`.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }
}

/// How long [`JetStreamLog::connect`] keeps trying to find or create the streams while the server (a cluster
/// electing its leaders, another process creating the same stream) does not answer.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// Finds the event and audit streams, creating them if missing, and refuses ones with another configuration.
async fn ensure_streams(
    client: &async_nats::Client,
    context: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<(Stream, Stream), JetStreamError> {
    let unavailable = |reason: String| JetStreamError::Unavailable { url: config.url.clone(), reason };
    let deadline = Instant::now() + config.timeout;
    let existing = loop {
        match context.get_stream(&config.stream).await {
            Ok(stream) => break Some(stream),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    break None;
                }
                _ if is_unavailable(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ if is_unavailable(&e) => return Err(unavailable(e.to_string())),
                _ => return Err(JetStreamError::Failed(format!("looking up stream {}: {e}", config.stream))),
            },
        }
    };
    check_server(&client.server_info().version, config.replicas)?;

    let wanted = stream_config(config);
    let stream = match existing {
        Some(stream) => stream,
        None => match context.create_stream(wanted.clone()).await {
            Ok(stream) => {
                tracing::info!(stream = %config.stream, replicas = config.replicas, "created JetStream stream");
                stream
            }
            // Another process may have created it meanwhile: look again and check what it made.
            Err(create) => match context.get_stream(&config.stream).await {
                Ok(stream) => stream,
                Err(_) if is_unavailable(&create) || placement_pending(&create) => {
                    return Err(unavailable(create.to_string()));
                }
                Err(_) => {
                    return Err(JetStreamError::Failed(format!("creating stream {}: {create}", config.stream)));
                }
            },
        },
    };
    let differences = differences(&stream.cached_info().config, &wanted);
    if !differences.is_empty() {
        return Err(JetStreamError::StreamMismatch {
            stream: config.stream.clone(),
            differences: differences.join("; "),
        });
    }

    let audit = audit::ensure_stream(context, config).await?;
    Ok((stream, audit))
}

/// Whether creating a stream failed only because the cluster cannot place its replicas yet: right after an
/// election the meta leader may not have heard from its peers and answers "no suitable peers for placement,
/// peer offline" (10005). Taken as "not ready yet", which [`JetStreamLog::connect`] waits out.
fn placement_pending(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(e.kind(), jetstream::context::CreateStreamErrorKind::JetStream(js)
        if js.error_code() == ErrorCode::CLUSTER_NO_PEERS)
}

/// The pause between first connection attempts (a refused connection fails at once).
const CONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Client options: bounded requests, quick reconnects, and `connections` bumped on every (re)connection.
fn client_options(
    config: &JetStreamConfig,
    connections: watch::Sender<u64>,
    connect_timeout: Duration,
) -> ConnectOptions {
    ConnectOptions::new()
        .name("rectify")
        .connection_timeout(connect_timeout)
        .request_timeout(Some(config.timeout))
        // Reconnect quickly after a restart: 0, 100, 200 … ms, at most 1 s between attempts, forever.
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .event_callback(move |event| {
            let connections = connections.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        connections.send_modify(|n| *n += 1);
                    }
                    other => tracing::debug!(event = %other, "NATS client event"),
                }
            }
        })
}

/// Rejects names that cannot be a stream name or a subject prefix.
fn validate(config: &JetStreamConfig) -> Result<(), JetStreamError> {
    let bad_name = config.stream.is_empty()
        || config.stream.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
    if bad_name {
        return Err(JetStreamError::InvalidConfig(format!("`{}` is not a valid stream name", config.stream)));
    }
    let bad_prefix = config
        .subject_prefix
        .split('.')
        .any(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace() || matches!(c, '*' | '>')));
    if bad_prefix {
        return Err(JetStreamError::InvalidConfig(format!(
            "`{}` is not a valid subject prefix (dot-separated tokens without wildcards)",
            config.subject_prefix
        )));
    }
    if !(1..=5).contains(&config.replicas) {
        return Err(JetStreamError::InvalidConfig(format!("replicas must be 1 to 5, not {}", config.replicas)));
    }
    if config.timeout.is_zero() {
        return Err(JetStreamError::InvalidConfig("timeout must be positive".into()));
    }
    Ok(())
}

/// Refuses replicated streams on servers that do not enforce per-subject expected sequences on them, and
/// warns about the fsync interval of servers before 2.10.
fn check_server(version: &str, replicas: usize) -> Result<(), JetStreamError> {
    let parsed = parse_version(version);
    if replicas > 1 && parsed.is_none_or(|v| v < (2, 9, 21)) {
        return Err(JetStreamError::UnsupportedServer(format!(
            "replicas = {replicas} needs nats-server 2.9.21 or later, the server is {version:?}: older servers do \
             not enforce Nats-Expected-Last-Subject-Sequence on replicated streams (nats-server issue #4320), \
             so concurrent commands could both be appended"
        )));
    }
    if parsed.is_none_or(|v| v < (2, 10, 0)) {
        tracing::warn!(
            server_version = version,
            "nats-server before 2.10 has no sync_interval and fsyncs JetStream files only every 2 minutes: a \
             crash of a single node can lose acknowledged commits; use 2.10+ with `sync_interval: always`, \
             or replicas = 3 on 2.9.21+"
        );
    }
    Ok(())
}

/// `2.9.10` → `(2, 9, 10)`; a suffix such as `-beta` is ignored.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.trim().trim_start_matches('v').split(['.', '-', '+']).map(|p| p.parse().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

fn stream_config(config: &JetStreamConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        num_replicas: config.replicas,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// What makes an existing stream unusable as the log: other subjects, storage or replicas, anything that
/// lets messages disappear (deletes, purges, limits, non-limits retention), or a sealed stream.
fn differences(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, ok: bool, have: String, want: String| {
        if !ok {
            out.push(format!("{what} is {have}, expected {want}"));
        }
    };
    check("subjects", have.subjects == want.subjects, format!("{:?}", have.subjects), format!("{:?}", want.subjects));
    check("storage", have.storage == want.storage, format!("{:?}", have.storage), format!("{:?}", want.storage));
    check(
        "num_replicas",
        have.num_replicas == want.num_replicas,
        have.num_replicas.to_string(),
        want.num_replicas.to_string(),
    );
    check("deny_delete", have.deny_delete, have.deny_delete.to_string(), "true".into());
    check("deny_purge", have.deny_purge, have.deny_purge.to_string(), "true".into());
    check("allow_direct", have.allow_direct, have.allow_direct.to_string(), "true".into());
    check("retention", have.retention == RetentionPolicy::Limits, format!("{:?}", have.retention), "Limits".into());
    check("sealed", !have.sealed, have.sealed.to_string(), "false".into());
    let unlimited =
        have.max_messages <= 0 && have.max_bytes <= 0 && have.max_age.is_zero() && have.max_messages_per_subject <= 0;
    check("limits", unlimited, "set (messages would be dropped)".into(), "none".into());
    out
}

impl Inner {
    fn subject(&self, id: &AggregateId) -> String {
        let county = id.county();
        format!("{}.{}.{}.{}", self.config.subject_prefix, county.prefecture(), county, id)
    }

    fn consumer_name(&self) -> String {
        format!("{}_{}", self.consumer_prefix, self.consumer_serial.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs one server call, answering `None` when it did not finish within the timeout.
    async fn bounded<T>(&self, call: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.config.timeout, call).await.ok()
    }

    fn unavailable(&self, what: &str) -> String {
        format!("{what}: no answer from NATS within {:?}", self.config.timeout)
    }

    /// Decodes a stored message, checking that it sits on its stream's subject.
    fn record(&self, position: u64, subject: &str, payload: &[u8]) -> Result<Record, ReadError> {
        let commit = Commit::decode(payload).map_err(|e| ReadError::Corrupt { position, reason: e.to_string() })?;
        let expected = self.subject(commit.stream());
        if subject != expected {
            let reason = format!("commit of {} stored on subject {subject}", commit.stream());
            return Err(ReadError::Corrupt { position, reason });
        }
        Ok(Record { position, commit })
    }

    /// The message at `position` (from the stream leader).
    async fn get(&self, position: u64) -> Result<Record, ReadError> {
        let msg = self
            .bounded(self.stream.get_raw_message(position))
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("reading a commit")))?
            .map_err(|e| read_error("reading a commit", &e))?;
        self.record(msg.sequence, &msg.subject, &msg.payload)
    }

    /// The first message on `subject` at or after `from`, if any (from the stream leader).
    async fn next_on_subject(&self, subject: &str, from: u64) -> Result<Option<Record>, ReadError> {
        let answer = self
            .bounded(self.stream.get_first_raw_message_by_subject(subject, from))
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("reading a stream")))?;
        match answer {
            Ok(msg) => self.record(msg.sequence, &msg.subject, &msg.payload).map(Some),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(read_error("reading a stream", &e)),
        }
    }

    /// The last message on `subject`, if any (from the stream leader).
    async fn last_on_subject(&self, subject: &str) -> Result<Option<Record>, ReadError> {
        let answer = self
            .bounded(self.stream.get_last_raw_message_by_subject(subject))
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("reading a stream's last commit")))?;
        match answer {
            Ok(msg) => self.record(msg.sequence, &msg.subject, &msg.payload).map(Some),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(read_error("reading a stream's last commit", &e)),
        }
    }

    async fn head(&self) -> Result<u64, ReadError> {
        let info = self
            .bounded(self.stream.get_info())
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("reading the head")))?
            .map_err(|e| read_error("reading the head", &e))?;
        Ok(info.state.last_sequence)
    }

    /// A named ordered consumer over the whole log from `from`.
    async fn ordered(&self, name: String, from: u64, max_batch: i64) -> Result<Ordered, ReadError> {
        let config = OrderedConfig {
            name: Some(name),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
            max_batch,
            ..Default::default()
        };
        let consumer = self
            .bounded(self.stream.create_consumer(config))
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("creating a consumer")))?
            .map_err(|e| read_error("creating a consumer", &e))?;
        self.bounded(consumer.messages())
            .await
            .ok_or_else(|| ReadError::Unavailable(self.unavailable("starting a consumer")))?
            .map_err(|e| read_error("starting a consumer", &e))
    }

    /// Deletes a consumer in the background; the server would also drop it after 30 s of inactivity.
    fn drop_consumer(&self, name: String) {
        let stream = self.stream.clone();
        tokio::spawn(async move {
            if let Err(e) = stream.delete_consumer(&name).await {
                tracing::debug!(consumer = %name, error = %e, "could not delete a finished consumer");
            }
        });
    }

    fn remembered(&self, command_id: &str) -> Option<Appended> {
        self.commands.lock().expect("command memory poisoned").get(command_id)
    }

    fn remember(&self, command_id: &str, appended: Appended) {
        self.commands.lock().expect("command memory poisoned").insert(command_id, appended);
    }

    /// One publish with its ack, classified.
    async fn publish(&self, subject: &str, commit: &Commit, payload: Bytes, expected: u64) -> Published {
        let message = PublishMessage::build()
            .payload(payload)
            .message_id(commit.command_id())
            .expected_last_subject_sequence(expected);
        let ack = match self.context.send_publish(subject.to_owned(), message).await {
            Ok(future) => future.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => Published::Acked { sequence: ack.sequence, duplicate: ack.duplicate },
            Err(e) => match jetstream_code(&e).map(|c| c.0) {
                // 10071: wrong last sequence; 10164: the same without a number (2.11+ concurrent writes).
                Some(10071 | 10164) => Published::Conflict,
                // 10158: the same msg id is being stored (R3); stream not found or no leader: an election.
                Some(10158 | 10059 | 10008 | 10009) => Published::Retry(e.to_string()),
                Some(STORE_FULL) => Published::Full(e.to_string()),
                Some(_) => Published::Failed(e.to_string()),
                None => match e.kind() {
                    // No responders on the subject: the stream has no leader right now.
                    jetstream::context::PublishErrorKind::StreamNotFound
                    | jetstream::context::PublishErrorKind::BrokenPipe
                    | jetstream::context::PublishErrorKind::MaxAckPending => Published::Retry(e.to_string()),
                    jetstream::context::PublishErrorKind::TimedOut => Published::Unavailable(e.to_string()),
                    _ => Published::Failed(e.to_string()),
                },
            },
        }
    }

    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError> {
        let command_id = commit.command_id();
        if let Some(first) = self.remembered(command_id) {
            return Ok(Appended { duplicate: true, ..first });
        }
        let subject = self.subject(commit.stream());
        let payload = Bytes::from(commit.encode());
        let deadline = Instant::now() + self.config.timeout;
        let mut pause = Duration::from_millis(25);
        let appended = loop {
            let attempt = self.publish(&subject, commit, payload.clone(), expected);
            let Ok(published) = tokio::time::timeout_at(deadline, attempt).await else {
                return Err(AppendError::Unavailable(self.unavailable("appending")));
            };
            match published {
                Published::Acked { sequence, duplicate: false } => {
                    break Appended { position: sequence, version: commit.last_version(), duplicate: false };
                }
                // Dropped by the server's duplicate window: answer with the first append.
                Published::Acked { sequence, duplicate: true } => {
                    let first = self.get(sequence).await.map_err(append_error)?;
                    break Appended { position: sequence, version: first.commit.last_version(), duplicate: true };
                }
                Published::Conflict => {
                    // A retry whose first ack was lost may be answered with a conflict (2.12+ checks the
                    // expected sequence before dedup): if the stream ends with this command, it is done.
                    match self.last_on_subject(&subject).await.map_err(append_error)? {
                        Some(last) if last.commit.command_id() == command_id => {
                            break Appended {
                                position: last.position,
                                version: last.commit.last_version(),
                                duplicate: true,
                            };
                        }
                        _ => return Err(AppendError::Conflict { stream: commit.stream().to_string(), expected }),
                    }
                }
                Published::Retry(reason) => {
                    if Instant::now() + pause >= deadline {
                        return Err(AppendError::Unavailable(reason));
                    }
                    tracing::debug!(stream = %commit.stream(), reason = %reason, "retrying an append");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Published::Unavailable(reason) => return Err(AppendError::Unavailable(reason)),
                Published::Full(reason) => return Err(AppendError::Disk { refusal: DiskRefusal::Full, reason }),
                Published::Failed(reason) => return Err(AppendError::Failed(reason)),
            }
        };
        self.remember(command_id, appended);
        Ok(appended)
    }

    async fn read_stream(&self, id: &AggregateId) -> Result<Vec<Record>, ReadError> {
        // One leader read per commit: aggregate streams are short and this never leaves a consumer behind.
        let subject = self.subject(id);
        let mut out = Vec::new();
        let mut from = 1;
        while let Some(record) = self.next_on_subject(&subject, from).await? {
            from = record.position + 1;
            out.push(record);
        }
        Ok(out)
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError> {
        let from = from.max(1);
        let head = self.head().await?;
        if max == 0 || from > head {
            return Ok(Vec::new());
        }
        let last = head.min(from.saturating_add(max as u64 - 1));
        if last - from < DIRECT_READS {
            // The stream has no gaps: it allows no deletes, purges or limits (`differences`).
            return futures::future::try_join_all((from..=last).map(|position| self.get(position))).await;
        }
        let batch = max.min(500) as i64;
        let mut out = Vec::with_capacity(max.min((head - from + 1) as usize));
        // async-nats recreates an ordered consumer that has delivered nothing yet (missed heartbeats, a
        // sequence mismatch, a cluster's leader change) from the start of the stream, not from `from`:
        // such a restart is reopened here at the next position, a few times at most.
        for _ in 0..3 {
            let next = from + out.len() as u64;
            let name = self.consumer_name();
            let mut messages = self.ordered(name.clone(), next, batch).await?;
            let result = self.read_into(&mut messages, &mut out, from, max, head).await;
            drop(messages);
            self.drop_consumer(name);
            match result {
                Ok(true) => return Ok(out),
                Ok(false) => tracing::debug!(next, "a log reader's consumer restarted from the beginning; reopening"),
                Err(e) => return Err(e),
            }
        }
        Err(ReadError::Failed(format!("the consumer kept restarting before position {}", from + out.len() as u64)))
    }

    /// Reads `messages` into `out` (the log from `from`) until it holds `max` records or reaches `head`: true
    /// when done, false when the consumer went back before the next position and must be reopened there.
    async fn read_into(
        &self,
        messages: &mut Ordered,
        out: &mut Vec<Record>,
        from: u64,
        max: usize,
        head: u64,
    ) -> Result<bool, ReadError> {
        loop {
            let next = match self.bounded(messages.next()).await {
                None => return Err(ReadError::Unavailable(self.unavailable("reading the log"))),
                Some(None) => return Err(ReadError::Failed("the consumer ended unexpectedly".into())),
                Some(Some(Err(e))) => return Err(read_error("reading the log", &e)),
                Some(Some(Ok(message))) => message,
            };
            let position = match next.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => return Err(ReadError::Failed(format!("message without JetStream metadata: {e}"))),
            };
            let expected = from + out.len() as u64;
            if position < expected {
                return Ok(false);
            }
            if position > expected {
                return Err(ReadError::Failed(format!("the log skipped from {expected} to {position}")));
            }
            out.push(self.record(position, &next.subject, &next.payload)?);
            // Nothing is ever deleted, so every position up to the head exists.
            if out.len() == max || position >= head {
                return Ok(true);
            }
        }
    }
}

/// The outcome of one publish attempt.
enum Published {
    Acked { sequence: u64, duplicate: bool },
    Conflict,
    Retry(String),
    Unavailable(String),
    Full(String),
    Failed(String),
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError> {
        self.inner.append(commit, expected).await
    }

    async fn announce_views_changed(&self, payload: Vec<u8>) {
        if let Err(error) = self.inner.client.publish(crate::VIEWS_CHANGED, payload.into()).await {
            tracing::debug!(%error, "could not announce a view change on NATS");
        }
    }

    async fn read_stream(&self, stream: &AggregateId) -> Result<Vec<Record>, ReadError> {
        self.inner.read_stream(stream).await
    }

    /// One leader read of the subject's last message, instead of one per commit of the stream.
    async fn last_position_of(&self, stream: &AggregateId) -> Result<Option<u64>, ReadError> {
        Ok(self.inner.last_on_subject(&self.inner.subject(stream)).await?.map(|r| r.position))
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError> {
        self.inner.read_from(from, max).await
    }

    async fn head(&self) -> Result<u64, ReadError> {
        self.inner.head().await
    }

    fn tail(&self, from: u64) -> BoxStream<'static, Result<Record, ReadError>> {
        let state = Tail {
            connections: self.inner.connections.subscribe(),
            inner: self.inner.clone(),
            next: from.max(1),
            consumer: None,
            backoff: None,
            failing: false,
        };
        futures::stream::unfold(state, |mut tail| async move {
            let item = tail.next().await;
            Some((item, tail))
        })
        .boxed()
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<u64, AppendError> {
        self.inner.append_audit(record).await
    }

    async fn read_audit(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError> {
        self.inner.read_audit(from, max).await
    }

    async fn audit_head(&self) -> Result<u64, ReadError> {
        self.inner.audit_head().await
    }

    /// Only commands appended (or found duplicate) by this process are remembered, up to 65,536 of them:
    /// JetStream has no index by message id. Retries from other processes are still answered with the
    /// first result by the server's duplicate window (2 minutes by default) and the conflict check.
    async fn find_command(&self, command_id: &str) -> Result<Option<Appended>, ReadError> {
        Ok(self.inner.remembered(command_id))
    }
}

/// How long the tail waits for its consumer's next message before checking that the log has nothing more.
const TAIL_STALL: Duration = Duration::from_secs(2);

/// The live tail: a named ordered consumer, reopened at the next position after any failure.
struct Tail {
    inner: Arc<Inner>,
    connections: watch::Receiver<u64>,
    next: u64,
    consumer: Option<(String, Ordered)>,
    /// Wait before reopening after a failure.
    backoff: Option<Duration>,
    /// Whether the current outage was already reported (each outage is reported once).
    failing: bool,
}

impl Tail {
    async fn next(&mut self) -> Result<Record, ReadError> {
        loop {
            if self.consumer.is_none() {
                if let Some(pause) = self.backoff {
                    tokio::time::sleep(pause).await;
                }
                self.connections.mark_unchanged();
                let name = self.inner.consumer_name();
                match self.inner.ordered(name.clone(), self.next, 0).await {
                    Ok(messages) => self.consumer = Some((name, messages)),
                    Err(e) => {
                        if let Some(e) = self.failed(e) {
                            return Err(e);
                        }
                        continue;
                    }
                }
            }
            let (_, messages) = self.consumer.as_mut().expect("opened above");
            // The ordered consumer recreates itself after missed heartbeats and waits for the server as
            // long as it takes, which is what a tail wants; after a reconnection it is reopened at once.
            let next = tokio::select! {
                next = messages.next() => next,
                _ = self.connections.changed() => {
                    tracing::debug!("reconnected to NATS; reopening the tail's consumer");
                    self.close();
                    continue;
                }
                // The client notices a consumer lost with its server (a cluster's stream leader killed) only
                // after two missed idle heartbeats, 30 s: when nothing came for a while but the log has more,
                // reopen it at once.
                _ = tokio::time::sleep(TAIL_STALL) => {
                    if self.inner.head().await.is_ok_and(|head| head >= self.next) {
                        tracing::debug!(next = self.next, "the tail's consumer stalled behind the head; reopening");
                        self.close();
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    if let Some(e) = self.failed(read_error("tailing the log", &e)) {
                        return Err(e);
                    }
                    continue;
                }
                None => {
                    self.close();
                    continue;
                }
            };
            let position = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    if let Some(e) = self.failed(ReadError::Failed(format!("message without metadata: {e}"))) {
                        return Err(e);
                    }
                    continue;
                }
            };
            if position < self.next {
                // A recreated consumer that had delivered nothing starts over at 1: reopen at `next`.
                self.close();
                continue;
            }
            self.backoff = None;
            self.failing = false;
            self.next = position + 1;
            return self.inner.record(position, &message.subject, &message.payload);
        }
    }

    fn close(&mut self) {
        if let Some((name, messages)) = self.consumer.take() {
            drop(messages);
            self.inner.drop_consumer(name);
        }
    }

    /// Closes the consumer and schedules a reopen; returns the error if this outage is not yet reported.
    fn failed(&mut self, error: ReadError) -> Option<ReadError> {
        self.close();
        let pause = self.backoff.map_or(Duration::from_millis(100), |p| (p * 2).min(Duration::from_secs(2)));
        self.backoff = Some(pause);
        tracing::debug!(error = %error, "tail consumer failed; reopening");
        (!std::mem::replace(&mut self.failing, true)).then_some(error)
    }
}

/// The JetStream API error code somewhere in an error's chain.
fn jetstream_code(err: &(dyn StdError + 'static)) -> Option<ErrorCode> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(js) = e.downcast_ref::<jetstream::Error>() {
            return Some(js.error_code());
        }
        current = e.source();
    }
    None
}

/// Error codes that mean "try again shortly": no leader yet, stream not (yet) found during an election.
fn transient(code: ErrorCode) -> bool {
    matches!(code.0, 10008 | 10009 | 10059 | 10158)
}

/// Whether an error means the server did not answer (timeout, no responders, no leader), as opposed to a
/// definite failure.
fn is_unavailable(err: &(dyn StdError + 'static)) -> bool {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind, RequestError, RequestErrorKind};
    let mut current = Some(err);
    while let Some(e) = current {
        let hit = if let Some(e) = e.downcast_ref::<RequestError>() {
            matches!(e.kind(), RequestErrorKind::TimedOut | RequestErrorKind::NoResponders)
        } else if let Some(e) = e.downcast_ref::<async_nats::RequestError>() {
            matches!(e.kind(), async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders)
        } else if let Some(e) = e.downcast_ref::<PublishError>() {
            matches!(
                e.kind(),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound
            )
        } else if let Some(e) = e.downcast_ref::<stream::RawMessageError>() {
            matches!(e.kind(), stream::RawMessageErrorKind::JetStream(js) if transient(js.error_code()))
        } else if let Some(e) = e.downcast_ref::<jetstream::context::GetStreamError>() {
            matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js) if transient(js.error_code()))
        } else if let Some(e) = e.downcast_ref::<stream::ConsumerError>() {
            match e.kind() {
                stream::ConsumerErrorKind::TimedOut => true,
                stream::ConsumerErrorKind::JetStream(js) => transient(js.error_code()),
                _ => false,
            }
        } else if let Some(js) = e.downcast_ref::<jetstream::Error>() {
            transient(js.error_code())
        } else {
            e.is::<tokio::time::error::Elapsed>()
        };
        if hit {
            return true;
        }
        current = e.source();
    }
    false
}

fn read_error<E: StdError + 'static>(what: &str, err: &E) -> ReadError {
    if is_unavailable(err) {
        ReadError::Unavailable(format!("{what}: {err}"))
    } else {
        ReadError::storage(store_full(err), format!("{what}: {err}"))
    }
}

fn append_error(err: ReadError) -> AppendError {
    match err {
        ReadError::Unavailable(reason) => AppendError::Unavailable(reason),
        ReadError::Disk { refusal, reason } => AppendError::Disk { refusal, reason },
        other => AppendError::Failed(other.to_string()),
    }
}

/// The JetStream API error code for a server whose JetStream storage is exhausted (its limit, or the disk).
const STORE_FULL: u64 = 10023;

/// [`DiskRefusal::Full`] when `err` is the server's storage being exhausted.
fn store_full(err: &(dyn StdError + 'static)) -> Option<DiskRefusal> {
    jetstream_code(err).is_some_and(|code| code.0 == STORE_FULL).then_some(DiskRefusal::Full)
}

/// Command ids appended by this process, oldest forgotten first.
struct CommandMemory {
    /// foldhash, seeded per map: command ids come from clients.
    answers: foldhash::HashMap<Arc<str>, Appended>,
    order: VecDeque<Arc<str>>,
}

impl Default for CommandMemory {
    /// At its full size: growing the table would move every entry in one append, the others waiting.
    fn default() -> CommandMemory {
        CommandMemory {
            answers: foldhash::HashMap::with_capacity_and_hasher(REMEMBERED_COMMANDS + 1, Default::default()),
            order: VecDeque::with_capacity(REMEMBERED_COMMANDS + 1),
        }
    }
}

impl CommandMemory {
    fn get(&self, command_id: &str) -> Option<Appended> {
        self.answers.get(command_id).copied()
    }

    fn insert(&mut self, command_id: &str, appended: Appended) {
        let id: Arc<str> = command_id.into();
        if self.answers.insert(id.clone(), appended).is_none() {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED_COMMANDS {
                let oldest = self.order.pop_front().expect("not empty");
                self.answers.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn refuses_replicas_before_2_9_21() {
        assert!(check_server("2.9.10", 1).is_ok());
        assert!(matches!(check_server("2.9.20", 3), Err(JetStreamError::UnsupportedServer(_))));
        assert!(matches!(check_server("", 3), Err(JetStreamError::UnsupportedServer(_))));
        assert!(check_server("2.9.21", 3).is_ok());
        assert!(check_server("2.15.1", 3).is_ok());
    }

    #[test]
    fn rejects_bad_names() {
        let bad = |f: fn(&mut JetStreamConfig)| {
            let mut c = JetStreamConfig::default();
            f(&mut c);
            validate(&c).is_err()
        };
        assert!(!bad(|_| ()));
        assert!(bad(|c| c.stream = "A.B".into()));
        assert!(bad(|c| c.subject_prefix = "a.*".into()));
        assert!(bad(|c| c.subject_prefix = "a..b".into()));
        assert!(bad(|c| c.replicas = 0));
    }

    #[test]
    fn command_memory_is_bounded() {
        let mut m = CommandMemory::default();
        let a = Appended { position: 1, version: 1, duplicate: false };
        for i in 0..REMEMBERED_COMMANDS + 10 {
            m.insert(&i.to_string(), a);
        }
        assert_eq!(m.answers.len(), REMEMBERED_COMMANDS);
        assert!(m.get("0").is_none());
        assert!(m.get(&(REMEMBERED_COMMANDS + 9).to_string()).is_some());
    }
}
