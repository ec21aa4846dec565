//! The fault harness, end to end: short seeded `meridian chaos` runs of the real binary
//! must find no two writers for any shard and no write outside a lease: one server and six
//! sim-node processes under kills, stalls, partitions and a Meridian restart; and three
//! servers on a three-member etcd whose leader is killed and paused.

use serde_json::Value;
use std::process::Command;
use std::sync::Mutex;

/// One harness at a time: each loads the two cores with a dozen processes, and the recovery
/// limits assume the machine is not shared with another run.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `meridian chaos ARGS --json --dir DIR`: its exit status, its JSON summary, and its
/// whole output for failure messages.
fn chaos(args: &[&str], dir: &std::path::Path) -> (std::process::ExitStatus, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("chaos")
        .args(args)
        .arg("--json")
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("meridian chaos runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{context}"));
    (out.status, summary, context)
}

#[test]
fn a_short_seeded_chaos_run_finds_no_two_writers_and_no_write_outside_a_lease() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (status, summary, context) = chaos(
        &["--duration", "35", "--seed", "7", "--rate", "100"],
        dir.path(),
    );
    assert_eq!(summary["overlap_ms"], 0, "{context}");
    assert_eq!(summary["writes_outside_interval"], 0, "{context}");
    assert!(summary["faults"].as_u64().unwrap() > 0, "{context}");
    assert!(summary["writes_acked"].as_u64().unwrap() > 0, "{context}");
    assert!(summary["writes_refused"].as_u64().is_some(), "{context}");
    assert!(summary["max_leaderless_ms"].as_u64().is_some(), "{context}");
    assert_eq!(summary["pass"], true, "{context}");
    assert!(status.success(), "exit code {status:?}: {context}");
    // The lease logs and every process's log are kept with --dir.
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f == "server-0.log"), "{files:?}");
    assert!(files.iter().any(|f| f == "n1.log"), "{files:?}");
    assert!(files.iter().any(|f| f == "n1-0.jsonl"), "{files:?}");
}

#[test]
fn a_chaos_run_on_three_servers_keeps_every_shard_writable_through_leader_kills_and_pauses() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Seed 4 pauses the leader twice (5.0 s and 7.8 s: past its 2 s election lease, the
    // second past the nodes' 5.85 s leases too).
    let (status, summary, context) = chaos(
        &[
            "--meta",
            "3",
            "--etcd",
            "3",
            "--duration",
            "45",
            "--seed",
            "4",
            "--faults",
            "kill-meridian,stall-meridian",
            "--rate",
            "100",
        ],
        dir.path(),
    );
    assert_eq!(summary["pass"], true, "{context}");
    assert_eq!(summary["overlap_ms"], 0, "{context}");
    assert_eq!(summary["writes_outside_interval"], 0, "{context}");
    // A change of Meridian leader leaves no shard without a writable leader, ever.
    assert_eq!(summary["max_leaderless_ms"], 0, "{context}");
    assert!(summary["faults"].as_u64().unwrap() > 0, "{context}");
    assert!(summary["writes_acked"].as_u64().unwrap() > 0, "{context}");
    assert!(status.success(), "exit code {status:?}: {context}");
}
