//! Upgrades from stores written by older binaries, from committed fixtures.
//!
//! `fixtures/store-format-1/` was written by the binary of commit e45be74 (store format 1):
//! `meridian.redb` is its data dir after this session, run against it with three
//! `sim-node`s (fx-0, fx-1, fx-2 in zone-0..2):
//!
//! ```text
//! ctl create-schema greptime.metrics
//! ctl create-table greptime.metrics.cpu --partitions 4 --column host:string:not_null \
//!     --column ts:timestamp_ms:not_null --column usage:float64 --primary-key host \
//!     --time-index ts --option ttl=7d                                        # id 1
//! ctl create-table greptime.metrics.mem --range host:h,p ...                 # id 2
//! ctl create-table plain --partitions 2                                      # id 3
//! ctl create-table greptime.metrics.gone --partitions 1; ctl drop-table ...  # id 4
//! ctl alter-table greptime.metrics.cpu --add-column region:string            # definition v2
//! ctl config set scheduler.hot_trend_window_ms 20000
//! ctl pause-scheduler balance-leader
//! ctl create-cluster second
//! ```
//!
//! and `format1.backup` is `meridian backup` of it, taken just before the server stopped.
//! Today's binary must open both (the backup also restored into etcd), migrate them, and
//! go on where they left off. Never regenerate these files: they stand for stores in the
//! field.

mod common;

use common::*;
use meridian_server::{HaServer, Role, ServerConfig, StoreKind};
use meridian_store::etcd::{EtcdConfig, LocalEtcd};
use meridian_store::format::STORE_FORMAT;
use meridian_store::{keys, EtcdBackend, KvBackend, RedbBackend};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-format-1")
        .join(name)
}

/// The format version stored in the redb data dir `dir` (the server must be stopped).
async fn stored_format(dir: &Path) -> Option<Vec<u8>> {
    let path = dir.join("meridian.redb");
    tokio::task::spawn_blocking(move || {
        let store = RedbBackend::open(path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.get(&keys::format())).unwrap()
    })
    .await
    .unwrap()
}

/// Starts today's server on `dir`, holding the fixture's metadata, checks it with
/// [`everything_is_back_and_goes_on`], stops it and checks that the store was migrated.
async fn redb_store_upgrades(dir: &Path) {
    let server = start(redb_config(dir)).await;
    // The fixture's three nodes come back under their names (and ids).
    let nodes = start_nodes(&server, "fx", 3, 3).await;
    shards_ready(&server, &nodes).await;
    everything_is_back_and_goes_on(&server.http_addr.to_string()).await;
    drop(nodes);
    server.shutdown().await;
    assert_eq!(
        stored_format(dir).await,
        Some(STORE_FORMAT.to_string().into_bytes()),
        "the store was migrated"
    );
}

/// Checks as a user would, through the server at HTTP `addr` with the fixture's nodes
/// back, that everything the old binary wrote is there and still changes.
async fn everything_is_back_and_goes_on(addr: &str) {
    let addr = addr.to_string();

    let (ok, out) = ctl(&addr, &["--json", "tables"]).await;
    assert!(ok, "{out}");
    let tables: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<String> = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let n = &t["name"];
            format!("{}.{}.{}", n["catalog"], n["schema"], n["table"]).replace('"', "")
        })
        .collect();
    assert_eq!(
        names,
        [
            "default.public.plain",
            "greptime.metrics.cpu",
            "greptime.metrics.mem"
        ],
        "{out}"
    );
    let (ok, out) = ctl(&addr, &["describe", "greptime.metrics.cpu"]).await;
    assert!(ok, "{out}");
    for want in ["region", "usage", "ttl", "definition version 2"] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let (ok, out) = ctl(&addr, &["config", "show"]).await;
    assert!(ok && out.contains("20000"), "{out}");
    let (ok, out) = ctl(&addr, &["schedulers"]).await;
    let paused = out.lines().find(|l| l.contains("balance-leader"));
    assert!(ok && paused.is_some_and(|l| l.contains("true")), "{out}");
    let (ok, out) = ctl(&addr, &["clusters"]).await;
    assert!(ok && out.contains("second"), "{out}");

    // Changes still commit: an ALTER swaps the table by its revision key, a new table
    // takes an id after the dropped one's (4; ids are handed out in blocks, so the next
    // start skips ahead).
    let (ok, out) = ctl(
        &addr,
        &[
            "alter-table",
            "greptime.metrics.cpu",
            "--add-column",
            "dc:string",
        ],
    )
    .await;
    assert!(ok && out.contains("definition version 3"), "{out}");
    let (ok, out) = ctl(
        &addr,
        &["create-table", "greptime.metrics.disk", "--partitions", "2"],
    )
    .await;
    assert!(ok, "{out}");
    let id: u64 = out
        .split("(id ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an id in {out}"));
    assert!(id > 4, "id {id} after the dropped table's 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_data_dir_is_migrated_and_serves_as_before() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("meridian.redb"), dir.path().join("meridian.redb")).unwrap();
    assert_eq!(stored_format(dir.path()).await, Some(b"1".to_vec()));
    redb_store_upgrades(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_backup_restores_and_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let from = fixture("format1.backup").display().to_string();
    let (ok, out) = meridian(&["restore", "--from", &from, "--data-dir", &data]);
    assert!(ok, "{out}");
    redb_store_upgrades(dir.path()).await;
}

/// A format-1 store could hold records without revision keys (written before they
/// existed). Every compare-and-swap compares them, so without the migration to format 2
/// that table could never change again: the ALTER in the check would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_1_records_without_revision_keys_change_again_after_the_upgrade() {
    let text = std::fs::read_to_string(fixture("format1.backup")).unwrap();
    let revision_key = "\"k\":\"/meridian/v1/clusters/0000000001/revisions/";
    let kept: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.contains(revision_key))
        .collect();
    assert!(
        kept.len() + 1 < text.lines().count(),
        "the fixture has revision keys"
    );
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut header = header.as_object().unwrap().clone();
    header.insert("keys".into(), kept.len().into());
    let stripped = std::iter::once(serde_json::to_string(&header).unwrap())
        .chain(kept.iter().map(|l| l.to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stripped.backup");
    std::fs::write(&file, stripped).unwrap();
    let data = dir.path().join("data");
    let (ok, out) = meridian(&[
        "restore",
        "--from",
        &file.display().to_string(),
        "--data-dir",
        &data.display().to_string(),
    ]);
    assert!(ok, "{out}");
    redb_store_upgrades(&data).await;
}

/// The same backup restored into etcd, served by an HA server: the migration runs on etcd
/// (in transactions of at most 128 writes) when the server takes the lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_format_1_backup_restored_into_etcd_is_migrated_by_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let endpoints = etcd.endpoints().join(",");
    let from = fixture("format1.backup").display().to_string();
    let (ok, out) = meridian(&["restore", "--from", &from, "--etcd-endpoints", &endpoints]);
    assert!(ok, "{out}");
    let mut config = ServerConfig {
        store: StoreKind::Etcd,
        grpc_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        http_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        name: "up".into(),
        ..Default::default()
    };
    config.etcd.endpoints = etcd.endpoints();
    let server = HaServer::start(config).await.unwrap();
    eventually(Duration::from_secs(20), || async {
        matches!(server.role(), Role::Leader { .. }).then_some(())
    })
    .await;
    let grpc = server.grpc_addr.to_string();
    let nodes = start_nodes_at(&grpc, "fx", 3, 37000, |_| (20, 200)).await;
    let addr = server.http_addr.to_string();
    // Every shard led again by a returning node before anything changes.
    eventually(Duration::from_secs(20), || {
        let addr = addr.clone();
        async move {
            let (ok, out) = ctl(&addr, &["check"]).await;
            (ok && out.contains("0 with problems")).then_some(())
        }
    })
    .await;
    everything_is_back_and_goes_on(&addr).await;
    let store = EtcdBackend::connect(&EtcdConfig {
        endpoints: etcd.endpoints(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        store.get(&keys::format()).await.unwrap(),
        Some(STORE_FORMAT.to_string().into_bytes())
    );
    drop(nodes);
    server.shutdown().await;
}
