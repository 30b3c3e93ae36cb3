//! Runs one test of this binary again as a child under `strace` (`.ci/run` installs it), for tests that
//! check system calls a power loss would depend on (it cannot be staged in a test).

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
