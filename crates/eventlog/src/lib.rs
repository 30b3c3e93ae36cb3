//! The append-only event log: one trait, [`EventLog`], and its backends (embedded sled, NATS JetStream).
//!
//! A *position* is the global log position of one commit (one message): 1 for the first, growing by one
//! with every append, never reused. Each commit holds all events of one command on one stream.
//! Concurrency is decided by the log itself: an append names the position of the stream's last commit it
//! has seen (`expected`, 0 for a new stream) and fails with [`AppendError::Conflict`] if that is stale.

pub mod baseline;
pub mod embedded;
mod follow;
pub mod jetstream;
pub mod sled_open;

pub use embedded::EmbeddedLog;
pub use follow::follow;
pub use jetstream::{JetStreamConfig, JetStreamError, JetStreamLog};

/// The attribute [`EventLog`] implementations need (re-exported so wrappers need no dependency of their own).
pub use async_trait::async_trait;
use futures::stream::BoxStream;
use rectify_domain::audit::AuditRecord;
use rectify_domain::{AggregateId, Commit};

/// Up to this many records, [`storage_work`] runs in place.
const INLINE_RECORDS: usize = 4;

/// Runs synchronous storage work (sled reads and writes, a fold) on `records` records from an async task.
/// Work on a few records runs in place: handing the worker thread's other tasks to another thread, as
/// `block_in_place` does, costs more than it. Longer work runs in `block_in_place` on a multi-threaded
/// runtime, so that the worker's other tasks (HTTP requests) do not wait behind a whole batch.
pub fn storage_work<T>(records: usize, f: impl FnOnce() -> T) -> T {
    let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
    if records > INLINE_RECORDS && matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Frees `value` on a blocking thread when there is a runtime (else here): freeing a big cache takes
/// milliseconds, which on an async worker would hold up the tasks (HTTP requests) queued behind it.
pub fn free_elsewhere<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// The NATS subject that view changes are announced on.
pub const VIEWS_CHANGED: &str = "rectify.views.changed";

/// One commit as stored, with its global position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub position: u64,
    pub commit: Commit,
}

/// One record of the audit store with its position there; a record that does not decode is kept as the
/// reason, so a verifier can report it and go on.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub position: u64,
    pub record: Result<AuditRecord, String>,
}

/// The answer to an append: where the commit landed and the stream version after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub position: u64,
    pub version: u64,
    /// True when the command id had already been appended: this is the first append's answer and nothing
    /// new was written.
    pub duplicate: bool,
}

/// How a disk refuses writes (ENOSPC, EDQUOT, EROFS): the one storage failure a client can do something
/// about (make room), so it is told apart from the others where the I/O error is still at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskRefusal {
    Full,
    QuotaExceeded,
    ReadOnly,
}

impl DiskRefusal {
    /// The refusal `e` reports, if it is one.
    pub fn of(e: &std::io::Error) -> Option<DiskRefusal> {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull => Some(DiskRefusal::Full),
            ErrorKind::QuotaExceeded => Some(DiskRefusal::QuotaExceeded),
            ErrorKind::ReadOnlyFilesystem => Some(DiskRefusal::ReadOnly),
            _ => None,
        }
    }

    /// The refusal of a sled failure, if it is one (sled keeps the kind of the I/O error that failed it, and
    /// answers every later call with it).
    pub fn of_sled(e: &sled::Error) -> Option<DiskRefusal> {
        match e {
            sled::Error::Io(io) => DiskRefusal::of(io),
            _ => None,
        }
    }
}

impl std::fmt::Display for DiskRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskRefusal::Full => "no space left on device",
            DiskRefusal::QuotaExceeded => "disk quota exceeded",
            DiskRefusal::ReadOnly => "read-only file system",
        })
    }
}

/// Why an append did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The stream moved on since `expected`: reload and decide again.
    #[error("stream {stream} has moved past position {expected}")]
    Conflict { stream: String, expected: u64 },
    /// The log cannot be reached or did not answer in time; nothing is known to be written.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The disk refuses writes; nothing is known to be written. The text says what failed, for the log.
    #[error("event log storage refuses writes ({refusal}): {reason}")]
    Disk { refusal: DiskRefusal, reason: String },
    /// Any other failure of the backend.
    #[error("event log failure: {0}")]
    Failed(String),
}

impl AppendError {
    /// A failed write, read or flush of the storage: [`AppendError::Disk`] if the disk refused it.
    pub fn storage(refusal: Option<DiskRefusal>, reason: String) -> AppendError {
        match refusal {
            Some(refusal) => AppendError::Disk { refusal, reason },
            None => AppendError::Failed(reason),
        }
    }
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The log cannot be reached or did not answer in time.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A stored message does not decode as a commit.
    #[error("corrupt commit at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    /// The disk refused a write before, and the backend answers reads with that failure until it is reopened.
    #[error("event log storage refuses writes ({refusal}): {reason}")]
    Disk { refusal: DiskRefusal, reason: String },
    /// Any other failure of the backend.
    #[error("event log failure: {0}")]
    Failed(String),
}

impl ReadError {
    /// A failed read of the storage: [`ReadError::Disk`] if the disk refused a write before.
    pub fn storage(refusal: Option<DiskRefusal>, reason: String) -> ReadError {
        match refusal {
            Some(refusal) => ReadError::Disk { refusal, reason },
            None => ReadError::Failed(reason),
        }
    }
}

/// What a log calls before it writes commits (see [`EventLog::before_commit_writes`]); an error stops the write.
pub type BeforeWrite = std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// The append-only log every Rectify process shares.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `commit` atomically if the position of its stream's last commit is still `expected`
    /// (0: the stream must not exist yet). Durable when it returns `Ok`. A commit whose command id was
    /// appended before returns that first answer with `duplicate: true` and writes nothing.
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError>;

    /// Every commit of one stream, in order (empty for an unknown stream).
    async fn read_stream(&self, stream: &AggregateId) -> Result<Vec<Record>, ReadError>;

    /// The position of the last commit of `stream` when the log can tell without reading the stream
    /// (`None`: no commit, or not cheaply known; then [`EventLog::read_stream`] tells).
    async fn last_position_of(&self, _stream: &AggregateId) -> Result<Option<u64>, ReadError> {
        Ok(None)
    }

    /// Up to `max` commits with position ≥ `from`, in log order (empty when `from` is past the head).
    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError>;

    /// The position of the last commit (0 for an empty log).
    async fn head(&self) -> Result<u64, ReadError>;

    /// [`EventLog::head`] when this process knows it without I/O (a log only it writes); `None` otherwise.
    fn local_head(&self) -> Option<u64> {
        None
    }

    /// Every commit with position ≥ `from`, then each new one as it is appended; never ends by itself.
    fn tail(&self, from: u64) -> BoxStream<'static, Result<Record, ReadError>>;

    /// The answer of an earlier append of `command_id`, if the log still remembers it.
    async fn find_command(&self, command_id: &str) -> Result<Option<Appended>, ReadError>;

    /// Whether [`EventLog::find_command`] remembers every command the log holds, for good. If not, the views
    /// keep their own index of command ids (a row per command), so that retries are answered once.
    fn remembers_every_command(&self) -> bool {
        false
    }

    /// Appends `record` to the audit store: a second append-only log beside the events (seals, bulletins),
    /// as undeletable as the first, with positions of its own (1, 2, …) so that event positions stay dense
    /// and equal to Merkle leaf numbers. Durable when it returns `Ok`; returns the record's position.
    async fn append_audit(&self, record: &AuditRecord) -> Result<u64, AppendError>;

    /// Up to `max` audit records with position ≥ `from`, in order (empty past the end).
    async fn read_audit(&self, from: u64, max: usize) -> Result<Vec<AuditEntry>, ReadError>;

    /// The position of the last audit record (0 when there is none).
    async fn audit_head(&self) -> Result<u64, ReadError>;

    /// Asks the log to call `hook` before every write of commits to its storage, once per batch: a caller
    /// that must record what it is about to append before the log holds it (the seal journal) can then
    /// write its records of a whole batch at once instead of one by one. `hook` sees every append whose
    /// call began before the write; if it fails, the write does not happen and the batch's appends fail.
    /// False if the log cannot (it writes elsewhere, or a hook is already set): the caller then records
    /// before each append.
    fn before_commit_writes(&self, _hook: BeforeWrite) -> bool {
        false
    }

    /// The longest flush of the log's own storage since the last call (`None` if the log does not flush
    /// storage of its own, or has not since): `rectify bench` reports it beside the HTTP latencies, to tell
    /// a slow disk from a slow service.
    fn take_slowest_flush(&self) -> Option<std::time::Duration> {
        None
    }

    /// Tells listeners outside the process that the views changed (`payload` is JSON). The JetStream backend
    /// publishes it on core NATS subject [`VIEWS_CHANGED`] for external dashboards; by default nobody is told.
    /// Best effort: a lost notice only delays a dashboard until the next one.
    async fn announce_views_changed(&self, _payload: Vec<u8>) {}
}

#[cfg(test)]
mod tests {
    use super::DiskRefusal;

    #[test]
    fn disk_refusals_are_told_by_the_kind_of_io_error_even_after_sled_copied_it() {
        for (errno, refusal) in
            [(28, DiskRefusal::Full), (122, DiskRefusal::QuotaExceeded), (30, DiskRefusal::ReadOnly)]
        {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(DiskRefusal::of(&e), Some(refusal), "errno {errno}");
            // What sled answers every later call with: a copy that keeps the kind and the text only.
            let copied = sled::Error::Io(e).clone();
            assert_eq!(DiskRefusal::of_sled(&copied), Some(refusal), "errno {errno}");
        }
        assert_eq!(DiskRefusal::of(&std::io::Error::from_raw_os_error(5)), None, "EIO is another failure");
        assert_eq!(DiskRefusal::Full.to_string(), "no space left on device");
    }

    /// Sends the thread it is dropped on.
    struct Dropped(std::sync::mpsc::Sender<std::thread::ThreadId>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    #[test]
    fn a_value_is_freed_off_the_async_worker_in_a_runtime_and_in_place_without_one() {
        let (tx, rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async { super::free_elsewhere(Dropped(tx.clone())) });
        let freed_on = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("freed");
        assert_ne!(freed_on, std::thread::current().id(), "freed on the worker");
        super::free_elsewhere(Dropped(tx));
        assert_eq!(rx.try_recv(), Ok(std::thread::current().id()), "without a runtime: freed in place");
    }
}
