//! Logs a machine can read: `--log-format json` writes one JSON object per line, and text
//! logs carry no colour codes when stderr is not a terminal (a file, a pipe, a collector).

mod common;

use common::free_port;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts `meridian server` with `extra` flags, its stderr piped, and returns the lines it
/// logged up to and including the one that says it serves.
fn lines_until_serving(extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(extra)
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env_remove("RUST_LOG")
        .env_remove("MERIDIAN_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let serving = line.contains("meridian serving");
        lines.push(line);
        if serving || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn json_logs_are_one_object_per_line_with_level_message_and_fields() {
    let lines = lines_until_serving(&["--log-format", "json"]);
    let serving = lines
        .iter()
        .find(|l| l.contains("meridian serving"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(serving).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "meridian serving");
    assert!(v["fields"]["grpc_addr"].is_string(), "{serving}");
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let lines = lines_until_serving(&[]);
    assert!(
        lines.iter().any(|l| l.contains("meridian serving")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
}
