//! The embedded log answers an append only once the write holding it is on disk: a `pwrite` of the batch
//! to `events.rlog` and then an `fdatasync` of it, both before the answer. A power loss cannot be staged in
//! a test, so this one watches the system calls of an append with `strace` (`.ci/run` installs it).

#[path = "conformance/support.rs"]
#[allow(dead_code)]
mod support;

use rectify_eventlog::EmbeddedLog;
use std::process::{Command, Stdio};

/// Set in the traced child: the log directory.
const CHILD: &str = "RECTIFY_EMBEDDED_APPEND_CHILD";
const NAME: &str = "an_append_is_written_and_fdatasynced_before_it_is_answered";
const APPENDING: &str = "append starts";
const APPENDED: &str = "append answered";

#[test]
fn an_append_is_written_and_fdatasynced_before_it_is_answered() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let log = EmbeddedLog::open(std::path::Path::new(&dir)).unwrap();
            let mut p = support::Problem::new();
            // The second append waits for the file's first chunk of zeros (`embedded/file.rs`), so no
            // `fdatasync` of that runs during the traced one below.
            p.append_next(&log).await;
            p.append_next(&log).await;
            println!("{APPENDING}");
            p.append_next(&log).await;
            println!("{APPENDED}");
        });
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let (log, trace) = (dir.path().join("log"), dir.path().join("trace"));
    let status = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", "trace=pwrite64,fdatasync,fsync,write", "-o"])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, &log)
        .stdout(Stdio::null())
        .status()
        .expect("running strace (.ci/run installs it)");
    assert!(status.success(), "the traced append failed");

    let trace = std::fs::read_to_string(&trace).unwrap();
    let (start, end) = (trace.find(APPENDING).expect("first marker"), trace.find(APPENDED).expect("second marker"));
    // `-y` prints each descriptor with its path: `fdatasync(5</tmp/…/log/events.rlog>) = 0`.
    let file = format!("<{}>", log.join("events.rlog").display());
    let calls: Vec<&str> = trace[start..end].lines().filter(|l| l.contains(&file)).collect();
    let written = calls.iter().position(|l| l.contains("pwrite64(") && !l.contains("= -1"));
    // With other threads running, strace may split a call: `fdatasync(…) <unfinished ...>`, later
    // `<... fdatasync resumed>) = 0`.
    let synced = written.and_then(|w| calls[w..].iter().position(|l| l.contains("fdatasync(")));
    let failed = trace[start..end].lines().any(|l| l.contains("fdatasync") && l.contains("= -1"));
    assert!(!failed, "a flush failed:\n{}", &trace[start..end]);
    assert!(
        written.is_some() && synced.is_some(),
        "no pwrite then fdatasync of {file} before the answer:\n{}",
        &trace[start..end]
    );
    assert_eq!(calls.len(), 2, "one write and one flush for one append:\n{}", &trace[start..end]);
}
