//! Sealing: every commit this process appends is covered, within a few milliseconds, by a seal signed with
//! the writer's key and stored in the audit store — one signature per batch, off the command's path.
//!
//! [`SealingLog`] wraps the event log the pipeline appends through:
//! 1. before an append it writes an *intent* line (the commit's last hash and stream) to the journal
//!    `DATA/audit/journal` — a plain `write(2)`, no fsync, so it survives a crash of the process. A log
//!    that offers it ([`EventLog::before_commit_writes`], the embedded one) writes the intents of a whole
//!    batch at once, just before the batch's own write; otherwise each append writes its own;
//! 2. after a successful append it hands the position and leaf to the [`Sealer`] task and returns.
//!
//! The task collects appended commits and seals them every [`SEAL_INTERVAL`] or [`SEAL_MAX`] commits,
//! appends the seal to the audit store, then journals which intents are sealed. After a crash, the next
//! start reads the journal: every intent not yet sealed is looked up on the log (its stream, by its last
//! hash) and sealed if it was appended. Only commits this writer intended are ever sealed, so a commit
//! injected into the log while the service was down stays unsealed and `audit verify` reports it.

use crate::server::Settings;
use crate::watcher::Clock;
use anyhow::Context;
use futures::stream::BoxStream;
use rectify_domain::audit::{AuditRecord, Seal, SealEntry, SigningKey};
use rectify_domain::{AggregateId, Commit};
use rectify_eventlog::async_trait;
use rectify_eventlog::{AppendError, Appended, AuditEntry, DiskRefusal, EventLog, ReadError, Record};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long an appended commit waits for its seal at most (unless `RECTIFY_SEAL_INTERVAL_MS` says otherwise).
pub const SEAL_INTERVAL: Duration = Duration::from_millis(5);
/// Most commits in one seal.
pub const SEAL_MAX: usize = 512;
/// The journal is rewritten with only the open intents once it grows past this: ~75,000 commits (a line
/// of ~220 bytes each), so that a start after a crash reads at most this much.
const JOURNAL_COMPACT_BYTES: u64 = 16 << 20;
/// Intents waiting for the log's next write are written at once past this size (a log that refuses
/// commands before writing them never asks for them).
const UNWRITTEN_MAX: usize = 256 << 10;
/// Intents whose append outcome is unknown (the log did not answer) are looked up on the log after this.
const UNKNOWN_AFTER: Duration = Duration::from_secs(30);

/// One journal line (read as owned strings; an intent is written from borrowed ones, once per command).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line<S = String> {
    /// About to append the commit of `stream` whose last event hash is `hash`.
    Intent { hash: S, stream: S },
    /// These intents are sealed.
    Sealed { hashes: Vec<S> },
}

/// The journal, shared by the wrapper (intents, failures) and the task (sealed lines, compaction).
struct Journal {
    path: PathBuf,
    written: Mutex<Written>,
}

/// The journal file and the intents written to it that are neither sealed nor known to have failed, under
/// one lock: a compaction keeps exactly the intents written so far, including those whose append is still
/// on its way.
struct Written {
    file: File,
    /// By last hash (foldhash, seeded per map).
    open: foldhash::HashMap<String, Open>,
    /// While a compaction writes its copy of the open intents: the lines written since it took them.
    since_copy: Option<Vec<u8>>,
    /// Intent lines the log writes (see [`Written::flush`]) before the commits they announce; `None` when
    /// the log cannot, and each intent is written before its append.
    unwritten: Option<Vec<u8>>,
}

impl Written {
    /// Appends one line with one `write(2)` (and to a compaction's record of later lines). A line the disk
    /// had no room for is cut off again, so that it cannot swallow the next line when a reader splits the
    /// file into lines.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let result = match self.file.write(bytes) {
            Ok(n) if n == bytes.len() => {
                if let Some(later) = &mut self.since_copy {
                    later.extend_from_slice(bytes);
                }
                return Ok(());
            }
            Ok(n) => {
                let cut = self.file.metadata().and_then(|m| self.file.set_len(m.len().saturating_sub(n as u64)));
                cut.and(Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "short write to the seal journal")))
            }
            Err(e) => Err(e),
        };
        if let Err(error) = &result {
            tracing::error!(%error, "cannot write the seal journal");
        }
        result
    }

    /// Records an intent: now, or with the next [`Written::flush`].
    fn intend(&mut self, line: &[u8]) -> std::io::Result<()> {
        match &mut self.unwritten {
            Some(unwritten) => {
                unwritten.extend_from_slice(line);
                if unwritten.len() > UNWRITTEN_MAX { self.flush() } else { Ok(()) }
            }
            None => self.write(line),
        }
    }

    /// Writes the intents not written yet with one `write(2)`; on failure they stay for the next try.
    fn flush(&mut self) -> std::io::Result<()> {
        let Some(lines) = self.unwritten.as_mut().map(std::mem::take) else { return Ok(()) };
        if lines.is_empty() {
            return Ok(());
        }
        let written = self.write(&lines);
        if written.is_err() {
            self.unwritten = Some(lines);
        }
        written
    }
}

fn line_bytes<S: Serialize>(line: &Line<S>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    serde_json::to_writer(&mut bytes, line).expect("journal lines serialize");
    bytes.push(b'\n');
    bytes
}

impl Journal {
    fn open_append(path: &Path) -> anyhow::Result<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the seal journal {}", path.display()))
    }

    /// Replaces the journal with its open intents only. The copy is written and made durable without the
    /// lock and off the runtime's threads, while commands go on journaling their intents; the lines they
    /// wrote meanwhile (to the old file too) are added under the lock, just before the copy takes its place.
    /// Until then the old file holds everything, so a crash at any point loses no intent.
    async fn compact(&self) -> anyhow::Result<()> {
        let copy = self.begin_copy();
        let tmp = self.path.with_extension("tmp");
        let to = tmp.clone();
        let result = match tokio::task::spawn_blocking(move || Journal::write_copy(&to, &copy)).await {
            Ok(written) => written.and_then(|()| self.finish_copy(&tmp)),
            Err(panicked) => Err(panicked.into()),
        };
        if result.is_err() {
            self.lock().since_copy = None;
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The open intents as journal lines; lines written from now on are also kept for [`Journal::finish_copy`].
    fn begin_copy(&self) -> Vec<u8> {
        let mut written = self.lock();
        written.since_copy = Some(Vec::new());
        let mut copy = Vec::new();
        for (hash, o) in &written.open {
            copy.extend(line_bytes(&Line::Intent { hash: hash.clone(), stream: o.stream.to_string() }));
        }
        copy
    }

    /// Writes the copy beside the journal and makes it durable: the rename must not reach the disk first.
    fn write_copy(tmp: &Path, copy: &[u8]) -> anyhow::Result<()> {
        let mut out = File::create(tmp)?;
        out.write_all(copy)?;
        out.sync_all()?;
        Ok(())
    }

    /// Adds the lines written since [`Journal::begin_copy`] to the copy and puts it in the journal's place.
    fn finish_copy(&self, tmp: &Path) -> anyhow::Result<()> {
        let mut written = self.lock();
        let later = written.since_copy.take().unwrap_or_default();
        // Opened before the rename, so that nothing can fail after it: the handle follows the file.
        let mut file = Journal::open_append(tmp)?;
        file.write_all(&later)?;
        std::fs::rename(tmp, &self.path)?;
        written.file = file;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().expect("journal lock")
    }
}

/// An intent not sealed yet.
#[derive(Debug, Clone)]
struct Open {
    stream: AggregateId,
    since: Instant,
}

enum Msg {
    Appended { entry: SealEntry, hash: String, duplicate: bool },
    Finish(oneshot::Sender<()>),
}

/// The handle the wrapper and the service hold.
#[derive(Clone)]
pub struct Sealer {
    tx: mpsc::UnboundedSender<Msg>,
    journal: Arc<Journal>,
}

impl Sealer {
    /// Loads (or creates) the writer key, starts the sealing task on `log`, and first seals what the journal
    /// says was appended but not sealed before the last stop. Returns the handle and the key.
    pub async fn start(
        settings: &Settings,
        log: Arc<dyn EventLog>,
    ) -> anyhow::Result<(Sealer, SigningKey, tokio::task::JoinHandle<()>)> {
        let now = (settings.clock)();
        let key = super::keys::load_or_create(&settings.data_dir, now)?;
        let dir = settings.data_dir.join("audit");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("journal");
        let unsealed = recover_journal(&path)?;
        let written = Written {
            file: Journal::open_append(&path)?,
            open: foldhash::HashMap::default(),
            since_copy: None,
            unwritten: None,
        };
        let journal = Arc::new(Journal { written: Mutex::new(written), path: path.clone() });
        let flushed_by_log = journal.clone();
        if log.before_commit_writes(Arc::new(move || flushed_by_log.lock().flush())) {
            journal.lock().unwritten = Some(Vec::new());
        }
        let interval = std::env::var("RECTIFY_SEAL_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(SEAL_INTERVAL, Duration::from_millis);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut task = Task {
            log,
            key: key.clone(),
            clock: settings.clock.clone(),
            journal: journal.clone(),
            batch: Vec::new(),
            batch_hashes: Vec::new(),
            interval,
            stats: Stats::default(),
        };
        let recovered = task.recover(unsealed).await;
        if recovered > 0 {
            tracing::info!(commits = recovered, "sealed commits appended before the last stop");
        }
        journal.compact().await?;
        let handle = tokio::spawn(task.run(rx));
        Ok((Sealer { tx, journal }, key, handle))
    }

    /// Seals everything appended so far and stops the task (after the last append of the process).
    pub async fn finish(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Finish(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Journals the intent to append `commit`; an error means it must not be appended (a crash could leave
    /// it unsealed for good, which `audit verify` reports as forged).
    fn intend(&self, commit: &Commit) -> std::io::Result<()> {
        let (hash, stream) = (commit.last_hash(), commit.stream());
        let line = line_bytes(&Line::Intent { hash, stream: stream.as_str() });
        let open = Open { stream: stream.clone(), since: Instant::now() };
        let hash = hash.to_owned();
        let mut written = self.journal.lock();
        written.intend(&line)?;
        written.open.insert(hash, open);
        Ok(())
    }

    /// The append of the commit whose last hash is `hash` definitely did not happen (a conflict, a refusal).
    fn failed(&self, hash: &str) {
        self.journal.lock().open.remove(hash);
    }
}

/// Reads the journal: the intents that were never sealed.
fn recover_journal(path: &Path) -> anyhow::Result<HashMap<String, AggregateId>> {
    let mut open = HashMap::new();
    let Ok(file) = File::open(path) else { return Ok(open) };
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        // A line cut short by a crash is the last one; nothing after it.
        let Ok(parsed) = serde_json::from_str::<Line>(&line) else { continue };
        match parsed {
            Line::Intent { hash, stream } => {
                if let Some(id) = AggregateId::parse(&stream) {
                    open.insert(hash, id);
                }
            }
            Line::Sealed { hashes } => hashes.iter().for_each(|h| {
                open.remove(h);
            }),
        }
    }
    Ok(open)
}

/// Counters of the sealing task (for the report and /metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub seals: u64,
    pub commits: u64,
    pub sign_nanos: u64,
}

struct Task {
    log: Arc<dyn EventLog>,
    key: SigningKey,
    clock: Clock,
    journal: Arc<Journal>,
    batch: Vec<SealEntry>,
    batch_hashes: Vec<String>,
    interval: Duration,
    stats: Stats,
}

impl Task {
    /// Seals the journal's unsealed intents that are on the log; returns how many.
    async fn recover(&mut self, open: HashMap<String, AggregateId>) -> usize {
        let found = self.find_appended(open).await;
        while !self.batch.is_empty() {
            if !self.seal().await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        found
    }

    /// Looks the intents up on the log and adds those that were appended to the batch; intents whose stream
    /// cannot be read stay open.
    async fn find_appended(&mut self, open: HashMap<String, AggregateId>) -> usize {
        let mut by_stream: HashMap<AggregateId, HashSet<String>> = HashMap::new();
        for (hash, stream) in open {
            by_stream.entry(stream).or_default().insert(hash);
        }
        let mut found = 0;
        for (stream, hashes) in by_stream {
            match self.log.read_stream(&stream).await {
                Ok(records) => {
                    for r in records.iter().filter(|r| hashes.contains(r.commit.last_hash())) {
                        self.batch.push(SealEntry::of(r.position, &r.commit));
                        self.batch_hashes.push(r.commit.last_hash().to_owned());
                        found += 1;
                    }
                }
                Err(error) => {
                    // Keep them open: the next start (or the periodic look-up) tries again.
                    tracing::warn!(%error, %stream, "cannot read a stream to seal its commits; will retry");
                    let open = &mut self.journal.lock().open;
                    for hash in hashes {
                        open.insert(hash, Open { stream: stream.clone(), since: Instant::now() });
                    }
                }
            }
        }
        found
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut deadline: Option<Instant> = None;
        let mut sweep = tokio::time::interval(UNKNOWN_AFTER);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut msgs = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut msgs, SEAL_MAX) => if n == 0 { return },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    deadline = if self.seal().await { None } else { Some(Instant::now() + Duration::from_millis(200)) };
                    continue;
                }
                _ = sweep.tick() => {
                    self.look_up_unknown().await;
                    continue;
                }
            };
            let mut finish = None;
            let mut appended = Vec::new();
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Appended { entry, hash, duplicate } => appended.push((entry, hash, duplicate)),
                    Msg::Finish(ack) => finish = Some(ack),
                }
            }
            self.take(appended).await;
            if let Some(ack) = finish {
                self.finish(rx).await;
                let _ = ack.send(());
                return;
            }
            if self.batch.len() >= SEAL_MAX {
                deadline = if self.seal().await { None } else { Some(Instant::now() + Duration::from_millis(200)) };
            } else if !self.batch.is_empty() && deadline.is_none() {
                deadline = Some(Instant::now() + self.interval);
            }
        }
    }

    /// Seals what is left after the last append of the process.
    async fn finish(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut appended = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Appended { entry, hash, duplicate } = msg {
                appended.push((entry, hash, duplicate));
            }
        }
        self.take(appended).await;
        // Every append has returned by now: an intent still open got no answer from the log (a timeout
        // during a leader election). Look it up now instead of at the next start.
        let open: HashMap<String, AggregateId> =
            self.journal.lock().open.drain().map(|(hash, open)| (hash, open.stream)).collect();
        self.find_appended(open).await;
        let mut tries = 0;
        while !self.batch.is_empty() && tries < 10 {
            if !self.seal().await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tries += 1;
        }
        tracing::debug!(seals = self.stats.seals, commits = self.stats.commits, "sealer stopped");
    }

    /// Adds appended commits (entry, last hash, whether the log already held the command) to the batch.
    async fn take(&mut self, appended: Vec<(SealEntry, String, bool)>) {
        let mut duplicates = Vec::new();
        {
            let open = &mut self.journal.lock().open;
            for (entry, hash, duplicate) in appended {
                open.remove(&hash);
                if duplicate {
                    duplicates.push(entry.position);
                } else {
                    self.batch.push(entry);
                    self.batch_hashes.push(hash);
                }
            }
        }
        // The log already held these commands: seal what it holds if that is one of ours.
        for position in duplicates {
            match self.log.read_from(position, 1).await {
                Ok(records) => {
                    let Some(r) = records.first() else { continue };
                    if self.journal.lock().open.remove(r.commit.last_hash()).is_some() {
                        self.batch.push(SealEntry::of(r.position, &r.commit));
                        self.batch_hashes.push(r.commit.last_hash().to_owned());
                    }
                }
                Err(error) => tracing::warn!(%error, position, "cannot read a duplicate's commit"),
            }
        }
    }

    /// Signs and stores the batch; false if storing failed (the batch is kept for the next try).
    async fn seal(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let started = std::time::Instant::now();
        let record = AuditRecord::Seal(Seal::sign(&self.key, (self.clock)(), std::mem::take(&mut self.batch)));
        self.stats.sign_nanos += started.elapsed().as_nanos() as u64;
        match self.log.append_audit(&record).await {
            Ok(_) => {
                self.stats.seals += 1;
                self.stats.commits += self.batch_hashes.len() as u64;
                // Made before taking the lock, which every command's intent waits for.
                let line = line_bytes(&Line::Sealed { hashes: std::mem::take(&mut self.batch_hashes) });
                let big = {
                    let mut written = self.journal.lock();
                    // Unwritten, the intents stay open in the journal and are sealed again after a restart.
                    let _ = written.write(&line);
                    written.file.metadata().map(|m| m.len() > JOURNAL_COMPACT_BYTES).unwrap_or(false)
                };
                // Now, while every appended commit is sealed: the copy keeps only the open intents, and the
                // commits this task has taken from them but not sealed yet would be left out.
                if big && let Err(error) = self.journal.compact().await {
                    tracing::error!(%error, "cannot compact the seal journal");
                }
                true
            }
            Err(error) => {
                let AuditRecord::Seal(seal) = record else { unreachable!("a seal was built") };
                self.batch = seal.entries;
                tracing::warn!(%error, commits = self.batch.len(), "cannot store a seal; will retry");
                false
            }
        }
    }

    /// Intents whose outcome stayed unknown: seal them if they are on the log, forget them if not.
    async fn look_up_unknown(&mut self) {
        let stale: HashMap<String, AggregateId> = {
            let open = &mut self.journal.lock().open;
            let hashes: Vec<String> =
                open.iter().filter(|(_, o)| o.since.elapsed() >= UNKNOWN_AFTER).map(|(h, _)| h.clone()).collect();
            hashes.into_iter().filter_map(|h| open.remove(&h).map(|o| (h, o.stream))).collect()
        };
        if !stale.is_empty() {
            self.recover(stale).await;
        }
    }
}

/// The event log as the pipeline sees it: appends are journaled and sealed; everything else is the log's.
pub struct SealingLog {
    inner: Arc<dyn EventLog>,
    sealer: Sealer,
}

impl SealingLog {
    /// Wraps `inner`; appends through it are sealed by `sealer`.
    pub fn new(inner: Arc<dyn EventLog>, sealer: Sealer) -> SealingLog {
        SealingLog { inner, sealer }
    }
}

#[async_trait]
impl EventLog for SealingLog {
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, AppendError> {
        if let Err(error) = self.sealer.intend(commit) {
            let reason = format!("cannot journal the commit for sealing: {error}");
            return Err(AppendError::storage(DiskRefusal::of(&error), reason));
        }
        let result = self.inner.append(commit, expected).await;
        match &result {
            Ok(a) => {
                let (entry, hash) = (SealEntry::of(a.position, commit), commit.last_hash().to_owned());
                let _ = self.sealer.tx.send(Msg::Appended { entry, hash, duplicate: a.duplicate });
            }
            // The outcome is unknown: the intent stays open until the log is asked (see `look_up_unknown`).
            Err(AppendError::Unavailable(_)) => {}
            Err(_) => self.sealer.failed(commit.last_hash()),
        }
        result
    }

    async fn read_stream(&self, stream: &AggregateId) -> Result<Vec<Record>, ReadError> {
        self.inner.read_stream(stream).await
    }

    async fn last_position_of(&self, stream: &AggregateId) -> Result<Option<u64>, ReadError> {
        self.inner.last_position_of(stream).await
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<Record>, ReadError> {
        self.inner.read_from(from, max).await
    }

    async fn head(&self) -> Result<u64, ReadError> {
        self.inner.head().await
    }

    fn tail(&self, from: u64) -> BoxStream<'static, Result<Record, ReadError>> {
        self.inner.tail(from)
    }

    fn remembers_every_command(&self) -> bool {
        self.inner.remembers_every_command()
    }

    fn local_head(&self) -> Option<u64> {
        self.inner.local_head()
    }

    fn take_slowest_flush(&self) -> Option<std::time::Duration> {
        self.inner.take_slowest_flush()
    }

    async fn find_command(&self, command_id: &str) -> Result<Option<Appended>, ReadError> {
        self.inner.find_command(command_id).await
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

    async fn announce_views_changed(&self, payload: Vec<u8>) {
        self.inner.announce_views_changed(payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::data;
    use rectify_eventlog::EmbeddedLog;

    #[tokio::test]
    async fn a_compaction_keeps_the_open_intents_and_the_lines_written_while_it_copies() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        let (sealer, _, task) = Sealer::start(&Settings::new(dir.path()), Arc::new(log.clone())).await.unwrap();
        let places = data::places(&crate::regions::Regions::guizhou());
        let commit = data::new_problem_commit(&places, "journal", 1);

        // Journaled, not yet appended: the compaction the sealer runs after a seal must keep it, or a crash
        // before the append is sealed leaves the commit unsealed for good.
        sealer.intend(&commit).unwrap();
        sealer.journal.compact().await.unwrap();
        let open = recover_journal(&sealer.journal.path).unwrap();
        assert_eq!(open.get(commit.last_hash()), Some(commit.stream()));

        // An intent journaled while the copy is being written (without the lock) is in the journal that
        // replaces the old one, and so is a later line about an intent the copy holds.
        let journal = &sealer.journal;
        let copy = journal.begin_copy();
        let during = data::new_problem_commit(&places, "journal", 2);
        sealer.intend(&during).unwrap();
        journal.lock().flush().unwrap(); // as the log does before it writes the commit
        journal.lock().write(&line_bytes(&Line::Sealed { hashes: vec![commit.last_hash().to_owned()] })).unwrap();
        let tmp = journal.path.with_extension("tmp");
        Journal::write_copy(&tmp, &copy).unwrap();
        journal.finish_copy(&tmp).unwrap();
        let open = recover_journal(&journal.path).unwrap();
        assert_eq!(open.get(during.last_hash()), Some(during.stream()));
        assert!(!open.contains_key(commit.last_hash()), "sealed while the copy was written: {open:?}");
        assert!(!tmp.exists());
        // And the journal goes on in the new file.
        let after = data::new_problem_commit(&places, "journal", 3);
        sealer.intend(&after).unwrap();
        journal.lock().flush().unwrap();
        assert!(recover_journal(&journal.path).unwrap().contains_key(after.last_hash()));

        sealer.finish().await;
        task.await.unwrap();
        log.close().await;
    }

    fn journal_text(sealer: &Sealer) -> String {
        std::fs::read_to_string(&sealer.journal.path).unwrap()
    }

    #[tokio::test]
    async fn the_embedded_log_writes_the_intents_just_before_the_commits_they_announce() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        let (sealer, _, task) = Sealer::start(&Settings::new(dir.path()), Arc::new(log.clone())).await.unwrap();
        let sealing = SealingLog::new(Arc::new(log.clone()), sealer.clone());
        let places = data::places(&crate::regions::Regions::guizhou());

        // Journaled but not written yet: the log's next write of commits writes it first.
        let waiting = data::new_problem_commit(&places, "grouped", 1);
        sealer.intend(&waiting).unwrap();
        assert!(!journal_text(&sealer).contains(waiting.last_hash()));
        let appended = data::new_problem_commit(&places, "grouped", 2);
        sealing.append(&appended, 0).await.unwrap();
        let text = journal_text(&sealer);
        for commit in [&waiting, &appended] {
            assert!(text.contains(&format!(r#"{{"intent":{{"hash":"{}""#, commit.last_hash())), "{text}");
        }

        // A log that never writes (it refuses every command) does not make the intents pile up in memory.
        let lines = UNWRITTEN_MAX / line_bytes(&Line::Intent { hash: "0".repeat(64), stream: String::new() }).len();
        let many: Vec<Commit> = (0..lines as u64).map(|i| data::new_problem_commit(&places, "many", i)).collect();
        many.iter().for_each(|c| sealer.intend(c).unwrap());
        assert!(sealer.journal.lock().unwritten.as_ref().unwrap().len() <= UNWRITTEN_MAX);
        assert!(journal_text(&sealer).contains(many[0].last_hash()));

        sealer.finish().await;
        task.await.unwrap();
        log.close().await;
    }
}
