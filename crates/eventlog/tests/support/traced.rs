//! Runs one test of this binary again as a child under `strace` (`.ci/run` installs it), for tests that
//! check system calls a power loss would depend on (it cannot be staged in a test); or as a plain child,
//! for tests that read counters of their own process.

use std::path::Path;
use std::process::{Command, Stdio};

/// Set in the traced child: the directory it works in.
pub const CHILD: &str = "RECTIFY_TRACED_CHILD";
/// Printed by the child around the calls under test.
pub const START: &str = "traced calls start";
pub const END: &str = "traced calls end";

/// The directory to work in when this process is the traced child of `test`.
pub fn child_dir() -> Option<std::path::PathBuf> {
    std::env::var_os(CHILD).map(Into::into)
}

/// Runs `test` as a child working in `dir` under `strace -f -y` for `calls`, and returns the trace
/// between the child's [`START`] and [`END`] lines.
pub fn trace(test: &str, dir: &Path, calls: &str) -> String {
    let out = dir.with_extension("trace");
    let status = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", &format!("trace={calls},write"), "-o"])
        .arg(&out)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir)
        .stdout(Stdio::null())
        .status()
        .expect("running strace (.ci/run installs it)");
    assert!(status.success(), "the traced child failed");
    let trace = std::fs::read_to_string(&out).unwrap();
    let (start, end) = (trace.find(START).expect("first marker"), trace.find(END).expect("second marker"));
    trace[start..end].to_owned()
}

/// Runs `test` as a plain child working in `dir`, alone in its process, and returns what it printed.
pub fn run(test: &str, dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir)
        .output()
        .expect("running the test binary again");
    assert!(out.status.success(), "the child failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
