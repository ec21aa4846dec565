//! The etcd backend against real etcd processes: the conformance suite, fenced writes, and
//! elections with their faults (a lost lease, a resignation, a dead etcd member).

use meridian_store::etcd::{Candidate, EtcdConfig, LocalEtcd};
use meridian_store::{conformance, EtcdBackend, KvBackend, StoreError, Txn, WriteOp};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn backend(etcd: &LocalEtcd, namespace: &str) -> EtcdBackend {
    EtcdBackend::connect(&EtcdConfig {
        endpoints: etcd.endpoints(),
        namespace: namespace.into(),
        request_timeout: Duration::from_secs(3),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_backend_conforms_and_respects_etcds_limits() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let store = backend(&etcd, "/conf");
    conformance::run_all(Arc::new(store.clone())).await;

    // More keys than etcd takes in one transaction: refused with a precise error, nothing
    // applied.
    let ops: Vec<_> = (0..200)
        .map(|i| WriteOp::put(format!("/big/{i:03}"), "v"))
        .collect();
    match store.batch(ops).await {
        Err(StoreError::InvalidArgument(m)) => assert!(m.contains("limit of 128"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(store.range(b"/big/", 0).await.unwrap().is_empty());
    // A scan longer than one page is complete and ordered.
    for chunk in (0..5000).collect::<Vec<u32>>().chunks(128) {
        let ops = chunk
            .iter()
            .map(|i| WriteOp::put(format!("/scan/{i:05}"), i.to_string()))
            .collect();
        store.batch(ops).await.unwrap();
    }
    let all = store.range(b"/scan/", 0).await.unwrap();
    assert_eq!(all.len(), 5000);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(store.range(b"/scan/", 2500).await.unwrap().len(), 2500);
    // Namespaces keep deployments apart.
    assert_eq!(
        backend(&etcd, "/other").get(b"/scan/00001").await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_per_term_and_a_deposed_leaders_writes_never_land() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let store = backend(&etcd, "/elect");
    let ttl = Duration::from_secs(2);
    let a = Candidate::new(store.clone(), "/leader", "a", ttl);
    let b = Candidate::new(store.clone(), "/leader", "b", ttl);

    let first = a.campaign().await.unwrap();
    assert!(first.is_valid());
    let fenced_a = store.fenced(first.fence());
    fenced_a.put(b"/data/x", b"from a").await.unwrap();
    // b waits while a leads, and sees a as the leader.
    let campaign_b = tokio::spawn(async move {
        let leadership = b.campaign().await.unwrap();
        (b, leadership)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign_b.is_finished(), "two leaders at once");
    assert_eq!(a.leader().await.unwrap().unwrap().value, b"a");

    // a stops renewing (as a paused or partitioned process would): its lease runs out, it
    // knows it, b is elected with a higher term, and a's writes are fenced off.
    let stopped = Instant::now();
    let validity = first.validity();
    drop(first);
    let (b, second) = tokio::time::timeout(Duration::from_secs(10), campaign_b)
        .await
        .expect("b elected after a's lease ran out")
        .unwrap();
    assert!(
        stopped.elapsed() >= Duration::from_millis(900),
        "elected before a's lease ran out"
    );
    assert!(!validity.is_valid(), "a still believes it leads");
    let first_term = validity_term_of(&fenced_a);
    assert!(
        second.term() > first_term,
        "terms grow: {} then {}",
        first_term,
        second.term()
    );
    assert_eq!(b.leader().await.unwrap().unwrap().value, b"b");
    let refused = fenced_a.put(b"/data/x", b"stale").await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    let txn = Txn::new()
        .when_equals("/data/x", "from a")
        .then(WriteOp::put("/data/y", "stale"));
    assert!(matches!(
        fenced_a.txn(txn).await,
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(
        store.get(b"/data/x").await.unwrap().as_deref(),
        Some(&b"from a"[..])
    );
    assert_eq!(store.get(b"/data/y").await.unwrap(), None);
    // The new leader's fenced writes land; its compares still decide its branch.
    let fenced_b = store.fenced(second.fence());
    let txn = Txn::new()
        .when_equals("/data/x", "nope")
        .otherwise(WriteOp::put("/data/y", "b"));
    assert!(!fenced_b.txn(txn).await.unwrap().succeeded);
    assert_eq!(
        store.get(b"/data/y").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );

    // A resignation hands over at once, not after a TTL.
    let c = Candidate::new(store.clone(), "/leader", "c", ttl);
    let campaign_c = tokio::spawn(async move { c.campaign().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resigned = Instant::now();
    let second_term = second.term();
    second.resign().await;
    let third = tokio::time::timeout(Duration::from_secs(5), campaign_c)
        .await
        .unwrap()
        .unwrap();
    assert!(
        resigned.elapsed() < Duration::from_millis(900),
        "handover took {:?}",
        resigned.elapsed()
    );
    assert!(third.term() > second_term);
}

/// The term a fenced view writes under.
fn validity_term_of(store: &EtcdBackend) -> i64 {
    store.fence().map_or(0, |f| f.create_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_survives_the_loss_of_one_etcd_member_of_three() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = LocalEtcd::start(3, dir.path()).await.unwrap();
    let store = backend(&etcd, "/ha");
    // A TTL well above an etcd leader election (1-2 s, slower on a loaded 2-core machine):
    // what is tested is that renewals move on to a live member.
    let leader = Candidate::new(store.clone(), "/leader", "a", Duration::from_secs(5))
        .campaign()
        .await
        .unwrap();
    let fenced = store.fenced(leader.fence());
    for i in 0..3 {
        etcd.kill(i);
        // Writes go on through the two others, and the lease is kept.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut written = 0;
        while written < 20 {
            match fenced
                .put(format!("/k/{i}/{written}").as_bytes(), b"v")
                .await
            {
                Ok(()) => written += 1,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("write while member {i} is down: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no write for 10 s with member {i} down: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            leader.is_valid(),
            "leadership lost while member {i} was down"
        );
        etcd.restart(i).await.unwrap();
    }
    assert_eq!(store.range(b"/k/", 0).await.unwrap().len(), 60);
}
