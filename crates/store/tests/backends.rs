//! Every backend passes the conformance suite; redb keeps its promises across restarts and
//! shares commits between concurrent writers.

use meridian_store::{
    conformance, KvBackend, MemoryBackend, RedbBackend, SequenceAllocator, WatchEvent, WriteOp,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

fn redb_in(dir: &tempfile::TempDir) -> Arc<dyn KvBackend> {
    Arc::new(RedbBackend::open(dir.path().join("meta.redb")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_backend_conforms() {
    conformance::run_all(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(redb_in(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = redb_in(&dir);
    store.put(b"/k/a", b"1").await.unwrap();
    store
        .batch(vec![WriteOp::put("/k/b", "2"), WriteOp::delete("/k/a")])
        .await
        .unwrap();
    let mut watch = store.watch(b"/k/").await.unwrap();
    store.close().await.unwrap();
    assert!(
        store.get(b"/k/b").await.is_err(),
        "closed store serves nothing"
    );
    assert!(store.put(b"/k/c", b"3").await.is_err());
    assert_eq!(watch.next().await, None, "watch ends on close");
    drop(store);

    let store = redb_in(&dir);
    assert_eq!(store.get(b"/k/a").await.unwrap(), None);
    assert_eq!(
        store.get(b"/k/b").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(store.range(b"/k/", 0).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_never_reuses_ids_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let store = redb_in(&dir);
        let seq = SequenceAllocator::new(store.clone(), "/seq/table", 100);
        // Use only part of the reserved range, then "crash" (drop without handing the rest).
        for _ in 0..7 {
            assert!(seen.insert(seq.next().await.unwrap()));
        }
        assert!(seen.iter().all(|&id| id >= 1));
        drop(seq);
        drop(store);
    }
    assert_eq!(seen.first(), Some(&1));
    assert_eq!(seen.len(), 21);
}

#[tokio::test]
async fn slow_watcher_is_told_it_lagged() {
    let store = MemoryBackend::new();
    let mut watch = store.watch(b"/w/").await.unwrap();
    let commits = meridian_store::watch::WATCH_BUFFER_COMMITS + 10;
    for i in 0..commits {
        store
            .put(format!("/w/{i:05}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    assert!(matches!(
        watch.next().await,
        Some(WatchEvent::Lagged { missed_commits }) if missed_commits >= 10
    ));
    // It goes on with the newest changes.
    assert!(matches!(watch.next().await, Some(WatchEvent::Put { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(RedbBackend::open(dir.path().join("meta.redb")).unwrap());
    let store: Arc<dyn KvBackend> = redb.clone();
    let writes = 2_000;
    let commits_before = redb.commits();
    let start = Instant::now();
    let tasks: Vec<_> = (0..writes)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(format!("/bench/{i:06}").as_bytes(), b"value")
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    eprintln!(
        "redb: {writes} concurrent durable puts in {elapsed:?} ({:.0} writes/s)",
        writes as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(store.range(b"/bench/", 0).await.unwrap().len(), writes);
    // The point of group commit: the writes shared far fewer commits (fsyncs) than one
    // each. With one commit per write this fails.
    let commits = redb.commits() - commits_before;
    eprintln!("redb: {writes} writes in {commits} commits");
    assert!(
        commits * 4 <= writes as u64,
        "{writes} concurrent writes took {commits} commits: they did not share"
    );
}
