//! Lists page: a size, an opaque token, a name prefix; every entry exactly once, in name
//! order, however many there are.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName};
use meridian_proto as pb;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_schemas_page_in_name_order_with_a_prefix() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "l", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    let cluster = server.meta.cluster("default").unwrap();
    // 1,050 tables in public, 5 in another schema: a page boundary falls inside each.
    client
        .create_schema("default", "other", false)
        .await
        .unwrap();
    for i in 0..1050 {
        let name = TableName::new("default", "public", &format!("t{i:04}")).unwrap();
        cluster
            .create_table(name, PartitionRule::None, false)
            .await
            .unwrap();
    }
    for i in 0..5 {
        let name = TableName::new("default", "other", &format!("o{i}")).unwrap();
        cluster
            .create_table(name, PartitionRule::None, false)
            .await
            .unwrap();
    }

    // Pages of 400: 400, 400, 250, each name once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_tables_page("default", "public", "", 400, &token)
            .await
            .unwrap();
        pages += 1;
        assert!(page.tables.len() <= 400);
        seen.extend(page.tables.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..1050).map(|i| format!("t{i:04}")).collect();
    assert_eq!(seen, expected);

    // The default page is 1,000; the client's list_tables follows the pages.
    let first = client
        .list_tables_page("default", "public", "", 0, "")
        .await
        .unwrap();
    assert_eq!(first.tables.len(), 1000);
    assert!(!first.next_page_token.is_empty());
    let all = client.list_tables("", "").await.unwrap();
    assert_eq!(all.len(), 1055);
    let distinct: BTreeSet<(String, String)> = all
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect();
    assert_eq!(distinct.len(), 1055);

    // A prefix narrows the list, across pages too.
    let page = client
        .list_tables_page("default", "public", "t10", 30, "")
        .await
        .unwrap();
    assert_eq!(page.tables.len(), 30);
    let rest = client
        .list_tables_page("default", "public", "t10", 30, &page.next_page_token)
        .await
        .unwrap();
    assert_eq!(rest.tables.len(), 20);
    assert!(rest.next_page_token.is_empty());
    assert!(page
        .tables
        .iter()
        .chain(&rest.tables)
        .all(|t| t.name.starts_with("t10")));

    // A token that is not ours is refused with a clear message.
    let err = client
        .list_tables_page("default", "public", "", 10, "not-a-token")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid page token"), "{err}");

    // Schemas page the same way.
    let mut catalog = pb::catalog_service_client::CatalogServiceClient::connect(format!(
        "http://{}",
        server.grpc_addr
    ))
    .await
    .unwrap();
    let r = catalog
        .list_schemas(pb::ListSchemasRequest {
            catalog: "default".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.schemas, vec!["other".to_string()]);
    let r = catalog
        .list_schemas(pb::ListSchemasRequest {
            catalog: "default".into(),
            page_size: 1,
            page_token: r.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.schemas, vec!["public".to_string()]);
    assert!(r.next_page_token.is_empty());

    // Over HTTP too: schemas, then tables (the default page, then the rest).
    let (s, v) = http(
        reqwest::Method::GET,
        format!(
            "http://{}/api/v1/clusters/default/schemas?limit=1&prefix=o",
            server.http_addr
        ),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["schemas"], serde_json::json!(["other"]));
    assert_eq!(v["next_page_token"], "");
    let base = format!("http://{}/api/v1/clusters/default/tables", server.http_addr);
    let (s, v) = http(reqwest::Method::GET, format!("{base}?schema=public"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tables"].as_array().unwrap().len(), 1000);
    let token = v["next_page_token"].as_str().unwrap().to_string();
    let (s, v) = http(
        reqwest::Method::GET,
        format!("{base}?schema=public&limit=100&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tables"].as_array().unwrap().len(), 50);
    assert_eq!(v["next_page_token"], "");
    let (s, v) = http(reqwest::Method::GET, format!("{base}?page_token=zz"), None).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid page token"));
    server.shutdown().await;
}

/// Every page of `GET path` with `limit`, as the id lists of each page.
async fn id_pages(base: &str, path: &str, key: &str, limit: u32) -> Vec<Vec<u64>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let (status, v) = http(
            reqwest::Method::GET,
            format!("{base}{path}{sep}limit={limit}&page_token={token}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        pages.push(
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_u64().unwrap())
                .collect(),
        );
        token = v["next_page_token"].as_str().unwrap().to_string();
        if token.is_empty() {
            return pages;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_shards_and_operators_page_in_id_order() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "pg", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    // 8 shards, 3 a page: 3 + 3 + 2, ascending, each once.
    let pages = id_pages(&base, "/shards", "shards", 3).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
    let ids: Vec<u64> = pages.concat();
    assert_eq!(ids, (1..=8).collect::<Vec<u64>>());
    // Nodes: 2 a page, and a name prefix.
    let pages = id_pages(&base, "/nodes", "nodes", 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    let (_, v) = http(
        reqwest::Method::GET,
        format!("{base}/nodes?prefix=pg-1"),
        None,
    )
    .await;
    let names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pg-1"]);
    // Without a limit: everything (under the default page size), no token.
    let (_, v) = http(reqwest::Method::GET, format!("{base}/shards"), None).await;
    assert_eq!(v["shards"].as_array().unwrap().len(), 8);
    assert_eq!(v["next_page_token"], "");
    let (_, v) = http(
        reqwest::Method::GET,
        format!("{base}/operators?history=true&limit=5"),
        None,
    )
    .await;
    assert!(v["operators"].is_array() && v["history"].is_array(), "{v}");
    // A token of another list, or none of ours, is a 400 with a JSON error.
    for bad in ["nonsense", "p1.zz", "p1.61.62"] {
        let (status, v) = http(
            reqwest::Method::GET,
            format!("{base}/shards?page_token={bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("page token"),
            "{v}"
        );
    }
    server.shutdown().await;
}

/// A million tables, written straight into a redb store (creating them one by one would
/// take the whole CI budget), then listed over gRPC by a client with default message limits
/// (4 MiB): every table exactly once, in name order, in pages of the maximum size, and a
/// prefix that selects a few among the million answers without scanning the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_tables_page_through_grpc_within_default_message_limits() {
    use meridian_model::{Partition, ShardId, Table, TableId};
    use meridian_store::{keys, KvBackend, RedbBackend, WriteOp};
    const TABLES: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    // First start: the default cluster and its schema exist.
    let server = start(config.clone()).await;
    let cluster = server.meta.cluster("default").unwrap().id;
    server.shutdown().await;
    let path = dir.path().join("meridian.redb");
    let t0 = std::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        let store = RedbBackend::open(path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for chunk in (1..=TABLES).collect::<Vec<u64>>().chunks(20_000) {
            let mut ops = Vec::with_capacity(chunk.len() * 3);
            for &id in chunk {
                let name = TableName::new("default", "public", &format!("t{id:07}")).unwrap();
                let table = Table {
                    id: TableId(id),
                    name: name.clone(),
                    rule: PartitionRule::None,
                    partitions: vec![Partition {
                        index: 0,
                        shard: ShardId(1 + (id % 8) as u32),
                    }],
                    created_at_ms: 0,
                    revision: 1,
                    definition: Default::default(),
                };
                ops.push(WriteOp::put(
                    keys::table(cluster, TableId(id)),
                    serde_json::to_vec(&table).unwrap(),
                ));
                ops.push(WriteOp::put(
                    keys::table_name(cluster, &name),
                    keys::encode_id(id),
                ));
                // As DDL writes it (else the start would write a million of them).
                ops.push(WriteOp::put(
                    keys::table_revision(cluster, TableId(id)),
                    keys::encode_id(1),
                ));
            }
            rt.block_on(store.batch(ops)).unwrap();
        }
    })
    .await
    .unwrap();

    eprintln!("written in {:?}", t0.elapsed());
    let t0 = std::time::Instant::now();
    let server = start(config).await;
    eprintln!("loaded in {:?}", t0.elapsed());
    let t0 = std::time::Instant::now();
    let client = client(&server).await;
    let mut seen = 0u64;
    let mut token = String::new();
    let mut last = String::new();
    loop {
        let page = client
            .list_tables_page("default", "public", "", 10_000, &token)
            .await
            .unwrap_or_else(|e| panic!("after {seen} tables: {e}"));
        assert!(page.tables.len() <= 10_000);
        for t in &page.tables {
            assert!(t.name > last, "{} after {last}", t.name);
            last = t.name.clone();
        }
        seen += page.tables.len() as u64;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, TABLES);
    eprintln!("listed in {:?}", t0.elapsed());
    // The default page size (1,000) with a prefix: the 10 tables t0999990..t0999999.
    let page = client
        .list_tables_page("default", "public", "t099999", 0, "")
        .await
        .unwrap();
    let names: Vec<&str> = page.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(names[0], "t0999990");
    assert!(page.next_page_token.is_empty());
    server.shutdown().await;
}
