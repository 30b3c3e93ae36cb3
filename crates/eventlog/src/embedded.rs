//! The embedded backend: one append-only file on local disk, written by a single task with group commit.
//!
//! The file ([`file`]) holds every commit and every audit record (seals, bulletins) in order; an index in
//! memory ([`index`]), built by reading the file at open, finds a position's record, a stream's commits
//! and a command id's commit. Positions start at 1 and grow by one; the audit store numbers its records
//! the same way, apart.
//!
//! # Group commit
//!
//! [`EmbeddedLog::append`] only encodes the commit and queues it. One writer task takes every queued
//! request (up to [`MAX_BATCH`] or [`MAX_BATCH_BYTES`]), decides each one against the stream heads and
//! command ids of the index *and* against the requests decided earlier in the same batch, appends the
//! accepted ones (and the batch's audit records) with one write, `fdatasync`s once, publishes the new head
//! and only then answers. So an `Ok` is durable, and one flush is paid per batch instead of per append.
//! While a batch's flush waits for the disk, the writer decides and writes the next one (at most
//! [`FLUSHES_IN_FLIGHT`] wait): a flush covers every write before it, and batches are answered in order.
//!
//! Readers never see past the published (flushed) head: a projector cannot act on a commit that a crash
//! could still take back.
//!
//! # A full disk
//!
//! Appends are refused while the file system is down to a reserve ([`reserve`]), so that the views, seals
//! and audit records of what was acknowledged still have room; a write that fails anyway answers no success.
//!
//! A log written by earlier versions (a sled database in the same directory) is moved into the file at
//! the first open ([`import`]).

mod audit;
mod file;
mod import;
mod index;
mod reserve;
mod sharded;

use crate::{AppendError, Appended, AuditEntry, DiskRefusal, EventLog, ReadError, Record};
use async_trait::async_trait;
use file::{CommitMeta, Kind, Loc};
use foldhash::HashMap;
use futures::stream::{self, BoxStream, StreamExt};
use index::Index;
use rectify_domain::audit::AuditRecord;
use rectify_domain::{AggregateId, Commit};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

/// At most this many appends share one batch (and one flush).
pub const MAX_BATCH: usize = 1024;
/// A batch stops growing once its commits hold this many bytes, so a burst of large commits stays bounded.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// Batches written and waiting for their flush at most: the writer decides and writes the next batch while
/// the last one's flush waits for the disk.
const FLUSHES_IN_FLIGHT: usize = 2;
/// Appends waiting for the writer before `append` itself waits (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// How many records a tail reads at a time.
const TAIL_CHUNK: usize = 256;
/// A read of consecutive records asks the file for at most this many bytes at once.
const READ_SPAN: u64 = 4 << 20;

/// A position and the stream version after the commit there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    position: u64,
    version: u64,
}

impl Mark {
    fn answer(self, duplicate: bool) -> Appended {
        Appended { position: self.position, version: self.version, duplicate }
    }
}

/// Why the embedded log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be created, read or locked (missing permissions, held by another process).
    #[error("cannot open the embedded event log at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory holds something that is not this log's layout, or damage that is not a torn write.
    #[error("the embedded event log at {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The event log in a local file: durable before it acknowledges, with group commit.
///
/// Cheap to clone; every clone shares one writer task. [`EmbeddedLog::open`] must run inside a tokio
/// runtime, which hosts that task.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    /// The last flushed position, published by the writer after every flush.
    head: watch::Receiver<u64>,
}

/// What the writer and the readers share.
struct Shared {
    /// Locked (`flock`) while open: one process, one open log per directory.
    file: Arc<File>,
    index: RwLock<Index>,
    /// The last flushed audit position (the writer publishes it; readers see nothing past it).
    audit_published: AtomicU64,
    /// Called before each write of commits (see [`EventLog::before_commit_writes`]).
    before_write: std::sync::OnceLock<crate::BeforeWrite>,
    /// The longest `fdatasync` since [`EventLog::take_slowest_flush`] last asked, in nanoseconds.
    slowest_flush: AtomicU64,
}

impl fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedLog").field("head", &*self.inner.head.borrow()).finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir` and starts its writer task on the current tokio runtime.
    ///
    /// Panics outside a tokio runtime. The file is locked: one process, one open log per directory.
    pub fn open(dir: &Path) -> Result<EmbeddedLog, OpenError> {
        let storage = |source| OpenError::Storage { path: dir.to_owned(), source };
        let opening = |e| match e {
            file::Error::Io(source) => storage(source),
            file::Error::Corrupt(reason) => OpenError::Corrupt { path: dir.to_owned(), reason },
        };
        let path = dir.join(file::NAME);
        if !path.exists() {
            import::create(dir).map_err(opening)?;
        }
        let file = File::options().read(true).write(true).open(&path).map_err(storage)?;
        fs2::FileExt::try_lock_exclusive(&file).map_err(|e| {
            storage(io::Error::new(e.kind(), format!("{} is locked by another open log: {e}", path.display())))
        })?;
        let mut index = Index::default();
        let end = file::scan(&file, |loc, record| index.add(loc, record)).map_err(opening)?;
        let file_len = file.metadata().map_err(storage)?.len();
        let (head, audit_head) = (index.commits.last(), index.audit.last());
        let file = Arc::new(file);
        let shared = Arc::new(Shared {
            file: file.clone(),
            index: RwLock::new(index),
            audit_published: AtomicU64::new(audit_head),
            slowest_flush: AtomicU64::new(0),
            before_write: std::sync::OnceLock::new(),
        });
        let (head_tx, head_rx) = watch::channel(head);
        let (requests, queue) = mpsc::channel(QUEUE);
        let writer = Writer {
            shared: shared.clone(),
            end,
            next: head + 1,
            head: head_tx,
            audit_next: audit_head + 1,
            unflushed: false,
            reserve: reserve::Reserve::of(dir),
            grow: file::Preallocator::new(file, &path, file_len),
        };
        tokio::spawn(writer.run(queue));
        tracing::debug!(path = %dir.display(), head, "opened the embedded event log");
        Ok(EmbeddedLog { inner: Arc::new(Inner { shared, requests, head: head_rx }) })
    }

    /// Stops the writer once every append queued before this call is answered, and waits for it.
    ///
    /// Appends through other clones then fail with [`AppendError::Unavailable`] and tails end with
    /// [`ReadError::Unavailable`]. The file (and its lock) is released when the last clone and the last
    /// tail are dropped; with no other clone, that is when this call returns.
    pub async fn close(self) {
        let (ack, closed) = oneshot::channel();
        if self.inner.requests.send(Request::Close(ack)).await.is_ok() {
            // An error only means the writer is already gone.
            let _ = closed.await;
        }
    }

    /// Every published commit in log order as the bytes stored ([`Commit::encode`]), undecoded: the raw
    /// replay that `rectify bench` compares the projector with.
    pub fn raw_commits(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), ReadError>> + use<> {
        let (shared, head) = (self.inner.shared.clone(), self.published_head());
        let mut next = 1;
        std::iter::from_fn(move || {
            if next > head {
                return None;
            }
            let chunk = shared.read_commits(next, head, TAIL_CHUNK);
            next = match &chunk {
                Ok(records) => records.last().map_or(head + 1, |(p, _)| p + 1),
                Err(_) => head + 1,
            };
            Some(chunk)
        })
        .flat_map(|chunk| match chunk {
            Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }

    fn published_head(&self) -> u64 {
        *self.inner.head.borrow()
    }
}

impl Index {
    /// Adds a record found in the file at open.
    fn add(&mut self, loc: Loc, record: file::Parsed<'_>) -> Result<(), String> {
        match record.kind {
            Kind::Audit => self.audit.push(record.position, loc),
            Kind::Commit => {
                let (meta, _) = CommitMeta::decode(record.body)
                    .ok_or_else(|| format!("commit {} has no readable index fields", record.position))?;
                let mark = Mark { position: record.position, version: meta.version };
                self.add_commit(loc, meta.stream, meta.command_id, mark)
            }
        }
    }
}

impl Shared {
    /// The bodies of the records at `locs` (one kind, in file order), read a span of the file at a time.
    fn read_bodies(&self, kind: Kind, locs: &[(u64, Loc)]) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        let mut out = Vec::with_capacity(locs.len());
        let mut rest = locs;
        while let Some((first, _)) = rest.first() {
            let start = rest[0].1.offset;
            let n = rest.iter().take_while(|(_, loc)| loc.end() - start <= READ_SPAN).count().max(1);
            let (span, after) = rest.split_at(n);
            let end = span.last().expect("one at least").1.end();
            let mut bytes = vec![0; (end - start) as usize];
            self.file.read_exact_at(&mut bytes, start).map_err(|e| read_failure(*first, &e))?;
            for (position, loc) in span {
                let at = (loc.offset - start) as usize;
                let body = match file::parse(&bytes[at..at + loc.len as usize]) {
                    file::Next::Record(r) if r.kind == kind && r.position == *position => r.body,
                    file::Next::Record(_) => return Err(corrupt(*position, "the record there is another one")),
                    file::Next::Invalid(why) => return Err(corrupt(*position, why)),
                    file::Next::End | file::Next::Short => return Err(corrupt(*position, "the record is gone")),
                };
                out.push((*position, body.to_vec()));
            }
            rest = after;
        }
        Ok(out)
    }

    /// Up to `max` commits with `from ≤ position ≤ to`, in order, as their stored bytes.
    fn read_commits(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        if max == 0 || from > to {
            return Ok(Vec::new());
        }
        let locs = self.index.read().expect("not poisoned").commits.range(from, to, max);
        let mut records = self.read_bodies(Kind::Commit, &locs)?;
        for (position, body) in &mut records {
            let skip = CommitMeta::decode(body).map(|(_, commit)| body.len() - commit.len());
            let skip = skip.ok_or_else(|| corrupt(*position, "unreadable index fields"))?;
            body.drain(..skip);
        }
        Ok(records)
    }

    /// The mark of `command_id`'s commit, if the index has it (at any position, flushed or not).
    fn command_mark(&self, index: &Index, command_id: &str) -> Result<Option<Mark>, ReadError> {
        let Some(position) = index.command_candidate(command_id) else { return Ok(None) };
        let loc = index.commits.get(position).ok_or_else(|| corrupt(position, "indexed but missing"))?;
        // Mostly only the id's hash is indexed: the record's own id confirms it.
        let (_, body) = self.read_bodies(Kind::Commit, &[(position, loc)])?.pop().expect("one record");
        let (meta, _) = CommitMeta::decode(&body).ok_or_else(|| corrupt(position, "unreadable index fields"))?;
        Ok((meta.command_id == command_id).then_some(Mark { position, version: meta.version }))
    }
}

fn closed() -> AppendError {
    AppendError::Unavailable("the embedded event log is closed".into())
}

fn corrupt(position: u64, reason: &str) -> ReadError {
    ReadError::Corrupt { position, reason: reason.to_owned() }
}

fn read_failure(position: u64, e: &io::Error) -> ReadError {
    ReadError::storage(DiskRefusal::of(e), format!("reading position {position}: {e}"))
}

/// An append's failure from the I/O error `e` while `doing` something.
fn storage_write(doing: &str, e: &io::Error) -> AppendError {
    AppendError::storage(DiskRefusal::of(e), format!("{doing} failed: {e}"))
}

fn decode(position: u64, bytes: &[u8]) -> Result<Record, ReadError> {
    Commit::decode(bytes)
        .map(|commit| Record { position, commit })
        .map_err(|e| ReadError::Corrupt { position, reason: e.0 })
}

/// Up to `max` records with `from ≤ position ≤ to`, in order.
fn read_range(shared: &Shared, from: u64, to: u64, max: usize) -> Result<Vec<Record>, ReadError> {
    shared.read_commits(from, to, max)?.into_iter().map(|(position, bytes)| decode(position, &bytes)).collect()
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

/// Refuses a record the file cannot hold: ids longer than a u16 length, a body over [`file::MAX_BODY`]
/// (which a later open would take for a torn write).
fn fits(ids: &[&str], bytes: usize) -> Result<(), AppendError> {
    let body = bytes + ids.iter().map(|id| 2 + id.len()).sum::<usize>() + 8;
    if let Some(long) = ids.iter().find(|id| id.len() > usize::from(u16::MAX)) {
        return Err(AppendError::Failed(format!("an id of {} bytes is longer than the log keeps", long.len())));
    }
    if body > file::MAX_BODY {
        return Err(AppendError::Failed(format!(
            "a record of {body} bytes is over the log's {} bytes",
            file::MAX_BODY
        )));
    }
    Ok(())
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError> {
        let (stream, command_id, first_version, version) = shape(commit)?;
        let bytes = commit.encode();
        fits(&[stream, command_id], bytes.len())?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            bytes,
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
        let shared = &self.inner.shared;
        let locs: Vec<(u64, Loc)> = {
            let index = shared.index.read().expect("not poisoned");
            let positions = index.positions(stream.as_str()).iter().take_while(|p| **p <= head);
            positions
                .map(|p| index.commits.get(*p).map(|loc| (*p, loc)).ok_or_else(|| corrupt(*p, "indexed but missing")))
                .collect::<Result<_, _>>()?
        };
        let records = crate::storage_work(locs.len(), || shared.read_bodies(Kind::Commit, &locs))?;
        records
            .into_iter()
            .map(|(position, body)| {
                let (meta, commit) =
                    CommitMeta::decode(&body).ok_or_else(|| corrupt(position, "unreadable index fields"))?;
                if meta.stream != stream.as_str() {
                    return Err(corrupt(position, &format!("indexed for stream {stream} but belongs to another")));
                }
                decode(position, commit)
            })
            .collect()
    }

    /// The stream's last published position.
    async fn last_position_of(&self, stream: &AggregateId) -> Result<Option<u64>, ReadError> {
        let head = self.published_head();
        let index = self.inner.shared.index.read().expect("not poisoned");
        Ok(index.positions(stream.as_str()).iter().rev().find(|p| **p <= head).copied())
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError> {
        let head = self.published_head();
        crate::storage_work(max.min(TAIL_CHUNK), || read_range(&self.inner.shared, from, head, max))
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

    fn before_commit_writes(&self, hook: crate::BeforeWrite) -> bool {
        self.inner.shared.before_write.set(hook).is_ok()
    }

    fn take_slowest_flush(&self) -> Option<std::time::Duration> {
        let nanos = self.inner.shared.slowest_flush.swap(0, Ordering::Relaxed);
        (nanos > 0).then(|| std::time::Duration::from_nanos(nanos))
    }

    async fn find_command(&self, command_id: &str) -> Result<Option<Appended>, ReadError> {
        let shared = &self.inner.shared;
        let mark = shared.command_mark(&shared.index.read().expect("not poisoned"), command_id)?;
        // Written but not yet flushed: not an answer anyone has been given.
        Ok(mark.filter(|m| m.position <= self.published_head()).map(|m| m.answer(true)))
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

/// A tail's state: catch up from the file in chunks, then wait for the writer to publish a new head.
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
                match read_range(&self.inner.shared, self.next, head, TAIL_CHUNK) {
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
    /// Stop after the current batch; answered once the writer has let go of the file.
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

/// The single writer: owns the end of the file, the next positions and the head publisher.
struct Writer {
    shared: Arc<Shared>,
    /// Where the next record goes in the file.
    end: u64,
    next: u64,
    head: watch::Sender<u64>,
    /// The next audit position.
    audit_next: u64,
    /// A flush failed: the file holds writes that are not known to be durable, so flush before any answer.
    unflushed: bool,
    /// The free space new commands must leave.
    reserve: reserve::Reserve,
    grow: file::Preallocator,
}

/// A batch being built: its bytes, and the stream heads and command ids decided in it so far, which the
/// index does not show yet.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    heads: HashMap<String, Mark>,
    commands: HashMap<String, Mark>,
    /// What the index gets once the bytes are written: (request, where in `bytes`, its mark).
    commits: Vec<(usize, Loc, Mark)>,
    audits: Vec<(u64, Loc)>,
}

/// A batch written to the file, waiting for the flush that makes it durable before it is answered.
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
type Flushing = futures::future::BoxFuture<'static, (Applied, Option<io::Result<()>>)>;

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
                        flushing.push_back(self.write(batch, audits, behind).await);
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
        // Growing the file holds it open (and locked) too.
        self.grow.finish().await;
        drop(self);
        if let Some(ack) = close {
            let _ = ack.send(());
        }
    }

    /// Decides and writes one batch of appends and audit records, and starts its flush. `behind`: an earlier
    /// batch's flush is still running, so this one needs its own even if it wrote nothing (its answers, a
    /// duplicate's say, must not overtake the earlier batch's).
    async fn write(&mut self, mut requests: Vec<AppendRequest>, audits: Vec<AuditRequest>, behind: bool) -> Flushing {
        // Commands only; audit records seal commits already acknowledged, and may use the reserve.
        if let Some(refusal) = requests.first().and_then(|_| self.reserve.refusal()) {
            for request in requests.drain(..) {
                let _ = request.reply.send(Err(refusal.clone()));
            }
        }
        let mut pending = Pending::default();
        let mut next = self.next;
        // Deciding is synchronous work on the index: a large batch must not hold up the worker's other tasks.
        let mut answers = crate::storage_work(requests.len(), || {
            let index = self.shared.index.read().expect("not poisoned");
            requests
                .iter()
                .enumerate()
                .map(|(i, r)| self.decide(&index, i, r, &mut pending, &mut next))
                .collect::<Vec<_>>()
        });
        let first_audit = self.audit_next;
        for (i, audit) in audits.iter().enumerate() {
            let at = pending.bytes.len();
            file::encode(&mut pending.bytes, Kind::Audit, first_audit + i as u64, &[&audit.bytes]);
            let loc = Loc { offset: self.end + at as u64, len: (pending.bytes.len() - at) as u32 };
            pending.audits.push((first_audit + i as u64, loc));
        }
        let mut audit_answers: Vec<_> = (first_audit..first_audit + audits.len() as u64).map(Ok).collect();

        let wrote = !pending.bytes.is_empty();
        if wrote {
            let end = self.end + pending.bytes.len() as u64;
            self.grow.before_write(end).await;
            file::pad_to_page(&mut pending.bytes, self.end, self.grow.ready());
            let written = crate::storage_work(pending.commits.len() + pending.audits.len(), || {
                match self.shared.before_write.get() {
                    Some(hook) if !pending.commits.is_empty() => hook()?,
                    _ => {}
                }
                self.shared.file.write_all_at(&pending.bytes, self.end)
            });
            match written {
                Ok(()) => {
                    let mut index = self.shared.index.write().expect("not poisoned");
                    for (i, loc, mark) in &pending.commits {
                        let request = &requests[*i];
                        let added = index.add_commit(*loc, &request.stream, &request.command_id, *mark);
                        debug_assert!(added.is_ok(), "the writer numbers commits in order");
                    }
                    for (position, loc) in &pending.audits {
                        let added = index.audit.push(*position, *loc);
                        debug_assert!(added.is_ok(), "the writer numbers audit records in order");
                    }
                    self.end = end;
                    self.next = next;
                    self.audit_next += audits.len() as u64;
                }
                Err(e) => {
                    // Nothing of the batch is indexed, and the next batch writes from the same offset. What
                    // reached the file may hold whole records, which an open would take for acknowledged
                    // ones: zero it (blocks that were written exist, so this works on a full disk too).
                    tracing::error!(error = %e, appends = requests.len(), "embedded event log: batch write failed");
                    if let Err(e) = file::zero(&self.shared.file, self.end, end) {
                        tracing::error!(error = %e, "embedded event log: could not zero a failed write");
                    }
                    let failure = storage_write("writing a batch", &e);
                    answers.iter_mut().for_each(|a| *a = Err(failure.clone()));
                    audit_answers.iter_mut().for_each(|a| *a = Err(failure.clone()));
                }
            }
        }

        let applied =
            Applied { requests, answers, audits, audit_answers, next: self.next, audit_next: self.audit_next };
        if wrote || self.unflushed || behind {
            // One flush for the file: the commits and the audit records of this batch.
            let shared = self.shared.clone();
            Box::pin(async move {
                let synced = tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let synced = shared.file.sync_data();
                    shared.slowest_flush.fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    synced
                })
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
                (applied, Some(synced))
            })
        } else {
            Box::pin(std::future::ready((applied, None)))
        }
    }

    /// Publishes what a flush made durable and answers the batch.
    fn answer(&mut self, mut applied: Applied, flushed: Option<io::Result<()>>) {
        match flushed {
            None => {}
            Some(Ok(())) => {
                self.unflushed = false;
                self.head.send_replace(applied.next - 1);
                self.shared.audit_published.store(applied.audit_next - 1, Ordering::Release);
            }
            Some(Err(e)) => {
                // The batch is in the file but not known to be on disk: answer no success, publish no head.
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

    /// Decides request `i` against the index and the batch so far; adds its record to `pending` if accepted.
    fn decide(
        &self,
        index: &Index,
        i: usize,
        request: &AppendRequest,
        pending: &mut Pending,
        next: &mut u64,
    ) -> Result<Appended, AppendError> {
        let done = match pending.commands.get(&request.command_id) {
            Some(mark) => Some(*mark),
            None => {
                self.shared.command_mark(index, &request.command_id).map_err(|e| AppendError::Failed(e.to_string()))?
            }
        };
        if let Some(done) = done {
            return Ok(done.answer(true));
        }
        let head = pending.heads.get(&request.stream).copied().or_else(|| index.head(&request.stream));
        let head = head.unwrap_or(Mark { position: 0, version: 0 });
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
        let meta = CommitMeta { version: mark.version, stream: &request.stream, command_id: &request.command_id };
        let at = pending.bytes.len();
        file::encode(&mut pending.bytes, Kind::Commit, mark.position, &[&meta.encode(), &request.bytes]);
        let loc = Loc { offset: self.end + at as u64, len: (pending.bytes.len() - at) as u32 };
        pending.commits.push((i, loc, mark));
        pending.heads.insert(request.stream.clone(), mark);
        pending.commands.insert(request.command_id.clone(), mark);
        Ok(mark.answer(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    async fn the_slowest_flush_is_reported_once_per_ask() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        assert_eq!(log.take_slowest_flush(), None, "nothing flushed yet");
        log.append(&first_commit("flushed"), 0).await.unwrap();
        let slowest = log.take_slowest_flush().expect("the append's flush");
        assert!(slowest > Duration::ZERO && slowest < Duration::from_secs(60), "{slowest:?}");
        assert_eq!(log.take_slowest_flush(), None, "taken");
    }

    #[tokio::test]
    async fn corrupt_bytes_are_reported_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let commit = first_commit("corrupt");
        let id = commit.stream().clone();
        let appended = log.append(&commit, 0).await.unwrap();

        // One bit of the stored commit flipped, as a failing disk could.
        let loc = log.inner.shared.index.read().unwrap().commits.get(appended.position).unwrap();
        let at = loc.end() - 2;
        let mut byte = [0];
        log.inner.shared.file.read_exact_at(&mut byte, at).unwrap();
        log.inner.shared.file.write_all_at(&[byte[0] ^ 1], at).unwrap();

        let corrupt = |r: Result<Vec<Record>, ReadError>| matches!(r, Err(ReadError::Corrupt { position, .. }) if position == appended.position);
        assert!(corrupt(log.read_from(appended.position, 10).await));
        assert!(corrupt(log.read_stream(&id).await));
        let first = log.tail(appended.position).next().await.unwrap();
        assert!(matches!(first, Err(ReadError::Corrupt { position, .. }) if position == appended.position));
    }

    #[tokio::test]
    async fn a_failing_hook_before_a_write_fails_its_batch_and_writes_nothing() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let fail = Arc::new(AtomicBool::new(true));
        let failing = fail.clone();
        let hook: crate::BeforeWrite = Arc::new(move || match failing.swap(false, Ordering::SeqCst) {
            true => Err(io::Error::new(io::ErrorKind::StorageFull, "the journal's disk is full")),
            false => Ok(()),
        });
        assert!(log.before_commit_writes(hook));
        assert!(!log.before_commit_writes(Arc::new(|| Ok(()))), "one hook per log");

        // Refused as the disk's refusal, and nothing of it is in the log (as an open would find it, too).
        let commit = first_commit("hooked");
        let refused = log.append(&commit, 0).await;
        assert!(matches!(refused, Err(AppendError::Disk { .. })), "{refused:?}");
        assert_eq!(log.head().await.unwrap(), 0);
        assert_eq!(log.find_command(commit.command_id()).await.unwrap(), None);
        // The hook's next call succeeds: the same append goes through, at the first position.
        assert_eq!(log.append(&commit, 0).await.unwrap().position, 1);
        assert!(!fail.load(Ordering::SeqCst));
        log.close().await;
        let reopened = EmbeddedLog::open(dir.path()).unwrap();
        assert_eq!(reopened.read_from(1, 10).await.unwrap().len(), 1);
        reopened.close().await;
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
