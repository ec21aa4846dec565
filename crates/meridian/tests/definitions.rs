//! Table definitions: columns, keys and options are validated, stored with the table,
//! returned with it, versioned in routes, kept across a restart, and sent to the shard
//! leaders with the create.

mod common;

use common::*;
use meridian_model::{
    Column, ColumnType, DefinitionChange, PartitionRule, TableDefinition, TableName,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// A server with three nodes whose shards are ready, and a client.
async fn ready(
    prefix: &str,
) -> (
    meridian_server::RunningServer,
    Vec<meridian_sim::node::SimNode>,
    meridian_client::MetaClient,
) {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, prefix, 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    (server, nodes, client)
}

fn metrics_definition() -> TableDefinition {
    let col = |name: &str, data_type, nullable| Column {
        name: name.into(),
        data_type,
        nullable,
        default: None,
    };
    TableDefinition {
        columns: vec![
            col("host", ColumnType::String, false),
            col("ts", ColumnType::TimestampMs, false),
            Column {
                default: Some("0".into()),
                ..col("cpu", ColumnType::Float64, true)
            },
        ],
        primary_key: vec!["host".into()],
        time_index: Some("ts".into()),
        options: BTreeMap::from([("ttl".to_string(), "7d".to_string())]),
        version: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_is_stored_returned_routed_and_sent_to_the_leaders() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = start(config.clone()).await;
    let nodes = start_nodes(&server, "d", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    let name = TableName::new("default", "public", "cpu").unwrap();
    let rule = PartitionRule::Hash {
        count: 4,
        columns: vec!["host".into()],
    };
    let (info, created) = client
        .create_table_with(&name, &rule, &metrics_definition(), false)
        .await
        .unwrap();
    assert!(created);
    let def = info.definition.clone().expect("the definition comes back");
    assert_eq!(def.version, 1, "Meridian sets the first version");
    assert_eq!(def.columns.len(), 3);
    assert_eq!(def.columns[1].r#type, "timestamp_ms");
    assert!(def.columns[1].not_null);
    assert_eq!(def.columns[2].default_value.as_deref(), Some("0"));
    assert_eq!(def.time_index, "ts");
    assert_eq!(def.options.get("ttl").map(String::as_str), Some("7d"));
    assert_eq!(
        client.get_table(&name).await.unwrap().definition,
        Some(def.clone())
    );
    let route = client.route(&name).await.unwrap();
    assert_eq!(route.definition_version, 1);

    // Every partition's shard leader got the definition with the create.
    let cluster = server.meta.cluster("default").unwrap();
    let table = cluster.get_table(&name).unwrap();
    for p in &table.partitions {
        let leader = cluster.shard(p.shard).unwrap().leader().unwrap();
        let node = nodes
            .iter()
            .find(|n| n.agent.status().node_id == Some(leader.0))
            .unwrap();
        let got = node
            .shards
            .definition(table.id.0)
            .expect("sent with the create");
        assert_eq!(got.version, 1);
        assert_eq!(got.columns, table.definition.columns);
    }

    // A table created without one has none, at version 0.
    let plain = TableName::new("default", "public", "plain").unwrap();
    let (info, _) = client
        .create_table(&plain, &PartitionRule::None, false)
        .await
        .unwrap();
    assert_eq!(info.definition, None);
    assert_eq!(client.route(&plain).await.unwrap().definition_version, 0);

    // Kept across a restart.
    server.shutdown().await;
    let server = start(config).await;
    let client = common::client(&server).await;
    eventually(Duration::from_secs(10), || {
        let (client, name) = (client.clone(), name.clone());
        async move { client.get_table(&name).await.ok() }
    })
    .await;
    assert_eq!(client.get_table(&name).await.unwrap().definition, Some(def));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_are_refused_with_what_is_wrong_and_create_nothing() {
    let (server, _nodes, client) = ready("b").await;
    let name = TableName::new("default", "public", "bad").unwrap();
    type Change = Box<dyn Fn(&mut TableDefinition, &mut PartitionRule)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|d, _| d.columns.push(d.columns[0].clone())),
            "column \"host\" is defined twice",
        ),
        (
            Box::new(|d, _| d.primary_key = vec!["nope".into()]),
            "primary key column \"nope\" is not a column",
        ),
        (
            Box::new(|d, _| d.time_index = Some("cpu".into())),
            "must be a timestamp",
        ),
        (
            Box::new(|_, r| {
                *r = PartitionRule::Hash {
                    count: 2,
                    columns: vec!["region".into()],
                }
            }),
            "partition rule names column \"region\"",
        ),
        (
            Box::new(|d, _| {
                d.options
                    .insert("x".into(), "y".repeat(10_000))
                    .map_or((), |_| ())
            }),
            "longer than",
        ),
    ];
    for (change, expected) in cases {
        let mut def = metrics_definition();
        let mut rule = PartitionRule::None;
        change(&mut def, &mut rule);
        let err = client
            .create_table_with(&name, &rule, &def, false)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("InvalidArgument") || msg.contains("invalid argument"),
            "{msg}"
        );
        assert!(msg.contains(expected), "{msg} (expected {expected:?})");
    }
    assert!(
        client.get_table(&name).await.is_err(),
        "nothing was created"
    );

    // Over HTTP: an unknown type is refused (a body that does not parse: 422) naming the
    // known ones.
    let base = format!("http://{}/api/v1/clusters/default/tables", server.http_addr);
    let (s, v) = http(
        reqwest::Method::POST,
        base.clone(),
        Some(serde_json::json!({
            "name": "bad",
            "definition": {"columns": [{"name": "a", "type": "varchar"}]}
        })),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("varchar") && msg.contains("timestamp_ms"),
        "{v}"
    );
    // And a good one is a 201 with the definition in the answer.
    let (s, v) = http(
        reqwest::Method::POST,
        base,
        Some(serde_json::json!({
            "name": "good",
            "definition": {
                "columns": [
                    {"name": "host", "type": "string", "nullable": false},
                    {"name": "ts", "type": "timestamp_ns", "nullable": false}
                ],
                "primary_key": ["host"],
                "time_index": "ts"
            }
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["table"]["definition"]["version"], 1, "{v}");
    assert_eq!(
        v["table"]["definition"]["columns"][1]["type"],
        "timestamp_ns"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_creates_a_schema_and_a_defined_table_and_describes_it() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "c", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let http_addr = server.http_addr.to_string();
    let (ok, out) = ctl(&http_addr, &["create-schema", "metrics"]).await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "created schema metrics", "a sentence, not JSON");
    let (ok, out) = ctl(
        &http_addr,
        &[
            "create-table",
            "metrics.cpu",
            "--partitions",
            "2",
            "--column",
            "host:string:not_null",
            "--column",
            "ts:timestamp_ms:not_null",
            "--column",
            "usage:float64",
            "--primary-key",
            "host",
            "--time-index",
            "ts",
            "--option",
            "ttl=7d",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.starts_with("created table metrics.cpu (id "), "{out}");
    assert!(out.contains(", 2 partitions)"), "{out}");
    // Ids as logs print them are accepted; the cluster is named by its name.
    let (ok, out) = ctl(&http_addr, &["cancel-operator", "op-999"]).await;
    assert!(!ok && out.contains("no running operator 999"), "{out}");
    let (ok, out) = ctl(&http_addr, &["split-shard", "shard-x"]).await;
    assert!(
        !ok && out.contains("not a shard id (3 or shard-3)"),
        "{out}"
    );
    let (ok, out) = ctl(&http_addr, &["cordon", "nobody"]).await;
    assert!(!ok && out.contains("not found in cluster default"), "{out}");
    let (ok, out) = ctl(&http_addr, &["--json", "describe", "metrics.cpu"]).await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["definition"]["version"], 1, "{v}");
    assert_eq!(v["definition"]["columns"][1]["type"], "timestamp_ms");
    assert_eq!(v["definition"]["options"]["ttl"], "7d");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["partitions"][0]["leader"]["node"].is_u64(), "{v}");
    let (ok, out) = ctl(
        &http_addr,
        &["alter-table", "metrics.cpu", "--add-column", "mem:float64"],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = ctl(
        &http_addr,
        &["alter-table", "metrics.cpu", "--unset-option", "ttl"],
    )
    .await;
    assert!(ok, "{out}");
    let (_, out) = ctl(&http_addr, &["--json", "describe", "metrics.cpu"]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["definition"]["version"], 3, "{v}");
    assert_eq!(v["definition"]["columns"][3]["name"], "mem");
    assert_eq!(v["definition"]["options"], serde_json::json!({}));
    // A bad column flag is refused before anything is sent.
    let (ok, out) = ctl(&http_addr, &["create-table", "x", "--column", "nope"]).await;
    assert!(!ok);
    assert!(out.contains("--column wants name:type"), "{out}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alter_reaches_every_leader_before_the_client_hears_ok() {
    let (server, nodes, client) = ready("a").await;
    let name = TableName::new("default", "public", "cpu").unwrap();
    let rule = PartitionRule::Hash {
        count: 4,
        columns: vec!["host".into()],
    };
    client
        .create_table_with(&name, &rule, &metrics_definition(), false)
        .await
        .unwrap();
    assert_eq!(client.route(&name).await.unwrap().definition_version, 1);
    let cluster = server.meta.cluster("default").unwrap();
    // What every partition's leader holds for the table, right now.
    let leader_versions = || {
        let table = cluster.get_table(&name).unwrap();
        table
            .partitions
            .iter()
            .map(|p| {
                let leader = cluster.shard(p.shard).unwrap().leader().unwrap();
                let node = nodes
                    .iter()
                    .find(|n| n.agent.status().node_id == Some(leader.0))
                    .unwrap();
                node.shards.definition(table.id.0).map_or(0, |d| d.version)
            })
            .collect::<Vec<u64>>()
    };

    let added = client
        .alter_table(
            &name,
            &DefinitionChange::AddColumn(Column {
                name: "mem".into(),
                data_type: ColumnType::Float64,
                nullable: true,
                default: None,
            }),
        )
        .await
        .unwrap();
    let def = added.definition.unwrap();
    assert_eq!(def.version, 2);
    assert_eq!(def.columns.last().unwrap().name, "mem");
    assert_eq!(
        leader_versions(),
        vec![2; 4],
        "every leader had it before the answer"
    );
    assert_eq!(client.route(&name).await.unwrap().definition_version, 2);

    // A refused change changes nothing.
    let err = client
        .alter_table(&name, &DefinitionChange::DropColumn("host".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("primary key"), "{err}");
    assert_eq!(cluster.get_table(&name).unwrap().definition.version, 2);

    // Over HTTP: options, then a column dropped.
    let base = format!(
        "http://{}/api/v1/clusters/default/tables/default/public/cpu",
        server.http_addr
    );
    let (s, v) = http(
        reqwest::Method::PATCH,
        base.clone(),
        Some(serde_json::json!({"set_options": {"ttl": null, "compaction": "twcs"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["table"]["definition"]["version"], 3);
    assert_eq!(
        v["table"]["definition"]["options"],
        serde_json::json!({"compaction": "twcs"})
    );
    let (s, v) = http(
        reqwest::Method::PATCH,
        base,
        Some(serde_json::json!({"drop_column": "cpu"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["table"]["definition"]["version"], 4);
    assert_eq!(leader_versions(), vec![4; 4]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_with_tables_is_dropped_only_with_cascade() {
    let (server, _nodes, client) = ready("s").await;
    client
        .create_schema("default", "logs", false)
        .await
        .unwrap();
    let name = TableName::new("default", "logs", "access").unwrap();
    client
        .create_table(&name, &PartitionRule::None, false)
        .await
        .unwrap();
    let url = |q: &str| {
        format!(
            "http://{}/api/v1/clusters/default/schemas/default/logs{q}",
            server.http_addr
        )
    };
    let (s, v) = http(reqwest::Method::DELETE, url(""), None).await;
    assert_eq!(s, 412, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("cascade"),
        "{v}"
    );
    assert!(client.get_table(&name).await.is_ok(), "nothing was dropped");
    let (s, v) = http(reqwest::Method::DELETE, url("?cascade=true"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dropped"], true);
    assert!(
        client.get_table(&name).await.is_err(),
        "its table went first"
    );
    // Gone: no table can be created in it, and dropping it again is a 404 unless if_exists.
    let err = client
        .create_table(&name, &PartitionRule::None, false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("schema default.logs not found"),
        "{err}"
    );
    let (s, _) = http(reqwest::Method::DELETE, url(""), None).await;
    assert_eq!(s, 404);
    let (s, v) = http(reqwest::Method::DELETE, url("?if_exists=true"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dropped"], false);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_is_dropped_with_its_schemas_only_when_empty_or_cascading() {
    let (server, _nodes, client) = ready("c").await;
    for schema in ["raw", "rollup"] {
        client.create_schema("lake", schema, false).await.unwrap();
    }
    let name = TableName::new("lake", "raw", "events").unwrap();
    client
        .create_table(&name, &PartitionRule::None, false)
        .await
        .unwrap();
    let http_addr = server.http_addr.to_string();
    // Over gRPC: refused while a table is in it, and nothing changes.
    let mut catalog = meridian_proto::catalog_service_client::CatalogServiceClient::new(
        meridian_client::connect_channel(&[server.grpc_addr.to_string()], None)
            .await
            .unwrap(),
    );
    let drop = |cascade: bool, if_exists: bool| meridian_proto::DropCatalogRequest {
        cluster: "default".into(),
        catalog: "lake".into(),
        cascade,
        if_exists,
    };
    let err = catalog.drop_catalog(drop(false, false)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("catalog lake holds 1 table(s)"),
        "{err}"
    );
    assert!(client.get_table(&name).await.is_ok());
    let schemas_url = format!("http://{http_addr}/api/v1/clusters/default/schemas?catalog=lake");
    let (_, v) = http(reqwest::Method::GET, schemas_url.clone(), None).await;
    assert_eq!(v["schemas"], serde_json::json!(["raw", "rollup"]), "{v}");

    // With cascade (from ctl): its table, then both schemas, go.
    let (ok, out) = ctl(&http_addr, &["drop-catalog", "lake", "--cascade"]).await;
    assert!(ok, "{out}");
    assert!(client.get_table(&name).await.is_err());
    let err = client
        .create_table(&name, &PartitionRule::None, false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("schema lake.raw not found"),
        "{err}"
    );
    let (_, v) = http(reqwest::Method::GET, schemas_url, None).await;
    assert_eq!(v["schemas"], serde_json::json!([]), "{v}");
    let err = catalog.drop_catalog(drop(false, false)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let gone = catalog.drop_catalog(drop(false, true)).await.unwrap();
    assert!(!gone.into_inner().dropped);
    // The default catalog is untouched.
    assert!(client
        .create_table(
            &TableName::new("default", "public", "still").unwrap(),
            &PartitionRule::None,
            false
        )
        .await
        .is_ok());
    server.shutdown().await;
}
