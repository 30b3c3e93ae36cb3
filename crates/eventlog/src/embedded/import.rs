//! Creating the log's file, with what a log written by earlier versions holds.
//!
//! Up to the twelfth session the embedded log was a sled database in the same directory: tree
//! `rectify_events` (key `c` + position, big-endian, to [`Commit::encode`] bytes) and tree `rectify_audit`
//! (position to [`AuditRecord::encode`] bytes). At the first open its commits and audit records are copied,
//! positions unchanged, into a new file, which is made durable and only then takes its name; sled's files
//! are then moved into `sled-imported/`, to be deleted by the operator once the service runs.
//!
//! [`AuditRecord::encode`]: rectify_domain::audit::AuditRecord::encode

use super::file::{self, CommitMeta, Error, Kind};
use rectify_domain::Commit;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Where sled's files go once imported.
const IMPORTED: &str = "sled-imported";
/// The files sled keeps in its directory.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Creates the log's file in `dir` (and `dir` itself): empty, or with the records of an earlier version's
/// sled log there.
pub(super) fn create(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file::NAME);
    let new = dir.join(format!("{}.new", file::NAME));
    let mut out = io::BufWriter::with_capacity(4 << 20, File::create(&new)?);
    out.write_all(file::MAGIC)?;
    let sled = dir.join("conf").exists();
    if sled {
        copy_sled(dir, &mut out)?;
    }
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    std::fs::rename(&new, &path)?;
    File::open(dir)?.sync_all()?;
    if sled {
        std::fs::create_dir_all(dir.join(IMPORTED))?;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if name.to_str().is_some_and(is_sled_file) {
                std::fs::rename(dir.join(&name), dir.join(IMPORTED).join(&name))?;
            }
        }
        File::open(dir)?.sync_all()?;
        tracing::warn!(dir = %dir.display(), "imported the sled event log into {}; the old files are in {IMPORTED}/", file::NAME);
    }
    Ok(())
}

/// Writes every commit and audit record of the sled log in `dir` to `out`.
fn copy_sled(dir: &Path, out: &mut impl Write) -> Result<(), Error> {
    let sled = |e: sled::Error| Error::Io(io::Error::other(format!("reading the sled log: {e}")));
    let db = crate::sled_open::open(&sled::Config::new().path(dir)).map_err(sled)?;
    let mut record = Vec::new();
    for entry in db.open_tree("rectify_events").map_err(sled)?.scan_prefix([b'c']) {
        let (key, bytes) = entry.map_err(sled)?;
        let position = <[u8; 8]>::try_from(&key[1..]).map(u64::from_be_bytes);
        let position = position.map_err(|_| Error::Corrupt(format!("a malformed commit key {key:?}")))?;
        let commit = Commit::decode(&bytes).map_err(|e| Error::Corrupt(format!("commit {position}: {}", e.0)))?;
        let meta = CommitMeta {
            version: commit.last_version(),
            stream: commit.stream().as_str(),
            command_id: commit.command_id(),
        };
        record.clear();
        file::encode(&mut record, Kind::Commit, position, &[&meta.encode(), &bytes]);
        out.write_all(&record)?;
    }
    for entry in db.open_tree("rectify_audit").map_err(sled)?.iter() {
        let (key, bytes) = entry.map_err(sled)?;
        let position = <[u8; 8]>::try_from(key.as_ref()).map(u64::from_be_bytes);
        let position = position.map_err(|_| Error::Corrupt(format!("a malformed audit key {key:?}")))?;
        record.clear();
        file::encode(&mut record, Kind::Audit, position, &[&bytes]);
        out.write_all(&record)?;
    }
    Ok(())
}
