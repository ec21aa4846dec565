//! The fault harness, end to end: a short seeded `meridian chaos` run of the real binary
//! (a server and six sim-node processes under kills, stalls, partitions and a Meridian
//! restart) must find no two writers for any shard and no write outside a lease.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_short_seeded_chaos_run_finds_no_two_writers_and_no_write_outside_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "chaos",
            "--duration",
            "35",
            "--seed",
            "7",
            "--json",
            "--rate",
            "100",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("meridian chaos runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}\n{stderr}"));
    let context = format!("{stdout}\n{stderr}");
    assert_eq!(summary["overlap_ms"], 0, "{context}");
    assert_eq!(summary["writes_outside_interval"], 0, "{context}");
    assert!(summary["faults"].as_u64().unwrap() > 0, "{context}");
    assert!(summary["writes_acked"].as_u64().unwrap() > 0, "{context}");
    assert!(summary["writes_refused"].as_u64().is_some(), "{context}");
    assert!(summary["max_leaderless_ms"].as_u64().is_some(), "{context}");
    assert_eq!(summary["pass"], true, "{context}");
    assert!(
        out.status.success(),
        "exit code {:?}: {context}",
        out.status
    );
    // The lease logs and every process's log are kept with --dir.
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f == "server.log"), "{files:?}");
    assert!(files.iter().any(|f| f == "n1.log"), "{files:?}");
    assert!(files.iter().any(|f| f == "n1-0.jsonl"), "{files:?}");
}
