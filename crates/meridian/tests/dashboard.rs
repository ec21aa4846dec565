//! The dashboard in a real browser (headless Chromium, installed by the README's test
//! command): it shows the nodes by zone, a healthy cluster, charts of the last minutes and
//! a page of shards; a node is killed, and the page shows it offline, its shards' leaders
//! elsewhere, and the problem with what to do.
//!
//! The page runs with `?live=off` (polling instead of the event stream): `--dump-dom`
//! waits for the network to go idle, which a stream never does.

mod common;

use common::*;
use std::time::Duration;

/// The page's DOM after its scripts ran (Chromium's `--dump-dom`; virtual time lets the
/// first refresh finish).
async fn rendered(url: &str) -> String {
    rendered_while(url, async {}).await
}

/// [`rendered`], running `meanwhile` while the page is open.
async fn rendered_while(url: &str, meanwhile: impl std::future::Future<Output = ()>) -> String {
    let bin = std::env::var("MERIDIAN_CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let browser = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .kill_on_drop(true)
            .output(),
    );
    let (out, ()) = tokio::join!(browser, meanwhile);
    let out = out
    .expect("chromium answers within 60 s")
    .unwrap_or_else(|e| {
        panic!("cannot run {bin} ({e}): the README's test command (scripts/test.sh) installs Debian's chromium")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The leader column of every row of the shards table.
fn shard_leaders(dom: &str) -> Vec<String> {
    let table = dom
        .split(r#"id="shards""#)
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("a shards table");
    table
        .split("<tr>")
        .skip(2) // before the first row, and the header
        .filter_map(|row| row.split("<td>").nth(3))
        .map(|cell| cell.split("</td>").next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_node_die_and_its_leaders_move() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    config.history_step_ms = 100;
    let server = start(config).await;
    let mut nodes = start_nodes(&server, "dash", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let url = format!("http://{}/?live=off", server.http_addr);

    // A page of 5 shards out of 8, with a way to the next page.
    let dom = rendered(&format!("{url}&page_size=5")).await;
    assert_eq!(shard_leaders(&dom).len(), 5, "{dom}");
    assert!(
        dom.contains("1–5 of 8") && dom.contains(r#"id="next""#),
        "{dom}"
    );
    // Charts of the last minutes, with a line per node.
    assert!(
        dom.contains(r#"aria-label="leaders per node""#) && dom.contains("<polyline"),
        "{dom}"
    );
    let legend = dom
        .split(r#"aria-label="leaders per node""#)
        .nth(1)
        .and_then(|c| c.split("</div>").next())
        .unwrap_or_default();
    for n in ["dash-0", "dash-1", "dash-2"] {
        assert!(
            legend.contains(n),
            "{n} missing from the chart's legend: {legend}"
        );
    }

    let dom = rendered(&url).await;
    for n in ["dash-0", "dash-1", "dash-2"] {
        assert!(dom.contains(&format!("<b>{n}</b>")), "{n} missing:\n{dom}");
    }
    for zone in ["zone-0", "zone-1", "zone-2"] {
        assert!(dom.contains(&format!("<h3>{zone}</h3>")), "{zone} missing");
    }
    assert!(dom.contains("8 shards, all healthy"), "{dom}");
    let leaders = shard_leaders(&dom);
    assert_eq!(leaders.len(), 8, "{dom}");
    assert!(
        leaders.iter().any(|l| l == "dash-0"),
        "dash-0 leads some: {leaders:?}"
    );

    // dash-0 dies; once Meridian has moved its leaders, the page shows it.
    let victim = nodes.remove(0);
    let victim_id = meridian_model::NodeId(victim.agent.status().node_id.unwrap());
    victim.agent.stop().await;
    let cluster = server.meta.cluster("default").unwrap();
    eventually(Duration::from_secs(30), || {
        let cluster = cluster.clone();
        async move {
            cluster
                .shard_entries()
                .iter()
                .all(|s| s.shard.leader().is_some_and(|l| l != victim_id))
                .then_some(())
        }
    })
    .await;
    let dom = rendered(&url).await;
    assert!(
        dom.contains(r#"<div class="node offline"><b>dash-0</b>"#),
        "dash-0 shown offline:\n{dom}"
    );
    let leaders = shard_leaders(&dom);
    assert_eq!(leaders.len(), 8);
    assert!(!leaders.iter().any(|l| l == "dash-0"), "{leaders:?}");
    assert!(
        dom.contains("replica_down"),
        "the health panel names the problem"
    );
    assert!(
        dom.contains("what to do") && dom.contains("repair"),
        "with advice"
    );
    // The event log lists the node's state change.
    assert!(
        dom.contains("node dash-0 (node-"),
        "the event is listed:\n{dom}"
    );
    server.shutdown().await;
}

/// Without `?live=off` the page follows the event stream: an event that happens after it
/// loaded is on the page before any refresh is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_events_live_from_the_stream() {
    let server = start(memory_config()).await;
    let url = format!("http://{}/", server.http_addr);
    let events = server.meta.events().clone();
    let meta = server.meta.clone();
    let before = events.followers();
    let dom = rendered_while(&url, async move {
        // Once the page follows the stream, something happens.
        eventually(Duration::from_secs(30), || {
            let open = events.followers() > before;
            async move { open.then_some(()) }
        })
        .await;
        meta.cluster("default")
            .unwrap()
            .create_schema("default", "arrived_live", false)
            .await
            .unwrap();
    })
    .await;
    assert!(dom.contains(r#"<span id="live">live</span>"#), "{dom}");
    assert!(
        dom.contains("<td>schema default.arrived_live created</td>"),
        "the event arrived live:\n{dom}"
    );
    server.shutdown().await;
}
