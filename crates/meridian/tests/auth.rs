//! Bearer tokens with roles (`--tokens FILE`): without a valid token nothing can be read
//! or changed, over gRPC or HTTP; a token of too weak a role is refused and changes
//! nothing; nodes join with a node token; ctl works with an admin token.

mod common;

use common::*;
use meridian_client::{BearerToken, MetaClient, NodeAgentConfig};
use meridian_model::{PartitionRule, TableName};
use meridian_proto as pb;
use meridian_sim::node::SimNode;
use reqwest::Method;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tokens_of_the_right_role_get_in() {
    let (dir, server) =
        start_with_tokens("# roles\nadmin adm-1 alice\nreader rd-1\nnode nd-1\n").await;
    let grpc = server.grpc_addr.to_string();
    let base = format!("http://{}", server.http_addr);

    // Nodes join with a node token; one without a token is refused.
    let nodes: Vec<SimNode> = (0..3)
        .map(|i| {
            let mut c = node_config(&server, "au", i, 3);
            c.token = Some("nd-1".into());
            SimNode::start(c)
        })
        .collect();
    shards_ready(&server, &nodes).await;
    let mut stranger = NodeAgentConfig::new(grpc.clone(), "stranger", "127.0.0.1:1");
    stranger.min_backoff = Duration::from_millis(20);
    let stranger = SimNode::start(stranger);
    let refused = eventually(Duration::from_secs(10), || {
        let status = stranger.agent.status();
        async move { status.last_error.filter(|e| e.contains("token")) }
    })
    .await;
    assert!(stranger.agent.status().node_id.is_none(), "{refused}");

    // HTTP: open health; reads need reader or admin; changes admin.
    let clusters = format!("{base}/api/v1/clusters");
    assert_eq!(
        http_as(Method::GET, &format!("{base}/health"), None, None)
            .await
            .0,
        200
    );
    let (s, v) = http_as(Method::GET, &clusters, None, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    assert_eq!(
        http_as(Method::GET, &clusters, Some("wrong"), None).await.0,
        401
    );
    let (s, v) = http_as(Method::GET, &clusters, Some("nd-1"), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("permission_denied")),
        "{v}"
    );
    assert_eq!(
        http_as(Method::GET, &clusters, Some("rd-1"), None).await.0,
        200
    );
    assert_eq!(
        http_as(Method::GET, &format!("{base}/metrics"), Some("rd-1"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        http_as(
            Method::GET,
            &format!("{base}/api/v1/backup"),
            Some("rd-1"),
            None
        )
        .await
        .0,
        403
    );
    let tables = format!("{base}/api/v1/clusters/default/tables");
    let body = serde_json::json!({"name": "h1"});
    assert_eq!(
        http_as(Method::POST, &tables, Some("rd-1"), Some(body.clone()))
            .await
            .0,
        403
    );
    assert_eq!(
        http_as(Method::POST, &tables, None, Some(body.clone()))
            .await
            .0,
        401
    );
    let (s, v) = http_as(
        Method::GET,
        &format!("{tables}?prefix=h"),
        Some("rd-1"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["tables"].as_array().unwrap().len(),
        0,
        "refused calls created nothing"
    );
    assert_eq!(
        http_as(Method::POST, &tables, Some("adm-1"), Some(body))
            .await
            .0,
        201
    );

    // gRPC: DDL needs admin, reads any token, nothing without one.
    let channel = meridian_client::connect_channel(std::slice::from_ref(&grpc), None)
        .await
        .unwrap();
    let name = TableName::new("default", "public", "g1").unwrap();
    let as_role = |t: Option<&str>| {
        MetaClient::with_channel_and_token(channel.clone(), "default", BearerToken::new(t))
    };
    let create = |c: MetaClient| {
        let name = name.clone();
        async move { c.create_table(&name, &PartitionRule::None, false).await }
    };
    assert_eq!(
        create(as_role(None)).await.unwrap_err().code(),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        create(as_role(Some("rd-1"))).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        create(as_role(Some("nd-1"))).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        as_role(Some("rd-1"))
            .get_table(&name)
            .await
            .unwrap_err()
            .code(),
        Some(Code::NotFound),
        "a reader may look, and the refused creates made nothing"
    );
    create(as_role(Some("adm-1"))).await.unwrap();
    assert!(as_role(Some("rd-1")).get_table(&name).await.is_ok());
    assert!(
        as_role(Some("nd-1")).route(&name).await.is_ok(),
        "nodes read routes"
    );
    // Heartbeats need a node (or admin) token.
    let mut heartbeat = pb::node_service_client::NodeServiceClient::with_interceptor(
        channel.clone(),
        BearerToken::new(Some("rd-1")),
    );
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::NodeHeartbeat>(1);
    let err = heartbeat
        .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // Who leads is open (clients find the leader before they can authenticate anything).
    let mut membership =
        pb::membership_service_client::MembershipServiceClient::new(channel.clone());
    assert!(membership.get_leader(pb::GetLeaderRequest {}).await.is_ok());

    // ctl with a token.
    let http_addr = server.http_addr.to_string();
    let (ok, out) = ctl(&http_addr, &["tables"]).await;
    assert!(!ok && out.contains("401"), "{out}");
    let (ok, out) = ctl(
        &http_addr,
        &["--token", "adm-1", "create-schema", "secured"],
    )
    .await;
    assert!(ok && out.contains("created schema secured"), "{out}");
    // Admin actions name who did them: the token's name.
    let (ok, out) = ctl(&http_addr, &["--token", "adm-1", "maintenance", "off"]).await;
    assert!(ok, "{out}");
    let (ok, out) = ctl(&http_addr, &["--token", "rd-1", "events"]).await;
    assert!(
        ok && out.contains("maintenance mode off (by alice (admin) from 127.0.0.1:"),
        "{out}"
    );
    // So does DDL, over gRPC as over HTTP.
    assert!(
        out.contains(
            "table default.public.g1 created (1 partitions) (by alice (admin) from 127.0.0.1:"
        ),
        "{out}"
    );
    assert!(
        out.contains("schema default.secured created (by alice (admin) from 127.0.0.1:"),
        "{out}"
    );

    // `meridian backup` needs an admin token too.
    let backup = |token: Option<&str>| {
        let out_file = dir.path().join("backup.json");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"));
        cmd.args(["backup", "--addr", &http_addr, "--out"])
            .arg(&out_file)
            .env_remove("MERIDIAN_TOKEN");
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let out = cmd.output().expect("backup runs");
        (out.status.success(), out_file.exists())
    };
    assert_eq!(backup(Some("rd-1")), (false, false));
    assert_eq!(backup(Some("adm-1")), (true, true));
    drop(stranger);
    drop(nodes);
    server.shutdown().await;
}

#[test]
fn a_bad_tokens_file_stops_the_server_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "admin a1\nroot r1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "server",
            "--memory",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--tokens",
        ])
        .arg(&tokens)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("line 2: unknown role \"root\""), "{said}");
}
