//! `meridian backup` of a running server, `meridian restore` into a new data dir, and a
//! server on the restored store: the catalog is back and ids do not go backwards. A store of
//! a newer format is refused at start.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName};
use meridian_store::{KvBackend, RedbBackend, WriteOp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_data_dir_and_ids_go_on() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = start(redb_config(source.path())).await;
    let nodes = start_nodes(&server, "bk", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let meta = client(&server).await;
    meta.create_schema("default", "sales", false).await.unwrap();
    let mut max_id = 0;
    for i in 0..3 {
        let name = TableName::new("default", "sales", &format!("t{i}")).unwrap();
        let (info, _) = meta
            .create_table_with(&name, &PartitionRule::None, &Default::default(), false)
            .await
            .unwrap();
        max_id = max_id.max(info.id);
    }
    let file = source.path().join("meta.backup");
    let http_addr = server.http_addr.to_string();
    let file_arg = file.display().to_string();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        meridian(&["backup", "--addr", &http_addr, "--out", &file_arg])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("backup of"), "{out}");
    drop(nodes);
    server.shutdown().await;

    let dir = target.path().display().to_string();
    let from = file.display().to_string();
    let (ok, out) = meridian(&["restore", "--from", &from, "--data-dir", &dir]);
    assert!(ok, "{out}");
    // Into a store that holds metadata: refused, nothing written.
    let (ok, out) = meridian(&["restore", "--from", &from, "--data-dir", &dir]);
    assert!(!ok && out.contains("already holds metadata"), "{out}");

    let server = start(redb_config(target.path())).await;
    let nodes = start_nodes(&server, "bk", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let restored = client(&server).await;
    for i in 0..3 {
        let name = TableName::new("default", "sales", &format!("t{i}")).unwrap();
        restored.get_table(&name).await.unwrap();
    }
    let name = TableName::new("default", "sales", "after").unwrap();
    let (info, _) = restored
        .create_table_with(&name, &PartitionRule::None, &Default::default(), false)
        .await
        .unwrap();
    assert!(info.id > max_id, "id {} after {max_id}", info.id);
    drop(nodes);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_a_newer_format_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.redb");
    tokio::task::spawn_blocking(move || {
        let store = RedbBackend::open(path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.batch(vec![WriteOp::put(
            b"/meridian/v1/format".to_vec(),
            b"99".to_vec(),
        )]))
        .unwrap();
    })
    .await
    .unwrap();
    let err = match meridian_server::Server::start(redb_config(dir.path())).await {
        Ok(_) => panic!("a newer store was opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!(
            "format 99, newer than this binary's {}",
            meridian_store::format::STORE_FORMAT
        )),
        "{err}"
    );
}
