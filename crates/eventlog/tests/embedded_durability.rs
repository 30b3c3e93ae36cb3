//! The embedded log answers an append only once the write holding it is on disk: a `pwrite` of the batch
//! to `events.rlog` and then an `fdatasync` of it, both before the answer. A power loss cannot be staged in
//! a test, so this one watches the system calls of an append with `strace` (`.ci/run` installs it).
//! And those writes never wait for a read of the file from disk (`embedded/file.rs`, `pad_to_page`).

#[path = "conformance/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "support/traced.rs"]
mod traced;

use rectify_eventlog::EmbeddedLog;
use std::future::Future;

/// In the child a test runs itself as: runs `body` on a log in the child's directory and returns true. In the
/// test's own process: false.
fn in_child<F: Future<Output = ()>>(body: impl FnOnce(EmbeddedLog, support::Problem) -> F) -> bool {
    let Some(dir) = traced::child_dir() else { return false };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { body(EmbeddedLog::open(&dir).unwrap(), support::Problem::new()).await });
    true
}

#[test]
fn an_append_is_written_and_fdatasynced_before_it_is_answered() {
    let child = in_child(|log, mut p| async move {
        // The second append waits for the file's first chunk of zeros (`embedded/file.rs`), so no
        // `fdatasync` of that runs during the traced one below.
        p.append_next(&log).await;
        p.append_next(&log).await;
        println!("{}", traced::START);
        p.append_next(&log).await;
        println!("{}", traced::END);
    });
    if child {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let trace =
        traced::trace("an_append_is_written_and_fdatasynced_before_it_is_answered", &log, "pwrite64,fdatasync,fsync");
    // `-y` prints each descriptor with its path: `fdatasync(5</tmp/…/log/events.rlog>) = 0`.
    let file = format!("<{}>", log.join("events.rlog").display());
    let calls: Vec<&str> = trace.lines().filter(|l| l.contains(&file)).collect();
    let written = calls.iter().position(|l| l.contains("pwrite64(") && !l.contains("= -1"));
    // With other threads running, strace may split a call: `fdatasync(…) <unfinished ...>`, later
    // `<... fdatasync resumed>) = 0`.
    let synced = written.and_then(|w| calls[w..].iter().position(|l| l.contains("fdatasync(")));
    let failed = trace.lines().any(|l| l.contains("fdatasync") && l.contains("= -1"));
    assert!(!failed, "a flush failed:\n{}", &trace);
    assert!(written.is_some() && synced.is_some(), "no pwrite then fdatasync of {file} before the answer:\n{}", &trace);
    assert_eq!(calls.len(), 2, "one write and one flush for one append:\n{}", &trace);
}

/// Bytes this process has had read from storage (not from the page cache).
fn storage_reads() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines().find_map(|l| l.strip_prefix("read_bytes: ")).unwrap().parse().unwrap()
}

#[test]
fn appends_read_nothing_from_disk() {
    let child = in_child(|log, mut p| async move {
        // Every code path once, so that none of the binary's own pages is read while counting.
        for _ in 0..20 {
            p.append_next(&log).await;
        }
        // One append at a time: each is a group commit of its own, its write ending mid-page, into zeros the
        // file was grown by with `O_DIRECT` (not in the page cache).
        let before = storage_reads();
        for _ in 0..500 {
            p.append_next(&log).await;
        }
        println!("read from storage: {}", storage_reads() - before);
    });
    if child {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let out = traced::run("appends_read_nothing_from_disk", &dir.path().join("log"));
    assert!(out.contains("read from storage: 0\n"), "appends read pages of the file from disk first:\n{out}");
}
