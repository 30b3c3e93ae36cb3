//! The embedded backend: one sled tree on local disk, written by a single task with group commit.
//!
//! # Key layout
//!
//! Everything lives in one tree, so that the single `apply_batch` of an append covers all of its keys:
//!
//! | key                                      | value                      | what for                   |
//! |------------------------------------------|----------------------------|----------------------------|
//! | `c` + position (u64 BE)                  | [`Commit::encode`] bytes   | the log itself, in order   |
//! | `i` + stream id + `/` + position (BE)    | empty                      | one stream's positions     |
//! | `h` + stream id                          | position (BE) ++ version   | the stream's head          |
//! | `m` + command id                         | position (BE) ++ version   | idempotency                |
//!
//! The audit store (seals, bulletins) is a second tree in the same database; see [`audit`].
//!
//! Big-endian positions make key order log order. `/` cannot occur in a stream id, so the index prefix of
//! one stream never covers another's (`P520102-a/` is not a prefix of `P520102-ab/…`). The log head is the
//! last `c` key, found once at open; positions start at 1 and have no gaps.
//!
//! # Group commit
//!
//! [`EmbeddedLog::append`] only encodes the commit and queues it. One writer task takes every queued
//! request (up to [`MAX_BATCH`] or [`MAX_BATCH_BYTES`]), decides each one against the stored stream heads
//! and idempotency keys *and* against the requests decided earlier in the same batch, writes the accepted
//! ones in one atomic batch, flushes once, publishes the new head and only then answers. So an `Ok` is
//! durable, and one fsync is paid per batch instead of per append. While a batch's flush waits for the disk,
//! the writer decides and writes the next one (at most [`FLUSHES_IN_FLIGHT`] wait): a flush covers every
//! batch written before it, and batches are answered in order.
//!
//! Readers never see past the published (flushed) head: a projector cannot act on a commit that a crash
//! could still take back.
//!
//! # A full disk
//!
//! Appends are refused while the file system is down to a reserve ([`reserve`]), so that the views, seals
//! and audit records of what was acknowledged still have room; a write that fails anyway answers no success.

mod audit;
mod reserve;

use crate::{AppendError, Appended, AuditEntry, DiskRefusal, EventLog, ReadError, Record};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use rectify_domain::audit::AuditRecord;
use rectify_domain::{AggregateId, Commit};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// The sled tree that holds the log.
const TREE: &str = "rectify_events";
/// At most this many appends share one batch (and one flush).
pub const MAX_BATCH: usize = 1024;
/// A batch stops growing once its commits hold this many bytes, so a burst of large commits stays bounded.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// Batches written and waiting for their flush at most: the writer decides and writes the next batch while
/// the last one's flush waits for the disk.
const FLUSHES_IN_FLIGHT: usize = 2;
/// Appends waiting for the writer before `append` itself waits (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// Bytes of sled's page cache.
const CACHE_BYTES: u64 = 16 << 20;
/// How many records a tail reads from the tree at a time.
const TAIL_CHUNK: usize = 256;

/// Key construction; see the module docs for the layout.
mod key {
    pub const COMMIT: u8 = b'c';
    pub const INDEX: u8 = b'i';
    pub const HEAD: u8 = b'h';
    pub const COMMAND: u8 = b'm';
    /// Ends the stream id inside an index key; never part of an id.
    pub const INDEX_SEPARATOR: u8 = b'/';

    pub fn commit(position: u64) -> [u8; 9] {
        let mut key = [COMMIT; 9];
        key[1..].copy_from_slice(&position.to_be_bytes());
        key
    }

    /// The position of a `c` key, if it is one.
    pub fn commit_position(key: &[u8]) -> Option<u64> {
        match key {
            [COMMIT, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
            _ => None,
        }
    }

    pub fn index_prefix(stream: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(stream.len() + 10);
        key.push(INDEX);
        key.extend_from_slice(stream.as_bytes());
        key.push(INDEX_SEPARATOR);
        key
    }

    pub fn index(stream: &str, position: u64) -> Vec<u8> {
        let mut key = index_prefix(stream);
        key.extend_from_slice(&position.to_be_bytes());
        key
    }

    pub fn head(stream: &str) -> Vec<u8> {
        prefixed(HEAD, stream)
    }

    pub fn command(command_id: &str) -> Vec<u8> {
        prefixed(COMMAND, command_id)
    }

    fn prefixed(tag: u8, s: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(s.len() + 1);
        key.push(tag);
        key.extend_from_slice(s.as_bytes());
        key
    }
}

/// A position and a stream version, as stored under `h` and `m` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    position: u64,
    version: u64,
}

impl Mark {
    fn encode(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.position.to_be_bytes());
        bytes[8..].copy_from_slice(&self.version.to_be_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Mark> {
        let (position, version) = bytes.split_at_checked(8)?;
        Some(Mark {
            position: u64::from_be_bytes(position.try_into().ok()?),
            version: u64::from_be_bytes(version.try_into().ok()?),
        })
    }

    fn answer(self, duplicate: bool) -> Appended {
        Appended { position: self.position, version: self.version, duplicate }
    }
}

/// Why the embedded log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled refused to open the directory (missing permissions, held by another process, damaged files).
    #[error("cannot open the embedded event log at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// The directory holds something that is not this log's layout.
    #[error("the embedded event log at {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The event log in a local sled database: durable before it acknowledges, with group commit.
///
/// Cheap to clone; every clone shares one writer task. [`EmbeddedLog::open`] must run inside a tokio
/// runtime, which hosts that task.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    audit: audit::AuditTree,
    /// Kept so that the database lives exactly as long as the last handle or tail.
    _db: sled::Db,
    requests: mpsc::Sender<Request>,
    /// The last flushed position, published by the writer after every flush.
    head: watch::Receiver<u64>,
}

impl fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedLog").field("head", &*self.inner.head.borrow()).finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir` and starts its writer task on the current tokio runtime.
    ///
    /// Panics outside a tokio runtime. sled locks the directory: one process, one open log per directory.
    pub fn open(dir: &Path) -> Result<EmbeddedLog, OpenError> {
        let storage = |source| OpenError::Storage { path: dir.to_owned(), source };
        // sled caches up to 1 GB by default: a service that reads its whole log at start (the audit index)
        // would keep all of it in memory. Recent commits are what appends and tails read.
        let db = crate::sled_open::open(&sled::Config::new().path(dir).cache_capacity(CACHE_BYTES)).map_err(storage)?;
        let tree = db.open_tree(TREE).map_err(storage)?;
        let audit = audit::AuditTree::open(&db).map_err(storage)?;
        let head = match tree.scan_prefix([key::COMMIT]).keys().next_back() {
            None => 0,
            Some(k) => {
                let k = k.map_err(storage)?;
                key::commit_position(&k).ok_or_else(|| OpenError::Corrupt {
                    path: dir.to_owned(),
                    reason: format!("malformed commit key {k:?}"),
                })?
            }
        };
        let (head_tx, head_rx) = watch::channel(head);
        let (requests, queue) = mpsc::channel(QUEUE);
        let audit_next = audit.published.load(std::sync::atomic::Ordering::Acquire) + 1;
        let writer = Writer {
            tree: tree.clone(),
            next: head + 1,
            head: head_tx,
            audit: audit.clone(),
            audit_next,
            unflushed: false,
            reserve: reserve::Reserve::of(dir),
        };
        tokio::spawn(writer.run(queue));
        tracing::debug!(path = %dir.display(), head, "opened the embedded event log");
        Ok(EmbeddedLog { inner: Arc::new(Inner { tree, audit, _db: db, requests, head: head_rx }) })
    }

    /// Stops the writer once every append queued before this call is answered, and waits for it.
    ///
    /// Appends through other clones then fail with [`AppendError::Unavailable`] and tails end with
    /// [`ReadError::Unavailable`]. The files (and sled's directory lock) are released when the last clone
    /// and the last tail are dropped; with no other clone, that is when this call returns.
    pub async fn close(self) {
        let (ack, closed) = oneshot::channel();
        if self.inner.requests.send(Request::Close(ack)).await.is_ok() {
            // An error only means the writer is already gone.
            let _ = closed.await;
        }
    }

    /// Every published commit in log order as the bytes stored ([`Commit::encode`]), undecoded: the raw
    /// replay that `rectify bench` compares the projector with.
    pub fn raw_commits(&self) -> impl Iterator<Item = Result<(u64, sled::IVec), ReadError>> + use<> {
        let head = self.published_head();
        self.inner.tree.range(key::commit(1)..=key::commit(head.max(1))).map(move |entry| {
            let (k, v) = entry.map_err(storage_read)?;
            let position = key::commit_position(&k)
                .ok_or_else(|| ReadError::Corrupt { position: 0, reason: format!("malformed commit key {k:?}") })?;
            Ok((position, v))
        })
    }

    fn published_head(&self) -> u64 {
        *self.inner.head.borrow()
    }
}

fn closed() -> AppendError {
    AppendError::Unavailable("the embedded event log is closed".into())
}

fn storage_read(e: sled::Error) -> ReadError {
    ReadError::storage(DiskRefusal::of_sled(&e), format!("sled: {e}"))
}

/// An append's failure from sled's error `e` while `doing` something.
fn storage_write(doing: &str, e: &sled::Error) -> AppendError {
    AppendError::storage(DiskRefusal::of_sled(e), format!("sled {doing} failed: {e}"))
}

fn decode(position: u64, bytes: &[u8]) -> Result<Record, ReadError> {
    Commit::decode(bytes)
        .map(|commit| Record { position, commit })
        .map_err(|e| ReadError::Corrupt { position, reason: e.0 })
}

/// Up to `max` records with `from ≤ position ≤ to`, in order.
fn read_range(tree: &sled::Tree, from: u64, to: u64, max: usize) -> Result<Vec<Record>, ReadError> {
    let from = from.max(1);
    if max == 0 || from > to {
        return Ok(Vec::new());
    }
    tree.range(key::commit(from)..=key::commit(to))
        .take(max)
        .map(|entry| {
            let (k, v) = entry.map_err(storage_read)?;
            let position = key::commit_position(&k)
                .ok_or_else(|| ReadError::Corrupt { position: from, reason: format!("malformed commit key {k:?}") })?;
            decode(position, &v)
        })
        .collect()
}

/// The checks that [`Commit::decode`] makes on read, made before writing: a commit that would not decode
/// must never reach the log. Returns (stream, command id, first version, last version).
fn shape(commit: &Commit) -> Result<(&str, &str, u64, u64), AppendError> {
    let (Some(first), Some(last)) = (commit.events.first(), commit.events.last()) else {
        return Err(AppendError::Failed("a commit holds at least one event".into()));
    };
    for (i, e) in commit.events.iter().enumerate() {
        if e.stream != first.stream || e.command_id != first.command_id || e.version != first.version + i as u64 {
            return Err(AppendError::Failed(format!("event {} does not continue its commit", e.event_id)));
        }
    }
    Ok((first.stream.as_str(), &first.command_id, first.version, last.version))
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError> {
        let (stream, command_id, first_version, version) = shape(commit)?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            bytes: commit.encode(),
            stream: stream.to_owned(),
            command_id: command_id.to_owned(),
            first_version,
            version,
            expected,
            reply,
        };
        self.inner.requests.send(Request::Append(request)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn read_stream(&self, stream: &AggregateId) -> Result<Vec<Record>, ReadError> {
        let head = self.published_head();
        let tree = &self.inner.tree;
        let prefix = key::index_prefix(stream.as_str());
        let mut records = Vec::new();
        for k in tree.scan_prefix(&prefix).keys() {
            let k = k.map_err(storage_read)?;
            let position = <[u8; 8]>::try_from(&k[prefix.len()..]).map(u64::from_be_bytes).map_err(|_| {
                ReadError::Corrupt { position: 0, reason: format!("malformed index key of stream {stream}") }
            })?;
            if position > head {
                break;
            }
            let bytes = tree.get(key::commit(position)).map_err(storage_read)?.ok_or_else(|| ReadError::Corrupt {
                position,
                reason: format!("indexed for stream {stream} but missing"),
            })?;
            let record = decode(position, &bytes)?;
            if record.commit.stream() != stream {
                return Err(ReadError::Corrupt {
                    position,
                    reason: format!("indexed for stream {stream} but belongs to another"),
                });
            }
            records.push(record);
        }
        Ok(records)
    }

    /// The stream's head entry (written with its last commit), once that commit is published.
    async fn last_position_of(&self, stream: &AggregateId) -> Result<Option<u64>, ReadError> {
        let Some(bytes) = self.inner.tree.get(key::head(stream.as_str())).map_err(storage_read)? else {
            return Ok(None);
        };
        let mark = Mark::decode(&bytes).ok_or_else(|| ReadError::Corrupt {
            position: 0,
            reason: format!("malformed head entry of stream {stream}"),
        })?;
        Ok((mark.position <= self.published_head()).then_some(mark.position))
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError> {
        read_range(&self.inner.tree, from, self.published_head(), max)
    }

    async fn head(&self) -> Result<u64, ReadError> {
        Ok(self.published_head())
    }

    fn local_head(&self) -> Option<u64> {
        Some(self.published_head())
    }

    fn tail(&self, from: u64) -> BoxStream<'static, Result<Record, ReadError>> {
        let state = Tail {
            inner: self.inner.clone(),
            head: self.inner.head.clone(),
            next: from.max(1),
            buffer: VecDeque::new(),
            done: false,
        };
        stream::unfold(state, Tail::next_item).boxed()
    }

    /// Every command id is indexed in the batch that writes its commit.
    fn remembers_every_command(&self) -> bool {
        true
    }

    async fn find_command(&self, command_id: &str) -> Result<Option<Appended>, ReadError> {
        let Some(bytes) = self.inner.tree.get(key::command(command_id)).map_err(storage_read)? else {
            return Ok(None);
        };
        let mark = Mark::decode(&bytes).ok_or_else(|| ReadError::Corrupt {
            position: 0,
            reason: format!("malformed idempotency entry of {command_id}"),
        })?;
        // Written but not yet flushed: not an answer anyone has been given.
        Ok((mark.position <= self.published_head()).then_some(mark.answer(true)))
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<u64, AppendError> {
        self.append_audit_record(record).await
    }

    async fn read_audit(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError> {
        self.read_audit_records(from, max)
    }

    async fn audit_head(&self) -> Result<u64, ReadError> {
        Ok(self.audit_published())
    }
}

/// A tail's state: catch up from the tree in chunks, then wait for the writer to publish a new head.
struct Tail {
    /// Keeps the writer (and so the head publisher) alive while someone follows the log.
    inner: Arc<Inner>,
    head: watch::Receiver<u64>,
    next: u64,
    buffer: VecDeque<Record>,
    done: bool,
}

impl Tail {
    async fn next_item(mut self) -> Option<(Result<Record, ReadError>, Tail)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(record) = self.buffer.pop_front() {
                return Some((Ok(record), self));
            }
            // Marks the current head as seen: any later publish wakes `changed` below, so no append is missed.
            let head = *self.head.borrow_and_update();
            if self.next <= head {
                match read_range(&self.inner.tree, self.next, head, TAIL_CHUNK) {
                    Ok(records) => {
                        // Positions have no gaps; `head + 1` only guards against looping on a damaged log.
                        self.next = records.last().map_or(head + 1, |r| r.position + 1);
                        self.buffer.extend(records);
                    }
                    Err(e) => {
                        // The consumer cannot get past a bad record by waiting; it may tail again after it.
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            }
            if self.head.changed().await.is_err() {
                self.done = true;
                return Some((Err(ReadError::Unavailable("the embedded event log was closed".into())), self));
            }
        }
    }
}

enum Request {
    Append(AppendRequest),
    /// A record for the audit store, made durable by the same flush as the batch's commits.
    Audit(AuditRequest),
    /// Stop after the current batch; answered once the writer has let go of the tree.
    Close(oneshot::Sender<()>),
}

struct AppendRequest {
    bytes: Vec<u8>,
    stream: String,
    command_id: String,
    first_version: u64,
    version: u64,
    expected: u64,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

struct AuditRequest {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<u64, AppendError>>,
}

/// The single writer: owns the next position and the head publisher.
struct Writer {
    tree: sled::Tree,
    next: u64,
    head: watch::Sender<u64>,
    audit: audit::AuditTree,
    /// The next audit position.
    audit_next: u64,
    /// A flush failed: the tree holds writes that are not known to be durable, so flush before any answer.
    unflushed: bool,
    /// The free space new commands must leave.
    reserve: reserve::Reserve,
}

/// Stream heads and command ids decided earlier in the batch being built, which the tree does not show yet.
#[derive(Default)]
struct Pending {
    heads: HashMap<String, Mark>,
    commands: HashMap<String, Mark>,
}

/// A batch written to the tree, waiting for the flush that makes it durable before it is answered.
struct Applied {
    requests: Vec<AppendRequest>,
    answers: Vec<Result<Appended, AppendError>>,
    audits: Vec<AuditRequest>,
    audit_answers: Vec<Result<u64, AppendError>>,
    /// The positions after this batch (log and audit store).
    next: u64,
    audit_next: u64,
}

/// An applied batch and the outcome of its flush (`None`: it wrote nothing and needs none).
type Flushing = futures::future::BoxFuture<'static, (Applied, Option<sled::Result<usize>>)>;

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        // Written batches whose flush runs, oldest first (see the module's "Group commit").
        let mut flushing: futures::stream::FuturesOrdered<Flushing> = futures::stream::FuturesOrdered::new();
        let mut close = None;
        loop {
            tokio::select! {
                biased;
                Some((applied, flushed)) = flushing.next(), if !flushing.is_empty() => self.answer(applied, flushed),
                request = queue.recv(), if close.is_none() && flushing.len() < FLUSHES_IN_FLIGHT => {
                    let Some(first) = request else { break };
                    let (mut batch, mut audits, mut bytes) = (Vec::new(), Vec::new(), 0);
                    let mut request = Some(first);
                    while let Some(r) = request.take() {
                        match r {
                            Request::Close(ack) => close = Some(ack),
                            Request::Append(a) => {
                                bytes += a.bytes.len();
                                batch.push(a);
                            }
                            Request::Audit(a) => {
                                bytes += a.bytes.len();
                                audits.push(a);
                            }
                        }
                        if close.is_none() && batch.len() + audits.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                            request = queue.try_recv().ok();
                        }
                    }
                    if !batch.is_empty() || !audits.is_empty() {
                        let behind = !flushing.is_empty();
                        flushing.push_back(self.write(batch, audits, behind));
                    }
                }
                else => break,
            }
            if close.is_some() && flushing.is_empty() {
                break;
            }
        }
        while let Some((applied, flushed)) = flushing.next().await {
            self.answer(applied, flushed);
        }
        // Requests still queued are dropped with `queue`: their callers see `Unavailable`.
        drop(queue);
        drop(self);
        if let Some(ack) = close {
            let _ = ack.send(());
        }
    }

    /// Decides and writes one batch of appends and audit records, and starts its flush. `behind`: an earlier
    /// batch's flush is still running, so even a batch that wrote nothing (a duplicate may point into the
    /// earlier batch) is answered after a flush of its own.
    fn write(&mut self, mut requests: Vec<AppendRequest>, mut audits: Vec<AuditRequest>, behind: bool) -> Flushing {
        // Commands only; audit records seal commits already acknowledged, and may use the reserve.
        if let Some(refusal) = requests.first().and_then(|_| self.reserve.refusal()) {
            for request in requests.drain(..) {
                let _ = request.reply.send(Err(refusal.clone()));
            }
        }
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut next = self.next;
        // Deciding and writing are synchronous sled work: a large batch must not hold up the worker's other tasks.
        let (mut answers, written, audit_answers) = crate::storage_work(requests.len() + audits.len(), || {
            let answers: Vec<_> =
                requests.iter_mut().map(|r| self.decide(r, &mut pending, &mut next, &mut batch)).collect();
            let written = if next > self.next { Some(self.tree.apply_batch(batch)) } else { None };
            (answers, written, self.write_audits(&mut audits))
        });
        let wrote = written.is_some() || !audits.is_empty();

        if let Some(Err(e)) = written {
            tracing::error!(error = %e, appends = requests.len(), "embedded event log: batch write failed");
            let failure = storage_write("write", &e);
            answers.iter_mut().for_each(|a| *a = Err(failure.clone()));
            next = self.next;
        }
        self.next = next;

        let applied = Applied { requests, answers, audits, audit_answers, next, audit_next: self.audit_next };
        if wrote || self.unflushed || behind {
            // One flush for the whole database: the commits and the audit records of this batch.
            let tree = self.tree.clone();
            Box::pin(async move { (applied, Some(tree.flush_async().await)) })
        } else {
            Box::pin(std::future::ready((applied, None)))
        }
    }

    /// Publishes what a flush made durable and answers the batch.
    fn answer(&mut self, mut applied: Applied, flushed: Option<sled::Result<usize>>) {
        match flushed {
            None => {}
            Some(Ok(_)) => {
                self.unflushed = false;
                self.head.send_replace(applied.next - 1);
                self.audit.published.store(applied.audit_next - 1, std::sync::atomic::Ordering::Release);
            }
            Some(Err(e)) => {
                // The batch is in the tree but not known to be on disk: answer no success, publish no head.
                // The next successful flush makes it durable and publishes it.
                tracing::error!(error = %e, appends = applied.requests.len(), "embedded event log: flush failed");
                self.unflushed = true;
                let failure = storage_write("flush (durability unknown)", &e);
                applied.answers.iter_mut().filter(|a| a.is_ok()).for_each(|a| *a = Err(failure.clone()));
                applied.audit_answers.iter_mut().filter(|a| a.is_ok()).for_each(|a| *a = Err(failure.clone()));
            }
        }
        for (request, answer) in applied.requests.into_iter().zip(applied.answers) {
            // The caller may have given up waiting; the answer stays on the log for its retry.
            let _ = request.reply.send(answer);
        }
        for (request, answer) in applied.audits.into_iter().zip(applied.audit_answers) {
            let _ = request.reply.send(answer);
        }
    }

    /// Numbers and writes the audit records (not yet flushed); their answers.
    fn write_audits(&mut self, audits: &mut [AuditRequest]) -> Vec<Result<u64, AppendError>> {
        if audits.is_empty() {
            return Vec::new();
        }
        let mut batch = sled::Batch::default();
        let first = self.audit_next;
        for (i, request) in audits.iter_mut().enumerate() {
            batch.insert(&(first + i as u64).to_be_bytes(), std::mem::take(&mut request.bytes));
        }
        match self.audit.tree.apply_batch(batch) {
            Ok(()) => {
                self.audit_next += audits.len() as u64;
                (first..self.audit_next).map(Ok).collect()
            }
            Err(e) => {
                let failure = storage_write("write", &e);
                audits.iter().map(|_| Err(failure.clone())).collect()
            }
        }
    }

    /// Decides one request against the tree and the batch so far; adds its writes to `batch` if accepted.
    fn decide(
        &self,
        request: &mut AppendRequest,
        pending: &mut Pending,
        next: &mut u64,
        batch: &mut sled::Batch,
    ) -> Result<Appended, AppendError> {
        if let Some(done) = self.lookup(&pending.commands, &request.command_id, key::command)? {
            return Ok(done.answer(true));
        }
        let head = self.lookup(&pending.heads, &request.stream, key::head)?.unwrap_or(Mark { position: 0, version: 0 });
        if head.position != request.expected {
            return Err(AppendError::Conflict { stream: request.stream.clone(), expected: request.expected });
        }
        if request.first_version != head.version + 1 {
            // The caller built this commit on another state than the one at `expected`: writing it would
            // break the stream's versions and hash chain.
            return Err(AppendError::Failed(format!(
                "commit {} starts at version {} but stream {} is at version {}",
                request.command_id, request.first_version, request.stream, head.version
            )));
        }
        let mark = Mark { position: *next, version: request.version };
        *next += 1;
        batch.insert(&key::commit(mark.position), std::mem::take(&mut request.bytes));
        batch.insert(key::index(&request.stream, mark.position), &[][..]);
        batch.insert(key::head(&request.stream), &mark.encode());
        batch.insert(key::command(&request.command_id), &mark.encode());
        pending.heads.insert(request.stream.clone(), mark);
        pending.commands.insert(request.command_id.clone(), mark);
        Ok(mark.answer(false))
    }

    /// A head or command mark: from this batch if it set one, else from the tree.
    fn lookup(
        &self,
        pending: &HashMap<String, Mark>,
        id: &str,
        key: fn(&str) -> Vec<u8>,
    ) -> Result<Option<Mark>, AppendError> {
        if let Some(mark) = pending.get(id) {
            return Ok(Some(*mark));
        }
        let Some(bytes) = self.tree.get(key(id)).map_err(|e| storage_write("read", &e))? else {
            return Ok(None);
        };
        Mark::decode(&bytes).map(Some).ok_or_else(|| AppendError::Failed(format!("malformed log entry for {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_log_order_and_streams_do_not_overlap() {
        assert!(key::commit(255) < key::commit(256));
        assert_eq!(key::commit_position(&key::commit(u64::MAX - 1)), Some(u64::MAX - 1));
        assert_eq!(key::commit_position(b"c123"), None);
        let short = key::index_prefix("P520102-a");
        assert!(!key::index("P520102-ab", 1).starts_with(&short));
        assert!(key::index("P520102-a", 7).starts_with(&short));
        let m = Mark { position: 3, version: 9 };
        assert_eq!(Mark::decode(&m.encode()), Some(m));
        assert_eq!(Mark::decode(&[0; 15]), None);
    }

    #[test]
    fn errors_travel_across_threads() {
        fn error<E: std::error::Error + Send + Sync + 'static>() {}
        error::<OpenError>();
    }

    /// The commit that opens stream `P520102-{name}` (one event).
    fn first_commit(name: &str) -> Commit {
        let id = AggregateId::parse(&format!("P520102-{name}")).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2024-05-01T08:00:00Z").unwrap().to_utc();
        let ctx = rectify_domain::CommandContext {
            actor: rectify_domain::Actor {
                id: "bureau".into(),
                role: rectify_domain::Role::CountyBureau,
                region: rectify_domain::RegionCode::parse("520102").unwrap(),
                grid: None,
            },
            occurred_at: now,
            recorded_at: now,
            command_id: format!("cmd-{name}"),
            correlation_id: format!("cmd-{name}"),
        };
        let events = vec![rectify_domain::Event::ProblemVoided { reason: "test".into() }];
        Commit::seal(&id, 0, rectify_domain::GENESIS_HASH, &ctx, events)
    }

    #[tokio::test]
    async fn corrupt_bytes_are_reported_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let commit = first_commit("corrupt");
        let id = commit.stream().clone();
        let appended = log.append(&commit, 0).await.unwrap();

        log.inner.tree.insert(key::commit(appended.position), &b"{not json"[..]).unwrap();

        let corrupt = |r: Result<Vec<Record>, ReadError>| matches!(r, Err(ReadError::Corrupt { position, .. }) if position == appended.position);
        assert!(corrupt(log.read_from(appended.position, 10).await));
        assert!(corrupt(log.read_stream(&id).await));
        let first = log.tail(appended.position).next().await.unwrap();
        assert!(matches!(first, Err(ReadError::Corrupt { position, .. }) if position == appended.position));
    }

    /// The embedded log, whose first tail fails after two records (as a lost connection would).
    struct FailsOnce {
        log: EmbeddedLog,
        tails: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl EventLog for FailsOnce {
        async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError> {
            self.log.append(commit, expected).await
        }
        async fn read_stream(&self, stream: &AggregateId) -> Result<Vec<Record>, ReadError> {
            self.log.read_stream(stream).await
        }
        async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError> {
            self.log.read_from(from, max).await
        }
        async fn head(&self) -> Result<u64, ReadError> {
            self.log.head().await
        }
        fn tail(&self, from: u64) -> BoxStream<'static, Result<Record, ReadError>> {
            let tail = self.log.tail(from);
            if self.tails.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                return tail;
            }
            let lost = stream::once(async { Err(ReadError::Unavailable("connection lost".into())) });
            tail.take(2).chain(lost).chain(stream::pending()).boxed()
        }
        async fn find_command(&self, command_id: &str) -> Result<Option<Appended>, ReadError> {
            self.log.find_command(command_id).await
        }
        async fn append_audit(&self, record: &AuditRecord) -> Result<u64, AppendError> {
            self.log.append_audit(record).await
        }
        async fn read_audit(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError> {
            self.log.read_audit(from, max).await
        }
        async fn audit_head(&self) -> Result<u64, ReadError> {
            self.log.audit_head().await
        }
    }

    /// [`crate::follow`] after a failed tail: on from the last record it yielded, none repeated or skipped.
    #[tokio::test]
    async fn following_resumes_after_a_failed_tail_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        for name in ["a", "b", "c", "d"] {
            log.append(&first_commit(name), 0).await.unwrap();
        }
        let flaky = Arc::new(FailsOnce { log, tails: Default::default() });
        let mut batches = crate::follow(flaky.clone(), 1, 16, "this test");
        let mut seen = Vec::new();
        while seen.len() < 4 {
            seen.extend(batches.next().await.unwrap().iter().map(|r| r.position));
        }
        assert_eq!(seen, [1, 2, 3, 4]);
        assert_eq!(flaky.tails.load(std::sync::atomic::Ordering::SeqCst), 2, "opened again once");
    }
}
