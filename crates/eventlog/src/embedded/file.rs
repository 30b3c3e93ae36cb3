//! The embedded log's file, `events.rlog`: every commit and audit record, appended one group commit at a
//! time with one `pwrite` and one `fdatasync`.
//!
//! # Layout
//!
//! An 8-byte magic, then records back to back, then zeros:
//!
//! | bytes | what                                                                 |
//! |-------|----------------------------------------------------------------------|
//! | 4     | `len`: the bytes after this 8-byte prefix (little-endian u32)        |
//! | 4     | CRC-32 of those `len` bytes                                          |
//! | 1     | kind: 1 a commit, 2 an audit record                                  |
//! | 8     | position (little-endian u64): the log position, or the audit position |
//! | …     | body                                                                 |
//!
//! A commit's body starts with what the index needs without parsing JSON: its last version (u64), its
//! stream id and its command id (each a u16 length and the bytes), then [`Commit::encode`] bytes. An audit
//! record's body is [`AuditRecord::encode`] bytes.
//!
//! # Why zeros
//!
//! The file grows in chunks written with zeros and made durable ahead of the appends ([`Preallocator`]),
//! so an append overwrites blocks that already exist: its `fdatasync` flushes data only, no block
//! allocation or file size (one write and one cache flush per group commit). The first `len` of 0 ends
//! the log.
//!
//! A group commit's write ends mid-page, and ext4 reads a page that is not in the page cache from disk
//! before writing part of it; the zeros ahead, written with `O_DIRECT`, are not in the cache. So a write
//! goes on with zeros to the end of its last page ([`pad_to_page`]): the next write starts in a cached page
//! (the first after an open too: [`scan`] read the log's last page), and none waits for a read
//! (`tests/embedded_durability.rs`).
//!
//! # After a crash
//!
//! The last writes (at most [`TORN_WINDOW`] bytes) may be on disk in part: they were never acknowledged.
//! Opening stops at the first record that is short, fails its CRC or has no kind, and zeroes what follows
//! it. Anything but zeros further on than the window is not a torn write but damage to acknowledged
//! records, and the log refuses to open rather than cut it off.
//!
//! [`Commit::encode`]: rectify_domain::Commit::encode
//! [`AuditRecord::encode`]: rectify_domain::audit::AuditRecord::encode

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The file's name in the log directory.
pub(super) const NAME: &str = "events.rlog";
/// The first bytes of the file: what it is and the layout's version.
pub(super) const MAGIC: &[u8; 8] = b"RECTLOG1";
/// `len` and CRC.
const PREFIX: usize = 8;
/// Prefix, kind and position: the bytes of a record before its body.
pub(super) const HEADER: usize = PREFIX + 1 + 8;
/// The largest body a record may have (a commit over HTTP is far smaller).
pub(super) const MAX_BODY: usize = 16 << 20;
/// Bytes the last writes before a crash can span: two group commits in flight, each at most a full batch
/// plus one largest record.
pub(super) const TORN_WINDOW: u64 = 2 * ((super::MAX_BATCH_BYTES + MAX_BODY + HEADER) as u64);
/// How much a read during the scan at open asks for at once.
const SCAN_READ: usize = 4 << 20;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Commit = 1,
    Audit = 2,
}

impl Kind {
    fn of(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Commit),
            2 => Some(Kind::Audit),
            _ => None,
        }
    }
}

/// Where a record is in the file: its first byte and its whole length (header and body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub offset: u64,
    pub len: u32,
}

impl Loc {
    pub fn end(self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Appends one record of `kind` at `position`, whose body is `parts` one after the other, to `out`.
pub(super) fn encode(out: &mut Vec<u8>, kind: Kind, position: u64, parts: &[&[u8]]) {
    let len = 1 + 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&position.to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    let crc = crc32fast::hash(&out[start + PREFIX..]);
    out[start + 4..start + PREFIX].copy_from_slice(&crc.to_le_bytes());
}

/// One record read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parsed<'a> {
    pub kind: Kind,
    pub position: u64,
    pub body: &'a [u8],
    /// Header and body.
    pub len: usize,
}

/// What the bytes at a record's start hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next<'a> {
    Record(Parsed<'a>),
    /// `len` 0: the end of the log (if zeros follow).
    End,
    /// Fewer bytes than the record claims.
    Short,
    /// A CRC that does not match, a kind that is none, a length no record has.
    Invalid(&'static str),
}

/// Parses the record at the start of `bytes`.
pub(super) fn parse(bytes: &[u8]) -> Next<'_> {
    let Some(prefix) = bytes.get(..PREFIX) else { return Next::Short };
    let len = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Next::End;
    }
    if !(9..=9 + MAX_BODY).contains(&len) {
        return Next::Invalid("a record length out of range");
    }
    let Some(rest) = bytes.get(PREFIX..PREFIX + len) else { return Next::Short };
    if crc32fast::hash(rest) != u32::from_le_bytes(prefix[4..].try_into().expect("4 bytes")) {
        return Next::Invalid("a CRC mismatch");
    }
    let Some(kind) = Kind::of(rest[0]) else { return Next::Invalid("an unknown record kind") };
    let position = u64::from_le_bytes(rest[1..9].try_into().expect("8 bytes"));
    Next::Record(Parsed { kind, position, body: &rest[9..], len: PREFIX + len })
}

/// The index fields at the start of a commit's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CommitMeta<'a> {
    /// The stream's version after the commit.
    pub version: u64,
    pub stream: &'a str,
    pub command_id: &'a str,
}

impl<'a> CommitMeta<'a> {
    /// The body's leading bytes; [`Commit::encode`](rectify_domain::Commit::encode) bytes follow.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.stream.len() + self.command_id.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        for s in [self.stream, self.command_id] {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// The fields and the commit's bytes after them.
    pub fn decode(body: &'a [u8]) -> Option<(CommitMeta<'a>, &'a [u8])> {
        let version = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
        let (stream, rest) = string(&body[8..])?;
        let (command_id, commit) = string(rest)?;
        Some((CommitMeta { version, stream, command_id }, commit))
    }
}

/// A u16-length-prefixed UTF-8 string at the start of `bytes`, and what follows it.
fn string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    Some((s, &bytes[2 + len..]))
}

/// Why the file could not be created or opened.
#[derive(Debug)]
pub(super) enum Error {
    Io(io::Error),
    /// The file is not this log's, or holds damage that is not a torn last write.
    Corrupt(String),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// Reads every record of `file` in order, handing each to `each` with its location, and returns where
/// the next record goes. A torn last write is zeroed (and made durable) first; see the module docs.
pub(super) fn scan(file: &File, mut each: impl FnMut(Loc, Parsed<'_>) -> Result<(), String>) -> Result<u64, Error> {
    let file_len = file.metadata()?.len();
    let mut magic = [0; MAGIC.len()];
    file.read_exact_at(&mut magic, 0)?;
    if &magic != MAGIC {
        return Err(Error::Corrupt(format!("the file does not start with {MAGIC:?}")));
    }
    let (mut buf, mut buf_start) = (Vec::new(), MAGIC.len() as u64);
    let mut at = buf_start;
    let stopped = loop {
        let from = (at - buf_start) as usize;
        let next = parse(&buf[from..]);
        match next {
            Next::Record(record) => {
                let loc = Loc { offset: at, len: record.len as u32 };
                each(loc, record).map_err(|reason| Error::Corrupt(format!("at byte {at}: {reason}")))?;
                at += record.len as u64;
            }
            Next::Short if at + (buf.len() - from) as u64 >= file_len => break "a record cut short",
            Next::Short => {
                // Keep the record's start, read on behind it.
                buf.drain(..from);
                buf_start = at;
                let want = SCAN_READ.max(HEADER + MAX_BODY).min((file_len - buf_start) as usize);
                let have = buf.len();
                buf.resize(want, 0);
                file.read_exact_at(&mut buf[have..], buf_start + have as u64)?;
            }
            Next::End => break "",
            Next::Invalid(why) => break why,
        }
    };
    end_at(file, at, file_len, stopped)?;
    Ok(at)
}

/// Checks that only zeros, or a torn write within [`TORN_WINDOW`], follow the last record at `end`, and
/// zeroes the torn write.
fn end_at(file: &File, end: u64, file_len: u64, stopped: &str) -> Result<(), Error> {
    let mut last_nonzero = None;
    let mut block = vec![0; SCAN_READ];
    let mut at = end;
    while at < file_len {
        let n = block.len().min((file_len - at) as usize);
        file.read_exact_at(&mut block[..n], at)?;
        if let Some(i) = block[..n].iter().rposition(|b| *b != 0) {
            last_nonzero = Some(at + i as u64);
        }
        at += n as u64;
    }
    let Some(last) = last_nonzero else { return Ok(()) };
    if last >= end + TORN_WINDOW {
        return Err(Error::Corrupt(format!(
            "{stopped} at byte {end}, but byte {last} is written: records after it would be lost"
        )));
    }
    tracing::warn!(at = end, bytes = last + 1 - end, why = stopped, "embedded event log: zeroing a torn last write");
    zero(file, end, last + 1)?;
    file.sync_data()?;
    Ok(())
}

/// Writes zeros over `from..to`.
pub(super) fn zero(file: &File, from: u64, to: u64) -> io::Result<()> {
    // Sized to the range: the preallocator calls this for the unaligned ends of its chunks, mostly empty.
    let block = vec![0; SCAN_READ.min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let n = block.len().min((to - at) as usize);
        file.write_all_at(&block[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Grows the file with durable zeros ahead of the appends, on a blocking thread (see "Why zeros").
///
/// Only the writer asks for space, and it never writes into a range being zeroed: it waits for it. The
/// zeros are written with `O_DIRECT` where the file system allows it: through the page cache, they would
/// be dirty pages of the log's file, which the next append's `fdatasync` would have to write first.
pub(super) struct Preallocator {
    file: Arc<File>,
    /// The same file opened with `O_DIRECT`, if the file system has it (tmpfs has not).
    direct: Option<Arc<File>>,
    /// Bytes below this are in the file (zeros where nothing was appended).
    ready: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    /// The writer waits for the zeroing under way: no more pauses.
    hurry: Arc<AtomicBool>,
    job: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// `O_DIRECT` writes start and end on this boundary and come from memory aligned to it.
const DIRECT_ALIGN: usize = 4096;
/// One `O_DIRECT` write: small enough for an append's write and flush to get in between (an append waits
/// behind at most one)…
const DIRECT_WRITE: usize = 256 << 10;
/// …and a pause after each, so that the zeros take at most a share of the disk (up to 128 MB/s, ahead of
/// what the appends use but at full speed), unless the writer is already waiting for them.
const DIRECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

impl Preallocator {
    /// A preallocator of the file at `path` (open as `file`), `file_len` bytes long.
    pub fn new(file: Arc<File>, path: &std::path::Path, file_len: u64) -> Preallocator {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = File::options().write(true).custom_flags(libc::O_DIRECT).open(path).ok().map(Arc::new);
        Preallocator {
            file,
            direct,
            ready: Arc::new(AtomicU64::new(file_len)),
            running: Arc::new(AtomicBool::new(false)),
            hurry: Arc::new(AtomicBool::new(false)),
            job: Mutex::new(None),
        }
    }

    /// Bytes below this are in the file: zeros where nothing was appended.
    pub fn ready(&self) -> u64 {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits for the zeroing under way, if any, without its pauses.
    pub async fn finish(&self) {
        self.hurry.store(true, Ordering::Release);
        let job = self.job.lock().expect("not poisoned").take();
        if let Some(job) = job {
            let _ = job.await;
        }
    }

    /// Called before writing the bytes up to `end`: waits while they are being zeroed, and starts zeroing
    /// the next chunk once less than half of one is left. Writing past the zeros is correct, only slower
    /// (the flush then writes the file's size too).
    pub async fn before_write(&self, end: u64) {
        let ready = self.ready.load(Ordering::Acquire);
        if end > ready && self.running.load(Ordering::Acquire) {
            self.finish().await;
        }
        let ready = self.ready.load(Ordering::Acquire);
        // Grow by half the file, from 1 MiB to 64 MiB, so that a small log stays small.
        let chunk = (ready / 2).clamp(1 << 20, 64 << 20);
        if ready < end + chunk / 2 && !self.running.swap(true, Ordering::AcqRel) {
            let start = ready.max(end);
            let (file, direct) = (self.file.clone(), self.direct.clone());
            let (ready, running, hurry) = (self.ready.clone(), self.running.clone(), self.hurry.clone());
            hurry.store(false, Ordering::Release);
            let job = tokio::task::spawn_blocking(move || {
                // A file system may take `O_DIRECT` at open and refuse its writes: then through the cache.
                let zeroed = direct
                    .and_then(|direct| zero_direct(&file, &direct, start, start + chunk, &hurry).ok())
                    .map_or_else(|| zero(&file, start, start + chunk), Ok);
                match zeroed.and_then(|()| file.sync_data()) {
                    Ok(()) => ready.store(start + chunk, Ordering::Release),
                    // The appends then write past the zeros; a full disk fails them on their own.
                    Err(e) => tracing::warn!(error = %e, "embedded event log: could not grow the file ahead"),
                }
                running.store(false, Ordering::Release);
            });
            *self.job.lock().expect("not poisoned") = Some(job);
        }
    }
}

/// The page size the padding assumes (a larger page only means some writes still read).
const PAGE: u64 = 4096;

/// Adds zeros to `bytes`, to be written at `at`, up to the end of their last page if the file holds zeros
/// there anyway (below `zeros_until`), so that the next write starts in a page the cache has.
pub(super) fn pad_to_page(bytes: &mut Vec<u8>, at: u64, zeros_until: u64) {
    let end = at + bytes.len() as u64;
    let page_end = end.div_ceil(PAGE) * PAGE;
    if page_end <= zeros_until {
        bytes.resize((page_end - at) as usize, 0);
    }
}

/// Writes zeros over `from..to`: up to the first aligned offset through `file`, the rest through `direct`.
fn zero_direct(file: &File, direct: &File, from: u64, to: u64, hurry: &AtomicBool) -> io::Result<()> {
    let align = DIRECT_ALIGN as u64;
    let aligned = from.div_ceil(align) * align;
    zero(file, from, aligned.min(to))?;
    let to_aligned = to / align * align;
    let memory = vec![0u8; DIRECT_WRITE + DIRECT_ALIGN];
    let skip = memory.as_ptr().align_offset(DIRECT_ALIGN);
    let block = &memory[skip..skip + DIRECT_WRITE];
    let mut at = aligned;
    while at < to_aligned {
        let n = block.len().min((to_aligned - at) as usize);
        direct.write_all_at(&block[..n], at)?;
        at += n as u64;
        if !hurry.load(Ordering::Acquire) {
            std::thread::sleep(DIRECT_PAUSE);
        }
    }
    zero(file, to_aligned.max(aligned), to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(records: &[u8], tail: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(records);
        bytes.extend_from_slice(tail);
        let path = dir.path().join(NAME);
        std::fs::write(&path, bytes).unwrap();
        let file = File::options().read(true).write(true).open(path).unwrap();
        (dir, file)
    }

    fn positions(file: &File) -> Result<(Vec<u64>, u64), String> {
        let mut seen = Vec::new();
        let end = scan(file, |_, r| {
            seen.push(r.position);
            Ok(())
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok((seen, end))
    }

    fn three() -> Vec<u8> {
        let mut out = Vec::new();
        for p in 1..=3 {
            let meta = CommitMeta { version: p, stream: "P520102-a", command_id: "c" }.encode();
            encode(&mut out, Kind::Commit, p, &[&meta, b"{}"]);
        }
        out
    }

    #[test]
    fn a_record_reads_back_and_a_flipped_bit_is_caught() {
        let mut out = Vec::new();
        let meta = CommitMeta { version: 7, stream: "P520102-a", command_id: "cmd-1" };
        encode(&mut out, Kind::Commit, 42, &[&meta.encode(), b"{\"x\":1}"]);
        let Next::Record(parsed) = parse(&out) else { panic!("parses") };
        assert_eq!((parsed.kind, parsed.position, parsed.len), (Kind::Commit, 42, out.len()));
        assert_eq!(CommitMeta::decode(parsed.body), Some((meta, &b"{\"x\":1}"[..])));
        assert_eq!(parse(&out[..out.len() - 1]), Next::Short);
        out[HEADER + 3] ^= 1;
        assert_eq!(parse(&out), Next::Invalid("a CRC mismatch"));
        assert_eq!(parse(&[0; 16]), Next::End);
    }

    #[test]
    fn a_torn_last_write_is_zeroed_and_the_records_before_it_kept() {
        let records = three();
        let (_dir, file) = file_with(&records, &[]);
        assert_eq!(positions(&file).unwrap(), (vec![1, 2, 3], file.metadata().unwrap().len()));

        // The third record cut short, then half of it written as garbage.
        let third = records.len() - (HEADER + 12 + 9 + 1 + 2);
        let mut torn = records[..records.len() - 5].to_vec();
        torn[third + HEADER + 2] ^= 0xff;
        let (_dir, file) = file_with(&torn, &[0; 100]);
        let (seen, end) = positions(&file).unwrap();
        assert_eq!((seen, end), (vec![1, 2], (MAGIC.len() + third) as u64));
        let mut after = vec![0; 100];
        file.read_exact_at(&mut after, end).unwrap();
        assert!(after.iter().all(|b| *b == 0), "the torn write is zeroed");
        assert_eq!(positions(&file).unwrap(), (vec![1, 2], end), "and stays gone");
    }

    #[test]
    fn damage_followed_by_written_bytes_far_on_refuses_to_open() {
        let mut records = three();
        records[HEADER + 1] ^= 1;
        let mut tail = vec![0; TORN_WINDOW as usize];
        tail.push(1);
        let (_dir, file) = file_with(&records, &tail);
        let error = positions(&file).unwrap_err();
        assert!(error.contains("records after it would be lost"), "{error}");
        let (dir, _) = file_with(&[], &[]);
        std::fs::write(dir.path().join(NAME), b"something else").unwrap();
        let file = File::open(dir.path().join(NAME)).unwrap();
        assert!(positions(&file).unwrap_err().contains("does not start with"));
    }
}
