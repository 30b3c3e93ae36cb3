//! `rectify bench` on tiny sizes: every row is there with positive figures (no timing is asserted:
//! benchmarks are not tests).

use crate::app::binary;
use std::process::Command;

#[test]
fn bench_prints_every_row_with_positive_figures() {
    let out = Command::new(binary())
        .args(["bench", "--events", "200", "--concurrency", "16", "--rate", "500", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run rectify bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rectify bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench --json prints JSON");
    let rows = report["rows"].as_array().expect("rows");
    let nats = std::env::var_os("NATS_SERVER_BIN").is_some()
        || std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join("nats-server").is_file());
    for workload in ["1", "2", "3", "4a", "4b", "4c", "4d", "5a", "5b", "6a", "6b", "7"] {
        let row = rows
            .iter()
            .find(|r| r["workload"] == workload)
            .unwrap_or_else(|| panic!("no row {workload} in {report:#}"));
        if row.get("skipped").is_some() {
            assert!(workload == "1" && !nats, "row {workload} skipped: {row}");
            continue;
        }
        for field in ["figure", "baseline", "ratio"] {
            let x = row[field].as_f64().unwrap_or_else(|| panic!("row {workload} has no {field}: {row}"));
            assert!(x > 0.0, "row {workload}: {field} is {x}: {row}");
        }
        assert!(!row["name"].as_str().unwrap_or("").is_empty() && !row["unit"].as_str().unwrap_or("").is_empty());
    }
    // Answers wait for the log's flush, so the report says how slow the disk was while latency was measured.
    let notes = report["notes"].as_array().expect("notes");
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|n| n.contains("slowest fdatasync"))), "{report:#}");
    // Progress goes to stderr, the report alone to stdout.
    assert!(stderr.contains("projector rebuild"), "no progress on stderr: {stderr}");

    let table = Command::new(binary())
        .args(["bench", "--events", "200", "--only", "2", "--concurrency", "8"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run rectify bench");
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("| # | workload | figure | baseline (same run) | ratio | target |"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("| 2 |")), "{text}");
}
