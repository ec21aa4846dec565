//! `meridian bench` as a person and a script use it: progress on stderr while it runs
//! (phases and counts), and stdout only the results, the `--json` line last, whether the
//! progress is on or silenced with `--quiet`.

use std::collections::BTreeSet;
use std::process::{Command, Output};

/// The fields of `bench ddl --json` that others read.
const DDL_FIELDS: [&str; 9] = [
    "alter",
    "bench",
    "concurrency",
    "cores",
    "count",
    "ops_per_sec",
    "p50_ms",
    "p99_ms",
    "store",
];

/// A small `bench ddl --json` (a few seconds) with `extra` flags.
fn small_ddl_bench(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "bench",
            "ddl",
            "--count",
            "50",
            "--concurrency",
            "4",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("meridian runs")
}

/// Stdout's two lines, the summary and the JSON report, checked; the report.
fn results(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "stdout is the summary and the JSON line only:\n{stdout}"
    );
    assert!(lines[0].starts_with("ddl: "), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(lines[1]).expect(lines[1]);
    let fields: BTreeSet<&str> = report
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(DDL_FIELDS), "{report}");
    assert_eq!(report["bench"], "ddl");
    assert_eq!(report["count"], 50);
    assert!(
        report["ops_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
    report
}

#[test]
fn bench_shows_progress_on_stderr_and_keeps_stdout_to_its_results() {
    let out = small_ddl_bench(&[]);
    results(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "starting a meridian server",
        "registering 6 simulated nodes: 6/6, done in",
        "creating 50 tables with 4 in flight...",
        "creating tables: 50/50, done in",
    ] {
        assert!(stderr.contains(line), "no {line:?} in:\n{stderr}");
    }

    let quiet = small_ddl_bench(&["--quiet"]);
    results(&quiet);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    for progress in ["starting a meridian server", "registering", "creating"] {
        assert!(
            !stderr.contains(progress),
            "{progress:?} with --quiet:\n{stderr}"
        );
    }
}
