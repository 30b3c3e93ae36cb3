//! Opening a sled database right after this process closed it.

use std::time::{Duration, Instant};

/// How long a lock held by a handle this process just dropped may take to go.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the database `config` names. sled's background threads let go of the database file (and its lock)
/// a moment after the last handle is dropped (sled's own tests block on the lock for that reason), so a
/// close followed by an open in the same process can find the lock still held: retry for a while. Another
/// process holding the database still fails, after the wait.
pub fn open(config: &sled::Config) -> sled::Result<sled::Db> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if is_lock(&e) && start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            opened => return opened,
        }
    }
}

/// sled reports a held lock only in the text of an `Other` error.
fn is_lock(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().starts_with("could not acquire lock")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_held_open_stays_locked_and_a_closed_one_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let config = sled::Config::new().path(dir.path());
        let db = super::open(&config).unwrap();
        let other = sled::Config::new().path(dir.path()).open().map(|_| ()).unwrap_err();
        assert!(matches!(other, sled::Error::Io(ref e) if super::is_lock(e)), "{other:?}");
        drop(db);
        super::open(&config).unwrap();
    }
}
