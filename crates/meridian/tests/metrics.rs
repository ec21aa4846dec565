//! `/metrics` passes `promtool check metrics` (Debian's prometheus package, installed by
//! the README's test command): HELP text on every family, latencies as histograms.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName};
use std::io::Write;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_with_help_on_every_family() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "m", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    client
        .create_table(
            &TableName::new("default", "public", "m").unwrap(),
            &PartitionRule::None,
            false,
        )
        .await
        .unwrap();
    settled(&server).await;
    let (status, body) = http(
        reqwest::Method::GET,
        format!("http://{}/metrics", server.http_addr),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text").to_string();

    // Every family has HELP text, and latencies are histograms.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
    assert!(
        text.contains("# TYPE meridian_heartbeat_handle_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("meridian_heartbeat_handle_seconds_bucket{le=\"0.001\"}"));

    let promtool = std::env::var("MERIDIAN_PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool} ({e}): the README's test command (scripts/test.sh) installs Debian's prometheus")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check metrics:\n{said}");
    assert!(said.trim().is_empty(), "promtool check metrics:\n{said}");
    server.shutdown().await;
}
