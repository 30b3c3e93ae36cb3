//! A sled flush must make the writes before it durable: the views' clean close (and `rectify rebuild`)
//! relies on it before it marks them closed.
//! Upstream sled writes its buffers with `sync_file_range`, which empties neither the disk's write cache nor
//! the metadata of a file that grew: a power loss could take back a flushed write (sled issue #1452). The
//! vendored sled calls `fdatasync` in a flush (vendor/sled/RECTIFY.md). A power loss cannot be staged in a
//! test, so this one watches the system calls of a flush with `strace` (`.ci/run` installs it).

#[path = "support/traced.rs"]
#[allow(dead_code)] // `run`: only the embedded log's tests use it
mod traced;

#[test]
fn a_flush_fdatasyncs_the_database_file_before_it_returns() {
    if let Some(dir) = traced::child_dir() {
        // No periodic flusher: its own fsync must not stand in for the flush's.
        let db = sled::Config::new().path(&dir).flush_every_ms(None).open().unwrap();
        db.insert(b"key", vec![7u8; 1000]).unwrap();
        println!("{}", traced::START);
        futures::executor::block_on(db.flush_async()).unwrap();
        println!("{}", traced::END);
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let trace = traced::trace("a_flush_fdatasyncs_the_database_file_before_it_returns", &db, "fdatasync,fsync");
    // `-y` prints each descriptor with its path: `fdatasync(5</tmp/…/db/db>) = 0`.
    let file = format!("<{}>)", db.join("db").display());
    let synced = trace
        .lines()
        .any(|l| (l.contains("fdatasync(") || l.contains("fsync(")) && l.contains(&file) && l.ends_with("= 0"));
    assert!(synced, "the flush returned without an fdatasync of {file}:\n{}", &trace);
}
