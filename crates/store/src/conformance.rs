//! The behaviour every [`KvBackend`] must have, as one suite: `run_all(backend).await`
//! panics on the first violation. Each check works under its own fresh prefix, so the suite
//! can run against a shared, non-empty store (e.g. a real etcd).

use crate::{KvBackend, SequenceAllocator, StoreError, Txn, WatchEvent, WatchStream, WriteOp};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Runs every check against `backend`. Needs a tokio runtime (multi-threaded for real
/// parallelism).
pub async fn run_all(backend: Arc<dyn KvBackend>) {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let ns = |check: &str| format!("/conformance/{run}/{check}/").into_bytes();
    let b = &backend;
    get_missing_is_none(b, ns("get_missing")).await;
    put_overwrite_delete(b, ns("put_overwrite_delete")).await;
    range_is_prefix_scoped_ordered_limited_and_pageable(b, ns("range")).await;
    batch_is_all_or_nothing(b, ns("batch")).await;
    txn_when_absent_picks_a_branch(b, ns("txn_absent")).await;
    txn_when_equals_needs_every_compare(b, ns("txn_equals")).await;
    txn_when_prefix_empty_sees_every_key_under_it(b, ns("txn_prefix")).await;
    watch_sees_changes_under_prefix_in_order(b, ns("watch")).await;
    concurrent_cas_increments_are_never_lost(b, ns("cas_counter")).await;
    oversized_and_empty_keys_are_refused(b, ns("limits")).await;
    sequence_ids_are_unique_under_concurrency(b, ns("sequence")).await;
    eprintln!("conformance: {} passed", backend.name());
}

fn key(ns: &[u8], rest: &str) -> Vec<u8> {
    [ns, rest.as_bytes()].concat()
}

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("watch event within 5s")
        .expect("watch stream open")
}

async fn get_missing_is_none(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    assert_eq!(b.get(&key(&ns, "nope")).await.unwrap(), None);
    assert!(b.range(&ns, 0).await.unwrap().is_empty());
}

async fn put_overwrite_delete(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let k = key(&ns, "k");
    b.put(&k, b"v1").await.unwrap();
    assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
    b.put(&k, b"v2").await.unwrap();
    assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"v2"[..]));
    b.put(&k, b"").await.unwrap();
    assert_eq!(
        b.get(&k).await.unwrap().as_deref(),
        Some(&b""[..]),
        "empty value is a value"
    );
    b.delete(&k).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), None);
    b.delete(&k).await.unwrap();
}

async fn range_is_prefix_scoped_ordered_limited_and_pageable(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    for k in ["a/03", "a/01", "b/01", "a/02", "a0", "a", "a/10"] {
        b.put(&key(&ns, k), k.as_bytes()).await.unwrap();
    }
    let names = |kvs: Vec<crate::KeyValue>| -> Vec<String> {
        kvs.into_iter()
            .map(|kv| {
                assert_eq!(kv.key[ns.len()..], kv.value[..]);
                String::from_utf8(kv.value).unwrap()
            })
            .collect()
    };
    let p = key(&ns, "a/");
    assert_eq!(
        names(b.range(&p, 0).await.unwrap()),
        ["a/01", "a/02", "a/03", "a/10"]
    );
    assert_eq!(names(b.range(&p, 2).await.unwrap()), ["a/01", "a/02"]);
    let after = key(&ns, "a/02");
    assert_eq!(
        names(b.range_after(&p, &after, 0).await.unwrap()),
        ["a/03", "a/10"]
    );
    assert_eq!(names(b.range_after(&p, &after, 1).await.unwrap()), ["a/03"]);
    // A start before the prefix is no restriction; one past the prefix yields nothing.
    assert_eq!(b.range_after(&p, &ns, 0).await.unwrap().len(), 4);
    assert!(b
        .range_after(&p, &key(&ns, "b"), 0)
        .await
        .unwrap()
        .is_empty());
    // Paging by one visits each key once, in order.
    let (mut seen, mut last) = (vec![], p.clone());
    loop {
        let page = b.range_after(&p, &last, 1).await.unwrap();
        let Some(kv) = page.into_iter().next() else {
            break;
        };
        last = kv.key.clone();
        seen.push(kv);
    }
    assert_eq!(names(seen), ["a/01", "a/02", "a/03", "a/10"]);
    assert_eq!(b.range(&ns, 0).await.unwrap().len(), 7);
}

async fn batch_is_all_or_nothing(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let (x, y) = (key(&ns, "x"), key(&ns, "y"));
    b.batch(vec![
        WriteOp::put(x.clone(), "1"),
        WriteOp::put(y.clone(), "1"),
        WriteOp::put(x.clone(), "2"),
    ])
    .await
    .unwrap();
    assert_eq!(
        b.get(&x).await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "later op wins"
    );
    let refused = b
        .batch(vec![
            WriteOp::delete(x.clone()),
            WriteOp::put(y.clone(), vec![0u8; crate::MAX_VALUE_LEN + 1]),
        ])
        .await;
    assert!(matches!(refused, Err(StoreError::TooLarge { .. })));
    assert!(
        b.get(&x).await.unwrap().is_some(),
        "refused batch applied nothing"
    );

    // Readers never see half a batch.
    b.put(&y, b"2").await.unwrap();
    let writer = {
        let (b, x, y) = (b.clone(), x.clone(), y.clone());
        tokio::spawn(async move {
            for i in 0..200u32 {
                let v = i.to_string();
                b.batch(vec![
                    WriteOp::put(x.clone(), v.clone()),
                    WriteOp::put(y.clone(), v),
                ])
                .await
                .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let kvs = b.range(&ns, 0).await.unwrap();
        assert_eq!(kvs.len(), 2);
        assert_eq!(kvs[0].value, kvs[1].value, "saw half a batch");
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
}

async fn txn_when_absent_picks_a_branch(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let (k, lost) = (key(&ns, "k"), key(&ns, "lost"));
    let create = |v: &str| {
        Txn::new()
            .when_absent(k.clone())
            .then(WriteOp::put(k.clone(), v))
            .otherwise(WriteOp::put(lost.clone(), v))
    };
    assert!(b.txn(create("first")).await.unwrap().succeeded);
    assert!(!b.txn(create("second")).await.unwrap().succeeded);
    assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(b.get(&lost).await.unwrap().as_deref(), Some(&b"second"[..]));
}

async fn txn_when_equals_needs_every_compare(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let (k, other) = (key(&ns, "k"), key(&ns, "other"));
    b.put(&k, b"1").await.unwrap();
    let bump = |from: &str, to: &str| {
        Txn::new()
            .when_equals(k.clone(), from)
            .then(WriteOp::put(k.clone(), to))
    };
    assert!(!b.txn(bump("0", "x")).await.unwrap().succeeded);
    assert!(b.txn(bump("1", "2")).await.unwrap().succeeded);
    assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"2"[..]));
    // Both compares must hold: `other` is absent, so expecting a value there fails.
    let both = bump("2", "3").when_equals(other.clone(), "v");
    assert!(!b.txn(both).await.unwrap().succeeded);
    let both = bump("2", "3").when_absent(other.clone());
    assert!(b.txn(both).await.unwrap().succeeded);
    // No compares: always succeeds.
    assert!(b.txn(Txn::new()).await.unwrap().succeeded);
}

async fn txn_when_prefix_empty_sees_every_key_under_it(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let (p, done) = (key(&ns, "p/"), key(&ns, "done"));
    let guarded = || {
        Txn::new()
            .when_prefix_empty(p.clone())
            .then(WriteOp::put(done.clone(), "yes"))
    };
    // Keys beside the prefix (before and after it in order) do not count.
    b.put(&key(&ns, "p"), b"x").await.unwrap();
    b.put(&key(&ns, "p0"), b"x").await.unwrap();
    b.put(&key(&ns, "o/1"), b"x").await.unwrap();
    assert!(b.txn(guarded()).await.unwrap().succeeded);
    b.delete(&done).await.unwrap();
    // One key deep under the prefix fails it.
    b.put(&key(&ns, "p/zz/1"), b"x").await.unwrap();
    assert!(!b.txn(guarded()).await.unwrap().succeeded);
    assert_eq!(b.get(&done).await.unwrap(), None);
    b.delete(&key(&ns, "p/zz/1")).await.unwrap();
    assert!(b.txn(guarded()).await.unwrap().succeeded);
    // A prefix compare can only ask for emptiness.
    let mut bad = Txn::new().when_prefix_empty(p.clone());
    bad.compares[0].expected = Some(b"v".to_vec());
    assert!(matches!(
        b.txn(bad).await,
        Err(StoreError::InvalidArgument(_))
    ));
}

async fn watch_sees_changes_under_prefix_in_order(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let p = key(&ns, "in/");
    b.put(&key(&ns, "in/before"), b"old").await.unwrap();
    let mut w = b.watch(&p).await.unwrap();
    b.put(&key(&ns, "in/a"), b"1").await.unwrap();
    b.put(&key(&ns, "out/a"), b"1").await.unwrap();
    b.batch(vec![
        WriteOp::put(key(&ns, "in/b"), "2"),
        WriteOp::put(key(&ns, "out/b"), "2"),
        WriteOp::delete(key(&ns, "in/a")),
        WriteOp::delete(key(&ns, "in/never")),
    ])
    .await
    .unwrap();
    let txn = Txn::new()
        .when_absent(key(&ns, "in/b"))
        .otherwise(WriteOp::put(key(&ns, "in/c"), "3"));
    b.txn(txn).await.unwrap();
    let put = |k: &str, v: &str| WatchEvent::Put {
        key: key(&ns, k),
        value: v.into(),
    };
    assert_eq!(next_event(&mut w).await, put("in/a", "1"));
    assert_eq!(next_event(&mut w).await, put("in/b", "2"));
    assert_eq!(
        next_event(&mut w).await,
        WatchEvent::Delete {
            key: key(&ns, "in/a")
        }
    );
    assert_eq!(next_event(&mut w).await, put("in/c", "3"));
}

async fn concurrent_cas_increments_are_never_lost(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let counter = key(&ns, "counter");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (b, counter) = (b.clone(), counter.clone());
            tokio::spawn(async move {
                loop {
                    let old = b.get(&counter).await.unwrap();
                    let n: u64 = old
                        .as_deref()
                        .map_or(0, |v| crate::keys::decode_id(v).unwrap());
                    let txn = Txn::new()
                        .when(counter.clone(), old)
                        .then(WriteOp::put(counter.clone(), (n + 1).to_string()));
                    if b.txn(txn).await.unwrap().succeeded {
                        break;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.get(&counter).await.unwrap().as_deref(), Some(&b"50"[..]));
}

async fn oversized_and_empty_keys_are_refused(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let long = vec![b'k'; crate::MAX_KEY_LEN + 1];
    assert!(matches!(
        b.put(&long, b"v").await,
        Err(StoreError::TooLarge { .. })
    ));
    assert!(matches!(
        b.put(b"", b"v").await,
        Err(StoreError::InvalidArgument(_))
    ));
    let txn = Txn::new().when_absent(Vec::new());
    assert!(matches!(
        b.txn(txn).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let big = vec![0u8; crate::MAX_VALUE_LEN + 1];
    assert!(matches!(
        b.put(&key(&ns, "k"), &big).await,
        Err(StoreError::TooLarge { .. })
    ));
    b.put(&key(&ns, "k"), &big[1..]).await.unwrap();
}

async fn sequence_ids_are_unique_under_concurrency(b: &Arc<dyn KvBackend>, ns: Vec<u8>) {
    let k = key(&ns, "seq");
    let first = SequenceAllocator::new(b.clone(), k.clone(), 5);
    assert_eq!(first.next().await.unwrap(), 1, "first id is 1");
    // Two allocators (as in two processes) racing on one key, with many tasks each.
    let allocators = [
        Arc::new(first),
        Arc::new(SequenceAllocator::new(b.clone(), k, 7)),
    ];
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let seq = allocators[i % 2].clone();
            tokio::spawn(async move {
                let mut ids = vec![];
                for j in 0..10 {
                    if j % 3 == 0 {
                        ids.extend(seq.next_n(4).await.unwrap());
                    } else {
                        ids.push(seq.next().await.unwrap());
                    }
                }
                ids
            })
        })
        .collect();
    let mut all = BTreeSet::from([1]);
    let mut count = 1;
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "id {id} handed out twice");
            count += 1;
        }
    }
    assert_eq!(all.len(), count);
    assert!(allocators[0].next_n(0).await.unwrap().is_empty());
}
