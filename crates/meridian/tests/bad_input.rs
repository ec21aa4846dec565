//! Bad input gets a clear error, changes nothing, and the server keeps serving.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName, MAX_PARTITIONS};
use meridian_proto as pb;
use reqwest::Method;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tonic::Code;

async fn ready_server() -> (
    meridian_server::RunningServer,
    Vec<meridian_sim::node::SimNode>,
) {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "n", 3, 3).await;
    shards_ready(&server, &nodes).await;
    (server, nodes)
}

fn catalog(
    server: &meridian_server::RunningServer,
) -> pb::catalog_service_client::CatalogServiceClient<tonic::transport::Channel> {
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect_lazy();
    pb::catalog_service_client::CatalogServiceClient::new(ch)
}

fn create(cluster: &str, schema: &str, table: &str) -> pb::CreateTableRequest {
    pb::CreateTableRequest {
        cluster: cluster.into(),
        catalog: "default".into(),
        schema: schema.into(),
        table: table.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused_and_nothing_is_created() {
    let (server, _nodes) = ready_server().await;
    let mut c = catalog(&server);
    let long = "x".repeat(129);
    for bad in [
        "",
        long.as_str(),
        "has space",
        "a/b",
        "-lead",
        "nul\0byte",
        "caf\u{e9}",
    ] {
        let err = c.create_table(create("", "public", bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
        assert!(
            err.message().contains("invalid table name"),
            "{}",
            err.message()
        );
    }
    let err = c
        .create_table(create("", "bad schema", "t"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(server.meta.cluster("default").unwrap().table_count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cluster_schema_and_table_are_not_found() {
    let (server, _nodes) = ready_server().await;
    let mut c = catalog(&server);
    let err = c
        .create_table(create("nosuch", "public", "t"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("cluster \"nosuch\" not found"),
        "{}",
        err.message()
    );
    let err = c.create_table(create("", "nosuch", "t")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("schema default.nosuch not found"),
        "{}",
        err.message()
    );
    let get = pb::GetTableRequest {
        catalog: "default".into(),
        schema: "public".into(),
        table: "ghost".into(),
        ..Default::default()
    };
    assert_eq!(c.get_table(get).await.unwrap_err().code(), Code::NotFound);
    let drop = pb::DropTableRequest {
        catalog: "default".into(),
        schema: "public".into(),
        table: "ghost".into(),
        ..Default::default()
    };
    assert_eq!(c.drop_table(drop).await.unwrap_err().code(), Code::NotFound);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_count_zero_or_absurd_is_refused() {
    let (server, _nodes) = ready_server().await;
    let client = client(&server).await;
    let name = TableName::new("default", "public", "p").unwrap();
    for count in [0, MAX_PARTITIONS + 1, u32::MAX] {
        let err = client
            .create_table(
                &name,
                &PartitionRule::Hash {
                    count,
                    columns: vec![],
                },
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{count}");
    }
    let unordered = PartitionRule::Range {
        column: "k".into(),
        bounds: vec!["z".into(), "a".into()],
    };
    assert_eq!(
        client
            .create_table(&name, &unordered, false)
            .await
            .unwrap_err()
            .code(),
        Some(Code::InvalidArgument)
    );
    assert_eq!(server.meta.cluster("default").unwrap().table_count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let (server, _nodes) = ready_server().await;
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect_lazy();
    let mut routes = pb::route_service_client::RouteServiceClient::new(ch);
    // Over the 4 MiB message limit.
    let big = pb::RouteTablesRequest {
        tables: vec!["x".repeat(1000); 5000],
        ..Default::default()
    };
    let err = routes.route_tables(big).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::Internal
        ),
        "{err:?}"
    );
    // Under the size limit but over the batch limit.
    let many = pb::RouteTablesRequest {
        tables: vec!["t".into(); 10_001],
        ..Default::default()
    };
    let err = routes.route_tables(many).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 10000"), "{}", err.message());
    // Still serving.
    let ok = routes
        .route_tables(pb::RouteTablesRequest {
            tables: vec!["t".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().not_found, vec!["t"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_before_registering_is_refused() {
    let server = start(memory_config()).await;
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect_lazy();
    let mut nodes = pb::node_service_client::NodeServiceClient::new(ch);
    let report = pb::NodeHeartbeat {
        sent_at_ms: 1,
        body: Some(pb::node_heartbeat::Body::Report(pb::NodeReport::default())),
    };
    let err = nodes
        .heartbeat(futures::stream::iter(vec![report]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("must be `register`"),
        "{}",
        err.message()
    );
    let empty = pb::NodeHeartbeat {
        sent_at_ms: 1,
        body: None,
    };
    let err = nodes
        .heartbeat(futures::stream::iter(vec![empty]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(server
        .meta
        .cluster("default")
        .unwrap()
        .node_entries()
        .is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_name_at_another_endpoint_and_a_wrong_fingerprint_are_refused() {
    let server = start(memory_config()).await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let (status, body) = http(
        Method::PUT,
        format!("{base}/fingerprint"),
        Some(serde_json::json!({"fingerprint": "cfg-1"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        Method::PUT,
        format!("{base}/fingerprint"),
        Some(serde_json::json!({"fingerprint": "x", "typo": 1})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("typo"), "{body}");
    assert_eq!(
        server
            .meta
            .cluster("default")
            .unwrap()
            .config()
            .config_fingerprint,
        "cfg-1",
        "a refused request changes nothing"
    );
    let mut first = node_config(&server, "dup", 0, 1);
    first.config_fingerprint = "cfg-1".into();
    let node = meridian_sim::node::SimNode::start(first.clone());
    node.agent.registered(Duration::from_secs(5)).await.unwrap();

    let mut twin = first.clone();
    twin.endpoint = "127.0.0.1:1".into();
    let impostor = meridian_sim::node::SimNode::start(twin);
    let err = eventually(Duration::from_secs(5), || {
        let e = impostor.agent.status().last_error;
        async move { e }
    })
    .await;
    assert!(err.contains("already alive at 127.0.0.1:30000"), "{err}");
    assert!(impostor.agent.status().node_id.is_none());

    let mut other = node_config(&server, "other", 1, 1);
    other.config_fingerprint = "cfg-2".into();
    let wrong = meridian_sim::node::SimNode::start(other);
    let err = eventually(Duration::from_secs(5), || {
        let s = wrong.agent.status();
        async move { (s.refusals >= 2).then_some(s.last_error.unwrap_or_default()) }
    })
    .await;
    assert!(err.contains("config fingerprint"), "{err}");
    assert_eq!(
        server.meta.cluster("default").unwrap().node_entries().len(),
        1
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_never_sets_the_clusters_fingerprint() {
    let server = start(memory_config()).await;
    // A misconfigured node joins a cluster that expects no fingerprint...
    let mut odd = node_config(&server, "odd", 0, 1);
    odd.config_fingerprint = "abc".into();
    let odd = meridian_sim::node::SimNode::start(odd);
    odd.agent.registered(Duration::from_secs(5)).await.unwrap();
    let cluster = server.meta.cluster("default").unwrap();
    assert_eq!(cluster.config().config_fingerprint, "");
    // ...and locks nobody out: nodes without one (or with another) still join.
    for (i, fingerprint) in [(1, ""), (2, "xyz")] {
        let mut c = node_config(&server, "next", i, 1);
        c.config_fingerprint = fingerprint.into();
        let n = meridian_sim::node::SimNode::start(c);
        n.agent.registered(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(cluster.node_entries().len(), 3);
    server.shutdown().await;
}

#[test]
fn sim_node_exits_with_status_2_when_its_registration_keeps_being_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(start(memory_config()));
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    runtime.block_on(http(
        Method::PUT,
        format!("{base}/fingerprint"),
        Some(serde_json::json!({"fingerprint": "expected"})),
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["sim-node", "--name", "refused", "--endpoint", "127.0.0.1:0"])
        .args(["--fingerprint", "wrong", "--meta"])
        .arg(server.grpc_addr.to_string())
        .output()
        .expect("sim-node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("config fingerprint"), "{stderr}");
    runtime.block_on(server.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_both_ports_do_not_hurt_the_server() {
    let (server, _nodes) = ready_server().await;
    for addr in [server.grpc_addr, server.http_addr] {
        for payload in [
            &b"\x00\x01\x02garbage\xff\xfe"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff",
            b"GET / HTTP/9.9\r\n\r\n",
        ] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(payload).await;
            let _ = s.shutdown().await;
        }
    }
    let client = client(&server).await;
    let name = TableName::new("default", "public", "after_garbage").unwrap();
    client
        .create_table(&name, &PartitionRule::None, false)
        .await
        .unwrap();
    let (status, _) = http(
        Method::GET,
        format!("http://{}/health", server.http_addr),
        None,
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_json_with_a_4xx_status() {
    let (server, _nodes) = ready_server().await;
    let base = format!("http://{}/api/v1", server.http_addr);
    let (s, v) = http(Method::GET, format!("{base}/clusters/nosuch/nodes"), None).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (s, v) = http(
        Method::POST,
        format!("{base}/clusters/default/tables"),
        Some(serde_json::json!({"name": ""})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "invalid_argument");
    let (s, v) = http(
        Method::POST,
        format!("{base}/clusters/default/tables"),
        Some(serde_json::json!({"nme": "x"})),
    )
    .await;
    assert!((400..500).contains(&s), "{s}");
    assert_eq!(v["error"]["code"], "invalid_argument");
    let resp = reqwest::Client::new()
        .post(format!("{base}/clusters/default/tables"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument");
    let bad_cluster =
        serde_json::json!({"name": "c", "shard_count": 0, "replication_factor": 3, "min_nodes": 3});
    let (s, v) = http(Method::POST, format!("{base}/clusters"), Some(bad_cluster)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shard_count"));
    let (s, v) = http(Method::GET, format!("{base}/nowhere"), None).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (_, v) = http(Method::GET, format!("{base}/clusters"), None).await;
    assert_eq!(
        v["clusters"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_unknown_fields_and_wrong_methods_with_json() {
    let server = start(memory_config()).await;
    let base = format!("http://{}", server.http_addr);
    // A typo in a cluster body would silently take the default: refused, naming it.
    let (status, v) = http(
        reqwest::Method::POST,
        format!("{base}/api/v1/clusters"),
        Some(serde_json::json!({"name": "typo", "shard_count": 4, "replicas": 3})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"replicas\""), "{message}");
    assert!(
        message.contains("replication_factor"),
        "names the known ones: {message}"
    );
    let (_, clusters) = http(
        reqwest::Method::GET,
        format!("{base}/api/v1/clusters"),
        None,
    )
    .await;
    assert_eq!(
        clusters["clusters"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    // A known path with a method it does not take: 405 with a JSON error.
    let (status, v) = http(
        reqwest::Method::PUT,
        format!("{base}/api/v1/clusters"),
        None,
    )
    .await;
    assert_eq!(status, 405, "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("PUT"),
        "{v}"
    );
    // A typo in a query (`limt`) would silently take the default page: refused, naming it.
    for url in [
        "api/v1/clusters/default/shards?limt=5",
        "api/v1/clusters/default/tables?schem=public",
        "api/v1/clusters/default/schemas?catalg=default",
        "api/v1/clusters/default/tables/default/public/t?if_exist=true",
    ] {
        let method = if url.contains("if_exist") {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::GET
        };
        let (status, v) = http(method, format!("{base}/{url}"), None).await;
        assert_eq!(status, 400, "{url}: {v}");
        let typo = url.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(typo),
            "{url}: {v}"
        );
    }
    server.shutdown().await;
}
